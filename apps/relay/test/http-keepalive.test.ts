/**
 * The relay's HTTP port keeps a quiet client's POST connection: after a pause longer than Node's
 * default keep-alive (5 s), the next POST goes on the same connection, so it costs no new
 * connection (and, through a proxy, no new CONNECT tunnel).
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { type Http1Response, HttpUplink, RELAY_HTTP_IDLE_MS } from '@roamlink/node';
import { startLoopbackRelay } from './loopback-relay.ts';

const NODE_DEFAULT_KEEPALIVE_MS = 5000;

test('an idle POST connection outlives Node’s default keep-alive', async () => {
  const relay = await startLoopbackRelay({ http: { address: '127.0.0.1', port: 0 } });
  const { address, port } = relay.http!;
  const up = new HttpUplink({ hostname: address, port, host: `${address}:${port}` });
  // An empty batch: a well-formed POST that opens the session and carries nothing.
  const post = (): Promise<Http1Response> =>
    new Promise((resolve, reject) =>
      up.post('/rl/up?s=keepalive-test-token&m=stream', [], new Uint8Array(0), (e, r) =>
        e ? reject(e) : resolve(r!),
      ),
    );
  try {
    assert.equal((await post()).status, 204);
    const first = up.socket!;
    // Past Node's default and the 1 s grace Node adds to it.
    await new Promise((r) => setTimeout(r, NODE_DEFAULT_KEEPALIVE_MS + 2000));
    assert.equal(first.destroyed, false, 'still open after the pause');
    const second = await post();
    assert.equal(second.status, 204);
    assert.equal(up.socket, first, 'the same connection');
    assert.match(
      second.headers.get('keep-alive') ?? '',
      new RegExp(`timeout=${RELAY_HTTP_IDLE_MS / 1000}`),
    );
  } finally {
    up.close();
    await relay.close(0);
  }
});
