/**
 * The real thing on loopback: the relay and the client as separate Node processes over real UDP
 * sockets, rekeying every 600 ms for 4 s. Every echo must come back, every rekey must complete on
 * both sides without a drop, and the key log must hold both directions of every SA.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

test('relay and client processes: echoes and rekeys over real UDP', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'roamlink-udp-'));
  const keylog = join(dir, 'keys');
  const demo = fileURLToPath(new URL('../src/echo-demo.ts', import.meta.url));
  const child = spawn(
    process.execPath,
    // UDP alone: racing other encapsulations (TCP, WebSocket, HTTP) costs a duplicate handshake answer
    // and the relay's redundant copies after its upgrade to UDP, which this test counts as drops.
    [
      demo,
      '--duration-s',
      '4',
      '--rekey-after-ms',
      '600',
      '--port',
      '0',
      '--dir',
      dir,
      '--no-tcp',
      '--no-ws',
      '--no-http',
    ],
    { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ROAMLINK_KEYLOG: keylog } },
  );
  let out = '';
  let err = '';
  child.stdout.on('data', (d) => (out += d));
  child.stderr.on('data', (d) => (err += d));
  const code = await new Promise<number | null>((r) => child.once('exit', r));
  assert.equal(code, 0, `demo failed: ${err}`);
  const summary = JSON.parse(out.trim().split('\n').at(-1)!) as Record<string, number | string>;
  assert.equal(summary.state, 'established');
  assert.ok((summary.pingsSent as number) >= 30, `pings: ${summary.pingsSent}`);
  // At most the one echo in flight when the client stopped may be missing.
  assert.ok(
    (summary.pingsSent as number) - (summary.pongs as number) <= 1,
    JSON.stringify(summary),
  );
  assert.ok((summary.rekeys as number) >= 4, `rekeys: ${summary.rekeys}`);
  assert.equal(summary.handshakes, (summary.rekeys as number) + 1);
  assert.equal(summary.espDrops, 0);
  assert.equal(summary.controlDrops, 0);
  // Both processes log both directions of every SA pair they built.
  const lines = readFileSync(keylog, 'utf8').trim().split('\n');
  assert.ok(lines.length >= 4 * (summary.handshakes as number), `${lines.length} key log lines`);
  for (const l of lines)
    assert.match(l, /^"IPv4","\*","\*","0x[0-9a-f]{8}","[^"]+","0x[0-9a-f]{72}","NULL",""$/);
});
