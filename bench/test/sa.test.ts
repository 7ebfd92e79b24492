/**
 * The benchmark must keep running and keep its output contract (rows with these fields for every
 * suite × provider × size). Speed targets are read from a full run, never asserted here.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

test('pnpm bench sa --json: one row per suite × provider × size, with ceiling ratios', () => {
  const main = fileURLToPath(new URL('../src/main.ts', import.meta.url));
  const r = spawnSync(
    process.execPath,
    [main, 'sa', '--json', '--quick', '--rounds', '1', '--slice', '5'],
    {
      encoding: 'utf8',
    },
  );
  assert.equal(r.status, 0, r.stderr);
  const rows = JSON.parse(r.stdout) as Record<string, unknown>[];
  const cells = new Set(rows.map((x) => `${x.suite}/${x.provider}/${x.bytes}`));
  for (const [suite, provider] of [
    ['chacha20-poly1305', 'sodium'],
    ['chacha20-poly1305', 'node'],
    ['aes-256-gcm', 'node'],
    ['chacha20-poly1305', 'noble'],
    ['aes-256-gcm', 'noble'],
  ]) {
    for (const bytes of [64, 512, 1400, 8192])
      assert.ok(cells.has(`${suite}/${provider}/${bytes}`), `${suite}/${provider}/${bytes}`);
  }
  for (const row of rows) {
    for (const k of [
      'sealMBps',
      'openMBps',
      'aeadMBps',
      'aeadOpenMBps',
      'sealRatio',
      'openRatio',
      'sealCopyMBps',
    ]) {
      assert.ok(
        typeof row[k] === 'number' && (row[k] as number) > 0,
        `${k} in ${JSON.stringify(row)}`,
      );
    }
  }
});
