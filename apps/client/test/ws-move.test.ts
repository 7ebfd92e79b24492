/**
 * A real move from TCP to WebSocket: the relay and client processes on loopback, the client
 * without UDP (--no-udp), so registered on TCP (the relay's choice over WebSocket); then the
 * client's TCP connection is closed under it (SIGUSR1) and the client moves to the WebSocket it
 * already has. The session must end on WebSocket with the one handshake it started with (a move is
 * a registration round, never a new key exchange), and echoes must keep coming back over it.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

test('relay and client processes: a move from TCP to WebSocket keeps the SA', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'roamlink-ws-move-'));
  const demo = fileURLToPath(new URL('../src/demo.ts', import.meta.url));
  const child = spawn(
    process.execPath,
    [demo, '--port', '0', '--dir', dir, '--log-events', '--no-udp'],
    {
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  let err = '';
  child.stderr.on('data', (d) => (err += d));
  const lines: Record<string, unknown>[] = [];
  const exited = new Promise<number | null>((r) => child.once('exit', r));
  let onLine = (): void => {};
  createInterface({ input: child.stdout }).on('line', (l) => {
    lines.push(JSON.parse(l) as Record<string, unknown>);
    onLine();
  });
  const until = (pred: (l: Record<string, unknown>) => boolean, what: string): Promise<void> =>
    new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no ${what} in 10 s: ${err}`)), 10_000);
      onLine = () => {
        if (lines.some(pred)) {
          clearTimeout(timer);
          resolve();
        }
      };
      onLine();
    });

  try {
    await until(
      (l) => l.event === 'registered' && l.encapsulation === 'tcp',
      'registration on TCP',
    );
    await sleep(1500);
    child.kill('SIGUSR1');
    await sleep(2500);
  } finally {
    child.kill('SIGINT');
  }
  const code = await exited;
  assert.equal(code, 0, `demo failed: ${err}`);

  const summary = lines.at(-1)!;
  const events = lines.slice(0, -1);
  const detail = JSON.stringify(summary);
  assert.equal(summary.state, 'established', detail);
  assert.equal(summary.encapsulation, 'websocket', detail);
  // The move was a registration round on the same SA: no new key exchange, no rekey in 4 s.
  assert.equal(summary.handshakes, 1, detail);
  assert.equal(summary.rekeys, 0, detail);
  assert.ok((summary.registrations as number) >= 2, detail);
  assert.equal(summary.moves, 1, detail);

  // The client was on TCP before the move and on WebSocket after it.
  const moved = events.findIndex((e) => e.event === 'moved');
  assert.ok(moved > 0, JSON.stringify(events));
  assert.equal(events[moved]!.reason, 'tcp-closed');
  const before = events.slice(0, moved).filter((e) => e.event === 'registered');
  const after = events.slice(moved).filter((e) => e.event === 'registered');
  assert.equal(before.at(-1)?.encapsulation, 'tcp', JSON.stringify(events));
  assert.ok(after.length >= 1, JSON.stringify(events));
  assert.ok(
    after.every((e) => e.encapsulation === 'websocket'),
    JSON.stringify(events),
  );

  // Echoes kept coming after the move: 2.5 s at one ping per 100 ms, most of them answered.
  assert.ok((summary.echoesAfterMove as number) >= 15, detail);
  // Only an echo or two in flight on TCP when it closed may be missing.
  assert.ok((summary.pingsSent as number) - (summary.pongs as number) <= 3, detail);

  // No ESP drops but replays: racing two encapsulations sends some packets twice on purpose.
  const drops = summary.espDropsByReason as Record<string, number>;
  for (const [reason, n] of Object.entries(drops)) {
    if (reason !== 'replay') assert.equal(n, 0, `${reason}: ${detail}`);
  }
});
