/**
 * The pieces that let a session outlive the relay's memory, without a runtime: the stream layer
 * resumed from its saved numbers against an unchanged client Mux, and the SAs and registration
 * brought back into a fresh RelaySessions from saved handshakes and counters.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { test } from 'node:test';
import {
  ClientSession,
  Encapsulation,
  generateKeypair,
  Mux,
  type MuxEvent,
  NextHeader,
  nobleProvider,
  RelaySessions,
  StreamError,
} from '@roamlink/core';
import { type MuxResumeState, ResumableMux } from '../src/mux-resume.ts';
import { exportPeer, RandomTape, receiveInit, restorePeer } from '../src/relay-state.ts';

const rnd = (n: number): Uint8Array => new Uint8Array(randomBytes(n));

/** A relay that echoes every stream (as a TCP echo target would), over a ResumableMux. */
class EchoRelay {
  readonly r: ResumableMux;
  constructor(from?: MuxResumeState, epoch = 0) {
    this.r = new ResumableMux(
      new Mux({ role: 'relay', now: 0, maxPayload: 60_000, pacing: false }),
      from,
      epoch,
    );
  }
  /** Bytes taken from the client and not yet written back (the echo's backpressure). */
  readonly pending = new Map<number, { data: Uint8Array[]; end: boolean }>();
  events(): void {
    for (let e = this.r.pollEvent(); e; e = this.r.pollEvent()) {
      if (e.type === 'stream-open') {
        this.r.accept(e.id);
        this.pending.set(e.id, { data: [], end: false });
      } else if (e.type === 'stream-data') {
        this.pending.get(e.id)?.data.push(e.data.slice());
      } else if (e.type === 'stream-end') {
        const p = this.pending.get(e.id);
        if (p) p.end = true;
      }
    }
    for (const [id, p] of this.pending) {
      while (p.data.length > 0) {
        const d = p.data[0]!;
        const n = this.r.write(id, d);
        this.r.consumed(id, n);
        if (n < d.length) {
          p.data[0] = d.subarray(n);
          break;
        }
        p.data.shift();
      }
      if (p.end && p.data.length === 0) {
        this.r.end(id);
        this.pending.delete(id);
      }
    }
  }
}

/** Moves packets both ways (lossless) until neither side has anything to say. */
function settle(
  client: Mux,
  relay: EchoRelay,
  clock: { now: number },
  onClient: (e: MuxEvent) => void,
): void {
  for (let round = 0; round < 10_000; round++) {
    let moved = false;
    for (let p = client.pollPacket(clock.now); p; p = client.pollPacket(clock.now)) {
      relay.r.receive(p, clock.now);
      moved = true;
    }
    relay.events();
    for (let p = relay.r.pollPacket(clock.now); p; p = relay.r.pollPacket(clock.now)) {
      client.receive(p, clock.now);
      moved = true;
    }
    for (let e = client.pollEvent(); e; e = client.pollEvent()) onClient(e);
    if (!moved) {
      const t = Math.min(client.nextTimeout() ?? Infinity, relay.r.nextTimeout() ?? Infinity);
      if (t === Infinity || t > clock.now + 30_000) return;
      clock.now = Math.max(clock.now + 1, t);
      client.handleTimeout(clock.now);
      relay.r.handleTimeout(clock.now);
    }
  }
  assert.fail('the link did not settle');
}

test('a stream layer resumed from its saved numbers goes on with the same client Mux', () => {
  const clock = { now: 1000 };
  const client = new Mux({ role: 'client', now: clock.now, maxPayload: 60_000, pacing: false });
  let relay = new EchoRelay();
  const got = new Map<number, Uint8Array[]>();
  const resets = new Map<number, number>();
  const onClient = (e: MuxEvent): void => {
    if (e.type === 'stream-data') {
      got.set(e.id, [...(got.get(e.id) ?? []), e.data.slice()]);
      client.consumed(e.id, e.data.length);
    } else if (e.type === 'stream-reset') resets.set(e.id, e.code);
  };
  const echoOf = (id: number): Buffer => Buffer.concat(got.get(id) ?? []);
  /** Equal bytes, compared without a diff of megabytes in the message. */
  const sameBytes = (a: Uint8Array, b: Uint8Array, what: string): void => {
    assert.equal(a.length, b.length, `${what}: length`);
    assert.ok(Buffer.from(a).equals(Buffer.from(b)), `${what}: content`);
  };

  // Before: two streams; the first ends, the second stays open.
  const a = client.openStream({ host: '127.0.0.1', port: 7 });
  const aData = rnd(300_000);
  assert.equal(client.write(a, aData), Math.min(aData.length, client.streamInfo(a)!.peerCredit));
  let written = client.streamInfo(a)!.buffered;
  settle(client, relay, clock, onClient);
  while (written < aData.length) {
    written += client.write(a, aData.subarray(written));
    settle(client, relay, clock, onClient);
  }
  client.end(a);
  settle(client, relay, clock, onClient);
  sameBytes(echoOf(a), aData, 'stream a');
  const b = client.openStream({ host: '127.0.0.1', port: 7 });
  client.write(b, rnd(10_000));
  settle(client, relay, clock, onClient);
  assert.equal(echoOf(b).length, 10_000);

  // The relay loses its memory; a fresh Mux takes over from the saved numbers.
  const saved = relay.r.state();
  assert.equal(saved.streams, 2);
  assert.deepEqual(
    saved.open.map(([id]) => id),
    [b],
  );
  relay = new EchoRelay(structuredClone(saved), 1);
  // The open stream cannot continue (its target connection is gone): the client hears why.
  client.write(b, rnd(1000));
  settle(client, relay, clock, onClient);
  assert.equal(resets.get(b), StreamError.INTERNAL);
  assert.equal(relay.r.staleStreams, 0, 'the RESET was acknowledged');

  // A new stream after the resume: every byte echoed, in order.
  const c = client.openStream({ host: '127.0.0.1', port: 7 });
  const cData = rnd(2_000_000);
  let sent = 0;
  for (let i = 0; i < 1000 && sent < cData.length; i++) {
    sent += client.write(c, cData.subarray(sent));
    settle(client, relay, clock, onClient);
  }
  client.end(c);
  settle(client, relay, clock, onClient);
  assert.equal(sent, cData.length);
  sameBytes(echoOf(c), cData, 'stream c');

  // And once more (numbers compose across resumes).
  relay = new EchoRelay(relay.r.state(), 2);
  const d = client.openStream({ host: '127.0.0.1', port: 7 });
  client.write(d, Buffer.from('after two resumes'));
  client.end(d);
  settle(client, relay, clock, onClient);
  assert.equal(echoOf(d).toString(), 'after two resumes');
  const drops = client.stats.drops;
  assert.equal(drops.malformed + drops.ack_unsent + drops.stream_state + drops.final_size, 0);
  assert.equal(resets.size, 1);
});

test('SAs and registration come back from saved handshakes and counters', () => {
  const relayKeys = generateKeypair(rnd);
  const clientKeys = generateKeypair(rnd);
  const opts = {
    staticKeypair: relayKeys,
    provider: nobleProvider,
    authorize: () => ({ allowed: true as const }),
    encapsulations: [Encapsulation.WEBSOCKET, Encapsulation.HTTP_STREAM],
  };
  let tape = new RandomTape(rnd);
  let relay = new RelaySessions<string>({ ...opts, random: tape.random });
  const client = new ClientSession<string>({
    staticKeypair: clientKeys,
    relayStaticKey: relayKeys.publicKey,
    provider: nobleProvider,
    random: rnd,
  });
  const info = { encapsulation: Encapsulation.WEBSOCKET, view: { url: '/rl/ws?sid=x' } };
  let now = 10_000;
  const records: ReturnType<typeof receiveInit> = [];
  const toRelay: Uint8Array[] = [];
  const flush = (): void => {
    for (let t = client.pollTransmit(); t; t = client.pollTransmit()) toRelay.push(t.data);
    while (toRelay.length > 0) {
      const d = toRelay.shift()!;
      if (d[0] === 0 && d[4] === 1) records.push(...receiveInit(relay, tape, d, 'ws:a', now, info));
      else relay.receive(d, 'ws:a', now, info);
      for (let t = relay.pollTransmit(); t; t = relay.pollTransmit()) {
        client.receive(t.data, 'ws:a', now);
      }
      for (let t = client.pollTransmit(); t; t = client.pollTransmit()) toRelay.push(t.data);
    }
  };
  client.connect([{ path: 'ws:a', info }], now);
  flush();
  assert.equal(client.state, 'established');
  assert.equal(records.length, 1);
  const peer = [...relay.peers.values()][0]!;
  assert.ok(peer.keys.current, 'confirmed by the client');
  const old: Uint8Array[] = [];
  for (let i = 0; i < 5; i++) {
    const p = client.send(new Uint8Array([0xaa, i]), NextHeader.NO_NEXT_HEADER + 1, now)!;
    old.push(p.slice());
    assert.ok(relay.receive(p, 'ws:a', now, info));
    client.receive(relay.send(peer, new Uint8Array([i]), 200, now)!, 'ws:a', now);
  }
  const saved = structuredClone(exportPeer(peer, records));

  // A fresh relay (same key): the client's next packet is understood, ours accepted, old refused.
  now += 5000;
  tape = new RandomTape(rnd);
  relay = new RelaySessions<string>({ ...opts, random: tape.random });
  const back = restorePeer(relay, tape, saved);
  assert.ok(back);
  assert.equal(back.round, peer.round);
  assert.equal(back.path, 'ws:a');
  assert.equal(back.keys.current?.localSpi, peer.keys.current!.localSpi);
  const fresh = client.send(new Uint8Array([1, 2, 3]), 200, now)!;
  assert.deepEqual(relay.receive(fresh, 'ws:a', now, info)?.payload, new Uint8Array([1, 2, 3]));
  for (const p of old) assert.equal(relay.receive(p, 'ws:a', now, info), undefined, 'replay');
  const before = client.stats.packetsReceived;
  client.receive(relay.send(back, new Uint8Array([9]), 200, now)!, 'ws:a', now);
  assert.equal(client.stats.packetsReceived, before + 1, 'no sequence number used twice');

  // A key no longer allowed is not brought back.
  const strict = new RelaySessions<string>({
    ...opts,
    authorize: () => ({ allowed: false }),
    random: tape.random,
  });
  assert.equal(restorePeer(strict, tape, saved), undefined);
});
