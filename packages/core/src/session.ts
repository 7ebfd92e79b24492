/**
 * What client and relay sessions share: the output queue of a sans-I/O state machine, its events,
 * and the previous/current/next key slots.
 *
 * A session never touches a socket or a clock. The caller feeds it datagrams with the path they
 * came on and the time, and drains what it produced: `pollTransmit()` for datagrams to send,
 * `pollEvent()` for things that happened, `nextTimeout()` for when to call `handleTimeout()`.
 * Data packets are the exception, for speed: `send()` returns the sealed packet directly.
 */
import type { CryptoProvider, Suite } from './crypto/aead.ts';
import type { Encapsulation } from './encapsulation.ts';
import type { DropCounters } from './esp.ts';
import { newDropCounters } from './esp.ts';
import type { PathInfo, Verdict } from './path.ts';
import type { SaKeyInfo, SaPair } from './sa.ts';

/** A path the client may use, with what registration needs to know about it. */
export interface Candidate<P> {
  path: P;
  info: PathInfo;
}

/** RFC 3948 §2.3: the one-byte NAT keepalive, sent outside ESP on UDP paths. */
export const NAT_KEEPALIVE = new Uint8Array([0xff]);

export interface Transmit<P> {
  path: P;
  data: Uint8Array;
}

export type SessionEvent =
  | { type: 'handshake-sent'; spi: number; attempt: number; rekey: boolean }
  | { type: 'registration-sent'; round: number; reason: string; paths: number; attempt: number }
  | {
      type: 'registered';
      round: number;
      encapsulation: Encapsulation;
      verdict: Verdict;
      decision: number;
      rttMs: number;
    }
  | { type: 'verdict-disagreement'; round: number; relay: Verdict; client: Verdict; used: Verdict }
  | {
      type: 'registration-answered';
      round: number;
      encapsulation: Encapsulation;
      chosen: boolean;
      verdict: Verdict;
      decision: number;
    }
  | { type: 'path-challenge'; reason: string }
  | { type: 'path-validated'; rttMs: number }
  | { type: 'path-dead'; silentMs: number }
  | { type: 'path-data-blocked'; size: number }
  | {
      type: 'established';
      suite: Suite;
      localSpi: number;
      remoteSpi: number;
      rekey: boolean;
      /** The small-packet SA's suite, when the pair has one (docs/PROTOCOL.md §3.7). */
      smallSuite?: Suite;
      /**
       * Client, on a rekey: the relay held no session for us (it restarted; RESP extension
       * FRESH). The keys are new and so is the relay's stream layer: ours must start over.
       */
      relayFresh?: boolean;
    }
  | { type: 'handshake-failed'; reason: string }
  | { type: 'keys-expired'; localSpi: number }
  | { type: 'path-changed'; reason: string }
  | { type: 'sa-keys'; info: SaKeyInfo }
  /** Behind a NAT on UDP: the client wants a second UDP flow to measure the binding timeout. */
  | { type: 'binding-probe-wanted' }
  /** One BINDING_TEST concluded: answered (the NAT kept the binding `delayMs` idle) or not. */
  | { type: 'binding-test'; delayMs: number; answered: boolean }
  /** The binding-timeout search is over; the measurement flow may be closed. */
  | {
      type: 'binding-learned';
      lowerMs: number | undefined;
      upperMs: number | undefined;
      keepaliveMs: number;
    };

/** Control-plane drops, beside the ESP drops of DropCounters. */
export interface ControlDrops {
  handshake_malformed: number;
  handshake_auth: number;
  handshake_replay: number;
  handshake_unexpected: number;
  peer_not_allowed: number;
  no_common_suite: number;
  unknown_control: number;
  no_keys: number;
  frame_malformed: number;
  stale_registration: number;
  amplification_limited: number;
  /** Message 1s beyond a source address's handshake budget (RelaySessionsOptions.handshakeRate). */
  handshake_rate_limited: number;
  /**
   * Client: UNKNOWN_SPI hints not acted on (not our SPI, no keys, a handshake already out, or
   * within UNKNOWN_SPI_MIN_INTERVAL_MS of the last). Relay: hints not sent (over the budget).
   */
  unknown_spi_ignored: number;
}

export interface SessionStats {
  espDrops: DropCounters;
  controlDrops: ControlDrops;
  packetsSent: number;
  packetsReceived: number;
  keepalivesReceived: number;
  natKeepalivesSent: number;
  registrations: number;
  handshakes: number;
  rekeys: number;
  /**
   * UNKNOWN_SPI hints: on the relay, sent (an ESP packet under an SPI it does not know); on the
   * client, acted on (each started a rekey).
   */
  unknownSpiHints: number;
}

export function newSessionStats(): SessionStats {
  return {
    espDrops: newDropCounters(),
    controlDrops: {
      handshake_malformed: 0,
      handshake_auth: 0,
      handshake_replay: 0,
      handshake_unexpected: 0,
      peer_not_allowed: 0,
      no_common_suite: 0,
      unknown_control: 0,
      no_keys: 0,
      frame_malformed: 0,
      stale_registration: 0,
      amplification_limited: 0,
      handshake_rate_limited: 0,
      unknown_spi_ignored: 0,
    },
    packetsSent: 0,
    packetsReceived: 0,
    keepalivesReceived: 0,
    natKeepalivesSent: 0,
    registrations: 0,
    handshakes: 0,
    rekeys: 0,
    unknownSpiHints: 0,
  };
}

/** What a received data packet delivers to the application. */
export interface Delivery {
  nextHeader: number;
  /** A view into the received datagram, decrypted in place. */
  payload: Uint8Array;
  seq: number;
}

/** Bounded FIFO queues for a session's output. */
export class Outbox<P> {
  readonly #tx: Transmit<P>[] = [];
  readonly #events: SessionEvent[] = [];
  transmit(path: P, data: Uint8Array): void {
    this.#tx.push({ path, data });
  }
  event(e: SessionEvent): void {
    this.#events.push(e);
  }
  pollTransmit(): Transmit<P> | undefined {
    return this.#tx.shift();
  }
  pollEvent(): SessionEvent | undefined {
    return this.#events.shift();
  }
}

/**
 * The three generations of keys. The receive side looks packets up by SPI among all three; the
 * send side uses `current` only.
 */
export class KeySlots {
  previous: SaPair | undefined;
  current: SaPair | undefined;
  next: SaPair | undefined;

  /** The pair one of whose inbound SPIs is `spi`, if any. */
  bySpi(spi: number): SaPair | undefined {
    if (this.current?.hasSpi(spi)) return this.current;
    if (this.previous?.hasSpi(spi)) return this.previous;
    if (this.next?.hasSpi(spi)) return this.next;
    return undefined;
  }

  /** current → previous, `pair` → current. Returns the pair that fell out of `previous`. */
  rotate(pair: SaPair): SaPair | undefined {
    const dropped = this.previous;
    this.previous = this.current;
    this.current = pair;
    if (this.next === pair) this.next = undefined;
    return dropped;
  }

  /** Drops every pair that is past its hard limits; returns them. */
  expire(now: number): SaPair[] {
    const out: SaPair[] = [];
    for (const slot of ['previous', 'current', 'next'] as const) {
      const p = this[slot];
      if (p?.expired(now)) {
        out.push(p);
        this[slot] = undefined;
      }
    }
    return out;
  }

  /** Earliest time at which some pair expires by age. */
  nextExpiry(): number | undefined {
    let t: number | undefined;
    for (const p of [this.previous, this.current, this.next]) {
      if (p) {
        const e = p.createdAt + p.limits.rejectAfterMs;
        if (t === undefined || e < t) t = e;
      }
    }
    return t;
  }

  all(): SaPair[] {
    return [this.previous, this.current, this.next].filter((p): p is SaPair => p !== undefined);
  }
}

/** Adds one drop counter set into another (for session-wide totals). */
export function addDrops(into: DropCounters, from: DropCounters): void {
  for (const k of Object.keys(into) as (keyof DropCounters)[]) into[k] += from[k];
}

/**
 * The suites to offer or accept for a small-packet SA (docs/PROTOCOL.md §3.7): the provider's
 * small-packet order, within the suites offered at all (`--suite X` leaves X only).
 */
export function smallSuitesWithin(provider: CryptoProvider, suites: readonly Suite[]): Suite[] {
  return (provider.smallSuites ?? []).filter((s) => suites.includes(s));
}

/** A random receive SPI in [256, 2^32) that `taken` does not hold. */
export function allocateSpi(
  random: (n: number) => Uint8Array,
  taken: (spi: number) => boolean,
): number {
  for (;;) {
    const b = random(4);
    const spi = ((b[0]! << 24) | (b[1]! << 16) | (b[2]! << 8) | b[3]!) >>> 0;
    if (spi >= 256 && !taken(spi)) return spi;
  }
}
