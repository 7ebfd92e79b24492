/**
 * SessionDriver's timer: a deadline that moves later keeps the armed timer (no clearTimeout and
 * setTimeout per packet); an earlier one replaces it; an early fire finds nothing due and re-arms
 * for the deadline then current.
 *
 * Timers and the clock are the test's own: on Node's event loop a timer may fire a millisecond
 * before Date.now() reaches its deadline (the loop's cached time, a monotonic clock against the
 * wall clock), which makes the driver re-arm once more. That is the same early-fire path, but it
 * made an exact count of fires a race; here time moves only when the test says so.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { SessionDriver } from '../src/index.ts';

test('the driver keeps one timer while the deadline moves later, and re-arms after an early fire', () => {
  let now = 1_000_000;
  let deadline: number | undefined;
  const fired: number[] = [];
  const session = {
    pollTransmit: () => undefined,
    pollEvent: () => undefined,
    nextTimeout: () => deadline,
    handleTimeout: (t: number) => {
      fired.push(t);
      // What was due is done.
      if (deadline !== undefined && t >= deadline) deadline = undefined;
    },
  };
  // Armed timers by handle, each with the time it fires at.
  const armed = new Map<object, { fn: () => void; at: number }>();
  const real = { set: globalThis.setTimeout, clear: globalThis.clearTimeout };
  let sets = 0;
  let clears = 0;
  globalThis.setTimeout = ((fn: () => void, ms = 0) => {
    sets++;
    const handle = { unref: () => handle };
    armed.set(handle, { fn, at: now + ms });
    return handle;
  }) as unknown as typeof setTimeout;
  globalThis.clearTimeout = ((h: object) => {
    clears++;
    armed.delete(h);
  }) as unknown as typeof clearTimeout;
  /** Moves the clock to `t`, firing every timer due by then in order. */
  const advance = (t: number): void => {
    for (;;) {
      const next = [...armed].sort((a, b) => a[1].at - b[1].at)[0];
      if (!next || next[1].at > t) break;
      armed.delete(next[0]);
      now = next[1].at;
      next[1].fn();
    }
    now = t;
  };
  const d = new SessionDriver(
    session,
    () => {},
    () => {},
    () => now,
  );
  try {
    const t0 = now;
    deadline = t0 + 40;
    d.pump();
    // A hundred inputs, each moving the deadline on (as every packet moves a loss timer).
    for (let i = 0; i < 100; i++) {
      deadline = t0 + 40 + i;
      d.pump();
    }
    assert.deepEqual([sets, clears], [1, 0]);
    // An earlier deadline replaces it.
    deadline = t0 + 20;
    d.pump();
    assert.deepEqual([sets, clears], [2, 1]);
    // It fires at 20 ms, early for a deadline since moved to 300 ms: the session is asked once,
    // and the driver re-arms for 300 ms.
    deadline = t0 + 300;
    advance(t0 + 299);
    assert.deepEqual(fired, [t0 + 20]);
    assert.equal(sets, 3);
    assert.equal(armed.size, 1, 'one timer armed');
    advance(t0 + 1000);
    assert.deepEqual(fired, [t0 + 20, t0 + 300]);
    assert.equal(deadline, undefined, 'what was due at 300 ms was handled then');
    assert.equal(armed.size, 0, 'nothing due, no timer');
  } finally {
    d.close();
    globalThis.setTimeout = real.set;
    globalThis.clearTimeout = real.clear;
  }
});
