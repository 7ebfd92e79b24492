import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { DEFAULT_REPLAY_WINDOW, MAX_REPLAY_WINDOW, ReplayWindow } from '../src/index.ts';

const MAX_SEQ = Number.MAX_SAFE_INTEGER; // 2^53 - 1, the largest valid sequence number
const LIMIT = 2 ** 53; // first invalid one
const SIZES = [32, 64, 96, 8192] as const;

/** Feeds `seq` the way the receive path does (check, then update) and asserts both agree. */
function feed(w: ReplayWindow, seq: number): boolean {
  const checked = w.check(seq);
  const accepted = w.update(seq);
  assert.equal(checked, accepted, `check and update disagree on ${seq}`);
  return accepted;
}

function runCases(w: ReplayWindow, cases: ReadonlyArray<readonly [number, boolean]>, what: string) {
  cases.forEach(([seq, expected], i) => {
    assert.equal(feed(w, seq), expected, `${what} case ${i + 1}: seq ${seq}`);
  });
}

/*
 * The classic case list of the Linux kernel's WireGuard counter selftest, also used by
 * wireguard-go's replay test. Three adaptations, all exact translations:
 * - Their counters start at 0, ours at 1: every small counter c becomes seq c + 1.
 * - They accept c when `last - c <= WINDOW` (WINDOW + 1 live numbers); we accept when
 *   `top - seq < size` (size live numbers). So their WINDOW is our size - 1, and their
 *   T_LIM = WINDOW + 1 is our size.
 * - Their message limit L (counters >= L rejected) maps to our 2^53: L - k becomes 2^53 - k.
 */
function kernelCases(size: number): Array<readonly [number, boolean]> {
  const T = size; // T_LIM
  const c = (n: number) => n + 1; // 0-based counter -> 1-based seq
  const l = (k: number) => LIMIT + k; // L + k
  return [
    [c(0), true], //  1
    [c(1), true], //  2
    [c(1), false], //  3
    [c(9), true], //  4
    [c(8), true], //  5
    [c(7), true], //  6
    [c(7), false], //  7
    [c(T), true], //  8
    [c(T - 1), true], //  9
    [c(T - 1), false], // 10
    [c(T - 2), true], // 11
    [c(2), true], // 12
    [c(2), false], // 13
    [c(T + 16), true], // 14
    [c(3), false], // 15
    [c(T + 16), false], // 16
    [c(T * 4), true], // 17
    [c(T * 4 - (T - 1)), true], // 18
    [c(10), false], // 19
    [c(T * 4 - T), false], // 20
    [c(T * 4 - (T + 1)), false], // 21
    [c(T * 4 - (T - 2)), true], // 22
    [c(T * 4 + 1 - T), false], // 23
    [c(0), false], // 24
    [l(0), false], // 25
    [l(-1), true], // 26
    [l(0), false], // 27
    [l(-1), false], // 28
    [l(-2), true], // 29
    [l(1), false], // 30
    [l(2), false], // 31
    [l(-2), false], // 32
    [l(-3), true], // 33
    [c(0), false], // 34
  ];
}

for (const size of SIZES) {
  test(`kernel/wireguard case list, size ${size}`, () => {
    runCases(new ReplayWindow(size), kernelCases(size), 'main');
  });

  // The bulk tests of the same suite, with the same translation (their i becomes seq i + 1 and
  // their window size becomes size - 1).
  test(`kernel/wireguard bulk tests, size ${size}`, () => {
    const W = size - 1;
    let w = new ReplayWindow(size);
    for (let i = 1; i <= W; i++) assert.ok(feed(w, i + 1), `bulk 1: ${i + 1}`);
    assert.equal(feed(w, 1), true, 'bulk 1: oldest in window');
    assert.equal(feed(w, 1), false, 'bulk 1: replay');

    w = new ReplayWindow(size);
    for (let i = 2; i <= W + 1; i++) assert.ok(feed(w, i + 1), `bulk 2: ${i + 1}`);
    assert.equal(feed(w, 2), true, 'bulk 2: oldest in window');
    assert.equal(feed(w, 1), false, 'bulk 2: just below window');

    w = new ReplayWindow(size);
    for (let i = W + 1; i > 0; i--) assert.ok(feed(w, i + 1), `bulk 3: ${i + 1}`);

    w = new ReplayWindow(size);
    for (let i = W + 2; i > 1; i--) assert.ok(feed(w, i + 1), `bulk 4: ${i + 1}`);
    assert.equal(feed(w, 1), false, 'bulk 4: just below window');

    w = new ReplayWindow(size);
    for (let i = W; i > 0; i--) assert.ok(feed(w, i + 1), `bulk 5: ${i + 1}`);
    assert.equal(feed(w, W + 2), true, 'bulk 5: new top');
    assert.equal(feed(w, 1), false, 'bulk 5: pushed out');

    w = new ReplayWindow(size);
    for (let i = W; i > 0; i--) assert.ok(feed(w, i + 1), `bulk 6: ${i + 1}`);
    assert.equal(feed(w, 1), true, 'bulk 6: oldest in window');
    assert.equal(feed(w, W + 2), true, 'bulk 6: new top');
  });

  test(`window is exactly top - size + 1 .. top, size ${size}`, () => {
    for (const top of [size, size + 1, 5 * size + 7, 2 ** 40 + 31, MAX_SEQ]) {
      const w = new ReplayWindow(size);
      assert.ok(feed(w, top));
      assert.equal(w.top, top);
      assert.equal(w.check(top - size), false, 'one below the window is too old');
      assert.equal(w.update(top - size), false);
      assert.equal(w.check(top - size + 1), true, 'lowest number in the window');
      assert.ok(feed(w, top - size + 1));
      assert.equal(feed(w, top - size + 1), false, 'replay at the bottom edge');
      assert.equal(feed(w, top), false, 'replay of top');
      // Every number in between is still fresh, and accepted exactly once.
      for (let s = top - size + 2; s < top; s++) assert.ok(feed(w, s), `fresh ${s}`);
      for (let s = top - size + 1; s <= top; s++) assert.equal(w.check(s), false, `seen ${s}`);
      // Sliding by one pushes exactly the old bottom out.
      if (top < MAX_SEQ) {
        assert.ok(feed(w, top + 1));
        assert.equal(w.check(top - size + 1), false);
        assert.equal(w.update(top - size + 1), false);
        assert.equal(w.check(top - size + 2), false, 'still in window, still seen');
      }
    }
  });

  test(`huge jumps clear the whole ring, size ${size}`, () => {
    const w = new ReplayWindow(size);
    for (let s = 1; s <= size; s++) assert.ok(feed(w, s));
    // Exactly one window ahead, a bit more, a full ring of words ahead, and far beyond.
    for (const jump of [size, size + 1, size + 32, size + 33, 3 * size, 2 ** 33, 2 ** 52]) {
      const top = w.top + jump;
      assert.ok(feed(w, top), `jump to ${top}`);
      for (let s = top - size + 1; s < top; s++) {
        assert.equal(w.check(s), true, `after jump to ${top}, ${s} was never received`);
      }
      assert.equal(w.check(top - size), false);
      assert.equal(w.check(top), false);
      // Fill the window again so stale bits would show after the next jump.
      for (let s = top - size + 1; s < top; s++) assert.ok(w.update(s));
    }
  });
}

test('sequence number 0, negatives, fractions, 2^53 and beyond are rejected, never thrown', () => {
  const w = new ReplayWindow(32);
  const bad = [0, -0, -1, 1.5, Number.NaN, Infinity, -Infinity, LIMIT, LIMIT + 2, 2 ** 64];
  for (const seq of bad) {
    assert.equal(w.check(seq), false, String(seq));
    assert.equal(w.update(seq), false, String(seq));
  }
  assert.equal(w.top, 0, 'invalid numbers leave the window untouched');
  assert.ok(feed(w, 1), 'first valid number');
  assert.ok(feed(w, MAX_SEQ), 'largest valid number');
  assert.equal(feed(w, MAX_SEQ), false);
  assert.equal(feed(w, LIMIT), false);
  assert.equal(w.top, MAX_SEQ);
});

test('update re-checks: of two copies that both passed check, only one is accepted', () => {
  const w = new ReplayWindow(64);
  assert.ok(feed(w, 100));
  for (const seq of [50, 101, 1000]) {
    assert.ok(w.check(seq) && w.check(seq));
    assert.equal(w.update(seq), true);
    assert.equal(w.update(seq), false);
  }
  // A packet that passed check can also fall out of the window before its update.
  assert.ok(w.check(1000 - 63));
  assert.ok(w.update(1064));
  assert.equal(w.update(1000 - 63), false);
});

test('constructor: default size, and bad sizes throw INVALID_ARGUMENT', () => {
  assert.equal(new ReplayWindow().size, DEFAULT_REPLAY_WINDOW);
  assert.equal(DEFAULT_REPLAY_WINDOW, 8192);
  assert.equal(new ReplayWindow(32).size, 32);
  assert.equal(new ReplayWindow(96).size, 96);
  assert.equal(new ReplayWindow(MAX_REPLAY_WINDOW).size, MAX_REPLAY_WINDOW);
  for (const size of [0, -32, 16, 31, 33, 100, 32.5, Number.NaN, MAX_REPLAY_WINDOW + 32]) {
    assert.throws(
      () => new ReplayWindow(size),
      { code: 'ROAMLINK_ERR_INVALID_ARGUMENT' },
      `${size}`,
    );
  }
});

test('reset forgets everything', () => {
  const w = new ReplayWindow(32);
  for (const seq of [1, 2, 40, 1000]) assert.ok(feed(w, seq));
  w.reset();
  assert.equal(w.top, 0);
  for (const seq of [1, 2, 40, 1000]) assert.ok(feed(w, seq));
});

// ---- Property tests against a naive model -------------------------------------------------

/** The specification, written as plainly as possible: every accepted number, plus the max. */
class Model {
  readonly seen = new Set<number>();
  top = 0;
  readonly size: number;
  constructor(size: number) {
    this.size = size;
  }
  check(seq: number): boolean {
    if (!Number.isInteger(seq) || seq < 1 || seq > MAX_SEQ) return false;
    if (this.seen.has(seq)) return false;
    return seq > this.top || this.top - seq < this.size;
  }
  update(seq: number): boolean {
    if (!this.check(seq)) return false;
    this.seen.add(seq);
    if (seq > this.top) this.top = seq;
    return true;
  }
}

/**
 * One step of a random packet stream. Steps are relative to the current top so that the stream
 * keeps hitting the window edges and duplicates however far it has travelled.
 */
type Step =
  | { readonly kind: 'near'; readonly delta: number } // top + delta, across both edges
  | { readonly kind: 'jump'; readonly delta: number } // far ahead
  | { readonly kind: 'again'; readonly back: number } // a number sent earlier (duplicate)
  | { readonly kind: 'abs'; readonly seq: number }; // anywhere, including invalid numbers

function stepArb(size: number): fc.Arbitrary<Step> {
  return fc.oneof(
    {
      weight: 8,
      arbitrary: fc.record({
        kind: fc.constant('near'),
        delta: fc.integer({ min: -size - 40, max: 40 }),
      }),
    },
    {
      weight: 1,
      arbitrary: fc.record({
        kind: fc.constant('jump'),
        delta: fc.integer({ min: size - 40, max: 3 * size }),
      }),
    },
    {
      weight: 1,
      arbitrary: fc.record({
        kind: fc.constant('jump'),
        delta: fc.integer({ min: 1, max: 2 ** 45 }),
      }),
    },
    { weight: 4, arbitrary: fc.record({ kind: fc.constant('again'), back: fc.nat({ max: 200 }) }) },
    {
      weight: 1,
      arbitrary: fc.record({
        kind: fc.constant('abs'),
        seq: fc.oneof(
          fc.constantFrom(0, -1, 0.5, Number.NaN, MAX_SEQ, LIMIT, LIMIT + 2),
          fc.integer({ min: 1, max: 4 * size }),
        ),
      }),
    },
  ) as fc.Arbitrary<Step>;
}

function resolve(step: Step, top: number, sent: number[]): number {
  switch (step.kind) {
    case 'near':
    case 'jump':
      return top + step.delta;
    case 'again':
      return sent.length === 0 ? 1 : sent[Math.max(0, sent.length - 1 - step.back)]!;
    case 'abs':
      return step.seq;
  }
}

for (const size of SIZES) {
  test(`property: matches the Set model, size ${size}`, () => {
    fc.assert(
      fc.property(fc.array(stepArb(size), { maxLength: 300 }), (steps) => {
        const w = new ReplayWindow(size);
        const m = new Model(size);
        const sent: number[] = [];
        for (const step of steps) {
          const seq = resolve(step, w.top, sent);
          sent.push(seq);
          assert.equal(w.check(seq), m.check(seq), `check(${seq}) at top ${m.top}`);
          assert.equal(w.update(seq), m.update(seq), `update(${seq}) at top ${m.top}`);
          assert.equal(w.top, m.top);
        }
        // Finally compare every number in and around the window.
        for (let s = Math.max(1, m.top - size - 40); s <= Math.min(m.top + 40, MAX_SEQ); s++) {
          assert.equal(w.check(s), m.check(s), `final check(${s}) at top ${m.top}`);
        }
      }),
      { numRuns: size === 8192 ? 100 : 300 },
    );
  });

  test(`property: check never changes state, size ${size}`, () => {
    fc.assert(
      fc.property(
        fc.array(fc.tuple(stepArb(size), fc.array(stepArb(size), { maxLength: 4 })), {
          maxLength: 150,
        }),
        (steps) => {
          // Two windows get the same updates; one of them also gets extra checks between them,
          // including of numbers far ahead that would slide the window if check wrote anything.
          const a = new ReplayWindow(size);
          const b = new ReplayWindow(size);
          const sent: number[] = [];
          for (const [step, probes] of steps) {
            for (const probe of probes) {
              const seq = resolve(probe, a.top, sent);
              const first = a.check(seq);
              assert.equal(a.check(seq), first, 'check is repeatable');
              assert.equal(b.check(seq), first);
            }
            const seq = resolve(step, a.top, sent);
            sent.push(seq);
            assert.equal(a.update(seq), b.update(seq));
            assert.equal(a.top, b.top);
          }
          for (let s = Math.max(1, a.top - size - 40); s <= Math.min(a.top + 40, MAX_SEQ); s++) {
            assert.equal(a.check(s), b.check(s), `check(${s})`);
          }
        },
      ),
      { numRuns: size === 8192 ? 60 : 200 },
    );
  });
}
