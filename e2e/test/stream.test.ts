/**
 * Spec 1: a page (served from another origin than the relay: CORS) connects to the relay, opens a
 * stream to a local TCP echo server and sends 16 MiB, every byte checked on the way back. Once per
 * relay (harness: `E2E_RELAYS`): the Node relay and the Workers relay on workerd.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import {
  LOOPBACK,
  type PageSetup,
  relayKinds,
  screenshot,
  startPageSetup,
} from '../src/harness.ts';
import { pageConnect, pageFinish, pageStartEcho, pageStatus } from '../src/page.ts';

const TOTAL = 16 * 1024 * 1024;

for (const kind of relayKinds()) {
  describe(`${kind} relay`, () => {
    let s: PageSetup;

    before(async () => {
      s = await startPageSetup(kind);
    });

    after(async () => {
      await s?.stop();
    });

    test('a page connects, opens a stream to a TCP echo server, sends and verifies 16 MiB', async (t) => {
      const { ms, status: first } = await pageConnect(s.b.page, s.connect);
      assert.equal(first.state, 'connected');
      // Round 1 goes to whichever RREQ the relay read first (on a busy machine, HTTP's at times);
      // the preferred path that arrives within the grace window takes over at once.
      let status = first;
      for (let i = 0; i < 40 && status.encapsulation !== 'websocket'; i++) {
        await new Promise((r) => setTimeout(r, 50));
        status = await pageStatus(s.b.page);
      }
      assert.equal(status.encapsulation, 'websocket', 'the relay picks WebSocket over HTTP');
      assert.equal(status.handshakes, 1);
      assert.match(status.sid, /^[0-9a-f]{32}$/, 'a session routing id');
      t.diagnostic(`connected in ${ms.toFixed(0)} ms over ${status.encapsulation}`);

      await pageStartEcho(s.b.page, { host: LOOPBACK, port: s.echo.port, total: TOTAL });
      const p = await pageFinish(s.b.page);
      await screenshot(s.b.page, `stream-16mib-${kind}`);
      assert.equal(p.error, undefined, `transfer failed: ${p.error} ${s.b.errors.join('; ')}`);
      assert.equal(p.received, TOTAL);
      const after = await pageStatus(s.b.page);
      assert.equal(after.handshakes, 1);
      assert.equal(after.localSpi, status.localSpi);
      assert.ok(after.bytesReceived >= TOTAL);
      // The page is on another origin: the HTTP paths stayed up only if the relay answers CORS.
      assert.deepEqual(
        after.candidates.map((c) => c.encapsulation).sort(),
        ['http-poll', 'http-stream', 'websocket'],
        'every encapsulation is still a candidate',
      );
      t.diagnostic(
        `16 MiB echoed in ${p.ms.toFixed(0)} ms (${((2 * TOTAL) / 1e6 / (p.ms / 1000)).toFixed(1)} MB/s both ways); retransmitted ${after.bytesRetransmitted} bytes`,
      );
      assert.deepEqual(s.b.errors, []);
    });
  });
}
