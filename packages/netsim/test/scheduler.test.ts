import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Prng, Scheduler } from '../src/index.ts';

test('events run in time order, ties in insertion order', () => {
  const s = new Scheduler();
  const seen: string[] = [];
  s.at(5, () => seen.push('a5'));
  s.at(1, () => seen.push('b1'));
  s.at(5, () => seen.push('c5'));
  s.after(1, () => seen.push('d1'));
  s.at(3, () => {
    seen.push('e3');
    s.after(0, () => seen.push('f3'));
    s.at(5, () => seen.push('g5'));
  });
  s.runUntil(10);
  assert.deepEqual(seen, ['b1', 'd1', 'e3', 'f3', 'a5', 'c5', 'g5']);
  assert.equal(s.now, 10);
});

test('timers cancel, runUntil stops at t, runUntilIdle reports idleness', () => {
  const s = new Scheduler();
  let n = 0;
  const t1 = s.at(2, () => n++);
  s.at(4, () => n++);
  s.at(8, () => n++);
  t1.cancel();
  assert.equal(t1.pending, false);
  assert.equal(s.pending, 2);
  s.runUntil(5);
  assert.equal(n, 1);
  assert.equal(s.now, 5);
  assert.equal(s.runUntilIdle(7), false);
  assert.equal(s.now, 7);
  assert.equal(s.runUntilIdle(), true);
  assert.equal(n, 2);
  assert.equal(s.now, 8);
  assert.throws(() => s.at(1, () => {}), RangeError);
});

test('the heap keeps order under many random insertions', () => {
  const s = new Scheduler();
  const r = new Prng(3);
  const times: number[] = [];
  for (let i = 0; i < 5000; i++) {
    const t = r.int(0, 1000);
    s.at(t, () => times.push(s.now));
  }
  s.runUntilIdle();
  assert.equal(times.length, 5000);
  for (let i = 1; i < times.length; i++) assert.ok(times[i]! >= times[i - 1]!);
});

test('PRNG: same seed same stream, forks independent of draws', () => {
  const a = new Prng('seed');
  const b = new Prng('seed');
  const xs = Array.from({ length: 10 }, () => a.nextU32());
  assert.deepEqual(
    xs,
    Array.from({ length: 10 }, () => b.nextU32()),
  );
  assert.notDeepEqual(
    xs,
    Array.from({ length: 10 }, () => new Prng('other').nextU32()),
  );
  const f1 = new Prng(1).fork('x').next();
  const p = new Prng(1);
  p.next();
  p.next();
  assert.equal(p.fork('x').next(), f1);
  let sum = 0;
  const r = new Prng(9);
  for (let i = 0; i < 10000; i++) {
    const v = r.next();
    assert.ok(v >= 0 && v < 1);
    sum += v;
  }
  assert.ok(Math.abs(sum / 10000 - 0.5) < 0.02);
});
