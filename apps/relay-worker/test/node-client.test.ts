/**
 * The Node client (`roamlink connect`'s TunnelClient, apps/client/src/tunnel.ts) against the
 * Workers relay on workerd: it names its session on every request (`?sid=` on the WebSocket URL,
 * `Roamlink-Session` on its HTTP requests), so the Worker routes them all to one Durable Object.
 * Once racing WebSocket and HTTP (the relay picks WebSocket), once over HTTP alone (only the
 * header routes it); each time 256 KiB through a stream to a TCP echo server, byte for byte.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { nobleProvider, STREAM_PATH_PAYLOAD, Suite } from '@roamlink/core';
import type { Miniflare } from 'miniflare';
import { TunnelClient } from '../../client/src/tunnel.ts';
import {
  buildWorker,
  echoServer,
  echoThrough,
  makeKeys,
  type RelayKeys,
  sha256,
  startWorker,
  until,
} from './worker-harness.ts';

let keys: RelayKeys;
let persist = '';
let mf: Miniflare;
let port = 0;
let echo: Awaited<ReturnType<typeof echoServer>>;

before(async () => {
  const { code } = await buildWorker();
  keys = makeKeys();
  persist = mkdtempSync(join(tmpdir(), 'roamlink-worker-client-'));
  ({ mf, port } = await startWorker({ code, keys, persist }));
  echo = await echoServer();
});

after(async () => {
  await mf?.dispose();
  echo?.server.close();
  rmSync(persist, { recursive: true, force: true });
});

async function session(http: 'race' | 'alone'): Promise<void> {
  const relay = { address: '127.0.0.1', port };
  const t = await TunnelClient.start({
    relay,
    relayHttp: relay,
    relayKey: keys.relay.publicKey,
    keypair: keys.client,
    provider: nobleProvider,
    suites: [Suite.CHACHA20_POLY1305],
    // A Workers relay has neither UDP nor TCP.
    enabled: { udp: false, tcp: false, ws: http === 'race', http: true },
    proxy: false,
  });
  try {
    await until(() => t.status().encapsulation !== null, 10_000, 'registration');
    assert.equal(t.status().encapsulation, http === 'race' ? 'websocket' : 'http-stream');
    const data = new Uint8Array(randomBytes(256 * 1024));
    const s = await t.dialer.connect({ host: '127.0.0.1', port: echo.port });
    const back = await echoThrough(s, data, 20_000);
    assert.equal(sha256(back), sha256(data), 'every byte back, in order');
    // The Workers relay announces no MAX_DATAGRAM: the client's packets stay within 64 KiB.
    assert.equal(t.host.mux.maxPayload, STREAM_PATH_PAYLOAD);
    if (http === 'alone') {
      // workerd passes the up-stream (a request body read as it comes, the 200 before it ends):
      // once open, another 256 KiB goes both ways on it, and it stays open.
      await until(() => t.status().httpUpstream === 'live', 5000, 'the up-stream');
      const more = new Uint8Array(randomBytes(256 * 1024));
      const s2 = await t.dialer.connect({ host: '127.0.0.1', port: echo.port });
      assert.equal(sha256(await echoThrough(s2, more, 20_000)), sha256(more));
      s2.destroy();
      assert.equal(t.status().httpUpstream, 'live');
    }
    s.destroy();
    assert.equal(
      t.status().encapsulation,
      http === 'race' ? 'websocket' : 'http-stream',
      'no move',
    );
  } finally {
    await t.close();
  }
}

test('the Node client races WebSocket and HTTP against a Workers relay: one object, WebSocket chosen', () =>
  session('race'));

test('the Node client over HTTP alone: the Roamlink-Session header routes every request', () =>
  session('alone'));

// --- Over TLS, as an edge platform serves it ------------------------------------------------------

const TLS_DIR = fileURLToPath(
  new URL('../../../packages/node/test/fixtures/tls/', import.meta.url),
);

/**
 * The Worker on https:// (workerd's own TLS, a certificate for localhost from the test CA) and the
 * Node client given only its URL, as a user connects to an edge relay: wss:// and https:// paths,
 * the CA trusted with the client's `tls.ca`. Racing, WebSocket wins; alone, HTTP carries a
 * stream. Without the CA, no path comes up and the failure names the certificate.
 */
test('the Node client reaches the Workers relay over TLS (wss:// and https://), given its URL and CA', async () => {
  const tlsPersist = mkdtempSync(join(tmpdir(), 'roamlink-worker-tls-'));
  const { code } = await buildWorker();
  const w = await startWorker({
    code,
    keys,
    persist: tlsPersist,
    tls: { certPath: join(TLS_DIR, 'relay.pem'), keyPath: join(TLS_DIR, 'relay.key') },
  });
  assert.equal(w.url.protocol, 'https:');
  const ca = [readFileSync(join(TLS_DIR, 'ca.pem'), 'utf8')];
  const start = (ws: boolean, tls: { ca?: string[] }) =>
    TunnelClient.start({
      // Unused: UDP and TCP are off (an edge relay has neither).
      relay: { address: '127.0.0.1', port: w.port },
      relayUrl: `https://localhost:${w.port}`,
      tls,
      relayKey: keys.relay.publicKey,
      keypair: keys.client,
      provider: nobleProvider,
      suites: [Suite.CHACHA20_POLY1305],
      enabled: { udp: false, tcp: false, ws, http: true },
      proxy: false,
    });
  try {
    for (const ws of [true, false]) {
      const t = await start(ws, { ca });
      try {
        await until(() => t.status().encapsulation !== null, 10_000, 'registration over TLS');
        // Alone, HTTP streams; on a loaded machine (CI runs this beside everything else) a first
        // body byte later than the buffering deadline makes the path poll instead, by design.
        // Either carries the stream below; streaming over TLS itself is tls.test.ts's.
        const http = ['http-stream', 'http-poll'];
        assert.ok(
          ws ? t.status().encapsulation === 'websocket' : http.includes(t.status().encapsulation!),
          String(t.status().encapsulation),
        );
        const data = new Uint8Array(randomBytes(256 * 1024));
        const s = await t.dialer.connect({ host: '127.0.0.1', port: echo.port });
        assert.equal(sha256(await echoThrough(s, data, 20_000)), sha256(data));
        s.destroy();
      } finally {
        await t.close();
      }
    }
    // No CA: the certificate is not trusted, so the one path cannot open, and the log says why.
    const failures: string[] = [];
    await assert.rejects(
      TunnelClient.start({
        relay: { address: '127.0.0.1', port: w.port },
        relayUrl: `https://localhost:${w.port}`,
        relayKey: keys.relay.publicKey,
        keypair: keys.client,
        provider: nobleProvider,
        suites: [Suite.CHACHA20_POLY1305],
        enabled: { udp: false, tcp: false, ws: true, http: false },
        proxy: false,
        redial: false,
        onLog: (msg, f) => {
          if (msg === 'dial-failed') failures.push(String(f?.error));
        },
      }),
      /no transport to the relay could be opened/,
    );
    assert.match(failures.join('\n'), /UNABLE_TO_VERIFY_LEAF_SIGNATURE/);
  } finally {
    await w.mf.dispose();
    rmSync(tlsPersist, { recursive: true, force: true });
  }
});
