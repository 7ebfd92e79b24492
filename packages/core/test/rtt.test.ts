import assert from 'node:assert/strict';
import { test } from 'node:test';
import { GRANULARITY_MS, INITIAL_RTT_MS, RttEstimator } from '../src/index.ts';

test('before any sample: kInitialRtt 333 ms, rttvar half of it (RFC 9002 §6.2.2)', () => {
  const r = new RttEstimator();
  assert.equal(r.smoothed, INITIAL_RTT_MS);
  assert.equal(r.rttvar, INITIAL_RTT_MS / 2);
  assert.equal(r.hasSample, false);
  // PTO = smoothed + max(4 rttvar, granularity) + max_ack_delay = 333 + 666 + 25.
  assert.equal(r.pto(25), 333 + 666 + 25);
});

test('first sample sets everything from it (RFC 9002 §5.3)', () => {
  const r = new RttEstimator();
  r.update(100, 20, 5000);
  assert.equal(r.min, 100);
  assert.equal(r.smoothed, 100, 'ack delay ignored on the first sample');
  assert.equal(r.rttvar, 50);
  assert.equal(r.latest, 100);
  assert.equal(r.firstSampleAt, 5000);
});

test('later samples: EWMA 7/8 and 3/4, ack delay subtracted only above min_rtt', () => {
  const r = new RttEstimator();
  r.update(100, 0, 0);
  // 120 with 10 ms ack delay: adjusted 110 (≥ min 100 + 10).
  r.update(120, 10, 1);
  assert.equal(r.rttvar, 0.75 * 50 + 0.25 * 10);
  assert.equal(r.smoothed, 0.875 * 100 + 0.125 * 110);
  const s1 = r.smoothed;
  const v1 = r.rttvar;
  // 105 with 10 ms ack delay: 105 < 100 + 10, so the delay is not subtracted (adjusted 105).
  r.update(105, 10, 2);
  assert.equal(r.smoothed, 0.875 * s1 + 0.125 * 105);
  assert.equal(r.rttvar, 0.75 * v1 + 0.25 * Math.abs(s1 - 105));
  // min_rtt ignores the ack delay and only goes down.
  r.update(90, 50, 3);
  assert.equal(r.min, 90);
  r.update(200, 0, 4);
  assert.equal(r.min, 90);
  assert.equal(r.latest, 200);
});

test('PTO uses the granularity floor on rttvar; reset returns to the initial state', () => {
  const r = new RttEstimator();
  r.update(10, 0, 0);
  for (let i = 0; i < 50; i++) r.update(10, 0, i);
  assert.ok(r.rttvar < 0.01);
  assert.equal(r.pto(25), r.smoothed + GRANULARITY_MS + 25);
  assert.equal(r.lossDelay(), (9 / 8) * 10);
  r.reset();
  assert.equal(r.smoothed, INITIAL_RTT_MS);
  assert.equal(r.hasSample, false);
  assert.equal(r.firstSampleAt, undefined);
  r.update(-1, 0, 0);
  assert.equal(r.hasSample, false, 'a negative sample is ignored');
});
