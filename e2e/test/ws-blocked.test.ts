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
  type Browsing,
  clientKey,
  ensureBundle,
  LOOPBACK,
  openPage,
  relayKinds,
  type StaticServer,
  screenshot,
  startEcho,
  startRelayOf,
  startStatic,
  type TestRelay,
} from '../src/harness.ts';
import { pageConnect, pageFinish, pageStartEcho, pageStatus } from '../src/page.ts';

for (const kind of relayKinds()) {
  describe(`${kind} relay`, () => {
    const key = clientKey();
    let relay: TestRelay;
    let echo: Awaited<ReturnType<typeof startEcho>>;
    let proxy: StaticServer;
    let b: Browsing;

    before(async () => {
      ensureBundle();
      [relay, echo] = await Promise.all([startRelayOf(kind, [key]), startEcho()]);
      proxy = await startStatic(relay);
      b = await openPage(proxy.url);
    });

    after(async () => {
      await b?.close();
      await proxy?.close();
      echo?.server.close();
      await relay?.stop();
    });

    test('WebSocket refused by a proxy: connected over HTTP in under 1 s, and the verdict shows the proxy', async (t) => {
      const { ms, status } = await pageConnect(b.page, {
        relay: proxy.url,
        relayKey: relay.publicKey,
        clientKey: key.secretHex,
      });
      t.diagnostic(
        `connected in ${ms.toFixed(0)} ms over ${status.encapsulation}; verdict ${status.verdict}; ${proxy.upgradesRefused} upgrade(s) refused`,
      );
      assert.ok(proxy.upgradesRefused >= 1, 'the page tried WebSocket');
      assert.equal(status.state, 'connected');
      assert.equal(status.encapsulation, 'http-stream');
      assert.ok(ms < 1000, `connected in ${ms.toFixed(0)} ms`);
      // The proxy added Via: the relay sees a protocol translation.
      assert.equal(status.verdict, 'protocol');

      // The HTTP path carries a stream too.
      await pageStartEcho(b.page, { host: LOOPBACK, port: echo.port, total: 1024 * 1024 });
      const p = await pageFinish(b.page);
      await screenshot(b.page, `ws-blocked-http-${kind}`);
      assert.equal(p.error, undefined, `transfer failed: ${p.error}`);
      assert.equal(p.received, 1024 * 1024);
      const after = await pageStatus(b.page);
      assert.equal(after.encapsulation, 'http-stream');
      assert.equal(after.handshakes, 1);
      t.diagnostic(`1 MiB echoed over HTTP through the proxy in ${p.ms.toFixed(0)} ms`);
    });
  });
}
