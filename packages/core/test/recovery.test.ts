import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { RecoveryHooks, SentPacket } from '../src/index.ts';
import { PACKET_THRESHOLD, Recovery } from '../src/index.ts';

type P = SentPacket<string>;

function setup(maxPtoMs = 1000) {
  const r = new Recovery<string>({ maxDatagramSize: 1200, maxAckDelay: 25, maxPtoMs });
  const acked: number[] = [];
  const late: number[] = [];
  const lost: number[] = [];
  const hooks: RecoveryHooks<string> = {
    acked: (p, isLate) => (isLate ? late : acked).push(p.pn),
    lost: (p) => lost.push(p.pn),
  };
  let pn = 0;
  const send = (t: number, eliciting = true): P => {
    const p: P = {
      pn: pn++,
      timeSent: t,
      size: 1200,
      ackEliciting: eliciting,
      inFlight: eliciting,
      state: 0,
      lostBy: 0,
      items: `packet ${pn - 1}`,
    };
    r.onPacketSent(p);
    return p;
  };
  /** ACK of inclusive [high, low] ranges. */
  const ack = (now: number, ...ranges: number[]): number => r.onAck(ranges, 0, now, hooks);
  return { r, hooks, acked, late, lost, send, ack };
}

test('packet threshold: 3 newer packets acknowledged declare a packet lost (RFC 9002 §6.1.1)', () => {
  const { r, send, ack, lost, acked, hooks } = setup();
  assert.equal(PACKET_THRESHOLD, 3);
  for (let i = 0; i < 6; i++) send(0);
  ack(100, 4, 4);
  assert.deepEqual(acked, [4]);
  assert.deepEqual(lost, [0, 1], '4 - 0 ≥ 3 and 4 - 1 ≥ 3; 2 and 3 wait');
  assert.equal(r.cc.reductions, 1, 'one congestion event for the batch');
  assert.equal(r.rtt.latest, 100);
  // The loss timer is armed for 2 and 3: 9/8 × RTT after they were sent.
  assert.equal(r.deadline(), 0 + (9 / 8) * 100);
  assert.equal(r.onTimeout(112, hooks), undefined);
});

test('time threshold: the loss timer declares the rest lost at 9/8 RTT (RFC 9002 §6.1.2)', () => {
  const { r, send, ack, lost, hooks } = setup();
  for (let i = 0; i < 4; i++) send(0);
  ack(100, 3, 3);
  assert.deepEqual(lost, [0]);
  assert.equal(r.deadline(), 112.5);
  assert.equal(r.onTimeout(112.4, hooks), undefined);
  assert.equal(r.onTimeout(112.5, hooks), 'loss');
  assert.deepEqual(lost, [0, 1, 2]);
  assert.equal(r.cc.reductions, 1, 'still the same recovery period');
});

test('RTT sample only when the largest acknowledged is new and ack-eliciting', () => {
  const { r, send, ack } = setup();
  send(0);
  send(10, false); // an ACK-only packet
  ack(50, 1, 1);
  assert.equal(r.rtt.hasSample, false, 'only a non-eliciting packet newly acknowledged');
  ack(60, 1, 0);
  assert.equal(r.rtt.hasSample, false, 'largest (1) not newly acknowledged');
  send(100);
  ack(130, 2, 0);
  assert.equal(r.rtt.latest, 30);
});

test('PTO: doubles per timeout, capped at maxPtoMs; an ACK resets the backoff', () => {
  const { r, send, ack, hooks } = setup(1000);
  send(0);
  ack(100, 0, 0); // srtt 100, rttvar 50 → PTO = 100 + 200 + 25 = 325
  assert.equal(r.basePto(), 325);
  send(1000);
  assert.equal(r.deadline(), 1325);
  assert.equal(r.onTimeout(1324, hooks), undefined);
  assert.equal(r.onTimeout(1325, hooks), 'pto');
  assert.equal(r.ptoCount, 1);
  send(1325); // the probe
  assert.equal(r.deadline(), 1325 + 650);
  r.onTimeout(1975, hooks);
  send(1975);
  assert.equal(r.deadline(), 1975 + 1000, 'capped at 1000 ms instead of 1300');
  for (let i = 0; i < 20; i++) {
    const d = r.deadline()!;
    r.onTimeout(d, hooks);
    send(d);
  }
  assert.equal(r.ptoInterval(), 1000, 'still 1 s after 23 timeouts');
  ack(r.deadline()! - 500, 2, 2);
  assert.equal(r.ptoCount, 0);
  // A base PTO above the cap is not cut.
  const big = setup(1000);
  big.send(0);
  big.ack(2000, 0, 0);
  assert.equal(big.r.basePto(), 2000 + 4000 + 25);
  big.r.ptoCount = 5;
  assert.equal(big.r.ptoInterval(), 6025);
});

test('persistent congestion: all lost over more than 3 PTOs collapses the window (§7.6)', () => {
  const { r, send, ack } = setup(100_000);
  send(0);
  ack(100, 0, 0); // first RTT sample at 100; PTO 325, persistent duration 975
  for (let t = 200; t <= 1400; t += 100) send(t); // pns 1..13, all to be lost
  send(1500); // 14 gets through
  ack(1600, 14, 14);
  assert.equal(r.stats.persistentCongestion, 1);
  assert.equal(r.cc.cwnd, 2400);
  // Not when an acknowledged packet breaks the run.
  const b = setup(100_000);
  b.send(0);
  b.ack(100, 0, 0);
  for (let t = 200; t <= 1400; t += 100) b.send(t);
  b.send(1500);
  b.ack(1600, 14, 14, 7, 7);
  assert.equal(b.r.stats.persistentCongestion, 0);
  assert.ok(b.r.cc.cwnd > 2400);
});

test('pathChanged: everything outstanding lost at once, no congestion response, fresh estimates', () => {
  const { r, send, ack, lost, hooks } = setup();
  send(0);
  ack(50, 0, 0);
  for (let i = 0; i < 5; i++) send(60);
  const reductions = r.cc.reductions;
  r.pathChanged(hooks);
  assert.deepEqual(lost, [1, 2, 3, 4, 5]);
  assert.equal(r.cc.reductions, reductions);
  assert.equal(r.cc.bytesInFlight, 0);
  assert.equal(r.rtt.hasSample, false);
  assert.equal(r.ackElicitingInFlight, 0);
  assert.equal(r.deadline(), undefined);
  // A late ACK for a packet declared lost still counts (its data need not go again).
  const late: number[] = [];
  r.onAck([3, 3], 0, 200, { acked: (p, l) => l && late.push(p.pn), lost: () => {} });
  assert.deepEqual(late, [3]);
  assert.equal(r.stats.spuriousLosses, 1);
  assert.equal(
    r.packetThreshold,
    PACKET_THRESHOLD,
    'path-change losses teach nothing about reordering',
  );
});

test('spurious losses raise the reordering thresholds (RFC 9002 §6.1.1, §6.1.2)', () => {
  const { r, send, ack, lost, late } = setup();
  for (let i = 0; i < 12; i++) send(i);
  ack(100, 11, 3);
  assert.deepEqual(lost, [0, 1, 2]);
  ack(101, 2, 0); // they were only reordered
  assert.deepEqual(late, [0, 1, 2]);
  assert.equal(r.packetThreshold, 12, 'packet 0 arrived behind 11 later ones');
  // Reordering by time: a packet acknowledged 2 × RTT late widens the time threshold.
  const t = setup();
  t.send(0);
  t.ack(100, 0, 0);
  t.send(1000);
  t.send(1001);
  t.ack(1101, 2, 2);
  t.r.onTimeout(t.r.deadline()!, t.hooks);
  assert.deepEqual(t.lost, [1]);
  t.ack(1250, 1, 1);
  assert.ok(t.r.timeThreshold > 9 / 8 && t.r.timeThreshold <= 2, `${t.r.timeThreshold}`);
});

test('acknowledged packets behind a kept loss are forgotten; a late ACK of the loss still counts', () => {
  const { r, send, ack, lost, late } = setup();
  // pn 0 is lost (never acknowledged); then 3000 packets are acknowledged two at a time, every
  // ACK repeating the whole received history as its ranges (as a receiver does).
  for (let i = 0; i < 3002; i++) send(i * 0.01);
  let high = 0;
  for (let n = 2; n <= 3000; n += 2) {
    high = n;
    assert.equal(ack(40, high, 1), 2);
  }
  assert.deepEqual(lost, [0]);
  // Without forgetting them, all 3000 acknowledged packets stay behind pn 0 until it ages out.
  assert.ok(r.tracked < 600, `${r.tracked} packets tracked`);
  // pn 0 arrives late after all: a spurious loss, reported once.
  assert.equal(ack(41, high, 0), 1);
  assert.deepEqual(late, [0]);
  assert.equal(r.stats.spuriousLosses, 1);
  // pn 3001 is still outstanding and is acknowledged normally.
  assert.equal(ack(42, 3001, 0), 1);
  assert.deepEqual(late, [0]);
});
