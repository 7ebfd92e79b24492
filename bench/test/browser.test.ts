/**
 * `pnpm bench browser` at a tiny size, so that it cannot rot: every row measured through both
 * relays (the ceiling, then per relay the three roamlink encapsulations and the connect with
 * WebSocket blocked), figures that make sense, every byte echoed, and the `--json` contract.
 * Speeds are read from a full run, never asserted here.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { type BrowserRow, percentile } from '../src/browser.ts';

const main = fileURLToPath(new URL('../src/main.ts', import.meta.url));
const bench = (...args: string[]) =>
  spawnSync(process.execPath, [main, 'browser', ...args], { encoding: 'utf8', timeout: 200_000 });

test('percentile is nearest-rank', () => {
  assert.equal(percentile([5, 1, 3, 2, 4], 50), 3);
  assert.equal(percentile([1, 2, 3, 4], 50), 2);
  assert.equal(percentile([1, 2, 3, 4], 99), 4);
  assert.equal(percentile([7], 1), 7);
});

test('--relays: an unknown relay is refused before anything starts', () => {
  const r = bench('--json', '--relays', 'node,nope');
  assert.notEqual(r.status, 0);
  assert.match(r.stderr, /--relays: node, workerd; not "nope"/);
  assert.equal(r.stdout, '');
});

test('pnpm bench browser --json at 256 KiB: every row measured, through both relays', {
  timeout: 240_000,
}, (t) => {
  const size = 256 * 1024;
  const r = bench('--json', '--size', '256K', '--requests', '10', '--relays', 'node,workerd');
  assert.equal(r.status, 0, r.stderr);
  const rows = JSON.parse(r.stdout) as BrowserRow[];
  const roamlink = ['websocket', 'http-stream', 'http-poll', 'ws blocked → http-stream'];
  assert.deepEqual(
    rows.map((x) => [x.relay, x.path]),
    [
      [null, 'plain websocket'],
      ...roamlink.map((p) => ['node', p]),
      ...roamlink.map((p) => ['workerd', p]),
    ],
  );
  for (const row of rows) {
    const name = `${row.relay ?? 'no'} relay, ${row.path}`;
    assert.equal(row.error, null, `${name}: ${row.error}`);
    if (row.path.startsWith('ws blocked')) {
      assert.ok(row.connectMs !== null && row.connectMs > 0 && row.connectMs < 5000, name);
      assert.equal(row.MBps, null);
      continue;
    }
    assert.ok(row.MBps !== null && row.MBps > 0, `${name} has a speed`);
    assert.ok(row.vsCeiling !== null && row.vsCeiling > 0, name);
    assert.ok(row.p50ms !== null && row.p99ms !== null, name);
    assert.ok(row.p50ms > 0 && row.p50ms <= row.p99ms, `${name}: p50 ${row.p50ms}`);
    assert.equal(row.bytes, size);
    assert.equal(row.requests, 10);
    if (row.relay === null) {
      assert.equal(row.echoed, null);
      assert.equal(row.connectMs, null);
    } else {
      assert.equal(row.echoed, size, `${name}: every byte echoed, each checked`);
      assert.ok(row.connectMs !== null && row.connectMs > 0, name);
    }
  }
  t.diagnostic(
    rows.map((x) => `${x.relay ?? '-'} ${x.path}: ${x.MBps?.toFixed(1) ?? '-'} MB/s`).join('; '),
  );
});
