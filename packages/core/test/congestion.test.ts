import assert from 'node:assert/strict';
import { test } from 'node:test';
import { initialWindow, minimumWindow, NewReno, Pacer } from '../src/index.ts';

test('initial and minimum windows (RFC 9002 §7.2)', () => {
  assert.equal(initialWindow(1200), 12_000);
  assert.equal(initialWindow(1350), 13_500);
  assert.equal(initialWindow(1472), 14_720);
  assert.equal(initialWindow(65_000), 130_000);
  assert.equal(minimumWindow(1200), 2400);
  const cc = new NewReno(1200);
  assert.equal(cc.cwnd, 12_000);
  assert.equal(cc.ssthresh, Number.POSITIVE_INFINITY);
  assert.ok(cc.inSlowStart);
});

/** Fills the window with packets of `size` sent at `t`. */
function fill(cc: NewReno, size: number): number {
  let n = 0;
  while (cc.available >= size) {
    cc.onPacketSent(size);
    n++;
  }
  return n;
}

/** One round trip of a window-limited sender: every packet in flight is acknowledged, and the
 * sender refills the window after each acknowledgement. Returns the packets acknowledged. */
function roundTrip(cc: NewReno, size: number, sentAt: number): number {
  const n = cc.bytesInFlight / size;
  for (let i = 0; i < n; i++) {
    cc.onPacketAcked(size, sentAt);
    fill(cc, size);
  }
  return n;
}

test('slow start: the window grows by every byte acknowledged (doubles per round trip)', () => {
  const cc = new NewReno(1200);
  assert.equal(fill(cc, 1200), 10);
  assert.equal(roundTrip(cc, 1200, 0), 10);
  assert.equal(cc.cwnd, 24_000);
  assert.equal(roundTrip(cc, 1200, 0), 20);
  assert.equal(cc.cwnd, 48_000);
});

test('a loss halves the window once per recovery period; later losses reduce again', () => {
  const cc = new NewReno(1200);
  fill(cc, 1200);
  roundTrip(cc, 1200, 0); // cwnd 24000, 20 packets in flight (sent at t = 10, say)
  assert.equal(cc.cwnd, 24_000);
  // Two losses of packets sent at t = 10, detected at t = 100.
  assert.equal(cc.onCongestionEvent(10, 100), true);
  assert.equal(cc.cwnd, 12_000);
  assert.equal(cc.ssthresh, 12_000);
  assert.equal(cc.onCongestionEvent(10, 105), false, 'same recovery period: no second cut');
  assert.equal(cc.cwnd, 12_000);
  assert.equal(cc.reductions, 1);
  // Acks of packets sent before recovery began do not grow the window.
  cc.onPacketAcked(1200, 10);
  assert.equal(cc.cwnd, 12_000);
  // A loss of a packet sent after recovery began is a new event.
  assert.equal(cc.onCongestionEvent(150, 200), true);
  assert.equal(cc.cwnd, 6000);
  assert.equal(cc.reductions, 2);
  // Never below the minimum window.
  for (let t = 300; t < 2000; t += 100) cc.onCongestionEvent(t, t + 1);
  assert.equal(cc.cwnd, minimumWindow(1200));
});

test('congestion avoidance: one datagram per window acknowledged', () => {
  const cc = new NewReno(1200);
  cc.onPacketSent(12_000);
  cc.onCongestionEvent(0, 1); // cwnd = ssthresh = 6000, recovery from t = 1
  assert.ok(!cc.inSlowStart);
  cc.onPacketRemoved(12_000);
  fill(cc, 1200); // 5 packets, sent after recovery start
  roundTrip(cc, 1200, 2);
  // 5 acks of 1200 each add 1200 × 1200 / cwnd each: about one datagram in total.
  assert.ok(cc.cwnd > 6000 + 1100 && cc.cwnd < 6000 + 1200, `cwnd ${cc.cwnd}`);
  assert.ok(!cc.inSlowStart);
});

test('the window does not grow when it is not used (RFC 9002 §7.8)', () => {
  const cc = new NewReno(1200);
  cc.onPacketSent(1200);
  cc.onPacketAcked(1200, 0);
  assert.equal(cc.cwnd, 12_000, 'one packet in a 10-packet window: application-limited');
});

test('persistent congestion collapses to the minimum window; reset restores the initial one', () => {
  const cc = new NewReno(1350);
  fill(cc, 1350);
  cc.onCongestionEvent(0, 10);
  cc.onPersistentCongestion();
  assert.equal(cc.cwnd, 2700);
  assert.equal(cc.recoveryStart, undefined);
  cc.reset();
  assert.equal(cc.cwnd, 13_500);
  assert.equal(cc.bytesInFlight, 0);
  cc.setMaxDatagramSize(65_000);
  assert.equal(cc.cwnd, 130_000, 'the minimum follows a larger datagram size');
});

test('pacer: a burst of one initial window, then the rate N × cwnd / srtt', () => {
  const p = new Pacer(12_000);
  const rate = Pacer.rate(12_000, 100, false); // 1.25 × 12000 / 100 = 150 bytes per ms
  assert.equal(rate, 150);
  assert.equal(Pacer.rate(12_000, 100, true), 240);
  let sent = 0;
  while (p.delay(0, rate) === 0) {
    p.onSent(1200);
    sent += 1200;
  }
  assert.equal(sent, 13_200, 'one window, plus one packet on an exactly empty bucket');
  // 1200 bytes of deficit at 150 bytes/ms: 8 ms.
  assert.ok(Math.abs(p.delay(0, rate) - 1200 / 150) < 1e-9);
  assert.equal(p.delay(9, rate), 0);
  p.reset();
  assert.equal(p.delay(1000, rate), 0);
});
