/**
 * The WebSocket encapsulation on loopback: a relay-side transport attached to a plain Node HTTP
 * server and a client-side one connecting to it. Datagrams go both ways one binary message each;
 * a text message closes with 4002, a wrong path is refused with 404 before any upgrade, an
 * oversize message closes with 1009.
 */
import assert from 'node:assert/strict';
import { createServer, type IncomingMessage, request, type Server } from 'node:http';
import type { Socket } from 'node:net';
import { test } from 'node:test';
import { WebSocket } from 'ws';
import {
  isWsPath,
  WebSocketTransport,
  WS_MAX_PAYLOAD,
  WS_PATH,
  WsCloseCode,
  type WsPathView,
  wsBufferUtil,
  wsMasking,
} from '../src/websocket.ts';

interface Rig {
  server: Server;
  port: number;
  relay: WebSocketTransport;
  got: { d: Uint8Array; path: string }[];
  opened: { path: string; view: WsPathView }[];
  closed: { path: string; reason: string; code: number }[];
  done: () => Promise<void>;
}

async function rig(): Promise<Rig> {
  const server = createServer((_req, res) => {
    res.writeHead(200).end('app');
  });
  const got: Rig['got'] = [];
  const opened: Rig['opened'] = [];
  const closed: Rig['closed'] = [];
  const relay = new WebSocketTransport({
    onDatagram: (d, path) => got.push({ d, path }),
    onPathOpen: (path, view) => opened.push({ path, view }),
    onPathClose: (path, reason, code) => closed.push({ path, reason, code }),
  });
  relay.attach(server);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const a = server.address();
  const port = typeof a === 'object' && a ? a.port : 0;
  return {
    server,
    port,
    relay,
    got,
    opened,
    closed,
    done: async () => {
      await relay.close();
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}

const waitFor = async (pred: () => boolean, what: string, ms = 3000): Promise<void> => {
  const end = Date.now() + ms;
  while (!pred()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
};

test('datagrams both ways, one binary message each; both views', async () => {
  const r = await rig();
  const fromRelay: Uint8Array[] = [];
  const client = new WebSocketTransport({ onDatagram: (d) => fromRelay.push(d) });
  try {
    const url = `ws://127.0.0.1:${r.port}${WS_PATH}`;
    const cp = await client.connect(url, { 'User-Agent': 'roamlink-test/1' });
    assert.ok(isWsPath(cp));
    await waitFor(() => r.opened.length === 1, 'open');
    const rp = r.opened[0]!.path;
    assert.match(rp, /^ws:\d+$/);

    for (let i = 0; i < 20; i++) client.send(cp, new Uint8Array([i, 1, 2, 3]));
    client.send(cp, new Uint8Array(WS_MAX_PAYLOAD).fill(7));
    await waitFor(() => r.got.length === 21, 'datagrams at the relay');
    assert.deepEqual(
      r.got.slice(0, 20).map((g) => g.d[0]),
      [...Array(20).keys()],
    );
    assert.equal(r.got[20]!.d.length, WS_MAX_PAYLOAD);
    assert.ok(r.got.every((g) => g.path === rp));

    assert.equal(r.relay.send(rp, new Uint8Array([9, 8, 7])), true);
    await waitFor(() => fromRelay.length === 1, 'datagram at the client');
    assert.deepEqual([...fromRelay[0]!], [9, 8, 7]);

    // Views: the relay's remote is the client's local, and the other way round.
    const rv = r.relay.view(rp)!;
    const cv = client.view(cp)!;
    assert.deepEqual(rv.remote, cv.local);
    assert.deepEqual(rv.local, cv.remote);
    assert.equal(rv.url, WS_PATH);
    assert.equal(cv.url, url);
    assert.equal(rv.host, `127.0.0.1:${r.port}`);
    assert.equal(cv.host, `127.0.0.1:${r.port}`);
    assert.deepEqual(cv.headers, [['user-agent', 'roamlink-test/1']]);
    assert.ok(rv.headers.some(([k, v]) => k === 'user-agent' && v === 'roamlink-test/1'));
    assert.ok(rv.headers.every(([k]) => k === k.toLowerCase()));

    // A path closed by its peer is reported with the code.
    client.closePath(cp);
    await waitFor(() => r.closed.length === 1, 'close at the relay');
    assert.equal(r.closed[0]!.code, WsCloseCode.CLIENT_CLOSING);
    assert.deepEqual(r.relay.paths, []);
  } finally {
    await client.close();
    await r.done();
  }
});

test('a text message closes the path with 4002 "text not allowed"', async () => {
  const r = await rig();
  try {
    const ws = new WebSocket(`ws://127.0.0.1:${r.port}${WS_PATH}`);
    await new Promise((res, rej) => {
      ws.once('open', res);
      ws.once('error', rej);
    });
    const closed = new Promise<[number, string]>((res) =>
      ws.once('close', (code, reason) => res([code, reason.toString()])),
    );
    ws.send('hello');
    assert.deepEqual(await closed, [WsCloseCode.PROTOCOL_VIOLATION, 'text not allowed']);
    assert.equal(r.relay.stats.protocolViolations, 1);
    assert.equal(r.closed[0]?.code, WsCloseCode.PROTOCOL_VIOLATION);
    assert.equal(r.got.length, 0);
  } finally {
    await r.done();
  }
});

test('an upgrade on another path gets 404 and no upgrade; plain requests reach the app', async () => {
  const r = await rig();
  try {
    const status = await new Promise<number>((res, rej) => {
      const req = request({
        host: '127.0.0.1',
        port: r.port,
        path: '/elsewhere',
        headers: {
          Connection: 'Upgrade',
          Upgrade: 'websocket',
          'Sec-WebSocket-Version': '13',
          'Sec-WebSocket-Key': 'dGhlIHNhbXBsZSBub25jZQ==',
        },
      });
      req.once('response', (resp) => {
        resp.resume();
        res(resp.statusCode ?? 0);
      });
      req.once('upgrade', () => rej(new Error('upgraded')));
      req.once('error', rej);
      req.end();
    });
    assert.equal(status, 404);
    assert.equal(r.relay.stats.wrongPath, 1);
    assert.equal(r.opened.length, 0);

    const client = new WebSocketTransport({ onDatagram: () => {} });
    await assert.rejects(client.connect(`ws://127.0.0.1:${r.port}/rl/nope`), /404/);
    await client.close();

    const body = await fetch(`http://127.0.0.1:${r.port}/anything`).then((x) => x.text());
    assert.equal(body, 'app');
  } finally {
    await r.done();
  }
});

test('a message over the payload limit closes the path with 1009', async () => {
  const r = await rig();
  try {
    const ws = new WebSocket(`ws://127.0.0.1:${r.port}${WS_PATH}`);
    await new Promise((res, rej) => {
      ws.once('open', res);
      ws.once('error', rej);
    });
    ws.on('error', () => {});
    const closed = new Promise<number>((res) => ws.once('close', (code) => res(code)));
    ws.send(new Uint8Array(WS_MAX_PAYLOAD + 1));
    assert.equal(await closed, 1009);
    await waitFor(() => r.closed.length === 1, 'close at the relay');
    assert.equal(r.got.length, 0);
  } finally {
    await r.done();
  }
});

test('send drops and counts when bufferedAmount is over the bound', async () => {
  const r = await rig();
  // The relay stops reading: the kernel's buffers fill, then the sender's own buffer.
  const relaySockets: Socket[] = [];
  r.server.on('upgrade', (req: IncomingMessage) => relaySockets.push(req.socket));
  const client = new WebSocketTransport({ onDatagram: () => {}, maxBufferedBytes: 1 << 16 });
  try {
    const cp = await client.connect(`ws://127.0.0.1:${r.port}${WS_PATH}`);
    await waitFor(() => r.opened.length === 1, 'open');
    for (const s of relaySockets) s.pause();
    let sent = 0;
    for (let i = 0; i < 2000 && client.stats.bufferDrops < 10; i++) {
      if (client.send(cp, new Uint8Array(60_000))) sent++;
      if (i % 20 === 19) await new Promise((res) => setTimeout(res, 1));
    }
    assert.ok(client.stats.bufferDrops >= 10, `sent ${sent}, none dropped`);
    for (const s of relaySockets) s.resume();
    await waitFor(() => r.got.length === sent, 'the datagrams that were sent', 10_000);
  } finally {
    await client.close();
    await r.done();
  }
});

test('a congested path reports its drain, with its id, once the relay reads again', async () => {
  const r = await rig();
  const relaySockets: Socket[] = [];
  r.server.on('upgrade', (req: IncomingMessage) => relaySockets.push(req.socket));
  const drains: [string, boolean][] = [];
  const client: WebSocketTransport = new WebSocketTransport({
    onDatagram: () => {},
    maxBufferedBytes: 1 << 20,
    // Whether the path still looked congested when its drain was reported.
    onDrain: (p) => drains.push([p, client.congested(p)]),
  });
  try {
    const cp = await client.connect(`ws://127.0.0.1:${r.port}${WS_PATH}`);
    await waitFor(() => r.opened.length === 1, 'open');
    assert.ok(client.send(cp, new Uint8Array(100)));
    await new Promise((res) => setTimeout(res, 50));
    assert.deepEqual(drains, [], 'an uncongested path reports nothing');
    // The relay stops reading; the sender writes, as the stream layer does, while not congested.
    for (const s of relaySockets) s.pause();
    for (let i = 0; i < 2000 && !client.congested(cp); i++) {
      client.send(cp, new Uint8Array(60_000));
      if (i % 20 === 19) await new Promise((res) => setTimeout(res, 1));
    }
    assert.ok(client.congested(cp), 'the path became congested');
    await new Promise((res) => setTimeout(res, 50));
    assert.deepEqual(drains, [], 'no report while the relay does not read');
    for (const s of relaySockets) s.resume();
    await waitFor(() => drains.length > 0, 'the drain report', 10_000);
    assert.deepEqual(drains, [[cp, false]]);
  } finally {
    await client.close();
    await r.done();
  }
});

test('relay shutdown closes its paths with 4000', async () => {
  const r = await rig();
  const closes: number[] = [];
  const client = new WebSocketTransport({
    onDatagram: () => {},
    onPathClose: (_p, _why, code) => closes.push(code),
  });
  try {
    await client.connect(`ws://127.0.0.1:${r.port}${WS_PATH}`);
    await waitFor(() => r.opened.length === 1, 'open');
    await r.relay.close();
    await waitFor(() => closes.length === 1, 'close at the client');
    assert.deepEqual(closes, [WsCloseCode.RELAY_SHUTDOWN]);
  } finally {
    await client.close();
    await r.done();
  }
});

test('ws masks and unmasks natively: bufferutil resolves from where the transport loads ws', () => {
  // The ws this package imports finds its optional peer bufferutil; without it, ws masks each
  // client frame and unmasks it at the relay in a JavaScript byte loop, which cost the client ~2.5x
  // the CPU of a WebSocket upload (docs/ARCHITECTURE.md, Performance).
  const bufferutil = wsBufferUtil();
  assert.ok(bufferutil, 'bufferutil resolves from ws');
  assert.match(String(bufferutil.mask), /\[native code\]/);
  assert.match(String(bufferutil.unmask), /\[native code\]/);
  // And it masks as RFC 6455 §5.3 says: byte i XOR mask[i % 4], at any offset and length.
  const src = Buffer.from(Array.from({ length: 203 }, (_, i) => (i * 7) & 255));
  const mask = Buffer.from([0x12, 0x34, 0x56, 0x78]);
  const out = Buffer.alloc(210);
  bufferutil.mask(src, mask, out, 5, src.length);
  const want = Buffer.from(src.map((b, i) => b ^ mask[i % 4]!));
  assert.deepEqual(out.subarray(5, 5 + src.length), want);
  const back = Buffer.from(want);
  bufferutil.unmask(back, mask);
  assert.deepEqual(back, src);
  // What the relay and the client report; WS_NO_BUFFER_UTIL turns ws's use of it off.
  assert.equal(wsMasking(), 'native');
  process.env.WS_NO_BUFFER_UTIL = '1';
  try {
    assert.equal(wsMasking(), 'javascript');
    assert.equal(wsBufferUtil(), undefined);
  } finally {
    delete process.env.WS_NO_BUFFER_UTIL;
  }
});
