import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { inferSequence } from '../src/index.ts';

const S = 2 ** 32; // one sequence number subspace
const MAX_SEQ = Number.MAX_SAFE_INTEGER;

// [low32, top, W, expected]; each row names the RFC 4303 Appendix A2.2 branch it exercises.
type Row = readonly [low32: number, top: number, w: number, expected: number, why: string];

const W = 64;
const rows: Row[] = [
  // top = 0 (nothing received yet): Tl = 0 < W - 1, Case B with Th = 0.
  [1, 0, W, 1, 'top 0: first packet'],
  [0, 0, W, -1, 'top 0: seq 0 is never valid'],
  [2 ** 31, 0, W, 2 ** 31, 'top 0: far ahead still in subspace 0'],
  [S - W, 0, W, S - W, 'top 0: Seql = Bl - 1 is still Th'],
  [S - W + 1, 0, W, -1, 'top 0: Seql = Bl would be subspace -1'],
  [S - 1, 0, W, -1, 'top 0: 0xffffffff would be subspace -1'],

  // Case A, Tl exactly W - 1: Bl = 0, so every Seql maps to Th.
  [0, W - 1, W, -1, 'Tl = W - 1, Th = 0: Seql 0 -> seq 0, invalid'],
  [0, S + W - 1, W, S, 'Tl = W - 1: Seql = Bl = 0 -> Th'],
  [S - 1, S + W - 1, W, 2 * S - 1, 'Tl = W - 1: Seql = 0xffffffff -> Th'],
  [W - 1, S + W - 1, W, S + W - 1, 'Tl = W - 1: Seql = Tl -> Th'],

  // Case A, Tl well above W - 1 (window inside subspace Th).
  [1000 - W + 1, 5 * S + 1000, W, 5 * S + 1000 - W + 1, 'A: Seql = Bl (window bottom) -> Th'],
  [1000 - W, 5 * S + 1000, W, 6 * S + 1000 - W, 'A: Seql = Bl - 1 -> Th + 1'],
  [1000, 5 * S + 1000, W, 5 * S + 1000, 'A: Seql = Tl -> Th'],
  [1001, 5 * S + 1000, W, 5 * S + 1001, 'A: Seql = Tl + 1 -> Th'],
  [S - 1, 5 * S + 1000, W, 6 * S - 1, 'A: Seql = 0xffffffff -> Th'],
  [0, 5 * S + 1000, W, 6 * S, 'A: wrap 0xffffffff -> 0 gives Th + 1'],
  [0, 6 * S - 1, W, 6 * S, 'A: Tl = 0xffffffff, next packet wraps to Th + 1'],
  [S - W, 6 * S - 1, W, 6 * S - W, 'A: Tl = 0xffffffff, window bottom'],
  [S - W - 1, 6 * S - 1, W, 7 * S - W - 1, 'A: Tl = 0xffffffff, just below window -> Th + 1'],

  // Case B, Tl just below W - 1 (window straddles into subspace Th - 1).
  [0, 5 * S + W - 2, W, 5 * S, 'B: Tl = W - 2, Seql 0 -> Th'],
  [S - 1, 5 * S + W - 2, W, 5 * S - 1, 'B: Tl = W - 2, Seql = Bl (window bottom) -> Th - 1'],
  [S - 2, 5 * S + W - 2, W, 6 * S - 2, 'B: Tl = W - 2, Seql = Bl - 1 -> Th'],
  [0, 5 * S, W, 5 * S, 'B: Tl = 0, Seql 0 -> Th'],
  [S - 1, 5 * S, W, 5 * S - 1, 'B: Tl = 0, last of previous subspace -> Th - 1'],
  [S - W + 1, 5 * S, W, 5 * S - W + 1, 'B: Tl = 0, Seql = Bl (window bottom) -> Th - 1'],
  [S - W, 5 * S, W, 6 * S - W, 'B: Tl = 0, Seql = Bl - 1 -> Th'],
  [7, 5 * S + 3, W, 5 * S + 7, 'B: ahead of top -> Th'],

  // Smallest window and largest window the algorithm allows (W = 2^31, Appendix A2).
  [5, 5 * S + 5, 1, 5 * S + 5, 'W = 1: Bl = Tl'],
  [4, 5 * S + 5, 1, 6 * S + 4, 'W = 1: Seql = Tl - 1 is outside, -> Th + 1'],
  [2 ** 31, 5 * S + 2 ** 31 - 1, 2 ** 31, 5 * S + 2 ** 31, 'W = 2^31, Case A boundary'],
  [2 ** 31 - 1, 5 * S + 2 ** 31 - 2, 2 ** 31, 5 * S + 2 ** 31 - 1, 'W = 2^31, Case B'],

  // The 2^53 cap.
  [S - 1, MAX_SEQ, W, MAX_SEQ, 'cap: top itself'],
  [S - W, MAX_SEQ, W, MAX_SEQ - W + 1, 'cap: window bottom'],
  [0, MAX_SEQ, W, -1, 'cap: next number would be 2^53'],
  [0, MAX_SEQ - 5, W, -1, 'cap: wrap near the cap'],

  // Not a 32-bit value: never valid, never thrown.
  [-1, 5 * S, W, -1, 'low32 negative'],
  [S, 5 * S, W, -1, 'low32 = 2^32'],
  [1.5, 5 * S, W, -1, 'low32 fractional'],
  [Number.NaN, 5 * S, W, -1, 'low32 NaN'],
];

test('RFC 4303 Appendix A2.2 case table', () => {
  for (const [low32, top, w, expected, why] of rows) {
    assert.equal(
      inferSequence(low32, top, w),
      expected,
      `${why} (low32 ${low32}, top ${top}, W ${w})`,
    );
  }
});

test('caller bugs in top or windowSize throw INVALID_ARGUMENT', () => {
  const code = { code: 'ROAMLINK_ERR_INVALID_ARGUMENT' };
  for (const top of [-1, 0.5, Number.NaN, 2 ** 53])
    assert.throws(() => inferSequence(1, top, 64), code);
  for (const w of [0, -64, 1.5, Number.NaN, 2 ** 31 + 1])
    assert.throws(() => inferSequence(1, 100, w), code);
});

// Tops spread over the whole range, with extra weight right around subspace boundaries where
// Case A turns into Case B.
const topArb = fc.oneof(
  fc.integer({ min: 0, max: 2 ** 52 }),
  fc
    .tuple(fc.integer({ min: 0, max: 2 ** 20 }), fc.integer({ min: -70_000, max: 70_000 }))
    .map(([h, d]) => Math.max(0, h * S + d)),
  fc.integer({ min: 0, max: 100_000 }),
);
const windowArb = fc.oneof(
  fc.constantFrom(32, 64, 96, 8192, 2 ** 20, 2 ** 31),
  fc.integer({ min: 1, max: 2 ** 31 }),
);

test('property: the true sequence number is recovered anywhere in top - W + 1 .. top + 2^31 - 1', () => {
  // Where in that range: anywhere, or within 100 of either end.
  const placeArb = fc.oneof(
    fc.record({ at: fc.constant('any' as const), d: fc.integer({ min: 0, max: 2 ** 33 }) }),
    fc.record({ at: fc.constant('bottom' as const), d: fc.integer({ min: 0, max: 100 }) }),
    fc.record({ at: fc.constant('end' as const), d: fc.integer({ min: 0, max: 100 }) }),
  );
  fc.assert(
    fc.property(topArb, windowArb, placeArb, (top, w, place) => {
      const bottom = top - w + 1;
      const last = top + 2 ** 31 - 1;
      const seq =
        place.at === 'bottom'
          ? bottom + place.d
          : place.at === 'end'
            ? last - place.d
            : bottom + (place.d % (last - bottom + 1));
      if (seq < 1 || seq > MAX_SEQ) return; // not a valid true sequence number
      assert.equal(inferSequence(seq % S, top, w), seq, `top ${top}, W ${w}, seq ${seq}`);
    }),
    { numRuns: 20_000 },
  );
});

test('property: the result always has the given low 32 bits, or is -1', () => {
  fc.assert(
    fc.property(topArb, windowArb, fc.integer({ min: 0, max: S - 1 }), (top, w, low) => {
      const seq = inferSequence(low, top, w);
      if (seq === -1) return;
      assert.ok(Number.isSafeInteger(seq) && seq >= 1);
      assert.equal(seq % S, low);
      // And it lies in the 2^32 numbers starting at the window bottom (Appendix A2.2).
      assert.ok(seq >= top - w + 1 && seq <= top - w + S, `seq ${seq}, top ${top}, W ${w}`);
    }),
    { numRuns: 20_000 },
  );
});
