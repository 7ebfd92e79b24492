/**
 * TAI64N timestamps (12 bytes: 8-byte TAI64 label, 4-byte nanoseconds, big-endian), as WireGuard
 * carries in its first handshake message so that a responder can refuse a replayed one: a
 * message is fresh only if its timestamp is greater than the last one accepted from that peer.
 *
 * The label is 2^62 + 10 + Unix seconds (the TAI64 convention: TAI was 10 s ahead of UTC in 1972;
 * leap seconds since then are ignored, as every implementation we know of does, because only the
 * order of timestamps matters here).
 */
export const TAI64N_BYTES = 12;

/** Encodes wall-clock milliseconds since the Unix epoch. `extraNanos` breaks ties (< 1e6). */
export function tai64n(unixMs: number, extraNanos = 0): Uint8Array {
  const out = new Uint8Array(TAI64N_BYTES);
  const secs = Math.floor(unixMs / 1000) + 10;
  const nanos = Math.floor((unixMs - Math.floor(unixMs / 1000) * 1000) * 1e6) + extraNanos;
  const hi = 0x4000_0000 + Math.floor(secs / 0x1_0000_0000);
  const lo = secs >>> 0;
  const dv = new DataView(out.buffer);
  dv.setUint32(0, hi);
  dv.setUint32(4, lo);
  dv.setUint32(8, nanos);
  return out;
}

/** Compares two timestamps: negative, zero or positive, as `a` is before, equal to or after `b`. */
export function compareTai64n(a: Uint8Array, b: Uint8Array): number {
  for (let i = 0; i < TAI64N_BYTES; i++) {
    const d = (a[i] ?? 0) - (b[i] ?? 0);
    if (d !== 0) return d;
  }
  return 0;
}

/** Returns a timestamp strictly after `previous` (if given) and not before `unixMs`. */
export function nextTai64n(unixMs: number, previous?: Uint8Array): Uint8Array {
  const t = tai64n(unixMs);
  if (previous === undefined || compareTai64n(t, previous) > 0) return t;
  // Same millisecond (or a clock step back): one nanosecond after the previous stamp.
  const out = previous.slice();
  for (let i = TAI64N_BYTES - 1; i >= 0; i--) {
    out[i] = (out[i]! + 1) & 0xff;
    if (out[i] !== 0) break;
  }
  return out;
}
