/**
 * Receiver-side anti-replay window (RFC 4303 §3.4.3; ESN variant in Appendix A2.1), built as the
 * bitmap ring of RFC 6479 §2.
 *
 * Semantics, exactly:
 * - Sequence numbers start at 1 (RFC 4303 §3.3.3: the first packet sent carries 1). `top` is the
 *   highest sequence number accepted so far, 0 before any.
 * - The window is the `size` numbers `top - size + 1 .. top` (RFC 4303 Appendix A2.1:
 *   B = T - W + 1). A sequence number is accepted iff it is valid, has not been accepted before,
 *   and is either above `top` (which slides the window so that it becomes the new `top`) or inside
 *   the window. `top - size` and everything below it is too old and rejected.
 * - Valid means an integer in `1 .. 2^53 - 1`. 64-bit ESN values are capped there: the SA rekeys
 *   long before 2^53 packets, and a larger, fractional, zero or negative value is simply rejected
 *   (`false`), never thrown on, because it comes from the wire.
 *
 * Inbound order (RFC 4303 §3.4.3): `check` before the ICV is verified — it only reads, so a forged
 * packet cannot move the window — then `update` after authentication succeeded. `update` checks
 * again, so two packets carrying the same number that both passed `check` cannot both be accepted.
 *
 * Layout (RFC 6479 §2): bit `seq mod 32` of word `floor(seq / 32) mod words` records `seq`, with
 * `words = size / 32 + 1`. The extra word means the window never shares a word with numbers that
 * are about to be recycled, so sliding forward only zeroes whole words (at most `words` of them,
 * however far the jump) and never masks bits. Per packet: O(1), no allocation.
 */
import { ErrorCode, RoamlinkError } from './errors.ts';

/** Window width in packets. Far above RFC 4303's minimum of 32 (§3.4.3), for fast links. */
export const DEFAULT_REPLAY_WINDOW = 8192;

/**
 * Largest accepted window (one Mi packets, 128 KiB of bitmap). RFC 4303 Appendix A2 assumes
 * W <= 2^31 for ESN inference; this much lower bound also keeps a misconfigured size from
 * allocating without limit.
 */
export const MAX_REPLAY_WINDOW = 1 << 20;

const WORD_BITS = 32;

export class ReplayWindow {
  /** Width of the window in packets: a multiple of 32, at least 32. */
  readonly size: number;
  readonly #ring: Uint32Array;
  /** Number of words in the ring: `size / 32 + 1`. */
  readonly #words: number;
  #top = 0;

  constructor(size: number = DEFAULT_REPLAY_WINDOW) {
    if (
      !Number.isInteger(size) ||
      size < WORD_BITS ||
      size > MAX_REPLAY_WINDOW ||
      size % WORD_BITS !== 0
    ) {
      throw new RoamlinkError(
        ErrorCode.INVALID_ARGUMENT,
        `ReplayWindow: size must be a multiple of ${WORD_BITS} in ${WORD_BITS}..${MAX_REPLAY_WINDOW}, got ${size}`,
      );
    }
    this.size = size;
    this.#words = size / WORD_BITS + 1;
    this.#ring = new Uint32Array(this.#words);
  }

  /** Highest sequence number accepted so far; 0 if none yet. */
  get top(): number {
    return this.#top;
  }

  /** Would `seq` be accepted now? Reads only; call it before verifying the ICV. */
  check(seq: number): boolean {
    // isSafeInteger also rejects NaN, ±Infinity, fractions and anything >= 2^53.
    if (!Number.isSafeInteger(seq) || seq < 1) return false;
    const top = this.#top;
    if (seq > top) return true;
    if (top - seq >= this.size) return false;
    // `seq & 31` is exact for every safe integer: ToInt32 reduces modulo 2^32.
    return (this.#ring[Math.floor(seq / WORD_BITS) % this.#words]! & (1 << (seq & 31))) === 0;
  }

  /**
   * Record `seq` as received; call only after the packet authenticated. Returns false, changing
   * nothing, if `seq` is invalid, already seen or below the window.
   */
  update(seq: number): boolean {
    if (!Number.isSafeInteger(seq) || seq < 1) return false;
    const ring = this.#ring;
    const words = this.#words;
    const top = this.#top;
    const word = Math.floor(seq / WORD_BITS);
    if (seq > top) {
      // Slide forward: zero the words between the old top's word and seq's word, which now
      // stand for numbers that were below the window (RFC 6479 §2). A jump of a full ring or
      // more clears everything, so the work is bounded by `words` whatever the jump.
      let advance = word - Math.floor(top / WORD_BITS);
      if (advance >= words) {
        ring.fill(0);
      } else {
        let i = Math.floor(top / WORD_BITS) % words;
        while (advance-- > 0) {
          i = i + 1 === words ? 0 : i + 1;
          ring[i] = 0;
        }
      }
      this.#top = seq;
    } else if (top - seq >= this.size) {
      return false;
    }
    const i = word % words;
    const bit = 1 << (seq & 31);
    const old = ring[i]!;
    if ((old & bit) !== 0) return false;
    ring[i] = old | bit;
    return true;
  }

  /** Forget everything, as for a fresh SA. */
  reset(): void {
    this.#ring.fill(0);
    this.#top = 0;
  }
}
