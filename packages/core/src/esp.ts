/**
 * ESP packet codec and per-direction SA state (RFC 4303), with the combined-mode AEAD suites of
 * RFC 4106 (AES-GCM) and RFC 7634 (ChaCha20-Poly1305).
 *
 *   0                   1                   2                   3
 *   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 *   |               Security Parameters Index (SPI)                 |
 *   |                Sequence Number (low 32 bits)                  |
 *   |                  IV (8 octets, explicit)                      |
 *   ~                  Payload Data (encrypted)                     ~
 *   |      Padding 1,2,3,... (0-255)     | Pad Length | Next Header |
 *   |                 ICV (16 octets, the AEAD tag)                 |
 *
 * AEAD inputs (RFC 4106 §4-5, RFC 7634 §2-3):
 *   nonce = salt (4) || IV (8)
 *   AAD   = SPI || Sequence Number            (32-bit sequence numbers)
 *   AAD   = SPI || Seq high 32 || Seq low 32  (extended sequence numbers, RFC 4303 §2.2.1)
 *
 * roamlink always uses 64-bit ESNs and sets IV = the 64-bit sequence number, which is unique per
 * key as RFC 4106 §3.1 and RFC 7634 §2 require.
 *
 * Receive order (RFC 4303 §3.4.3): replay pre-check → ICV → padding → replay window update. Only an
 * authenticated, in-window packet moves any state; everything else is counted by reason and
 * dropped, never thrown.
 */
import {
  ESP_ALIGN,
  ESP_HEADER_BYTES,
  ESP_ICV_BYTES,
  ESP_IV_BYTES,
  ESP_MIN_SPI,
  ESP_PAYLOAD_OFFSET,
  ESP_SALT_BYTES,
  ESP_TRAILER_BYTES,
  MAX_SEQUENCE,
} from './constants.ts';
import type { Aead } from './crypto/aead.ts';
import { AEAD_NONCE_BYTES } from './crypto/aead.ts';
import { ErrorCode, RoamlinkError } from './errors.ts';
import { inferSequence } from './esn.ts';
import { DEFAULT_REPLAY_WINDOW, ReplayWindow } from './replay.ts';

const TWO_32 = 0x1_0000_0000;
/** Size of the slabs that EspSender.seal carves packets from. */
const SLAB_BYTES = 256 * 1024;
/** Smallest valid ESP packet: header, IV, a 4-byte aligned trailer block, ICV. */
export const ESP_MIN_PACKET_BYTES = ESP_PAYLOAD_OFFSET + ESP_ALIGN + ESP_ICV_BYTES;

/** Why a received packet was dropped. 0 means it was accepted. Stable numbers for metrics. */
export const Drop = {
  NONE: 0,
  TOO_SHORT: 1,
  BAD_SPI: 2,
  REPLAY: 3,
  BAD_ICV: 4,
  BAD_PADDING: 5,
  MALFORMED: 6,
} as const;
export type Drop = (typeof Drop)[keyof typeof Drop];
export const DROP_NAMES = [
  'none',
  'too_short',
  'bad_spi',
  'replay',
  'bad_icv',
  'bad_padding',
  'malformed',
] as const;
export type DropName = (typeof DROP_NAMES)[number];

/** Drop counters by reason; one object per receiver (and summed by sessions). */
export type DropCounters = Record<Exclude<DropName, 'none'>, number>;
export function newDropCounters(): DropCounters {
  return { too_short: 0, bad_spi: 0, replay: 0, bad_icv: 0, bad_padding: 0, malformed: 0 };
}

/** Total ESP packet length for a payload of `payloadLength` bytes. */
export function espPacketLength(payloadLength: number): number {
  const block = (payloadLength + ESP_TRAILER_BYTES + ESP_ALIGN - 1) & ~(ESP_ALIGN - 1);
  return ESP_PAYLOAD_OFFSET + block + ESP_ICV_BYTES;
}

/** Bytes after a payload that sealing in place may write (padding, trailer, ICV): at most this. */
export const ESP_TAIL_RESERVE = ESP_ALIGN - 1 + ESP_TRAILER_BYTES + ESP_ICV_BYTES;

/**
 * Seals a payload in the buffer it was built in: `payload` is a view with ESP_PAYLOAD_OFFSET
 * bytes free before it and ESP_TAIL_RESERVE after it, both the caller's scratch (a builder that
 * reserved them, as the stream layer does). Returns the packet, a view over the same memory, or
 * undefined if the room is not there (the caller then seals a copy).
 */
export function sealReserved(
  tx: EspSender,
  payload: Uint8Array,
  nextHeader: number,
): Uint8Array | undefined {
  const start = payload.byteOffset - ESP_PAYLOAD_OFFSET;
  const len = espPacketLength(payload.length);
  if (start < 0 || start + len > payload.buffer.byteLength) return undefined;
  const buf = new Uint8Array(payload.buffer, start, len);
  tx.sealInPlace(buf, 0, payload.length, nextHeader);
  return buf;
}

/** Reads the SPI of a datagram that is known to be ESP (its first four bytes). */
export function readSpi(packet: Uint8Array): number {
  return ((packet[0]! << 24) | (packet[1]! << 16) | (packet[2]! << 8) | packet[3]!) >>> 0;
}

function writeU32(b: Uint8Array, o: number, v: number): void {
  b[o] = v >>> 24;
  b[o + 1] = v >>> 16;
  b[o + 2] = v >>> 8;
  b[o + 3] = v;
}

/** SAs use SPIs from 256 up: RFC 4303 §2.1 reserves 1..255, and 0 for local use. */
function checkSpi(spi: number): void {
  if (!Number.isInteger(spi) || spi < ESP_MIN_SPI || spi > 0xffff_ffff) {
    throw new RoamlinkError(ErrorCode.INVALID_ARGUMENT, `SPI must be in [256, 2^32): ${spi}`);
  }
}

function checkKeying(spi: number, salt: Uint8Array): void {
  // The codec itself takes any 32-bit SPI (a published vector uses 0); SAs are stricter.
  if (!Number.isInteger(spi) || spi < 0 || spi > 0xffff_ffff) {
    throw new RoamlinkError(ErrorCode.INVALID_ARGUMENT, `SPI must be a 32-bit number: ${spi}`);
  }
  if (salt.length !== ESP_SALT_BYTES) {
    throw new RoamlinkError(ErrorCode.INVALID_ARGUMENT, 'ESP salt must be 4 bytes');
  }
}

/** Where an opened packet's fields go; reuse one per receive loop (no allocation per packet). */
export interface EspOpened {
  seq: number;
  nextHeader: number;
  /** A view into the packet buffer, decrypted in place. */
  payload: Uint8Array;
}

export function newEspOpened(): EspOpened {
  return { seq: 0, nextHeader: 0, payload: new Uint8Array(0) };
}

/**
 * The stateless part of one direction of an SA: the AEAD, the salt, the SPI and the sequence
 * number mode, with scratch nonce and AAD buffers. It frames and seals, or authenticates and
 * unframes, one packet for an explicitly given sequence number and IV; counters and the replay
 * window live in EspSender and EspReceiver.
 */
export class EspCipher {
  readonly spi: number;
  readonly esn: boolean;
  readonly aead: Aead;
  readonly #nonce = new Uint8Array(AEAD_NONCE_BYTES);
  readonly #aad: Uint8Array;

  constructor(spi: number, aead: Aead, salt: Uint8Array, esn = true) {
    checkKeying(spi, salt);
    this.spi = spi;
    this.aead = aead;
    this.esn = esn;
    this.#nonce.set(salt, 0);
    this.#aad = new Uint8Array(esn ? 12 : 8);
    writeU32(this.#aad, 0, spi);
  }

  /** RFC 4106 §5 / RFC 7634 §2.1: SPI || [seq high ||] seq low. */
  #setAad(seqHi: number, seqLo: number): void {
    if (this.esn) {
      writeU32(this.#aad, 4, seqHi);
      writeU32(this.#aad, 8, seqLo);
    } else {
      writeU32(this.#aad, 4, seqLo);
    }
  }

  /**
   * Frames and seals `payload` into `out` at `o` (espPacketLength(payload.length) bytes must be
   * free there). Returns the number of bytes written.
   */
  seal(
    out: Uint8Array,
    o: number,
    payload: Uint8Array,
    nextHeader: number,
    seqHi: number,
    seqLo: number,
    ivHi: number,
    ivLo: number,
  ): number {
    out.set(payload, o + ESP_PAYLOAD_OFFSET);
    return this.sealAt(out, o, payload.length, nextHeader, seqHi, seqLo, ivHi, ivLo);
  }

  /**
   * Like seal, for a payload that the caller already wrote at `out[o + 16, o + 16 + length)`:
   * the zero-copy path, for layers that build their frames straight into packet buffers.
   */
  sealAt(
    out: Uint8Array,
    o: number,
    payloadLength: number,
    nextHeader: number,
    seqHi: number,
    seqLo: number,
    ivHi: number,
    ivLo: number,
  ): number {
    const block = (payloadLength + ESP_TRAILER_BYTES + ESP_ALIGN - 1) & ~(ESP_ALIGN - 1);
    const padLen = block - payloadLength - ESP_TRAILER_BYTES;
    const start = o + ESP_PAYLOAD_OFFSET;
    const end = start + block;
    writeU32(out, o, this.spi);
    writeU32(out, o + 4, seqLo);
    writeU32(out, o + 8, ivHi);
    writeU32(out, o + 12, ivLo);
    // RFC 4303 §2.4: padding bytes are 1, 2, 3, ...
    for (let i = 1; i <= padLen; i++) out[start + payloadLength + i - 1] = i;
    out[end - 2] = padLen;
    out[end - 1] = nextHeader;
    writeU32(this.#nonce, 4, ivHi);
    writeU32(this.#nonce, 8, ivLo);
    this.#setAad(seqHi, seqLo);
    this.aead.seal(this.#nonce, this.#aad, out, start, end);
    return end + ESP_ICV_BYTES - o;
  }

  /**
   * Authenticates and decrypts `packet` (whose length the caller has checked) in place, for the
   * given full sequence number, and checks the padding. Fills `out.nextHeader` and `out.payload`.
   */
  open(packet: Uint8Array, seqHi: number, seqLo: number, out: EspOpened): Drop {
    const nonce = this.#nonce;
    for (let i = 0; i < ESP_IV_BYTES; i++) nonce[4 + i] = packet[ESP_HEADER_BYTES + i]!;
    this.#setAad(seqHi, seqLo);
    let start = ESP_PAYLOAD_OFFSET;
    let end = packet.length - ESP_ICV_BYTES;
    let plain = packet;
    const aead = this.aead;
    if (aead.openOut) {
      // The backend hands its own output over: no copy back into the packet.
      const pt = aead.openOut(nonce, this.#aad, packet, start, end);
      if (!pt) return Drop.BAD_ICV;
      plain = pt;
      end -= start;
      start = 0;
    } else if (!aead.open(nonce, this.#aad, packet, start, end)) {
      return Drop.BAD_ICV;
    }
    const padLen = plain[end - 2]!;
    const payloadEnd = end - ESP_TRAILER_BYTES - padLen;
    if (payloadEnd < start) return Drop.BAD_PADDING;
    for (let i = 1; i <= padLen; i++) {
      if (plain[payloadEnd + i - 1] !== i) return Drop.BAD_PADDING;
    }
    out.nextHeader = plain[end - 1]!;
    out.payload = plain.subarray(start, payloadEnd);
    return Drop.NONE;
  }
}

/** Checks the length rules every ESP packet must meet before any crypto is spent on it. */
export function checkEspLength(packet: Uint8Array): Drop {
  const len = packet.length;
  if (len < ESP_MIN_PACKET_BYTES) return Drop.TOO_SHORT;
  // RFC 4303 §2.4: the encrypted block ends on a 4-byte boundary.
  if ((len - ESP_PAYLOAD_OFFSET - ESP_ICV_BYTES) % ESP_ALIGN !== 0) return Drop.MALFORMED;
  return Drop.NONE;
}

export interface EspSenderOptions {
  /** Peer's receive SPI. */
  spi: number;
  aead: Aead;
  salt: Uint8Array;
  /** Extended (64-bit) sequence numbers, RFC 4303 §2.2.1. Default true. */
  esn?: boolean;
  /** Last sequence number used (the next packet carries seq + 1). Default 0. */
  seq?: number;
}

/** Outbound half of an SA: the cipher and the sequence counter. */
export class EspSender {
  readonly spi: number;
  readonly cipher: EspCipher;
  /** Last sequence number sent. */
  seq: number;
  readonly maxSequence: number;
  #slab: Uint8Array = new Uint8Array(0);
  #slabUsed = 0;

  constructor(o: EspSenderOptions) {
    checkSpi(o.spi);
    this.cipher = new EspCipher(o.spi, o.aead, o.salt, o.esn ?? true);
    this.spi = o.spi;
    this.seq = o.seq ?? 0;
    this.maxSequence = this.cipher.esn ? MAX_SEQUENCE : 0xffff_ffff;
  }

  /**
   * Seals `payload` into a new ESP packet with the next sequence number. The packet is a view
   * carved from a slab that this sender owns (as Node's Buffer pool does): allocating a fresh
   * ArrayBuffer per packet costs more than the framing itself. A packet keeps its slab alive, so
   * a caller that holds packets for long should copy them.
   */
  seal(payload: Uint8Array, nextHeader: number): Uint8Array {
    const len = espPacketLength(payload.length);
    let out: Uint8Array;
    if (len > SLAB_BYTES >> 4) {
      out = new Uint8Array(len);
    } else {
      if (this.#slabUsed + len > this.#slab.length) {
        this.#slab = new Uint8Array(SLAB_BYTES);
        this.#slabUsed = 0;
      }
      out = this.#slab.subarray(this.#slabUsed, this.#slabUsed + len);
      this.#slabUsed += (len + 7) & ~7; // keep every packet 8-byte aligned
    }
    this.sealInto(out, 0, payload, nextHeader);
    return out;
  }

  /**
   * Seals into `out` at `offset` (which must have espPacketLength(payload.length) bytes free) and
   * returns the number of bytes written. Throws SA_EXPIRED when the sequence space is used up —
   * RFC 4303 §3.3.3: the counter must never cycle; sessions rekey long before this.
   */
  sealInto(out: Uint8Array, offset: number, payload: Uint8Array, nextHeader: number): number {
    out.set(payload, offset + ESP_PAYLOAD_OFFSET);
    return this.sealInPlace(out, offset, payload.length, nextHeader);
  }

  /**
   * The zero-copy path: the payload is already at `buf[offset + 16, offset + 16 + length)` (the
   * caller built it there, leaving room for the header and the trailer), and is sealed in place.
   * Returns the packet length.
   */
  sealInPlace(buf: Uint8Array, offset: number, payloadLength: number, nextHeader: number): number {
    if (this.seq >= this.maxSequence) {
      throw new RoamlinkError(ErrorCode.SA_EXPIRED, 'ESP sequence number space exhausted');
    }
    const seq = ++this.seq;
    const hi = Math.floor(seq / TWO_32);
    const lo = seq >>> 0;
    // RFC 4106 §3.1, RFC 7634 §2: the IV must never repeat under one key; the sequence number
    // never does, so it is the IV.
    return this.cipher.sealAt(buf, offset, payloadLength, nextHeader, hi, lo, hi, lo);
  }
}

export interface EspReceiverOptions {
  /** Our receive SPI. */
  spi: number;
  aead: Aead;
  salt: Uint8Array;
  esn?: boolean;
  /** Replay window width in packets (default 8192). */
  replayWindow?: number;
}

/** Inbound half of an SA: the cipher, the anti-replay window and drop counters. */
export class EspReceiver {
  readonly spi: number;
  readonly cipher: EspCipher;
  readonly replay: ReplayWindow;
  readonly drops: DropCounters = newDropCounters();
  /** Packets accepted. */
  received = 0;

  constructor(o: EspReceiverOptions) {
    checkSpi(o.spi);
    this.cipher = new EspCipher(o.spi, o.aead, o.salt, o.esn ?? true);
    this.spi = o.spi;
    this.replay = new ReplayWindow(o.replayWindow ?? DEFAULT_REPLAY_WINDOW);
  }

  /**
   * Authenticates and decrypts `packet` in place. On success fills `out` and returns Drop.NONE;
   * otherwise counts the reason, leaves every piece of state as it was, and returns it.
   */
  open(packet: Uint8Array, out: EspOpened): Drop {
    const r = this.#open(packet, out);
    if (r !== Drop.NONE) this.drops[DROP_NAMES[r] as Exclude<DropName, 'none'>]++;
    else this.received++;
    return r;
  }

  #open(packet: Uint8Array, out: EspOpened): Drop {
    const bad = checkEspLength(packet);
    if (bad !== Drop.NONE) return bad;
    if (readSpi(packet) !== this.spi) return Drop.BAD_SPI;
    const lo = ((packet[4]! << 24) | (packet[5]! << 16) | (packet[6]! << 8) | packet[7]!) >>> 0;
    const replay = this.replay;
    // RFC 4303 Appendix A2.2: the high half is inferred from the window, never sent.
    const seq = this.cipher.esn ? inferSequence(lo, replay.top, replay.size) : lo;
    // RFC 4303 §3.4.3: the cheap replay check comes before the ICV is computed.
    if (seq < 1 || !replay.check(seq)) return Drop.REPLAY;
    const r = this.cipher.open(packet, Math.floor(seq / TWO_32), lo, out);
    if (r !== Drop.NONE) return r;
    // Only now, with the packet authenticated and well formed, may the window move.
    if (!replay.update(seq)) return Drop.REPLAY;
    out.seq = seq;
    return Drop.NONE;
  }
}
