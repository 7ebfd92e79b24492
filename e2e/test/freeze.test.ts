/**
 * Page Lifecycle: mid-transfer the page is frozen for 2 s (as a browser freezes a background tab:
 * no tasks run, no timers fire, network events wait) and resumed. On `resume` the session dials
 * its transports afresh and registers again on the same SA; the stream continues, every byte
 * once, in order. Once per relay (harness: `E2E_RELAYS`).
 *
 * CDP's `Page.setWebLifecycleState` cannot freeze a page that Playwright drives (its focus
 * emulation keeps the page visible, which makes the freeze a no-op), so the spec does what a
 * freeze does to the page itself: it fires `freeze`, holds the page's only thread for 2 s (no
 * task, timer or network event runs meanwhile), then fires `resume`.
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

const TOTAL = 8 * 1024 * 1024;
const RATE = 4 * 1024 * 1024;

for (const kind of relayKinds()) {
  describe(`${kind} relay`, () => {
    let s: PageSetup;

    before(async () => {
      s = await startPageSetup(kind);
    });

    after(async () => {
      await s?.stop();
    });

    test('frozen for 2 s mid-transfer and resumed: same SA, registered again, every byte once', async (t) => {
      const { status: before } = await pageConnect(s.b.page, s.connect);
      await pageStartEcho(s.b.page, {
        host: LOOPBACK,
        port: s.echo.port,
        total: TOTAL,
        rate: RATE,
      });
      const deadline = Date.now() + 30_000;
      for (;;) {
        const p = await pageProgress(s.b.page);
        assert.ok(p && !p.error, `transfer failed early: ${p?.error}`);
        if (p.received >= TOTAL / 4) break;
        assert.ok(Date.now() < deadline, 'the transfer did not get going');
        await sleep(20);
      }
      await s.b.page.evaluate((ms) => {
        document.dispatchEvent(new Event('freeze'));
        const until = Date.now() + ms;
        while (Date.now() < until) {
          // Frozen: nothing else runs on the page's thread.
        }
        document.dispatchEvent(new Event('resume'));
      }, 2000);
      const p = await pageFinish(s.b.page);
      await screenshot(s.b.page, `freeze-resumed-${kind}`);
      const after = await pageStatus(s.b.page);
      const events = await pageEvents(s.b.page);
      t.diagnostic(
        `after resume: ${after.moves} moves, ${after.handovers} handovers, ${after.bytesRetransmitted} bytes sent again; transfer ${p.ms.toFixed(0)} ms`,
      );
      assert.equal(p.error, undefined, `transfer failed: ${p.error}`);
      assert.equal(p.received, TOTAL);
      assert.ok(
        events.some((e) => e.type === 'log:freeze'),
        'the page saw freeze',
      );
      assert.ok(
        events.some(
          (e) => e.type === 'log:refresh' && (e.detail as { reason: string }).reason === 'resume',
        ),
        'the session refreshed its transports on resume',
      );
      assert.ok(after.moves > before.moves, 'registered again');
      assert.equal(after.handshakes, before.handshakes, 'no new handshake');
      assert.equal(after.localSpi, before.localSpi, 'the same SA');
    });
  });
}
