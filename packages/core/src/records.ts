/**
 * Length-prefixed records (RFC 8229 §3): the framing of the TCP encapsulation and of every HTTP
 * body. A 16-bit big-endian Length that counts itself, then Length - 2 bytes of one roamlink
 * datagram. A Length of 2 (an empty record) carries nothing: a heartbeat, and the HTTP
 * down-stream's stream-open marker. A Length below 2 is a framing error. Runtime-neutral: the
 * Node adapters and the simulator share this code, so their bytes on the wire are the same.
 *
 * Extended records (packages/sim/README.md, "Records") carry a datagram longer than a 16-bit
 * Length holds, on a TCP path whose receiver announced a MAX_DATAGRAM above 65 535
 * (docs/PROTOCOL.md §6.4), and only there: a Length of 0, which RFC 8229 never uses, then a 32-bit
 * big-endian length of the datagram alone, which must be above MAX_RECORD_DATAGRAM_BYTES (one
 * encoding per datagram). A reader that was not told to take them treats Length 0 as the framing
 * error it always was.
 */

/** "RLNK/1": the 6 bytes that open a roamlink TCP stream (in the role of RFC 8229's "IKETCP"). */
export const TCP_PREFACE: Uint8Array = new Uint8Array([0x52, 0x4c, 0x4e, 0x4b, 0x2f, 0x31]);
export const RECORD_HEADER_BYTES = 2;
/** The longest datagram one record holds: 0xffff minus the Length field itself. */
export const MAX_RECORD_DATAGRAM_BYTES = 0xffff - RECORD_HEADER_BYTES;
/** An extended record's header: Length 0, then the datagram's length as a u32. */
export const EXTENDED_RECORD_HEADER_BYTES = 6;

/** The header of the record around a datagram of `length` bytes: 2 bytes, or 6 if extended. */
export function recordHeader(length: number): Uint8Array {
  if (length <= MAX_RECORD_DATAGRAM_BYTES) {
    const len = length + RECORD_HEADER_BYTES;
    return new Uint8Array([len >>> 8, len & 255]);
  }
  if (length > 0xffffffff) throw new RangeError('datagram too long for an extended record');
  return new Uint8Array([
    0,
    0,
    length >>> 24,
    (length >>> 16) & 255,
    (length >>> 8) & 255,
    length & 255,
  ]);
}

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
 * error, after which it stays failed; so is Length 0, unless `maxDatagram` is above
 * MAX_RECORD_DATAGRAM_BYTES: then it opens an extended record of up to `maxDatagram` bytes (a
 * longer or a shorter one is a framing error, so that a peer cannot make it allocate more).
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
  readonly #maxDatagram: number;
  readonly #alloc: (n: number) => Uint8Array;
  /** A header split across chunks: its bytes so far (2 of a Length, or up to 6 if extended). */
  readonly #header = new Uint8Array(EXTENDED_RECORD_HEADER_BYTES);
  #headerFilled = 0;
  /** A record being gathered across chunks, and how much of it has arrived. */
  #partial: Uint8Array | undefined;
  #filled = 0;
  #failed = false;

  constructor(
    o: {
      zeroCopy?: boolean;
      copyBelow?: number;
      maxDatagram?: number;
      /**
       * Allocates the buffer a split record is gathered in (default: a zeroed Uint8Array). Every
       * byte of it is written before the record is handed up, so a runtime may hand out memory
       * it did not clear (Node: Buffer.allocUnsafeSlow), and skip zeroing up to a megabyte.
       */
      alloc?: (n: number) => Uint8Array;
    } = {},
  ) {
    this.#zeroCopy = o.zeroCopy ?? false;
    this.#copyBelow = o.copyBelow ?? 0;
    this.#maxDatagram = o.maxDatagram ?? MAX_RECORD_DATAGRAM_BYTES;
    this.#alloc = o.alloc ?? ((n) => new Uint8Array(n));
  }

  get failed(): boolean {
    return this.#failed;
  }

  /** Whether the stream may end here (no partial record). */
  get atBoundary(): boolean {
    return this.#partial === undefined && this.#headerFilled === 0;
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
      let body: number;
      if (
        this.#headerFilled === 0 &&
        n - o >= RECORD_HEADER_BYTES &&
        (bytes[o]! | bytes[o + 1]!) !== 0
      ) {
        // The common case: a whole 16-bit Length in this chunk.
        const len = (bytes[o]! << 8) | bytes[o + 1]!;
        o += RECORD_HEADER_BYTES;
        if (len < RECORD_HEADER_BYTES) return this.#fail();
        body = len - RECORD_HEADER_BYTES;
      } else {
        // A header split across chunks, or an extended one: gathered byte by byte (rare).
        const h = this.#header;
        while (o < n && this.#headerFilled < this.#headerNeeds())
          h[this.#headerFilled++] = bytes[o++]!;
        if (this.#headerFilled < this.#headerNeeds()) return true;
        this.#headerFilled = 0;
        if (h[0] !== 0 || h[1] !== 0) {
          const len = (h[0]! << 8) | h[1]!;
          if (len < RECORD_HEADER_BYTES) return this.#fail();
          body = len - RECORD_HEADER_BYTES;
        } else {
          if (this.#maxDatagram <= MAX_RECORD_DATAGRAM_BYTES) return this.#fail();
          body = ((h[2]! << 24) | (h[3]! << 16) | (h[4]! << 8) | h[5]!) >>> 0;
          if (body <= MAX_RECORD_DATAGRAM_BYTES || body > this.#maxDatagram) return this.#fail();
        }
      }
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
        this.#partial = this.#alloc(body);
        this.#filled = 0;
      }
    }
    return true;
  }

  /**
   * Where the rest of the record being gathered may be written directly, if at least `min` bytes
   * of it are missing (a socket can read into it: those bytes are then never copied); else
   * undefined. Tell `gathered` how many were written.
   */
  gatherTarget(min: number): Uint8Array | undefined {
    const p = this.#partial;
    if (!p || this.#failed || p.length - this.#filled < min) return undefined;
    return p.subarray(this.#filled);
  }

  /**
   * `n` bytes were written at the start of the last `gatherTarget` (and nothing was pushed since);
   * hands the record up once it is whole. Returns false if the reader has failed.
   */
  gathered(n: number): boolean {
    const p = this.#partial;
    if (this.#failed) return false;
    if (!p || !Number.isInteger(n) || n < 0 || n > p.length - this.#filled) {
      throw new RangeError('gathered: more than the record being gathered lacks');
    }
    this.#filled += n;
    if (this.#filled === p.length) {
      this.#partial = undefined;
      this.onRecord(p);
    }
    return !this.#failed;
  }

  /** Bytes of the header being gathered: 2, or 6 once its Length reads 0 and extended ones are on. */
  #headerNeeds(): number {
    if (this.#headerFilled < RECORD_HEADER_BYTES) return RECORD_HEADER_BYTES;
    const h = this.#header;
    return h[0] === 0 && h[1] === 0 && this.#maxDatagram > MAX_RECORD_DATAGRAM_BYTES
      ? EXTENDED_RECORD_HEADER_BYTES
      : RECORD_HEADER_BYTES;
  }

  #fail(): false {
    this.#failed = true;
    return false;
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
