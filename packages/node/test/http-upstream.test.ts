/**
 * The HTTP up-stream (http-upstream.ts, RLHTTP/1 "Upstream, streaming"): once a streaming path's
 * stream shows a byte, the client opens one chunked POST whose body stays open and sends on it
 * instead of a POST per batch, if the relay answers it in time. Against the real relay transport
 * on loopback: the switch keeps order, the relay sees the same URL, a body held back keeps the
 * path on POSTs, an up-stream that ends is replaced after a while, and the relay's answers to
 * bad up-streams.
 */
import assert from 'node:assert/strict';
import { createServer, request } from 'node:http';
import { type AddressInfo, connect, type Socket } from 'node:net';
import { test } from 'node:test';
import { HttpStreamClient } from '../src/http.ts';
import { bytes, collector, sleep, startRelay, waitFor } from './http-rig.ts';

/** A datagram that says its index and has `n` bytes (n ≥ 4). */
function numbered(i: number, n: number): Uint8Array {
  const d = new Uint8Array(n).fill(i & 0xff);
  new DataView(d.buffer).setUint32(0, i);
  return d;
}
const indexOf = (d: Uint8Array): number => new DataView(d.buffer, d.byteOffset).getUint32(0);

test('up-stream: after the stream flows, datagrams leave on one open body, in order and once, under the POSTs’ URL', async () => {
  const relay = await startRelay();
  const c = collector();
  const client = new HttpStreamClient({
    baseUrl: `http://127.0.0.1:${relay.port}/rl`,
    headers: { 'User-Agent': 'roamlink-test' },
    ...c.opts,
  });
  try {
    // Sent from the start: the first ones by POST, the rest on the up-stream once it is open.
    // Paced so that neither end's queue bound (1 MiB) drops: at most ~256 KiB echoing at once.
    const sizes = [4, 100, 511, 512, 1400, 9000, 60_000];
    const total = 3000;
    let sent = 0;
    let bytesSent = 0;
    let bytesBack = 0;
    while (sent < total) {
      bytesBack = c.got.reduce((n, d) => n + d.length, 0);
      if (bytesSent - bytesBack > 256 * 1024) {
        await sleep(1);
        continue;
      }
      const d = numbered(sent, sizes[sent % sizes.length]!);
      assert.ok(client.send(d));
      bytesSent += d.length;
      sent++;
      if (sent % 20 === 0) await sleep(0);
    }
    await c.until(() => c.got.length === total, `${total} echoes`, 15_000);
    assert.deepEqual(
      c.got.map(indexOf),
      Array.from({ length: total }, (_, i) => i),
    );
    for (const [i, d] of c.got.entries()) assert.equal(d.length, sizes[i % sizes.length]);
    assert.equal(client.stats.upstreams, 1);
    assert.equal(relay.transport.stats.upstreams, 1);
    // Later datagrams arrived on the up-stream: no POST since.
    const posts = client.stats.posts;
    for (let i = 0; i < 100; i++) client.send(numbered(total + i, 40));
    await c.until(() => c.got.length === total + 100, '100 more echoes');
    assert.equal(client.stats.posts, posts);
    assert.deepEqual(c.errors, []);
    // The relay sees the POSTs' URL and Host, and the up-stream's connection, which the client's
    // own view names too (registration compares the two).
    const last = relay.received.at(-1)!;
    assert.equal(last.view.url, `/rl/up?s=${client.token}&m=stream`);
    assert.equal(last.view.host, `127.0.0.1:${relay.port}`);
    assert.ok(last.view.headers.some(([k, v]) => k === 'user-agent' && v === 'roamlink-test'));
    assert.equal(client.view().local.port, last.view.remote.port);
    assert.ok(client.view().url.endsWith(last.view.url));
  } finally {
    client.close();
    await relay.close();
  }
});

test('a body held back on the way (the answer never comes): the path keeps to POSTs for good', async () => {
  const relay = await startRelay();
  // A reverse proxy that buffers request bodies: it forwards a request only once its body is
  // complete, as nginx's proxy_request_buffering does.
  let held = 0;
  let heldClosed = 0;
  const proxy = createServer((req, res) => {
    const chunks: Buffer[] = [];
    if (req.headers['roamlink-stream'] !== undefined) held++;
    req.on('data', (b: Buffer) => chunks.push(b));
    req.on('close', () => {
      if (req.headers['roamlink-stream'] !== undefined && !req.complete) heldClosed++;
    });
    req.on('end', () => {
      const { 'transfer-encoding': _t, connection: _c, ...fields } = req.headers;
      const body = Buffer.concat(chunks);
      const up = request(
        {
          hostname: '127.0.0.1',
          port: relay.port,
          method: req.method,
          path: req.url,
          headers: { ...fields, 'content-length': String(body.length) },
        },
        (ur) => {
          res.writeHead(ur.statusCode ?? 502, ur.headers);
          ur.pipe(res);
        },
      );
      up.on('error', () => res.destroy());
      up.end(body);
    });
  });
  await new Promise<void>((r) => proxy.listen(0, '127.0.0.1', r));
  const c = collector();
  const client = new HttpStreamClient({
    baseUrl: `http://127.0.0.1:${(proxy.address() as AddressInfo).port}/rl`,
    bufferDetect: { minMs: 100, maxMs: 300 },
    ...c.opts,
  });
  try {
    client.send(bytes(1));
    await c.until(() => c.got.length === 1, 'the first echo');
    // The try is made, and given up once its answer is overdue.
    const t0 = performance.now();
    while (heldClosed === 0 && performance.now() - t0 < 2000) await sleep(10);
    assert.equal(held, 1);
    assert.equal(heldClosed, 1);
    assert.equal(client.stats.upstreams, 0);
    assert.equal(relay.transport.stats.upstreams, 0);
    for (let i = 2; i <= 40; i++) client.send(bytes(i));
    await c.until(() => c.got.length === 40, '40 echoes by POST');
    assert.deepEqual(
      c.got.map((d) => d[0]),
      Array.from({ length: 40 }, (_, i) => i + 1),
    );
    await sleep(400);
    assert.equal(held, 1, 'no second try');
    assert.deepEqual(c.errors, []);
  } finally {
    client.close();
    proxy.closeAllConnections();
    await new Promise<void>((r) => proxy.close(() => r()));
    await relay.close();
  }
});

/** Opens a raw connection and writes `head`; resolves with it and what it reads. */
async function raw(port: number, head: string): Promise<{ s: Socket; read: () => string }> {
  const s = connect({ host: '127.0.0.1', port });
  await new Promise<void>((r, j) => s.once('connect', r).once('error', j));
  let got = '';
  s.on('data', (b: Buffer) => {
    got += b.toString('latin1');
  });
  s.on('error', () => {});
  s.write(head, 'latin1');
  return { s, read: () => got };
}

const upHead = (port: number, token: string, mode = 'stream'): string =>
  `POST /rl/up?s=${token}&m=${mode} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\n` +
  'Roamlink-Stream: up\r\nTransfer-Encoding: chunked\r\n\r\n';

test('an up-stream that ends (a newer one for the token took its place): POSTs meanwhile, a new up-stream later, nothing lost', async () => {
  const relay = await startRelay();
  const c = collector();
  const client = new HttpStreamClient({
    baseUrl: `http://127.0.0.1:${relay.port}/rl`,
    upstreamRetryMs: 300,
    ...c.opts,
  });
  let other: Socket | undefined;
  try {
    client.send(bytes(0));
    await waitFor(() => client.stats.upstreams === 1, 'the up-stream');
    // Another up-stream for the same token: the relay ends the client's.
    const r = await raw(relay.port, upHead(relay.port, client.token));
    other = r.s;
    other.write('2\r\n\x00\x02\r\n', 'latin1');
    const t0 = performance.now();
    while (!r.read().startsWith('HTTP/1.1 200') && performance.now() - t0 < 2000) await sleep(5);
    assert.match(r.read(), /^HTTP\/1\.1 200 /);
    assert.equal(relay.transport.stats.upstreams, 2);
    const posts = client.stats.posts;
    for (let i = 1; i <= 30; i++) client.send(bytes(i));
    await c.until(() => c.got.length === 31, '31 echoes');
    // Sent by POST while there is no up-stream (the echoes may come before the POST's 204).
    await waitFor(() => client.stats.posts > posts, 'a POST answered');
    assert.equal(client.upstreamEnd, 'closed');
    // The client tries again after upstreamRetryMs.
    await waitFor(() => client.stats.upstreams === 2, 'a second up-stream');
    const after = client.stats.posts;
    for (let i = 31; i <= 60; i++) client.send(bytes(i));
    await c.until(() => c.got.length === 61, '61 echoes');
    assert.equal(client.stats.posts, after);
    assert.deepEqual(
      c.got.map((d) => d[0]),
      Array.from({ length: 61 }, (_, i) => i),
    );
    assert.deepEqual(c.errors, []);
  } finally {
    other?.destroy();
    client.close();
    await relay.close();
  }
});

test('relay: an up-stream is answered once its marker is in; none for an unknown or polling token (409), bad records cut it', async () => {
  const relay = await startRelay();
  const c = collector();
  const client = new HttpStreamClient({
    baseUrl: `http://127.0.0.1:${relay.port}/rl`,
    upstream: false,
    ...c.opts,
  });
  const sockets: Socket[] = [];
  try {
    client.send(bytes(5));
    await c.until(() => c.got.length === 1, 'the session');
    // Head alone: no answer yet; the marker brings the 200.
    const a = await raw(relay.port, upHead(relay.port, client.token));
    sockets.push(a.s);
    await sleep(100);
    assert.equal(a.read(), '');
    a.s.write('2\r\n\x00\x02\r\n', 'latin1');
    const t0 = performance.now();
    while (a.read() === '' && performance.now() - t0 < 2000) await sleep(5);
    assert.match(a.read(), /^HTTP\/1\.1 200 /);
    assert.match(a.read(), /transfer-encoding: chunked/i);
    // A datagram on it is handed up and echoed down the client's stream.
    a.s.write('5\r\n\x00\x05abc\r\n', 'latin1');
    await c.until(() => c.got.length === 2, 'the echo of the raw datagram');
    assert.equal(Buffer.from(c.got[1]!).toString(), 'abc');
    // The body's end ends the answer.
    a.s.write('0\r\n\r\n', 'latin1');
    while (!a.read().endsWith('0\r\n\r\n') && performance.now() - t0 < 2000) await sleep(5);
    assert.ok(a.read().endsWith('0\r\n\r\n'));

    const rejected = relay.transport.stats.rejected;
    const unknown = await raw(relay.port, upHead(relay.port, 'b'.repeat(32)));
    sockets.push(unknown.s);
    const polling = await raw(relay.port, upHead(relay.port, client.token, 'poll'));
    sockets.push(polling.s);
    const t1 = performance.now();
    while ((unknown.read() === '' || polling.read() === '') && performance.now() - t1 < 2000) {
      await sleep(5);
    }
    assert.match(unknown.read(), /^HTTP\/1\.1 409 /);
    assert.match(polling.read(), /^HTTP\/1\.1 400 /);
    // A record whose Length is under 2: cut, counted, and the session goes on.
    const bad = await raw(relay.port, upHead(relay.port, client.token));
    sockets.push(bad.s);
    bad.s.write('2\r\n\x00\x02\r\n3\r\n\x00\x01x\r\n', 'latin1');
    const closed = new Promise<void>((r) => bad.s.once('close', () => r()));
    await closed;
    assert.equal(relay.transport.stats.rejected, rejected + 3);
    client.send(bytes(6));
    await c.until(() => c.got.length === 3, 'the session still works');
    // Turned off, the client never tried one of its own.
    assert.equal(client.upstream, 'none');
    assert.deepEqual(c.errors, []);
  } finally {
    for (const s of sockets) s.destroy();
    client.close();
    await relay.close();
  }
});

test('relay: a POST whose body trickles is cut at its deadline; an up-stream is not', async () => {
  const relay = await startRelay({ upBodyDeadlineMs: 300 });
  const c = collector();
  const client = new HttpStreamClient({ baseUrl: `http://127.0.0.1:${relay.port}/rl`, ...c.opts });
  const sockets: Socket[] = [];
  try {
    client.send(bytes(1));
    await waitFor(() => client.upstream === 'live', 'the up-stream');
    const slow = await raw(
      relay.port,
      `POST /rl/up?s=${'c'.repeat(32)}&m=stream HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n\x00\x05ab`,
    );
    sockets.push(slow.s);
    const closed = new Promise<number>((r) => {
      const t0 = performance.now();
      slow.s.once('close', () => r(performance.now() - t0));
    });
    const after = await closed;
    assert.ok(after >= 250 && after < 2000, `cut after ${after.toFixed(0)} ms`);
    // The client's up-stream, open for longer than that, still carries datagrams.
    await sleep(100);
    client.send(bytes(2));
    await c.until(() => c.got.length === 2, 'an echo on the up-stream');
    assert.equal(client.upstream, 'live');
    assert.deepEqual(c.errors, []);
  } finally {
    for (const s of sockets) s.destroy();
    client.close();
    await relay.close();
  }
});
