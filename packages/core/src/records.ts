/**
 * Length-prefixed records (RFC 8229 §3): the framing of the TCP encapsulation and of every HTTP
 * body. A 16-bit big-endian Length that counts itself, then Length - 2 bytes of one roamlink
 * datagram. A Length of 2 (an empty record) carries nothing: a heartbeat, and the HTTP
 * down-stream's stream-open marker. A Length below 2 is a framing error. Runtime-neutral: the
 * Node adapters and the simulator share this code, so their bytes on the wire are the same.
 */

/** "RLNK/1": the 6 bytes that open a roamlink TCP stream (in the role of RFC 8229's "IKETCP"). */
export const TCP_PREFACE: Uint8Array = new Uint8Array([0x52, 0x4c, 0x4e, 0x4b, 0x2f, 0x31]);
export const RECORD_HEADER_BYTES = 2;
/** The longest datagram one record holds: 0xffff minus the Length field itself. */
export const MAX_RECORD_DATAGRAM_BYTES = 0xffff - RECORD_HEADER_BYTES;
/** The empty record: heartbeat, and stream-open marker of the HTTP down-stream. */
export const EMPTY_RECORD: Uint8Array = new Uint8Array([0, RECORD_HEADER_BYTES]);

/** One record around `datagram`. */
export function encodeRecord(datagram: Uint8Array): Uint8Array {
  if (datagram.length > MAX_RECORD_DATAGRAM_BYTES) {
    throw new RangeError('datagram too long for a record');
  }
  const len = datagram.length + RECORD_HEADER_BYTES;
  const out = new Uint8Array(len);
  out[0] = len >>> 8;
  out[1] = len & 255;
  out.set(datagram, RECORD_HEADER_BYTES);
  return out;
}

/** Several records back to back, in one buffer (one POST body, one poll answer). */
export function encodeRecords(datagrams: readonly Uint8Array[]): Uint8Array {
  let n = 0;
  for (const d of datagrams) {
    if (d.length > MAX_RECORD_DATAGRAM_BYTES)
      throw new RangeError('datagram too long for a record');
    n += d.length + RECORD_HEADER_BYTES;
  }
  const out = new Uint8Array(n);
  writeRecords(out, 0, datagrams, 0, datagrams.length);
  return out;
}

/** Writes the records of `datagrams[from, to)` into `out` at `o`; returns the offset after them. */
function writeRecords(
  out: Uint8Array,
  o: number,
  datagrams: readonly Uint8Array[],
  from: number,
  to: number,
): number {
  for (let i = from; i < to; i++) {
    const d = datagrams[i]!;
    const len = d.length + RECORD_HEADER_BYTES;
    out[o] = len >>> 8;
    out[o + 1] = len & 255;
    out.set(d, o + RECORD_HEADER_BYTES);
    o += len;
  }
  return o;
}

/** Datagrams from this size on are not copied by `recordPieces`. */
export const RECORD_COPY_BELOW_BYTES = 512;

/**
 * The records of `datagrams` as pieces to write in order (a gathered write): a datagram of
 * RECORD_COPY_BELOW_BYTES or more is a piece of its own, not copied, with its Length at the end of
 * the piece before it; smaller ones are copied together with the Lengths around them. Their
 * concatenation is `encodeRecords(datagrams)`.
 */
export function recordPieces(datagrams: readonly Uint8Array[]): Uint8Array[] {
  const pieces: Uint8Array[] = [];
  let from = 0;
  let small = 0;
  const copyRun = (to: number, lengthOf: Uint8Array | undefined): void => {
    const out = new Uint8Array(small + (lengthOf ? RECORD_HEADER_BYTES : 0));
    const o = writeRecords(out, 0, datagrams, from, to);
    if (lengthOf) {
      const len = lengthOf.length + RECORD_HEADER_BYTES;
      out[o] = len >>> 8;
      out[o + 1] = len & 255;
    }
    pieces.push(out);
  };
  for (let i = 0; i < datagrams.length; i++) {
    const d = datagrams[i]!;
    if (d.length > MAX_RECORD_DATAGRAM_BYTES)
      throw new RangeError('datagram too long for a record');
    if (d.length < RECORD_COPY_BELOW_BYTES) {
      small += d.length + RECORD_HEADER_BYTES;
      continue;
    }
    copyRun(i, d);
    pieces.push(d);
    from = i + 1;
    small = 0;
  }
  if (from < datagrams.length) copyRun(datagrams.length, undefined);
  return pieces;
}

/**
 * Streaming record parser: feed it the bytes as TCP delivers them, in chunks of any size; it calls
 * `onRecord` once per whole record (empty ones included), in order. A Length below 2 is a framing
 * error, after which it stays failed.
 *
 * No byte is copied twice: a record split across chunks is gathered once into a buffer of its own
 * size. A record that lies whole inside a chunk is copied out of it, unless `zeroCopy` is set:
 * then it is handed up as a view of the chunk. The core decrypts in place, so zeroCopy is only for
 * producers that never look at a chunk again (Node's socket reads and HTTP bodies), not for the
 * simulator, whose TCP model keeps what it sent for retransmission. With zeroCopy, records
 * shorter than `copyBelow` are still copied, so that a small record kept for long (data a slow
 * reader has not taken yet) never holds a large read buffer alive.
 */
export class RecordReader {
  onRecord: (datagram: Uint8Array) => void = () => {};
  readonly #zeroCopy: boolean;
  readonly #copyBelow: number;
  /** The first byte of a Length split across two chunks. */
  #headerByte = -1;
  /** A record being gathered across chunks, and how much of it has arrived. */
  #partial: Uint8Array | undefined;
  #filled = 0;
  #failed = false;

  constructor(o: { zeroCopy?: boolean; copyBelow?: number } = {}) {
    this.#zeroCopy = o.zeroCopy ?? false;
    this.#copyBelow = o.copyBelow ?? 0;
  }

  get failed(): boolean {
    return this.#failed;
  }

  /** Whether the stream may end here (no partial record). */
  get atBoundary(): boolean {
    return this.#partial === undefined && this.#headerByte < 0;
  }

  /** Returns false on a framing error. */
  push(bytes: Uint8Array): boolean {
    if (this.#failed) return false;
    let o = 0;
    const n = bytes.length;
    while (o < n) {
      const partial = this.#partial;
      if (partial) {
        const take = Math.min(partial.length - this.#filled, n - o);
        partial.set(bytes.subarray(o, o + take), this.#filled);
        this.#filled += take;
        o += take;
        if (this.#filled < partial.length) return true;
        this.#partial = undefined;
        this.onRecord(partial);
        if (this.#failed) return false;
        continue;
      }
      let len: number;
      if (this.#headerByte >= 0) {
        len = (this.#headerByte << 8) | bytes[o]!;
        this.#headerByte = -1;
        o += 1;
      } else if (n - o === 1) {
        this.#headerByte = bytes[o]!;
        return true;
      } else {
        len = (bytes[o]! << 8) | bytes[o + 1]!;
        o += RECORD_HEADER_BYTES;
      }
      if (len < RECORD_HEADER_BYTES) {
        this.#failed = true;
        return false;
      }
      const body = len - RECORD_HEADER_BYTES;
      if (n - o >= body) {
        // A plain Uint8Array view (not a Buffer's subarray) or a copy.
        const d =
          this.#zeroCopy && body >= this.#copyBelow
            ? new Uint8Array(bytes.buffer, bytes.byteOffset + o, body)
            : new Uint8Array(bytes.subarray(o, o + body));
        o += body;
        this.onRecord(d);
        if (this.#failed) return false;
      } else {
        this.#partial = new Uint8Array(body);
        this.#filled = 0;
      }
    }
    return true;
  }
}

/** Decodes a whole body of records; undefined on a framing error or a truncated record. */
export function decodeRecords(body: Uint8Array): Uint8Array[] | undefined {
  const out: Uint8Array[] = [];
  const r = new RecordReader();
  r.onRecord = (d) => out.push(d);
  if (!r.push(body) || !r.atBoundary) return undefined;
  return out;
}
