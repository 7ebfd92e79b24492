/**
 * Stream-layer frames (docs/PROTOCOL.md §8): what the multiplexer puts in ESP packets with Next
 * Header 253. Their types occupy 0x20-0x2F, apart from echo (1-2) and registration (0x10-0x17), so
 * a receiver routes an inner payload by its first byte.
 *
 * A mux payload is one **packet**: a PACKET header (0x20, then the mux's own packet number) and
 * one or more frames until the end of the payload. The packet number space is the mux's, not
 * ESP's: it survives rekeys (which restart ESP sequence numbers) and path changes.
 *
 * Integers are QUIC variable-length integers (RFC 9000 §16) limited to 2^53 − 1, so that they stay
 * exact in JavaScript numbers; a larger value is malformed. Frames are modelled on RFC 9000 §19
 * (ACK, RESET_STREAM, MAX_DATA, MAX_STREAM_DATA, MAX_STREAMS, STREAM, PING) with roamlink's own
 * additions: OPEN (a STREAM flag carrying the TCP target), ACCEPT, REFUSE, DATAGRAM (a UDP target
 * and a payload) and GOAWAY.
 *
 * Decoders read hostile input and throw `RoamlinkError` (`ROAMLINK_ERR_MALFORMED`) and nothing
 * else; encoders throw `ROAMLINK_ERR_INVALID_ARGUMENT` for values they cannot represent.
 */
import type { RangeSet } from './ack-ranges.ts';
import { fromUtf8, utf8 } from './bytes.ts';
import { ErrorCode, RoamlinkError } from './errors.ts';

export const MuxFrameType = {
  PACKET: 0x20,
  ACK: 0x21,
  PING: 0x22,
  ACCEPT: 0x23,
  REFUSE: 0x24,
  RESET: 0x25,
  MAX_DATA: 0x26,
  MAX_STREAM_DATA: 0x27,
  /** 0x28-0x2B: STREAM with flag bits FIN (0x01) and OPEN (0x02). */
  STREAM: 0x28,
  MAX_STREAMS: 0x2c,
  DATAGRAM: 0x2d,
  GOAWAY: 0x2e,
  /** u8 type | varint n | n zero bytes: fills a path-MTU probe (RFC 8899 §4.1) to its size. */
  PADDING: 0x2f,
} as const;
export type MuxFrameType = (typeof MuxFrameType)[keyof typeof MuxFrameType];

/** STREAM flag: the frame ends the stream; offset + length is its final size. */
export const STREAM_FLAG_FIN = 0x01;
/** STREAM flag: the frame opens the stream and carries its target (only at offset 0). */
export const STREAM_FLAG_OPEN = 0x02;
/** First and last type byte of the stream layer's range. */
export const MUX_TYPE_FIRST = 0x20;
export const MUX_TYPE_LAST = 0x2f;
/** Most ACK ranges a decoder accepts in one frame (an encoder writes at most this many). */
export const MAX_ACK_RANGES = 256;

/** Where a stream or datagram goes: a host name or address literal and a port. */
export interface StreamTarget {
  host: string;
  port: number;
}

/**
 * Stream error codes carried in RESET and REFUSE (and GOAWAY). Stable: values never change meaning.
 * Other values may appear on the wire and are passed through.
 */
export const StreamError = {
  /** The relay's policy forbids the target. */
  POLICY: 1,
  /** The target refused the connection (TCP RST). */
  REFUSED: 2,
  /** No route to the target (network or host unreachable). */
  UNREACHABLE: 3,
  /** The connection to the target timed out. */
  TIMEOUT: 4,
  /** The peer is shutting down (after GOAWAY). */
  SHUTDOWN: 5,
  /** Aborted by the application (or the target reset the connection). */
  RESET: 6,
  /** An internal error at the peer. */
  INTERNAL: 7,
  /** The target's name did not resolve. */
  DNS: 8,
  /** A resource limit was reached (streams, memory). */
  LIMIT: 9,
} as const;
export type StreamError = (typeof StreamError)[keyof typeof StreamError];

// --- Variable-length integers (RFC 9000 §16) ----------------------------------------------------

const TWO_32 = 0x1_0000_0000;

export function varintLength(v: number): number {
  if (v < 0x40) return 1;
  if (v < 0x4000) return 2;
  if (v < 0x4000_0000) return 4;
  return 8;
}

/** Writes `v` (an integer in [0, 2^53)) at `o`; returns the offset after it. */
export function writeVarint(b: Uint8Array, o: number, v: number): number {
  if (v < 0x40) {
    b[o] = v;
    return o + 1;
  }
  if (v < 0x4000) {
    b[o] = 0x40 | (v >>> 8);
    b[o + 1] = v;
    return o + 2;
  }
  if (v < 0x4000_0000) {
    b[o] = 0x80 | (v >>> 24);
    b[o + 1] = v >>> 16;
    b[o + 2] = v >>> 8;
    b[o + 3] = v;
    return o + 4;
  }
  const hi = Math.floor(v / TWO_32);
  const lo = v >>> 0;
  b[o] = 0xc0 | (hi >>> 24);
  b[o + 1] = hi >>> 16;
  b[o + 2] = hi >>> 8;
  b[o + 3] = hi;
  b[o + 4] = lo >>> 24;
  b[o + 5] = lo >>> 16;
  b[o + 6] = lo >>> 8;
  b[o + 7] = lo;
  return o + 8;
}

function checkVarint(v: number, what: string): void {
  if (!Number.isSafeInteger(v) || v < 0) {
    throw new RoamlinkError(ErrorCode.INVALID_ARGUMENT, `${what}: not an integer in [0, 2^53)`);
  }
}

const malformed = (why: string): RoamlinkError => new RoamlinkError(ErrorCode.MALFORMED, why);

/** A cursor over one payload; every read checks bounds and throws MALFORMED past the end. */
export class FrameReader {
  readonly buf: Uint8Array;
  pos: number;

  constructor(buf: Uint8Array, pos = 0) {
    this.buf = buf;
    this.pos = pos;
  }

  get remaining(): number {
    return this.buf.length - this.pos;
  }

  u8(): number {
    if (this.pos >= this.buf.length) throw malformed('truncated');
    return this.buf[this.pos++]!;
  }

  varint(): number {
    const b = this.buf;
    const o = this.pos;
    if (o >= b.length) throw malformed('truncated varint');
    const first = b[o]!;
    const len = 1 << (first >>> 6);
    if (o + len > b.length) throw malformed('truncated varint');
    this.pos = o + len;
    switch (len) {
      case 1:
        return first;
      case 2:
        return ((first & 0x3f) << 8) | b[o + 1]!;
      case 4:
        return (((first & 0x3f) << 24) | (b[o + 1]! << 16) | (b[o + 2]! << 8) | b[o + 3]!) >>> 0;
      default: {
        const hi =
          (((first & 0x3f) << 24) | (b[o + 1]! << 16) | (b[o + 2]! << 8) | b[o + 3]!) >>> 0;
        if (hi > 0x1f_ffff) throw malformed('varint beyond 2^53');
        const lo = ((b[o + 4]! << 24) | (b[o + 5]! << 16) | (b[o + 6]! << 8) | b[o + 7]!) >>> 0;
        return hi * TWO_32 + lo;
      }
    }
  }

  /** A view (no copy) of the next `n` bytes. */
  bytes(n: number): Uint8Array {
    if (n > this.buf.length - this.pos) throw malformed('truncated data');
    const v = this.buf.subarray(this.pos, this.pos + n);
    this.pos += n;
    return v;
  }
}

// --- Targets -------------------------------------------------------------------------------------

/** Longest host name or literal in a target (a DNS name is at most 253 characters). */
export const MAX_TARGET_HOST = 255;

/**
 * A target on the wire: `u8 host length (1..255) | host (UTF-8, no control characters) | u16 port
 * (1..65535)`. Returns the encoded bytes; throws INVALID_ARGUMENT for a target that cannot go.
 */
export function encodeTarget(t: StreamTarget): Uint8Array {
  const host = utf8(t.host);
  if (host.length < 1 || host.length > MAX_TARGET_HOST || hasControl(host)) {
    throw new RoamlinkError(ErrorCode.INVALID_ARGUMENT, 'target host: 1..255 bytes, no controls');
  }
  if (!Number.isInteger(t.port) || t.port < 1 || t.port > 0xffff) {
    throw new RoamlinkError(ErrorCode.INVALID_ARGUMENT, 'target port: 1..65535');
  }
  const out = new Uint8Array(3 + host.length);
  out[0] = host.length;
  out.set(host, 1);
  out[1 + host.length] = t.port >>> 8;
  out[2 + host.length] = t.port;
  return out;
}

function hasControl(b: Uint8Array): boolean {
  for (let i = 0; i < b.length; i++) {
    const c = b[i]!;
    if (c < 0x20 || c === 0x7f) return true;
  }
  return false;
}

export function readTarget(r: FrameReader): StreamTarget {
  const n = r.u8();
  if (n === 0) throw malformed('empty target host');
  const hostBytes = r.bytes(n);
  if (hasControl(hostBytes)) throw malformed('control character in target host');
  let host: string;
  try {
    host = fromUtf8(hostBytes);
  } catch {
    throw malformed('target host is not UTF-8');
  }
  const port = (r.u8() << 8) | r.u8();
  if (port === 0) throw malformed('target port 0');
  return { host, port };
}

// --- Decoded frames ------------------------------------------------------------------------------

export interface AckFrame {
  type: 'ack';
  largest: number;
  /** ACK Delay in microseconds. */
  delayUs: number;
  /** Acknowledged packet numbers as inclusive [high, low] pairs, highest first, flattened. */
  ranges: number[];
}

export interface StreamFrame {
  type: 'stream';
  id: number;
  offset: number;
  fin: boolean;
  /** Present on an OPEN frame (offset 0 only). */
  target: StreamTarget | undefined;
  /** A view into the received payload. */
  data: Uint8Array;
}

export type MuxFrame =
  | AckFrame
  | StreamFrame
  | { type: 'ping' }
  | { type: 'padding'; length: number }
  | { type: 'accept'; id: number }
  | { type: 'refuse'; id: number; code: number }
  | { type: 'reset'; id: number; code: number; finalSize: number }
  | { type: 'max-data'; max: number }
  | { type: 'max-stream-data'; id: number; max: number }
  | { type: 'max-streams'; count: number }
  | { type: 'datagram'; flow: number; target: StreamTarget; data: Uint8Array }
  | { type: 'goaway'; code: number };

export interface MuxPacket {
  pn: number;
  frames: MuxFrame[];
}

/** Whether `payload` belongs to the stream layer (its first byte is in 0x20..0x2F). */
export function isMuxPayload(payload: Uint8Array): boolean {
  const t = payload[0];
  return t !== undefined && t >= MUX_TYPE_FIRST && t <= MUX_TYPE_LAST;
}

function readAck(r: FrameReader): AckFrame {
  const largest = r.varint();
  const delayUs = r.varint();
  const count = r.varint();
  if (count >= MAX_ACK_RANGES) throw malformed('too many ACK ranges');
  const first = r.varint();
  if (first > largest) throw malformed('ACK range below zero');
  const ranges = [largest, largest - first];
  let low = largest - first;
  for (let i = 0; i < count; i++) {
    const gap = r.varint();
    const len = r.varint();
    const high = low - gap - 2;
    if (high < 0 || len > high) throw malformed('ACK range below zero');
    low = high - len;
    ranges.push(high, low);
  }
  return { type: 'ack', largest, delayUs, ranges };
}

/** Decodes one frame at the reader's position. */
export function readFrame(r: FrameReader): MuxFrame {
  const t = r.u8();
  switch (t) {
    case MuxFrameType.ACK:
      return readAck(r);
    case MuxFrameType.PING:
      return { type: 'ping' };
    case MuxFrameType.PADDING: {
      const length = r.varint();
      r.bytes(length);
      return { type: 'padding', length };
    }
    case MuxFrameType.ACCEPT:
      return { type: 'accept', id: r.varint() };
    case MuxFrameType.REFUSE:
      return { type: 'refuse', id: r.varint(), code: r.varint() };
    case MuxFrameType.RESET:
      return { type: 'reset', id: r.varint(), code: r.varint(), finalSize: r.varint() };
    case MuxFrameType.MAX_DATA:
      return { type: 'max-data', max: r.varint() };
    case MuxFrameType.MAX_STREAM_DATA:
      return { type: 'max-stream-data', id: r.varint(), max: r.varint() };
    case MuxFrameType.MAX_STREAMS:
      return { type: 'max-streams', count: r.varint() };
    case MuxFrameType.DATAGRAM: {
      const flow = r.varint();
      const target = readTarget(r);
      const data = r.bytes(r.varint());
      return { type: 'datagram', flow, target, data };
    }
    case MuxFrameType.GOAWAY:
      return { type: 'goaway', code: r.varint() };
    case 0x28:
    case 0x29:
    case 0x2a:
    case 0x2b: {
      const id = r.varint();
      const offset = r.varint();
      let target: StreamTarget | undefined;
      if (t & STREAM_FLAG_OPEN) {
        if (offset !== 0) throw malformed('OPEN at a non-zero offset');
        target = readTarget(r);
      }
      const data = r.bytes(r.varint());
      if (offset + data.length > Number.MAX_SAFE_INTEGER) throw malformed('stream beyond 2^53');
      return { type: 'stream', id, offset, fin: (t & STREAM_FLAG_FIN) !== 0, target, data };
    }
    default:
      throw malformed(`unknown stream-layer frame type 0x${t.toString(16)}`);
  }
}

/**
 * Decodes a whole mux payload: the PACKET header and at least one frame. Throws MALFORMED if
 * anything in it is wrong; then none of it may be used.
 */
export function decodeMuxPacket(payload: Uint8Array): MuxPacket {
  const r = new FrameReader(payload);
  if (r.u8() !== MuxFrameType.PACKET) throw malformed('not a mux packet');
  const pn = r.varint();
  if (r.remaining === 0) throw malformed('packet without frames');
  const frames: MuxFrame[] = [];
  while (r.remaining > 0) frames.push(readFrame(r));
  return { pn, frames };
}

// --- Encoding ------------------------------------------------------------------------------------

/** Bytes an ACK frame for the top `maxRanges` ranges of `set` takes. `set` must not be empty. */
export function ackFrameLength(set: RangeSet, delayUs: number, maxRanges: number): number {
  const n = Math.min(set.count, maxRanges);
  let i = set.count - 1;
  const largest = set.end(i) - 1;
  let len = 1 + varintLength(largest) + varintLength(delayUs) + varintLength(n - 1);
  len += varintLength(largest - set.start(i));
  for (let k = 1; k < n; k++) {
    const prevStart = set.start(i);
    i--;
    const e = set.end(i);
    len += varintLength(prevStart - e - 1) + varintLength(e - 1 - set.start(i));
  }
  return len;
}

/** Writes the ACK frame for the top `maxRanges` ranges of `set`; returns the offset after it. */
export function writeAckFrame(
  b: Uint8Array,
  o: number,
  set: RangeSet,
  delayUs: number,
  maxRanges: number,
): number {
  const n = Math.min(set.count, maxRanges);
  let i = set.count - 1;
  const largest = set.end(i) - 1;
  b[o++] = MuxFrameType.ACK;
  o = writeVarint(b, o, largest);
  o = writeVarint(b, o, delayUs);
  o = writeVarint(b, o, n - 1);
  o = writeVarint(b, o, largest - set.start(i));
  for (let k = 1; k < n; k++) {
    const prevStart = set.start(i);
    i--;
    const e = set.end(i);
    // Gap: packets between this range's largest and the previous range's smallest, minus one.
    o = writeVarint(b, o, prevStart - e - 1);
    o = writeVarint(b, o, e - 1 - set.start(i));
  }
  return o;
}

/** Length of a STREAM frame's header (everything but the data). */
export function streamHeaderLength(
  id: number,
  offset: number,
  target: Uint8Array | undefined,
  dataLength: number,
): number {
  return (
    1 +
    varintLength(id) +
    varintLength(offset) +
    (target ? target.length : 0) +
    varintLength(dataLength)
  );
}

/** Writes a STREAM frame's header; the caller writes `dataLength` bytes of data after it. */
export function writeStreamHeader(
  b: Uint8Array,
  o: number,
  id: number,
  offset: number,
  fin: boolean,
  target: Uint8Array | undefined,
  dataLength: number,
): number {
  b[o++] = MuxFrameType.STREAM | (fin ? STREAM_FLAG_FIN : 0) | (target ? STREAM_FLAG_OPEN : 0);
  o = writeVarint(b, o, id);
  o = writeVarint(b, o, offset);
  if (target) {
    b.set(target, o);
    o += target.length;
  }
  return writeVarint(b, o, dataLength);
}

/** Length of a frame made of a type byte and the given varints. */
export function simpleFrameLength(a: number, b?: number, c?: number): number {
  return (
    1 +
    varintLength(a) +
    (b === undefined ? 0 : varintLength(b)) +
    (c === undefined ? 0 : varintLength(c))
  );
}

/** Writes a frame made of a type byte and up to three varints. */
export function writeSimpleFrame(
  buf: Uint8Array,
  o: number,
  type: number,
  a: number,
  b?: number,
  c?: number,
): number {
  buf[o++] = type;
  o = writeVarint(buf, o, a);
  if (b !== undefined) o = writeVarint(buf, o, b);
  if (c !== undefined) o = writeVarint(buf, o, c);
  return o;
}

export function datagramFrameLength(target: Uint8Array, flow: number, dataLength: number): number {
  return 1 + varintLength(flow) + target.length + varintLength(dataLength) + dataLength;
}

export function writeDatagramFrame(
  b: Uint8Array,
  o: number,
  flow: number,
  target: Uint8Array,
  data: Uint8Array,
): number {
  b[o++] = MuxFrameType.DATAGRAM;
  o = writeVarint(b, o, flow);
  b.set(target, o);
  o += target.length;
  o = writeVarint(b, o, data.length);
  b.set(data, o);
  return o + data.length;
}

/**
 * Encodes a whole packet from frame objects. Convenient and checked, not fast: the multiplexer
 * writes its packets with the functions above; this is for tests, tools and documentation.
 * ACK frames are written from their `ranges` pairs.
 */
export function encodeMuxPacket(pn: number, frames: MuxFrame[]): Uint8Array {
  checkVarint(pn, 'packet number');
  const parts: Uint8Array[] = [];
  const head = new Uint8Array(1 + varintLength(pn));
  head[0] = MuxFrameType.PACKET;
  writeVarint(head, 1, pn);
  parts.push(head);
  for (const f of frames) parts.push(encodeFrame(f));
  let n = 0;
  for (const p of parts) n += p.length;
  const out = new Uint8Array(n);
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

function varints(type: number, ...vs: number[]): Uint8Array {
  for (const v of vs) checkVarint(v, 'frame field');
  let n = 1;
  for (const v of vs) n += varintLength(v);
  const out = new Uint8Array(n);
  out[0] = type;
  let o = 1;
  for (const v of vs) o = writeVarint(out, o, v);
  return out;
}

/** Encodes one frame (checked). */
export function encodeFrame(f: MuxFrame): Uint8Array {
  switch (f.type) {
    case 'ping':
      return new Uint8Array([MuxFrameType.PING]);
    case 'padding': {
      const out = new Uint8Array(1 + varintLength(f.length) + f.length);
      out[0] = MuxFrameType.PADDING;
      writeVarint(out, 1, f.length);
      return out;
    }
    case 'accept':
      return varints(MuxFrameType.ACCEPT, f.id);
    case 'refuse':
      return varints(MuxFrameType.REFUSE, f.id, f.code);
    case 'reset':
      return varints(MuxFrameType.RESET, f.id, f.code, f.finalSize);
    case 'max-data':
      return varints(MuxFrameType.MAX_DATA, f.max);
    case 'max-stream-data':
      return varints(MuxFrameType.MAX_STREAM_DATA, f.id, f.max);
    case 'max-streams':
      return varints(MuxFrameType.MAX_STREAMS, f.count);
    case 'goaway':
      return varints(MuxFrameType.GOAWAY, f.code);
    case 'datagram': {
      checkVarint(f.flow, 'flow');
      const t = encodeTarget(f.target);
      const out = new Uint8Array(datagramFrameLength(t, f.flow, f.data.length));
      writeDatagramFrame(out, 0, f.flow, t, f.data);
      return out;
    }
    case 'stream': {
      checkVarint(f.id, 'stream id');
      checkVarint(f.offset, 'offset');
      if (f.target && f.offset !== 0) {
        throw new RoamlinkError(ErrorCode.INVALID_ARGUMENT, 'OPEN only at offset 0');
      }
      const t = f.target ? encodeTarget(f.target) : undefined;
      const h = streamHeaderLength(f.id, f.offset, t, f.data.length);
      const out = new Uint8Array(h + f.data.length);
      writeStreamHeader(out, 0, f.id, f.offset, f.fin, t, f.data.length);
      out.set(f.data, h);
      return out;
    }
    case 'ack': {
      const r = f.ranges;
      if (r.length < 2 || r.length % 2 !== 0 || r.length / 2 > MAX_ACK_RANGES) {
        throw new RoamlinkError(ErrorCode.INVALID_ARGUMENT, 'ACK: 1..256 ranges');
      }
      const vs: number[] = [r[0]!, f.delayUs, r.length / 2 - 1, r[0]! - r[1]!];
      for (let i = 2; i < r.length; i += 2) {
        const gap = r[i - 1]! - r[i]! - 2;
        const len = r[i]! - r[i + 1]!;
        if (gap < 0 || len < 0) {
          throw new RoamlinkError(ErrorCode.INVALID_ARGUMENT, 'ACK ranges must descend apart');
        }
        vs.push(gap, len);
      }
      if (r[0]! < r[1]! || r[r.length - 1]! < 0) {
        throw new RoamlinkError(ErrorCode.INVALID_ARGUMENT, 'ACK ranges must be [high, low]');
      }
      return varints(MuxFrameType.ACK, ...vs);
    }
  }
}
