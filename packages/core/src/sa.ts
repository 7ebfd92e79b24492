/**
 * Security associations. An SA pair is what one handshake yields: an outbound ESP half (the
 * peer's SPI, our send key, our counter) and an inbound half (our SPI, the receive key, the
 * replay window). A session holds up to three generations of them — previous, current, next —
 * so that a rekey never drops or delays a packet (the slots of wireguard-go's keypair.go).
 *
 * The path (where the peer is and through which encapsulation) is deliberately not part of the
 * keys: it belongs to the session, changes by signalling, and survives every rekey; a rekey
 * changes keys and never the path. That separation is the point of WO 03/063444.
 */
import { SMALL_PACKET_BYTES } from './constants.ts';
import type { CryptoProvider, Suite } from './crypto/aead.ts';
import { Suite as Suites } from './crypto/aead.ts';
import { EspReceiver, EspSender } from './esp.ts';
import type { EspKeys, HandshakeResult } from './handshake.ts';

/** When to rekey and when to stop using keys. Times in milliseconds. */
export interface SaLimits {
  /** The initiator starts a new handshake once the current keys are this old (default 120 s). */
  rekeyAfterMs: number;
  /** Keys this old are never used again, in either direction (default 180 s). */
  rejectAfterMs: number;
  /** The initiator rekeys once either direction has used this many sequence numbers. */
  rekeyAfterPackets: number;
  /** Hard limit on sequence numbers under one key, in either direction. */
  rejectAfterPackets: number;
}

/**
 * Defaults. Times follow WireGuard (REKEY_AFTER_TIME 120 s, REJECT_AFTER_TIME 180 s). Packet
 * limits follow the AEAD confidentiality limits of RFC 9001 §6.6: 2^23 packets for AES-GCM
 * (conservatively, for full-size packets) and far more for ChaCha20-Poly1305, where the 53-bit
 * counter of this implementation is the bound; rejection comes well after rekeying starts and
 * well before any counter could wrap.
 */
export function defaultLimits(suite: Suite): SaLimits {
  if (suite === Suites.AES_256_GCM) {
    return {
      rekeyAfterMs: 120_000,
      rejectAfterMs: 180_000,
      rekeyAfterPackets: 2 ** 23 - 2 ** 20,
      rejectAfterPackets: 2 ** 23,
    };
  }
  return {
    rekeyAfterMs: 120_000,
    rejectAfterMs: 180_000,
    rekeyAfterPackets: 2 ** 48,
    rejectAfterPackets: 2 ** 50,
  };
}

/** Key material for one SA, as a key log writes it (see docs/PROTOCOL.md, "Key log"). */
export interface SaKeyInfo {
  direction: 'inbound' | 'outbound';
  spi: number;
  suite: Suite;
  keys: EspKeys;
}

/**
 * One generation of keys: both directions of ESP from one handshake. With a small-packet SA
 * (docs/PROTOCOL.md §3.7) it holds two SAs per direction, each with its own SPI, key, sequence
 * numbers and replay window (RFC 4301 §4.1 allows several SAs between the same peers); the sender
 * picks one by payload size, the receiver by SPI.
 */
export class SaPair {
  /** The bulk SA's sender (the only one without a small-packet SA). */
  readonly tx: EspSender;
  readonly rx: EspReceiver;
  readonly suite: Suite;
  readonly localSpi: number;
  readonly remoteSpi: number;
  /** The small-packet SA, if the handshake agreed on one. */
  readonly txSmall: EspSender | undefined;
  readonly rxSmall: EspReceiver | undefined;
  readonly smallSuite: Suite | undefined;
  readonly smallLocalSpi: number | undefined;
  readonly createdAt: number;
  readonly handshakeHash: Uint8Array;
  readonly limits: SaLimits;
  readonly #keys: SaKeyInfo[];

  constructor(
    r: HandshakeResult,
    provider: CryptoProvider,
    createdAt: number,
    opts: { replayWindow?: number | undefined; limits?: Partial<SaLimits> | undefined } = {},
  ) {
    const replayWindow = opts.replayWindow;
    // With two SAs, the stricter suite's limits (AES-GCM's) bound both.
    const strict = r.small?.suite === Suites.AES_256_GCM ? Suites.AES_256_GCM : r.suite;
    this.limits = { ...defaultLimits(strict), ...opts.limits };
    this.suite = r.suite;
    this.localSpi = r.localSpi;
    this.remoteSpi = r.remoteSpi;
    this.createdAt = createdAt;
    this.handshakeHash = r.handshakeHash;
    this.tx = new EspSender({
      spi: r.remoteSpi,
      aead: provider.aead(r.suite, r.send.key),
      salt: r.send.salt,
    });
    this.rx = new EspReceiver({
      spi: r.localSpi,
      aead: provider.aead(r.suite, r.receive.key),
      salt: r.receive.salt,
      ...(replayWindow === undefined ? {} : { replayWindow }),
    });
    this.#keys = [
      { direction: 'outbound', spi: r.remoteSpi, suite: r.suite, keys: r.send },
      { direction: 'inbound', spi: r.localSpi, suite: r.suite, keys: r.receive },
    ];
    const small = r.small;
    this.smallSuite = small?.suite;
    this.smallLocalSpi = small?.localSpi;
    this.txSmall = small
      ? new EspSender({
          spi: small.remoteSpi,
          aead: provider.aead(small.suite, small.send.key),
          salt: small.send.salt,
        })
      : undefined;
    this.rxSmall = small
      ? new EspReceiver({
          spi: small.localSpi,
          aead: provider.aead(small.suite, small.receive.key),
          salt: small.receive.salt,
          ...(replayWindow === undefined ? {} : { replayWindow }),
        })
      : undefined;
    if (small) {
      this.#keys.push(
        { direction: 'outbound', spi: small.remoteSpi, suite: small.suite, keys: small.send },
        { direction: 'inbound', spi: small.localSpi, suite: small.suite, keys: small.receive },
      );
    }
  }

  /** The sender for a payload of `payloadBytes`: the small-packet SA's below SMALL_PACKET_BYTES. */
  sender(payloadBytes: number): EspSender {
    return payloadBytes < SMALL_PACKET_BYTES && this.txSmall ? this.txSmall : this.tx;
  }

  /** The receiver for an inbound SPI, if it is one of this pair's. */
  receiver(spi: number): EspReceiver | undefined {
    if (spi === this.localSpi) return this.rx;
    return spi === this.smallLocalSpi ? this.rxSmall : undefined;
  }

  /** True if `spi` is one of this pair's inbound SPIs. */
  hasSpi(spi: number): boolean {
    return spi === this.localSpi || spi === this.smallLocalSpi;
  }

  /** The key material, for a key log. Sessions only hand it out when asked to (keyLog: true). */
  keyInfo(): readonly SaKeyInfo[] {
    return this.#keys;
  }

  /** Highest sequence number used in either direction (sent, or seen from the peer). */
  get packetsUsed(): number {
    // One budget for both SAs (`limits` is the stricter suite's).
    const small = this.txSmall ? Math.max(this.txSmall.seq, this.rxSmall!.replay.top) : 0;
    return Math.max(this.tx.seq, this.rx.replay.top, small);
  }

  /** True once the hard limits forbid any further use. */
  expired(now: number): boolean {
    const limits = this.limits;
    return (
      now - this.createdAt >= limits.rejectAfterMs || this.packetsUsed >= limits.rejectAfterPackets
    );
  }

  /** True once the initiator should start a new handshake. */
  wantsRekey(now: number): boolean {
    const limits = this.limits;
    return (
      now - this.createdAt >= limits.rekeyAfterMs || this.packetsUsed >= limits.rekeyAfterPackets
    );
  }
}
