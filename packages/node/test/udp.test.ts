/**
 * The UDP transport on loopback: datagrams both ways with their paths, RFC 3948 keepalives
 * counted and not handed up, and socket buffers sized for 64 KiB datagrams (the ~208 KiB Linux
 * default holds three, and a busy reader loses the rest).
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { UdpTransport } from '../src/index.ts';
import { type LiteralLookup, literalLookup } from '../src/udp.ts';

test('datagrams both ways with their paths; a 0xFF keepalive is counted, not handed up', async () => {
  const gotA: [string, number][] = [];
  const gotB: [string, number][] = [];
  const a = await UdpTransport.bind({ address: '127.0.0.1', port: 0 }, (d, p) =>
    gotA.push([p, d.length]),
  );
  const b = await UdpTransport.bind({ address: '127.0.0.1', port: 0 }, (d, p) =>
    gotB.push([p, d.length]),
  );
  try {
    const toB = a.addEndpoint(b.local);
    assert.equal(toB, `127.0.0.1:${b.local.port}`);
    a.send(toB, new Uint8Array(60_000));
    a.send(toB, Uint8Array.of(0xff));
    await new Promise((r) => setTimeout(r, 100));
    assert.deepEqual(gotB, [[`127.0.0.1:${a.local.port}`, 60_000]]);
    assert.equal(b.keepalivesReceived, 1);
    b.send(gotB[0]![0], new Uint8Array(5));
    await new Promise((r) => setTimeout(r, 100));
    assert.deepEqual(gotA, [[toB, 5]]);
    // The bound address is asked of the socket once and kept.
    assert.equal(a.local, a.local);
  } finally {
    await a.close();
    await b.close();
  }
});

test('socket buffers: 4 MiB asked for, as much as the kernel allows given', async () => {
  const t = await UdpTransport.bind({ address: '127.0.0.1', port: 0 }, () => {});
  try {
    const max = (name: string): number =>
      Number(readFileSync(`/proc/sys/net/core/${name}`, 'utf8').trim());
    // Linux doubles what it is asked for (for its bookkeeping) and caps the request at *mem_max.
    assert.equal(t.socket.getRecvBufferSize(), 2 * Math.min(4 * 1024 * 1024, max('rmem_max')));
    assert.equal(t.socket.getSendBufferSize(), 2 * Math.min(4 * 1024 * 1024, max('wmem_max')));
    assert.ok(t.socket.getRecvBufferSize() >= 2 * 212_992);
  } finally {
    await t.close();
  }
});

/** A name through `lookup`: it must be answered later (by dns.lookup), never at once. */
function resolveName(lookup: LiteralLookup, name: string): Promise<[string, number]> {
  return new Promise((resolve, reject) => {
    let sync = true;
    lookup(name, 4, (err, address, family) =>
      err
        ? reject(err)
        : sync
          ? reject(new Error('a name was answered synchronously'))
          : resolve([address, family]),
    );
    sync = false;
  });
}

test('literal addresses resolve at once (no deferral per datagram); names still go to DNS', async () => {
  const lookup = literalLookup();
  const got: [string | null, string, number][] = [];
  lookup('198.18.0.7', 4, (err, address, family) => got.push([err?.code ?? null, address, family]));
  lookup('::1', 6, (err, address, family) => got.push([err?.code ?? null, address, family]));
  // Called back before returning: dns.lookup would answer on a later tick.
  assert.deepEqual(got, [
    [null, '198.18.0.7', 4],
    [null, '::1', 6],
  ]);
  assert.deepEqual(await resolveName(lookup, 'localhost'), ['127.0.0.1', 4]);
});

test('the endpoint cache is bounded; a path forgotten from it is still reachable', async () => {
  const got: string[] = [];
  const relay = await UdpTransport.bind({ address: '127.0.0.1', port: 0 }, (_d, p) => got.push(p), {
    endpointCache: 2,
  });
  const echoes: number[] = [];
  const clients = await Promise.all(
    [0, 1, 2, 3, 4].map((i) =>
      UdpTransport.bind({ address: '127.0.0.1', port: 0 }, (d) => echoes.push(i * 100 + d[0]!)),
    ),
  );
  try {
    for (const c of clients) c.send(c.addEndpoint(relay.local), Uint8Array.of(0));
    await new Promise((r) => setTimeout(r, 100));
    assert.deepEqual(new Set(got), new Set(clients.map((c) => `127.0.0.1:${c.local.port}`)));
    // Five sources through a cache of two: most have been forgotten; the answers still arrive.
    for (const p of got) relay.send(p, Uint8Array.of(7));
    await new Promise((r) => setTimeout(r, 100));
    assert.deepEqual(
      echoes.sort((x, y) => x - y),
      [7, 107, 207, 307, 407],
    );
    // A path that names no endpoint is dropped quietly.
    relay.send('not a path', Uint8Array.of(1));
  } finally {
    await relay.close();
    for (const c of clients) await c.close();
  }
});

test('the remembered literal: each address in turn gets its own answer; names still go to DNS', async () => {
  const memo = literalLookup();
  const got: [string | null, string, number][] = [];
  const push = (err: NodeJS.ErrnoException | null, address: string, family: number) =>
    got.push([err?.code ?? null, address, family]);
  for (const host of ['198.18.0.7', '198.18.0.7', '::1', '198.18.0.7', '::1', '::1']) {
    memo(host, 4, push);
  }
  assert.deepEqual(got, [
    [null, '198.18.0.7', 4],
    [null, '198.18.0.7', 4],
    [null, '::1', 6],
    [null, '198.18.0.7', 4],
    [null, '::1', 6],
    [null, '::1', 6],
  ]);
  for (let i = 0; i < 2; i++) {
    assert.deepEqual(await resolveName(memo, 'localhost'), ['127.0.0.1', 4]);
  }
});
