/**
 * The TCP encapsulation over loopback: records intact and in order both ways, however TCP splits
 * them; a wrong preface closed and counted; a closed connection reported on the other side.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { connect as netConnect, type Socket } from 'node:net';
import { test } from 'node:test';
import { recordHeader } from '@roamlink/core';
import { READ_ARENA_BYTES } from '../src/read-arena.ts';
import {
  encodeRecord,
  RecordReader,
  TCP_MAX_DATAGRAM,
  TCP_PREFACE,
  type TcpEndpoint,
  TcpTransport,
} from '../src/tcp.ts';

interface Got {
  data: Uint8Array;
  path: string;
  remote: TcpEndpoint;
}

const pattern = (i: number, n: number): Uint8Array =>
  Uint8Array.from({ length: n }, (_, j) => (i * 31 + j) & 255);

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

async function pair(maxDatagram?: number): Promise<{
  server: TcpTransport;
  client: TcpTransport;
  serverGot: Got[];
  clientGot: Got[];
  serverClosed: [string, string][];
  clientClosed: [string, string][];
  port: number;
}> {
  const serverGot: Got[] = [];
  const clientGot: Got[] = [];
  const serverClosed: [string, string][] = [];
  const clientClosed: [string, string][] = [];
  const server = new TcpTransport({
    onDatagram: (data, path, remote) => serverGot.push({ data, path, remote }),
    onPathClose: (p, r) => serverClosed.push([p, r]),
    ...(maxDatagram === undefined ? {} : { maxDatagram }),
  });
  const { port } = await server.listen('127.0.0.1', 0);
  const client = new TcpTransport({
    onDatagram: (data, path, remote) => clientGot.push({ data, path, remote }),
    onPathClose: (p, r) => clientClosed.push([p, r]),
    ...(maxDatagram === undefined ? {} : { maxDatagram }),
  });
  return { server, client, serverGot, clientGot, serverClosed, clientClosed, port };
}

test('RecordReader: records split at every byte, empty records, a bad Length', () => {
  const records = [pattern(1, 0), pattern(2, 1), pattern(3, 1400), pattern(4, 65533)];
  const stream = new Uint8Array(records.reduce((n, r) => n + r.length + 2, 0));
  let o = 0;
  for (const r of records) {
    stream.set(encodeRecord(r), o);
    o += r.length + 2;
  }
  for (const step of [1, 2, 3, 7, 1401, stream.length]) {
    const out: Uint8Array[] = [];
    const reader = new RecordReader();
    reader.onRecord = (d) => out.push(d);
    for (let i = 0; i < stream.length; i += step) {
      assert.ok(reader.push(stream.subarray(i, i + step)));
    }
    assert.ok(reader.atBoundary);
    assert.deepEqual(out, records, `chunks of ${step}`);
  }
  const bad = new RecordReader();
  assert.equal(bad.push(new Uint8Array([0, 1, 9])), false);
  assert.ok(bad.failed);
  assert.equal(bad.push(encodeRecord(pattern(5, 4))), false);
  assert.throws(() => encodeRecord(new Uint8Array(65534)), RangeError);
});

test('records go both ways intact and in order over loopback', async () => {
  const { server, client, serverGot, clientGot, port } = await pair();
  try {
    const path = await client.connect('127.0.0.1', port);
    assert.match(path, /^tcp:\d+$/);
    const sizes = [1, 60, 1400, 9000, 65533, 0, 3];
    const sent = sizes.map((n, i) => pattern(i, n));
    for (const d of sent) assert.ok(client.send(path, d));
    // Empty datagrams travel as empty records: heartbeats, never handed up.
    const expectUp = sent.filter((d) => d.length > 0);
    await until(() => serverGot.length === expectUp.length, 'records at the server');
    assert.deepEqual(
      serverGot.map((g) => g.data),
      expectUp,
    );
    const sp = serverGot[0]!.path;
    assert.ok(serverGot.every((g) => g.path === sp));
    assert.match(sp, /^tcp:\d+$/);
    // The server's view of the remote is the client's local end, and vice versa.
    const mine = client.endpoints(path)!;
    assert.deepEqual(serverGot[0]!.remote, mine.local);
    assert.deepEqual(server.endpoints(sp)!.local, mine.remote);
    assert.equal(mine.remote.port, port);

    const back = [pattern(9, 100), pattern(10, 1), pattern(11, 20000)];
    for (const d of back) assert.ok(server.send(sp, d));
    await until(() => clientGot.length === back.length, 'records at the client');
    assert.deepEqual(
      clientGot.map((g) => g.data),
      back,
    );
    assert.ok(clientGot.every((g) => g.path === path));
    assert.equal(server.stats.heartbeatsReceived, 1);
    assert.equal(server.send('tcp:999', pattern(1, 1)), false);
  } finally {
    await client.close();
    await server.close();
  }
});

test('with maxDatagram 1 MiB: extended records both ways, plain ones among them, intact', async () => {
  const { server, client, serverGot, clientGot, port } = await pair(TCP_MAX_DATAGRAM);
  try {
    const path = await client.connect('127.0.0.1', port);
    const sizes = [65_533, 65_534, 3, TCP_MAX_DATAGRAM, 300_000, 1400];
    const sent = sizes.map((n, i) => pattern(i, n));
    for (const d of sent) assert.ok(client.send(path, d));
    assert.equal(client.send(path, pattern(9, TCP_MAX_DATAGRAM + 1)), false, 'over the limit');
    await until(() => serverGot.length === sent.length, 'records at the server');
    assert.deepEqual(
      serverGot.map((g) => g.data),
      sent,
    );
    const sp = serverGot[0]!.path;
    const back = [pattern(20, 700_000), pattern(21, 5)];
    for (const d of back) assert.ok(server.send(sp, d));
    await until(() => clientGot.length === back.length, 'records at the client');
    assert.deepEqual(
      clientGot.map((g) => g.data),
      back,
    );
    assert.equal(server.stats.framingErrors + client.stats.framingErrors, 0);
  } finally {
    await client.close();
    await server.close();
  }
});

test('a plain transport sends no extended record, and closes a connection that sends one', async () => {
  const { server, client, serverGot, serverClosed, port } = await pair();
  try {
    const path = await client.connect('127.0.0.1', port);
    assert.equal(client.send(path, pattern(1, 65_534)), false, 'a 16-bit Length cannot hold it');
    assert.equal(client.stats.datagramsSent, 0);
  } finally {
    await client.close();
  }
  const sock = netConnect({ host: '127.0.0.1', port });
  sock.on('error', () => {});
  try {
    const closed = new Promise<void>((r) => sock.once('close', () => r()));
    const big = pattern(2, 70_000);
    sock.write(new Uint8Array([...TCP_PREFACE, ...encodeRecord(pattern(1, 8))]));
    sock.write(recordHeader(big.length));
    sock.write(big);
    await closed;
    assert.equal(serverGot.length, 1, 'the record before it arrived');
    assert.equal(server.stats.framingErrors, 1);
    assert.ok(
      serverClosed.some(([, r]) => r === 'tcp-framing-error'),
      JSON.stringify(serverClosed),
    );
  } finally {
    sock.destroy();
    await server.close();
  }
});

test('both ends read into arenas: a large record arrives as a view of one, a small one as a copy', async () => {
  const { server, client, serverGot, clientGot, port } = await pair();
  try {
    const path = await client.connect('127.0.0.1', port);
    const big = pattern(1, 60_000);
    const small = pattern(2, 100);
    // One record per round trip, so that each arrives in a read of its own.
    assert.ok(client.send(path, big));
    await until(() => serverGot.length === 1, 'the large record');
    assert.ok(client.send(path, small));
    await until(() => serverGot.length === 2, 'the small record');
    const sp = serverGot[0]!.path;
    assert.ok(server.send(sp, big));
    await until(() => clientGot.length === 1, 'the large record back');
    for (const [side, got] of [
      ['server', serverGot[0]!.data],
      ['client', clientGot[0]!.data],
    ] as const) {
      assert.deepEqual(got, big);
      // The accepted connection too: Node's own 64 KiB read buffers would split such records.
      assert.equal(got.buffer.byteLength, READ_ARENA_BYTES, `${side}: a view into the read arena`);
    }
    // Small records are copied out, so that they do not keep a whole arena alive.
    assert.deepEqual(serverGot[1]!.data, small);
    assert.notEqual(serverGot[1]!.data.buffer, serverGot[0]!.data.buffer);
    assert.ok(serverGot[1]!.data.buffer.byteLength < READ_ARENA_BYTES);
  } finally {
    await client.close();
    await server.close();
  }
});

test('a record split across many small TCP writes arrives whole', async () => {
  const { server, serverGot, port } = await pair();
  const sock: Socket = netConnect({ host: '127.0.0.1', port, noDelay: true });
  try {
    await new Promise<void>((r) => sock.once('connect', () => r()));
    const records = [pattern(1, 3000), pattern(2, 17), pattern(3, 500)];
    const bytes = new Uint8Array([...TCP_PREFACE, ...records.flatMap((r) => [...encodeRecord(r)])]);
    // One to five bytes per write, with pauses, so that the server sees many separate segments
    // (the preface itself split too).
    let i = 0;
    let k = 0;
    while (i < bytes.length) {
      const n = 1 + (k++ % 5);
      sock.write(bytes.subarray(i, i + n));
      i += n;
      if (k % 64 === 0) await new Promise((r) => setTimeout(r, 1));
    }
    await until(() => serverGot.length === records.length, 'the split records');
    assert.deepEqual(
      serverGot.map((g) => g.data),
      records,
    );
    assert.equal(server.stats.prefaceRejected, 0);
  } finally {
    sock.destroy();
    await server.close();
  }
});

test('a wrong preface is closed without an answer and counted; no path is reported', async () => {
  const { server, serverGot, serverClosed, port } = await pair();
  try {
    for (const first of [
      new TextEncoder().encode('GET / HTTP/1.1\r\n\r\n'),
      TCP_PREFACE.slice(0, 5),
    ]) {
      const sock = netConnect({ host: '127.0.0.1', port });
      let answered = 0;
      sock.on('data', (d) => (answered += d.length));
      sock.on('error', () => {});
      const closed = new Promise<void>((r) => sock.once('close', () => r()));
      // The second case: a valid first five bytes, then a wrong sixth.
      sock.write(first);
      if (first.length === 5) sock.write(new Uint8Array([0x32, 0, 4, 1, 2]));
      await closed;
      assert.equal(answered, 0);
    }
    assert.equal(server.stats.prefaceRejected, 2);
    assert.equal(serverGot.length, 0);
    assert.deepEqual(serverClosed, []);
    assert.deepEqual(server.paths, []);
  } finally {
    await server.close();
  }
});

test('a framing error closes the path and is reported', async () => {
  const { server, serverGot, serverClosed, port } = await pair();
  const sock = netConnect({ host: '127.0.0.1', port });
  sock.on('error', () => {});
  try {
    const closed = new Promise<void>((r) => sock.once('close', () => r()));
    sock.write(new Uint8Array([...TCP_PREFACE, ...encodeRecord(pattern(1, 8)), 0, 1]));
    await closed;
    assert.equal(serverGot.length, 1);
    assert.equal(server.stats.framingErrors, 1);
    assert.equal(serverClosed.length, 1);
    assert.equal(serverClosed[0]![1], 'tcp-framing-error');
  } finally {
    sock.destroy();
    await server.close();
  }
});

test('a close is reported on the other side, with the path id it had', async () => {
  const { server, client, serverGot, serverClosed, clientClosed, port } = await pair();
  try {
    const a = await client.connect('127.0.0.1', port);
    const b = await client.connect('127.0.0.1', port);
    assert.notEqual(a, b);
    client.send(a, pattern(1, 10));
    client.send(b, pattern(2, 10));
    await until(() => serverGot.length === 2, 'one record per connection');
    const serverA = serverGot.find((g) => g.data[0] === pattern(1, 10)[0])!.path;
    const serverB = serverGot.find((g) => g.data[0] === pattern(2, 10)[0])!.path;
    assert.notEqual(serverA, serverB);

    // The client closes a: the server hears of it; the client's own close is not an event.
    client.closePath(a);
    await until(() => serverClosed.length === 1, 'the server to see the close');
    assert.equal(serverClosed[0]![0], serverA);
    assert.match(serverClosed[0]![1], /^tcp-closed/);
    assert.deepEqual(clientClosed, []);
    assert.equal(client.send(a, pattern(3, 1)), false);

    // The server closes b: the client hears of it.
    server.closePath(serverB);
    await until(() => clientClosed.length === 1, 'the client to see the close');
    assert.equal(clientClosed[0]![0], b);
    assert.deepEqual(client.paths, []);
  } finally {
    await client.close();
    await server.close();
  }
});

test('a connection that cannot be opened rejects', async () => {
  const { server, port } = await pair();
  await server.close();
  const client = new TcpTransport({ onDatagram: () => {} });
  await assert.rejects(client.connect('127.0.0.1', port));
  await client.close();
});

test('a connection whose SYNs go unanswered fails after connectTimeoutMs (ETIMEDOUT)', async () => {
  // A listener whose accept queue is full drops further SYNs, as a silent firewall does: a child
  // listens with a backlog of 1 and then blocks its event loop, so it never accepts.
  const child = spawn(
    process.execPath,
    [
      '-e',
      `const s = require('node:net').createServer();
       s.listen({ host: '127.0.0.1', port: 0, backlog: 1 }, () => {
         process.stdout.write(String(s.address().port) + '\\n', () =>
           Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0));
       });`,
    ],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  const fillers: Socket[] = [];
  const client = new TcpTransport({ onDatagram: () => {}, connectTimeoutMs: 300 });
  try {
    const [line] = (await once(child.stdout!, 'data')) as [Buffer];
    const port = Number(line.toString().trim());
    // Fill the accept queue: these complete in the kernel; the next SYN gets no answer.
    for (let i = 0; i < 4; i++) {
      const f = netConnect(port, '127.0.0.1');
      f.on('error', () => {});
      fillers.push(f);
    }
    await new Promise((r) => setTimeout(r, 100));
    const t0 = performance.now();
    await assert.rejects(client.connect('127.0.0.1', port), { code: 'ETIMEDOUT' });
    const ms = performance.now() - t0;
    assert.ok(ms >= 290 && ms < 3000, `failed after ${ms} ms`);
  } finally {
    for (const f of fillers) f.destroy();
    child.kill('SIGKILL');
    await client.close();
  }
});

test('send drops beyond the queue bound and counts it', async () => {
  const got: Uint8Array[] = [];
  const server = new TcpTransport({ onDatagram: (d) => got.push(d) });
  const { port } = await server.listen('127.0.0.1', 0);
  const client = new TcpTransport({ onDatagram: () => {}, maxQueuedBytes: 1 << 20 });
  try {
    const path = await client.connect('127.0.0.1', port);
    // One synchronous burst, far more than the kernel's socket buffers take: the rest queues in
    // the socket up to the bound, and beyond it is dropped.
    const n = 600;
    let accepted = 0;
    for (let i = 0; i < n; i++) if (client.send(path, pattern(i, 60000))) accepted++;
    assert.ok(accepted < n, `accepted ${accepted}`);
    assert.ok(accepted >= 17, `accepted ${accepted}`);
    assert.equal(client.stats.queueDrops, n - accepted);
    assert.ok(client.congested(path));
    // What was accepted arrives, in order.
    await until(() => got.length === accepted, 'the accepted records', 10000);
    for (let i = 0; i < accepted; i++) assert.equal(got[i]![0], pattern(i, 1)[0]);
    assert.deepEqual(got[accepted - 1], pattern(accepted - 1, 60000));
    await until(() => !client.congested(path), 'drain');
  } finally {
    await client.close();
    await server.close();
  }
});

test('a congested path reports its drain once, with its id, when it can take more', async () => {
  const server = new TcpTransport({ onDatagram: () => {} });
  const { port } = await server.listen('127.0.0.1', 0);
  const drains: [string, boolean][] = [];
  const client = new TcpTransport({
    onDatagram: () => {},
    // Whether the path still looked congested when its drain was reported.
    onDrain: (p) => drains.push([p, client.congested(p)]),
  });
  try {
    const path = await client.connect('127.0.0.1', port);
    // Uncongested writes report nothing.
    assert.ok(client.send(path, pattern(0, 100)));
    await new Promise((r) => setTimeout(r, 50));
    assert.deepEqual(drains, []);
    // A synchronous burst the kernel cannot take at once: the socket queues, the path is
    // congested, and the drain comes without anyone polling.
    for (let i = 0; i < 400 && !client.congested(path); i++) client.send(path, pattern(i, 60000));
    assert.ok(client.congested(path), 'the burst congested the path');
    await until(() => drains.length > 0, 'the drain report', 10000);
    assert.deepEqual(drains, [[path, false]]);
    await new Promise((r) => setTimeout(r, 50));
    assert.equal(drains.length, 1, 'one report per congestion');
  } finally {
    await client.close();
    await server.close();
  }
});
