/**
 * `pnpm bench upload --json`: one row per encapsulation with the documented fields, every upload
 * counted whole by the origin (the bench checks the byte count itself), UDP only where no delay
 * proxy stands in the way, CPU measured for roamlink's two processes.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

const main = fileURLToPath(new URL('../src/main.ts', import.meta.url));

function bench(args: string[]): Record<string, unknown>[] {
  const r = spawnSync(process.execPath, [main, 'upload', '--json', ...args], {
    encoding: 'utf8',
    timeout: 150_000,
  });
  assert.equal(r.status, 0, r.stderr);
  return JSON.parse(r.stdout) as Record<string, unknown>[];
}

test('pnpm bench upload --delay-ms 0: loopback rows for every encapsulation, UDP included, with CPU', () => {
  const rows = bench(['--delay-ms', '0', '--size', '2M', '--warmup', '2M']);
  assert.deepEqual(
    rows.map((r) => r.encapsulation),
    ['direct', 'udp', 'tcp', 'ws', 'http', 'http-posts'],
  );
  for (const r of rows) {
    assert.equal(r.error, '', `${r.encapsulation}: ${r.error}`);
    assert.equal(r.rttMs, 0);
    assert.equal(r.bytes, 2 << 20);
    assert.equal(r.runs, 1);
    assert.ok((r.MBps as number) > 0, `${r.encapsulation} MBps`);
    assert.ok((r.vsDirect as number) > 0, `${r.encapsulation} vsDirect`);
    if (r.encapsulation === 'direct') {
      assert.equal(r.vsDirect, 1);
      assert.equal(r.cpuPerGiB, 0, 'no roamlink process to measure');
    } else {
      // Two Node processes moving 2 MiB: some CPU, and not absurdly much (s per GiB).
      const c = r.cpuPerGiB as number;
      assert.ok(c > 0 && c < 1000, `${r.encapsulation} cpuPerGiB ${c}`);
    }
  }
});

test('pnpm bench upload over a delay: no UDP row (the proxy carries TCP), the round trip in the rows', () => {
  const rows = bench(['--delay-ms', '5', '--size', '1M']);
  assert.deepEqual(
    rows.map((r) => r.encapsulation),
    ['direct', 'tcp', 'ws', 'http', 'http-posts'],
  );
  for (const r of rows) {
    assert.equal(r.error, '', `${r.encapsulation}: ${r.error}`);
    assert.equal(r.rttMs, 10);
    assert.ok((r.MBps as number) > 0);
  }
  const bad = spawnSync(process.execPath, [main, 'upload', '--warmup', 'lots'], {
    encoding: 'utf8',
  });
  assert.equal(bad.status, 2);
  assert.match(bad.stderr, /--warmup: "lots" is not a size/);
});
