import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { MuxEvent } from '../src/index.ts';
import {
  concatBytes,
  encodeMuxPacket,
  isRoamlinkError,
  MUX_MAX_PAYLOAD,
  Mux,
  StreamError,
  toHex,
  utf8,
} from '../src/index.ts';
import { Pair, type Side } from './mux-link.ts';

const T = { host: 'example.com', port: 443 };

function eventsOf(p: Pair, side: Side, id?: number): MuxEvent[] {
  return p.events
    .filter((x) => x.side === side && (id === undefined || ('id' in x.e && x.e.id === id)))
    .map((x) => x.e);
}

function types(p: Pair, side: Side, id?: number): string[] {
  return eventsOf(p, side, id).map((e) => e.type);
}

/** Concatenated stream-data of one stream on one side. */
function dataOf(p: Pair, side: Side, id: number): Uint8Array {
  return concatBytes(
    ...eventsOf(p, side, id).flatMap((e) => (e.type === 'stream-data' ? [e.data] : [])),
  );
}

/** A relay that accepts every stream and consumes what it reads; a client that consumes too. */
function autoConsume(p: Pair, accept = true): void {
  p.onEvent = (side, e) => {
    const m = p.mux(side);
    if (e.type === 'stream-open' && accept) m.accept(e.id);
    if (e.type === 'stream-data') m.consumed(e.id, e.data.length);
  };
}

test('open with data in the first packet, accept, both ends, both sides freed', () => {
  const p = new Pair({ link: { delayMs: 20 } });
  autoConsume(p);
  const id = p.client.openStream(T);
  assert.equal(p.client.write(id, utf8('GET / HTTP/1.1\r\n\r\n')), 18);
  p.client.end(id);
  // One packet carries the open, the data and the FIN: no extra round trip.
  const first = p.client.pollPacket(p.now);
  assert.ok(first);
  p.relay.receive(first, p.now);
  const opened = p.relay.pollEvent();
  assert.deepEqual(opened, { type: 'stream-open', id, target: T });
  const data = p.relay.pollEvent();
  assert.equal(data?.type, 'stream-data');
  assert.deepEqual(data.type === 'stream-data' && [...data.data], [
    ...utf8('GET / HTTP/1.1\r\n\r\n'),
  ]);
  assert.deepEqual(p.relay.pollEvent(), { type: 'stream-end', id });
  p.relay.consumed(id, 18);
  p.relay.accept(id);
  assert.equal(p.relay.write(id, utf8('HTTP/1.1 200 OK\r\n\r\n')), 19);
  p.relay.end(id);
  p.runUntil(p.now + 1000);
  assert.deepEqual(types(p, 'client', id), [
    'stream-accepted',
    'stream-data',
    'stream-end',
    'stream-closed',
  ]);
  assert.deepEqual([...dataOf(p, 'client', id)], [...utf8('HTTP/1.1 200 OK\r\n\r\n')]);
  assert.deepEqual(types(p, 'relay', id), ['stream-closed']);
  assert.equal(p.client.stats.streamsActive, 0);
  assert.equal(p.relay.stats.streamsActive, 0);
  assert.equal(p.client.streamInfo(id), undefined);
  // Nothing more to do: no timers left but none that matter.
  p.runUntil(p.now + 10_000);
  assert.equal(p.client.stats.bytesInFlight, 0);
});

test('the first packets byte by byte (the example of PROTOCOL.md §8.1)', () => {
  const c = new Mux({ role: 'client', now: 0 });
  const id = c.openStream({ host: 'example.com', port: 443 });
  c.write(id, utf8('hi'));
  c.end(id);
  const first = c.pollPacket(0)!;
  assert.equal(
    toHex(first),
    '2000' + '2681000000' + '270080100000' + '2b00000b6578616d706c652e636f6d01bb026869',
  );
  assert.equal(c.pollPacket(0), undefined);
  const r = new Mux({ role: 'relay', now: 0 });
  r.receive(first, 20);
  assert.deepEqual(
    [r.pollEvent()?.type, r.pollEvent()?.type, r.pollEvent()?.type],
    ['stream-open', 'stream-data', 'stream-end'],
  );
  r.accept(id);
  r.consumed(id, 2);
  assert.equal(toHex(r.pollPacket(20)!), '2000' + '2100000000' + '2681000000' + '2c4100' + '2300');
});

test('a stream is not freed until the application consumed everything', () => {
  const p = new Pair();
  p.onEvent = (side, e) => {
    if (side === 'relay' && e.type === 'stream-open') p.relay.accept(e.id);
  };
  const id = p.client.openStream(T);
  p.client.write(id, new Uint8Array(5000));
  p.client.end(id);
  p.runUntil(p.now + 500);
  p.relay.end(id);
  p.runUntil(p.now + 500);
  assert.ok(p.relay.streamInfo(id), 'relay keeps the stream while 5000 bytes are unconsumed');
  assert.ok(!types(p, 'relay', id).includes('stream-closed'));
  p.relay.consumed(id, 4999);
  p.runUntil(p.now + 100);
  assert.ok(p.relay.streamInfo(id));
  p.relay.consumed(id, 1);
  p.runUntil(p.now + 500);
  assert.equal(p.relay.streamInfo(id), undefined);
  assert.equal(types(p, 'relay', id).at(-1), 'stream-closed');
  assert.equal(types(p, 'client', id).at(-1), 'stream-closed');
});

test('refuse: the client hears the code, both sides free the stream', () => {
  const p = new Pair();
  p.onEvent = (side, e) => {
    if (side === 'relay' && e.type === 'stream-open') p.relay.refuse(e.id, StreamError.POLICY);
  };
  const id = p.client.openStream(T);
  p.client.write(id, new Uint8Array(3000));
  p.runUntil(p.now + 1000);
  assert.deepEqual(eventsOf(p, 'client', id), [
    { type: 'stream-refused', id, code: StreamError.POLICY },
    { type: 'stream-closed', id },
  ]);
  const atRelay = types(p, 'relay', id);
  assert.equal(atRelay[0], 'stream-open');
  assert.equal(atRelay.at(-1), 'stream-closed');
  assert.ok(!atRelay.includes('stream-reset'), 'the client answers a refusal, it does not reset');
  assert.equal(p.client.stats.streamsActive, 0);
  assert.equal(p.relay.stats.streamsActive, 0);
  assert.equal(p.client.write(id, new Uint8Array(1)), 0, 'a refused stream takes nothing');
});

test('reset by the client mid-transfer, and by the relay: the other side hears it, both free', () => {
  for (const by of ['client', 'relay'] as const) {
    const p = new Pair({ link: { delayMs: 15 } });
    autoConsume(p);
    const id = p.client.openStream(T);
    p.client.write(id, new Uint8Array(40_000));
    p.runUntil(p.now + 60);
    p.relay.write(id, new Uint8Array(40_000));
    p.runUntil(p.now + 5);
    p.mux(by).reset(id, StreamError.RESET);
    p.runUntil(p.now + 2000);
    const other: Side = by === 'client' ? 'relay' : 'client';
    assert.ok(
      eventsOf(p, other, id).some((e) => e.type === 'stream-reset' && e.code === StreamError.RESET),
      `${other} hears the reset`,
    );
    assert.ok(!types(p, by, id).includes('stream-reset'), 'the resetting side hears no echo');
    assert.equal(types(p, 'client', id).at(-1), 'stream-closed');
    assert.equal(types(p, 'relay', id).at(-1), 'stream-closed');
    assert.equal(p.client.stats.streamsActive, 0);
    assert.equal(p.relay.stats.streamsActive, 0);
    // Session credit is not leaked by the abandoned bytes: a new stream still gets a full window.
    const id2 = p.client.openStream(T);
    assert.ok(p.client.write(id2, new Uint8Array(60_000)) === 60_000);
    p.client.end(id2);
    p.runUntil(p.now + 2000);
    assert.ok(types(p, 'relay', id2).includes('stream-end'));
  }
});

test('reset before anything was sent still reaches the relay (no stream left half-open there)', () => {
  const p = new Pair();
  autoConsume(p);
  const a = p.client.openStream(T);
  p.client.reset(a, StreamError.INTERNAL);
  const b = p.client.openStream(T);
  p.client.end(b);
  p.runUntil(p.now + 1000);
  assert.deepEqual(types(p, 'client', a), ['stream-closed']);
  assert.deepEqual(types(p, 'relay', a), [], 'the relay never announced it');
  assert.equal(p.relay.stats.streamsActive, 1, 'only b, which waits for the relay to end it');
  p.relay.end(b);
  p.runUntil(p.now + 1000);
  assert.equal(p.relay.stats.streamsActive, 0);
  assert.equal(p.client.stats.streamsActive, 0);
});

test('goAway: the client is told; new streams are refused with SHUTDOWN, old ones go on', () => {
  const p = new Pair();
  autoConsume(p);
  const old = p.client.openStream(T);
  p.runUntil(p.now + 100);
  p.relay.goAway(StreamError.SHUTDOWN);
  // A stream the client opens before it hears the GOAWAY is refused by the relay.
  const racing = p.client.openStream(T);
  p.runUntil(p.now + 1000);
  assert.deepEqual(
    eventsOf(p, 'client').filter((e) => e.type === 'goaway'),
    [{ type: 'goaway', code: StreamError.SHUTDOWN }],
  );
  assert.deepEqual(eventsOf(p, 'client', racing)[0], {
    type: 'stream-refused',
    id: racing,
    code: StreamError.SHUTDOWN,
  });
  assert.ok(!types(p, 'relay', racing).includes('stream-open'));
  // After the GOAWAY, refusal is local and immediate.
  const late = p.client.openStream(T);
  assert.deepEqual(p.client.pollEvent(), { type: 'stream-refused', id: late, code: 5 });
  assert.deepEqual(p.client.pollEvent(), { type: 'stream-closed', id: late });
  // The old stream still works.
  assert.equal(p.client.write(old, utf8('still here')), 10);
  p.runUntil(p.now + 500);
  assert.equal(new TextDecoder().decode(dataOf(p, 'relay', old)), 'still here');
});

test('datagrams both ways; too big or bad targets refused; duplicates of one packet dropped', () => {
  const p = new Pair({ link: { delayMs: 5 } });
  p.onEvent = (side, e) => {
    if (side === 'relay' && e.type === 'datagram') {
      p.relay.sendDatagram(e.flow, { host: '192.0.2.53', port: 53 }, e.data.slice().reverse());
    }
  };
  const dns = { host: '192.0.2.53', port: 53 };
  assert.ok(p.client.sendDatagram(7, dns, new Uint8Array([1, 2, 3])));
  assert.ok(p.client.sendDatagram(8, { host: '2001:db8::1', port: 9 }, new Uint8Array(1000)));
  assert.equal(p.client.sendDatagram(7, dns, new Uint8Array(1200)), false, 'larger than a packet');
  assert.equal(p.client.sendDatagram(7, { host: '', port: 53 }, new Uint8Array(1)), false);
  assert.equal(p.client.sendDatagram(7, { host: 'a', port: 0 }, new Uint8Array(1)), false);
  p.runUntil(p.now + 100);
  const atRelay = eventsOf(p, 'relay').filter((e) => e.type === 'datagram');
  assert.equal(atRelay.length, 2);
  assert.deepEqual(atRelay[0], {
    type: 'datagram',
    flow: 7,
    target: dns,
    data: new Uint8Array([1, 2, 3]),
  });
  const atClient = eventsOf(p, 'client').filter((e) => e.type === 'datagram');
  assert.equal(atClient.length, 2);
  assert.deepEqual(atClient[0], {
    type: 'datagram',
    flow: 7,
    target: dns,
    data: new Uint8Array([3, 2, 1]),
  });
  // A queue of at most 64 datagrams.
  let accepted = 0;
  for (let i = 0; i < 100; i++) if (p.client.sendDatagram(1, dns, new Uint8Array(100))) accepted++;
  assert.equal(accepted, 64);
  // Replaying a packet with a datagram delivers nothing twice.
  const q = new Mux({ role: 'client', now: 0 });
  const r = new Mux({ role: 'relay', now: 0 });
  q.sendDatagram(1, dns, new Uint8Array([9]));
  const pkt = q.pollPacket(0)!;
  r.receive(pkt, 1);
  r.receive(pkt, 2);
  assert.equal(r.pollEvent()?.type, 'datagram');
  assert.equal(r.pollEvent(), undefined);
  assert.equal(r.stats.drops.duplicate, 1);
  // An application that does not read: at most 1024 datagrams wait, the rest are dropped.
  const flood = new Mux({ role: 'relay', now: 0 });
  const one = (pn: number): Uint8Array =>
    encodeMuxPacket(pn, [{ type: 'datagram', flow: 1, target: dns, data: new Uint8Array(8) }]);
  for (let pn = 0; pn < 1100; pn++) flood.receive(one(pn), 1);
  assert.equal(flood.stats.datagramsReceived, 1100);
  assert.equal(flood.stats.datagramsUnreadDropped, 76);
  let read = 0;
  while (flood.pollEvent()) read++;
  assert.equal(read, 1024);
  flood.receive(one(2000), 2);
  assert.equal(flood.pollEvent()?.type, 'datagram', 'reading makes room again');
});

test('API misuse throws typed errors; unknown stream ids are ignored', () => {
  const relay = new Mux({ role: 'relay', now: 0 });
  const client = new Mux({ role: 'client', now: 0 });
  const invalid = (f: () => unknown): void =>
    assert.throws(f, (e) => isRoamlinkError(e, 'ROAMLINK_ERR_INVALID_ARGUMENT'));
  invalid(() => relay.openStream(T));
  invalid(() => client.accept(0));
  invalid(() => client.refuse(0, 1));
  invalid(() => client.openStream({ host: 'x', port: 70_000 }));
  invalid(() => client.openStream({ host: 'a\nb', port: 1 }));
  invalid(() => new Mux({ role: 'client', now: 0, maxPayload: 100 }));
  invalid(() => new Mux({ role: 'client', now: 0, streamWindow: 1000 }));
  invalid(() => client.setMaxPayload(MUX_MAX_PAYLOAD + 1));
  invalid(() => client.reset(0, -1));
  assert.equal(client.write(42, new Uint8Array(1)), 0);
  client.consumed(42, 10);
  client.end(42);
  client.reset(42, 1);
  relay.accept(3);
  assert.equal(client.pollPacket(0), undefined, 'nothing to send');
  assert.equal(client.pollEvent(), undefined);
});

/**
 * A client streaming bulk to a relay that accepts and consumes: `run(n, skip)` sends n client
 * packets (the one numbered `skip` is lost) and counts the relay's packets (its ACKs).
 */
function bulkFlow(pacing: boolean | 'setPacing-off') {
  const paced = pacing === true;
  const client = new Mux({ role: 'client', now: 0, maxPayload: 1200, pacing: pacing !== false });
  const relay = new Mux({ role: 'relay', now: 0, maxPayload: 1200, pacing: pacing !== false });
  if (!paced && pacing !== false) {
    client.setPacing(false);
    relay.setPacing(false);
  }
  const id = client.openStream(T);
  const chunk = new Uint8Array(64 * 1024);
  let now = 0;
  return (packets: number, skip = -1): number => {
    let acks = 0;
    for (let i = 0; i < packets; ) {
      now += 0.5;
      client.write(id, chunk); // as much as credit and buffer take
      while (client.pollEvent()) {}
      const pkt = client.pollPacket(now);
      if (!pkt) continue; // paced, or waiting for the window
      if (i++ !== skip) relay.receive(pkt, now);
      for (let e = relay.pollEvent(); e; e = relay.pollEvent()) {
        if (e.type === 'stream-open') relay.accept(e.id);
        if (e.type === 'stream-data') relay.consumed(e.id, e.data.length);
      }
      for (let a = relay.pollPacket(now); a; a = relay.pollPacket(now)) {
        acks++;
        client.receive(a, now);
      }
    }
    return acks;
  };
}

test('ACKs on a datagram path: every 2nd packet at first, every 10th after 100 in order, at once on a gap', () => {
  const run = bulkFlow(true);
  // 100 packets in order, ACKed every second one.
  assert.equal(run(100), 50);
  // From then on, every tenth.
  assert.equal(run(100), 10);
  // A gap (one packet lost) brings an ACK at once, and the count starts over.
  const afterGap = run(30, 5);
  assert.ok(afterGap >= 11, `${afterGap} ACKs for 29 packets after a gap (decimated: ~3)`);
});

test('ACKs on a stream path (unpaced, over TCP): every 8th packet', () => {
  // Unpaced from the constructor (the browser client, the Workers relay) or by setPacing (Node).
  for (const pacing of [false, 'setPacing-off'] as const) {
    const acks = bulkFlow(pacing)(80);
    // 80 packets in order: an ACK per 8 (a window update riding alone now and then is fine).
    assert.ok(acks >= 10 && acks <= 14, `${pacing}: ${acks} relay packets for 80`);
  }
});

test('keepalive: with a stream open and nothing sent for keepaliveMs, a PING goes; without streams, nothing', () => {
  const client = new Mux({ role: 'client', now: 0, keepaliveMs: 30_000 });
  const relay = new Mux({ role: 'relay', now: 0 });
  const exchange = (now: number): number => {
    let packets = 0;
    for (let moved = true; moved; ) {
      moved = false;
      for (let p = client.pollPacket(now); p; p = client.pollPacket(now)) {
        packets++;
        moved = true;
        relay.receive(p, now);
      }
      for (let e = relay.pollEvent(); e; e = relay.pollEvent()) {
        if (e.type === 'stream-open') relay.accept(e.id);
      }
      for (let p = relay.pollPacket(now); p; p = relay.pollPacket(now)) {
        moved = true;
        client.receive(p, now);
      }
      while (client.pollEvent()) {}
    }
    return packets;
  };
  const id = client.openStream(T);
  client.write(id, utf8('hello'));
  assert.ok(exchange(1) > 0);
  relay.handleTimeout(30);
  exchange(30); // the relay's delayed ACK
  // Idle from t=1: the keepalive is the next thing due, at t=1 + 30 s.
  assert.equal(client.nextTimeout(), 30_001);
  client.handleTimeout(30_001);
  const before = relay.stats.packetsReceived;
  assert.equal(exchange(30_001), 1, 'one PING packet');
  assert.equal(relay.stats.packetsReceived, before + 1);
  // No open streams: no keepalive.
  client.reset(id, StreamError.RESET);
  exchange(30_002);
  relay.handleTimeout(30_100);
  exchange(30_100);
  client.handleTimeout(30_100);
  exchange(30_100);
  const t = client.nextTimeout();
  assert.ok(t === undefined || t < 60_000, `next timeout ${t}`);
  client.handleTimeout(100_000);
  assert.equal(exchange(100_000), 0, 'nothing sent without streams');
});
