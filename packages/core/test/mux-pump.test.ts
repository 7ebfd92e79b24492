/**
 * MuxPump's timer: one timer for the mux's next deadline, replaced only when the deadline moves
 * earlier. A later deadline keeps it; it fires early, finds nothing due, and re-arms.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { type Mux, MuxPump } from '../src/index.ts';

test('a deadline that moves later keeps the armed timer; an earlier one replaces it', () => {
  let now = 1000;
  let deadline: number | undefined = 1010;
  const timeouts: number[] = [];
  // A stand-in for the mux: only its deadline matters here.
  const mux = {
    pollEvent: () => undefined,
    pollPacket: () => undefined,
    nextTimeout: () => deadline,
    handleTimeout: (t: number) => timeouts.push(t),
  } as unknown as Mux;
  const armed = new Map<number, { fn: () => void; at: number }>();
  let nextHandle = 0;
  let sets = 0;
  let clears = 0;
  const pump = new MuxPump({
    mux,
    canSend: () => true,
    send: () => {},
    onEvent: () => {},
    clock: () => now,
    timers: {
      set(fn, ms) {
        sets++;
        armed.set(++nextHandle, { fn, at: now + ms });
        return nextHandle;
      },
      clear(h) {
        clears++;
        armed.delete(h as number);
      },
    },
  });
  pump.pump();
  assert.equal(sets, 1);
  // A hundred packets, each moving the deadline on: no timer churn.
  for (let i = 0; i < 100; i++) {
    deadline = 1010 + i;
    pump.pump();
  }
  assert.deepEqual([sets, clears, armed.size], [1, 0, 1]);
  // No deadline at all: the armed timer stays too.
  deadline = undefined;
  pump.pump();
  assert.deepEqual([sets, clears], [1, 0]);
  // An earlier deadline replaces it.
  deadline = 1005;
  pump.pump();
  assert.deepEqual([sets, clears, armed.size], [2, 1, 1]);
  const [, t] = [...armed][0]!;
  assert.equal(t.at, 1005);
  // It fires (early for a deadline since moved to 1050): the mux is asked, the timer re-armed.
  deadline = 1050;
  now = 1005;
  armed.clear();
  t.fn();
  assert.deepEqual(timeouts, [1005]);
  assert.equal(sets, 3);
  assert.equal([...armed.values()][0]!.at, 1050);
  pump.close();
});
