import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import type { SendRange } from '../src/index.ts';
import { concatBytes, MAX_SEGMENTS, RecvBuffer, SendBuffer } from '../src/index.ts';

const range = (): SendRange => ({ offset: 0, length: 0, fin: false, retransmit: false });
const bytes = (n: number, seed = 0): Uint8Array =>
  Uint8Array.from({ length: n }, (_, i) => (i * 31 + seed) & 255);

test('send: new data within credit, lost ranges first, FIN on the last byte', () => {
  const b = new SendBuffer();
  const data = bytes(5000);
  assert.equal(b.write(data, 4000), 4000, 'bounded by the caller');
  assert.equal(b.write(data.subarray(4000), 10_000), 1000);
  b.end();
  const r = range();
  assert.ok(b.next(1500, 100_000, r));
  assert.deepEqual(r, { offset: 0, length: 1500, fin: false, retransmit: false });
  assert.ok(b.next(1500, 1000, r));
  assert.deepEqual(r, { offset: 1500, length: 1000, fin: false, retransmit: false }, 'credit');
  b.onLost(0, 1500, false);
  assert.ok(b.next(1000, 0, r));
  assert.deepEqual(r, { offset: 0, length: 1000, fin: false, retransmit: true }, 'lost first');
  assert.ok(b.next(1000, 0, r));
  assert.deepEqual(r, { offset: 1000, length: 500, fin: false, retransmit: true });
  assert.equal(b.next(1000, 0, r), false, 'no credit for new data');
  assert.ok(b.next(5000, 5000, r));
  assert.deepEqual(r, { offset: 2500, length: 2500, fin: true, retransmit: false });
  assert.equal(b.next(5000, 5000, r), false);
  // The FIN frame is lost: the FIN goes again with the data it rode on.
  b.onLost(2500, 2500, true);
  assert.ok(b.next(5000, 0, r));
  assert.deepEqual(r, { offset: 2500, length: 2500, fin: true, retransmit: true });
  const out = new Uint8Array(5000);
  b.copyOut(0, 5000, out, 0);
  assert.deepEqual(out, data);
});

test('send: acknowledged ranges are not sent again and memory is released', () => {
  const b = new SendBuffer();
  for (let i = 0; i < 100; i++) b.write(bytes(1000, i), 1 << 30);
  assert.equal(b.buffered, 100_000);
  const r = range();
  while (b.next(1200, 1 << 30, r));
  assert.equal(b.sentHigh, 100_000);
  b.onAck(50_000, 10_000, false);
  b.onLost(40_000, 30_000, false); // only 40000-50000 and 60000-70000 need to go again
  const again: [number, number][] = [];
  while (b.next(100_000, 0, r)) again.push([r.offset, r.length]);
  assert.deepEqual(again, [
    [40_000, 10_000],
    [60_000, 10_000],
  ]);
  b.onAck(0, 50_000, false);
  assert.equal(b.ackedUpTo, 60_000, 'contiguous acknowledgements advance');
  assert.equal(b.buffered, 40_000);
  b.onAck(60_000, 40_000, false);
  b.end();
  assert.ok(b.next(100, 0, r));
  assert.deepEqual(r, { offset: 100_000, length: 0, fin: true, retransmit: false }, 'a lone FIN');
  assert.equal(b.allAcked, false);
  b.onAck(100_000, 0, true);
  assert.equal(b.allAcked, true);
  assert.equal(b.buffered, 0);
  // Small writes share chunks; bytes survive any split.
  const c = new SendBuffer();
  const parts = [bytes(3, 1), bytes(20_000, 2), bytes(1, 3), bytes(40_000, 4)];
  for (const p of parts) c.write(p, 1 << 30);
  const all = concatBytes(...parts);
  const out = new Uint8Array(all.length);
  c.copyOut(0, 10_000, out, 0);
  c.copyOut(10_000, all.length - 10_000, out, 10_000);
  assert.deepEqual(out, all);
});

test('send: discard (reset) drops everything', () => {
  const b = new SendBuffer();
  b.write(bytes(1000), 1000);
  b.discard();
  assert.equal(b.write(bytes(10), 10), 0);
  assert.equal(b.next(1000, 1000, range()), false);
});

test('receive: in-order data is delivered as views of the packet, without copies', () => {
  const r = new RecvBuffer();
  const got: Uint8Array[] = [];
  const pkt = bytes(3000);
  const frame = pkt.subarray(100, 1100);
  r.insert(0, frame, false, (v) => got.push(v));
  assert.equal(got.length, 1);
  assert.equal(got[0]!.buffer, pkt.buffer, 'a view of the received packet');
  assert.equal(r.delivered, 1000);
  // A partly duplicate frame: only the new part, still a view.
  r.insert(500, pkt.subarray(600, 1600), false, (v) => got.push(v));
  assert.equal(got[1]!.length, 500);
  assert.equal(got[1]!.buffer, pkt.buffer);
  assert.equal(r.delivered, 1500);
  assert.equal(r.segments, 0);
});

test('receive: out-of-order data is held without overlaps and handed up when the gap fills', () => {
  const r = new RecvBuffer();
  const src = bytes(10_000);
  const got: Uint8Array[] = [];
  const d = (v: Uint8Array) => got.push(v);
  r.insert(3000, src.subarray(3000, 5000), false, d);
  r.insert(4000, src.subarray(4000, 7000), false, d);
  r.insert(8000, src.subarray(8000, 10_000), true, d);
  assert.equal(got.length, 0);
  assert.equal(r.bufferedBytes, 6000, '3000-7000 and 8000-10000, each byte once');
  assert.equal(r.finalSize, 10_000);
  r.insert(0, src.subarray(0, 3500), false, d);
  assert.equal(r.delivered, 7000);
  r.insert(7000, src.subarray(7000, 8000), false, d);
  assert.equal(r.delivered, 10_000);
  assert.ok(r.complete);
  assert.deepEqual(concatBytes(...got), src);
  assert.equal(r.bufferedBytes, 0);
});

test('receive: checks final size, window and the reassembly bound without changing anything', () => {
  const r = new RecvBuffer();
  r.insert(0, bytes(100), false, () => {});
  assert.equal(r.check(100, 50, false, 1000, r.highest), undefined);
  assert.equal(r.check(900, 101, false, 1000, r.highest), 'flow_control');
  assert.equal(r.check(0, 50, true, 1000, r.highest), 'final_size', 'FIN below what arrived');
  r.insert(200, bytes(100), true, () => {});
  assert.equal(r.check(250, 100, false, 1000, r.highest), 'final_size', 'beyond the final size');
  assert.equal(r.check(100, 50, true, 1000, r.highest), 'final_size', 'another final size');
  assert.equal(r.check(100, 200, true, 1000, r.highest), undefined, 'the same final size again');
  assert.equal(r.delivered, 100);
  assert.equal(r.highest, 300);
  // The number of held pieces is bounded.
  const many = new RecvBuffer();
  for (let i = 0; i < MAX_SEGMENTS; i++) many.insert(2 * i + 1, bytes(1), false, () => {});
  assert.equal(many.segments, MAX_SEGMENTS);
  assert.equal(
    many.check(2 * MAX_SEGMENTS + 1, 1, false, 1 << 30, many.highest),
    'reassembly_limit',
  );
  assert.equal(
    many.check(0, 1, false, 1 << 30, many.highest),
    undefined,
    'in-order data still fits',
  );
});

test('receive: any split, order and duplication of frames gives the bytes once, in order', () => {
  fc.assert(
    fc.property(
      fc.integer({ min: 1, max: 4000 }),
      fc.array(fc.integer({ min: 0, max: 4000 }), { maxLength: 30 }),
      fc.array(fc.nat(), { maxLength: 60 }),
      (len, cuts, order) => {
        const src = bytes(len, 7);
        const points = [...new Set([0, len, ...cuts.filter((c) => c < len)])].sort((a, b) => a - b);
        const frames: [number, number][] = [];
        for (let i = 1; i < points.length; i++) frames.push([points[i - 1]!, points[i]!]);
        // Shuffle by `order`, with duplicates.
        const seq = [...frames];
        for (const o of order) seq.push(frames[o % frames.length]!);
        for (let i = seq.length - 1; i > 0; i--) {
          const j = (order[i % Math.max(1, order.length)] ?? 0) % (i + 1);
          [seq[i], seq[j]] = [seq[j]!, seq[i]!];
        }
        const r = new RecvBuffer();
        const got: Uint8Array[] = [];
        for (const [s, e] of seq) r.insert(s, src.subarray(s, e), e === len, (v) => got.push(v));
        assert.deepEqual(concatBytes(...got), src);
        assert.ok(r.complete);
        assert.equal(r.bufferedBytes, 0);
      },
    ),
  );
});
