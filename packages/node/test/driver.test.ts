/**
 * SessionDriver's timer on Node's event loop: a deadline that moves later keeps the armed timer
 * (no clearTimeout and setTimeout per packet); an earlier one replaces it; an early fire finds
 * nothing due and re-arms for the deadline then current.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { SessionDriver } from '../src/index.ts';

test('the driver keeps one timer while the deadline moves later, and re-arms after an early fire', async () => {
  let deadline: number | undefined;
  const fired: number[] = [];
  const session = {
    pollTransmit: () => undefined,
    pollEvent: () => undefined,
    nextTimeout: () => deadline,
    handleTimeout: (now: number) => {
      fired.push(now);
      // What was due is done.
      if (deadline !== undefined && now >= deadline) deadline = undefined;
    },
  };
  const real = { set: globalThis.setTimeout, clear: globalThis.clearTimeout };
  let sets = 0;
  let clears = 0;
  globalThis.setTimeout = ((fn: () => void, ms?: number) => {
    sets++;
    return real.set(fn, ms);
  }) as typeof setTimeout;
  globalThis.clearTimeout = ((t: NodeJS.Timeout) => {
    clears++;
    real.clear(t);
  }) as typeof clearTimeout;
  const d = new SessionDriver(
    session,
    () => {},
    () => {},
  );
  try {
    const t0 = Date.now();
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
    // It fires at ~20 ms, early for a deadline since moved to 300 ms: the session is asked once,
    // and the driver re-arms for 300 ms.
    deadline = t0 + 300;
    const until = async (n: number): Promise<void> => {
      for (let i = 0; i < 200 && fired.length < n; i++) await new Promise((r) => real.set(r, 5));
    };
    // Node's timers run on a monotonic clock and Date.now() may read a millisecond behind it: the
    // bounds allow that much.
    const SLACK_MS = 2;
    await until(1);
    assert.equal(fired.length, 1);
    assert.ok(
      fired[0]! >= t0 + 20 - SLACK_MS && fired[0]! < t0 + 300 - SLACK_MS,
      `fired at +${fired[0]! - t0} ms`,
    );
    assert.equal(sets, 3);
    await until(2);
    assert.equal(fired.length, 2);
    assert.ok(fired[1]! >= t0 + 300 - SLACK_MS, `fired at +${fired[1]! - t0} ms`);
  } finally {
    d.close();
    globalThis.setTimeout = real.set;
    globalThis.clearTimeout = real.clear;
  }
});
