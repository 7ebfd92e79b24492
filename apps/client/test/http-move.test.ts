/**
 * HTTP streaming between real processes: the relay and a client on loopback, the client without
 * UDP, TCP and WebSocket (--no-udp --no-tcp --no-ws), so its candidates are HTTP streaming and
 * HTTP polling and the relay picks streaming. Echoes must flow over it, with the one handshake the
 * session started with and no ESP drops but the replays that racing two paths causes on purpose.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { assertOnlyReplayDrops, runDemo } from './demo-process.ts';

test('relay and client processes: registered on HTTP streaming, echoes flow', async () => {
  const r = await runDemo(['--no-udp', '--no-tcp', '--no-ws'], async (d) => {
    await d.until(
      (l) => l.event === 'registered' && l.encapsulation === 'http-stream',
      'registration on HTTP streaming',
    );
    await d.sleep(3000);
  });
  const { summary, events, detail } = r;
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

  assertOnlyReplayDrops(r);
});
