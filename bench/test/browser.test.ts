/**
 * `pnpm bench browser` at a small size, so that it cannot rot: every row measured (the ceiling,
 * the three roamlink encapsulations, the connect with WebSocket blocked), figures that make sense,
 * and the `--json` contract. Speeds are read from a full run, never asserted here.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { type BrowserRow, percentile } from '../src/browser.ts';

test('percentile is nearest-rank', () => {
  assert.equal(percentile([5, 1, 3, 2, 4], 50), 3);
  assert.equal(percentile([1, 2, 3, 4], 50), 2);
  assert.equal(percentile([1, 2, 3, 4], 99), 4);
  assert.equal(percentile([7], 1), 7);
});

test('pnpm bench browser --json at 1 MiB: every row measured', { timeout: 240_000 }, (t) => {
  const main = fileURLToPath(new URL('../src/main.ts', import.meta.url));
  const r = spawnSync(
    process.execPath,
    [main, 'browser', '--json', '--size', '1M', '--requests', '10'],
    { encoding: 'utf8', timeout: 200_000 },
  );
  assert.equal(r.status, 0, r.stderr);
  const rows = JSON.parse(r.stdout) as BrowserRow[];
  assert.deepEqual(
    rows.map((x) => x.path),
    ['plain websocket', 'websocket', 'http-stream', 'http-poll', 'ws blocked → http-stream'],
  );
  for (const row of rows) {
    assert.equal(row.error, null, `${row.path}: ${row.error}`);
    if (row.path.startsWith('ws blocked')) {
      assert.ok(row.connectMs !== null && row.connectMs > 0 && row.connectMs < 5000);
      continue;
    }
    assert.ok(row.MBps !== null && row.MBps > 0, `${row.path} has a speed`);
    assert.ok(row.p50ms !== null && row.p99ms !== null && row.p50ms <= row.p99ms);
    assert.equal(row.bytes, 1 << 20);
    assert.equal(row.requests, 10);
  }
  t.diagnostic(rows.map((x) => `${x.path}: ${x.MBps?.toFixed(1) ?? '-'} MB/s`).join('; '));
});
