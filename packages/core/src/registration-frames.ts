/**
 * Registration frames (docs/PROTOCOL.md §6): the inner frames, carried in ESP packets with Next
 * Header 253, that move a security association to a new path without a new key exchange
 * (WO 03/063444 claims 1-8 and 20).
 *
 * - RREQ (client → relay): the registration round, a nonce, the encapsulation this copy travels
 *   on, the client's supported encapsulations and its own copy of the outer header fields it sent
 *   on this path (claims 1c, 2, 3).
 * - RREP (relay → client): round and nonce echoed, the relay's verdict and choice, and what the
 *   relay observed on this path, so that the client can reach its own verdict (claims 1d, 6-8).
 * - PATH_CHALLENGE / PATH_RESPONSE: 8 bytes of unpredictable data echoed back, as QUIC's frames
 *   of the same names (RFC 9000 §19.17-19.18), to validate a new path before sending on it freely.
 * - PROBE / PROBE_ACK: tests whether a lighter encapsulation, or packets of a given size, get
 *   through (claim 11). A probe is padded to the size under test; the ack echoes what arrived.
 * - BINDING_TEST / BINDING_ACK: measure the client's NAT binding timeout on a second flow, the
 *   idea of RFC 5780 §4.6 with the relay as the timer: the relay answers a test only `delayMs`
 *   after it arrived, so an answer proves that the NAT kept an idle binding that long.
 *
 * Layout: fixed fields first, then lists (u8 count, one byte per code), then the outer view as
 * TLVs (u8 tag, u16 length, value) up to the end of the frame. RREQ and RREP may add a path
 * parameter among those TLVs (tag 16, the largest datagram the sender takes on the path), which is
 * not part of the view. Unknown TLV tags and unknown encapsulation codes in lists are skipped so
 * that later revisions can add to them.
 *
 * Decoders read hostile input (authenticated, but from a peer that may be buggy or compromised):
 * on anything they cannot accept they throw `RoamlinkError` with `ROAMLINK_ERR_MALFORMED`, and
 * nothing else. Encoders check their arguments and throw `ROAMLINK_ERR_INVALID_ARGUMENT`, so that
 * whatever they produce the decoders accept.
 */
import {
  concatBytes,
  fromUtf8,
  readU16,
  readU32,
  readU64,
  utf8,
  writeU16,
  writeU32,
  writeU64,
} from './bytes.ts';
import { MIN_MAX_DATAGRAM } from './constants.ts';
import { type Encapsulation, isEncapsulation } from './encapsulation.ts';
import { ErrorCode, RoamlinkError } from './errors.ts';
import { type OuterView, Verdict } from './path.ts';
import { PROXY_HEADERS } from './verdict.ts';

export const RegFrameType = {
  RREQ: 0x10,
  RREP: 0x11,
  PATH_CHALLENGE: 0x12,
  PATH_RESPONSE: 0x13,
  PROBE: 0x14,
  PROBE_ACK: 0x15,
  BINDING_TEST: 0x16,
  BINDING_ACK: 0x17,
} as const;
export type RegFrameType = (typeof RegFrameType)[keyof typeof RegFrameType];

/**
 * No registration frame is longer: 1200 bytes is the datagram size QUIC relies on every path to
 * carry (RFC 9000 §14), so a registration message never depends on fragmentation or a large MTU.
 */
export const MAX_REGISTRATION_FRAME = 1200;
/** Longest string (UTF-8 bytes) in an outer view: an address, URL, Host, header name or value. */
export const MAX_VIEW_STRING = 512;
/** Most headers in one outer view. */
export const MAX_VIEW_HEADERS = 32;
/** Bytes of a PROBE before its padding: the smallest probe. */
export const PROBE_HEADER_LENGTH = 6;
/** Length of BINDING_TEST and BINDING_ACK (both exactly this long). */
export const BINDING_FRAME_LENGTH = 9;
/**
 * Longest delay a BINDING_TEST may ask for: 5 minutes, above the 2 minutes RFC 4787 REQ-5 sets as
 * the least a NAT may keep an idle UDP mapping, so every compliant NAT can be measured, and short
 * enough that a relay holds few timers for long.
 */
export const MAX_BINDING_DELAY_MS = 300_000;
/** Length of the nonce in RREQ/RREP and of the data in PATH_CHALLENGE/PATH_RESPONSE. */
export const REG_NONCE_LENGTH = 8;

/** TLV tags of an encoded outer view. */
export const OuterViewTag = {
  SRC_ADDR: 1,
  SRC_PORT: 2,
  DST_ADDR: 3,
  DST_PORT: 4,
  URL: 5,
  HOST: 6,
  HEADER: 7,
} as const;

/**
 * TLV tags of path parameters: among the view's TLVs in RREQ and RREP, but not part of the view
 * (no verdict compares them). A decoder that predates one skips it as an unknown view tag.
 */
export const PathParamTag = {
  /** u32: the largest datagram the sender takes on this path (docs/PROTOCOL.md §6.4). */
  MAX_DATAGRAM: 16,
} as const;

export interface Rreq {
  /** u32, > 0; only grows from one registration to the next. */
  round: number;
  /** 8 bytes. */
  nonce: Uint8Array;
  /** The encapsulation this copy travels on. */
  encapsulation: Encapsulation;
  /** u64 ms, the sender's wall clock. */
  timestamp: number;
  /** The client's supported encapsulations, in its preference order. */
  encapsulations: Encapsulation[];
  /** The client's own copy of the outer header fields it sent on this path. */
  view: OuterView;
  /**
   * The largest datagram the client takes on this path (u32, at least MIN_MAX_DATAGRAM); absent:
   * DEFAULT_MAX_DATAGRAM on stream paths. Sent as path parameter tag 16.
   */
  maxDatagram?: number;
}

export interface Rrep {
  /** Echoed from the RREQ. */
  round: number;
  /** Echoed from the RREQ. */
  nonce: Uint8Array;
  /** The path (encapsulation) this RREP answers. */
  encapsulation: Encapsulation;
  /** The relay's verdict for this path. */
  verdict: Verdict;
  /** u8: the relay's decision counter within the round (grows when it upgrades to a preferred path). */
  decision: number;
  /** This path is the one the relay chose. */
  chosen: boolean;
  /** The encapsulation of the chosen path. */
  chosenEncapsulation: Encapsulation;
  /** u32; 0 = no NAT keepalives needed. */
  keepaliveMs: number;
  /** The relay's supported encapsulations, in its preference order. */
  encapsulations: Encapsulation[];
  /** What the relay saw on this path. */
  observed: OuterView;
  /** The largest datagram the relay takes on this path, as in Rreq. */
  maxDatagram?: number;
}

/** PATH_CHALLENGE (0x12) or PATH_RESPONSE (0x13): 8 bytes. */
export interface PathChallenge {
  data: Uint8Array;
}

export interface Probe {
  /** u32. */
  id: number;
  /** The encapsulation the probe travels on. */
  encapsulation: Encapsulation;
  /** Total frame length: the frame is padded with zero bytes to it (6 ≤ size ≤ 1200). */
  size: number;
}

export interface ProbeAck {
  /** u32, echoed from the probe. */
  id: number;
  /** u32: the size of the probe frame as it arrived. */
  size: number;
}

/**
 * BINDING_TEST (client → relay) or BINDING_ACK (relay → client): the ack is the test echoed
 * `delayMs` after the test arrived, on the path it came on.
 */
export interface BindingFrame {
  /** u32, chosen by the client, echoed. */
  id: number;
  /** u32 ms, at most MAX_BINDING_DELAY_MS: how long the relay waits before answering. */
  delayMs: number;
}

// Offsets of the fixed parts (docs/PROTOCOL.md §6.4-6.7).
const RREQ_FIXED = 22;
const RREP_FIXED = 22;
const PATH_FRAME_LENGTH = 1 + REG_NONCE_LENGTH;
const PROBE_ACK_LENGTH = 9;
const RREP_FLAG_CHOSEN = 0x01;

const malformed = (why: string): RoamlinkError => new RoamlinkError(ErrorCode.MALFORMED, why);
const invalid = (why: string): RoamlinkError => new RoamlinkError(ErrorCode.INVALID_ARGUMENT, why);

/**
 * Runs a decoder so that the only thing it can throw is MALFORMED: a helper failing on input it
 * did not expect is still bad input, never a crash of the caller.
 */
function decoding<T>(what: string, f: () => T): T {
  try {
    return f();
  } catch (e) {
    if (e instanceof RoamlinkError && e.code === ErrorCode.MALFORMED) throw e;
    throw new RoamlinkError(ErrorCode.MALFORMED, `${what}: malformed`, { cause: e });
  }
}

function checkInput(b: unknown, what: string): asserts b is Uint8Array {
  if (!(b instanceof Uint8Array)) throw malformed(`${what}: not bytes`);
  if (b.length > MAX_REGISTRATION_FRAME) throw malformed(`${what}: longer than 1200 bytes`);
}

const isU32 = (v: number): boolean => Number.isInteger(v) && v >= 0 && v <= 0xffff_ffff;
const isEncapsulationCode = (v: unknown): v is Encapsulation =>
  typeof v === 'number' && Number.isInteger(v) && isEncapsulation(v);
const isVerdict = (v: unknown): v is Verdict =>
  typeof v === 'number' && Number.isInteger(v) && v >= Verdict.NONE && v <= Verdict.UNKNOWN;

function checkEncapsulation(v: unknown, field: string): asserts v is Encapsulation {
  if (!isEncapsulationCode(v)) throw invalid(`${field}: not an encapsulation code`);
}

function checkNonce(n: unknown, field: string): asserts n is Uint8Array {
  if (!(n instanceof Uint8Array) || n.length !== REG_NONCE_LENGTH) {
    throw invalid(`${field}: must be ${REG_NONCE_LENGTH} bytes`);
  }
}

function checkRound(round: number): void {
  if (!isU32(round) || round === 0) throw invalid('round: must be a u32 greater than 0');
}

function encodeList(list: readonly Encapsulation[], field: string): Uint8Array {
  if (!Array.isArray(list) || list.length > 255) throw invalid(`${field}: at most 255 codes`);
  const out = new Uint8Array(1 + list.length);
  out[0] = list.length;
  list.forEach((e, i) => {
    checkEncapsulation(e, field);
    out[1 + i] = e;
  });
  return out;
}

/** Reads a u8-counted list at `o`; unknown codes are skipped. Returns the list and the next offset. */
function decodeList(b: Uint8Array, o: number): [Encapsulation[], number] {
  if (o >= b.length) throw malformed('encapsulation list truncated');
  const n = b[o]!;
  const end = o + 1 + n;
  if (end > b.length) throw malformed('encapsulation list truncated');
  const list: Encapsulation[] = [];
  for (let i = o + 1; i < end; i++) {
    const c = b[i]!;
    if (isEncapsulation(c)) list.push(c);
  }
  return [list, end];
}

function checkLength(len: number, what: string): void {
  if (len > MAX_REGISTRATION_FRAME) throw invalid(`${what}: encoded frame exceeds 1200 bytes`);
}

// --- Outer view TLVs --------------------------------------------------------------------------

const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;
/** RFC 9110 §5.1, §5.6.2: a field name is a token. */
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;

function stringBytes(s: unknown, field: string): Uint8Array {
  // A lone surrogate would be replaced by U+FFFD on the way out and not round-trip.
  if (typeof s !== 'string' || LONE_SURROGATE.test(s)) {
    throw invalid(`${field}: not a well-formed string`);
  }
  const b = utf8(s);
  if (b.length > MAX_VIEW_STRING) throw invalid(`${field}: longer than ${MAX_VIEW_STRING} bytes`);
  return b;
}

/** UTF-8 decoding that keeps a leading U+FEFF (TextDecoder strips one as a byte order mark). */
function readString(b: Uint8Array): string {
  if (b.length > MAX_VIEW_STRING) throw malformed(`view string longer than ${MAX_VIEW_STRING}`);
  let s: string;
  try {
    s = fromUtf8(b);
  } catch (e) {
    throw new RoamlinkError(ErrorCode.MALFORMED, 'view string: bad UTF-8', { cause: e });
  }
  return b.length >= 3 && b[0] === 0xef && b[1] === 0xbb && b[2] === 0xbf ? `\uFEFF${s}` : s;
}

function tlv(tag: number, value: Uint8Array): Uint8Array {
  const out = new Uint8Array(3 + value.length);
  out[0] = tag;
  writeU16(out, 1, value.length);
  out.set(value, 3);
  return out;
}

function portTlv(tag: number, port: unknown, field: string): Uint8Array {
  if (typeof port !== 'number' || !Number.isInteger(port) || port < 1 || port > 65535) {
    throw invalid(`${field}: must be an integer 1..65535`);
  }
  const v = new Uint8Array(2);
  writeU16(v, 0, port);
  return tlv(tag, v);
}

/** ASCII lower-casing: field names are tokens, so this never changes their byte length. */
const lowerAscii = (s: string): string => s.replace(/[A-Z]/g, (c) => c.toLowerCase());

/**
 * Encodes an outer view as TLVs: srcAddr, srcPort, dstAddr, dstPort, url, host, then the headers
 * in their order, names lower-cased. Absent fields are left out; an empty header list is the same
 * as none.
 */
export function encodeOuterView(v: OuterView): Uint8Array {
  if (typeof v !== 'object' || v === null) throw invalid('view: not an object');
  const parts: Uint8Array[] = [];
  if (v.srcAddr !== undefined) {
    parts.push(tlv(OuterViewTag.SRC_ADDR, stringBytes(v.srcAddr, 'srcAddr')));
  }
  if (v.srcPort !== undefined) parts.push(portTlv(OuterViewTag.SRC_PORT, v.srcPort, 'srcPort'));
  if (v.dstAddr !== undefined) {
    parts.push(tlv(OuterViewTag.DST_ADDR, stringBytes(v.dstAddr, 'dstAddr')));
  }
  if (v.dstPort !== undefined) parts.push(portTlv(OuterViewTag.DST_PORT, v.dstPort, 'dstPort'));
  if (v.url !== undefined) parts.push(tlv(OuterViewTag.URL, stringBytes(v.url, 'url')));
  if (v.host !== undefined) parts.push(tlv(OuterViewTag.HOST, stringBytes(v.host, 'host')));
  if (v.headers !== undefined) {
    if (!Array.isArray(v.headers) || v.headers.length > MAX_VIEW_HEADERS) {
      throw invalid(`headers: at most ${MAX_VIEW_HEADERS}`);
    }
    for (const h of v.headers) {
      if (!Array.isArray(h) || h.length !== 2) throw invalid('header: not a [name, value] pair');
      const [name, value] = h;
      if (typeof name !== 'string' || !TOKEN.test(name)) throw invalid('header name: not a token');
      const n = stringBytes(lowerAscii(name), 'header name');
      const val = stringBytes(value, 'header value');
      const body = new Uint8Array(2 + n.length + val.length);
      writeU16(body, 0, n.length);
      body.set(n, 2);
      body.set(val, 2 + n.length);
      parts.push(tlv(OuterViewTag.HEADER, body));
    }
  }
  const out = concatBytes(...parts);
  checkLength(out.length, 'view');
  return out;
}

/** Path parameters read among the view's TLVs (RREQ, RREP). */
interface PathParams {
  maxDatagram?: number;
}

/** Decodes TLVs from `o` to the end of `b`; path parameters go to `params` when given. */
function readView(b: Uint8Array, o: number, params?: PathParams): OuterView {
  const v: OuterView = {};
  const headers: [string, string][] = [];
  const seen = new Set<number>();
  while (o < b.length) {
    if (o + 3 > b.length) throw malformed('view: TLV header truncated');
    const tag = b[o]!;
    const len = readU16(b, o + 1);
    const start = o + 3;
    const end = start + len;
    if (end > b.length) throw malformed('view: TLV value truncated');
    const value = b.subarray(start, end);
    o = end;
    if (tag >= OuterViewTag.SRC_ADDR && tag <= OuterViewTag.HOST) {
      // One value per field: two would leave the reader to guess which one the sender meant.
      if (seen.has(tag)) throw malformed(`view: tag ${tag} repeated`);
      seen.add(tag);
    }
    switch (tag) {
      case OuterViewTag.SRC_ADDR:
        v.srcAddr = readString(value);
        break;
      case OuterViewTag.DST_ADDR:
        v.dstAddr = readString(value);
        break;
      case OuterViewTag.URL:
        v.url = readString(value);
        break;
      case OuterViewTag.HOST:
        v.host = readString(value);
        break;
      case OuterViewTag.SRC_PORT:
      case OuterViewTag.DST_PORT: {
        if (len !== 2) throw malformed('view: port TLV must be 2 bytes');
        const port = readU16(value, 0);
        if (port === 0) throw malformed('view: port 0');
        if (tag === OuterViewTag.SRC_PORT) v.srcPort = port;
        else v.dstPort = port;
        break;
      }
      case OuterViewTag.HEADER: {
        if (headers.length === MAX_VIEW_HEADERS) throw malformed('view: too many headers');
        if (len < 2) throw malformed('view: header TLV truncated');
        const nameLen = readU16(value, 0);
        if (nameLen === 0 || 2 + nameLen > len) throw malformed('view: bad header name length');
        const name = readString(value.subarray(2, 2 + nameLen));
        if (!TOKEN.test(name)) throw malformed('view: header name is not a token');
        headers.push([lowerAscii(name), readString(value.subarray(2 + nameLen))]);
        break;
      }
      case PathParamTag.MAX_DATAGRAM:
        // Not part of a view: a bare view (decodeOuterView) skips it like any unknown tag.
        if (!params) break;
        if (params.maxDatagram !== undefined) throw malformed('maxDatagram repeated');
        if (len !== 4) throw malformed('maxDatagram TLV must be 4 bytes');
        params.maxDatagram = readU32(value, 0);
        if (params.maxDatagram < MIN_MAX_DATAGRAM) {
          throw malformed(`maxDatagram below ${MIN_MAX_DATAGRAM}`);
        }
        break;
      default:
        // Unknown tag: skipped, so that later revisions can describe more of the path.
        break;
    }
  }
  if (headers.length > 0) v.headers = headers;
  return v;
}

export function decodeOuterView(b: Uint8Array): OuterView {
  return decoding('view', () => {
    checkInput(b, 'view');
    return readView(b, 0);
  });
}

/** The path parameter TLVs of `maxDatagram`, or nothing when it is absent. */
function encodeParams(maxDatagram: number | undefined): Uint8Array {
  if (maxDatagram === undefined) return new Uint8Array(0);
  if (!isU32(maxDatagram) || maxDatagram < MIN_MAX_DATAGRAM) {
    throw invalid(`maxDatagram: must be a u32 of at least ${MIN_MAX_DATAGRAM}`);
  }
  const v = new Uint8Array(4);
  writeU32(v, 0, maxDatagram);
  return tlv(PathParamTag.MAX_DATAGRAM, v);
}

/**
 * An outer view followed by the path parameter TLVs (the candidates of handshake message 1 carry
 * them, as RREQ does). A decoder that predates the parameters reads the view alone.
 */
export function encodeViewWithParams(v: OuterView, maxDatagram?: number): Uint8Array {
  return concatBytes(encodeOuterView(v), encodeParams(maxDatagram));
}

/** Decodes what `encodeViewWithParams` wrote. */
export function decodeViewWithParams(b: Uint8Array): { view: OuterView; maxDatagram?: number } {
  return decoding('view', () => {
    checkInput(b, 'view');
    const params: PathParams = {};
    const view = readView(b, 0, params);
    return { view, ...params };
  });
}

// --- RREQ ---------------------------------------------------------------------------------------

/**
 * RREQ (0x10): u8 type | u8 encapsulation | u32 round | 8 nonce | u64 timestamp |
 * u8 n, n encapsulation codes | view TLVs to the end, then the path parameter TLVs.
 */
export function encodeRreq(r: Rreq): Uint8Array {
  checkEncapsulation(r.encapsulation, 'encapsulation');
  checkRound(r.round);
  checkNonce(r.nonce, 'nonce');
  if (!Number.isSafeInteger(r.timestamp) || r.timestamp < 0) {
    throw invalid('timestamp: must be a non-negative safe integer');
  }
  const list = encodeList(r.encapsulations, 'encapsulations');
  const view = encodeViewWithParams(r.view, r.maxDatagram);
  const len = RREQ_FIXED + list.length + view.length;
  checkLength(len, 'RREQ');
  const out = new Uint8Array(len);
  out[0] = RegFrameType.RREQ;
  out[1] = r.encapsulation;
  writeU32(out, 2, r.round);
  out.set(r.nonce, 6);
  writeU64(out, 14, r.timestamp);
  out.set(list, RREQ_FIXED);
  out.set(view, RREQ_FIXED + list.length);
  return out;
}

export function decodeRreq(b: Uint8Array): Rreq {
  return decoding('RREQ', () => {
    checkInput(b, 'RREQ');
    if (b.length < RREQ_FIXED + 1 || b[0] !== RegFrameType.RREQ) throw malformed('not an RREQ');
    const encapsulation = b[1]!;
    if (!isEncapsulation(encapsulation)) throw malformed('RREQ: unknown encapsulation');
    const round = readU32(b, 2);
    if (round === 0) throw malformed('RREQ: round 0');
    const nonce = b.slice(6, 14);
    const timestamp = readU64(b, 14);
    const [encapsulations, o] = decodeList(b, RREQ_FIXED);
    const params: PathParams = {};
    const view = readView(b, o, params);
    return { round, nonce, encapsulation, timestamp, encapsulations, view, ...params };
  });
}

// --- RREP ---------------------------------------------------------------------------------------

/**
 * RREP (0x11): u8 type | u8 encapsulation | u8 verdict | u8 decision | u8 flags (bit 0: chosen) |
 * u8 chosen encapsulation | u32 round | 8 nonce | u32 keepalive ms |
 * u8 n, n encapsulation codes | observed view TLVs to the end, then the path parameter TLVs.
 */
export function encodeRrep(r: Rrep): Uint8Array {
  checkEncapsulation(r.encapsulation, 'encapsulation');
  checkEncapsulation(r.chosenEncapsulation, 'chosenEncapsulation');
  if (!isVerdict(r.verdict)) throw invalid('verdict: not a verdict code');
  if (!Number.isInteger(r.decision) || r.decision < 0 || r.decision > 255) {
    throw invalid('decision: must be a u8');
  }
  if (typeof r.chosen !== 'boolean') throw invalid('chosen: must be a boolean');
  if (r.chosen && r.chosenEncapsulation !== r.encapsulation) {
    throw invalid('chosen path must carry the chosen encapsulation');
  }
  checkRound(r.round);
  checkNonce(r.nonce, 'nonce');
  if (!isU32(r.keepaliveMs)) throw invalid('keepaliveMs: must be a u32');
  const list = encodeList(r.encapsulations, 'encapsulations');
  const view = encodeViewWithParams(r.observed, r.maxDatagram);
  const len = RREP_FIXED + list.length + view.length;
  checkLength(len, 'RREP');
  const out = new Uint8Array(len);
  out[0] = RegFrameType.RREP;
  out[1] = r.encapsulation;
  out[2] = r.verdict;
  out[3] = r.decision;
  out[4] = r.chosen ? RREP_FLAG_CHOSEN : 0;
  out[5] = r.chosenEncapsulation;
  writeU32(out, 6, r.round);
  out.set(r.nonce, 10);
  writeU32(out, 18, r.keepaliveMs);
  out.set(list, RREP_FIXED);
  out.set(view, RREP_FIXED + list.length);
  return out;
}

export function decodeRrep(b: Uint8Array): Rrep {
  return decoding('RREP', () => {
    checkInput(b, 'RREP');
    if (b.length < RREP_FIXED + 1 || b[0] !== RegFrameType.RREP) throw malformed('not an RREP');
    const encapsulation = b[1]!;
    const verdict = b[2]!;
    const decision = b[3]!;
    // Bits other than "chosen" are reserved: sent as 0, ignored on receipt.
    const chosen = (b[4]! & RREP_FLAG_CHOSEN) !== 0;
    const chosenEncapsulation = b[5]!;
    if (!isEncapsulation(encapsulation) || !isEncapsulation(chosenEncapsulation)) {
      throw malformed('RREP: unknown encapsulation');
    }
    if (!isVerdict(verdict)) throw malformed('RREP: unknown verdict');
    if (chosen && chosenEncapsulation !== encapsulation) {
      throw malformed('RREP: chosen path with another chosen encapsulation');
    }
    const round = readU32(b, 6);
    if (round === 0) throw malformed('RREP: round 0');
    const nonce = b.slice(10, 18);
    const keepaliveMs = readU32(b, 18);
    const [encapsulations, o] = decodeList(b, RREP_FIXED);
    const params: PathParams = {};
    const observed = readView(b, o, params);
    return {
      round,
      nonce,
      encapsulation,
      verdict,
      decision,
      chosen,
      chosenEncapsulation,
      keepaliveMs,
      encapsulations,
      observed,
      ...params,
    };
  });
}

// --- PATH_CHALLENGE / PATH_RESPONSE -------------------------------------------------------------

function encodePathFrame(type: number, data: Uint8Array): Uint8Array {
  checkNonce(data, 'path challenge data');
  const out = new Uint8Array(PATH_FRAME_LENGTH);
  out[0] = type;
  out.set(data, 1);
  return out;
}

/** PATH_CHALLENGE (0x12): u8 type | 8 data. Exactly 9 bytes. */
export function encodePathChallenge(data: Uint8Array): Uint8Array {
  return encodePathFrame(RegFrameType.PATH_CHALLENGE, data);
}

/** PATH_RESPONSE (0x13): u8 type | 8 data echoed from the challenge. Exactly 9 bytes. */
export function encodePathResponse(data: Uint8Array): Uint8Array {
  return encodePathFrame(RegFrameType.PATH_RESPONSE, data);
}

export function decodePathFrame(b: Uint8Array): { type: 0x12 | 0x13; data: Uint8Array } {
  return decoding('path frame', () => {
    checkInput(b, 'path frame');
    const type = b[0];
    if (
      b.length !== PATH_FRAME_LENGTH ||
      (type !== RegFrameType.PATH_CHALLENGE && type !== RegFrameType.PATH_RESPONSE)
    ) {
      throw malformed('not a path challenge or response');
    }
    return { type, data: b.slice(1) };
  });
}

// --- PROBE / PROBE_ACK --------------------------------------------------------------------------

/** PROBE (0x14): u8 type | u8 encapsulation | u32 id | zero bytes up to `size`. */
export function encodeProbe(p: Probe): Uint8Array {
  checkEncapsulation(p.encapsulation, 'encapsulation');
  if (!isU32(p.id)) throw invalid('id: must be a u32');
  if (!Number.isInteger(p.size) || p.size < PROBE_HEADER_LENGTH) {
    throw invalid(`size: must be an integer ≥ ${PROBE_HEADER_LENGTH}`);
  }
  checkLength(p.size, 'PROBE');
  const out = new Uint8Array(p.size);
  out[0] = RegFrameType.PROBE;
  out[1] = p.encapsulation;
  writeU32(out, 2, p.id);
  return out;
}

/** The size is the frame's length as it arrived; the padding's contents are not checked. */
export function decodeProbe(b: Uint8Array): Probe {
  return decoding('PROBE', () => {
    checkInput(b, 'PROBE');
    if (b.length < PROBE_HEADER_LENGTH || b[0] !== RegFrameType.PROBE) {
      throw malformed('not a probe');
    }
    const encapsulation = b[1]!;
    if (!isEncapsulation(encapsulation)) throw malformed('PROBE: unknown encapsulation');
    return { id: readU32(b, 2), encapsulation, size: b.length };
  });
}

/** PROBE_ACK (0x15): u8 type | u32 id | u32 size. Exactly 9 bytes. */
export function encodeProbeAck(a: ProbeAck): Uint8Array {
  if (!isU32(a.id)) throw invalid('id: must be a u32');
  if (!isU32(a.size)) throw invalid('size: must be a u32');
  const out = new Uint8Array(PROBE_ACK_LENGTH);
  out[0] = RegFrameType.PROBE_ACK;
  writeU32(out, 1, a.id);
  writeU32(out, 5, a.size);
  return out;
}

export function decodeProbeAck(b: Uint8Array): ProbeAck {
  return decoding('PROBE_ACK', () => {
    checkInput(b, 'PROBE_ACK');
    if (b.length !== PROBE_ACK_LENGTH || b[0] !== RegFrameType.PROBE_ACK) {
      throw malformed('not a probe ack');
    }
    return { id: readU32(b, 1), size: readU32(b, 5) };
  });
}

// --- BINDING_TEST / BINDING_ACK -----------------------------------------------------------------

function encodeBindingFrame(type: number, f: BindingFrame): Uint8Array {
  if (!isU32(f.id)) throw invalid('id: must be a u32');
  if (!Number.isInteger(f.delayMs) || f.delayMs < 0 || f.delayMs > MAX_BINDING_DELAY_MS) {
    throw invalid(`delayMs: must be an integer 0..${MAX_BINDING_DELAY_MS}`);
  }
  const out = new Uint8Array(BINDING_FRAME_LENGTH);
  out[0] = type;
  writeU32(out, 1, f.id);
  writeU32(out, 5, f.delayMs);
  return out;
}

/** BINDING_TEST (0x16): u8 type | u32 id | u32 delay ms (≤ 300 000). Exactly 9 bytes. */
export function encodeBindingTest(f: BindingFrame): Uint8Array {
  return encodeBindingFrame(RegFrameType.BINDING_TEST, f);
}

/**
 * BINDING_ACK (0x17): u8 type | u32 id | u32 delay ms, both echoed. Exactly 9 bytes: never larger
 * than the test it answers, so it fits any anti-amplification budget the test opened.
 */
export function encodeBindingAck(f: BindingFrame): Uint8Array {
  return encodeBindingFrame(RegFrameType.BINDING_ACK, f);
}

export function decodeBindingFrame(b: Uint8Array): { type: 0x16 | 0x17 } & BindingFrame {
  return decoding('binding frame', () => {
    checkInput(b, 'binding frame');
    const type = b[0];
    if (
      b.length !== BINDING_FRAME_LENGTH ||
      (type !== RegFrameType.BINDING_TEST && type !== RegFrameType.BINDING_ACK)
    ) {
      throw malformed('not a binding test or ack');
    }
    const delayMs = readU32(b, 5);
    if (delayMs > MAX_BINDING_DELAY_MS) throw malformed('binding frame: delay above 300 s');
    return { type, id: readU32(b, 1), delayMs };
  });
}

/** What a verdict needs most, kept first when a view must shrink: the proxy headers and Host. */
const PRIORITY_HEADERS: ReadonlySet<string> = new Set([...PROXY_HEADERS, 'host']);

const utf8Length = (s: string): number => new TextEncoder().encode(s).length;

/** Cuts a string to at most `max` UTF-8 bytes, on a character boundary. */
function cut(s: string, max: number): string {
  if (utf8Length(s) <= max) return s;
  let out = '';
  for (const ch of s) {
    if (utf8Length(out + ch) > max) break;
    out += ch;
  }
  return out;
}

/**
 * Shrinks a view so that its encoding takes at most `maxBytes` (and every limit of §6.8 holds):
 * strings are cut to MAX_VIEW_STRING bytes, header names must be tokens, proxy headers are kept
 * first, and other headers are dropped from the end until it fits. A view comes from the network
 * (a proxy may add any number of headers); encoding it must never fail on that account.
 */
export function fitOuterView(v: OuterView, maxBytes: number): OuterView {
  const out: OuterView = {};
  if (v.srcAddr !== undefined) out.srcAddr = cut(v.srcAddr, MAX_VIEW_STRING);
  if (v.srcPort !== undefined && v.srcPort >= 1 && v.srcPort <= 65535) out.srcPort = v.srcPort;
  if (v.dstAddr !== undefined) out.dstAddr = cut(v.dstAddr, MAX_VIEW_STRING);
  if (v.dstPort !== undefined && v.dstPort >= 1 && v.dstPort <= 65535) out.dstPort = v.dstPort;
  if (v.url !== undefined) out.url = cut(v.url, MAX_VIEW_STRING);
  if (v.host !== undefined) out.host = cut(v.host, MAX_VIEW_STRING);
  if (v.headers && v.headers.length > 0) {
    const valid = v.headers
      .filter(([n]) => /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/.test(n) && utf8Length(n) <= MAX_VIEW_STRING)
      .map(([n, val]): [string, string] => [n.toLowerCase(), cut(val, MAX_VIEW_STRING)]);
    const first = valid.filter(([n]) => PRIORITY_HEADERS.has(n));
    const rest = valid.filter(([n]) => !PRIORITY_HEADERS.has(n));
    out.headers = [...first, ...rest].slice(0, MAX_VIEW_HEADERS);
  }
  const size = (x: OuterView): number => {
    try {
      return encodeOuterView(x).length;
    } catch {
      return Number.POSITIVE_INFINITY; // over a hard limit: certainly too big
    }
  };
  while (size(out) > maxBytes) {
    if (out.headers && out.headers.length > 0) out.headers = out.headers.slice(0, -1);
    else if (out.url !== undefined && out.url.length > 0)
      out.url = cut(out.url, Math.floor(utf8Length(out.url) / 2));
    else
      return {
        ...(out.srcAddr === undefined ? {} : { srcAddr: out.srcAddr }),
        ...(out.srcPort === undefined ? {} : { srcPort: out.srcPort }),
      };
  }
  if (out.headers?.length === 0) delete out.headers;
  return out;
}
