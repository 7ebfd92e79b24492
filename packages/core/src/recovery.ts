/**
 * Loss recovery for the stream layer, RFC 9002 §6 with one packet number space:
 *
 * - Every packet sent is remembered (number, time, size, whether it elicits an ACK, what it
 *   carried) until it is acknowledged, or declared lost and a little longer, so that a late ACK
 *   for a packet declared lost still counts (its data need not go again).
 * - A packet is lost once a later one is acknowledged and it is 3 packets older (kPacketThreshold)
 *   or 9/8 of an RTT older (kTimeThreshold) — §6.1.
 * - The probe timeout (§6.2): when nothing is acknowledged for PTO = srtt + max(4 rttvar, 1 ms) +
 *   max_ack_delay after the last ack-eliciting packet, the caller sends probes; the period doubles
 *   per consecutive PTO, **capped** at `maxPtoMs` (or the base PTO if larger): a path that comes
 *   back after a long outage is noticed within about a second instead of after a huge backoff.
 * - Losses feed NewReno (§7.3.2) and persistent congestion (§7.6): ack-eliciting packets lost
 *   over more than 3 × PTO with every packet between them lost.
 *
 * The packet list is a deque ordered by packet number: appends at the tail, ACK ranges found by
 * binary search, acknowledged packets removed from the head.
 */
import { NewReno } from './congestion.ts';
import { GRANULARITY_MS, RttEstimator } from './rtt.ts';

/** RFC 9002 §6.1.1 kPacketThreshold: the initial reordering threshold. */
export const PACKET_THRESHOLD = 3;
/**
 * Highest the packet threshold adapts to. RFC 9002 §6.1.1 allows raising it when losses prove
 * spurious (reordering); the time threshold still declares a packet lost 9/8 RTT after a later one
 * was acknowledged, so a high packet threshold delays loss detection by at most that.
 */
export const MAX_PACKET_THRESHOLD = 256;
/** RFC 9002 §6.1.2 kTimeThreshold: the initial time threshold, in RTTs. */
export const TIME_THRESHOLD = 9 / 8;
/** Highest the time threshold adapts to (RFC 9002 §6.1.2 allows adaptive thresholds). */
export const MAX_TIME_THRESHOLD = 2;

/** How a packet was declared lost (bits of `SentPacket.lostBy`). */
export const LOST_BY_PACKETS = 1;
export const LOST_BY_TIME = 2;
/** RFC 9002 §7.6.1 kPersistentCongestionThreshold. */
export const PERSISTENT_CONGESTION_THRESHOLD = 3;
/** Default cap on the backed-off PTO period. */
export const DEFAULT_MAX_PTO_MS = 1000;

export const PacketState = { OUTSTANDING: 0, ACKED: 1, LOST: 2 } as const;
export type PacketState = (typeof PacketState)[keyof typeof PacketState];

export interface SentPacket<T> {
  pn: number;
  timeSent: number;
  /** Bytes counted in flight (the payload length). */
  size: number;
  ackEliciting: boolean;
  /** Counted against the congestion window (every ack-eliciting packet is). */
  inFlight: boolean;
  state: PacketState;
  /** Which thresholds declared it lost (LOST_BY_* bits; 0 otherwise). Senders set 0. */
  lostBy: number;
  /** What the packet carried that matters if it is acknowledged or lost. */
  items: T;
}

export interface RecoveryHooks<T> {
  /** `p` was acknowledged; `late` if it had been declared lost before. */
  acked(p: SentPacket<T>, late: boolean): void;
  /** `p` was declared lost (or discarded on a path change). */
  lost(p: SentPacket<T>): void;
}

export interface RecoveryOptions {
  maxDatagramSize: number;
  /** The peer's max_ack_delay (ms): how long it may hold an ACK. */
  maxAckDelay: number;
  maxPtoMs?: number;
}

export interface RecoveryStats {
  packetsAcked: number;
  packetsLost: number;
  /** Packets declared lost and acknowledged later. */
  spuriousLosses: number;
  persistentCongestion: number;
  ptos: number;
}

export class Recovery<T> {
  readonly rtt = new RttEstimator();
  readonly cc: NewReno;
  readonly stats: RecoveryStats = {
    packetsAcked: 0,
    packetsLost: 0,
    spuriousLosses: 0,
    persistentCongestion: 0,
    ptos: 0,
  };
  maxAckDelay: number;
  maxPtoMs: number;
  /** Largest packet number the peer acknowledged (−1: none). */
  largestAcked = -1;
  /** Consecutive PTOs without an acknowledgement. */
  ptoCount = 0;
  /** The reordering threshold in packets (adapts upward on spurious losses). */
  packetThreshold = PACKET_THRESHOLD;
  /** The reordering threshold in RTTs (adapts upward on spurious losses). */
  timeThreshold = TIME_THRESHOLD;
  readonly #sent: SentPacket<T>[] = [];
  #head = 0;
  /** Index at or before the first OUTSTANDING packet. */
  #scan = 0;
  /** ACKED packets at or after `#head` (held behind an older one still outstanding or lost). */
  #ackedBehind = 0;
  #lossTime: number | undefined;
  #lastAckElicitingAt: number | undefined;
  #ackElicitingInFlight = 0;
  readonly #lostBatch: SentPacket<T>[] = [];

  constructor(o: RecoveryOptions) {
    this.cc = new NewReno(o.maxDatagramSize);
    this.maxAckDelay = o.maxAckDelay;
    this.maxPtoMs = o.maxPtoMs ?? DEFAULT_MAX_PTO_MS;
  }

  /** Ack-eliciting packets neither acknowledged nor declared lost. */
  get ackElicitingInFlight(): number {
    return this.#ackElicitingInFlight;
  }

  /** Packets remembered (outstanding, or lost and kept for late ACKs). */
  get tracked(): number {
    return this.#sent.length - this.#head;
  }

  onPacketSent(p: SentPacket<T>): void {
    this.#sent.push(p);
    if (p.inFlight) this.cc.onPacketSent(p.size);
    if (p.ackEliciting) {
      this.#ackElicitingInFlight++;
      this.#lastAckElicitingAt = p.timeSent;
    }
  }

  /** Index of the first remembered packet with pn ≥ `pn`. */
  #find(pn: number): number {
    let lo = this.#head;
    let hi = this.#sent.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.#sent[mid]!.pn < pn) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  /**
   * Processes an ACK frame: `ranges` are inclusive [high, low] pairs, highest first; `ackDelayMs`
   * the peer's reported delay. Returns the number of packets newly acknowledged (late ones
   * included). The caller has checked that no range goes beyond what was sent.
   */
  onAck(ranges: number[], ackDelayMs: number, now: number, hooks: RecoveryHooks<T>): number {
    const largest = ranges[0]!;
    let newly = 0;
    let largestNewly: SentPacket<T> | undefined;
    let elicitingNewly = false;
    for (let r = ranges.length - 2; r >= 0; r -= 2) {
      const hi = ranges[r]!;
      const lo = ranges[r + 1]!;
      for (let i = this.#find(lo); i < this.#sent.length; i++) {
        const p = this.#sent[i]!;
        if (p.pn > hi) break;
        if (p.state === PacketState.ACKED) continue;
        newly++;
        if (p.state === PacketState.LOST) {
          p.state = PacketState.ACKED;
          this.#ackedBehind++;
          this.stats.spuriousLosses++;
          // Reordered, not lost: tolerate that much reordering from now on.
          if (p.lostBy & LOST_BY_PACKETS) {
            const seen = Math.max(largest, this.largestAcked) - p.pn + 1;
            this.packetThreshold = Math.min(
              MAX_PACKET_THRESHOLD,
              Math.max(this.packetThreshold, seen),
            );
          }
          if (p.lostBy & LOST_BY_TIME) {
            const rtt = Math.max(this.rtt.latest, this.rtt.smoothed, GRANULARITY_MS);
            const seen = (now - p.timeSent) / rtt + 1 / 8;
            this.timeThreshold = Math.min(MAX_TIME_THRESHOLD, Math.max(this.timeThreshold, seen));
          }
          hooks.acked(p, true);
          continue;
        }
        p.state = PacketState.ACKED;
        this.#ackedBehind++;
        this.stats.packetsAcked++;
        if (p.inFlight) this.cc.onPacketAcked(p.size, p.timeSent);
        if (p.ackEliciting) {
          this.#ackElicitingInFlight--;
          elicitingNewly = true;
        }
        if (largestNewly === undefined || p.pn > largestNewly.pn) largestNewly = p;
        hooks.acked(p, false);
      }
    }
    if (largest > this.largestAcked) this.largestAcked = largest;
    if (newly === 0) return 0;
    // RFC 9002 §5.1: a sample when the largest acknowledged is newly acknowledged and something
    // newly acknowledged was ack-eliciting.
    if (largestNewly !== undefined && largestNewly.pn === largest && elicitingNewly) {
      this.rtt.update(now - largestNewly.timeSent, Math.min(ackDelayMs, this.maxAckDelay), now);
    }
    this.detectLost(now, hooks);
    this.ptoCount = 0;
    this.#compact(now);
    return newly;
  }

  /** RFC 9002 §6.1: declares lost what the thresholds say is lost; sets the loss timer. */
  detectLost(now: number, hooks: RecoveryHooks<T>): void {
    this.#lossTime = undefined;
    if (this.largestAcked < 0) return;
    const lossDelay = Math.max(
      this.timeThreshold * Math.max(this.rtt.latest, this.rtt.smoothed),
      GRANULARITY_MS,
    );
    const batch = this.#lostBatch;
    batch.length = 0;
    const sent = this.#sent;
    while (this.#scan < sent.length && sent[this.#scan]!.state !== PacketState.OUTSTANDING) {
      this.#scan++;
    }
    for (let i = Math.max(this.#scan, this.#head); i < sent.length; i++) {
      const p = sent[i]!;
      if (p.pn > this.largestAcked) break;
      if (p.state !== PacketState.OUTSTANDING) continue;
      // One expression for both the test and the timer, so rounding cannot re-arm it at `now`.
      const t = p.timeSent + lossDelay;
      const byPackets = this.largestAcked >= p.pn + this.packetThreshold;
      if (t <= now || byPackets) {
        p.lostBy = (byPackets ? LOST_BY_PACKETS : 0) | (t <= now ? LOST_BY_TIME : 0);
        this.#declareLost(p, hooks);
        batch.push(p);
      } else if (this.#lossTime === undefined || t < this.#lossTime) {
        this.#lossTime = t;
      }
    }
    if (batch.length > 0) this.#onLost(batch, now);
    batch.length = 0;
  }

  #declareLost(p: SentPacket<T>, hooks: RecoveryHooks<T>): void {
    p.state = PacketState.LOST;
    this.stats.packetsLost++;
    if (p.inFlight) this.cc.onPacketRemoved(p.size);
    if (p.ackEliciting) this.#ackElicitingInFlight--;
    hooks.lost(p);
  }

  /** Congestion response to one batch of losses (RFC 9002 Appendix B.8). */
  #onLost(batch: SentPacket<T>[], now: number): void {
    let latestSent: number | undefined;
    for (const p of batch) {
      if (p.inFlight && (latestSent === undefined || p.timeSent > latestSent)) {
        latestSent = p.timeSent;
      }
    }
    if (latestSent === undefined) return;
    this.cc.onCongestionEvent(latestSent, now);
    if (this.#persistent(batch)) {
      this.cc.onPersistentCongestion();
      this.stats.persistentCongestion++;
    }
  }

  /**
   * RFC 9002 §7.6.2: two ack-eliciting packets lost more than the persistent congestion duration
   * apart, every packet between them lost too (here: consecutive packet numbers in this batch),
   * both sent after the first RTT sample.
   */
  #persistent(batch: SentPacket<T>[]): boolean {
    const firstSample = this.rtt.firstSampleAt;
    if (firstSample === undefined) return false;
    const duration =
      (this.rtt.smoothed + Math.max(4 * this.rtt.rttvar, GRANULARITY_MS) + this.maxAckDelay) *
      PERSISTENT_CONGESTION_THRESHOLD;
    let runStart: number | undefined;
    let prevPn = -2;
    for (const p of batch) {
      if (p.pn !== prevPn + 1) runStart = undefined;
      prevPn = p.pn;
      if (!p.ackEliciting || p.timeSent <= firstSample) continue;
      if (runStart === undefined) runStart = p.timeSent;
      else if (p.timeSent - runStart > duration) return true;
    }
    return false;
  }

  /** The base PTO period (before backoff). */
  basePto(): number {
    return this.rtt.pto(this.maxAckDelay);
  }

  /** The current PTO period: doubled per consecutive PTO, capped. */
  ptoInterval(): number {
    const base = this.basePto();
    const cap = Math.max(base, this.maxPtoMs);
    return Math.min(base * 2 ** Math.min(this.ptoCount, 30), cap);
  }

  /** When `onTimeout` should run next: the loss timer, else the PTO; undefined when idle. */
  deadline(): number | undefined {
    if (this.#lossTime !== undefined) return this.#lossTime;
    if (this.#ackElicitingInFlight === 0 || this.#lastAckElicitingAt === undefined)
      return undefined;
    return this.#lastAckElicitingAt + this.ptoInterval();
  }

  /**
   * Runs the timer: 'loss' if packets were declared lost by time, 'pto' if a probe timeout
   * expired (the caller sends probes), undefined if nothing was due.
   */
  onTimeout(now: number, hooks: RecoveryHooks<T>): 'loss' | 'pto' | undefined {
    if (this.#lossTime !== undefined) {
      if (this.#lossTime > now) return undefined;
      this.detectLost(now, hooks);
      return 'loss';
    }
    const d = this.deadline();
    if (d === undefined || d > now) return undefined;
    this.ptoCount++;
    this.stats.ptos++;
    // The probe counts as the newest ack-eliciting packet when it is sent; until then, the next
    // period is measured from now so that a caller unable to send does not spin.
    this.#lastAckElicitingAt = now;
    return 'pto';
  }

  /** The oldest outstanding ack-eliciting packet (what a probe should carry again). */
  oldestOutstanding(): SentPacket<T> | undefined {
    for (let i = Math.max(this.#scan, this.#head); i < this.#sent.length; i++) {
      const p = this.#sent[i]!;
      if (p.state === PacketState.OUTSTANDING && p.ackEliciting) return p;
    }
    return undefined;
  }

  /**
   * RFC 9000 §9.4: the path changed. Everything outstanding is declared lost (its data goes again
   * at once, on the new path) without a congestion response; the congestion controller, the RTT
   * estimate and the PTO backoff start over.
   */
  pathChanged(hooks: RecoveryHooks<T>): void {
    for (let i = this.#head; i < this.#sent.length; i++) {
      const p = this.#sent[i]!;
      if (p.state === PacketState.OUTSTANDING) {
        p.lostBy = 0;
        this.#declareLost(p, hooks);
      }
    }
    this.cc.reset();
    this.rtt.reset();
    this.ptoCount = 0;
    this.packetThreshold = PACKET_THRESHOLD;
    this.timeThreshold = TIME_THRESHOLD;
    this.#lossTime = undefined;
    this.#ackElicitingInFlight = 0;
  }

  /**
   * Forgets acknowledged packets, and lost ones older than 3 PTOs, from the head. Acknowledged
   * packets held behind an older one (a loss kept for late ACKs, a gap) are removed once they
   * are most of what is tracked: every ACK frame repeats the old ranges, and walking past the
   * same acknowledged packets again for each one cost more than the rest of the ACK's work (on
   * a lossy fast path, ~1000 per ACK).
   */
  #compact(now: number): void {
    const keepLostAfter = now - 3 * this.basePto();
    const sent = this.#sent;
    while (this.#head < sent.length) {
      const p = sent[this.#head]!;
      if (p.state === PacketState.ACKED) {
        this.#head++;
        this.#ackedBehind--;
      } else if (p.state === PacketState.LOST && p.timeSent < keepLostAfter) this.#head++;
      else break;
    }
    if (this.#ackedBehind > 256 && this.#ackedBehind * 2 > sent.length - this.#head) {
      let w = 0;
      for (let i = this.#head; i < sent.length; i++) {
        const p = sent[i]!;
        if (p.state !== PacketState.ACKED) sent[w++] = p;
      }
      sent.length = w;
      this.#head = 0;
      this.#scan = 0;
      this.#ackedBehind = 0;
      return;
    }
    if (this.#head > 1024 && this.#head * 2 > sent.length) {
      sent.splice(0, this.#head);
      this.#scan = Math.max(0, this.#scan - this.#head);
      this.#head = 0;
    }
  }
}
