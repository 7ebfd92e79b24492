/**
 * Length-prefixed records, the framing of the TCP encapsulation and of every HTTP body here
 * (RFC 8229 §3): a 16-bit big-endian Length that counts itself, then Length - 2 bytes of
 * datagram. A Length of 2 (an empty record) carries no datagram: the HTTP down-stream uses it as
 * its stream-open marker and heartbeat. A Length below 2 is a framing error.
 */
import { MAX_DATAGRAM_BYTES } from './types.ts';

export const RECORD_HEADER_BYTES = 2;

/** The empty record: stream-open marker and heartbeat of the HTTP down-stream. */
export const EMPTY_RECORD: Uint8Array = new Uint8Array([0, 2]);

/** One record around `datagram`. */
export function encodeRecord(datagram: Uint8Array): Uint8Array {
  if (datagram.length > MAX_DATAGRAM_BYTES) throw new RangeError('datagram too long for a record');
  const out = new Uint8Array(datagram.length + RECORD_HEADER_BYTES);
  const len = datagram.length + RECORD_HEADER_BYTES;
  out[0] = len >>> 8;
  out[1] = len & 255;
  out.set(datagram, RECORD_HEADER_BYTES);
  return out;
}

/** Several records back to back, in one buffer (one POST body, one poll answer). */
export function encodeRecords(datagrams: readonly Uint8Array[]): Uint8Array {
  let n = 0;
  for (const d of datagrams) n += d.length + RECORD_HEADER_BYTES;
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
 * Incremental record parser over a byte stream: feed it what arrives, it calls `onRecord` for each
 * whole record (empty records included, so the caller can see markers). After a framing error it
 * stays failed.
 */
export class RecordReader {
  onRecord: (datagram: Uint8Array) => void = () => {};
  #chunks: Uint8Array[] = [];
  #have = 0;
  /** Bytes needed before a record can complete (joining earlier would copy for nothing). */
  #need = RECORD_HEADER_BYTES;
  #failed = false;

  get failed(): boolean {
    return this.#failed;
  }

  /** Whether the stream may end here (no partial record). */
  get atBoundary(): boolean {
    return this.#have === 0;
  }

  /** Returns false on a framing error (Length < 2). */
  push(bytes: Uint8Array): boolean {
    if (this.#failed) return false;
    if (bytes.length === 0) return true;
    this.#chunks.push(bytes);
    this.#have += bytes.length;
    if (this.#have < this.#need) return true;
    let b = this.#chunks.length === 1 ? this.#chunks[0]! : new Uint8Array(this.#have);
    if (this.#chunks.length > 1) {
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
      // A copy: the datagram outlives the transport's buffer.
      const d = b.slice(o + RECORD_HEADER_BYTES, o + len);
      o += len;
      this.onRecord(d);
      if (this.#failed) return false;
    }
    b = o === b.length ? new Uint8Array(0) : b.slice(o);
    this.#chunks = b.length === 0 ? [] : [b];
    this.#have = b.length;
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
