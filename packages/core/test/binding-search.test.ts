import assert from 'node:assert/strict';
import { test } from 'node:test';
import { BindingSearch, type BindingSearchOptions } from '../src/binding-search.ts';

/** The session's defaults (docs/PROTOCOL.md §7.1): start 15 s, floor 10 s, cap 150 s. */
const DEFAULTS: BindingSearchOptions = { startMs: 15_000, floorMs: 10_000, maxMs: 150_000 };

/**
 * Runs the search against a NAT that keeps an idle binding `timeoutMs` (a test is answered iff
 * its delay is shorter); `lost` lists delays whose ack is lost although the binding survived.
 */
function run(timeoutMs: number, o = DEFAULTS, lost: readonly number[] = []) {
  const s = new BindingSearch(o);
  const tests: [number, boolean][] = [];
  for (let d = s.next(); d !== undefined; d = s.next()) {
    assert.ok(tests.length < 50, 'the search ends');
    const answered = d < timeoutMs && !lost.includes(d);
    tests.push([d, answered]);
    if (answered) s.answered(d);
    else s.unanswered(d);
  }
  return { tests, bounds: s.snapshot(), keepaliveMs: s.keepaliveMs() };
}

// [NAT timeout, tests as [delay, answered], lower, upper, keepalive]
const CASES: ReadonlyArray<
  readonly [number, [number, boolean][], number | undefined, number | undefined, number]
> = [
  // Grows by half while answered, then bisects until upper ≤ 1.15 × lower.
  [
    30_000,
    [
      [15_000, true],
      [22_500, true],
      [33_750, false],
      [28_125, true],
      [30_938, false],
    ],
    28_125,
    30_938,
    22_500, // 0.8 × 28 125
  ],
  [
    20_000,
    [
      [15_000, true],
      [22_500, false],
      [18_750, true],
      [20_625, false],
    ],
    18_750,
    20_625,
    15_000,
  ],
  // The start fails: shrink by a third to the floor, then bisect; the floor holds the keepalive.
  [
    12_000,
    [
      [15_000, false],
      [10_000, true],
      [12_500, false],
      [11_250, true],
    ],
    11_250,
    12_500,
    10_000,
  ],
  // Nothing at or above the floor survives: nothing left to learn below it.
  [
    9_000,
    [
      [15_000, false],
      [10_000, false],
    ],
    undefined,
    10_000,
    10_000,
  ],
  [
    120_000,
    [
      [15_000, true],
      [22_500, true],
      [33_750, true],
      [50_625, true],
      [75_938, true],
      [113_907, true],
      [150_000, false],
      [131_954, false],
      [122_931, false],
    ],
    113_907,
    122_931,
    91_126,
  ],
  // A NAT that keeps bindings longer than the cap: the cap answered ends the search.
  [
    400_000,
    [
      [15_000, true],
      [22_500, true],
      [33_750, true],
      [50_625, true],
      [75_938, true],
      [113_907, true],
      [150_000, true],
    ],
    150_000,
    undefined,
    120_000,
  ],
];

test('binding-timeout search sequence (RFC 5780 §4.6)', () => {
  for (const [timeoutMs, tests, lowerMs, upperMs, keepaliveMs] of CASES) {
    const r = run(timeoutMs);
    assert.deepEqual(r.tests, tests, `tests for a ${timeoutMs} ms binding`);
    assert.deepEqual(r.bounds, { lowerMs, upperMs, done: true }, `bounds for ${timeoutMs} ms`);
    assert.equal(r.keepaliveMs, keepaliveMs, `keepalive for ${timeoutMs} ms`);
    // The main binding is never left idle as long as a delay that went unanswered.
    if (upperMs !== undefined) assert.ok(r.keepaliveMs <= Math.max(10_000, 0.8 * upperMs));
  }
});

test('a lost ack only lowers the upper bound: more keepalives, never fewer', () => {
  const r = run(30_000, DEFAULTS, [22_500]);
  assert.deepEqual(r.tests, [
    [15_000, true],
    [22_500, false],
    [18_750, true],
    [20_625, true],
  ]);
  assert.deepEqual(r.bounds, { lowerMs: 20_625, upperMs: 22_500, done: true });
  assert.equal(r.keepaliveMs, 16_500);
});

test('contradicting outcomes drop the bound they contradict', () => {
  const s = new BindingSearch(DEFAULTS);
  s.unanswered(20_000);
  s.answered(25_000); // the NAT kept it longer after all
  assert.deepEqual(s.snapshot(), { lowerMs: 25_000, upperMs: undefined, done: false });
  s.unanswered(24_000);
  assert.deepEqual(s.snapshot(), { lowerMs: undefined, upperMs: 24_000, done: false });
});

test('keepalive interval from the bounds', () => {
  const s = new BindingSearch(DEFAULTS);
  assert.equal(s.keepaliveMs(), 15_000, 'the start until a delay is answered');
  s.unanswered(15_000);
  assert.equal(s.keepaliveMs(), 12_000, 'never above 0.8 × an unanswered delay');
  s.unanswered(11_000);
  assert.equal(s.keepaliveMs(), 10_000, 'never below the floor');
  const t = new BindingSearch(DEFAULTS);
  t.answered(100_000);
  assert.equal(t.keepaliveMs(), 80_000, '0.8 × the longest answered delay');
});

test('the first test never exceeds the cap', () => {
  const s = new BindingSearch({ startMs: 15_000, floorMs: 10_000, maxMs: 12_000 });
  assert.equal(s.next(), 12_000);
  s.answered(12_000);
  assert.equal(s.next(), undefined);
  assert.equal(s.done, true);
});
