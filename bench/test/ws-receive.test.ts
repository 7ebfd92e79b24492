/**
 * `pnpm bench ws-receive` at a tiny size, so that it cannot rot: both modes measured in fresh
 * client processes, figures that make sense, and the `--json` contract. Speeds are read from a
 * full run, never asserted here.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

const main = fileURLToPath(new URL('../src/main.ts', import.meta.url));

test('ws-receive --json: a row per mode, against ws reading for itself', () => {
  const r = spawnSync(
    process.execPath,
    [main, 'ws-receive', '--json', '--size', '8M', '--runs', '2'],
    { encoding: 'utf8', timeout: 120_000 },
  );
  assert.equal(r.status, 0, r.stderr);
  const rows = JSON.parse(r.stdout) as Record<string, number | string>[];
  assert.deepEqual(
    rows.map((x) => x.mode),
    ['ws', 'frames'],
  );
  for (const row of rows) {
    assert.equal(row.runs, 2);
    for (const k of ['MBps', 'cpuPerGiB', 'userPerGiB', 'sysPerGiB', 'cpuVsWs', 'MBpsVsWs']) {
      assert.ok(
        typeof row[k] === 'number' && (row[k] as number) > 0,
        `${row.mode} ${k}: ${row[k]}`,
      );
    }
    const sum = (row.userPerGiB as number) + (row.sysPerGiB as number);
    assert.ok(Math.abs(sum - (row.cpuPerGiB as number)) < 0.5 * (row.cpuPerGiB as number));
  }
  assert.equal(rows[0]!.cpuVsWs, 1, 'ws against itself');
  assert.equal(rows[0]!.MBpsVsWs, 1);
});

test('ws-receive: a bad --size is refused before anything starts', () => {
  const r = spawnSync(process.execPath, [main, 'ws-receive', '--size', 'lots'], {
    encoding: 'utf8',
    timeout: 30_000,
  });
  assert.notEqual(r.status, 0);
  assert.match(r.stderr, /cannot read size "lots"/);
});
