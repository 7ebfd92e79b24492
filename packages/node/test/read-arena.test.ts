/**
 * Read arenas: consecutive, never-overlapping slices of one buffer per socket, and a server's
 * accepted connection moved onto one (adoptWithArena) so that its reads land there too, with the
 * server's connection count still right; a record split across reads read straight into its own
 * buffer.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { Agent, createServer as createHttpServer, get as httpGet } from 'node:http';
import { type AddressInfo, connect, createServer, type NetConnectOpts, Socket } from 'node:net';
import { test } from 'node:test';
import { RecordReader, recordHeader } from '@roamlink/core';
import {
  adoptWithArena,
  arenaReads,
  connectWithArena,
  READ_ARENA_BYTES,
  ReadArena,
} from '../src/read-arena.ts';

test('ReadArena: slices follow each other in one buffer; a fresh one when under 64 KiB is left', () => {
  const a = new ReadArena();
  const first = a.next();
  assert.equal(first.length, READ_ARENA_BYTES);
  a.used(100_000);
  const second = a.next();
  assert.equal(second.buffer, first.buffer, 'the same buffer while 64 KiB or more is left');
  assert.equal(second.byteOffset, first.byteOffset + 100_000);
  assert.equal(second.length, READ_ARENA_BYTES - 100_000);
  a.used(100_000);
  // 56 KiB left: too little for a full read, so the next read gets a new buffer.
  const third = a.next();
  assert.notEqual(third.buffer, first.buffer);
  assert.equal(third.length, READ_ARENA_BYTES);
  // What was handed out is never handed out again.
  first.subarray(0, 100_000).fill(1);
  second.subarray(0, 100_000).fill(2);
  third.fill(3);
  assert.ok(first.subarray(0, 100_000).every((x) => x === 1));
  assert.ok(second.subarray(0, 100_000).every((x) => x === 2));
});

test('adoptWithArena: an accepted connection reads into one arena, writes, and counts against its server', async () => {
  const got: Uint8Array[] = [];
  let adopted: Socket | undefined;
  const server = createServer({ pauseOnConnect: true }, (accepted) => {
    adopted = adoptWithArena(accepted, server, (d) => {
      got.push(d);
      // Reads are the adopted socket's: it answers on the same connection.
      adopted!.write(Uint8Array.of(d.length & 255));
    });
    assert.notEqual(adopted, accepted, 'a plain TCP connection moves to a new socket');
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const c = connect((server.address() as AddressInfo).port, '127.0.0.1');
  await once(c, 'connect');
  const answers: number[] = [];
  c.on('data', (b: Buffer) => answers.push(...b));
  const sent = [Buffer.alloc(1000, 1), Buffer.alloc(3000, 2), Buffer.alloc(500, 3)];
  for (const b of sent) {
    c.write(b);
    // One read per write: wait for its answer before the next.
    const want = answers.length + 1;
    while (answers.length < want) await once(c, 'data');
  }
  assert.deepEqual(Buffer.concat(got), Buffer.concat(sent));
  // Every read is a view into the same arena, one after the other.
  assert.ok(got.every((d) => d.buffer === got[0]!.buffer));
  assert.equal(got[0]!.buffer.byteLength, READ_ARENA_BYTES);
  for (let i = 1; i < got.length; i++) {
    assert.equal(got[i]!.byteOffset, got[i - 1]!.byteOffset + got[i - 1]!.length);
  }
  assert.deepEqual(
    answers,
    got.map((d) => d.length & 255),
  );
  // The server counts the moved connection, and close() waits for it and then completes.
  assert.equal(await new Promise((r) => server.getConnections((_e, n) => r(n))), 1);
  let closed = false;
  server.close(() => {
    closed = true;
  });
  await new Promise((r) => setTimeout(r, 50));
  assert.equal(closed, false, 'close waits for the open connection');
  c.end();
  await once(server, 'close');
  assert.equal(adopted!.destroyed, true);
});

test('adoptWithArena: a socket without a handle stays as it is and delivers through data events', async () => {
  const server = createServer();
  const s = new Socket();
  const got: Uint8Array[] = [];
  const out = adoptWithArena(s, server, (d) => got.push(d));
  assert.equal(out, s);
  s.push(Buffer.from('hello'));
  await new Promise((r) => setImmediate(r));
  assert.deepEqual(
    got.map((d) => Buffer.from(d).toString()),
    ['hello'],
  );
  s.destroy();
});

test('connectWithArena under node:http: reads arrive as views of the arena, the body intact, keep-alive reuses the socket', async () => {
  // A chunked response in pieces, on a kept-alive connection.
  const piece = Buffer.alloc(50_000, 7);
  const server = createHttpServer((_req, res) => {
    res.writeHead(200, { 'content-type': 'application/octet-stream' });
    let i = 0;
    const next = (): void => {
      if (i++ === 4) res.end();
      else res.write(piece, () => setTimeout(next, 5));
    };
    next();
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  // What node:http's parser is handed: every 'data' event of the connection.
  const reads: Uint8Array[] = [];
  class ArenaAgent extends Agent {
    override createConnection(options: NetConnectOpts): Socket {
      const s = connectWithArena(options);
      s.on('data', (d: Uint8Array) => reads.push(d));
      return s;
    }
  }
  const agent = new ArenaAgent({ keepAlive: true, maxSockets: 1 });
  const get = (): Promise<{ chunks: Buffer[]; socket: Socket }> =>
    new Promise((resolve, reject) => {
      const req = httpGet(
        { host: '127.0.0.1', port: (server.address() as AddressInfo).port, path: '/', agent },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () => resolve({ chunks, socket: req.socket! }));
        },
      );
      req.on('error', reject);
    });
  try {
    const first = await get();
    assert.deepEqual(Buffer.concat(first.chunks), Buffer.concat(Array(4).fill(piece)));
    assert.ok(reads.length > 0);
    for (const d of reads) {
      assert.equal(d.buffer.byteLength, READ_ARENA_BYTES, 'a view of the read arena');
      assert.ok(Buffer.isBuffer(d), 'a Buffer, as node:http expects');
    }
    const second = await get();
    assert.equal(second.socket, first.socket, 'the kept-alive connection served both');
    assert.deepEqual(Buffer.concat(second.chunks), Buffer.concat(Array(4).fill(piece)));
  } finally {
    agent.destroy();
    server.close();
  }
});

test('arenaReads with a gatherer: a 1 MiB record split across reads goes mostly straight into its buffer', async () => {
  const n = 1 << 20;
  const body = Uint8Array.from({ length: n }, (_, i) => (i * 13) & 255);
  const server = createServer(async (s) => {
    // In 64 KiB writes a few ms apart, so that the record arrives over many reads.
    s.write(recordHeader(n));
    for (let o = 0; o < n; o += 65_536) {
      s.write(body.subarray(o, o + 65_536));
      await new Promise((r) => setTimeout(r, 2));
    }
    s.end();
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const reader = new RecordReader({ zeroCopy: true, maxDatagram: n });
  const got: Uint8Array[] = [];
  reader.onRecord = (d) => got.push(d);
  let pushed = 0;
  let gathered = 0;
  const c = connect({
    port: (server.address() as AddressInfo).port,
    host: '127.0.0.1',
    onread: arenaReads(
      (d) => {
        pushed += d.length;
        assert.ok(reader.push(d));
        return true;
      },
      {
        target: (min) => reader.gatherTarget(min),
        filled: (k) => {
          gathered += k;
          assert.ok(reader.gathered(k));
        },
      },
    ),
  });
  await once(c, 'end');
  c.destroy();
  server.close();
  assert.equal(got.length, 1);
  assert.deepEqual(got[0], body);
  assert.equal(pushed + gathered, n + 6);
  // Only what came with the header, and a tail under 64 KiB, went through the arena.
  assert.ok(gathered > n / 2, `${gathered} of ${n} bytes read in place`);
});
