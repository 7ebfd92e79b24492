import assert from 'node:assert/strict';
import { test } from 'node:test';
import { RegistrationRounds, roundRetryDelay } from '../src/registration-round.ts';

test('RREQ retransmission delay', () => {
  // [attempt, srtt, retryMs, delay]
  const table = [
    [1, undefined, undefined, 500],
    [2, undefined, undefined, 1000],
    [4, undefined, undefined, 4000],
    [5, undefined, undefined, 4000], // capped at 4 s
    [1, 300, undefined, 900], // 3 × SRTT
    [3, 300, undefined, 3600],
    [1, 300, 200, 200], // configured
    [3, 300, 200, 800],
  ] as const;
  for (const [attempt, srtt, retryMs, delay] of table) {
    assert.equal(roundRetryDelay(attempt, srtt, retryMs), delay, `${attempt}/${srtt}/${retryMs}`);
  }
});

test('rounds: retries until a chosen RREP, which only a higher decision moves', () => {
  const r = new RegistrationRounds();
  const nonce = new Uint8Array([1, 2, 3, 4, 5, 6, 7, 8]);
  assert.equal(r.number, 0);
  assert.equal(r.retryAt(undefined, undefined), undefined);
  const round = r.start(nonce, 'move', 90, 100);
  assert.deepEqual([r.number, round.startedAt, round.sentAt, r.registered], [1, 90, 100, false]);
  assert.equal(r.retryAt(undefined, undefined), 600);
  r.resend(600);
  assert.equal(r.retryAt(undefined, undefined), 1600);
  const rrep = (over: object) => ({ round: 1, nonce, chosen: true, decision: 1, ...over });
  assert.deepEqual(r.rrep(rrep({ round: 2 }), 1700), { kind: 'stale' });
  assert.deepEqual(r.rrep(rrep({ nonce: new Uint8Array(8) }), 1700), { kind: 'stale' });
  assert.deepEqual(r.rrep(rrep({ chosen: false }), 1700), { kind: 'ignored' });
  assert.deepEqual(r.rrep(rrep({}), 1700), { kind: 'chosen', round, rttMs: 1100 });
  assert.equal(r.registered, true);
  assert.equal(r.retryAt(undefined, undefined), undefined);
  assert.deepEqual(r.rrep(rrep({}), 1800), { kind: 'ignored' });
  assert.deepEqual(r.rrep(rrep({ decision: 2 }), 1800), {
    kind: 'chosen',
    round,
    rttMs: undefined,
  });
  r.start(nonce, 'dead-path', 2000, 2000);
  assert.deepEqual([r.number, r.registered], [2, false]);
});
