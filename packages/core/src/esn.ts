/**
 * Extended Sequence Number inference (RFC 4303 §2.2.1, Appendix A2.2).
 *
 * With ESN only the low 32 bits (Seql) of the 64-bit sequence number travel in the ESP header; the
 * receiver infers the high 32 bits (Seqh) from T, the highest number authenticated so far, and the
 * window size W. The window is B .. T with B = T - W + 1 (Appendix A2.1), and with Tl, Th the low
 * and high halves of T and Bl = (Tl - W + 1) mod 2^32:
 *
 * - Case A, Tl >= W - 1 (the window lies in one subspace):
 *   Seql >= Bl gives Seqh = Th; Seql < Bl gives Seqh = Th + 1.
 * - Case B, Tl < W - 1 (the window straddles the boundary into subspace Th):
 *   Seql >= Bl gives Seqh = Th - 1; Seql < Bl gives Seqh = Th.
 *
 * So every Seq in `T - W + 1 .. T - W + 2^32` is recovered exactly, which covers the window and
 * the next 2^31 numbers above T as long as W <= 2^31 (Appendix A2 assumes that bound). The guess
 * is only a guess: the caller authenticates with it, and only an authenticated packet may move
 * the window. Resynchronising after 2^32 consecutive losses (Appendix A3) is not attempted: an SA
 * rekeys long before that.
 *
 * Values are JS numbers, capped like the replay window at 2^53 - 1 (see replay.ts).
 */
import { ErrorCode, RoamlinkError } from './errors.ts';

const SUBSPACE = 0x1_0000_0000; // 2^32
const MAX_WINDOW = 0x8000_0000; // 2^31, RFC 4303 Appendix A2

/**
 * RFC 4303 Appendix A2.2: infer the full 64-bit sequence number from its low 32 bits.
 *
 * `top` is the replay window's highest accepted number (0 if none) and `windowSize` its width.
 * Returns the full sequence number, or -1 if it cannot be valid: it would fall below 1 (e.g. in
 * subspace -1 while `top` is still in subspace 0) or reach 2^53, or `low32` is not a 32-bit
 * unsigned integer. Packet-derived input never throws; a `top` or `windowSize` out of range is a
 * caller bug and throws INVALID_ARGUMENT.
 */
export function inferSequence(low32: number, top: number, windowSize: number): number {
  if (!Number.isSafeInteger(top) || top < 0) {
    throw new RoamlinkError(ErrorCode.INVALID_ARGUMENT, `inferSequence: bad top ${top}`);
  }
  if (!Number.isInteger(windowSize) || windowSize < 1 || windowSize > MAX_WINDOW) {
    throw new RoamlinkError(
      ErrorCode.INVALID_ARGUMENT,
      `inferSequence: windowSize must be in 1..2^31, got ${windowSize}`,
    );
  }
  if (!Number.isInteger(low32) || low32 < 0 || low32 >= SUBSPACE) return -1;

  // ToUint32 reduces modulo 2^32 exactly for any safe integer, so this splits T without loss.
  const tl = top >>> 0;
  const th = (top - tl) / SUBSPACE;
  const bl = (tl - windowSize + 1) >>> 0; // Bl = Tl - W + 1, modulo 2^32 in case B
  let seqh: number;
  if (tl >= windowSize - 1) {
    seqh = low32 >= bl ? th : th + 1; // Case A
  } else {
    seqh = low32 >= bl ? th - 1 : th; // Case B
  }
  const seq = seqh * SUBSPACE + low32;
  // seqh = -1 gives a negative seq; seqh = 2^21 gives seq >= 2^53 (rounding cannot bring a
  // product of that size back below 2^53).
  return seq >= 1 && seq <= Number.MAX_SAFE_INTEGER ? seq : -1;
}
