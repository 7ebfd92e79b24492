/**
 * A WebSocket client's reads cut at frame boundaries (WsFrameReads): RFC 6455 §5.2 lengths, every
 * way reads can cut a response and its frames, the gather path for a frame that does not fit the
 * arena, passthrough of a refusal, and `ws` over a real socket receiving messages that it did
 * not have to join by copying.
 */
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { createServer } from 'node:http';
import type { AddressInfo, NetConnectOpts } from 'node:net';
import { test } from 'node:test';
import { WebSocket, WebSocketServer } from 'ws';
import { READ_ARENA_BYTES } from '../src/read-arena.ts';
import { connectWsFrames, frameBytes, WsFrameReads } from '../src/ws-frame-reads.ts';
import { seeded } from './seeded.ts';

const hex = (s: string): Uint8Array => Uint8Array.from(Buffer.from(s.replace(/\s/g, ''), 'hex'));

test('frameBytes: the examples of RFC 6455 §5.7, incomplete headers, lengths over the bound', () => {
  // A single-frame unmasked text message "Hello".
  assert.equal(frameBytes(hex('810548656c6c6f'), 0, 1 << 20), 7);
  // A single-frame masked text message "Hello".
  assert.equal(frameBytes(hex('818537fa213d7f9f4d5158'), 0, 1 << 20), 11);
  // An unmasked Ping with "Hello".
  assert.equal(frameBytes(hex('890548656c6c6f'), 0, 1 << 20), 7);
  // 256 bytes binary in a single unmasked frame: 7E and a 16-bit length.
  assert.equal(frameBytes(hex('827e0100'), 0, 1 << 20), 4 + 256);
  // 64 KiB binary in a single unmasked frame: 7F and a 64-bit length.
  assert.equal(frameBytes(hex('827f0000000000010000'), 0, 1 << 20), 10 + 65_536);
  // At an offset, and with the header cut short at every byte.
  assert.equal(frameBytes(hex('00 00 810548656c6c6f'), 2, 1 << 20), 7);
  assert.equal(frameBytes(hex('81'), 0, 1 << 20), undefined);
  assert.equal(frameBytes(hex('827e01'), 0, 1 << 20), undefined);
  assert.equal(frameBytes(hex('827f00000000000100'), 0, 1 << 20), undefined);
  // Over the bound, or a 64-bit length past 2^32: -1.
  assert.equal(frameBytes(hex('827e0100'), 0, 255), -1);
  assert.equal(frameBytes(hex('827f0000000100000000'), 0, 1 << 20), -1);
  assert.equal(frameBytes(hex('827f0000000000100001'), 0, 1 << 20), -1);
});

/** An unmasked binary frame carrying `payload` (a server's frame, §5.1). */
function frame(payload: Uint8Array, opcode = 0x2): Uint8Array {
  const n = payload.length;
  const head =
    n < 126
      ? Uint8Array.of(0x80 | opcode, n)
      : n < 65_536
        ? Uint8Array.of(0x80 | opcode, 126, n >> 8, n & 255)
        : Uint8Array.of(
            0x80 | opcode,
            127,
            0,
            0,
            0,
            0,
            n >>> 24,
            (n >> 16) & 255,
            (n >> 8) & 255,
            n & 255,
          );
  return Buffer.concat([head, payload]);
}

const RESPONSE = Buffer.from(
  'HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n' +
    'Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n',
);

/** Splits `frames` (after the head) back into frames; fails unless they are whole. */
function wholeFrames(chunk: Uint8Array): number {
  let o = 0;
  let n = 0;
  while (o < chunk.length) {
    const len = frameBytes(chunk, o, 1 << 24);
    assert.ok(
      len !== undefined && len > 0 && o + len <= chunk.length,
      'a chunk ends where a frame does',
    );
    o += len;
    n++;
  }
  return n;
}

/**
 * Feeds `stream` to a WsFrameReads as Node's onread would: before each read it asks `target`
 * (room: what is left of a simulated arena), then reads up to `cut()` bytes into the target or the
 * arena. Returns the chunks it emitted, and how many bytes went to targets.
 */
function feed(
  stream: Uint8Array,
  cut: () => number,
  arenaBytes = 256 * 1024,
): { chunks: Buffer[]; gathered: number; arenas: ArrayBufferLike[] } {
  const chunks: Buffer[] = [];
  const r = new WsFrameReads((c) => chunks.push(c), 1 << 20);
  let arena = Buffer.allocUnsafeSlow(arenaBytes);
  const arenas: ArrayBufferLike[] = [arena.buffer];
  let pos = 0;
  let o = 0;
  let gathered = 0;
  while (o < stream.length) {
    const left = arena.length - pos;
    const t = r.target(65_536, left < 65_536 ? 0 : left);
    const want = Math.min(cut(), stream.length - o);
    if (t !== undefined) {
      const n = Math.min(want, t.length);
      t.set(stream.subarray(o, o + n));
      o += n;
      gathered += n;
      r.filled(n);
      continue;
    }
    if (left < 65_536) {
      arena = Buffer.allocUnsafeSlow(arenaBytes);
      arenas.push(arena.buffer);
      pos = 0;
    }
    const n = Math.min(want, arena.length - pos);
    arena.set(stream.subarray(o, o + n), pos);
    const read = arena.subarray(pos, pos + n);
    pos += n;
    o += n;
    r.read(read);
  }
  return { chunks, gathered, arenas };
}

test('WsFrameReads: the head as it came, then only whole frames, whatever the reads cut', () => {
  const rnd = seeded(0x5eed);
  const sizes = [0, 1, 125, 126, 65_535, 65_536, 200_000, 1 << 20, 3, 60_000, 1 << 20, 7];
  const payloads = sizes.map((n) => randomBytes(n));
  const frames = payloads.map((p, i) => frame(p, i === 8 ? 0x9 : 0x2));
  const stream = Buffer.concat([RESPONSE, ...frames]);
  for (const cuts of [
    () => 1 + Math.floor(rnd() * 20), // tiny reads: headers split at every byte
    () => 1 + Math.floor(rnd() * 300_000),
    () => 65_536,
    () => 1 << 22,
  ]) {
    const { chunks } = feed(stream, cuts);
    assert.deepEqual(Buffer.concat(chunks), stream, 'every byte, in order');
    // The head comes first, on its own chunks; from there every chunk holds whole frames.
    let o = 0;
    let i = 0;
    while (o < RESPONSE.length) o += chunks[i++]!.length;
    assert.equal(o, RESPONSE.length, 'the head ends a chunk');
    let n = 0;
    for (; i < chunks.length; i++) n += wholeFrames(chunks[i]!);
    assert.equal(n, frames.length);
  }
});

test('WsFrameReads: a frame that fits the arena stays a view of it; a 1 MiB one is read into its own buffer', () => {
  const small = frame(randomBytes(60_000));
  const big = frame(randomBytes(1 << 20));
  const stream = Buffer.concat([RESPONSE, small, big, small]);
  // 16 KiB reads: the 60 000-byte frames span four reads each, but lie whole in the arena.
  const { chunks, gathered, arenas } = feed(stream, () => 16_384);
  const frameChunks = chunks.filter((c) => c[0] === 0x82);
  assert.equal(frameChunks.length, 3);
  const [a, b, c] = frameChunks as [Buffer, Buffer, Buffer];
  assert.deepEqual(a, small);
  assert.ok(arenas.includes(a.buffer), 'the first small frame is a view of an arena');
  assert.deepEqual(b, big);
  assert.equal(b.buffer.byteLength, big.length, 'the big one has a buffer of its own size');
  assert.ok(gathered > big.length - 2 * 65_536, `read into it directly (${gathered} bytes)`);
  assert.deepEqual(c, small);
});

test('WsFrameReads: a refused upgrade and an oversized frame pass through as read', () => {
  const refused = Buffer.from('HTTP/1.1 403 Forbidden\r\nContent-Length: 4\r\n\r\nno\r\n');
  const after = Buffer.concat([refused, frame(randomBytes(70_000))]);
  const reads: number[] = [];
  const { chunks } = feed(after, () => {
    reads.push(0);
    return 17;
  });
  assert.deepEqual(Buffer.concat(chunks), after);
  assert.equal(
    chunks.length,
    reads.length,
    'one chunk per read: nothing held back, nothing gathered',
  );

  const tooBig = Buffer.concat([
    RESPONSE,
    frame(Buffer.alloc(10)),
    Uint8Array.of(0x82, 127, 0, 0, 0, 0, 0, 0x20, 0, 0),
  ]);
  const out = feed(tooBig, () => 5);
  assert.deepEqual(Buffer.concat(out.chunks), tooBig, 'handed on for `ws` to refuse');
});

test('ws over connectWsFrames: messages of every size arrive intact, none joined by a copy', async () => {
  const sizes = [5, 60_000, 1 << 20, 300_000, 1 << 20, 1 << 20, 126, 1 << 20, 70_000];
  const payloads = sizes.map((n) => randomBytes(n));
  const server = createServer();
  const wss = new WebSocketServer({ server, maxPayload: 1 << 20 });
  wss.on('connection', (s) => {
    for (const p of payloads) s.send(p, { binary: true });
    s.ping(Buffer.from('hi'));
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const port = (server.address() as AddressInfo).port;
  const ws = new WebSocket(`ws://127.0.0.1:${port}/`, {
    maxPayload: 1 << 20,
    perMessageDeflate: false,
    createConnection: ((o: NetConnectOpts) => connectWsFrames(o, 1 << 20)) as never,
  });
  const got: Buffer[] = [];
  const done = new Promise<void>((resolve) =>
    ws.on('message', (m: Buffer) => {
      got.push(m);
      if (got.length === payloads.length) resolve();
    }),
  );
  const pinged = once(ws, 'ping');
  await done;
  await pinged;
  assert.deepEqual(
    got.map((m) => createHash('sha256').update(m).digest('hex')),
    payloads.map((p) => createHash('sha256').update(p).digest('hex')),
  );
  for (const [i, m] of got.entries()) {
    // `ws` joins a message spread over chunks into a buffer of exactly its size; a frame handed
    // over whole is a view of the arena or of a buffer holding its header too.
    const backing = m.buffer.byteLength;
    assert.ok(
      backing === READ_ARENA_BYTES || backing > m.length,
      `message ${i} (${m.length} bytes) is not ws's own copy (backing ${backing})`,
    );
  }
  ws.close();
  await once(ws, 'close');
  wss.close();
  server.close();
});

test('ws over connectWsFrames: a refused upgrade is reported with its status', async () => {
  const server = createServer((_req, res) => res.writeHead(403).end('no'));
  server.on('upgrade', (_req, socket) => {
    socket.end('HTTP/1.1 403 Forbidden\r\nContent-Length: 2\r\nConnection: close\r\n\r\nno');
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const port = (server.address() as AddressInfo).port;
  const ws = new WebSocket(`ws://127.0.0.1:${port}/`, {
    createConnection: ((o: NetConnectOpts) => connectWsFrames(o, 1 << 20)) as never,
  });
  const [, res] = (await once(ws, 'unexpected-response')) as [unknown, { statusCode: number }];
  assert.equal(res.statusCode, 403);
  ws.on('error', () => {}); // terminating a handshake that failed reports it once more
  ws.terminate();
  server.close();
});
