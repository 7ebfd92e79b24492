/**
 * Spec 2: mid-transfer the browser goes offline for 3 s (`context.setOffline`) and comes back.
 * The session continues on the same SA (no new handshake), and every byte arrives once, in order
 * (the page checks each byte against its position). Once per relay (harness: `E2E_RELAYS`).
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import {
  LOOPBACK,
  type PageSetup,
  relayKinds,
  screenshot,
  sleep,
  startPageSetup,
} from '../src/harness.ts';
import {
  pageConnect,
  pageEvents,
  pageFinish,
  pageProgress,
  pageStartEcho,
  pageStatus,
} from '../src/page.ts';

const TOTAL = 16 * 1024 * 1024;
/** Paced so that the transfer spans the outage: about 4 s of sending without it. */
const RATE = 4 * 1024 * 1024;
const OFFLINE_MS = 3000;

for (const kind of relayKinds()) {
  describe(`${kind} relay`, () => {
    let s: PageSetup;

    before(async () => {
      s = await startPageSetup(kind);
    });

    after(async () => {
      await s?.stop();
    });

    test('offline for 3 s mid-transfer and back: same SA, no new handshake, every byte once, in order', async (t) => {
      const { status: before } = await pageConnect(s.b.page, s.connect);
      assert.equal(before.state, 'connected');
      await pageStartEcho(s.b.page, {
        host: LOOPBACK,
        port: s.echo.port,
        total: TOTAL,
        rate: RATE,
      });
      // Wait until a quarter has come back: the outage falls mid-transfer.
      const deadline = Date.now() + 30_000;
      for (;;) {
        const p = await pageProgress(s.b.page);
        assert.ok(p && !p.error, `transfer failed early: ${p?.error}`);
        if (p.received >= TOTAL / 4) break;
        assert.ok(Date.now() < deadline, 'the transfer did not get going');
        await sleep(20);
      }
      const wentOffline = performance.now();
      await s.b.context.setOffline(true);
      await sleep(OFFLINE_MS / 2);
      const during = await pageStatus(s.b.page);
      const mid = await pageProgress(s.b.page);
      await screenshot(s.b.page, `offline-during-${kind}`);
      await sleep(OFFLINE_MS / 2);
      await s.b.context.setOffline(false);
      const back = performance.now();
      t.diagnostic(
        `offline ${(back - wentOffline).toFixed(0)} ms at ${mid?.received} bytes back; during it: ${during.state} on ${during.encapsulation}, online=${during.online}`,
      );

      const p = await pageFinish(s.b.page);
      const done = performance.now();
      await screenshot(s.b.page, `offline-after-${kind}`);
      const after = await pageStatus(s.b.page);
      const events = await pageEvents(s.b.page);
      t.diagnostic(
        `finished ${(done - back).toFixed(0)} ms after coming back; ${after.handovers} handovers, ${after.moves} moves, ${after.bytesRetransmitted} bytes sent again; now ${after.encapsulation}`,
      );
      t.diagnostic(
        events
          .filter((e) => !e.type.startsWith('log:') || /lost|up|refresh|dead|fallback/.test(e.type))
          .map((e) => `${e.type} ${JSON.stringify(e.detail)}`)
          .join('\n'),
      );
      assert.equal(p.error, undefined, `transfer failed: ${p.error}`);
      assert.equal(p.received, TOTAL, 'every byte, once');
      assert.equal(after.handshakes, before.handshakes, 'no new handshake');
      assert.equal(after.localSpi, before.localSpi, 'the same SA');
      assert.equal(after.state, 'connected');
      assert.ok(
        events.some((e) => e.type === 'offline') && events.some((e) => e.type === 'online'),
      );
    });
  });
}
