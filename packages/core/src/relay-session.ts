/**
 * The relay's side: many clients, each a peer known by its static public key, each the
 * responder of its handshakes. Sans-I/O (see session.ts).
 *
 * Handshake message 1 is authenticated (Noise IK), then checked against policy: the client's key
 * must be allowed, and its TAI64N timestamp must be newer than the last one accepted from that
 * key (WireGuard whitepaper §5.1), so a replayed message 1 is refused. An exact duplicate of the
 * message 1 being answered (same ephemeral key — the client sends one copy per candidate path)
 * gets the same response again, on the path it came from: duplicates are one handshake.
 *
 * New keys go into the peer's `next` slot. The relay may receive on them at once but sends with
 * them only after the first packet under them arrives (the client's confirmation), then rotates:
 * current → previous (still receiving), next → current. No packet is lost or delayed by a rekey.
 */
import { equalBytes, toHex } from './bytes.ts';
import { NextHeader } from './constants.ts';
import type { CryptoProvider, Suite } from './crypto/aead.ts';
import type { Encapsulation } from './encapsulation.ts';
import { DEFAULT_ENCAPSULATION_PREFERENCE } from './encapsulation.ts';
import { ErrorCode, isRoamlinkError } from './errors.ts';
import type { DropName, EspOpened } from './esp.ts';
import { DROP_NAMES, Drop, newEspOpened, readSpi } from './esp.ts';
import { ControlType, controlType, isControl, ResponderHandshake } from './handshake.ts';
import type { Keypair, RandomBytes } from './noise.ts';
import type { SaLimits } from './sa.ts';
import { SaPair } from './sa.ts';
import type { Delivery, SessionEvent, SessionStats, Transmit } from './session.ts';
import { allocateSpi, KeySlots, newSessionStats, Outbox } from './session.ts';
import { compareTai64n } from './tai64n.ts';

/** The relay's decision about a client key: allowed (with an optional psk) or not. */
export type Authorization = { allowed: true; psk?: Uint8Array } | { allowed: false };

export interface RelaySessionsOptions {
  staticKeypair: Keypair;
  provider: CryptoProvider;
  /** Suites in the relay's order of speed, fastest first. Default: the provider's order. */
  suites?: readonly Suite[];
  encapsulations?: readonly Encapsulation[];
  /** Allow-list check for a client's static public key. */
  authorize: (clientPublicKey: Uint8Array) => Authorization;
  random: RandomBytes;
  limits?: Partial<SaLimits>;
  replayWindow?: number;
  keyLog?: boolean;
  /** Packets held per peer while it has no usable keys (default 256). */
  maxStaged?: number;
}

/** One client, as the relay knows it. */
export class RelayPeer<P> {
  readonly publicKey: Uint8Array;
  readonly id: string;
  /** Where this peer is now: the path of its latest authenticated packet. */
  path: P | undefined;
  readonly keys = new KeySlots();
  lastTimestamp: Uint8Array | undefined;
  /** The message 1 being answered now and our answer, to repeat it for duplicates. */
  lastInit: { ephemeral: Uint8Array; response: Uint8Array } | undefined;
  readonly staged: { payload: Uint8Array; nextHeader: number }[] = [];
  packetsReceived = 0;
  packetsSent = 0;

  constructor(publicKey: Uint8Array) {
    this.publicKey = publicKey;
    this.id = toHex(publicKey);
  }
}

export interface RelayDelivery<P> extends Delivery {
  peer: RelayPeer<P>;
}

export type RelayEvent<P> = SessionEvent & { peer: RelayPeer<P> };

export class RelaySessions<P> {
  readonly stats: SessionStats = newSessionStats();
  readonly peers = new Map<string, RelayPeer<P>>();
  readonly #bySpi = new Map<number, { peer: RelayPeer<P>; pair: SaPair }>();
  readonly #o: RelaySessionsOptions;
  readonly #out = new Outbox<P>();
  readonly #events: RelayEvent<P>[] = [];
  readonly #opened: EspOpened = newEspOpened();

  constructor(o: RelaySessionsOptions) {
    this.#o = o;
  }

  /** Feeds one received datagram. Returns what it delivers, if anything; never throws on input. */
  receive(datagram: Uint8Array, path: P, now: number): RelayDelivery<P> | undefined {
    if (isControl(datagram)) {
      this.#control(datagram, path, now);
      return undefined;
    }
    if (datagram.length < 4) {
      this.stats.espDrops.too_short++;
      return undefined;
    }
    const hit = this.#bySpi.get(readSpi(datagram));
    if (!hit || hit.pair.expired(now)) {
      this.stats.espDrops.bad_spi++;
      return undefined;
    }
    const { peer, pair } = hit;
    const r = pair.rx.open(datagram, this.#opened);
    if (r !== Drop.NONE) {
      this.stats.espDrops[DROP_NAMES[r] as Exclude<DropName, 'none'>]++;
      return undefined;
    }
    // Authenticated and fresh: only now may the packet move state (wireguard-go receive.go).
    this.stats.packetsReceived++;
    peer.packetsReceived++;
    if (peer.path !== path) {
      const first = peer.path === undefined;
      peer.path = path;
      if (!first) this.#event(peer, { type: 'path-changed', reason: 'authenticated packet' });
    }
    if (pair === peer.keys.next) this.#confirm(peer, pair, now);
    const { nextHeader, payload, seq } = this.#opened;
    if (nextHeader === NextHeader.NO_NEXT_HEADER) {
      this.stats.keepalivesReceived++;
      return undefined;
    }
    return { peer, nextHeader, payload, seq };
  }

  /**
   * Seals `payload` for `peer` and returns the packet to send on `peer.path`, or undefined if the
   * peer has no usable keys (the payload is held until it has).
   */
  send(
    peer: RelayPeer<P>,
    payload: Uint8Array,
    nextHeader: number,
    now: number,
  ): Uint8Array | undefined {
    const cur = peer.keys.current;
    if (!cur || cur.expired(now) || peer.path === undefined) {
      const max = this.#o.maxStaged ?? 256;
      if (peer.staged.length >= max) {
        peer.staged.shift();
        this.stats.controlDrops.no_keys++;
      }
      peer.staged.push({ payload: payload.slice(), nextHeader });
      return undefined;
    }
    this.stats.packetsSent++;
    peer.packetsSent++;
    return cur.tx.seal(payload, nextHeader);
  }

  handleTimeout(now: number): void {
    for (const peer of this.peers.values()) {
      for (const p of peer.keys.expire(now)) {
        this.#bySpi.delete(p.localSpi);
        this.#event(peer, { type: 'keys-expired', localSpi: p.localSpi });
      }
    }
  }

  nextTimeout(): number | undefined {
    let t: number | undefined;
    for (const peer of this.peers.values()) {
      const e = peer.keys.nextExpiry();
      if (e !== undefined && (t === undefined || e < t)) t = e;
    }
    return t;
  }

  pollTransmit(): Transmit<P> | undefined {
    return this.#out.pollTransmit();
  }

  pollEvent(): RelayEvent<P> | undefined {
    return this.#events.shift();
  }

  #event(peer: RelayPeer<P>, e: SessionEvent): void {
    this.#events.push({ ...e, peer });
  }

  #confirm(peer: RelayPeer<P>, pair: SaPair, now: number): void {
    const rekey = peer.keys.current !== undefined;
    const dropped = peer.keys.rotate(pair);
    if (dropped) this.#bySpi.delete(dropped.localSpi);
    this.stats.handshakes++;
    if (rekey) this.stats.rekeys++;
    this.#event(peer, {
      type: 'established',
      suite: pair.suite,
      localSpi: pair.localSpi,
      remoteSpi: pair.remoteSpi,
      rekey,
    });
    // What waited for keys goes out now, in order, under the new keys.
    if (peer.path === undefined) return;
    for (const s of peer.staged.splice(0)) {
      const pkt = this.send(peer, s.payload, s.nextHeader, now);
      if (pkt) this.#out.transmit(peer.path, pkt);
    }
  }

  #control(datagram: Uint8Array, path: P, now: number): void {
    if (controlType(datagram) !== ControlType.HANDSHAKE_INIT) {
      this.stats.controlDrops.unknown_control++;
      return;
    }
    const o = this.#o;
    let hs: ResponderHandshake;
    try {
      hs = ResponderHandshake.read(datagram, { staticKeypair: o.staticKeypair, random: o.random });
    } catch (e) {
      if (isRoamlinkError(e, ErrorCode.AUTH_FAILED)) this.stats.controlDrops.handshake_auth++;
      else this.stats.controlDrops.handshake_malformed++;
      return;
    }
    // Silence towards anyone not allowed: no reply that could serve as an oracle.
    const auth = o.authorize(hs.remoteStaticKey);
    if (!auth.allowed) {
      this.stats.controlDrops.peer_not_allowed++;
      return;
    }
    const id = toHex(hs.remoteStaticKey);
    const known = this.peers.get(id);
    if (known?.lastInit && equalBytes(known.lastInit.ephemeral, hs.remoteEphemeralKey)) {
      this.#out.transmit(path, known.lastInit.response);
      return;
    }
    if (known?.lastTimestamp && compareTai64n(hs.payload.timestamp, known.lastTimestamp) <= 0) {
      this.stats.controlDrops.handshake_replay++;
      return;
    }
    const spi = allocateSpi(o.random, (s) => this.#bySpi.has(s));
    let answer: ReturnType<ResponderHandshake['respond']>;
    try {
      answer = hs.respond({
        spi,
        suites: o.suites ?? o.provider.suites,
        encapsulations: o.encapsulations ?? DEFAULT_ENCAPSULATION_PREFERENCE,
        ...(auth.psk ? { psk: auth.psk } : {}),
      });
    } catch (e) {
      if (isRoamlinkError(e, ErrorCode.NO_COMMON_SUITE)) this.stats.controlDrops.no_common_suite++;
      else this.stats.controlDrops.peer_not_allowed++;
      return;
    }
    const peer = known ?? new RelayPeer<P>(hs.remoteStaticKey);
    if (!known) this.peers.set(id, peer);
    const pair = new SaPair(answer.result, o.provider, now, {
      replayWindow: o.replayWindow,
      limits: o.limits,
    });
    const replaced = peer.keys.next;
    if (replaced) this.#bySpi.delete(replaced.localSpi);
    peer.keys.next = pair;
    this.#bySpi.set(spi, { peer, pair });
    peer.lastTimestamp = hs.payload.timestamp;
    peer.lastInit = { ephemeral: hs.remoteEphemeralKey, response: answer.message };
    if (o.keyLog) for (const info of pair.keyInfo()) this.#event(peer, { type: 'sa-keys', info });
    this.#out.transmit(path, answer.message);
  }
}
