import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import {
  ackFrameLength,
  encodeFrame,
  FrameReader,
  fromHex,
  RangeSet,
  readFrame,
  toHex,
  writeAckFrame,
} from '../src/index.ts';

/** The set's members, for comparison with a plain model. */
function members(r: RangeSet): number[] {
  const out: number[] = [];
  for (const [s, e] of r.toArray()) for (let v = s; v < e; v++) out.push(v);
  return out;
}

test('RangeSet: add merges touching and overlapping ranges; counts new members', () => {
  const r = new RangeSet();
  assert.equal(r.add(10, 20), 10);
  assert.equal(r.add(30, 40), 10);
  assert.equal(r.add(20, 30), 10, 'fills the gap exactly');
  assert.deepEqual(r.toArray(), [[10, 40]]);
  assert.equal(r.add(5, 45), 10, 'only the new ends count');
  assert.equal(r.add(0, 3), 3);
  assert.deepEqual(r.toArray(), [
    [0, 3],
    [5, 45],
  ]);
  assert.equal(r.add(7, 9), 0);
  assert.ok(r.has(44) && !r.has(45) && !r.has(3) && r.has(0));
  assert.ok(r.covers(5, 45) && !r.covers(2, 6) && r.covers(9, 9));
  assert.equal(r.min, 0);
  assert.equal(r.max, 44);
  assert.equal(r.size, 43);
});

test('RangeSet: remove splits; forEachGap lists what is missing', () => {
  const r = new RangeSet();
  r.add(0, 100);
  r.remove(10, 20);
  r.remove(50, 60);
  r.remove(95, 200);
  assert.deepEqual(r.toArray(), [
    [0, 10],
    [20, 50],
    [60, 95],
  ]);
  const gaps: [number, number][] = [];
  r.forEachGap(5, 70, (s, e) => gaps.push([s, e]));
  assert.deepEqual(gaps, [
    [10, 20],
    [50, 60],
  ]);
  const all: [number, number][] = [];
  new RangeSet().forEachGap(3, 9, (s, e) => all.push([s, e]));
  assert.deepEqual(all, [[3, 9]]);
  r.shift();
  assert.equal(r.min, 20);
});

test('RangeSet behaves like a set of integers (random operations)', () => {
  fc.assert(
    fc.property(
      fc.array(
        fc.tuple(fc.boolean(), fc.integer({ min: 0, max: 200 }), fc.integer({ min: 0, max: 30 })),
        { maxLength: 60 },
      ),
      (ops) => {
        const r = new RangeSet();
        const model = new Set<number>();
        for (const [add, s, len] of ops) {
          if (add) {
            let fresh = 0;
            for (let v = s; v < s + len; v++) if (!model.has(v)) fresh++;
            for (let v = s; v < s + len; v++) model.add(v);
            assert.equal(r.add(s, s + len), fresh);
          } else {
            for (let v = s; v < s + len; v++) model.delete(v);
            r.remove(s, s + len);
          }
          assert.deepEqual(
            members(r),
            [...model].sort((a, b) => a - b),
          );
          // Ranges stay disjoint and non-adjacent.
          const a = r.toArray();
          for (let i = 1; i < a.length; i++) assert.ok(a[i]![0] > a[i - 1]![1]);
        }
      },
    ),
  );
});

test('ACK frame: byte-exact example (ranges 0-2, 5-9, 13-20, delay 100 µs)', () => {
  const r = new RangeSet();
  r.add(0, 3);
  r.add(5, 10);
  r.add(13, 21);
  const buf = new Uint8Array(ackFrameLength(r, 100, 32));
  assert.equal(writeAckFrame(buf, 0, r, 100, 32), buf.length);
  // type, largest 20, delay 100 (2-byte varint), 2 more ranges, first range 7,
  // (gap 2, length 4) for 5-9, (gap 1, length 2) for 0-2 — RFC 9000 §19.3.1 arithmetic.
  assert.equal(toHex(buf), '211440640207020401' + '02');
  const f = readFrame(new FrameReader(buf));
  assert.deepEqual(f, { type: 'ack', largest: 20, delayUs: 100, ranges: [20, 13, 9, 5, 2, 0] });
  assert.deepEqual(toHex(encodeFrame(f)), toHex(buf));
  // Only the top ranges when asked for fewer.
  const two = new Uint8Array(ackFrameLength(r, 0, 2));
  writeAckFrame(two, 0, r, 0, 2);
  assert.deepEqual(readFrame(new FrameReader(two)), {
    type: 'ack',
    largest: 20,
    delayUs: 0,
    ranges: [20, 13, 9, 5],
  });
});

test('ACK frame: encode/decode round trip for random packet-number sets', () => {
  fc.assert(
    fc.property(
      fc.array(fc.tuple(fc.integer({ min: 0, max: 2 ** 40 }), fc.integer({ min: 1, max: 5000 })), {
        minLength: 1,
        maxLength: 40,
      }),
      fc.integer({ min: 0, max: 2 ** 30 }),
      fc.integer({ min: 1, max: 32 }),
      (adds, delay, maxRanges) => {
        const r = new RangeSet();
        for (const [s, len] of adds) r.add(s, s + len);
        const buf = new Uint8Array(ackFrameLength(r, delay, maxRanges));
        assert.equal(writeAckFrame(buf, 0, r, delay, maxRanges), buf.length);
        const f = readFrame(new FrameReader(buf));
        assert.equal(f.type, 'ack');
        if (f.type !== 'ack') return;
        assert.equal(f.delayUs, delay);
        const want: number[] = [];
        const a = r.toArray().reverse().slice(0, maxRanges);
        for (const [s, e] of a) want.push(e - 1, s);
        assert.deepEqual(f.ranges, want);
        assert.equal(f.largest, r.max);
      },
    ),
  );
});

test('ACK frame decoding refuses ranges below zero and too many ranges', () => {
  const bad = (hex: string): void =>
    assert.throws(
      () => readFrame(new FrameReader(fromHex(hex))),
      (e) => (e as { code?: string }).code === 'ROAMLINK_ERR_MALFORMED',
    );
  bad('21 05 00 00 06'); // first range 6 below largest 5
  bad('21 05 00 01 01 03 00'); // next range's largest: 4 - 3 - 2 < 0
  bad('21 05 00 01 00 00 05'); // next range length beyond zero
  bad('21 44 00 00 41 00 00'); // 256 extra ranges: over the limit
  bad('21 05 00'); // truncated
});
