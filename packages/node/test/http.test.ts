/**
 * RLHTTP/1 on loopback: an HttpRelayTransport on a Node HTTP server that echoes every datagram,
 * and the two clients. Datagrams both ways over streaming and polling, batching in both
 * directions, 4xx answers, CORS preflights, session expiry, and a buffering reverse proxy (it
 * reads each upstream response whole before forwarding it): the stream falls back to polling on
 * the same path, polling through it works. The fallback's wire format in detail: http-fallback.test.ts.
 */
import assert from 'node:assert/strict';
import { createServer, request } from 'node:http';
import type { AddressInfo } from 'node:net';
import { test } from 'node:test';
import { HttpPollClient, HttpStreamClient, writeChunk } from '../src/http.ts';
import { bytes, collector, sleep, startRelay } from './http-rig.ts';

/** A reverse proxy that buffers: each upstream response is read whole, then forwarded. */
async function startBufferingProxy(
  upstreamPort: number,
): Promise<{ port: number; close(): Promise<void> }> {
  const server = createServer((req, res) => {
    const up = request(
      {
        hostname: '127.0.0.1',
        port: upstreamPort,
        method: req.method,
        path: req.url,
        headers: { ...req.headers, via: '1.1 buffering-proxy' },
      },
      (ur) => {
        const chunks: Buffer[] = [];
        ur.on('data', (c: Buffer) => chunks.push(c));
        ur.on('end', () => {
          const body = Buffer.concat(chunks);
          // End-to-end fields pass (RFC 9110 §7.6.1); the framing is the proxy's own.
          const { connection, 'keep-alive': _k, 'transfer-encoding': _t, ...fields } = ur.headers;
          res.writeHead(ur.statusCode ?? 502, { ...fields, 'content-length': String(body.length) });
          res.end(body);
        });
        ur.on('error', () => res.destroy());
      },
    );
    up.on('error', () => res.destroy());
    res.on('close', () => up.destroy());
    req.pipe(up);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    port: (server.address() as AddressInfo).port,
    close: () => {
      server.closeAllConnections();
      return new Promise<void>((r) => server.close(() => r()));
    },
  };
}

test('streaming: datagrams both ways, in order, and the relay sees the request', async () => {
  const relay = await startRelay();
  const c = collector();
  const client = new HttpStreamClient({
    baseUrl: `http://127.0.0.1:${relay.port}/rl`,
    headers: { 'User-Agent': 'roamlink-test' },
    ...c.opts,
  });
  try {
    assert.match(client.pathId, /^hs:[0-9a-f]{32}$/);
    for (let i = 1; i <= 50; i++) assert.ok(client.send(bytes(i, i, i)));
    await c.until(() => c.got.length === 50, '50 echoes');
    assert.deepEqual(
      c.got.map((d) => d[0]),
      Array.from({ length: 50 }, (_, i) => i + 1),
    );
    assert.equal(c.opened(), 1);
    assert.deepEqual(c.errors, []);
    const r = relay.received[0]!;
    assert.equal(r.path, client.pathId);
    assert.equal(r.view.remote.address, '127.0.0.1');
    assert.equal(r.view.local.port, relay.port);
    assert.equal(r.view.url, `/rl/up?s=${client.token}&m=stream`);
    assert.equal(r.view.host, `127.0.0.1:${relay.port}`);
    assert.ok(r.view.headers.some(([k, v]) => k === 'user-agent' && v === 'roamlink-test'));
    assert.deepEqual(relay.transport.paths, [client.pathId]);
    // The client's own view names the same URL and Host.
    assert.equal(client.view().host, `127.0.0.1:${relay.port}`);
    assert.ok(client.view().url.endsWith(r.view.url));
  } finally {
    client.close();
    await relay.close();
  }
});

test('polling: datagrams both ways, in order', async () => {
  const relay = await startRelay();
  const c = collector();
  const client = new HttpPollClient({ baseUrl: `http://127.0.0.1:${relay.port}/rl`, ...c.opts });
  try {
    assert.match(client.pathId, /^hp:[0-9a-f]{32}$/);
    for (let i = 1; i <= 30; i++) client.send(bytes(i));
    await c.until(() => c.got.length === 30, '30 echoes');
    assert.deepEqual(
      c.got.map((d) => d[0]),
      Array.from({ length: 30 }, (_, i) => i + 1),
    );
    // A second round after the first answers: the next poll was outstanding.
    client.send(bytes(99));
    await c.until(() => c.got.length === 31, 'one more echo');
    assert.equal(c.got[30]![0], 99);
    assert.equal(c.opened(), 1);
    assert.equal(relay.received[0]!.path, client.pathId);
    assert.equal(relay.received[0]!.view.url, `/rl/up?s=${client.token}&m=poll`);
  } finally {
    client.close();
    await relay.close();
  }
});

test('batching: what is sent in one turn rides one POST; what is queued together, one poll answer', async () => {
  const relay = await startRelay({}, false);
  const c = collector();
  const client = new HttpPollClient({ baseUrl: `http://127.0.0.1:${relay.port}/rl`, ...c.opts });
  try {
    for (let i = 0; i < 20; i++) client.send(new Uint8Array(100).fill(i));
    // The relay hands the datagrams up before answering: wait for the answer too.
    while (relay.received.length < 20 || client.stats.posts < 1) await sleep(10);
    await sleep(20);
    assert.equal(client.stats.posts, 1);
    assert.deepEqual(
      relay.received.map((r) => r.d[0]),
      Array.from({ length: 20 }, (_, i) => i),
    );
    // A poll is held now: ten datagrams queued in one turn come back in one answer.
    await new Promise((r) => setTimeout(r, 50));
    const before = client.polls;
    for (let i = 0; i < 10; i++) relay.transport.send(client.pathId, bytes(i));
    await c.until(() => c.got.length === 10, 'ten datagrams down');
    assert.equal(client.polls, before + 1);
    // While one POST is in flight, what follows waits and leaves together in the next.
    client.send(bytes(1));
    setImmediate(() => {
      for (let i = 0; i < 5; i++) client.send(bytes(2));
    });
    while (relay.received.length < 26 || client.stats.posts < 3) await sleep(10);
    await sleep(20);
    assert.equal(client.stats.posts, 3);
    assert.equal(relay.received.length, 26);
  } finally {
    client.close();
    await relay.close();
  }
});

test('a POST carries up to 960 KiB: 800 KiB sent in one turn leave in one POST, a poll answer brings as much', async () => {
  const relay = await startRelay({}, false);
  const c = collector();
  const client = new HttpPollClient({ baseUrl: `http://127.0.0.1:${relay.port}/rl`, ...c.opts });
  try {
    client.send(bytes(0));
    while (client.stats.posts < 1) await sleep(5);
    for (let i = 1; i <= 100; i++) assert.ok(client.send(new Uint8Array(8192).fill(i)));
    while (relay.received.length < 101 || client.stats.posts < 2) await sleep(5);
    await sleep(20);
    assert.equal(client.stats.posts, 2, 'one POST for the 800 KiB');
    // Down: 800 KiB queued in one turn come back in one poll answer.
    await sleep(50);
    const polls = client.polls;
    for (let i = 1; i <= 100; i++)
      relay.transport.send(client.pathId, new Uint8Array(8192).fill(i));
    await c.until(() => c.got.length === 100, '100 datagrams down');
    assert.equal(client.polls, polls + 1);
    assert.deepEqual(
      c.got.map((d) => d[0]),
      Array.from({ length: 100 }, (_, i) => i + 1),
    );
  } finally {
    client.close();
    await relay.close();
  }
});

test('bad token, route, method, mode or body: 4xx', async () => {
  const relay = await startRelay();
  const base = `http://127.0.0.1:${relay.port}`;
  const tok = 'a'.repeat(32);
  try {
    const post = (path: string, body: Uint8Array = bytes(0, 3, 7)) =>
      fetch(`${base}${path}`, { method: 'POST', body });
    assert.equal((await post('/rl/up?s=short&m=stream')).status, 400);
    assert.equal((await post('/rl/up?m=stream')).status, 400);
    assert.equal((await post(`/rl/up?s=${tok}&m=bogus`)).status, 400);
    assert.equal((await post(`/rl/up?s=${'b'.repeat(32)}&m=poll`, bytes(0, 1))).status, 400);
    assert.equal((await post(`/rl/up?s=${'c'.repeat(32)}&m=poll`, bytes(0, 9, 1))).status, 400);
    assert.equal((await fetch(`${base}/rl/nope`)).status, 404);
    assert.equal((await fetch(`${base}/rl/up?s=${tok}&m=stream`)).status, 405);
    assert.equal((await fetch(`${base}/rl/ws`)).status, 426);
    // The token is now a streaming session: polling with it conflicts.
    assert.equal((await post(`/rl/up?s=${tok}&m=stream`)).status, 204);
    assert.equal((await fetch(`${base}/rl/poll?s=${tok}`)).status, 409);
    // Outside the base: left to the caller.
    assert.equal((await fetch(`${base}/health`)).status, 418);
    assert.equal(relay.transport.stats.rejected, 9);
    assert.equal(relay.received.length, 1);
  } finally {
    await relay.close();
  }
});

test('CORS: a preflight for a known route is 204 and allows the fields clients send', async () => {
  const relay = await startRelay();
  const base = `http://127.0.0.1:${relay.port}`;
  const preflight = (path: string) =>
    fetch(`${base}${path}`, {
      method: 'OPTIONS',
      headers: {
        Origin: 'http://page.example',
        'Access-Control-Request-Method': path === '/rl/up' ? 'POST' : 'GET',
        'Access-Control-Request-Headers': 'content-type, roamlink-ack, roamlink-session',
      },
    });
  try {
    for (const path of ['/rl/up', '/rl/down', '/rl/poll']) {
      const r = await preflight(path);
      assert.equal(r.status, 204, path);
      assert.equal(r.headers.get('access-control-allow-origin'), '*');
      assert.equal(r.headers.get('access-control-allow-methods'), 'GET, POST');
      const allowed = (r.headers.get('access-control-allow-headers') ?? '')
        .split(',')
        .map((h) => h.trim().toLowerCase());
      // Every field a client sends: the Workers relay routes by Roamlink-Session (PROTOCOL §7.5).
      for (const h of ['content-type', 'roamlink-ack', 'roamlink-session']) {
        assert.ok(allowed.includes(h), `${path}: ${h} in ${allowed.join(', ')}`);
      }
    }
    assert.equal((await preflight('/rl/nope')).status, 404);
    assert.equal((await preflight('/rl/ws')).status, 426);
    assert.equal(relay.received.length, 0);
  } finally {
    await relay.close();
  }
});

test('a session without requests expires and is reported', async () => {
  const relay = await startRelay({ sessionIdleMs: 150 });
  const c = collector();
  const client = new HttpPollClient({ baseUrl: `http://127.0.0.1:${relay.port}/rl`, ...c.opts });
  try {
    client.send(bytes(1));
    await c.until(() => c.got.length === 1, 'an echo');
    client.close();
    while (relay.closed.length === 0) await new Promise((r) => setTimeout(r, 20));
    assert.deepEqual(relay.closed, [{ path: client.pathId, reason: 'closed: session expired' }]);
    assert.deepEqual(relay.transport.paths, []);
    assert.equal(relay.transport.send(client.pathId, bytes(1)), false);
  } finally {
    client.close();
    await relay.close();
  }
});

test('a buffering proxy: the stream falls back to polling on the same path, polling through it works', async () => {
  const relay = await startRelay();
  const proxy = await startBufferingProxy(relay.port);
  const baseUrl = `http://127.0.0.1:${proxy.port}/rl`;
  const s = collector();
  const changes: [string, string][] = [];
  const stream = new HttpStreamClient({
    baseUrl,
    ...s.opts,
    onModeChange: (path, mode) => changes.push([path, mode]),
  });
  const p = collector();
  const poll = new HttpPollClient({ baseUrl, ...p.opts });
  try {
    // The first POST's answer brings the echo (the stream never shows a byte) and sets the
    // deadline (clamp(1.5 T, 100 ms, 3 s)); then the path polls the same token.
    stream.send(bytes(7));
    const t0 = performance.now();
    await s.until(() => s.got.length === 1, 'the echo in the POST answer');
    assert.equal(stream.mode, 'stream');
    assert.equal(s.opened(), 1);
    while (changes.length === 0 && performance.now() - t0 < 2500) await sleep(10);
    assert.deepEqual(changes, [[stream.pathId, 'poll']]);
    assert.equal(stream.mode, 'poll');
    for (let i = 1; i <= 5; i++) assert.ok(stream.send(bytes(i)));
    await s.until(() => s.got.length === 6, 'five echoes by polling');
    assert.deepEqual(
      s.got.map((d) => d[0]),
      [7, 1, 2, 3, 4, 5],
    );
    assert.deepEqual(s.errors, []);

    for (let i = 1; i <= 10; i++) poll.send(bytes(i));
    await p.until(() => p.got.length === 10, 'ten echoes through the proxy');
    assert.deepEqual(
      p.got.map((d) => d[0]),
      Array.from({ length: 10 }, (_, i) => i + 1),
    );
    assert.deepEqual(p.errors, []);
    // The relay's view shows the proxy.
    const viaPoll = relay.received.find((r) => r.path === poll.pathId)!;
    assert.ok(viaPoll.view.headers.some(([k]) => k === 'via'));
  } finally {
    stream.close();
    poll.close();
    await proxy.close();
    await relay.close();
  }
});

test('writeChunk: a chunk of several pieces leaves in one write, framed as one chunk', async () => {
  // A corked ServerResponse alone writes the size line, the pieces and the CRLF one by one.
  let writes = -1;
  const server = createServer((_req, res) => {
    res.writeHead(200, { 'Content-Type': 'application/octet-stream' });
    res.flushHeaders();
    setTimeout(() => {
      const sock = res.socket as unknown as {
        _write: (...a: unknown[]) => void;
        _writev: (...a: unknown[]) => void;
      };
      writes = 0;
      for (const k of ['_write', '_writev'] as const) {
        const orig = sock[k];
        sock[k] = (...a: unknown[]) => {
          writes++;
          orig.apply(sock, a);
        };
      }
      writeChunk(res, [Uint8Array.of(1, 2), Uint8Array.of(3), Uint8Array.of(4, 5, 6)]);
      res.end();
    }, 20);
  });
  server.listen(0, '127.0.0.1');
  await new Promise((r) => server.once('listening', r));
  const port = (server.address() as AddressInfo).port;
  try {
    const raw = await new Promise<string>((resolve, reject) => {
      const req = request({ port, host: '127.0.0.1', path: '/' }, (res) => {
        const parts: Buffer[] = [];
        res.on('data', (b: Buffer) => parts.push(b));
        res.on('end', () => resolve(Buffer.concat(parts).toString('hex')));
      });
      req.on('error', reject);
      req.end();
    });
    assert.equal(raw, '010203040506');
    // The chunk in one write; res.end() adds the last-chunk in a second.
    assert.equal(writes, 2);
  } finally {
    server.close();
    server.closeAllConnections();
  }
});
