/**
 * The SOCKS5 server on loopback with a direct dialer standing in for the tunnel: curl through it
 * (socks5h), 32 MiB each way with SHA-256 checked, half-close and errors passed across, stream
 * backpressure both ways, UDP ASSOCIATE with hand-built RFC 1928 §7 headers, every kind of bad
 * request answered with its exact reply and counted, the TunnelError → REP mapping, and RFC 1929
 * username/password authentication.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { createSocket, type Socket as UdpSocket } from 'node:dgram';
import { once } from 'node:events';
import { createServer as createHttpServer } from 'node:http';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { Duplex } from 'node:stream';
import { after, test } from 'node:test';
import {
  decodeSocksAddress,
  decodeSocksUdp,
  encodeSocksAddress,
  encodeSocksUdp,
  type SocksServer,
  socksReplyFor,
  startSocksServer,
  TunnelError,
  type TunnelErrorCode,
} from '../src/socks5.ts';
import { directDialer, failingDialer } from './direct-dialer.ts';

const unhandled: unknown[] = [];
const onUnhandled = (e: unknown): void => {
  unhandled.push(e);
};
process.on('unhandledRejection', onUnhandled);
process.on('uncaughtException', onUnhandled);
after(() => {
  process.off('unhandledRejection', onUnhandled);
  process.off('uncaughtException', onUnhandled);
  assert.deepEqual(unhandled, [], 'no unhandled rejection or error anywhere');
});

const MiB = 1 << 20;
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const bytes = (...xs: (number | string | Uint8Array | number[])[]): Buffer =>
  Buffer.concat(
    xs.map((x) =>
      typeof x === 'number'
        ? Buffer.of(x)
        : typeof x === 'string'
          ? Buffer.from(x)
          : Buffer.from(x as Uint8Array),
    ),
  );
const be16 = (n: number): number[] => [n >> 8, n & 255];
/** A 10-byte reply with a zero IPv4 bound address. */
const rep = (code: number): Buffer => Buffer.of(5, code, 0, 1, 0, 0, 0, 0, 0, 0);
const GREET = Buffer.of(5, 1, 0);
const connectReq = (port: number, ip = [127, 0, 0, 1]): Buffer =>
  Buffer.of(5, 1, 0, 1, ...ip, ...be16(port));

function until(cond: () => boolean, what: string, ms = 3000): Promise<void> {
  const t0 = Date.now();
  return new Promise((resolve, reject) => {
    const tick = (): void => {
      if (cond()) resolve();
      else if (Date.now() - t0 > ms) reject(new Error(`timed out waiting for ${what}`));
      else setTimeout(tick, 5);
    };
    tick();
  });
}

/** A raw client: everything received is collected; `closed` once the server's FIN or RST came. */
class Raw {
  readonly s: Socket;
  got = Buffer.alloc(0);
  ended = false;
  closed = false;
  readonly t0 = Date.now();
  closedAt = 0;
  constructor(port: number, host = '127.0.0.1') {
    this.s = connect({ port, host });
    this.s.on('data', (d: Buffer) => {
      this.got = Buffer.concat([this.got, d]);
    });
    this.s.on('error', () => {});
    this.s.on('end', () => {
      this.ended = true;
    });
    this.s.on('close', () => {
      this.closed = true;
      this.closedAt = Date.now();
    });
  }
  send(...chunks: Buffer[]): this {
    for (const c of chunks) this.s.write(c);
    return this;
  }
  /** Waits for at least n bytes. */
  async bytes(n: number, ms = 2000): Promise<Buffer> {
    await until(() => this.got.length >= n, `${n} bytes (have ${this.got.length})`, ms);
    return this.got;
  }
  async waitClosed(ms = 2000): Promise<void> {
    await until(() => this.closed, 'the server to close', ms);
  }
}

async function echoServer(): Promise<{ server: Server; port: number }> {
  const server = createServer({ allowHalfOpen: true }, (s) => {
    s.on('error', () => {});
    s.pipe(s);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return { server, port: (server.address() as { port: number }).port };
}

/** Greeting + CONNECT in one write; resolves with a socket past the 12 handshake bytes. */
async function socksConnect(
  proxyPort: number,
  target: { port: number; host?: number[] },
): Promise<{ s: Socket; early: Buffer[] }> {
  // Half-open allowed: the far end finishing first must not end our own sending.
  const s = connect({ port: proxyPort, host: '127.0.0.1', allowHalfOpen: true });
  s.on('error', () => {});
  s.write(Buffer.concat([GREET, connectReq(target.port, target.host)]));
  let got = Buffer.alloc(0);
  await new Promise<void>((resolve, reject) => {
    const onData = (d: Buffer): void => {
      got = Buffer.concat([got, d]);
      if (got.length >= 12) {
        s.off('data', onData);
        s.pause();
        resolve();
      }
    };
    s.on('data', onData);
    s.once('close', () => reject(new Error(`closed after ${got.toString('hex')}`)));
  });
  assert.deepEqual(got.subarray(0, 12), Buffer.concat([Buffer.of(5, 0), rep(0)]));
  return { s, early: got.length > 12 ? [got.subarray(12)] : [] };
}

const run = (cmd: string, args: string[]): Promise<{ code: number; stdout: string }> =>
  new Promise((resolve) => {
    execFile(cmd, args, { timeout: 10_000 }, (err, stdout) => {
      const code = err ? (typeof err.code === 'number' ? err.code : -1) : 0;
      resolve({ code, stdout });
    });
  });

test('address codec: IPv4, IPv6 (RFC 5952 text), domain names; malformed ones refused', () => {
  const cases: [string, number[]][] = [
    ['192.0.2.7', [1, 192, 0, 2, 7]],
    ['2001:db8::1', [4, 0x20, 0x01, 0x0d, 0xb8, ...Array(11).fill(0), 1]],
    ['::1', [4, ...Array(15).fill(0), 1]],
    ['::', [4, ...Array(16).fill(0)]],
    ['2001:db8:0:1:1:1:1:1', [4, 0x20, 1, 0xd, 0xb8, 0, 0, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1]],
    ['2001:0:0:1::1', [4, 0x20, 1, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1]],
    ['example.com', [3, 11, ...Buffer.from('example.com')]],
  ];
  for (const [host, head] of cases) {
    const enc = encodeSocksAddress({ host, port: 443 });
    assert.deepEqual([...enc], [...head, 1, 187], host);
    const dec = decodeSocksAddress(enc);
    assert.ok(dec.ok);
    assert.deepEqual(dec.target, { host, port: 443 });
    assert.equal(dec.length, enc.length);
  }
  // Mapped and embedded forms normalise; a non-canonical literal comes back canonical.
  assert.deepEqual(
    [...encodeSocksAddress({ host: '::ffff:10.0.0.1', port: 1 })].slice(0, 5),
    [1, 10, 0, 0, 1],
  );
  const d = decodeSocksAddress(encodeSocksAddress({ host: '2001:DB8:0:0:0:0:0:1', port: 1 }));
  assert.ok(d.ok && d.target.host === '2001:db8::1');
  assert.deepEqual(decodeSocksAddress(Uint8Array.of(3, 0, 0, 80)), { ok: false, why: 'malformed' });
  assert.deepEqual(decodeSocksAddress(Uint8Array.of(3, 1, 0, 0, 80)), {
    ok: false,
    why: 'malformed',
  });
  assert.deepEqual(decodeSocksAddress(Uint8Array.of(3, 2, 0xc3, 0x28, 0, 80)), {
    ok: false,
    why: 'malformed',
  });
  assert.deepEqual(decodeSocksAddress(Uint8Array.of(9, 1, 2)), { ok: false, why: 'atyp' });
  assert.deepEqual(decodeSocksAddress(Uint8Array.of(1, 127, 0, 0)), { ok: false, why: 'short' });
  assert.throws(() => encodeSocksAddress({ host: 'x'.repeat(256), port: 1 }), RangeError);
  // UDP header round trip.
  const u = encodeSocksUdp({ host: '10.1.2.3', port: 53 }, Buffer.from('q'));
  assert.deepEqual([...u], [0, 0, 0, 1, 10, 1, 2, 3, 0, 53, 113]);
  assert.deepEqual(decodeSocksUdp(u), {
    frag: 0,
    target: { host: '10.1.2.3', port: 53 },
    data: Uint8Array.of(113),
  });
  assert.equal(decodeSocksUdp(Uint8Array.of(0, 0, 0)), undefined);
});

test('curl --socks5-hostname fetches a page; the name reaches the dialer unresolved', async () => {
  const body = `hello through socks ${randomBytes(8).toString('hex')}\n`;
  const http = createHttpServer((req, res) => {
    res.end(req.url === '/page' ? body : 'wrong path');
  });
  http.listen(0, '127.0.0.1');
  await once(http, 'listening');
  const hp = (http.address() as { port: number }).port;
  const dialer = directDialer();
  const socks = await startSocksServer({ host: '127.0.0.1', port: 0, dialer });
  const authed = await startSocksServer({
    host: '127.0.0.1',
    port: 0,
    dialer,
    auth: { username: 'alice', password: 'pa:ss w0rd' },
  });
  try {
    const r = await run('curl', [
      '-sS',
      '--max-time',
      '5',
      '--socks5-hostname',
      `127.0.0.1:${socks.address.port}`,
      `http://localhost:${hp}/page`,
    ]);
    assert.equal(r.code, 0);
    assert.equal(r.stdout, body);
    assert.deepEqual(dialer.targets[0], { host: 'localhost', port: hp });
    assert.equal(socks.stats.connects, 1);

    // RFC 1929 through curl: the right password, then a wrong one.
    const ok = await run('curl', [
      '-sS',
      '--max-time',
      '5',
      '-x',
      `socks5h://alice:pa%3Ass%20w0rd@127.0.0.1:${authed.address.port}`,
      `http://localhost:${hp}/page`,
    ]);
    assert.equal(ok.code, 0);
    assert.equal(ok.stdout, body);
    const bad = await run('curl', [
      '-sS',
      '--max-time',
      '5',
      '-x',
      `socks5h://alice:nope@127.0.0.1:${authed.address.port}`,
      `http://localhost:${hp}/page`,
    ]);
    assert.notEqual(bad.code, 0);
    assert.equal(authed.stats.rejected['auth-failed'], 1);
    assert.equal(authed.stats.connects, 1);
    await until(
      () => socks.connections() === 0 && authed.connections() === 0,
      'connections to end',
    );
  } finally {
    await socks.close();
    await authed.close();
    http.close();
  }
});

test('32 MiB each way at once, SHA-256 checked, then a clean half-close both ways', async (t) => {
  const N = 32 * MiB;
  const up = randomBytes(N);
  const down = randomBytes(N);
  const chunks = (b: Buffer): Buffer[] =>
    Array.from({ length: b.length / (256 * 1024) }, (_, i) =>
      b.subarray(i * 256 * 1024, (i + 1) * 256 * 1024),
    );
  const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');
  const writeAll = async (s: Socket, b: Buffer): Promise<void> => {
    for (const c of chunks(b)) if (!s.write(c)) await once(s, 'drain');
    s.end();
  };
  let serverHash = '';
  let serverGot = 0;
  const target = createServer({ allowHalfOpen: true }, (s) => {
    const h = createHash('sha256');
    s.on('data', (d: Buffer) => {
      serverGot += d.length;
      h.update(d);
    });
    s.on('end', () => {
      serverHash = h.digest('hex');
    });
    void writeAll(s, down);
  });
  target.listen(0, '127.0.0.1');
  await once(target, 'listening');
  const dialer = directDialer();
  const socks = await startSocksServer({ host: '127.0.0.1', port: 0, dialer });
  try {
    const t0 = performance.now();
    const { s, early } = await socksConnect(socks.address.port, {
      port: (target.address() as { port: number }).port,
    });
    const h = createHash('sha256');
    let got = 0;
    for (const e of early) {
      h.update(e);
      got += e.length;
    }
    s.on('data', (d: Buffer) => {
      got += d.length;
      h.update(d);
    });
    const ended = once(s, 'end');
    s.resume();
    await writeAll(s, up);
    await ended;
    await until(() => serverHash !== '', 'the target to see the end', 5000);
    const ms = performance.now() - t0;
    t.diagnostic(`64 MiB through the proxy in ${ms.toFixed(0)} ms`);
    assert.equal(got, N);
    assert.equal(h.digest('hex'), sha(down));
    assert.equal(serverGot, N);
    assert.equal(serverHash, sha(up));
    await until(() => socks.connections() === 0, 'the proxy to let go of the connection');
  } finally {
    await socks.close();
    target.close();
  }
});

test('half-close: the client ends first and still reads the answer; pipelined bytes arrive', async () => {
  // The target answers only once it saw the client's FIN: what it read, reversed.
  const target = createServer({ allowHalfOpen: true }, (s) => {
    const parts: Buffer[] = [];
    s.on('data', (d: Buffer) => parts.push(d));
    s.on('end', () => s.end(Buffer.from(Buffer.concat(parts).reverse())));
  });
  target.listen(0, '127.0.0.1');
  await once(target, 'listening');
  const tp = (target.address() as { port: number }).port;
  const socks = await startSocksServer({ host: '127.0.0.1', port: 0, dialer: directDialer() });
  try {
    // Greeting, request and payload in one segment, then FIN, before any reply came back.
    const c = new Raw(socks.address.port);
    c.s.end(Buffer.concat([GREET, connectReq(tp), Buffer.from('abcdef')]));
    await c.waitClosed();
    assert.deepEqual(c.got, Buffer.concat([Buffer.of(5, 0), rep(0), Buffer.from('fedcba')]));
    assert.ok(c.ended, 'the answer ended with a FIN, not a reset');
  } finally {
    await socks.close();
    target.close();
  }
});

test('an error on either side destroys both', async () => {
  let targetSide: Socket | undefined;
  const target = createServer((s) => {
    s.on('error', () => {});
    targetSide = s;
  });
  target.listen(0, '127.0.0.1');
  await once(target, 'listening');
  const tp = (target.address() as { port: number }).port;
  const dialer = directDialer();
  const socks = await startSocksServer({ host: '127.0.0.1', port: 0, dialer });
  try {
    // The far end resets: the client's connection goes too, by RST.
    const a = await socksConnect(socks.address.port, { port: tp });
    let aErr: NodeJS.ErrnoException | undefined;
    a.s.on('error', (e) => {
      aErr = e;
    });
    a.s.resume();
    await until(() => targetSide !== undefined, 'the target connection');
    targetSide!.resetAndDestroy();
    await until(() => a.s.destroyed, 'the client side to be destroyed');
    assert.equal(aErr?.code, 'ECONNRESET');
    await until(() => socks.connections() === 0, 'the proxy to drop it');

    // The client resets: the tunnel stream is destroyed.
    targetSide = undefined;
    const b = await socksConnect(socks.address.port, { port: tp });
    await until(() => targetSide !== undefined, 'the second target connection');
    const closedAtTarget = once(targetSide!, 'close');
    b.s.resetAndDestroy();
    await closedAtTarget;
    assert.ok(dialer.streams[1]!.destroyed);
    await until(() => socks.connections() === 0, 'the proxy to drop it');
  } finally {
    await socks.close();
    target.close();
  }
});

/** A tunnel stream whose writes can be held and whose reads are generated on demand. */
class Probe extends Duplex {
  received = 0;
  generated = 0;
  readonly limit: number;
  readonly upHash = createHash('sha256');
  readonly downHash = createHash('sha256');
  #held: (() => void) | undefined;
  #holding = true;
  #i = 0;
  constructor(limit: number) {
    super({ allowHalfOpen: true });
    this.limit = limit;
  }
  override _write(chunk: Buffer, _e: BufferEncoding, cb: () => void): void {
    this.received += chunk.length;
    this.upHash.update(chunk);
    if (this.#holding) this.#held = cb;
    else cb();
  }
  release(): void {
    this.#holding = false;
    const cb = this.#held;
    this.#held = undefined;
    cb?.();
  }
  override _read(): void {
    if (this.generated >= this.limit) {
      this.push(null);
      return;
    }
    const c = Buffer.alloc(64 * 1024, this.#i++ & 255);
    this.generated += c.length;
    this.downHash.update(c);
    this.push(c);
  }
}

test('backpressure both ways: a stalled tunnel and a stalled client hold the proxy back', async (t) => {
  const probes: Probe[] = [];
  const socks = await startSocksServer({
    host: '127.0.0.1',
    port: 0,
    dialer: {
      connect: async () => {
        const p = new Probe(32 * MiB);
        probes.push(p);
        return p;
      },
    },
  });
  try {
    const { s, early } = await socksConnect(socks.address.port, { port: 9 });
    const up = Buffer.alloc(16 * MiB, 7);
    s.write(up);
    // Neither the tunnel (writes held) nor the client (socket paused) takes anything for a while.
    await sleep(300);
    const p = probes[0]!;
    t.diagnostic(
      `held: ${p.writableLength} B queued toward the tunnel, ${p.generated} B pulled from it`,
    );
    assert.ok(p.writableLength < MiB, `queued toward the tunnel: ${p.writableLength}`);
    assert.ok(p.generated < 20 * MiB, `pulled from the tunnel: ${p.generated}`);
    // Let go: everything arrives, in order.
    p.release();
    const h = createHash('sha256');
    let got = 0;
    for (const e of early) {
      got += e.length;
      h.update(e);
    }
    s.on('data', (d: Buffer) => {
      got += d.length;
      h.update(d);
    });
    const ended = once(s, 'end');
    s.resume();
    await ended;
    await until(() => p.received === up.length, 'the upload at the tunnel');
    assert.equal(got, 32 * MiB);
    assert.equal(h.digest('hex'), p.downHash.digest('hex'));
    assert.equal(p.upHash.digest('hex'), createHash('sha256').update(up).digest('hex'));
    s.end();
    await until(() => socks.connections() === 0, 'the connection to finish');
  } finally {
    await socks.close();
  }
});

/** Each bad request: bytes sent (a number is a pause in ms), whether to FIN, the exact answer. */
interface BadCase {
  name: string;
  send: (Buffer | number)[];
  fin?: boolean;
  answer: Buffer;
  reason: string;
  /** The close must come no sooner than this (the handshake timeout). */
  minMs?: number;
}

test('bad requests: the exact SOCKS answer, the socket closed, the reason counted', async () => {
  const dialer = directDialer();
  const socks = await startSocksServer({
    host: '127.0.0.1',
    port: 0,
    dialer,
    handshakeTimeoutMs: 250,
  });
  const ok = Buffer.of(5, 0);
  const cases: BadCase[] = [
    {
      name: 'SOCKS4 request',
      send: [Buffer.of(4, 1, 0, 80, 127, 0, 0, 1, 0)],
      answer: bytes(),
      reason: 'bad-version',
    },
    {
      name: 'HTTP garbage',
      send: [Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n')],
      answer: bytes(),
      reason: 'bad-version',
    },
    {
      name: 'no methods',
      send: [Buffer.of(5, 0)],
      answer: bytes(5, 0xff),
      reason: 'no-acceptable-method',
    },
    {
      name: 'only user/pass offered, none configured',
      send: [Buffer.of(5, 1, 2)],
      answer: bytes(5, 0xff),
      reason: 'no-acceptable-method',
    },
    {
      name: 'greeting cut short',
      send: [Buffer.of(5, 3, 0)],
      fin: true,
      answer: bytes(),
      reason: 'truncated',
    },
    {
      name: 'request with version 4',
      send: [GREET, Buffer.of(4, 1, 0, 1, 127, 0, 0, 1, 0, 80)],
      answer: bytes(ok, rep(1)),
      reason: 'bad-version',
    },
    {
      name: 'BIND',
      send: [GREET, Buffer.of(5, 2, 0, 1, 127, 0, 0, 1, 0, 80)],
      answer: bytes(ok, rep(7)),
      reason: 'command-not-supported',
    },
    {
      name: 'unknown command 9',
      send: [GREET, Buffer.of(5, 9, 0, 1, 127, 0, 0, 1, 0, 80)],
      answer: bytes(ok, rep(7)),
      reason: 'command-not-supported',
    },
    {
      name: 'unknown ATYP 5',
      send: [GREET, Buffer.of(5, 1, 0, 5, 127, 0, 0, 1, 0, 80)],
      answer: bytes(ok, rep(8)),
      reason: 'address-type-not-supported',
    },
    {
      name: 'empty domain name',
      send: [GREET, Buffer.of(5, 1, 0, 3, 0, 0, 80)],
      answer: bytes(ok, rep(1)),
      reason: 'malformed',
    },
    {
      name: 'domain name with a NUL',
      send: [GREET, bytes([5, 1, 0, 3, 5], 'ab\0cd', [0, 80])],
      answer: bytes(ok, rep(1)),
      reason: 'malformed',
    },
    {
      name: 'request cut short',
      send: [GREET, Buffer.of(5, 1, 0, 1, 127, 0)],
      fin: true,
      answer: bytes(ok, rep(1)),
      reason: 'truncated',
    },
    {
      name: 'slowloris: half a greeting',
      send: [Buffer.of(5)],
      answer: bytes(),
      reason: 'handshake-timeout',
      minMs: 250,
    },
    {
      name: 'slowloris: a request one byte every 60 ms',
      send: [GREET, ...[...connectReq(80)].flatMap((b) => [60, Buffer.of(b)])],
      answer: bytes(ok, rep(1)),
      reason: 'handshake-timeout',
      minMs: 250,
    },
  ];
  try {
    const counted = { ...socks.stats.rejected };
    for (const c of cases) {
      const raw = new Raw(socks.address.port);
      for (const x of c.send) {
        if (typeof x === 'number') {
          await sleep(x);
          if (raw.closed) break;
        } else raw.s.write(x);
      }
      if (c.fin) raw.s.end();
      await raw.waitClosed(2000);
      // Let go at once, not after a linger timeout.
      await until(() => socks.connections() === 0, `${c.name}: the server let go`, 500);
      assert.deepEqual(raw.got, c.answer, c.name);
      if (c.minMs) {
        const took = raw.closedAt - raw.t0;
        assert.ok(
          took >= c.minMs - 5 && took < c.minMs + 1000,
          `${c.name}: closed after ${took} ms`,
        );
      }
      counted[c.reason as keyof typeof counted]++;
      await until(
        () =>
          socks.stats.rejected[c.reason as keyof typeof counted] ===
          counted[c.reason as keyof typeof counted],
        `${c.name} counted as ${c.reason}`,
      );
    }
    assert.deepEqual(socks.stats.rejected, counted);
    assert.equal(dialer.targets.length, 0, 'nothing was dialled');
    await until(() => socks.connections() === 0, 'every socket closed');
  } finally {
    await socks.close();
  }
});

test('maxConnections: one over the limit is closed at once and counted', async () => {
  const socks = await startSocksServer({
    host: '127.0.0.1',
    port: 0,
    dialer: directDialer(),
    maxConnections: 2,
  });
  try {
    const a = new Raw(socks.address.port);
    const b = new Raw(socks.address.port);
    await until(() => socks.connections() === 2, 'two connections');
    const c = new Raw(socks.address.port);
    await c.waitClosed();
    assert.equal(c.got.length, 0);
    assert.equal(socks.stats.rejected['too-many-connections'], 1);
    assert.ok(!a.closed && !b.closed);
    await socks.close();
    await a.waitClosed();
    await b.waitClosed();
    assert.equal(socks.connections(), 0);
  } finally {
    await socks.close();
  }
});

test('TunnelError codes map to RFC 1928 §6 reply codes, on the wire too', async () => {
  const expected: [TunnelErrorCode, number][] = [
    ['policy', 0x02],
    ['network', 0x03],
    ['unreachable', 0x04],
    ['dns', 0x04],
    ['refused', 0x05],
    ['timeout', 0x06],
    ['shutdown', 0x01],
    ['internal', 0x01],
  ];
  for (const [code, r] of expected) assert.equal(socksReplyFor(new TunnelError(code, code)), r);
  assert.equal(socksReplyFor(new Error('x')), 0x01);
  assert.equal(socksReplyFor('x'), 0x01);

  // On the wire: the target port picks the failure. 1-8: a TunnelError; 100: a plain Error;
  // 101: a dialer that never answers (the server gives up with 0x06 and aborts the signal).
  let aborted = 0;
  const socks = await startSocksServer({
    host: '127.0.0.1',
    port: 0,
    connectTimeoutMs: 150,
    dialer: {
      connect: (t, signal) => {
        if (t.port === 100) return Promise.reject(new Error('boom'));
        if (t.port === 101) {
          signal?.addEventListener('abort', () => aborted++);
          return new Promise(() => {});
        }
        const [code] = expected[t.port - 1]!;
        return Promise.reject(new TunnelError(code, `no: ${code}`));
      },
    },
  });
  try {
    const wire: [number, number][] = [
      ...expected.map(([, r], i): [number, number] => [i + 1, r]),
      [100, 0x01],
      [101, 0x06],
    ];
    for (const [port, r] of wire) {
      const c = new Raw(socks.address.port).send(GREET, connectReq(port));
      await c.waitClosed();
      assert.deepEqual(c.got, bytes(5, 0, rep(r)), `port ${port}`);
    }
    assert.equal(aborted, 1);
    assert.deepEqual(socks.stats.connectFailures, {
      policy: 1,
      refused: 1,
      unreachable: 1,
      network: 1,
      timeout: 2,
      dns: 1,
      shutdown: 1,
      internal: 2,
    });
    // A real refusal through the direct dialer: a port nothing listens on.
    const closedPort = await (async () => {
      const s = createServer().listen(0, '127.0.0.1');
      await once(s, 'listening');
      const p = (s.address() as { port: number }).port;
      await new Promise((r) => s.close(r));
      return p;
    })();
    const direct = await startSocksServer({ host: '127.0.0.1', port: 0, dialer: directDialer() });
    const c = new Raw(direct.address.port).send(GREET, connectReq(closedPort));
    await c.waitClosed();
    assert.deepEqual(c.got, bytes(5, 0, rep(5)));
    await direct.close();
  } finally {
    await socks.close();
  }
});

test('RFC 1929 username/password: success carries data, every failure answered 01 01 and closed', async () => {
  const { server: echo, port: ep } = await echoServer();
  const dialer = directDialer();
  const socks = await startSocksServer({
    host: '127.0.0.1',
    port: 0,
    dialer,
    auth: { username: 'alice', password: 's3cret' },
    handshakeTimeoutMs: 300,
  });
  const creds = (u: string, p: string): Buffer =>
    bytes(1, Buffer.byteLength(u), u, Buffer.byteLength(p), p);
  try {
    const good = new Raw(socks.address.port).send(
      Buffer.of(5, 2, 0, 2),
      creds('alice', 's3cret'),
      connectReq(ep),
      Buffer.from('ping'),
    );
    await good.bytes(2 + 2 + 10 + 4);
    assert.deepEqual(good.got, bytes(5, 2, 1, 0, rep(0), 'ping'));
    good.s.end();
    await good.waitClosed();

    const failures: [string, Buffer[], Buffer, string][] = [
      [
        'wrong password',
        [Buffer.of(5, 1, 2), creds('alice', 's3creT')],
        bytes(5, 2, 1, 1),
        'auth-failed',
      ],
      [
        'wrong user',
        [Buffer.of(5, 1, 2), creds('bob', 's3cret')],
        bytes(5, 2, 1, 1),
        'auth-failed',
      ],
      ['empty user', [Buffer.of(5, 1, 2), creds('', 's3cret')], bytes(5, 2, 1, 1), 'auth-failed'],
      ['no-auth only', [Buffer.of(5, 1, 0)], bytes(5, 0xff), 'no-acceptable-method'],
      [
        'subnegotiation version 5',
        [Buffer.of(5, 1, 2), Buffer.of(5, 5), Buffer.from('alice')],
        bytes(5, 2, 1, 1),
        'bad-version',
      ],
      [
        'credentials cut short (timeout)',
        [Buffer.of(5, 1, 2), Buffer.of(1, 5, 97)],
        bytes(5, 2, 1, 1),
        'handshake-timeout',
      ],
    ];
    for (const [name, send, answer, reason] of failures) {
      const before = socks.stats.rejected[reason as 'auth-failed'];
      const c = new Raw(socks.address.port).send(...send);
      await c.waitClosed();
      assert.deepEqual(c.got, answer, name);
      assert.equal(socks.stats.rejected[reason as 'auth-failed'], before + 1, name);
    }
    assert.equal(dialer.targets.length, 1);
  } finally {
    await socks.close();
    echo.close();
  }
  await assert.rejects(
    startSocksServer({ host: '127.0.0.1', port: 0, dialer, auth: { username: '', password: 'x' } }),
    { code: 'ROAMLINK_ERR_INVALID_ARGUMENT' },
  );
});

test('an IPv6 target is handed over as its canonical literal', async (t) => {
  const echo = createServer((s) => s.pipe(s));
  try {
    echo.listen(0, '::1');
    await once(echo, 'listening');
  } catch {
    t.skip('no ::1 here');
    return;
  }
  const ep = (echo.address() as { port: number }).port;
  const dialer = directDialer();
  const socks = await startSocksServer({ host: '::1', port: 0, dialer });
  try {
    const c = new Raw(socks.address.port, '::1').send(
      GREET,
      Buffer.of(5, 1, 0, 4, ...Array(15).fill(0), 1, ...be16(ep)),
      Buffer.from('six'),
    );
    await c.bytes(15);
    assert.deepEqual(c.got, bytes(5, 0, rep(0), 'six'));
    assert.deepEqual(dialer.targets, [{ host: '::1', port: ep }]);
    c.s.end();
    await c.waitClosed();
  } finally {
    await socks.close();
    echo.close();
  }
});

function udpRecv(sock: UdpSocket, ms = 1000): Promise<Buffer | undefined> {
  return new Promise((resolve) => {
    const t = setTimeout(() => {
      sock.off('message', on);
      resolve(undefined);
    }, ms);
    const on = (m: Buffer): void => {
      clearTimeout(t);
      sock.off('message', on);
      resolve(m);
    };
    sock.on('message', on);
  });
}

async function udpSocket(host = '127.0.0.1'): Promise<UdpSocket> {
  const s = createSocket('udp4');
  s.bind(0, host);
  await once(s, 'listening');
  return s;
}

test('UDP ASSOCIATE: a hand-built §7 header round trip to an echo server; FRAG, strangers, end', async () => {
  const echo = await udpSocket();
  echo.on('message', (m, r) => echo.send(m, r.port, r.address));
  const ep = echo.address().port;
  const dialer = directDialer();
  const socks = await startSocksServer({ host: '127.0.0.1', port: 0, dialer });
  const client = await udpSocket();
  const stranger = await udpSocket('127.0.0.2');
  try {
    // Control connection; DST.ADDR/DST.PORT zero: the client does not know its port yet.
    const ctl = new Raw(socks.address.port).send(GREET, Buffer.of(5, 3, 0, 1, 0, 0, 0, 0, 0, 0));
    const r = await ctl.bytes(12);
    assert.deepEqual(r.subarray(0, 10), Buffer.of(5, 0, 5, 0, 0, 1, 127, 0, 0, 1));
    const relayPort = r.readUInt16BE(10);
    assert.ok(relayPort > 0);
    assert.equal(dialer.udp.opened, 1);

    const payload = Buffer.from('ping over udp');
    client.send(bytes([0, 0, 0, 1, 127, 0, 0, 1], be16(ep), payload), relayPort, '127.0.0.1');
    const back = await udpRecv(client);
    assert.deepEqual(back, bytes([0, 0, 0, 1, 127, 0, 0, 1], be16(ep), payload));

    // A domain-name destination goes to the dialer as a name.
    client.send(bytes([0, 0, 0, 3, 9], 'localhost', be16(ep), 'by name'), relayPort, '127.0.0.1');
    assert.deepEqual(await udpRecv(client), bytes([0, 0, 0, 1, 127, 0, 0, 1], be16(ep), 'by name'));

    // FRAG 1: dropped and counted, nothing comes back.
    client.send(bytes([0, 0, 1, 1, 127, 0, 0, 1], be16(ep), 'frag'), relayPort, '127.0.0.1');
    assert.equal(await udpRecv(client, 150), undefined);
    assert.equal(socks.stats.udpFragDropped, 1);
    // From another address: dropped and counted.
    stranger.send(bytes([0, 0, 0, 1, 127, 0, 0, 1], be16(ep), 'x'), relayPort, '127.0.0.1');
    await until(() => socks.stats.udpForeignDropped === 1, 'the stranger dropped');
    // Malformed: unknown ATYP.
    client.send(Buffer.of(0, 0, 0, 7, 1, 2, 3), relayPort, '127.0.0.1');
    await until(() => socks.stats.udpMalformedDropped === 1, 'the malformed one dropped');
    assert.equal(socks.stats.udpDatagramsIn, 2);
    assert.equal(socks.stats.udpDatagramsOut, 2);

    // The association ends with the control connection.
    ctl.s.end();
    await ctl.waitClosed();
    await until(() => dialer.udp.closed === 1, 'the tunnel association closed');
    client.send(bytes([0, 0, 0, 1, 127, 0, 0, 1], be16(ep), 'late'), relayPort, '127.0.0.1');
    assert.equal(await udpRecv(client, 150), undefined);
    assert.equal(socks.stats.udpDatagramsIn, 2);

    // With DST.PORT given, only that port of the client's address is accepted.
    const other = await udpSocket();
    const cp = client.address().port;
    const ctl2 = new Raw(socks.address.port).send(
      GREET,
      Buffer.of(5, 3, 0, 1, 127, 0, 0, 1, ...be16(cp)),
    );
    const relay2 = (await ctl2.bytes(12)).readUInt16BE(10);
    other.send(bytes([0, 0, 0, 1, 127, 0, 0, 1], be16(ep), 'wrong port'), relay2, '127.0.0.1');
    await until(() => socks.stats.udpForeignDropped === 2, 'the other port dropped');
    client.send(bytes([0, 0, 0, 1, 127, 0, 0, 1], be16(ep), 'right port'), relay2, '127.0.0.1');
    assert.deepEqual(
      await udpRecv(client),
      bytes([0, 0, 0, 1, 127, 0, 0, 1], be16(ep), 'right port'),
    );
    other.close();
    ctl2.s.destroy();
    await until(() => dialer.udp.closed === 2, 'the second association closed');
    assert.equal(socks.stats.udpAssociations, 2);
  } finally {
    await socks.close();
    for (const s of [echo, client, stranger]) s.close();
  }

  // A dialer without datagrams: command not supported.
  const noUdp = await startSocksServer({
    host: '127.0.0.1',
    port: 0,
    dialer: directDialer({ udp: false }),
  });
  try {
    const c = new Raw(noUdp.address.port).send(GREET, Buffer.of(5, 3, 0, 1, 0, 0, 0, 0, 0, 0));
    await c.waitClosed();
    assert.deepEqual(c.got, bytes(5, 0, rep(7)));
    assert.equal(noUdp.stats.rejected['command-not-supported'], 1);
  } finally {
    await noUdp.close();
  }
});

test('close() ends every connection and the listener', async () => {
  const { server: echo, port: ep } = await echoServer();
  const dialer = directDialer();
  const socks: SocksServer = await startSocksServer({ host: '127.0.0.1', port: 0, dialer });
  const a = await socksConnect(socks.address.port, { port: ep });
  const b = new Raw(socks.address.port).send(Buffer.of(5));
  await until(() => socks.connections() === 2, 'two connections');
  await socks.close();
  await until(() => a.s.destroyed || a.s.readableEnded, 'the carried connection closed');
  await b.waitClosed();
  assert.equal(socks.connections(), 0);
  await until(() => dialer.streams[0]!.destroyed, 'the tunnel stream destroyed');
  const late = new Raw(socks.address.port);
  await late.waitClosed();
  assert.equal(late.got.length, 0);
  echo.close();
  // A failing dialer's rejection is handled, never unhandled.
  const f = await startSocksServer({
    host: '127.0.0.1',
    port: 0,
    dialer: failingDialer(new TunnelError('refused', 'no')),
  });
  const c = new Raw(f.address.port).send(GREET, connectReq(1));
  await c.waitClosed();
  assert.deepEqual(c.got, bytes(5, 0, rep(5)));
  await f.close();
});
