/**
 * Bulk transfers between two muxes over the virtual link: exactly-once, in-order delivery across
 * loss, reordering, duplication, a path change and a long outage; flow control against a slow
 * reader. Every run is seeded and bounded in virtual time.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { MuxEvent } from '../src/index.ts';
import {
  ErrorCode,
  isRoamlinkError,
  MUX_MAX_PAYLOAD,
  Mux,
  STREAM_PATH_PAYLOAD,
  streamPathPayload,
} from '../src/index.ts';
import { Pair, type PairOptions, pattern, type Side } from './mux-link.ts';

const T = { host: 'files.example', port: 8080 };

interface Flow {
  id: number;
  /** Client → relay bytes and relay → client bytes. */
  up: Uint8Array;
  down: Uint8Array;
  upWritten: number;
  downWritten: number;
  upGot: number;
  downGot: number;
  upEnds: number;
  downEnds: number;
}

const same = (a: Uint8Array, b: Uint8Array): boolean =>
  Buffer.from(a.buffer, a.byteOffset, a.length).equals(
    Buffer.from(b.buffer, b.byteOffset, b.length),
  );

/**
 * Opens `streams` streams; each sends `up` bytes to the relay and gets `down` back, written as
 * fast as the mux takes them; both readers check every byte against the expected content and
 * consume at once. Returns the flows and a `done()` predicate.
 */
function bulk(p: Pair, streams: number, up: number, down: number) {
  p.record = false;
  const flows = new Map<number, Flow>();
  const firstDataAfter: Record<Side, number[]> = { client: [], relay: [] };
  const pump = (side: Side, f: Flow): void => {
    const m = p.mux(side);
    const buf = side === 'client' ? f.up : f.down;
    let w = side === 'client' ? f.upWritten : f.downWritten;
    while (w < buf.length) {
      const n = m.write(f.id, buf.subarray(w, Math.min(buf.length, w + 256 * 1024)));
      if (n === 0) break;
      w += n;
    }
    if (side === 'client') f.upWritten = w;
    else f.downWritten = w;
    if (w === buf.length) m.end(f.id);
  };
  p.onEvent = (side: Side, e: MuxEvent) => {
    const m = p.mux(side);
    switch (e.type) {
      case 'stream-open':
        m.accept(e.id);
        pump('relay', flows.get(e.id)!);
        break;
      case 'stream-writable':
        pump(side, flows.get(e.id)!);
        break;
      case 'stream-data': {
        const f = flows.get(e.id)!;
        const want = side === 'relay' ? f.up : f.down;
        const at = side === 'relay' ? f.upGot : f.downGot;
        assert.ok(at + e.data.length <= want.length, 'no byte beyond the end (exactly once)');
        assert.ok(same(e.data, want.subarray(at, at + e.data.length)), `bytes at ${at} in order`);
        if (side === 'relay') f.upGot += e.data.length;
        else f.downGot += e.data.length;
        firstDataAfter[side].push(p.now);
        m.consumed(e.id, e.data.length);
        break;
      }
      case 'stream-end': {
        const f = flows.get(e.id)!;
        if (side === 'relay') f.upEnds++;
        else f.downEnds++;
        break;
      }
      case 'stream-reset':
      case 'stream-refused':
      case 'dead':
        assert.fail(`unexpected ${e.type} at ${side}`);
    }
  };
  for (let i = 0; i < streams; i++) {
    const id = p.client.openStream(T);
    const f: Flow = {
      id,
      up: pattern(i, 0, up),
      down: pattern(i + 100, 0, down),
      upWritten: 0,
      downWritten: 0,
      upGot: 0,
      downGot: 0,
      upEnds: 0,
      downEnds: 0,
    };
    flows.set(id, f);
    pump('client', f);
  }
  const done = (): boolean =>
    [...flows.values()].every(
      (f) =>
        f.upGot === f.up.length &&
        f.downGot === f.down.length &&
        f.upEnds === 1 &&
        f.downEnds === 1,
    ) &&
    p.client.stats.streamsActive === 0 &&
    p.relay.stats.streamsActive === 0;
  /** Times at which `side` received stream data. */
  const deliveries = (side: Side): number[] => firstDataAfter[side];
  return { flows, done, deliveries };
}

function assertClean(p: Pair): void {
  for (const m of [p.client, p.relay]) {
    const d = m.stats.drops;
    assert.equal(d.internal, 0);
    assert.equal(d.malformed, 0);
    assert.equal(d.flow_control, 0);
    assert.equal(d.final_size, 0);
    assert.equal(d.stream_state, 0);
    assert.equal(d.ack_unsent, 0);
  }
}

test('4 MiB up and 1 MiB down on 4 streams at 7% loss with reordering and duplication', () => {
  const opts: PairOptions = {
    seed: 7,
    link: {
      delayMs: 20,
      jitterMs: 6,
      loss: 0.07,
      reorder: 0.1,
      reorderMs: 25,
      dup: 0.05,
      rate: 5_000,
      queueMs: 80,
    },
    client: { maxPayload: 1350 },
    relay: { maxPayload: 1350 },
  };
  const p = new Pair(opts);
  const b = bulk(p, 4, 1024 * 1024, 256 * 1024);
  p.runUntilDone(b.done, 600_000);
  assertClean(p);
  const cs = p.client.stats;
  assert.ok(cs.packetsLost > 100, `losses were detected (${cs.packetsLost})`);
  assert.ok(cs.streamBytesRetransmitted > 100_000, 'lost data was sent again');
  assert.equal(cs.streamBytesSent, 4 * 1024 * 1024, 'new bytes counted once');
  assert.ok(cs.congestionReductions > 10, 'NewReno reacted to the losses');
  assert.ok(p.relay.stats.drops.duplicate > 0, 'duplicated packets were dropped');
  assert.equal(p.relay.stats.streamBytesDelivered, 4 * 1024 * 1024);
  assert.equal(p.client.stats.streamBytesDelivered, 1024 * 1024);
});

test('no loss, big packets: throughput limited only by windows; cwnd grows', () => {
  const p = new Pair({
    seed: 3,
    link: { delayMs: 10 },
    client: { maxPayload: 65_000 },
    relay: { maxPayload: 65_000 },
  });
  const b = bulk(p, 2, 8 * 1024 * 1024, 1024 * 1024);
  const t0 = p.now;
  p.runUntilDone(b.done, 60_000);
  assertClean(p);
  assert.equal(p.client.stats.packetsLost, 0);
  assert.equal(p.client.stats.streamBytesRetransmitted, 0);
  assert.ok(p.client.stats.cwnd > 1_000_000, `cwnd grew (${p.client.stats.cwnd})`);
  // 16 MiB in under 2 s of virtual time on a 20 ms RTT path.
  assert.ok(p.now - t0 < 2000, `took ${p.now - t0} ms`);
});

test('pathChanged mid-transfer with the old path black-holed: in-flight data goes again at once', () => {
  const p = new Pair({
    seed: 11,
    link: { delayMs: 15, jitterMs: 2, rate: 3_000, queueMs: 60 },
    client: { maxPayload: 1350 },
    relay: { maxPayload: 1350 },
  });
  const b = bulk(p, 3, 512 * 1024, 512 * 1024);
  p.runUntil(p.now + 400);
  assert.ok(!b.done());
  assert.ok(p.inFlight > 10, 'packets on the wire when the path dies');
  // The old path dies with everything on it.
  p.c2r.blackhole = true;
  p.r2c.blackhole = true;
  p.dropWire();
  p.runUntil(p.now + 50);
  // The client moves to a new, slower path over TCP-sized packets; the relay learns of it a
  // one-way delay later (its registration).
  p.c2r.blackhole = false;
  p.r2c.blackhole = false;
  p.c2r.o = { delayMs: 40, rate: 2_000, queueMs: 100 };
  p.r2c.o = { delayMs: 40, rate: 2_000, queueMs: 100 };
  const moved = p.now;
  const inFlightBefore = p.client.stats.bytesInFlight;
  assert.ok(inFlightBefore > 0);
  p.client.setMaxPayload(16_000);
  p.client.pathChanged(p.now, 'move');
  assert.equal(p.client.stats.bytesInFlight, 0, 'nothing counted in flight after the move');
  const sentBefore = p.client.stats.streamBytesRetransmitted;
  p.settle();
  assert.ok(
    p.client.stats.streamBytesRetransmitted > sentBefore,
    'in-flight data was sent again on the new path without waiting for a timeout',
  );
  p.runUntil(p.now + 40);
  p.relay.setMaxPayload(16_000);
  p.relay.pathChanged(p.now, 'registration');
  p.runUntilDone(b.done, 120_000);
  assertClean(p);
  const afterMove = b.deliveries('relay').find((t) => t > moved);
  assert.ok(
    afterMove !== undefined && afterMove - moved <= 100,
    `relay got data ${afterMove! - moved} ms after the move`,
  );
  const downAfter = b.deliveries('client').find((t) => t > moved);
  assert.ok(
    downAfter !== undefined && downAfter - moved <= 200,
    `client got data ${downAfter! - moved} ms after`,
  );
  assert.equal(p.client.stats.pathChanges, 1);
  assert.equal(p.client.stats.ptos, 0, 'no probe timeout was needed');
});

test('streamPathPayload: 60 000 unless both ends take more than 64 KiB; then up to 1 MiB', () => {
  assert.equal(streamPathPayload(), STREAM_PATH_PAYLOAD);
  assert.equal(streamPathPayload(65_535, 65_535), STREAM_PATH_PAYLOAD);
  assert.equal(streamPathPayload(1 << 20, undefined), STREAM_PATH_PAYLOAD);
  assert.equal(streamPathPayload(undefined, 1 << 20), STREAM_PATH_PAYLOAD);
  assert.equal(streamPathPayload(1 << 20, 1 << 20), (1 << 20) - 64);
  assert.equal(streamPathPayload(1 << 20, 100_000), 100_000 - 64);
  assert.equal(streamPathPayload(4 << 20, 4 << 20), MUX_MAX_PAYLOAD);
  assert.equal(streamPathPayload(1280, 1 << 20), 1216);
  assert.throws(() => streamPathPayload(1279), { code: ErrorCode.INVALID_ARGUMENT });
});

test('1 MiB packets on a stream path, then a move to 1350-byte UDP: what was in flight goes again, cut small', () => {
  const big = streamPathPayload(1 << 20, 1 << 20);
  const p = new Pair({
    seed: 21,
    link: { delayMs: 5, rate: 100_000, queueMs: 200 },
    client: { maxPayload: 1350 },
    relay: { maxPayload: 1350 },
  });
  for (const m of [p.client, p.relay]) {
    m.usePath({ datagram: false, changed: false, now: p.now, streamPayload: big });
  }
  const b = bulk(p, 2, 6 * 1024 * 1024, 6 * 1024 * 1024);
  p.runUntil(p.now + 40);
  assert.ok(!b.done());
  for (const m of [p.client, p.relay]) {
    const s = m.stats;
    assert.ok(
      s.bytesSent / s.packetsSent > 65_535,
      `${s.packetsSent} packets, ${s.bytesSent} bytes`,
    );
    assert.ok(s.bytesInFlight > 65_535, 'large packets in flight when the path dies');
  }
  // The path dies with everything on it; the new one is UDP and drops anything over 1400 bytes.
  p.c2r.blackhole = true;
  p.r2c.blackhole = true;
  p.dropWire();
  p.c2r.blackhole = false;
  p.r2c.blackhole = false;
  p.c2r.o = { delayMs: 10, rate: 20_000, queueMs: 100, mtu: 1400 };
  p.r2c.o = { delayMs: 10, rate: 20_000, queueMs: 100, mtu: 1400 };
  // No RFC 8899 search on it (its probes would be over the MTU by design).
  const udp = { datagram: true, changed: true, now: p.now, datagramCeiling: 1360 };
  for (const m of [p.client, p.relay]) m.usePath(udp);
  p.runUntilDone(b.done, 60_000);
  assertClean(p);
  assert.equal(p.c2r.tooBig + p.r2c.tooBig, 0, 'no packet on the new path was over its MTU');
});

test('a path that takes 1 MiB packets but moves 10 Mbit/s keeps them at 60 000 bytes', () => {
  const big = streamPathPayload(1 << 20, 1 << 20);
  for (const [rate, jumbo] of [
    [1_250, false], // 10 Mbit/s: 4 ms of it is 5 KB
    [500_000, true], // 4 Gbit/s: 4 ms of it is 2 MB
  ] as const) {
    const p = new Pair({ seed: 5, link: { delayMs: 1, rate, queueMs: 10_000 } });
    for (const m of [p.client, p.relay]) {
      m.usePath({ datagram: false, changed: false, now: p.now, streamPayload: big });
    }
    const b = bulk(p, 1, 8 * 1024 * 1024, 0);
    p.runUntilDone(b.done, 120_000);
    assertClean(p);
    const s = p.client.stats;
    const each = s.bytesSent / s.packetsSent;
    if (jumbo) assert.ok(each > 4 * STREAM_PATH_PAYLOAD, `${rate} B/ms: ${each} bytes a packet`);
    else assert.ok(each <= STREAM_PATH_PAYLOAD, `${rate} B/ms: ${each} bytes a packet`);
  }
});

test('a 120 s outage in both directions: nothing lost, resumed within ~1 s of the path returning', () => {
  const p = new Pair({
    seed: 5,
    link: { delayMs: 25, jitterMs: 3, rate: 2_000, queueMs: 80 },
    client: { maxPayload: 1350, outageMs: 130_000 },
    relay: { maxPayload: 1350, outageMs: 130_000 },
  });
  const b = bulk(p, 2, 1024 * 1024, 1024 * 1024);
  p.runUntil(p.now + 500);
  assert.ok(!b.done());
  p.c2r.blackhole = true;
  p.r2c.blackhole = true;
  const start = p.now;
  const sentAtStart = p.client.stats.packetsSent + p.relay.stats.packetsSent;
  p.runUntil(start + 120_000);
  const sentDuring = p.client.stats.packetsSent + p.relay.stats.packetsSent - sentAtStart;
  // Capped backoff: about one probe a second per side, not a burst and not silence.
  assert.ok(sentDuring >= 150 && sentDuring < 600, `${sentDuring} packets during the outage`);
  p.c2r.blackhole = false;
  p.r2c.blackhole = false;
  const back = p.now;
  p.runUntilDone(b.done, 300_000);
  assertClean(p);
  const resumedUp = b.deliveries('relay').find((t) => t > back)!;
  const resumedDown = b.deliveries('client').find((t) => t > back)!;
  assert.ok(resumedUp - back < 1300, `up resumed after ${resumedUp - back} ms`);
  assert.ok(resumedDown - back < 1300, `down resumed after ${resumedDown - back} ms`);
  assert.ok(
    p.client.stats.persistentCongestion >= 1,
    'the outage counted as persistent congestion',
  );
  assert.ok(!p.events.some((x) => x.e.type === 'dead'));
});

test("'dead' after outageMs without acknowledgements, once; the mux still recovers after", () => {
  const p = new Pair({ seed: 9, link: { delayMs: 10 }, client: { outageMs: 10_000 } });
  p.record = true;
  const dead: number[] = [];
  p.onEvent = (side, e) => {
    if (e.type === 'stream-open') p.relay.accept(e.id);
    if (e.type === 'stream-data') p.mux(side).consumed(e.id, e.data.length);
    if (e.type === 'dead') dead.push(e.silentMs);
  };
  const id = p.client.openStream(T);
  p.client.write(id, new Uint8Array(50_000));
  p.runUntil(p.now + 30);
  p.c2r.blackhole = true;
  p.r2c.blackhole = true;
  p.runUntil(p.now + 25_000);
  assert.equal(dead.length, 1);
  assert.ok(dead[0]! >= 10_000 && dead[0]! < 11_000, `silent ${dead[0]} ms`);
  p.c2r.blackhole = false;
  p.r2c.blackhole = false;
  p.client.end(id);
  p.runUntil(p.now + 5000);
  assert.equal(p.relay.streamInfo(id)?.delivered, 50_000);
});

test('slow reader: the sender stops at the stream window; consuming lets it go on', () => {
  const window = 256 * 1024;
  const p = new Pair({ seed: 2, link: { delayMs: 10 }, relay: { streamWindow: window } });
  let delivered = 0;
  p.onEvent = (side, e) => {
    if (e.type === 'stream-open') p.relay.accept(e.id);
    if (side === 'relay' && e.type === 'stream-data') delivered += e.data.length;
  };
  const id = p.client.openStream(T);
  let accepted = 0;
  const chunk = new Uint8Array(64 * 1024);
  const writeAll = (): void => {
    for (let n = p.client.write(id, chunk); n > 0; n = p.client.write(id, chunk)) accepted += n;
  };
  writeAll();
  assert.equal(accepted, 64 * 1024, 'before the relay speaks, the initial credit bounds write()');
  p.onEvent = (side, e) => {
    if (e.type === 'stream-open') p.relay.accept(e.id);
    if (side === 'relay' && e.type === 'stream-data') delivered += e.data.length;
    if (side === 'client' && e.type === 'stream-writable') writeAll();
  };
  p.runUntil(p.now + 10_000);
  assert.equal(accepted, window, 'write() took exactly the window');
  assert.equal(delivered, window, 'the relay holds exactly one window');
  const info = p.relay.streamInfo(id)!;
  assert.equal(info.received, window);
  assert.equal(info.heldOutOfOrder, 0);
  assert.ok(p.client.streamInfo(id)!.sent <= window);
  assert.equal(p.client.stats.bytesInFlight, 0, 'the sender is idle, not probing');
  // What each side holds: the reader the window it has not consumed; the writer nothing (all
  // of it acknowledged).
  assert.equal(p.relay.stats.heldReceived, window);
  assert.equal(p.client.stats.heldToSend, 0);
  // The reader catches up with half: the sender gets credit again.
  p.relay.consumed(id, window / 2);
  assert.equal(p.relay.stats.heldReceived, window / 2);
  p.runUntil(p.now + 10_000);
  assert.equal(accepted, window + window / 2);
  assert.equal(delivered, window + window / 2);
  assert.equal(p.relay.stats.heldReceived, window);
  // Written beyond the credit: held by the writer until it may go and is acknowledged.
  p.relay.consumed(id, window);
  // The credit arrives after 10 ms, the writer writes; acknowledgements come 20 ms later.
  p.runUntil(p.now + 15);
  const c = p.client.streamInfo(id)!;
  assert.equal(p.client.stats.heldToSend, c.buffered);
  assert.ok(c.buffered > 0, 'some of what was written is not acknowledged yet');
});

test('slow reader across streams: the session window bounds the total', () => {
  const sessionWindow = 1024 * 1024;
  const p = new Pair({
    seed: 4,
    link: { delayMs: 10 },
    relay: { streamWindow: 512 * 1024, sessionWindow },
  });
  let delivered = 0;
  const ids: number[] = [];
  const data = new Uint8Array(1024 * 1024);
  p.onEvent = (side, e) => {
    if (e.type === 'stream-open') p.relay.accept(e.id);
    if (side === 'relay' && e.type === 'stream-data') delivered += e.data.length;
    if (side === 'client' && e.type === 'stream-writable') p.client.write(e.id, data);
  };
  for (let i = 0; i < 4; i++) {
    const id = p.client.openStream(T);
    ids.push(id);
    p.client.write(id, data);
  }
  p.runUntil(p.now + 10_000);
  assert.equal(delivered, sessionWindow);
  let held = 0;
  for (const id of ids) held += p.relay.streamInfo(id)!.received;
  assert.equal(held, sessionWindow);
});

test('stalled readers with sessionMemory: each holds its own window, the others go on; all held stays within sessionMemory', () => {
  const KiB = 1024;
  const window = 512 * KiB;
  const sessionWindow = 1024 * KiB;
  const sessionMemory = 3 * 1024 * KiB;
  const p = new Pair({
    seed: 5,
    link: { delayMs: 10 },
    relay: { streamWindow: window, maxStreamWindow: window, sessionWindow, sessionMemory },
  });
  const data = new Uint8Array(256 * KiB);
  const received = new Map<number, number>();
  let live = -1;
  let maxHeld = 0;
  const held = (): number => {
    let n = 0;
    for (const [id, r] of received) if (id !== live) n += r;
    return n;
  };
  p.onEvent = (side, e) => {
    if (e.type === 'stream-open') p.relay.accept(e.id);
    if (side === 'relay' && e.type === 'stream-data') {
      received.set(e.id, (received.get(e.id) ?? 0) + e.data.length);
      // Only one stream's reader keeps up; the others never consume.
      if (e.id === live) p.relay.consumed(e.id, e.data.length);
      maxHeld = Math.max(maxHeld, held());
    }
    if (side === 'client' && e.type === 'stream-writable') fill(e.id);
  };
  // Writes until write() takes less than offered: then a stream-writable event comes.
  const fill = (id: number): void => {
    while (p.client.write(id, data) === data.length);
  };
  const stalled: number[] = [];
  for (let i = 0; i < 4; i++) {
    const id = p.client.openStream(T);
    stalled.push(id);
    fill(id);
  }
  p.runUntil(p.now + 5_000);
  // Four windows held: twice the session window (with sessionMemory = sessionWindow, one).
  for (const id of stalled) assert.equal(received.get(id), window, `stream ${id} holds its window`);

  // A fifth stream whose reader keeps up gets 8 MiB through while the four stay stalled.
  live = p.client.openStream(T);
  let left = 8 * 1024 * KiB;
  const push = (): void => {
    while (left > 0) {
      const n = p.client.write(live, data.subarray(0, Math.min(data.length, left)));
      if (n === 0) break;
      left -= n;
    }
  };
  const before = p.onEvent;
  p.onEvent = (side, e) => {
    if (side === 'client' && e.type === 'stream-writable' && e.id === live) push();
    else before(side, e);
  };
  push();
  p.runUntil(p.now + 20_000);
  assert.equal(received.get(live), 8 * 1024 * KiB, 'the live stream got everything');
  assert.equal(maxHeld, 4 * window);

  // Eight more stalled streams: what is held stops at sessionMemory (the memory bound).
  for (let i = 0; i < 8; i++) {
    const id = p.client.openStream(T);
    stalled.push(id);
    fill(id);
  }
  p.runUntil(p.now + 10_000);
  let total = 0;
  for (const id of stalled) total += received.get(id) ?? 0;
  // Credit goes out in steps of half a session window: the last one may not have been worth it.
  assert.ok(
    total <= sessionMemory && total > sessionMemory - sessionWindow / 2,
    `held: up to sessionMemory, no more (${total})`,
  );
  assert.ok(maxHeld <= sessionMemory);
});

test('sessionMemory below sessionWindow is refused', () => {
  assert.throws(
    () => new Pair({ relay: { sessionWindow: 2 * 1024 * 1024, sessionMemory: 1024 * 1024 } }),
    (e: unknown) => isRoamlinkError(e, ErrorCode.INVALID_ARGUMENT),
  );
});

test('stream limit: the client may have 256 streams open; more wait for MAX_STREAMS, which near the limit grows with every stream freed', () => {
  const p = new Pair({ seed: 1, link: { delayMs: 5 } });
  const opened: number[] = [];
  p.onEvent = (side, e) => {
    if (side === 'relay' && e.type === 'stream-open') {
      opened.push(e.id);
      p.relay.accept(e.id);
    }
  };
  const ids: number[] = [];
  for (let i = 0; i < 300; i++) {
    const id = p.client.openStream(T);
    p.client.write(id, new Uint8Array([i & 255]));
    ids.push(id);
  }
  p.runUntil(p.now + 2000);
  assert.equal(opened.length, 256, 'the relay grants 256 concurrent streams');
  assert.equal(p.client.streamLimit, 256);
  assert.equal(p.client.streamsWaiting, 44, 'the client knows how many wait');
  // The client is at the limit: one stream finished lets one more go at once (not an eighth).
  const finish = (id: number): void => {
    p.client.end(id);
    p.relay.end(id);
    p.relay.consumed(id, 1);
  };
  finish(ids[0]!);
  p.runUntil(p.now + 2000);
  assert.equal(opened.length, 257, 'one freed, one more open');
  assert.equal(p.client.streamsWaiting, 43);
  // Finishing 63 more frees the rest.
  for (const id of ids.slice(1, 64)) finish(id);
  p.runUntil(p.now + 2000);
  assert.equal(opened.length, 300);
  assert.equal(p.client.streamsWaiting, 0);
  assert.equal(p.relay.stats.drops.stream_limit, 0);
});

test('RFC 8899 probing: each side finds the largest payload the path carries; lost probes are no congestion signal', () => {
  const p = new Pair({
    seed: 11,
    link: { delayMs: 5, mtu: 9000 },
    client: { maxPayload: 1350 },
    relay: { maxPayload: 1350 },
  });
  const b = bulk(p, 1, 1024 * 1024, 4 * 1024 * 1024);
  const found: Record<Side, number[]> = { client: [], relay: [] };
  const inner = p.onEvent;
  p.onEvent = (side, e) => {
    if (e.type === 'max-payload') found[side].push(e.bytes);
    inner(side, e);
  };
  p.client.probeMaxPayload(65_000);
  p.relay.probeMaxPayload(65_000);
  p.runUntilDone(b.done, 60_000);
  assertClean(p);
  // 65 000, 32 000 and 16 000 are lost on a 9000-byte path; 8952 is the largest step that fits.
  assert.deepEqual(found.client, [8952]);
  assert.deepEqual(found.relay, [8952]);
  for (const m of [p.client, p.relay]) {
    assert.equal(m.stats.congestionReductions, 0, 'probe losses did not cut the window');
    assert.equal(m.stats.streamBytesRetransmitted, 0, 'no data was lost with the probes');
  }
  assert.equal(p.c2r.dropped, 3, "the client's three big probes were dropped");
  assert.equal(p.r2c.dropped, 3, "the relay's three big probes were dropped");
});

test("send buffer: grows with the peer's credit up to 8 MiB a stream, all streams within the session window", () => {
  const MiB = 1024 * 1024;
  // The client holds 1 MiB a stream by default; the relay offers 8 MiB a stream, 64 MiB in all.
  const client = new Mux({ role: 'client', now: 0, pacing: false, maxPayload: 60_000 });
  const relay = new Mux({
    role: 'relay',
    now: 0,
    pacing: false,
    maxPayload: 60_000,
    streamWindow: 8 * MiB,
    sessionWindow: 64 * MiB,
  });
  const ids = [0, 1, 2].map(() => client.openStream({ host: 'example.com', port: 443 }));
  for (let round = 0; round < 4; round++) {
    for (let p = client.pollPacket(round); p; p = client.pollPacket(round)) relay.receive(p, round);
    for (let e = relay.pollEvent(); e; e = relay.pollEvent()) {
      if (e.type === 'stream-open') relay.accept(e.id);
    }
    for (let p = relay.pollPacket(round); p; p = relay.pollPacket(round)) client.receive(p, round);
    while (client.pollEvent()) {}
  }
  assert.ok(ids.every((id) => client.streamInfo(id)!.peerCredit === 8 * MiB));
  const big = new Uint8Array(10 * MiB);
  // 8 MiB on the first two (the credit), then the session's 16 MiB is spent: the third gets
  // only what any stream may always hold (sendBufferLimit, here 1 MiB).
  assert.deepEqual(
    ids.map((id) => client.write(id, big)),
    [8 * MiB, 8 * MiB, 1 * MiB],
  );
});

test('alloc: packets built in buffers full of old bytes are byte for byte those of zeroed ones', () => {
  // One run with zeroed buffers, one with buffers full of 0xAA: every payload must be identical,
  // so no byte of old memory can reach the wire (and be sealed and sent to a peer).
  const run = (alloc?: (n: number) => Uint8Array): Uint8Array[] => {
    const reserve = { head: 16, tail: 19 };
    const client = new Mux({
      role: 'client',
      now: 0,
      pacing: false,
      maxPayload: 60_000,
      reserve,
      ...(alloc ? { alloc } : {}),
    });
    const relay = new Mux({ role: 'relay', now: 0, pacing: false, maxPayload: 60_000 });
    const out: Uint8Array[] = [];
    const id = client.openStream(T);
    // Within the first window: stream data, a datagram, then ACKs of what the relay sends back.
    client.write(id, pattern(5, 0, 60_000));
    client.sendDatagram(3, { host: 'dns.example', port: 53 }, pattern(9, 0, 700));
    for (let round = 1; round < 8; round++) {
      // 30 ms apart: the client's delayed ACKs fall due.
      const now = round * 30;
      client.handleTimeout(now);
      for (let p = client.pollPacket(now); p; p = client.pollPacket(now)) {
        out.push(p.slice());
        relay.receive(p, now);
      }
      for (let e = relay.pollEvent(); e; e = relay.pollEvent()) {
        if (e.type === 'stream-open') relay.accept(e.id);
      }
      for (let p = relay.pollPacket(round); p; p = relay.pollPacket(round))
        client.receive(p, round);
      while (client.pollEvent()) {}
    }
    return out;
  };
  let allocated = 0;
  const dirty = run((n) => {
    allocated++;
    return new Uint8Array(n).fill(0xaa);
  });
  const clean = run();
  assert.ok(allocated >= 3, `the mux built its packets with alloc (${allocated})`);
  assert.equal(dirty.length, clean.length);
  for (const [i, p] of dirty.entries()) assert.deepEqual(p, clean[i], `packet ${i}`);
});
