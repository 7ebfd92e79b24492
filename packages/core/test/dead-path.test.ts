import assert from 'node:assert/strict';
import { test } from 'node:test';
import { DeadPathDetector } from '../src/dead-path.ts';

const OPTS = { probeMs: 1000, confirmMs: 1000 };

test('silence while sending: challenge, then dead', () => {
  const d = new DeadPathDetector(OPTS);
  assert.equal(d.due(5000, undefined), undefined, 'nothing sent: no silence');
  d.sent(100);
  d.sent(600); // the silence counts from the first unanswered packet
  assert.equal(d.deadline(undefined), 1100);
  assert.equal(d.due(1099, undefined), undefined);
  assert.equal(d.due(1100, undefined), 'challenge');
  d.challenged(new Uint8Array([1, 2]), 1100);
  assert.equal(d.deadline(undefined), 2100);
  assert.equal(d.due(2099, undefined), undefined);
  assert.deepEqual(d.due(2100, undefined), { silentMs: 2000 });
  assert.equal(d.due(2100, undefined), 'challenge', 'the challenge is forgotten once dead');
});

test('the timers stretch with the RTT', () => {
  const d = new DeadPathDetector(OPTS);
  d.sent(1);
  assert.equal(d.deadline(500), 2001, '4 × SRTT');
  d.challenged(new Uint8Array([0]), 2001);
  assert.equal(d.deadline(500), 3501, '3 × SRTT');
});

test('an answer ends the silence; only the matching response counts', () => {
  const d = new DeadPathDetector(OPTS);
  d.sent(10);
  d.challenged(new Uint8Array([7, 7]), 1010);
  assert.equal(d.response(new Uint8Array([7, 8]), 1050), undefined);
  assert.equal(d.response(new Uint8Array([7, 7]), 1050), 40);
  assert.equal(d.response(new Uint8Array([7, 7]), 1060), undefined, 'answered once');
  d.heard();
  assert.equal(d.deadline(undefined), undefined);
  d.sent(2000);
  d.challenged(new Uint8Array([1]), 3000);
  d.cancelChallenge();
  assert.equal(d.deadline(undefined), 3000, 'back to the silence timer');
});
