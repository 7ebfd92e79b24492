/**
 * The search for a NAT's UDP binding timeout, as a pure state machine (docs/PROTOCOL.md §7.1;
 * RFC 5780 §4.6). No I/O and no clock: the session sends the BINDING_TEST frames (§6.10), times
 * them and reports each outcome here; this module only keeps the bounds and says what to test next.
 *
 * An answered test at delay d proves the binding survived d idle (a lower bound); an unanswered one
 * that it did not, or that the ack was lost, which errs on the safe side (an upper bound). The
 * delay starts conservatively, grows by half while answered, shrinks by a third while only an upper
 * bound is known, and is then bisected until upper ≤ 1.15 × lower.
 *
 * The NAT keepalive interval (RFC 3948 §2.3) follows from the bounds: the start until a delay has
 * been answered, then 0.8 × the lower bound, never above 0.8 × the upper bound, never below the
 * floor. RFC 4787 REQ-6 (outbound packets refresh a binding) is what keepalives rely on; REQ-5 asks
 * NATs for at least 2 minutes idle, which many do not give, hence learning instead of assuming.
 */

/** What is known of the NAT binding timeout: answered delays bound it below, silences above. */
export interface BindingTimeout {
  /** Longest test delay answered (the binding survived this idle time), ms. */
  lowerMs: number | undefined;
  /** Shortest test delay not answered (the binding did not survive it), ms. */
  upperMs: number | undefined;
  /** The search is over: the bracket is within ±15 %, or nothing more can be learned. */
  done: boolean;
}

export interface BindingSearchOptions {
  /** First delay tested, and the keepalive interval until a delay has been answered (ms). */
  startMs: number;
  /** Keepalive floor: no interval below it, and no test below it (nothing would change), ms. */
  floorMs: number;
  /** Longest delay a test asks for (ms). */
  maxMs: number;
}

/** Factor between the known-good idle time and the keepalive interval: a 20 % margin. */
export const KEEPALIVE_MARGIN = 0.8;
/** The search stops when upper ≤ lower × (1 + this): the lower bound is within 15 %. */
export const BINDING_BRACKET = 0.15;
/** While every test is answered, the next one waits this much longer. */
export const BINDING_GROWTH = 1.5;

export class BindingSearch implements BindingTimeout {
  lowerMs: number | undefined = undefined;
  upperMs: number | undefined = undefined;
  done = false;
  readonly #o: BindingSearchOptions;

  constructor(o: BindingSearchOptions) {
    this.#o = o;
  }

  /**
   * The next delay to test, or undefined when the search is over (which also marks it done):
   * first the start; while answered, ×1.5 up to the cap; with only an upper bound, /1.5 down to
   * the floor; with both, the midpoint until upper ≤ lower × 1.15.
   */
  next(): number | undefined {
    const d = this.#nextDelay();
    if (d === undefined) this.done = true;
    return d;
  }

  /** The binding survived `delayMs` idle: a lower bound (an upper bound below it is dropped). */
  answered(delayMs: number): void {
    this.lowerMs = Math.max(this.lowerMs ?? 0, delayMs);
    if (this.upperMs !== undefined && this.upperMs <= this.lowerMs) this.upperMs = undefined;
  }

  /** No answer after `delayMs` idle: an upper bound (a lower bound above it is dropped). */
  unanswered(delayMs: number): void {
    this.upperMs = Math.min(this.upperMs ?? Number.POSITIVE_INFINITY, delayMs);
    if (this.lowerMs !== undefined && this.lowerMs >= this.upperMs) this.lowerMs = undefined;
  }

  /** The NAT keepalive interval the bounds allow (ms). */
  keepaliveMs(): number {
    const { lowerMs: lo, upperMs: hi } = this;
    let v = lo === undefined ? this.#o.startMs : KEEPALIVE_MARGIN * lo;
    if (hi !== undefined) v = Math.min(v, KEEPALIVE_MARGIN * hi);
    return Math.round(Math.max(this.#o.floorMs, v));
  }

  /** A plain copy of the bounds. */
  snapshot(): BindingTimeout {
    return { lowerMs: this.lowerMs, upperMs: this.upperMs, done: this.done };
  }

  #nextDelay(): number | undefined {
    const { lowerMs: lo, upperMs: hi } = this;
    const { startMs, floorMs, maxMs } = this.#o;
    if (lo === undefined && hi === undefined) return Math.min(startMs, maxMs);
    if (hi === undefined)
      return lo! >= maxMs ? undefined : Math.round(Math.min(maxMs, lo! * BINDING_GROWTH));
    if (lo === undefined)
      return hi <= floorMs ? undefined : Math.round(Math.max(floorMs, hi / BINDING_GROWTH));
    if (hi <= lo * (1 + BINDING_BRACKET)) return undefined;
    return Math.round((lo + hi) / 2);
  }
}
