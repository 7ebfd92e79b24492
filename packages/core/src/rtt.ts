/**
 * Round-trip time estimation, RFC 9002 §5: the minimum, a smoothed RTT and its mean deviation,
 * from samples taken when the largest acknowledged packet is newly acknowledged and was
 * ack-eliciting. Times are in milliseconds (fractions allowed).
 */

/** RFC 9002 §6.2.2: the RTT assumed before any sample. */
export const INITIAL_RTT_MS = 333;
/** RFC 9002 §6.1.2: timer granularity. */
export const GRANULARITY_MS = 1;

export class RttEstimator {
  /** The most recent sample (ack delay not subtracted). */
  latest = 0;
  /** Smallest sample seen (RFC 9002 §5.2); 0 before the first. */
  min = 0;
  smoothed = INITIAL_RTT_MS;
  rttvar = INITIAL_RTT_MS / 2;
  /** Whether a sample has been taken since construction or the last `reset`. */
  hasSample = false;
  /** When the first sample was taken (persistent congestion needs it, RFC 9002 §7.6.2). */
  firstSampleAt: number | undefined;

  /**
   * Takes one sample (RFC 9002 §5.3). `ackDelay` is the peer's reported delay, already limited to
   * its max_ack_delay by the caller; it is subtracted only when that leaves the sample at or above
   * the minimum, so a wrong delay can never make the RTT smaller than the path allows.
   */
  update(latestRtt: number, ackDelay: number, now: number): void {
    if (!(latestRtt >= 0)) return;
    this.latest = latestRtt;
    if (!this.hasSample) {
      this.hasSample = true;
      this.firstSampleAt = now;
      this.min = latestRtt;
      this.smoothed = latestRtt;
      this.rttvar = latestRtt / 2;
      return;
    }
    if (latestRtt < this.min) this.min = latestRtt;
    let adjusted = latestRtt;
    if (latestRtt >= this.min + ackDelay) adjusted = latestRtt - ackDelay;
    this.rttvar = 0.75 * this.rttvar + 0.25 * Math.abs(this.smoothed - adjusted);
    this.smoothed = 0.875 * this.smoothed + 0.125 * adjusted;
  }

  /** RFC 9002 §6.2.1: the probe timeout period before backoff. */
  pto(maxAckDelay: number): number {
    return this.smoothed + Math.max(4 * this.rttvar, GRANULARITY_MS) + maxAckDelay;
  }

  /** RFC 9002 §6.1.2: how long after a later packet was acknowledged an earlier one counts lost. */
  lossDelay(): number {
    return Math.max((9 / 8) * Math.max(this.latest, this.smoothed), GRANULARITY_MS);
  }

  /** Back to the initial state (RFC 9000 §9.4: a new path gets a new estimate). */
  reset(): void {
    this.latest = 0;
    this.min = 0;
    this.smoothed = INITIAL_RTT_MS;
    this.rttvar = INITIAL_RTT_MS / 2;
    this.hasSample = false;
    this.firstSampleAt = undefined;
  }
}
