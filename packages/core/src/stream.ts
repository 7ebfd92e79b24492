/**
 * The byte-level halves of a stream (RFC 9000 §2-4): a send buffer that remembers what was sent,
 * acknowledged and lost, and a receive buffer that reassembles out-of-order data.
 *
 * Send: written bytes are copied once into chunks (small writes share a chunk); what goes into a
 * packet is copied from them into the packet. A lost range goes back on a retransmission list and
 * is sent before new data; acknowledged ranges are recorded and the chunks below the lowest
 * unacknowledged byte are released. Nothing is ever sent twice unless it was lost (or probed).
 *
 * Receive: data at the delivery point is handed up as a view of the packet that carried it (no
 * copy); data beyond it is copied and kept, without overlaps, until the gap before it is filled.
 * How much may be kept is bounded by the flow-control window the caller enforces, and the number
 * of pieces by MAX_SEGMENTS.
 */
import { RangeSet } from './ack-ranges.ts';

/** Smallest chunk allocated for written data (small writes are packed into it). */
const CHUNK_BYTES = 16 * 1024;
/** Writes at least this large are adopted rather than copied, where the caller allows it. */
const ADOPT_MIN_BYTES = 8 * 1024;
/** Most out-of-order pieces kept per stream; a frame that would add more is refused. */
export const MAX_SEGMENTS = 8192;

/** What `SendBuffer.next` chose to send. */
export interface SendRange {
  offset: number;
  length: number;
  fin: boolean;
  /** Whether these bytes were sent before (a retransmission). */
  retransmit: boolean;
}

export class SendBuffer {
  readonly #chunks: Uint8Array[] = [];
  readonly #starts: number[] = [];
  #head = 0;
  /** Bytes of the last chunk in use (it may have spare capacity). */
  #tailUsed = 0;
  /** Bytes written so far (the offset the next write starts at). */
  writeOffset = 0;
  /** Everything below this offset is acknowledged and released. */
  ackedUpTo = 0;
  /** The first offset never sent. */
  sentHigh = 0;
  finWritten = false;
  finSent = false;
  finAcked = false;
  #finLost = false;
  #discarded = false;
  readonly #acked = new RangeSet();
  readonly #lost = new RangeSet();

  /** Bytes held: written and not yet acknowledged (sent or not). */
  get buffered(): number {
    return this.writeOffset - this.ackedUpTo;
  }

  /** Bytes written and never sent. */
  get unsent(): number {
    return this.writeOffset - this.sentHigh;
  }

  get hasRetransmit(): boolean {
    return !this.#lost.isEmpty || this.#finLost;
  }

  /** A FIN that has to go: never sent (after all data went), or lost. */
  get finDue(): boolean {
    return (
      this.#finLost || (this.finWritten && !this.finSent && this.sentHigh === this.writeOffset)
    );
  }

  /** Every byte and the FIN acknowledged. */
  get allAcked(): boolean {
    return this.finAcked && this.ackedUpTo === this.writeOffset;
  }

  get discarded(): boolean {
    return this.#discarded;
  }

  /**
   * Copies up to `max` bytes of `data` in; returns how many. With `adopt`, a large write is kept
   * by reference instead (no copy): the caller promises never to modify those bytes again.
   */
  write(data: Uint8Array, max: number, adopt = false): number {
    if (this.finWritten || this.#discarded) return 0;
    const n = Math.min(data.length, max);
    if (n <= 0) return 0;
    if (adopt && n >= ADOPT_MIN_BYTES) {
      const last = this.#chunks.length - 1;
      if (last >= this.#head && this.#tailUsed < this.#chunks[last]!.length) {
        this.#chunks[last] = this.#chunks[last]!.subarray(0, this.#tailUsed);
      }
      this.#chunks.push(n === data.length ? data : data.subarray(0, n));
      this.#starts.push(this.writeOffset);
      this.#tailUsed = n;
      this.writeOffset += n;
      return n;
    }
    let done = 0;
    const last = this.#chunks.length - 1;
    if (last >= this.#head) {
      const tail = this.#chunks[last]!;
      const room = tail.length - this.#tailUsed;
      if (room > 0) {
        const k = Math.min(room, n);
        tail.set(k === data.length ? data : data.subarray(0, k), this.#tailUsed);
        this.#tailUsed += k;
        done = k;
      }
    }
    if (done < n) {
      // Close the old tail at its used length, start a new one.
      if (last >= this.#head && this.#tailUsed < this.#chunks[last]!.length) {
        this.#chunks[last] = this.#chunks[last]!.subarray(0, this.#tailUsed);
      }
      const rest = n - done;
      const chunk = new Uint8Array(Math.max(rest, CHUNK_BYTES));
      chunk.set(data.subarray(done, n), 0);
      this.#chunks.push(chunk);
      this.#starts.push(this.writeOffset + done);
      this.#tailUsed = rest;
    }
    this.writeOffset += n;
    return n;
  }

  /** No more data: a FIN follows the last byte written. */
  end(): void {
    if (!this.#discarded) this.finWritten = true;
  }

  /**
   * Chooses what to send next: a lost range first, else new bytes (at most `credit` of them, the
   * flow-control credit left), else a lone FIN. At most `maxLength` bytes of data. Returns false if
   * there is nothing to send.
   */
  next(maxLength: number, credit: number, out: SendRange): boolean {
    if (this.#discarded) return false;
    if (!this.#lost.isEmpty && maxLength > 0) {
      const s = this.#lost.start(0);
      const e = this.#lost.end(0);
      const len = Math.min(e - s, maxLength);
      this.#lost.remove(s, s + len);
      out.offset = s;
      out.length = len;
      out.retransmit = true;
      out.fin = this.#takeFin(s + len);
      return true;
    }
    const unsent = this.writeOffset - this.sentHigh;
    if (unsent > 0 && credit > 0 && maxLength > 0) {
      const len = Math.min(unsent, maxLength, credit);
      out.offset = this.sentHigh;
      out.length = len;
      out.retransmit = false;
      this.sentHigh += len;
      out.fin = this.#takeFin(this.sentHigh);
      return true;
    }
    if (this.finDue) {
      out.offset = this.writeOffset;
      out.length = 0;
      out.retransmit = this.#finLost;
      out.fin = this.#takeFin(this.writeOffset);
      return true;
    }
    return false;
  }

  /** Whether a frame ending at `end` carries the FIN (and notes that it is sent). */
  #takeFin(end: number): boolean {
    if (!this.finWritten || end !== this.writeOffset || this.finAcked) return false;
    if (this.#finLost || (!this.finSent && this.sentHigh === this.writeOffset)) {
      this.#finLost = false;
      this.finSent = true;
      return true;
    }
    return false;
  }

  /** Copies `[offset, offset + length)` into `dst` at `at`. The range must be held. */
  copyOut(offset: number, length: number, dst: Uint8Array, at: number): void {
    if (length === 0) return;
    let lo = this.#head;
    let hi = this.#starts.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >>> 1;
      if (this.#starts[mid]! <= offset) lo = mid;
      else hi = mid - 1;
    }
    let i = lo;
    let off = offset;
    let left = length;
    while (left > 0) {
      const c = this.#chunks[i]!;
      const from = off - this.#starts[i]!;
      const k = Math.min(left, c.length - from);
      dst.set(from === 0 && k === c.length ? c : c.subarray(from, from + k), at);
      at += k;
      off += k;
      left -= k;
      i++;
    }
  }

  /** `[offset, offset + length)` (and the FIN if `fin`) was acknowledged. */
  onAck(offset: number, length: number, fin: boolean): void {
    if (this.#discarded) return;
    if (fin) {
      this.finAcked = true;
      this.#finLost = false;
    }
    const end = offset + length;
    if (end <= this.ackedUpTo) return;
    const start = Math.max(offset, this.ackedUpTo);
    this.#lost.remove(start, end);
    this.#acked.add(start, end);
    if (this.#acked.start(0) <= this.ackedUpTo) {
      this.ackedUpTo = this.#acked.end(0);
      this.#acked.shift();
      this.#release();
    }
  }

  /** `[offset, offset + length)` (and the FIN if `fin`) must be sent again, unless acknowledged. */
  onLost(offset: number, length: number, fin: boolean): void {
    if (this.#discarded) return;
    if (fin && !this.finAcked) this.#finLost = true;
    const start = Math.max(offset, this.ackedUpTo);
    const end = offset + length;
    if (end <= start) return;
    this.#acked.forEachGap(start, end, (s, e) => this.#lost.add(s, e));
  }

  /** Drops everything (the stream was reset): no more sending, memory released. */
  discard(): void {
    this.#discarded = true;
    this.#chunks.length = 0;
    this.#starts.length = 0;
    this.#head = 0;
    this.#tailUsed = 0;
    this.#lost.clear();
    this.#acked.clear();
    this.#finLost = false;
  }

  #release(): void {
    const n = this.#chunks.length;
    while (this.#head < n - 1 && this.#starts[this.#head + 1]! <= this.ackedUpTo) {
      this.#chunks[this.#head] = EMPTY;
      this.#head++;
    }
    // The last chunk goes too once all of it is acknowledged and nothing more fits in it.
    if (
      this.#head === n - 1 &&
      this.ackedUpTo === this.writeOffset &&
      this.#tailUsed === this.#chunks[n - 1]!.length
    ) {
      this.#chunks[this.#head] = EMPTY;
      this.#head++;
    }
    if (this.#head > 32 && this.#head * 2 > this.#chunks.length) {
      this.#chunks.splice(0, this.#head);
      this.#starts.splice(0, this.#head);
      this.#head = 0;
    }
  }
}

const EMPTY = new Uint8Array(0);

interface Segment {
  offset: number;
  data: Uint8Array;
}

export type RecvCheck = 'final_size' | 'flow_control' | 'reassembly_limit' | undefined;

export class RecvBuffer {
  /** Next offset to hand up. */
  delivered = 0;
  /** Bytes the application has taken away (≤ delivered). */
  consumed = 0;
  /** Highest offset + 1 received (or implied by a final size). */
  highest = 0;
  finalSize: number | undefined;
  #segs: Segment[] = [];
  #buffered = 0;

  /** Out-of-order pieces held. */
  get segments(): number {
    return this.#segs.length;
  }

  /** Out-of-order bytes held. */
  get bufferedBytes(): number {
    return this.#buffered;
  }

  /** All data up to the final size handed up. */
  get complete(): boolean {
    return this.finalSize !== undefined && this.delivered === this.finalSize;
  }

  /**
   * Checks a frame against the final size (RFC 9000 §4.5), the window `max` and the reassembly
   * bound, without changing anything. `highest` is the caller's view of the highest offset (it
   * may include earlier frames of the same packet).
   */
  check(offset: number, length: number, fin: boolean, max: number, highest: number): RecvCheck {
    const end = offset + length;
    if (this.finalSize !== undefined) {
      if (end > this.finalSize || (fin && end !== this.finalSize)) return 'final_size';
    } else if (fin && end < highest) return 'final_size';
    if (end > max) return 'flow_control';
    if (offset > this.delivered && length > 0 && this.#segs.length >= MAX_SEGMENTS) {
      return 'reassembly_limit';
    }
    return undefined;
  }

  /** Records the end of a frame (or a final size) without keeping data; returns the growth of `highest`. */
  note(end: number, fin: boolean): number {
    if (fin) this.finalSize = end;
    if (end <= this.highest) return 0;
    const grown = end - this.highest;
    this.highest = end;
    return grown;
  }

  /**
   * Takes a frame's data. If `deliver` is given, in-order data (and any held data it makes
   * contiguous) is handed to it; otherwise everything new is held. Returns the growth of `highest`.
   */
  insert(
    offset: number,
    data: Uint8Array,
    fin: boolean,
    deliver: ((v: Uint8Array) => void) | undefined,
  ): number {
    const end = offset + data.length;
    const grown = this.note(end, fin);
    if (end <= this.delivered) return grown;
    if (deliver && offset <= this.delivered) {
      deliver(offset === this.delivered ? data : data.subarray(this.delivered - offset));
      this.delivered = end;
      this.drain(deliver);
    } else {
      this.#store(offset, data);
    }
    return grown;
  }

  /** Hands up held data that has become contiguous. */
  drain(deliver: (v: Uint8Array) => void): void {
    const segs = this.#segs;
    let k = 0;
    while (k < segs.length && segs[k]!.offset <= this.delivered) {
      const seg = segs[k]!;
      const segEnd = seg.offset + seg.data.length;
      this.#buffered -= seg.data.length;
      if (segEnd > this.delivered) {
        deliver(seg.data.subarray(this.delivered - seg.offset));
        this.delivered = segEnd;
      }
      k++;
    }
    if (k > 0) segs.splice(0, k);
  }

  /** Keeps copies of the parts of the frame not already held. */
  #store(offset: number, data: Uint8Array): void {
    const segs = this.#segs;
    const end = offset + data.length;
    let a = Math.max(offset, this.delivered);
    // First piece ending after a.
    let lo = 0;
    let hi = segs.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      const s = segs[mid]!;
      if (s.offset + s.data.length <= a) lo = mid + 1;
      else hi = mid;
    }
    let i = lo;
    while (a < end) {
      const s = segs[i];
      if (s === undefined || s.offset >= end) {
        segs.splice(i, 0, { offset: a, data: data.slice(a - offset, end - offset) });
        this.#buffered += end - a;
        return;
      }
      if (s.offset > a) {
        segs.splice(i, 0, { offset: a, data: data.slice(a - offset, s.offset - offset) });
        this.#buffered += s.offset - a;
        i++;
      }
      a = Math.max(a, s.offset + s.data.length);
      i++;
    }
  }

  /** Drops held data (the stream was reset or is being discarded). */
  discard(): void {
    this.#segs = [];
    this.#buffered = 0;
  }
}
