/**
 * HTTP streaming between real processes: the relay and a client on loopback, the client without
 * UDP, TCP and WebSocket (--no-udp --no-tcp --no-ws), so its candidates are HTTP streaming and
 * HTTP polling and the relay picks streaming. Echoes must flow over it, with the one handshake the
 * session started with and no ESP drops but the replays that racing two paths causes on purpose.
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

test('relay and client processes: registered on HTTP streaming, echoes flow', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'roamlink-http-'));
  const demo = fileURLToPath(new URL('../src/demo.ts', import.meta.url));
  const child = spawn(
    process.execPath,
    [demo, '--port', '0', '--dir', dir, '--log-events', '--no-udp', '--no-tcp', '--no-ws'],
    { stdio: ['ignore', 'pipe', 'pipe'] },
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
      (l) => l.event === 'registered' && l.encapsulation === 'http-stream',
      'registration on HTTP streaming',
    );
    await sleep(3000);
  } finally {
    child.kill('SIGINT');
  }
  const code = await exited;
  assert.equal(code, 0, `demo failed: ${err}`);

  const summary = lines.at(-1)!;
  const events = lines.slice(0, -1);
  const detail = JSON.stringify(summary);
  assert.equal(summary.state, 'established', detail);
  assert.equal(summary.encapsulation, 'http-stream', detail);
  assert.equal(summary.handshakes, 1, detail);
  assert.equal(summary.moves, 0, detail);
  // No path failed: the stream was not taken for a buffering proxy on loopback.
  assert.ok(!events.some((e) => e.event === 'moved'), JSON.stringify(events));
  assert.ok(
    events.filter((e) => e.event === 'registered').every((e) => e.encapsulation === 'http-stream'),
    JSON.stringify(events),
  );

  // 3 s at one ping per 100 ms: most answered, only the last few may be in flight.
  assert.ok((summary.pongs as number) >= 20, detail);
  assert.ok((summary.pingsSent as number) - (summary.pongs as number) <= 3, detail);

  // No ESP drops but replays: racing two encapsulations sends some packets twice on purpose.
  const drops = summary.espDropsByReason as Record<string, number>;
  for (const [reason, n] of Object.entries(drops)) {
    if (reason !== 'replay') assert.equal(n, 0, `${reason}: ${detail}`);
  }
});
