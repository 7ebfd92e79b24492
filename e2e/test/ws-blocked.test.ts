/**
 * Spec 3: WebSocket blocked. The page reaches the relay through a reverse proxy (the static
 * server) that refuses every WebSocket upgrade with 403 and passes HTTP on, adding Via. The page
 * must be connected over HTTP in under 1 s (socket.io documents waits of 10 s and more), and the
 * verdict must show the proxy. Once per relay (harness: `E2E_RELAYS`): on workerd the proxy stands
 * where the edge would, and the routing id in every request's URL takes the HTTP requests to the
 * session's Durable Object.
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

for (const kind of relayKinds()) {
  describe(`${kind} relay`, () => {
    let s: PageSetup;

    before(async () => {
      s = await startPageSetup(kind, { proxied: true });
    });

    after(async () => {
      await s?.stop();
    });

    test('WebSocket refused by a proxy: connected over HTTP in under 1 s, and the verdict shows the proxy', async (t) => {
      const { ms, status } = await pageConnect(s.b.page, s.connect);
      t.diagnostic(
        `connected in ${ms.toFixed(0)} ms over ${status.encapsulation}; verdict ${status.verdict}; ${s.site.upgradesRefused} upgrade(s) refused`,
      );
      assert.ok(s.site.upgradesRefused >= 1, 'the page tried WebSocket');
      assert.equal(status.state, 'connected');
      assert.equal(status.encapsulation, 'http-stream');
      assert.ok(ms < 1000, `connected in ${ms.toFixed(0)} ms`);
      // The proxy added Via: the relay sees a protocol translation.
      assert.equal(status.verdict, 'protocol');

      // The HTTP path carries a stream too.
      await pageStartEcho(s.b.page, { host: LOOPBACK, port: s.echo.port, total: 1024 * 1024 });
      const p = await pageFinish(s.b.page);
      await screenshot(s.b.page, `ws-blocked-http-${kind}`);
      assert.equal(p.error, undefined, `transfer failed: ${p.error}`);
      assert.equal(p.received, 1024 * 1024);
      const after = await pageStatus(s.b.page);
      assert.equal(after.encapsulation, 'http-stream');
      assert.equal(after.handshakes, 1);
      t.diagnostic(`1 MiB echoed over HTTP through the proxy in ${p.ms.toFixed(0)} ms`);
    });
  });
}
