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

test('held back (canSend false): a retry timer only when something waits to go and the host will not pump by itself', () => {
  let pending = false;
  let resumes = false;
  let canSend = false;
  const sent: number[] = [];
  let queued = 0;
  const mux = {
    pollEvent: () => undefined,
    pollPacket: () => (queued > 0 ? new Uint8Array(queued--) : undefined),
    nextTimeout: () => undefined,
    handleTimeout: () => {},
    get hasPending() {
      return pending;
    },
  } as unknown as Mux;
  const armed = new Map<number, () => void>();
  let nextHandle = 0;
  const pump = new MuxPump({
    mux,
    canSend: () => canSend,
    resumes: () => resumes,
    send: (p) => sent.push(p.length),
    onEvent: () => {},
    clock: () => 0,
    timers: {
      set(fn) {
        armed.set(++nextHandle, fn);
        return nextHandle;
      },
      clear(h) {
        armed.delete(h as number);
      },
    },
  });
  // Nothing to send: an idle session that cannot send needs no timer (it used to poll every ms).
  pump.pump();
  assert.equal(armed.size, 0);
  // Something waits, and the host pumps when it can (a session not yet established): none either.
  pending = true;
  resumes = true;
  pump.pump();
  assert.equal(armed.size, 0);
  // Something waits behind a full queue with no drain event: one retry timer, not one per pump.
  resumes = false;
  pump.pump();
  pump.pump();
  assert.equal(armed.size, 1);
  // The queue has room when it fires: what waited goes.
  canSend = true;
  queued = 2;
  const fire = [...armed.values()][0]!;
  armed.clear();
  fire();
  assert.deepEqual(sent, [2, 1]);
  assert.equal(armed.size, 0);
  pump.close();
});
