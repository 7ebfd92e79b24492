/**
 * Hostile input: a mux never throws from receive(), counts every refused payload by reason, and a
 * refused payload changes nothing. "Nothing" is checked against a twin: two pairs built by the
 * same deterministic steps, only one of which gets the payload; afterwards both must send the same
 * packets, report the same events, timers and statistics (drop counters aside).
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import type { Mux, MuxFrame, MuxStats } from '../src/index.ts';
import { encodeMuxPacket, fromHex } from '../src/index.ts';
import { Pair, pattern } from './mux-link.ts';

const T = { host: 'db.internal', port: 5432 };

/** A pair with a stream open both ways and packets in flight. Deterministic. */
function established(sessionWindow?: number): { p: Pair; id: number } {
  const p = new Pair({
    seed: 3,
    link: { delayMs: 10 },
    ...(sessionWindow ? { relay: { sessionWindow } } : {}),
  });
  p.record = false;
  p.onEvent = (side, e) => {
    if (e.type === 'stream-open') p.relay.accept(e.id);
    if (e.type === 'stream-data' && side === 'client') p.client.consumed(e.id, e.data.length);
  };
  const id = p.client.openStream(T);
  p.client.write(id, pattern(1, 0, 30_000));
  p.runUntil(p.now + 25);
  p.relay.write(id, pattern(2, 0, 8000));
  p.runUntil(p.now + 3);
  return { p, id };
}

function withoutDrops(s: MuxStats): Omit<MuxStats, 'drops'> {
  const { drops: _, ...rest } = s;
  return rest;
}

const totalDrops = (m: Mux): number => Object.values(m.stats.drops).reduce((a, b) => a + b, 0);

/** Both muxes are in the same state: same statistics, timers, events and next packets. */
function assertSameState(x: Mux, y: Mux, now: number): void {
  assert.deepEqual(withoutDrops(x.stats), withoutDrops(y.stats));
  assert.equal(x.nextTimeout(), y.nextTimeout());
  for (;;) {
    const a = x.pollEvent();
    const b = y.pollEvent();
    assert.deepEqual(a, b);
    if (!a) break;
  }
  for (let i = 0; i < 100; i++) {
    const a = x.pollPacket(now);
    const b = y.pollPacket(now);
    assert.deepEqual(a, b);
    if (!a) break;
  }
  const later = x.nextTimeout();
  if (later !== undefined) {
    x.handleTimeout(later);
    y.handleTimeout(later);
    assert.deepEqual(x.pollPacket(later), y.pollPacket(later));
  }
}

/**
 * Feeds `payload` to one side of a fresh pair; if it was refused, compares with the twin. (A
 * duplicate packet number is the one refusal that does something: it makes sure an ACK goes, as
 * the peer may have missed ours.)
 */
function feed(
  side: 'client' | 'relay',
  payload: Uint8Array,
  sessionWindow?: number,
): { refused: boolean; m: Mux } {
  const a = established(sessionWindow);
  const b = established(sessionWindow);
  const m = a.p.mux(side);
  const before = totalDrops(m);
  const duplicates = m.stats.drops.duplicate;
  const received = m.stats.packetsReceived;
  m.receive(payload, a.p.now); // must not throw
  assert.equal(m.stats.drops.internal, 0);
  const refused = m.stats.packetsReceived === received;
  if (refused) {
    assert.equal(totalDrops(m), before + 1, 'a refused payload is counted once');
    if (m.stats.drops.duplicate === duplicates) assertSameState(m, b.p.mux(side), a.p.now);
  }
  return { refused, m };
}

function expectDrop(
  side: 'client' | 'relay',
  payload: Uint8Array,
  reason: keyof MuxStats['drops'],
  sessionWindow?: number,
): void {
  const { refused, m } = feed(side, payload, sessionWindow);
  assert.ok(refused, `refused (${reason})`);
  assert.equal(m.stats.drops[reason], 1, reason);
}

const pkt = (pn: number, ...frames: MuxFrame[]): Uint8Array => encodeMuxPacket(pn, frames);
const stream = (id: number, offset: number, len: number, fin = false): MuxFrame => ({
  type: 'stream',
  id,
  offset,
  fin,
  target: undefined,
  data: new Uint8Array(len),
});

test('the twins really are twins (the check can fail)', () => {
  const a = established();
  const b = established();
  assertSameState(a.p.relay, b.p.relay, a.p.now);
  // And a payload that is accepted does make them differ.
  const c = established();
  const d = established();
  c.p.relay.receive(pkt(5000, { type: 'ping' }), c.p.now);
  assert.throws(() => assertSameState(c.p.relay, d.p.relay, c.p.now));
});

test('refused for a reason, each counted and changing nothing', () => {
  const { id } = established();
  // Syntax.
  expectDrop('relay', new Uint8Array(0), 'not_mux');
  expectDrop('relay', fromHex('10 01 02'), 'not_mux');
  expectDrop('relay', fromHex('20 c0'), 'malformed');
  expectDrop('relay', fromHex('20 4000'), 'malformed');
  expectDrop('relay', fromHex('20 ff 2f'), 'malformed');
  // A valid frame, then a malformed one: nothing of the packet is used.
  const good = pkt(900, { type: 'max-stream-data', id, max: 1 << 30 }, stream(id, 30_000, 100));
  expectDrop('relay', new Uint8Array([...good, 0x2f]), 'malformed');
  expectDrop('relay', good.subarray(0, good.length - 1), 'malformed');
  // Semantics.
  expectDrop(
    'relay',
    pkt(900, { type: 'ack', largest: 1_000_000, delayUs: 0, ranges: [1_000_000, 1_000_000] }),
    'ack_unsent',
  );
  expectDrop('relay', pkt(900, stream(id, 2_000_000, 10)), 'flow_control');
  expectDrop('relay', pkt(900, stream(id, 2, 0, true)), 'final_size');
  expectDrop('relay', pkt(900, { type: 'reset', id, code: 6, finalSize: 5 }), 'final_size');
  expectDrop('relay', pkt(900, stream(999, 0, 10)), 'stream_limit');
  expectDrop('relay', pkt(900, { type: 'accept', id }), 'stream_state');
  expectDrop('relay', pkt(900, { type: 'refuse', id, code: 1 }), 'stream_state');
  expectDrop('relay', pkt(900, { type: 'max-streams', count: 1000 }), 'stream_state');
  expectDrop('client', pkt(900, { ...stream(id, 0, 1), target: T } as MuxFrame), 'stream_state');
  expectDrop('client', pkt(900, stream(id + 1, 0, 10)), 'stream_state');
  expectDrop('client', pkt(900, { type: 'refuse', id, code: 1 }), 'stream_state');
  // Valid data followed by a violation: the data is not delivered either.
  expectDrop('relay', pkt(900, stream(id, 30_000, 500), { type: 'accept', id }), 'stream_state');
  // Session flow control: each frame within its stream's credit, together over the session's
  // (a relay with a 1 MiB session window: stream 0 filled to its 1 MiB, plus a new stream).
  expectDrop(
    'relay',
    pkt(900, stream(id, 30_000, 1_048_576 - 30_000), stream(id + 1, 0, 1000)),
    'flow_control',
    1_048_576,
  );
  assert.equal(
    feed('relay', pkt(900, stream(id, 30_000, 1_048_576 - 30_000)), 1_048_576).refused,
    false,
    'exactly the session window is fine',
  );
  // Two frames of one stream in one packet are counted once, not twice.
  const { refused } = feed('relay', pkt(900, stream(id + 1, 0, 60_000), stream(id + 1, 0, 60_000)));
  assert.equal(refused, false);
});

test('a replayed packet is dropped as a duplicate', () => {
  const { p } = established();
  const twin = established();
  const a = p.client.pollPacket(p.now) ?? p.client.pollPacket(p.now + 100);
  const first = new Uint8Array(a ?? pkt(0, { type: 'ping' }));
  twin.p.client.pollPacket(p.now);
  p.relay.receive(first, p.now);
  const d = p.relay.stats.drops.duplicate;
  p.relay.receive(first, p.now);
  assert.equal(p.relay.stats.drops.duplicate, d + 1);
});

test('random bytes: never a throw; refused ones change nothing', () => {
  fc.assert(
    fc.property(
      fc.uint8Array({ maxLength: 80 }),
      fc.boolean(),
      fc.boolean(),
      (b, header, toClient) => {
        if (header && b.length > 0) b[0] = 0x20;
        feed(toClient ? 'client' : 'relay', b);
      },
    ),
    { numRuns: 150 },
  );
});

const small = fc.integer({ min: 0, max: 300 });
const anyNum = fc.oneof(small, fc.integer({ min: 0, max: 2 ** 40 }));
const hostileFrame: fc.Arbitrary<MuxFrame> = fc.oneof(
  fc.constant<MuxFrame>({ type: 'ping' }),
  small.map<MuxFrame>((id) => ({ type: 'accept', id })),
  fc.tuple(small, anyNum).map<MuxFrame>(([id, code]) => ({ type: 'refuse', id, code })),
  fc
    .tuple(small, anyNum, anyNum)
    .map<MuxFrame>(([id, code, finalSize]) => ({ type: 'reset', id, code, finalSize })),
  anyNum.map<MuxFrame>((max) => ({ type: 'max-data', max })),
  fc.tuple(small, anyNum).map<MuxFrame>(([id, max]) => ({ type: 'max-stream-data', id, max })),
  anyNum.map<MuxFrame>((count) => ({ type: 'max-streams', count })),
  anyNum.map<MuxFrame>((code) => ({ type: 'goaway', code })),
  fc
    .tuple(
      small,
      fc.integer({ min: 0, max: 3_000_000 }),
      fc.boolean(),
      fc.boolean(),
      fc.integer({ min: 0, max: 2000 }),
    )
    .map<MuxFrame>(([id, offset, fin, open, len]) => ({
      type: 'stream',
      id,
      offset: open ? 0 : offset,
      fin,
      target: open ? T : undefined,
      data: new Uint8Array(len),
    })),
  fc.tuple(small, fc.integer({ min: 0, max: 40 })).map<MuxFrame>(([largest, span]) => ({
    type: 'ack',
    largest,
    delayUs: 0,
    ranges: [largest, Math.max(0, largest - span)],
  })),
);

test('well-formed frames with hostile values: never a throw; refused ones change nothing', () => {
  fc.assert(
    fc.property(
      fc.integer({ min: 0, max: 5000 }),
      fc.array(hostileFrame, { minLength: 1, maxLength: 5 }),
      fc.boolean(),
      (pn, frames, toClient) => {
        feed(toClient ? 'client' : 'relay', encodeMuxPacket(pn, frames));
      },
    ),
    { numRuns: 250 },
  );
});
