/**
 * NewReno congestion control as RFC 9002 §7 specifies it for QUIC, and a pacer (§7.7).
 *
 * - Slow start: the window grows by the bytes acknowledged; congestion avoidance: by one maximum
 *   datagram per window acknowledged (§7.3.1, §7.3.3).
 * - A loss (or any congestion signal) halves the window (kLossReductionFactor 0.5) and starts a
 *   recovery period; further losses of packets sent before it began do not reduce it again
 *   (§7.3.2), so the window drops once per round trip at most.
 * - Persistent congestion (§7.6) collapses the window to the minimum (2 datagrams).
 * - The window grows only when it is being used (§7.8): an application- or flow-control-limited
 *   sender does not inflate a window it has not tested.
 *
 * Sizes are bytes of mux payload; the window never drops below `minimumWindow`.
 */

/** RFC 9002 §7.2: the initial window, min(10 × max_datagram_size, max(14720, 2 × max_datagram_size)). */
export function initialWindow(maxDatagramSize: number): number {
  return Math.min(10 * maxDatagramSize, Math.max(14_720, 2 * maxDatagramSize));
}

/** RFC 9002 §7.2: kMinimumWindow, 2 × max_datagram_size. */
export function minimumWindow(maxDatagramSize: number): number {
  return 2 * maxDatagramSize;
}

/** RFC 9002 §7.2: kLossReductionFactor. */
export const LOSS_REDUCTION_FACTOR = 0.5;

export class NewReno {
  #mds: number;
  cwnd: number;
  ssthresh = Number.POSITIVE_INFINITY;
  bytesInFlight = 0;
  /** When the current recovery period began; packets sent before it do not reduce the window. */
  recoveryStart: number | undefined;
  /** Number of window reductions (for statistics and tests). */
  reductions = 0;
  /**
   * Set by the sender while the pacer, not the window or the application, holds packets back: the
   * window counts as used then (RFC 9002 §7.8), however little is in flight.
   */
  pacingLimited = false;

  constructor(maxDatagramSize: number) {
    this.#mds = maxDatagramSize;
    this.cwnd = initialWindow(maxDatagramSize);
  }

  get maxDatagramSize(): number {
    return this.#mds;
  }

  /** The path's datagram size changed: the minimum moves with it; the window stays. */
  setMaxDatagramSize(n: number): void {
    this.#mds = n;
    if (this.cwnd < minimumWindow(n)) this.cwnd = minimumWindow(n);
  }

  get inSlowStart(): boolean {
    return this.cwnd < this.ssthresh;
  }

  inRecovery(timeSent: number): boolean {
    return this.recoveryStart !== undefined && timeSent <= this.recoveryStart;
  }

  /** Room left in the window (may be negative after a reduction). */
  get available(): number {
    return this.cwnd - this.bytesInFlight;
  }

  onPacketSent(bytes: number): void {
    this.bytesInFlight += bytes;
  }

  /** A packet in flight was acknowledged (RFC 9002 §7.3, Appendix B.5). */
  onPacketAcked(bytes: number, timeSent: number): void {
    const inFlightBefore = this.bytesInFlight;
    this.bytesInFlight = Math.max(0, this.bytesInFlight - bytes);
    if (this.inRecovery(timeSent)) return;
    // §7.8: do not grow a window that was not in use (less than half of it in flight, and the
    // pacer not the reason).
    if (inFlightBefore * 2 < this.cwnd && !this.pacingLimited) return;
    if (this.cwnd < this.ssthresh) this.cwnd += bytes;
    else this.cwnd += (this.#mds * bytes) / this.cwnd;
  }

  /** A packet in flight was declared lost or discarded: it leaves the flight, nothing else. */
  onPacketRemoved(bytes: number): void {
    this.bytesInFlight = Math.max(0, this.bytesInFlight - bytes);
  }

  /**
   * A congestion signal for a packet sent at `timeSent` (RFC 9002 §7.3.2, Appendix B.6): halve the
   * window and enter recovery, unless that packet was sent inside the current recovery period.
   */
  onCongestionEvent(timeSent: number, now: number): boolean {
    if (this.inRecovery(timeSent)) return false;
    this.recoveryStart = now;
    this.ssthresh = Math.max(this.cwnd * LOSS_REDUCTION_FACTOR, minimumWindow(this.#mds));
    this.cwnd = this.ssthresh;
    this.reductions++;
    return true;
  }

  /** RFC 9002 §7.6.2: persistent congestion collapses the window to the minimum. */
  onPersistentCongestion(): void {
    this.cwnd = minimumWindow(this.#mds);
    this.recoveryStart = undefined;
  }

  /** Back to the initial state (RFC 9000 §9.4). The caller empties the flight. */
  reset(): void {
    this.cwnd = initialWindow(this.#mds);
    this.ssthresh = Number.POSITIVE_INFINITY;
    this.recoveryStart = undefined;
    this.bytesInFlight = 0;
  }
}

/**
 * A token-bucket pacer (RFC 9002 §7.7): the rate is N × cwnd / smoothed RTT, N = 2 in slow start
 * and 1.25 after; the bucket holds one initial window, so a burst after idle is limited to what a
 * new connection may send. Sending may take the bucket below zero by one packet; the next packet
 * waits until it is refilled.
 */
/** Waits shorter than this are not worth a timer. */
const MIN_WAIT_MS = 0.05;

/** How late a host's timer may fire; the pacer's bucket holds at least this much of its rate. */
const TIMER_SLACK_MS = 2;

export class Pacer {
  #tokens: number;
  #last: number | undefined;
  #capacity: number;

  constructor(capacity: number) {
    this.#capacity = capacity;
    this.#tokens = capacity;
  }

  setCapacity(capacity: number): void {
    this.#capacity = capacity;
    if (this.#tokens > capacity) this.#tokens = capacity;
  }

  static rate(cwnd: number, srtt: number, slowStart: boolean): number {
    return ((slowStart ? 2 : 1.25) * cwnd) / Math.max(srtt, 1);
  }

  #refill(now: number, rate: number): void {
    if (this.#last !== undefined && now > this.#last) {
      // A host's timers fire a millisecond or more late (JavaScript's do): a bucket smaller
      // than what the rate earns in that time would cap the rate at one bucket per wake-up
      // (14 KB/ms: 14 MB/s with 1400-byte packets). So the bucket holds at least TIMER_SLACK_MS
      // of the rate.
      const cap = Math.max(this.#capacity, rate * TIMER_SLACK_MS);
      this.#tokens = Math.min(cap, this.#tokens + rate * (now - this.#last));
    }
    this.#last = now;
  }

  /** 0 if a packet may go at `now`, else how many ms to wait (never less than MIN_WAIT_MS). */
  delay(now: number, rate: number): number {
    this.#refill(now, rate);
    if (this.#tokens > 0) return 0;
    const wait = -this.#tokens / rate;
    // A wait below timer resolution is no wait (and `now + wait` might round back to `now`).
    return wait < MIN_WAIT_MS ? 0 : wait;
  }

  onSent(bytes: number): void {
    this.#tokens -= bytes;
  }

  reset(): void {
    this.#tokens = this.#capacity;
    this.#last = undefined;
  }
}
