/**
 * HTTP streaming through a proxy that buffers responses, on loopback: a real HttpRelayTransport on
 * a node:http server and a real HttpStreamClient, with a small HTTP proxy in between that reads
 * each upstream response whole before it answers (the way down never shows a byte of the stream).
 * Until the client sees its stream, its requests carry `Roamlink-Ack` and the relay's POST answers
 * bring the copies of what it streamed (`Roamlink-Seq`); on the deadline the same path polls the
 * same token. Datagrams arrive exactly once and in order both ways; the same proxy in pass-through
 * mode changes nothing. Then the relay's side of the wire format with raw requests, as the
 * simulator's test does it (packages/sim/test/fallback.test.ts).
 */
import assert from 'node:assert/strict';
import {
  Agent,
  createServer,
  type IncomingHttpHeaders,
  type IncomingMessage,
  request,
  type Server,
} from 'node:http';
import type { AddressInfo } from 'node:net';
import { describe, test } from 'node:test';
import { decodeRecords, encodeRecords } from '@roamlink/core';
import {
  type HttpClientOptions,
  type HttpPathView,
  type HttpRelayOptions,
  HttpRelayTransport,
  HttpStreamClient,
} from '../src/http.ts';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function until(pred: () => boolean, what: string, ms = 5000): Promise<void> {
  const end = performance.now() + ms;
  while (!pred()) {
    if (performance.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(5);
  }
}

async function listen(server: Server): Promise<number> {
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return (server.address() as AddressInfo).port;
}

async function shut(server: Server): Promise<void> {
  server.closeAllConnections();
  await new Promise<void>((r) => server.close(() => r()));
}

interface Relay {
  transport: HttpRelayTransport;
  port: number;
  received: { d: Uint8Array; path: string; view: HttpPathView }[];
  close(): Promise<void>;
}

/** A relay that echoes every datagram it gets, in the turn it gets it (as the relay app does). */
async function startRelay(opts: Partial<HttpRelayOptions> = {}, echo = true): Promise<Relay> {
  const received: Relay['received'] = [];
  const transport: HttpRelayTransport = new HttpRelayTransport({
    onDatagram: (d, path, view) => {
      received.push({ d, path, view });
      if (echo) transport.send(path, d);
    },
    ...opts,
  });
  const server = createServer((req, res) => {
    if (!transport.handle(req, res)) res.writeHead(404, { 'Content-Length': '0' }).end();
  });
  const port = await listen(server);
  return {
    transport,
    port,
    received,
    close: async () => {
      transport.close();
      await shut(server);
    },
  };
}

/** One request through the proxy, as the proxy saw it. */
interface Seen {
  method: string;
  url: string;
  ack: string | undefined;
  status?: number;
  seq?: string | undefined;
  /** The whole response body (buffering mode), once the upstream response ended. */
  body?: Buffer;
}

/**
 * An HTTP proxy in front of the relay (the client's base URL names it; requests are forwarded as
 * they come, with Via). Buffering: each upstream response is read whole, then answered with a
 * Content-Length. Pass-through: head and chunks forwarded as they arrive.
 */
async function startProxy(upstreamPort: number, buffering: boolean) {
  const seen: Seen[] = [];
  const agent = new Agent({ keepAlive: true });
  const server = createServer((req, res) => {
    const entry: Seen = {
      method: req.method ?? '',
      url: req.url ?? '',
      ack: req.headers['roamlink-ack'] as string | undefined,
    };
    seen.push(entry);
    const up = request(
      {
        agent,
        hostname: '127.0.0.1',
        port: upstreamPort,
        method: req.method,
        path: req.url,
        headers: { ...req.headers, via: '1.1 test-proxy' },
      },
      (ur: IncomingMessage) => {
        entry.status = ur.statusCode ?? 502;
        entry.seq = ur.headers['roamlink-seq'] as string | undefined;
        const fields = endToEnd(ur.headers);
        if (!buffering) {
          res.writeHead(entry.status, fields);
          res.flushHeaders();
          ur.on('data', (c: Buffer) => res.write(c));
          ur.on('end', () => res.end());
          ur.on('error', () => res.destroy());
          return;
        }
        const chunks: Buffer[] = [];
        ur.on('data', (c: Buffer) => chunks.push(c));
        ur.on('end', () => {
          const body = Buffer.concat(chunks);
          entry.body = body;
          res.writeHead(entry.status ?? 502, { ...fields, 'content-length': String(body.length) });
          res.end(body);
        });
        ur.on('error', () => res.destroy());
      },
    );
    up.on('error', () => res.destroy());
    res.on('close', () => up.destroy());
    req.pipe(up);
  });
  const port = await listen(server);
  return {
    port,
    seen,
    close: async () => {
      agent.destroy();
      await shut(server);
    },
  };
}

/** Response fields a proxy passes on (RFC 9110 §7.6.1): all but the hop-by-hop and the framing. */
function endToEnd(h: IncomingHttpHeaders): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {};
  for (const [k, v] of Object.entries(h)) {
    if (v === undefined) continue;
    if (['connection', 'keep-alive', 'transfer-encoding', 'content-length'].includes(k)) continue;
    out[k] = v;
  }
  return out;
}

/** Datagram number i: [i >> 8, i & 255, then i % 7 filler bytes]. */
const numbered = (i: number): Uint8Array => {
  const d = new Uint8Array(2 + (i % 7)).fill(0xab);
  d[0] = i >> 8;
  d[1] = i & 255;
  return d;
};
const numberOf = (d: Uint8Array): number => (d[0]! << 8) | d[1]!;
const range = (a: number, b: number): number[] => Array.from({ length: b - a }, (_, i) => a + i);

function client(baseUrl: string, more: Partial<HttpClientOptions> = {}) {
  const got: { n: number; at: number }[] = [];
  const errors: string[] = [];
  const changes: { path: string; mode: string; at: number }[] = [];
  let openedAt: number | undefined;
  const c = new HttpStreamClient({
    baseUrl,
    headers: { 'User-Agent': 'roamlink-test' },
    onDatagram: (d) => got.push({ n: numberOf(d), at: performance.now() }),
    onError: (_p, r) => errors.push(r),
    onOpen: () => {
      openedAt ??= performance.now();
    },
    onModeChange: (path, mode) => changes.push({ path, mode, at: performance.now() }),
    ...more,
  });
  return { c, got, errors, changes, openedAt: () => openedAt };
}

describe('HTTP streaming through a buffering proxy', () => {
  test('POST answers carry the copies, the same path falls back to polling, everything exactly once and in order', async (t) => {
    const relay = await startRelay();
    const proxy = await startProxy(relay.port, true);
    // A deadline well above loopback's answer times, so that a loaded machine cannot reorder
    // the first answer and the fallback.
    const k = client(`http://127.0.0.1:${proxy.port}/rl`, { bufferDetect: { minMs: 300 } });
    const { c } = k;
    try {
      const id = c.pathId;
      assert.match(id, /^hs:[0-9a-f]{32}$/);
      // The "handshake": its answer (the echo) comes back with the POST that carried it.
      const t0 = performance.now();
      assert.ok(c.send(numbered(0)));
      await until(() => k.got.length === 1, 'the echo in the first POST answer');
      const echoMs = k.got[0]!.at - t0;
      assert.equal(c.mode, 'stream');
      assert.deepEqual(k.changes, []);
      assert.ok(k.openedAt() !== undefined, 'a POST answer opens the path');
      const firstPost = proxy.seen.find((s) => s.method === 'POST')!;
      assert.equal(firstPost.url, `/rl/up?s=${c.token}&m=stream`);
      assert.equal(firstPost.ack, '0');
      assert.equal(firstPost.status, 200);
      assert.equal(firstPost.seq, '0');
      assert.deepEqual(decodeRecords(new Uint8Array(firstPost.body!)), [numbered(0)]);
      assert.equal(relay.received[0]!.view.mode, 'stream');

      // While the stream is held at the proxy, the relay sends on its own: those go to the stream
      // (never seen) and wait as copies.
      for (let i = 1; i <= 5; i++) assert.ok(relay.transport.send(id, numbered(i)));

      // The deadline: clamp(1.5 × the first POST's answer time, 300 ms, 3 s) after the GET left.
      await until(() => k.changes.length > 0, 'the fallback', 4000);
      assert.deepEqual(
        k.changes.map(({ path, mode }) => [path, mode]),
        [[id, 'poll']],
      );
      assert.equal(c.pathId, id, 'same path id');
      assert.equal(c.mode, 'poll');
      assert.equal(c.view().mode, 'poll');
      assert.equal(c.view().url, `http://127.0.0.1:${proxy.port}/rl/up?s=${c.token}&m=poll`);
      assert.ok(!c.view().headers.some(([h]) => h === 'roamlink-ack'), 'per-request, not in view');
      await until(() => k.got.length === 6, 'the copies, queued again and polled');
      const poll = proxy.seen.find((s) => s.method === 'GET' && s.url.startsWith('/rl/poll'))!;
      assert.equal(poll.url, `/rl/poll?s=${c.token}`, 'the same token');
      assert.equal(poll.ack, '1', 'the client holds number 0');
      assert.equal(poll.status, 200);
      assert.equal(poll.seq, '1');
      assert.deepEqual(decodeRecords(new Uint8Array(poll.body!)), range(1, 6).map(numbered));
      assert.ok(
        proxy.seen.every((s) => s.method !== 'GET' || s.url.startsWith('/rl/down') || s.ack),
        'every poll says Roamlink-Ack',
      );
      assert.equal(relay.transport.mode(id), 'poll');
      assert.equal(relay.transport.stats.fallbacks, 1);

      // Both ways from now on, in several turns: all by polling, on the same path id.
      for (let round = 0; round < 5; round++) {
        for (let i = 0; i < 20; i++) assert.ok(c.send(numbered(6 + round * 20 + i)));
        await sleep(1);
      }
      await until(() => k.got.length === 106, '100 echoes by polling');
      assert.deepEqual(
        k.got.map((g) => g.n),
        range(0, 106),
        'exactly once, in order',
      );
      const upNumbers = relay.received.map((r) => numberOf(r.d));
      assert.deepEqual(upNumbers, [0, ...range(6, 106)], 'up: exactly once, in order');
      assert.ok(relay.received.every((r) => r.path === id));
      const later = relay.received.filter((r) => numberOf(r.d) >= 6);
      assert.ok(later.every((r) => r.view.mode === 'poll'));
      assert.ok(later.every((r) => r.view.url === `/rl/up?s=${c.token}&m=poll`));
      assert.ok(later.every((r) => r.view.headers.some(([h, v]) => h === 'via' && v.length > 0)));
      // One GET for the stream, ever; the relay ended it on the switch.
      assert.equal(proxy.seen.filter((s) => s.url.startsWith('/rl/down')).length, 1);
      assert.deepEqual(k.errors, []);
      assert.equal(c.stats.datagramsReceived, 106);
      const fellBackMs = (c.fellBackAt ?? 0) - t0;
      t.diagnostic(
        `buffering proxy: echo in the first POST answer after ${echoMs.toFixed(1)} ms, ` +
          `fallback after ${fellBackMs.toFixed(1)} ms (first POST answered in ${c.firstAnswerMs?.toFixed(1)} ms)`,
      );
      assert.ok(k.got[0]!.at < c.fellBackAt!, 'the first answer came before the fallback');
    } finally {
      c.close();
      await proxy.close();
      await relay.close();
    }
  });

  test('through the same proxy passing bytes on as they come, nothing changes', async () => {
    const relay = await startRelay();
    const proxy = await startProxy(relay.port, false);
    const k = client(`http://127.0.0.1:${proxy.port}/rl`, {
      bufferDetect: { minMs: 100, maxMs: 300 },
    });
    const { c } = k;
    try {
      for (let round = 0; round < 5; round++) {
        for (let i = 0; i < 20; i++) assert.ok(c.send(numbered(round * 20 + i)));
        await sleep(2);
      }
      await until(() => k.got.length === 100, '100 echoes on the stream');
      // Well past the longest deadline (300 ms): still streaming.
      await sleep(400);
      assert.deepEqual(
        k.got.map((g) => g.n),
        range(0, 100),
        'exactly once, in order',
      );
      assert.deepEqual(k.changes, []);
      assert.deepEqual(k.errors, []);
      assert.equal(c.mode, 'stream');
      assert.equal(c.view().mode, 'stream');
      assert.equal(relay.transport.mode(c.pathId), 'stream');
      assert.equal(relay.transport.stats.fallbacks, 0);
      assert.ok(relay.received.every((r) => r.view.mode === 'stream'));
      assert.ok(!proxy.seen.some((s) => s.url.startsWith('/rl/poll')), 'never polled');
      // The stream showed its bytes: the last POSTs no longer carry the field.
      const posts = proxy.seen.filter((s) => s.method === 'POST');
      assert.equal(posts[0]!.ack, '0');
      assert.equal(posts.at(-1)!.ack, undefined);
      // Anything that came both in a POST answer and on the stream was delivered once.
      assert.equal(c.stats.datagramsReceived, 100);
    } finally {
      c.close();
      await proxy.close();
      await relay.close();
    }
  });

  test('a relay reached directly: no fallback, each datagram once', async () => {
    const relay = await startRelay();
    const k = client(`http://127.0.0.1:${relay.port}/rl`, {
      bufferDetect: { minMs: 100, maxMs: 300 },
    });
    const { c } = k;
    try {
      for (let i = 0; i < 10; i++) c.send(numbered(i));
      await until(() => k.got.length === 10, 'ten echoes');
      await sleep(400);
      for (let i = 10; i < 20; i++) c.send(numbered(i));
      await until(() => k.got.length === 20, 'ten more');
      assert.deepEqual(
        k.got.map((g) => g.n),
        range(0, 20),
      );
      assert.deepEqual(k.changes, []);
      assert.equal(c.mode, 'stream');
      assert.equal(c.fellBackAt, undefined);
    } finally {
      c.close();
      await relay.close();
    }
  });
});

// ---- the relay's side, raw requests ----

const TOKEN = '00112233445566778899aabbccddeeff';
const ID = `hs:${TOKEN}`;

interface Exchange {
  status: number;
  headers: IncomingHttpHeaders;
  chunks: Buffer[];
  ended: boolean;
  /** Destroys the request (the connection). */
  abort(): void;
}

/** One request on its own connection; resolves at the head, the body keeps coming in. */
function exchange(
  port: number,
  method: string,
  path: string,
  headers: Record<string, string> = {},
  body?: Uint8Array,
): Promise<Exchange> {
  return new Promise((resolve, reject) => {
    const req = request(
      { hostname: '127.0.0.1', port, method, path, headers, agent: false },
      (res) => {
        const out: Exchange = {
          status: res.statusCode ?? 0,
          headers: res.headers,
          chunks: [],
          ended: false,
          abort: () => req.destroy(),
        };
        res.on('data', (c: Buffer) => out.chunks.push(c));
        res.on('end', () => {
          out.ended = true;
        });
        res.on('error', () => {});
        resolve(out);
      },
    );
    req.on('error', reject);
    req.end(body === undefined ? undefined : Buffer.from(body));
  });
}

async function complete(e: Promise<Exchange>): Promise<Exchange> {
  const x = await e;
  await until(() => x.ended, 'the end of the answer');
  return x;
}

function records(e: Exchange): Uint8Array[] {
  const ds = decodeRecords(new Uint8Array(Buffer.concat(e.chunks)));
  assert.ok(ds !== undefined, 'well-formed records');
  return ds.filter((d) => d.length > 0);
}

const ack = (n: number | string): Record<string, string> => ({ 'Roamlink-Ack': String(n) });
const post = (
  port: number,
  headers: Record<string, string>,
  mode = 'stream',
  ds: Uint8Array[] = [],
) => complete(exchange(port, 'POST', `/rl/up?s=${TOKEN}&m=${mode}`, headers, encodeRecords(ds)));

describe('the relay: Roamlink-Ack and Roamlink-Seq on the wire', () => {
  test('a POST with Roamlink-Ack gets the copies the client lacks, numbered; without, 204 and no more copies', async () => {
    const relay = await startRelay({}, false);
    try {
      const down = await exchange(relay.port, 'GET', `/rl/down?s=${TOKEN}`);
      assert.equal(down.status, 200);
      assert.equal(down.headers['roamlink-seq'], '0', 'the first record to come is number 0');
      assert.equal(down.headers['x-accel-buffering'], 'no');
      const [a, b, c] = [numbered(1), numbered(2), numbered(3)];
      assert.ok(relay.transport.send(ID, a) && relay.transport.send(ID, b));
      await until(() => records(down).length === 2, 'written to the stream as well');
      assert.deepEqual(records(down), [a, b]);

      const p0 = await post(relay.port, ack(0));
      const p1 = await post(relay.port, ack(1), 'stream', [numbered(9)]);
      assert.equal(p0.status, 200);
      assert.equal(p0.headers['roamlink-seq'], '0');
      assert.equal(p0.headers['cache-control'], 'no-store');
      assert.equal(p0.headers['content-type'], 'application/octet-stream');
      assert.equal(p0.headers['content-length'], String(Buffer.concat(p0.chunks).length));
      assert.deepEqual(records(p0), [a, b]);
      assert.equal(p1.status, 200);
      assert.equal(p1.headers['roamlink-seq'], '1');
      assert.deepEqual(records(p1), [b]);
      assert.equal(relay.received.length, 1);
      assert.equal(relay.received[0]!.view.mode, 'stream');

      // The client saw its stream: no field, no copies from now on.
      const p2 = await post(relay.port, {});
      assert.equal(p2.status, 204);
      assert.ok(relay.transport.send(ID, c));
      const p3 = await post(relay.port, ack(2));
      assert.equal(p3.status, 204, 'nothing kept to answer with');
      await until(() => records(down).length === 3, 'the stream still flows');
      assert.deepEqual(records(down), [a, b, c]);
      assert.equal(down.ended, false);
    } finally {
      await relay.close();
    }
  });

  test('a POST answer writes what it queued to the stream first, and carries its copy', async () => {
    const relay = await startRelay();
    try {
      const down = await exchange(relay.port, 'GET', `/rl/down?s=${TOKEN}`);
      const d = numbered(5);
      const up = await post(relay.port, ack(0), 'stream', [d]);
      assert.equal(up.status, 200);
      assert.equal(up.headers['roamlink-seq'], '0');
      assert.deepEqual(records(up), [d], 'the echo, in the answer');
      await until(() => records(down).length === 1, 'and on the stream');
      assert.deepEqual(records(down), [d]);
    } finally {
      await relay.close();
    }
  });

  test('with no stream yet, a POST answer takes from the queue and the stream numbers after it', async () => {
    const relay = await startRelay();
    try {
      const up = await post(relay.port, ack(0), 'stream', [numbered(1), numbered(2)]);
      assert.equal(up.status, 200);
      assert.equal(up.headers['roamlink-seq'], '0');
      assert.deepEqual(records(up), [numbered(1), numbered(2)]);
      const down = await exchange(relay.port, 'GET', `/rl/down?s=${TOKEN}`);
      assert.equal(down.headers['roamlink-seq'], '2');
      // Asked again from 0 (the client had not got the answer): the copies are still there.
      const again = await post(relay.port, ack(0));
      assert.deepEqual(records(again), [numbered(1), numbered(2)]);
      down.abort();
    } finally {
      await relay.close();
    }
  });

  test('a poll with Roamlink-Ack ends the stream, brings what the client lacks and keeps the token polled', async () => {
    const relay = await startRelay({}, false);
    try {
      const down = await exchange(relay.port, 'GET', `/rl/down?s=${TOKEN}`);
      const sent = [numbered(1), numbered(2), numbered(3)];
      for (const d of sent) assert.ok(relay.transport.send(ID, d));
      await until(() => records(down).length === 3, 'on the stream');

      const plain = await complete(exchange(relay.port, 'GET', `/rl/poll?s=${TOKEN}`));
      assert.equal(plain.status, 409, 'a stream is not polled without the field');
      assert.equal(down.ended, false);

      const poll = await complete(exchange(relay.port, 'GET', `/rl/poll?s=${TOKEN}`, ack(1)));
      await until(() => down.ended, 'the stream response ending');
      assert.equal(poll.status, 200);
      assert.equal(poll.headers['roamlink-seq'], '1');
      assert.deepEqual(records(poll), sent.slice(1), 'the copies from number 1 on, once');
      assert.equal(relay.transport.mode(ID), 'poll');

      const again = await complete(exchange(relay.port, 'GET', `/rl/down?s=${TOKEN}`));
      assert.equal(again.status, 409, 'never back to streaming');
      const next = exchange(relay.port, 'GET', `/rl/poll?s=${TOKEN}`);
      await sleep(30);
      const d = numbered(4);
      assert.ok(relay.transport.send(ID, d));
      const n = await complete(next);
      assert.equal(n.headers['roamlink-seq'], '3');
      assert.deepEqual(records(n), [d]);

      // Its POSTs now arrive as polling, on the same path id.
      const up = await post(relay.port, ack(4), 'poll', [numbered(7)]);
      assert.equal(up.status, 204);
      assert.equal(relay.received[0]!.path, ID);
      assert.equal(relay.received[0]!.view.mode, 'poll');
    } finally {
      await relay.close();
    }
  });

  test('a POST in polling mode with Roamlink-Ack is a fallback too, and carries what is queued', async () => {
    const relay = await startRelay({}, false);
    try {
      const down = await exchange(relay.port, 'GET', `/rl/down?s=${TOKEN}`);
      const [a, b] = [numbered(1), numbered(2)];
      assert.ok(relay.transport.send(ID, a) && relay.transport.send(ID, b));
      await until(() => records(down).length === 2, 'on the stream');
      const up = await post(relay.port, ack(0), 'poll', [numbered(5)]);
      assert.equal(up.status, 200);
      assert.equal(up.headers['roamlink-seq'], '0');
      assert.deepEqual(records(up), [a, b]);
      assert.equal(relay.received[0]!.view.mode, 'poll');
      await until(() => down.ended, 'the stream response ending');
    } finally {
      await relay.close();
    }
  });

  test('after the switch, a POST while a poll is held gets 204: the poll brings the answer', async () => {
    const relay = await startRelay();
    try {
      const down = await exchange(relay.port, 'GET', `/rl/down?s=${TOKEN}`);
      // The switch: nothing queued, so the poll is held.
      const held = exchange(relay.port, 'GET', `/rl/poll?s=${TOKEN}`, ack(0));
      await until(() => down.ended, 'the stream response ending');
      const up = await post(relay.port, ack(0), 'poll', [numbered(3)]);
      assert.equal(up.status, 204);
      const h = await complete(held);
      assert.equal(h.status, 200);
      assert.equal(h.headers['roamlink-seq'], '0');
      assert.deepEqual(records(h), [numbered(3)]);
    } finally {
      await relay.close();
    }
  });

  test('a bad Roamlink-Ack is refused (400) and changes nothing', async () => {
    const relay = await startRelay({}, false);
    try {
      const down = await exchange(relay.port, 'GET', `/rl/down?s=${TOKEN}`);
      assert.ok(relay.transport.send(ID, numbered(1)));
      await until(() => records(down).length === 1, 'on the stream');
      const bad = await Promise.all([
        post(relay.port, ack('x'), 'stream', [numbered(8)]),
        post(relay.port, ack(-1)),
        post(relay.port, ack('1234567890123456')),
        post(relay.port, ack(2), 'stream', [numbered(8)]),
        post(relay.port, ack(2), 'poll', [numbered(8)]),
        complete(exchange(relay.port, 'GET', `/rl/poll?s=${TOKEN}`, ack(5))),
      ]);
      assert.deepEqual(
        bad.map((e) => e.status),
        [400, 400, 400, 400, 400, 400],
      );
      assert.equal(relay.received.length, 0, 'no datagram handed up');
      assert.equal(down.ended, false, 'still streaming');
      assert.equal(relay.transport.mode(ID), 'stream');
      const ok = await post(relay.port, ack(0));
      assert.deepEqual(records(ok), [numbered(1)], 'the copy is still there');
    } finally {
      await relay.close();
    }
  });

  test('copies are dropped once the stream has been open streamTrustMs', async () => {
    const relay = await startRelay({ streamTrustMs: 200 }, false);
    try {
      const down = await exchange(relay.port, 'GET', `/rl/down?s=${TOKEN}`);
      assert.ok(relay.transport.send(ID, numbered(1)));
      await until(() => records(down).length === 1, 'on the stream');
      const early = await post(relay.port, ack(0));
      await sleep(300);
      const late = await post(relay.port, ack(0));
      assert.equal(early.status, 200);
      assert.equal(late.status, 204);
    } finally {
      await relay.close();
    }
  });

  test('a polling token never gets Roamlink-Seq, nor copies', async () => {
    const relay = await startRelay();
    try {
      const up = await post(relay.port, ack(0), 'poll', [numbered(1)]);
      assert.equal(up.status, 204);
      const poll = await complete(exchange(relay.port, 'GET', `/rl/poll?s=${TOKEN}`));
      assert.equal(poll.status, 200);
      assert.equal(poll.headers['roamlink-seq'], undefined);
      assert.deepEqual(records(poll), [numbered(1)]);
      assert.equal(relay.received[0]!.view.mode, 'poll');
    } finally {
      await relay.close();
    }
  });
});

describe('the client: bad numbers from the relay', () => {
  test('a POST answer with a bad Roamlink-Seq fails the path ("protocol")', async () => {
    const server = createServer((req, res) => {
      req.resume();
      if (req.url?.startsWith('/rl/down')) return; // held, never a byte: a buffered stream
      req.on('end', () => {
        const body = encodeRecords([numbered(1)]);
        res.writeHead(200, { 'Content-Length': String(body.length), 'Roamlink-Seq': 'x' });
        res.end(body);
      });
    });
    const port = await listen(server);
    const k = client(`http://127.0.0.1:${port}/rl`);
    try {
      k.c.send(numbered(0));
      await until(() => k.errors.length > 0, 'the failure');
      assert.deepEqual(k.errors, ['protocol: bad POST answer']);
      assert.deepEqual(k.got, []);
    } finally {
      k.c.close();
      await shut(server);
    }
  });
});
