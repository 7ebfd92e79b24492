/**
 * Packet buffers without zero-filling, as plain Uint8Arrays (a Buffer's `slice` would not copy).
 * For builders that write every byte they send, such as the stream layer's packets (`Mux` option
 * `alloc`): zeroing a 60 000-byte packet cost ~7 µs, about 6% of what the relay spends per
 * packet. Small ones (a 1,400-byte UDP packet) come from Node's shared pool, slices of one 8 KiB
 * buffer handed out once each: a fresh ArrayBuffer per packet cost ~5% of the relay's CPU at
 * 1,400-byte packets.
 */
export function allocUninitialized(bytes: number): Uint8Array {
  const b = bytes < POOLED_BELOW ? Buffer.allocUnsafe(bytes) : Buffer.allocUnsafeSlow(bytes);
  return new Uint8Array(b.buffer, b.byteOffset, bytes);
}

/** Node serves `allocUnsafe` from its pool below half the pool's size (4 KiB by default). */
const POOLED_BELOW = Buffer.poolSize >>> 1;
