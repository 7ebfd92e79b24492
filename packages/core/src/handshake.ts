/**
 * roamlink's key exchange: one Noise IK round trip (`Noise_IK_25519_ChaChaPoly_BLAKE2s`, or
 * `Noise_IKpsk2_...` with a pre-shared key), framed as non-ESP control messages, whose payloads
 * carry what the SA and registration need: each side's receive SPI, the suites and encapsulations
 * it supports (in its own order of preference), and in message 1 a TAI64N timestamp so that a
 * replayed first message is refused (as WireGuard does, whitepaper §5.1).
 *
 * Message 1 (client → relay), 8-byte header then the Noise message:
 *   u32 0 (non-ESP marker, RFC 3948 §2.2) | u8 type=1 | u8 version=1 | u16 flags | e(32) |
 *   enc(s)(48) | enc(payload)(n+16)
 * Message 2 (relay → client):
 *   u32 0 | u8 type=2 | u8 version=1 | u16 flags | u32 receiver SPI (the client's, in clear, so
 *   the client finds its pending handshake) | e(32) | enc(payload)(n+16)
 *
 * The header's version and flags are bound into the Noise prologue (the type is implied by the
 * Noise message's position), so a modified header
 * fails authentication. docs/PROTOCOL.md gives every byte.
 */
import { blake2s } from '@noble/hashes/blake2.js';
import { hkdf } from '@noble/hashes/hkdf.js';
import { concatBytes, readU16, readU32, utf8, writeU16, writeU32 } from './bytes.ts';
import { ESP_MIN_SPI, ESP_SALT_BYTES, NON_ESP_MARKER_BYTES } from './constants.ts';
import { AEAD_KEY_BYTES, Suite, type X25519 } from './crypto/aead.ts';
import type { Encapsulation } from './encapsulation.ts';
import { isEncapsulation } from './encapsulation.ts';
import { ErrorCode, RoamlinkError } from './errors.ts';
import type { Keypair, RandomBytes } from './noise.ts';
import { NoiseIK } from './noise.ts';
import type { OuterView } from './path.ts';
import { decodeViewWithParams, encodeViewWithParams } from './registration-frames.ts';
import { TAI64N_BYTES } from './tai64n.ts';

export const PROTOCOL_VERSION = 1;

/** Control message types (the byte after the non-ESP marker). */
export const ControlType = {
  HANDSHAKE_INIT: 1,
  HANDSHAKE_RESP: 2,
  /** Relay → client: an ESP packet came under an SPI the relay does not know (§4.2). */
  UNKNOWN_SPI: 3,
} as const;
export type ControlType = (typeof ControlType)[keyof typeof ControlType];

export const HandshakeFlag = {
  /** The handshake is Noise_IKpsk2: a pre-shared key is mixed in (Noise §9). */
  PSK: 0x0001,
} as const;

const HEADER_BYTES = 8;
const RESP_HEADER_BYTES = 12;
const NOISE_E = 32;
const NOISE_TAG = 16;
const NOISE_S = 32 + NOISE_TAG;
/** spi + timestamp + two empty lists. */
const MIN_INIT_PAYLOAD = 4 + TAI64N_BYTES + 2;
/** spi + suite + two empty lists. */
const MIN_RESP_PAYLOAD = 4 + 1 + 2;
export const MIN_INIT_BYTES = HEADER_BYTES + NOISE_E + NOISE_S + MIN_INIT_PAYLOAD + NOISE_TAG;
export const MIN_RESP_BYTES = RESP_HEADER_BYTES + NOISE_E + MIN_RESP_PAYLOAD + NOISE_TAG;
/**
 * Upper bound on a handshake message. Message 1 with candidate views is kept under it by leaving
 * the views out when they would not fit (they are an optimisation), so that it never needs IP
 * fragmentation on a 1500-byte path.
 */
export const MAX_HANDSHAKE_BYTES = 1400;

export interface InitPayload {
  /** The client's receive SPI. */
  spi: number;
  timestamp: Uint8Array;
  /** Suites the client supports, fastest (for it) first. */
  suites: Suite[];
  /** Encapsulations the client supports, in its order of preference. */
  encapsulations: Encapsulation[];
  /**
   * Extension 1, CANDIDATE_VIEWS: the client's own outer view on each candidate path, so that the
   * relay can answer the first registration round with the handshake (docs/PROTOCOL.md §3.2).
   */
  candidates?: CandidateView[];
  /**
   * Extension 2, SMALL_SA: the client can run a second SA pair for small packets. Its receive SPI
   * for it and the suites it runs fastest on small packets (docs/PROTOCOL.md §3.7).
   */
  small?: SmallSaOffer;
}

/** What message 1 offers for the small-packet SA. */
export interface SmallSaOffer {
  spi: number;
  suites: Suite[];
}

/** One candidate path as message 1 describes it. */
export interface CandidateView {
  encapsulation: Encapsulation;
  view: OuterView;
  /** The largest datagram the client takes on this path (path parameter, as in RREQ). */
  maxDatagram?: number;
}

/** Extension types in message 1's payload. */
export const InitExtension = {
  CANDIDATE_VIEWS: 1,
  SMALL_SA: 2,
} as const;

/** Extension types in message 2's payload. */
export const RespExtension = {
  SMALL_SA: 1,
  FRESH: 2,
} as const;

export interface RespPayload {
  /** The relay's receive SPI. */
  spi: number;
  /** The suite the relay chose for this SA pair. */
  suite: Suite;
  /** Suites the relay supports, fastest (for it) first. */
  suites: Suite[];
  /** Encapsulations the relay supports, in its order of preference. */
  encapsulations: Encapsulation[];
  /** Extension 1, SMALL_SA: the relay's receive SPI and the suite of the small-packet SA. */
  small?: { spi: number; suite: Suite };
  /**
   * Extension 2, FRESH (empty): the relay held no session for this client when message 1 came (it
   * restarted, or forgot an idle client). What ran above the old SA, the stream layer, is gone
   * there; a client that meant a rekey starts it over too.
   */
  fresh?: boolean;
}

/** Keying material for one direction of ESP: RFC 4106 §8.1 / RFC 7634 §4 (key then salt). */
export interface EspKeys {
  key: Uint8Array;
  salt: Uint8Array;
}

/** What a completed handshake yields: everything needed to build the SA pair. */
export interface HandshakeResult {
  suite: Suite;
  localSpi: number;
  remoteSpi: number;
  send: EspKeys;
  receive: EspKeys;
  /** The Noise handshake hash, a unique name for this exchange (channel binding). */
  handshakeHash: Uint8Array;
  remoteStaticKey: Uint8Array;
  /** The small-packet SA pair, when both ends agreed on one (docs/PROTOCOL.md §3.7). */
  small?: SmallSaKeys;
}

/** Keys and SPIs of the second SA pair, for payloads under SMALL_PACKET_BYTES. */
export interface SmallSaKeys {
  suite: Suite;
  localSpi: number;
  remoteSpi: number;
  send: EspKeys;
  receive: EspKeys;
}

/** True if the datagram is a control message (starts with the non-ESP marker). */
export function isControl(datagram: Uint8Array): boolean {
  return (
    datagram.length > NON_ESP_MARKER_BYTES &&
    datagram[0] === 0 &&
    datagram[1] === 0 &&
    datagram[2] === 0 &&
    datagram[3] === 0
  );
}

/** UNKNOWN_SPI: the non-ESP marker, the type and the SPI the relay did not know. */
export const UNKNOWN_SPI_BYTES = NON_ESP_MARKER_BYTES + 1 + 4;

/** Writes an UNKNOWN_SPI control message (docs/PROTOCOL.md §1, §4.2). */
export function encodeUnknownSpi(spi: number): Uint8Array {
  const m = new Uint8Array(UNKNOWN_SPI_BYTES);
  m[NON_ESP_MARKER_BYTES] = ControlType.UNKNOWN_SPI;
  writeU32(m, NON_ESP_MARKER_BYTES + 1, spi);
  return m;
}

/** The SPI an UNKNOWN_SPI message names, or undefined if it is not exactly one. */
export function decodeUnknownSpi(datagram: Uint8Array): number | undefined {
  if (datagram.length !== UNKNOWN_SPI_BYTES) return undefined;
  if (datagram[NON_ESP_MARKER_BYTES] !== ControlType.UNKNOWN_SPI) return undefined;
  return readU32(datagram, NON_ESP_MARKER_BYTES + 1);
}

/** The control type of a datagram for which isControl() holds. */
export function controlType(datagram: Uint8Array): number {
  return datagram[NON_ESP_MARKER_BYTES]!;
}

/** Noise prologue: binds the protocol version and the header flags into the handshake hash. */
function prologue(flags: number): Uint8Array {
  const p = utf8('roamlink/1 handshake\0\0\0');
  p[p.length - 3] = PROTOCOL_VERSION;
  writeU16(p, p.length - 2, flags);
  return p;
}

function malformed(what: string): RoamlinkError {
  return new RoamlinkError(ErrorCode.MALFORMED, `handshake: ${what}`);
}

function checkSpi(spi: number): void {
  if (!Number.isInteger(spi) || spi < ESP_MIN_SPI || spi > 0xffff_ffff) {
    throw new RoamlinkError(ErrorCode.INVALID_ARGUMENT, `SPI must be in [256, 2^32): ${spi}`);
  }
}

function writeList(out: number[], list: readonly number[]): void {
  if (list.length > 255) throw new RoamlinkError(ErrorCode.INVALID_ARGUMENT, 'list too long');
  out.push(list.length, ...list);
}

function readList(b: Uint8Array, o: number): [number[], number] {
  if (o >= b.length) throw malformed('truncated list');
  const n = b[o]!;
  if (o + 1 + n > b.length) throw malformed('truncated list');
  return [Array.from(b.subarray(o + 1, o + 1 + n)), o + 1 + n];
}

function isSuite(v: number): v is Suite {
  return v === Suite.CHACHA20_POLY1305 || v === Suite.AES_256_GCM;
}

export function encodeInitPayload(p: InitPayload): Uint8Array {
  checkSpi(p.spi);
  if (p.timestamp.length !== TAI64N_BYTES) throw malformed('timestamp must be 12 bytes');
  const tail: number[] = [];
  writeList(tail, p.suites);
  writeList(tail, p.encapsulations);
  const exts: Uint8Array[] = [];
  if (p.candidates && p.candidates.length > 0) {
    if (p.candidates.length > 255)
      throw new RoamlinkError(ErrorCode.INVALID_ARGUMENT, 'too many candidates');
    const views = p.candidates.map((c) => encodeViewWithParams(c.view, c.maxDatagram));
    const v = new Uint8Array(1 + views.reduce((n, x) => n + 3 + x.length, 0));
    v[0] = p.candidates.length;
    let o = 1;
    p.candidates.forEach((c, i) => {
      const view = views[i]!;
      v[o] = c.encapsulation;
      writeU16(v, o + 1, view.length);
      v.set(view, o + 3);
      o += 3 + view.length;
    });
    exts.push(encodeExtension(InitExtension.CANDIDATE_VIEWS, v, 'candidate views too large'));
  }
  if (p.small) {
    // SMALL_SA: u32 SPI ‖ u8 n ‖ n suite codes.
    const { spi, suites } = p.small;
    checkSpi(spi);
    if (suites.length === 0 || suites.length > 255) {
      throw new RoamlinkError(ErrorCode.INVALID_ARGUMENT, 'small SA needs 1 to 255 suites');
    }
    const v = new Uint8Array(5 + suites.length);
    writeU32(v, 0, spi);
    v[4] = suites.length;
    v.set(suites, 5);
    exts.push(encodeExtension(InitExtension.SMALL_SA, v));
  }
  const head = new Uint8Array(4 + TAI64N_BYTES);
  writeU32(head, 0, p.spi);
  head.set(p.timestamp, 4);
  return concatBytes(head, Uint8Array.from(tail), ...exts);
}

/** One extension of message 1 or 2: u8 type ‖ u16 length ‖ value. */
function encodeExtension(
  type: number,
  value: Uint8Array,
  tooLarge = 'extension too large',
): Uint8Array {
  if (value.length > 0xffff) throw new RoamlinkError(ErrorCode.INVALID_ARGUMENT, tooLarge);
  const out = new Uint8Array(3 + value.length);
  out[0] = type;
  writeU16(out, 1, value.length);
  out.set(value, 3);
  return out;
}

/**
 * Walks the extensions from `o` to the end of `b`, handing each one's type and value to `each`.
 * A length past the end is MALFORMED; unknown types are the handler's to skip.
 */
function readExtensions(
  b: Uint8Array,
  o: number,
  each: (type: number, value: Uint8Array) => void,
): void {
  while (o < b.length) {
    if (o + 3 > b.length) throw malformed('truncated extension');
    const end = o + 3 + readU16(b, o + 1);
    if (end > b.length) throw malformed('truncated extension');
    each(b[o]!, b.subarray(o + 3, end));
    o = end;
  }
}

/** Extensions: u8 type, u16 length, value; unknown types are skipped. */
function decodeInitExtensions(b: Uint8Array, o: number, into: InitPayload): void {
  readExtensions(b, o, (type, v) => {
    if (type === InitExtension.CANDIDATE_VIEWS) {
      if (v.length < 1) throw malformed('empty candidate list');
      const n = v[0]!;
      let q = 1;
      const candidates: CandidateView[] = [];
      for (let i = 0; i < n; i++) {
        if (q + 3 > v.length) throw malformed('truncated candidate');
        const enc = v[q]!;
        const vlen = readU16(v, q + 1);
        if (q + 3 + vlen > v.length) throw malformed('truncated candidate view');
        const cv = decodeViewWithParams(v.subarray(q + 3, q + 3 + vlen));
        if (isEncapsulation(enc)) candidates.push({ encapsulation: enc, ...cv });
        q += 3 + vlen;
      }
      if (q !== v.length) throw malformed('candidate list length mismatch');
      into.candidates = candidates;
    } else if (type === InitExtension.SMALL_SA) {
      if (v.length < 5) throw malformed('truncated small SA offer');
      const spi = readU32(v, 0);
      if (spi < ESP_MIN_SPI || spi === into.spi) throw malformed('bad small SA SPI');
      if (5 + v[4]! !== v.length) throw malformed('small SA suite list length mismatch');
      const suites = Array.from(v.subarray(5)).filter(isSuite);
      // An offer with no suite this version knows is no offer.
      if (suites.length > 0) into.small = { spi, suites };
    }
  });
}

/**
 * Decodes message 1's payload. Unknown suite or encapsulation codes are skipped (a newer peer may
 * offer more); trailing bytes are reserved for extensions and ignored.
 */
export function decodeInitPayload(b: Uint8Array): InitPayload {
  if (b.length < MIN_INIT_PAYLOAD) throw malformed('init payload too short');
  const spi = readU32(b, 0);
  if (spi < ESP_MIN_SPI) throw malformed('reserved SPI');
  const timestamp = b.slice(4, 4 + TAI64N_BYTES);
  const [suites, o1] = readList(b, 4 + TAI64N_BYTES);
  const [encaps, o2] = readList(b, o1);
  const p: InitPayload = {
    spi,
    timestamp,
    suites: suites.filter(isSuite),
    encapsulations: encaps.filter(isEncapsulation),
  };
  decodeInitExtensions(b, o2, p);
  return p;
}

export function encodeRespPayload(p: RespPayload): Uint8Array {
  checkSpi(p.spi);
  const tail: number[] = [p.suite];
  writeList(tail, p.suites);
  writeList(tail, p.encapsulations);
  const head = new Uint8Array(4);
  writeU32(head, 0, p.spi);
  const exts: Uint8Array[] = [];
  if (p.small) {
    // SMALL_SA: u32 SPI ‖ u8 suite.
    checkSpi(p.small.spi);
    const v = new Uint8Array(5);
    writeU32(v, 0, p.small.spi);
    v[4] = p.small.suite;
    exts.push(encodeExtension(RespExtension.SMALL_SA, v));
  }
  if (p.fresh) exts.push(encodeExtension(RespExtension.FRESH, new Uint8Array(0)));
  return concatBytes(head, Uint8Array.from(tail), ...exts);
}

export function decodeRespPayload(b: Uint8Array): RespPayload {
  if (b.length < MIN_RESP_PAYLOAD) throw malformed('response payload too short');
  const spi = readU32(b, 0);
  if (spi < ESP_MIN_SPI) throw malformed('reserved SPI');
  const suite = b[4]!;
  if (!isSuite(suite)) throw malformed(`unknown suite ${suite}`);
  const [suites, o1] = readList(b, 5);
  const [encaps, o2] = readList(b, o1);
  const p: RespPayload = {
    spi,
    suite,
    suites: suites.filter(isSuite),
    encapsulations: encaps.filter(isEncapsulation),
  };
  // Extensions, as in message 1; unknown types are skipped.
  readExtensions(b, o2, (type, v) => {
    if (type === RespExtension.FRESH) {
      if (v.length !== 0) throw malformed('bad fresh extension');
      p.fresh = true;
      return;
    }
    if (type !== RespExtension.SMALL_SA) return;
    if (v.length !== 5) throw malformed('bad small SA extension');
    const smallSpi = readU32(v, 0);
    const smallSuite = v[4]!;
    if (smallSpi < ESP_MIN_SPI || smallSpi === spi) throw malformed('bad small SA SPI');
    if (!isSuite(smallSuite)) throw malformed(`unknown small SA suite ${smallSuite}`);
    p.small = { spi: smallSpi, suite: smallSuite };
  });
  return p;
}

/**
 * The relay picks the suite: the one with the smallest sum of positions in the two speed-ordered
 * lists (both ends pay for every packet, one sealing and one opening), ties going to the relay's
 * order, since a relay serves many clients.
 */
export function chooseSuite(clientSuites: readonly Suite[], relaySuites: readonly Suite[]): Suite {
  let best: Suite | undefined;
  let bestScore = Number.POSITIVE_INFINITY;
  relaySuites.forEach((s, ri) => {
    const ci = clientSuites.indexOf(s);
    if (ci < 0) return;
    if (ci + ri < bestScore) {
      bestScore = ci + ri;
      best = s;
    }
  });
  if (best === undefined) {
    throw new RoamlinkError(ErrorCode.NO_COMMON_SUITE, 'no cipher suite in common');
  }
  return best;
}

/**
 * ESP keying material from a Noise Split() key: HKDF (RFC 5869) over BLAKE2s, info names the
 * protocol and suite, 36 bytes = 32-byte key || 4-byte salt (RFC 4106 §8.1, RFC 7634 §4).
 */
export function deriveEspKeys(splitKey: Uint8Array, suite: Suite, small = false): EspKeys {
  // The small-packet SA (§3.7) has its own label: its keys are independent of the bulk SA's even
  // when both run the same suite.
  const info = utf8(small ? 'roamlink/1 esp small \0' : 'roamlink/1 esp keys \0');
  info[info.length - 1] = suite;
  const km = hkdf(blake2s, splitKey, undefined, info, AEAD_KEY_BYTES + ESP_SALT_BYTES);
  return { key: km.subarray(0, AEAD_KEY_BYTES), salt: km.subarray(AEAD_KEY_BYTES) };
}

export interface InitiatorOptions {
  staticKeypair: Keypair;
  relayStaticKey: Uint8Array;
  psk?: Uint8Array;
  spi: number;
  timestamp: Uint8Array;
  suites: readonly Suite[];
  encapsulations: readonly Encapsulation[];
  /** Views of the candidate paths (first handshake only); left out if they would not fit. */
  candidates?: readonly CandidateView[];
  /** Offer a small-packet SA pair (§3.7): our receive SPI for it and our small-packet order. */
  small?: SmallSaOffer | undefined;
  random: RandomBytes;
  /** Fixed ephemeral key: tests only. */
  ephemeralKeypair?: Keypair;
  /** X25519 backend (the provider's, when it has one); default the core's own. */
  x25519?: X25519 | undefined;
}

/** The client's side of one handshake: message 1 out, message 2 in. */
export class InitiatorHandshake {
  readonly spi: number;
  readonly message: Uint8Array;
  /** True if message 1 carries the candidate views (the relay then answers round 1 at once). */
  readonly carriesViews: boolean;
  readonly timestamp: Uint8Array;
  readonly #noise: NoiseIK;
  readonly #flags: number;
  readonly #suites: readonly Suite[];
  readonly #small: SmallSaOffer | undefined;

  constructor(o: InitiatorOptions) {
    checkSpi(o.spi);
    if (o.suites.length === 0) throw new RoamlinkError(ErrorCode.NO_COMMON_SUITE, 'no suites');
    if (o.small && o.small.spi === o.spi) {
      throw new RoamlinkError(ErrorCode.INVALID_ARGUMENT, 'small SA needs an SPI of its own');
    }
    this.spi = o.spi;
    this.timestamp = o.timestamp;
    this.#suites = o.suites;
    this.#small = o.small?.suites.length ? o.small : undefined;
    this.#flags = o.psk ? HandshakeFlag.PSK : 0;
    this.#noise = new NoiseIK('initiator', {
      prologue: prologue(this.#flags),
      staticKeypair: o.staticKeypair,
      remoteStaticKey: o.relayStaticKey,
      random: o.random,
      ...(o.x25519 ? { x25519: o.x25519 } : {}),
      ...(o.psk ? { psk: o.psk } : {}),
      ...(o.ephemeralKeypair ? { ephemeralKeypair: o.ephemeralKeypair } : {}),
    });
    const base = {
      spi: o.spi,
      timestamp: o.timestamp,
      suites: [...o.suites],
      encapsulations: [...o.encapsulations],
      ...(this.#small ? { small: { spi: this.#small.spi, suites: [...this.#small.suites] } } : {}),
    };
    let payload = encodeInitPayload(base);
    let carriesViews = false;
    if (o.candidates && o.candidates.length > 0) {
      const withViews = encodeInitPayload({ ...base, candidates: [...o.candidates] });
      const overhead = HEADER_BYTES + NOISE_E + NOISE_S + NOISE_TAG;
      if (overhead + withViews.length <= MAX_HANDSHAKE_BYTES) {
        payload = withViews;
        carriesViews = true;
      }
    }
    this.carriesViews = carriesViews;
    const body = this.#noise.writeMessage(payload);
    const msg = new Uint8Array(HEADER_BYTES + body.length);
    msg[4] = ControlType.HANDSHAKE_INIT;
    msg[5] = PROTOCOL_VERSION;
    writeU16(msg, 6, this.#flags);
    msg.set(body, HEADER_BYTES);
    this.message = msg;
  }

  /** The receiver SPI in a response's clear header, to find the pending handshake it answers. */
  static responseReceiverSpi(msg: Uint8Array): number | undefined {
    if (msg.length < RESP_HEADER_BYTES || !isControl(msg)) return undefined;
    if (msg[4] !== ControlType.HANDSHAKE_RESP) return undefined;
    return readU32(msg, 8);
  }

  /**
   * Reads message 2. Throws a RoamlinkError (MALFORMED, AUTH_FAILED, NO_COMMON_SUITE) and stays
   * ready for the genuine response if this one is bad.
   */
  consume(msg: Uint8Array): { result: HandshakeResult; payload: RespPayload } {
    if (msg.length < MIN_RESP_BYTES || msg.length > MAX_HANDSHAKE_BYTES || !isControl(msg)) {
      throw malformed('bad response length');
    }
    if (msg[4] !== ControlType.HANDSHAKE_RESP || msg[5] !== PROTOCOL_VERSION) {
      throw malformed('not a version 1 response');
    }
    if (readU16(msg, 6) !== this.#flags) throw malformed('flags differ from ours');
    if (readU32(msg, 8) !== this.spi) throw malformed('response for another handshake');
    const raw = this.#noise.readMessage(msg.subarray(RESP_HEADER_BYTES));
    const payload = decodeRespPayload(raw);
    if (!this.#suites.includes(payload.suite)) {
      throw new RoamlinkError(ErrorCode.NO_COMMON_SUITE, 'relay chose a suite we did not offer');
    }
    const small = payload.small;
    if (small && !this.#small?.suites.includes(small.suite)) {
      throw new RoamlinkError(ErrorCode.NO_COMMON_SUITE, 'relay chose a small SA we did not offer');
    }
    const { sendKey, receiveKey } = this.#noise.split();
    return {
      payload,
      result: {
        suite: payload.suite,
        localSpi: this.spi,
        remoteSpi: payload.spi,
        send: deriveEspKeys(sendKey, payload.suite),
        receive: deriveEspKeys(receiveKey, payload.suite),
        handshakeHash: this.#noise.handshakeHash,
        remoteStaticKey: this.#noise.remoteStaticKey!,
        ...(small && this.#small
          ? {
              small: {
                suite: small.suite,
                localSpi: this.#small.spi,
                remoteSpi: small.spi,
                send: deriveEspKeys(sendKey, small.suite, true),
                receive: deriveEspKeys(receiveKey, small.suite, true),
              },
            }
          : {}),
      },
    };
  }
}

export interface ResponderOptions {
  staticKeypair: Keypair;
  random: RandomBytes;
  ephemeralKeypair?: Keypair;
  /** X25519 backend (the provider's, when it has one); default the core's own. */
  x25519?: X25519 | undefined;
}

/**
 * The relay's side of one handshake, in two steps so that the caller can apply policy between
 * them: `read` authenticates message 1 and reveals the client's static key and payload; the
 * caller checks the allow-list and the timestamp, then `respond` writes message 2.
 */
export class ResponderHandshake {
  readonly flags: number;
  readonly payload: InitPayload;
  readonly remoteStaticKey: Uint8Array;
  /** The client's ephemeral key: identical in duplicates of the same message 1. */
  readonly remoteEphemeralKey: Uint8Array;
  readonly #noise: NoiseIK;

  private constructor(noise: NoiseIK, flags: number, payload: InitPayload) {
    this.#noise = noise;
    this.flags = flags;
    this.payload = payload;
    this.remoteStaticKey = noise.remoteStaticKey!;
    this.remoteEphemeralKey = noise.remoteEphemeralKey!;
  }

  /** Authenticates message 1. Throws RoamlinkError (MALFORMED, AUTH_FAILED) on bad input. */
  static read(msg: Uint8Array, o: ResponderOptions): ResponderHandshake {
    if (msg.length < MIN_INIT_BYTES || msg.length > MAX_HANDSHAKE_BYTES || !isControl(msg)) {
      throw malformed('bad init length');
    }
    if (msg[4] !== ControlType.HANDSHAKE_INIT || msg[5] !== PROTOCOL_VERSION) {
      throw malformed('not a version 1 init');
    }
    const flags = readU16(msg, 6);
    if ((flags & ~HandshakeFlag.PSK) !== 0) throw malformed('unknown flags');
    const noise = new NoiseIK('responder', {
      prologue: prologue(flags),
      staticKeypair: o.staticKeypair,
      usePsk: (flags & HandshakeFlag.PSK) !== 0,
      random: o.random,
      ...(o.x25519 ? { x25519: o.x25519 } : {}),
      ...(o.ephemeralKeypair ? { ephemeralKeypair: o.ephemeralKeypair } : {}),
    });
    const payload = decodeInitPayload(noise.readMessage(msg.subarray(HEADER_BYTES)));
    return new ResponderHandshake(noise, flags, payload);
  }

  get usesPsk(): boolean {
    return (this.flags & HandshakeFlag.PSK) !== 0;
  }

  /** Writes message 2 and returns it with the keys. `psk` is required iff the client used one. */
  respond(o: {
    spi: number;
    suites: readonly Suite[];
    encapsulations: readonly Encapsulation[];
    psk?: Uint8Array;
    /**
     * Our small-packet order and a second receive SPI (≠ `spi`), for when the client offers a
     * small-packet SA; it is used only if the choice differs from the bulk suite (§3.7).
     */
    small?: { spi: number; suites: readonly Suite[] } | undefined;
    /** The relay holds no session for this client: say so (extension FRESH). */
    fresh?: boolean;
  }): { message: Uint8Array; result: HandshakeResult } {
    checkSpi(o.spi);
    const suite = chooseSuite(this.payload.suites, o.suites);
    const small = this.#chooseSmall(suite, o.spi, o.small);
    if (this.usesPsk) {
      if (!o.psk)
        throw new RoamlinkError(ErrorCode.PEER_NOT_ALLOWED, 'client used a psk, we have none');
      this.#noise.setPsk(o.psk);
    } else if (o.psk) {
      throw new RoamlinkError(ErrorCode.PEER_NOT_ALLOWED, 'a pre-shared key is required');
    }
    const body = this.#noise.writeMessage(
      encodeRespPayload({
        spi: o.spi,
        suite,
        suites: [...o.suites],
        encapsulations: [...o.encapsulations],
        ...(small ? { small } : {}),
        ...(o.fresh ? { fresh: true } : {}),
      }),
    );
    const message = new Uint8Array(RESP_HEADER_BYTES + body.length);
    message[4] = ControlType.HANDSHAKE_RESP;
    message[5] = PROTOCOL_VERSION;
    writeU16(message, 6, this.flags);
    writeU32(message, 8, this.payload.spi);
    message.set(body, RESP_HEADER_BYTES);
    // Noise Split(): the initiator sends with k1, so the responder receives with it.
    const { sendKey, receiveKey } = this.#noise.split();
    return {
      message,
      result: {
        suite,
        localSpi: o.spi,
        remoteSpi: this.payload.spi,
        send: deriveEspKeys(sendKey, suite),
        receive: deriveEspKeys(receiveKey, suite),
        handshakeHash: this.#noise.handshakeHash,
        remoteStaticKey: this.remoteStaticKey,
        ...(small && this.payload.small
          ? {
              small: {
                suite: small.suite,
                localSpi: small.spi,
                remoteSpi: this.payload.small.spi,
                send: deriveEspKeys(sendKey, small.suite, true),
                receive: deriveEspKeys(receiveKey, small.suite, true),
              },
            }
          : {}),
      },
    };
  }

  /**
   * The small-packet SA (§3.7): chosen from the two small-packet orders as the bulk suite is from
   * theirs; none if either side did not offer one, nothing is common, or the choice is the bulk
   * suite itself (one SA then serves all sizes, and a backend may still switch by size locally).
   */
  #chooseSmall(
    bulk: Suite,
    spi: number,
    ours: { spi: number; suites: readonly Suite[] } | undefined,
  ): { spi: number; suite: Suite } | undefined {
    const theirs = this.payload.small;
    if (!theirs || !ours || ours.suites.length === 0) return undefined;
    if (ours.spi === spi) {
      throw new RoamlinkError(ErrorCode.INVALID_ARGUMENT, 'small SA needs an SPI of its own');
    }
    checkSpi(ours.spi);
    let suite: Suite;
    try {
      suite = chooseSuite(theirs.suites, ours.suites);
    } catch {
      return undefined;
    }
    return suite === bulk ? undefined : { spi: ours.spi, suite };
  }
}
