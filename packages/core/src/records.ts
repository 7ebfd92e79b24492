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
  let o = 0;
  for (const d of datagrams) {
    const len = d.length + RECORD_HEADER_BYTES;
    out[o] = len >>> 8;
    out[o + 1] = len & 255;
    out.set(d, o + RECORD_HEADER_BYTES);
    o += len;
  }
  return out;
}

/**
 * Streaming record parser: feed it the bytes as TCP delivers them, in chunks of any size; it calls
 * `onRecord` once per whole record (empty ones included), in order. A Length below 2 is a framing
 * error, after which it stays failed.
 */
export class RecordReader {
  onRecord: (datagram: Uint8Array) => void = () => {};
  /** Unconsumed chunks, as they arrived: at most one partial record. */
  #chunks: Uint8Array[] = [];
  #have = 0;
  /**
   * Bytes needed before the next record can complete: joining the chunks earlier would copy the
   * partial record again on every chunk (quadratic for a large record in small segments).
   */
  #need = RECORD_HEADER_BYTES;
  #failed = false;

  get failed(): boolean {
    return this.#failed;
  }

  /** Whether the stream may end here (no partial record). */
  get atBoundary(): boolean {
    return this.#have === 0;
  }

  /** Returns false on a framing error. */
  push(bytes: Uint8Array): boolean {
    if (this.#failed) return false;
    if (bytes.length === 0) return true;
    // A plain view: a Buffer's slice() would not copy, and the datagrams must.
    this.#chunks.push(new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.length));
    this.#have += bytes.length;
    if (this.#have < this.#need) return true;
    let b = this.#chunks[0]!;
    if (this.#chunks.length > 1) {
      b = new Uint8Array(this.#have);
      let at = 0;
      for (const c of this.#chunks) {
        b.set(c, at);
        at += c.length;
      }
    }
    let o = 0;
    this.#need = RECORD_HEADER_BYTES;
    while (b.length - o >= RECORD_HEADER_BYTES) {
      const len = (b[o]! << 8) | b[o + 1]!;
      if (len < RECORD_HEADER_BYTES) {
        this.#failed = true;
        this.#chunks = [];
        this.#have = 0;
        return false;
      }
      if (b.length - o < len) {
        this.#need = len;
        break;
      }
      // A copy: the datagram outlives the socket's buffer, and the core decrypts in place.
      const d = b.slice(o + RECORD_HEADER_BYTES, o + len);
      o += len;
      this.onRecord(d);
      if (this.#failed) return false;
    }
    const rest = b.length - o;
    this.#chunks = rest === 0 ? [] : [b.slice(o)];
    this.#have = rest;
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
