/**
 * Bytes a packet's builder left out of the packet: each piece is `from`, to go at `at` in the
 * payload. The stream layer builds a packet's frames in place but need not copy its stream data
 * in: the cipher can read that data where it lies (the send buffer's chunks, often the very
 * socket reads) and write the ciphertext into the packet, one copy instead of two. A backend that
 * cannot read from pieces has them copied in first (`applyTo`), which is the copy saved elsewhere.
 *
 * The pieces are views of memory that is never written again (send-buffer chunks hold bytes at
 * fixed places; adopted socket reads are never reused), so they stay valid until the packet is
 * sealed, even if it waits. One instance is reused packet after packet: it describes the last
 * packet built until it is cleared.
 */
export class DeferredCopies {
  /** Where each piece goes, counted from the payload's first byte; ascending, not overlapping. */
  readonly at: number[] = [];
  readonly from: Uint8Array[] = [];

  get count(): number {
    return this.at.length;
  }

  /** Bytes of all pieces together. */
  get bytes(): number {
    let n = 0;
    for (const f of this.from) n += f.length;
    return n;
  }

  add(at: number, from: Uint8Array): void {
    this.at.push(at);
    this.from.push(from);
  }

  /** Forgets every piece (and so the memory they hold). */
  clear(): void {
    this.at.length = 0;
    this.from.length = 0;
  }

  /** Copies every piece into `payload` (whose offset 0 the positions count from), then clears. */
  applyTo(payload: Uint8Array): void {
    for (let i = 0; i < this.at.length; i++) payload.set(this.from[i]!, this.at[i]!);
    this.clear();
  }
}
