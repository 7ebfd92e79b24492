/**
 * The relay's side: many clients, each a peer known by its static public key, each the
 * responder of its handshakes and the judge of its registrations. Sans-I/O (see session.ts).
 *
 * Handshakes (docs/PROTOCOL.md §3-4): message 1 is authenticated (Noise IK), then checked against
 * policy: the client's key must be allowed, and its TAI64N timestamp newer than the last one
 * accepted from that key, so a replayed message 1 is refused. An exact duplicate of the message 1
 * being answered (same ephemeral key: one copy per candidate path) gets the same response again.
 * New keys go into the `next` slot and are used for sending only once a packet under them
 * arrives; then current → previous (still receiving), next → current.
 *
 * Registration (WO 03/063444; docs/PROTOCOL.md §6-7): the first RREQ of a new round moves the
 * peer's path at once (relay → client data flows half a round trip after the move). A copy of the
 * same round on an encapsulation the relay prefers, arriving within the grace window, upgrades the
 * choice. Every RREQ is answered on the path it came on, with what the relay observed there, the
 * verdict and whether that path is the chosen one. A stale round moves nothing.
 *
 * Anti-amplification (RFC 9000 §8, §9.3): until a new datagram path has answered a
 * PATH_CHALLENGE, the relay sends on it at most three times the bytes it received on it. Paths of
 * connection-oriented encapsulations (TCP, WebSocket, HTTP) are validated by their own handshake.
 *
 * Roaming without registration (a NAT rebinding the client cannot see): an authenticated data
 * packet that is the newest yet, from a path other than the current one, moves the path — unless
 * a registration round was accepted within `roamHoldMs`, when registration alone decides.
 *
 * NAT binding tests (RFC 5780 §4.6, timed by the relay): a BINDING_TEST asks for a BINDING_ACK
 * `delayMs` later on the path the test came on — the client's second, measurement-only flow. Being
 * a registration frame it never moves the peer's path, neither by registration nor as roaming.
 */
import { equalBytes, toHex } from './bytes.ts';
import { NextHeader } from './constants.ts';
import type { CryptoProvider, Suite } from './crypto/aead.ts';
import { DEFAULT_ENCAPSULATION_PREFERENCE, Encapsulation } from './encapsulation.ts';
import { ErrorCode, isRoamlinkError } from './errors.ts';
import type { DropName, EspOpened } from './esp.ts';
import { DROP_NAMES, Drop, newEspOpened, readSpi, sealReserved } from './esp.ts';
import type { InitPayload } from './handshake.ts';
import {
  ControlType,
  controlType,
  encodeUnknownSpi,
  isControl,
  ResponderHandshake,
} from './handshake.ts';
import type { Keypair, RandomBytes } from './noise.ts';
import { type OuterView, type PathInfo, Verdict } from './path.ts';
import {
  decodeBindingFrame,
  decodePathFrame,
  decodeProbe,
  decodeRreq,
  encodeBindingAck,
  encodePathChallenge,
  encodePathResponse,
  encodeProbeAck,
  encodeRrep,
  fitOuterView,
  RegFrameType,
} from './registration-frames.ts';
import type { SaLimits } from './sa.ts';
import { SaPair } from './sa.ts';
import type { Delivery, SessionEvent, SessionStats, Transmit } from './session.ts';
import { allocateSpi, KeySlots, newSessionStats, Outbox, smallSuitesWithin } from './session.ts';
import { compareTai64n } from './tai64n.ts';
import { computeVerdict, translationDetected } from './verdict.ts';

/** Room for the observed view in an RREP: 1200-byte frame minus fixed fields and lists. */
const VIEW_BUDGET = 1100;

/** The relay's decision about a client key: allowed (with an optional psk) or not. */
export type Authorization = { allowed: true; psk?: Uint8Array } | { allowed: false };

export interface RelaySessionsOptions {
  staticKeypair: Keypair;
  provider: CryptoProvider;
  /** Suites in the relay's order of speed, fastest first. Default: the provider's order. */
  suites?: readonly Suite[];
  /** Encapsulations in the relay's order of preference (default UDP > TCP > WS > HTTP). */
  encapsulations?: readonly Encapsulation[];
  /** Allow-list check for a client's static public key. */
  authorize: (clientPublicKey: Uint8Array) => Authorization;
  random: RandomBytes;
  limits?: Partial<SaLimits>;
  replayWindow?: number;
  keyLog?: boolean;
  /** Packets held per peer while it has no usable keys or path budget (default 256). */
  maxStaged?: number;
  /** How long after a round's first RREQ a preferred encapsulation may still win (default 250 ms). */
  graceMs?: number;
  /** NAT keepalive interval given to clients behind a translation on UDP (default 25 s). */
  keepaliveMs?: number;
  /** After a registration, data alone does not move the path for this long (default 2000 ms). */
  roamHoldMs?: number;
  /** RFC 9000 §8: bytes sent to an unvalidated path per byte received on it (default 3). */
  amplificationFactor?: number;
  /** Data packets sent twice right after a move onto a UDP path (default 4; 0 = none). */
  redundantAfterMove?: number;
  /** BINDING_ACKs waiting for their delay, per peer (default 4); the oldest gives way. */
  maxBindingTests?: number;
  /**
   * Message 1s answered per source address (the path's observed source): a token bucket of
   * `burst`, refilled at `perSecond` (default 50 per second, burst 50). Each costs two DH
   * operations before the allow-list is even known; beyond the budget they are dropped unread
   * and counted (`handshake_rate_limited`). Generous on purpose: a client sends message 1 once
   * per candidate, and many clients may share one NAT or proxy address; it bounds what one
   * source can make the relay spend (wireguard-go limits 20 per second under load). `perSecond:
   * 0` turns it off.
   */
  handshakeRate?: { perSecond: number; burst: number };
}

/** Sources tracked by the handshake rate limit before idle ones are swept. */
const RATE_SOURCES_MAX = 4096;

/**
 * UNKNOWN_SPI hints (docs/PROTOCOL.md §4.2): at most one per path per this interval, and at most
 * UNKNOWN_SPI_PER_SECOND in all. A hint is 9 bytes against the at least 28 of the packet that
 * caused it, so it cannot amplify; the limits keep a flood of junk from costing more than that.
 */
export const UNKNOWN_SPI_PATH_INTERVAL_MS = 1000;
export const UNKNOWN_SPI_PER_SECOND = 256;
/** Paths remembered for the per-path limit before old entries are swept. */
const HINT_PATHS_MAX = 4096;

/** A token bucket: tokens left, and when they were last counted. */
interface TokenBucket {
  tokens: number;
  at: number;
}

/** Adds what `perSecond` earned since the bucket was last counted, up to `burst`. */
function refillBucket(b: TokenBucket, now: number, perSecond: number, burst: number): void {
  b.tokens = Math.min(burst, b.tokens + ((now - b.at) / 1000) * perSecond);
  b.at = now;
}

/** A BINDING_ACK waiting for its time. */
export interface PendingBindingAck<P> {
  id: number;
  delayMs: number;
  path: P;
  /** When it goes out: the test's arrival plus its delay. */
  at: number;
}

/** What the relay knows about one path of one peer. */
export interface RelayPathState {
  info: PathInfo | undefined;
  bytesIn: number;
  bytesOut: number;
  validated: boolean;
  challenge: { data: Uint8Array; sentAt: number; tries: number } | undefined;
  /**
   * The latest RREQ that came on this path (read-only for observers: status pages): its round,
   * when it arrived, the client's own view of the path's outer fields, and the largest datagram
   * that may be sent to the client on it: what it announced, unless the verdict is protocol (a
   * proxy in between); absent: DEFAULT_MAX_DATAGRAM.
   */
  rreq: { round: number; at: number; view: OuterView; maxDatagram?: number } | undefined;
}

/** One client, as the relay knows it. */
export class RelayPeer<P> {
  readonly publicKey: Uint8Array;
  readonly id: string;
  /** Where this peer is now: the chosen path of the latest round, or its latest roam. */
  path: P | undefined;
  readonly keys = new KeySlots();
  readonly paths = new Map<P, RelayPathState>();
  lastTimestamp: Uint8Array | undefined;
  /** The message 1 being answered now and our answer, to repeat it for duplicates. */
  lastInit:
    | {
        ephemeral: Uint8Array;
        response: Uint8Array;
        paths: Set<P>;
        pair: SaPair;
        payload: InitPayload;
        /** A first handshake (it carries candidates) from a client the relay already knew. */
        restart: boolean;
      }
    | undefined;
  readonly staged: { payload: Uint8Array; nextHeader: number }[] = [];
  packetsReceived = 0;
  packetsSent = 0;
  /** When the peer was last heard: an authenticated packet, or a handshake accepted. */
  lastSeen = 0;
  /** Packets still to be sent twice after a move onto a datagram path. */
  redundantLeft = 0;
  /** Registration: the round in force, its nonce, the decision counter and chosen path. */
  round = 0;
  roundNonce: Uint8Array | undefined;
  decision = 0;
  chosenEncapsulation: Encapsulation | undefined;
  roundStartedAt = 0;
  verdict: Verdict | undefined;
  /**
   * The client's sessions so far: a fresh handshake (the client started over: a restart, a page
   * reload), not a rekey, adds one when its keys are confirmed. What lives above the SA for one
   * session (the stream layer) starts over when this changes.
   */
  generation = 0;
  /** BINDING_ACKs not yet due, oldest first (a handful at most: `maxBindingTests`). */

  readonly bindingAcks: PendingBindingAck<P>[] = [];

  constructor(publicKey: Uint8Array) {
    this.publicKey = publicKey;
    this.id = toHex(publicKey);
  }
}

export interface RelayDelivery<P> extends Delivery {
  peer: RelayPeer<P>;
}

export type RelayEvent<P> = SessionEvent & { peer: RelayPeer<P> };

/** Connection-oriented encapsulations prove the peer's address with their own handshake. */
function validatedByTransport(info: PathInfo | undefined): boolean {
  return info !== undefined && info.encapsulation !== Encapsulation.UDP;
}

export class RelaySessions<P> {
  readonly stats: SessionStats = newSessionStats();
  readonly peers = new Map<string, RelayPeer<P>>();
  /** Peers forgotten for silence (`forgetIdle`). */
  peersForgotten = 0;
  readonly #bySpi = new Map<number, { peer: RelayPeer<P>; pair: SaPair }>();
  readonly #o: RelaySessionsOptions;
  readonly #out = new Outbox<P>();
  readonly #events: RelayEvent<P>[] = [];
  readonly #opened: EspOpened = newEspOpened();
  /** Handshake budget per source address: tokens left and when last refilled. */
  readonly #rate = new Map<string, TokenBucket>();
  /** When each path was last sent an UNKNOWN_SPI hint. */
  readonly #hinted = new Map<P, number>();
  /** The global UNKNOWN_SPI budget: tokens left and when last refilled. */
  readonly #hintBudget: TokenBucket = { tokens: UNKNOWN_SPI_PER_SECOND, at: 0 };

  constructor(o: RelaySessionsOptions) {
    this.#o = o;
  }

  /**
   * Feeds one received datagram with the path it came on and, where the adapter knows it, what
   * the relay observed about that path (needed for registration). Returns what it delivers, if
   * anything; never throws on input.
   */
  receive(
    datagram: Uint8Array,
    path: P,
    now: number,
    info?: PathInfo,
  ): RelayDelivery<P> | undefined {
    if (isControl(datagram)) {
      this.#control(datagram, path, now, info);
      return undefined;
    }
    if (datagram.length < 4) {
      this.stats.espDrops.too_short++;
      return undefined;
    }
    const spi = readSpi(datagram);
    const hit = this.#bySpi.get(spi);
    if (!hit || hit.pair.expired(now)) {
      this.stats.espDrops.bad_spi++;
      this.#hintUnknownSpi(spi, path, now);
      return undefined;
    }
    const { peer, pair } = hit;
    // The small-packet SA (§3.7) has its own sequence numbers: "newest" is within the SA it came on.
    const rx = pair.receiver(spi)!;
    const newestBefore = rx.replay.top;
    const size = datagram.length;
    const r = rx.open(datagram, this.#opened);
    if (r !== Drop.NONE) {
      this.stats.espDrops[DROP_NAMES[r] as Exclude<DropName, 'none'>]++;
      return undefined;
    }
    // Authenticated and fresh: only now may the packet move state (wireguard-go receive.go).
    this.stats.packetsReceived++;
    peer.packetsReceived++;
    peer.lastSeen = now;
    const ps = this.#pathState(peer, path, info);
    ps.bytesIn += size;
    const { nextHeader, payload, seq } = this.#opened;
    const regFrame =
      nextHeader === NextHeader.ROAMLINK &&
      payload.length > 0 &&
      payload[0]! >= RegFrameType.RREQ &&
      payload[0]! <= RegFrameType.BINDING_ACK;
    if (peer.path === undefined) {
      peer.path = path;
    } else if (
      peer.path !== path &&
      !regFrame &&
      seq > newestBefore &&
      now - peer.roundStartedAt >= (this.#o.roamHoldMs ?? 2000)
    ) {
      this.#switchPath(peer, path, now, 'rebinding');
    }
    if (pair === peer.keys.next) {
      // A packet under keys that only our response could give proves the client received that
      // response: a path we sent it on is validated (as QUIC's handshake validates an address).
      if (peer.lastInit?.paths.has(path)) ps.validated = true;
      this.#confirm(peer, pair, now);
    }
    if (nextHeader === NextHeader.NO_NEXT_HEADER) {
      this.stats.keepalivesReceived++;
      return undefined;
    }
    if (regFrame) {
      this.#registrationFrame(peer, payload, path, ps, now);
      return undefined;
    }
    return { peer, nextHeader, payload, seq };
  }

  /**
   * Seals `payload` for `peer` and returns the packet to send on `peer.path`, or undefined if the
   * peer has no usable keys, or its path is unvalidated and out of budget (the payload is then
   * held until it can go).
   */
  send(
    peer: RelayPeer<P>,
    payload: Uint8Array,
    nextHeader: number,
    now: number,
  ): Uint8Array | undefined {
    return this.#send(peer, payload, nextHeader, now, false);
  }

  /**
   * As `send`, but seals `payload` where it lies, without a copy: the bytes before and after the
   * view (ESP_PAYLOAD_OFFSET and ESP_TAIL_RESERVE of them) are scratch the caller reserved.
   */
  sendReserved(
    peer: RelayPeer<P>,
    payload: Uint8Array,
    nextHeader: number,
    now: number,
  ): Uint8Array | undefined {
    return this.#send(peer, payload, nextHeader, now, true);
  }

  #send(
    peer: RelayPeer<P>,
    payload: Uint8Array,
    nextHeader: number,
    now: number,
    reserved: boolean,
  ): Uint8Array | undefined {
    const cur = peer.keys.current;
    if (
      !cur ||
      cur.expired(now) ||
      peer.path === undefined ||
      !this.#budget(peer, peer.path, payload.length + 48)
    ) {
      this.#stage(peer, payload, nextHeader);
      return undefined;
    }
    this.stats.packetsSent++;
    peer.packetsSent++;
    const tx = cur.sender(payload.length);
    const pkt =
      (reserved ? sealReserved(tx, payload, nextHeader) : undefined) ??
      tx.seal(payload, nextHeader);
    this.#charge(peer, peer.path, pkt.length);
    if (peer.redundantLeft > 0) {
      // Right after a move onto a datagram path, each packet goes twice (the client's replay
      // window drops the second copy): one loss must not delay the resume.
      peer.redundantLeft--;
      if (this.#budget(peer, peer.path, pkt.length)) this.#transmit(peer, peer.path, pkt);
    }
    return pkt;
  }

  handleTimeout(now: number): void {
    for (const peer of this.peers.values()) {
      for (const p of peer.keys.expire(now)) {
        this.#unindex(p);
        this.#event(peer, { type: 'keys-expired', localSpi: p.localSpi });
      }
      for (const [path, ps] of peer.paths) {
        const ch = ps.challenge;
        if (ch && !ps.validated && now - ch.sentAt >= 1000) {
          if (ch.tries >= 3) ps.challenge = undefined;
          else this.#challenge(peer, path, ps, now, ch.tries + 1);
        }
      }
      this.#sendBindingAcks(peer, now);
    }
  }

  /** Accepts a pair's SPIs (both, with a small-packet SA). */
  #index(peer: RelayPeer<P>, pair: SaPair): void {
    this.#bySpi.set(pair.localSpi, { peer, pair });
    if (pair.smallLocalSpi !== undefined) this.#bySpi.set(pair.smallLocalSpi, { peer, pair });
  }

  /** Stops accepting a pair's SPIs (both, with a small-packet SA). */
  #unindex(pair: SaPair): void {
    this.#bySpi.delete(pair.localSpi);
    if (pair.smallLocalSpi !== undefined) this.#bySpi.delete(pair.smallLocalSpi);
  }

  /**
   * Forgets every peer not heard from for `idleMs` or more (no authenticated packet, no accepted
   * handshake): its keys, paths and pending work go, and its SPIs are refused from then on. Without
   * this a relay that lets any key in keeps state for every key ever seen. Returns the peers
   * forgotten, so that the app can drop what it keeps for them (streams, sockets). A peer that
   * comes back is a new one (a fresh handshake, a new session).
   */
  forgetIdle(now: number, idleMs: number): RelayPeer<P>[] {
    const gone: RelayPeer<P>[] = [];
    for (const peer of this.peers.values()) {
      if (now - peer.lastSeen < idleMs) continue;
      this.peers.delete(peer.id);
      for (const p of peer.keys.all()) {
        if (this.#bySpi.get(p.localSpi)?.peer === peer) this.#unindex(p);
      }
      this.peersForgotten++;
      gone.push(peer);
    }
    return gone;
  }

  nextTimeout(): number | undefined {
    let t: number | undefined;
    const at = (x: number): void => {
      if (t === undefined || x < t) t = x;
    };
    for (const peer of this.peers.values()) {
      const e = peer.keys.nextExpiry();
      if (e !== undefined) at(e);
      for (const ps of peer.paths.values())
        if (ps.challenge && !ps.validated) at(ps.challenge.sentAt + 1000);
      for (const b of peer.bindingAcks) at(b.at);
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

  #pathState(peer: RelayPeer<P>, path: P, info: PathInfo | undefined): RelayPathState {
    let ps = peer.paths.get(path);
    if (!ps) {
      ps = {
        info,
        bytesIn: 0,
        bytesOut: 0,
        validated: validatedByTransport(info),
        challenge: undefined,
        rreq: undefined,
      };
      peer.paths.set(path, ps);
      // Bound the table: forget the oldest paths that are not in use.
      if (peer.paths.size > 16) {
        for (const k of peer.paths.keys()) {
          if (k !== peer.path && k !== path) {
            peer.paths.delete(k);
            break;
          }
        }
      }
    } else if (info) {
      ps.info = info;
      if (validatedByTransport(info)) ps.validated = true;
    }
    return ps;
  }

  /** RFC 9000 §8.1: may `bytes` more go to `path` before it is validated? */
  #budget(peer: RelayPeer<P>, path: P, bytes: number): boolean {
    const ps = peer.paths.get(path);
    if (!ps || ps.validated) return true;
    const ok = ps.bytesOut + bytes <= (this.#o.amplificationFactor ?? 3) * ps.bytesIn;
    if (!ok) this.stats.controlDrops.amplification_limited++;
    return ok;
  }

  #charge(peer: RelayPeer<P>, path: P, bytes: number): void {
    const ps = peer.paths.get(path);
    if (ps) ps.bytesOut += bytes;
  }

  #transmit(peer: RelayPeer<P>, path: P, pkt: Uint8Array): void {
    this.#charge(peer, path, pkt.length);
    this.#out.transmit(path, pkt);
  }

  #stage(peer: RelayPeer<P>, payload: Uint8Array, nextHeader: number): void {
    const max = this.#o.maxStaged ?? 256;
    if (peer.staged.length >= max) {
      peer.staged.shift();
      this.stats.controlDrops.no_keys++;
    }
    peer.staged.push({ payload: payload.slice(), nextHeader });
  }

  /** Sends what waited, in order, while keys and the path budget allow. */
  #flush(peer: RelayPeer<P>, now: number): void {
    while (peer.staged.length > 0) {
      const s = peer.staged[0]!;
      const cur = peer.keys.current;
      if (
        !cur ||
        cur.expired(now) ||
        peer.path === undefined ||
        !this.#budget(peer, peer.path, s.payload.length + 48)
      ) {
        return;
      }
      peer.staged.shift();
      const pkt = cur.tx.seal(s.payload, s.nextHeader);
      this.stats.packetsSent++;
      peer.packetsSent++;
      this.#transmit(peer, peer.path, pkt);
    }
  }

  #switchPath(peer: RelayPeer<P>, path: P, now: number, reason: string): void {
    const moved = peer.path !== undefined;
    peer.path = path;
    this.#event(peer, { type: 'path-changed', reason });
    const info = peer.paths.get(path)?.info;
    peer.redundantLeft =
      moved && info?.encapsulation === Encapsulation.UDP ? (this.#o.redundantAfterMove ?? 4) : 0;
    const ps = peer.paths.get(path);
    if (ps && !ps.validated && !ps.challenge) this.#challenge(peer, path, ps, now, 1);
    this.#flush(peer, now);
  }

  #challenge(peer: RelayPeer<P>, path: P, ps: RelayPathState, now: number, tries: number): void {
    const cur = peer.keys.current ?? peer.keys.next;
    if (!cur) return;
    const data = this.#o.random(8);
    ps.challenge = { data, sentAt: now, tries };
    // The challenge itself counts against the budget; it is small next to what arrived.
    this.#transmit(peer, path, cur.tx.seal(encodePathChallenge(data), NextHeader.ROAMLINK));
  }

  #registrationFrame(
    peer: RelayPeer<P>,
    payload: Uint8Array,
    path: P,
    ps: RelayPathState,
    now: number,
  ): void {
    try {
      switch (payload[0]) {
        case RegFrameType.RREQ:
          this.#rreq(peer, decodeRreq(payload), path, ps, now);
          return;
        case RegFrameType.PATH_CHALLENGE:
        case RegFrameType.PATH_RESPONSE: {
          const f = decodePathFrame(payload);
          if (f.type === RegFrameType.PATH_CHALLENGE) {
            const cur = peer.keys.current;
            if (cur)
              this.#transmit(
                peer,
                path,
                cur.tx.seal(encodePathResponse(f.data), NextHeader.ROAMLINK),
              );
          } else if (ps.challenge && equalBytes(ps.challenge.data, f.data)) {
            const rtt = now - ps.challenge.sentAt;
            ps.challenge = undefined;
            ps.validated = true;
            this.#event(peer, { type: 'path-validated', rttMs: rtt });
            if (peer.path === path) this.#flush(peer, now);
          }
          return;
        }
        case RegFrameType.BINDING_TEST: {
          const f = decodeBindingFrame(payload);
          if (f.type !== RegFrameType.BINDING_TEST) return;
          // RFC 5780 §4.6 with the relay as the timer: the answer leaves `delayMs` after the test
          // arrived, on the path it came on, so it crosses the client's NAT only if the binding
          // the test refreshed is still there after that much idle time. A few per peer at most.
          const pending = peer.bindingAcks;
          if (pending.length >= (this.#o.maxBindingTests ?? 4)) pending.shift();
          pending.push({ id: f.id, delayMs: f.delayMs, path, at: now + f.delayMs });
          if (f.delayMs === 0) this.#sendBindingAcks(peer, now);
          return;
        }
        case RegFrameType.PROBE: {
          const p = decodeProbe(payload);
          const cur = peer.keys.current;
          if (cur) {
            this.#transmit(
              peer,
              path,
              cur.tx.seal(encodeProbeAck({ id: p.id, size: payload.length }), NextHeader.ROAMLINK),
            );
          }
          return;
        }
        default:
          return;
      }
    } catch (e) {
      if (!isRoamlinkError(e, ErrorCode.MALFORMED)) throw e;
      this.stats.controlDrops.frame_malformed++;
    }
  }

  /**
   * Sends the BINDING_ACKs that are due, sealed now (a fresh sequence number, inside the client's
   * replay window however long the wait). The ack is exactly as long as the test (9 bytes), so on
   * an unvalidated path it stays within the budget the test opened (RFC 9000 §8.1); should the
   * budget still be spent, the ack is dropped, which the client reads as a lost binding.
   */
  #sendBindingAcks(peer: RelayPeer<P>, now: number): void {
    const pending = peer.bindingAcks;
    for (let i = 0; i < pending.length; ) {
      const b = pending[i]!;
      if (b.at > now) {
        i++;
        continue;
      }
      pending.splice(i, 1);
      const cur = peer.keys.current;
      if (!cur) continue;
      const frame = encodeBindingAck({ id: b.id, delayMs: b.delayMs });
      const pkt = cur.tx.seal(frame, NextHeader.ROAMLINK);
      if (this.#budget(peer, b.path, pkt.length)) this.#transmit(peer, b.path, pkt);
    }
  }

  #preference(e: Encapsulation): number {
    const i = (this.#o.encapsulations ?? DEFAULT_ENCAPSULATION_PREFERENCE).indexOf(e);
    return i < 0 ? Number.POSITIVE_INFINITY : i;
  }

  #rreq(
    peer: RelayPeer<P>,
    rreq: ReturnType<typeof decodeRreq>,
    path: P,
    ps: RelayPathState,
    now: number,
    sealWith: SaPair | undefined = peer.keys.current,
  ): void {
    if (
      rreq.round < peer.round ||
      (rreq.round === peer.round && !equalBytes(rreq.nonce, peer.roundNonce!))
    ) {
      this.stats.controlDrops.stale_registration++;
      return;
    }
    const enc = ps.info?.encapsulation ?? rreq.encapsulation;
    const full: OuterView = ps.info?.view ?? {};
    const verdict = computeVerdict(rreq.view, full, enc);
    // Through an HTTP proxy or CDN that re-originated the connection (verdict protocol), what each
    // end takes says nothing of what the intermediary carries: 64 KiB both ways, as if unannounced.
    const proxied = verdict === Verdict.PROTOCOL;
    ps.rreq = {
      round: rreq.round,
      at: now,
      view: rreq.view,
      ...(rreq.maxDatagram !== undefined && !proxied ? { maxDatagram: rreq.maxDatagram } : {}),
    };
    let chosen: boolean;
    if (rreq.round > peer.round) {
      // The first RREQ of a new round wins at once: relay → client data needs only this.
      peer.round = rreq.round;
      peer.roundNonce = rreq.nonce;
      peer.decision = 1;
      peer.chosenEncapsulation = enc;
      peer.roundStartedAt = now;
      chosen = true;
      this.stats.registrations++;
      if (peer.path !== path) this.#switchPath(peer, path, now, 'registration');
    } else if (
      peer.path !== path &&
      now - peer.roundStartedAt <= (this.#o.graceMs ?? 250) &&
      this.#preference(enc) < this.#preference(peer.chosenEncapsulation!)
    ) {
      // A preferred encapsulation within the grace window: upgrade.
      peer.decision = Math.min(255, peer.decision + 1);
      peer.chosenEncapsulation = enc;
      chosen = true;
      this.#switchPath(peer, path, now, 'upgrade');
    } else {
      chosen = peer.path === path;
      // The path may have moved by roaming since the round began: keep the record in step.
      if (chosen) peer.chosenEncapsulation = enc;
    }
    // The RREP carries the observation, cut to fit one frame (a proxy may add any number of
    // headers); the verdict above is computed from all of it.
    const observed = fitOuterView(full, VIEW_BUDGET);
    if (chosen) peer.verdict = verdict;
    const keepaliveMs =
      enc === Encapsulation.UDP && translationDetected(verdict)
        ? (this.#o.keepaliveMs ?? 25_000)
        : 0;
    const cur = sealWith;
    if (cur) {
      const frame = encodeRrep({
        round: rreq.round,
        nonce: rreq.nonce,
        encapsulation: enc,
        verdict,
        decision: peer.decision,
        chosen,
        chosenEncapsulation: peer.chosenEncapsulation!,
        keepaliveMs,
        encapsulations: [...(this.#o.encapsulations ?? DEFAULT_ENCAPSULATION_PREFERENCE)],
        observed,
        ...(ps.info?.maxDatagram !== undefined && !proxied
          ? { maxDatagram: ps.info.maxDatagram }
          : {}),
      });
      // Answered on the path it came on; an RREP is about the size of its RREQ, inside the budget.
      this.#transmit(peer, path, cur.tx.seal(frame, NextHeader.ROAMLINK));
    }
    this.#event(peer, {
      type: 'registration-answered',
      round: rreq.round,
      encapsulation: enc,
      chosen,
      verdict,
      decision: peer.decision,
    });
  }

  #confirm(peer: RelayPeer<P>, pair: SaPair, now: number): void {
    const fresh =
      peer.keys.current === undefined || (peer.lastInit?.pair === pair && peer.lastInit.restart);
    const rekey = !fresh;
    if (fresh) {
      peer.generation++;
      // What waited for the old session's keys belongs to the old session.
      if (peer.keys.current) peer.staged.length = 0;
    }
    const dropped = peer.keys.rotate(pair);
    if (dropped) this.#unindex(dropped);
    this.stats.handshakes++;
    if (rekey) this.stats.rekeys++;
    this.#event(peer, {
      type: 'established',
      suite: pair.suite,
      localSpi: pair.localSpi,
      remoteSpi: pair.remoteSpi,
      rekey,
      ...(pair.smallSuite === undefined ? {} : { smallSuite: pair.smallSuite }),
    });
    // What waited for keys goes out now, in order, under the new keys.
    this.#flush(peer, now);
  }

  #control(datagram: Uint8Array, path: P, now: number, info: PathInfo | undefined): void {
    if (controlType(datagram) !== ControlType.HANDSHAKE_INIT) {
      this.stats.controlDrops.unknown_control++;
      return;
    }
    if (!this.#handshakeBudget(info?.view.srcAddr, now)) {
      this.stats.controlDrops.handshake_rate_limited++;
      return;
    }
    const o = this.#o;
    let hs: ResponderHandshake;
    try {
      hs = ResponderHandshake.read(datagram, {
        staticKeypair: o.staticKeypair,
        random: o.random,
        x25519: o.provider.x25519,
      });
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
      known.lastInit.paths.add(path);
      this.#out.transmit(path, known.lastInit.response);
      this.#implicitRound(known, path, now, info, datagram.length);
      return;
    }
    if (known?.lastTimestamp && compareTai64n(hs.payload.timestamp, known.lastTimestamp) <= 0) {
      this.stats.controlDrops.handshake_replay++;
      return;
    }
    const spi = allocateSpi(o.random, (s) => this.#bySpi.has(s));
    const suites = o.suites ?? o.provider.suites;
    const smallSuites = smallSuitesWithin(o.provider, suites);
    let answer: ReturnType<ResponderHandshake['respond']>;
    try {
      answer = hs.respond({
        // No session with this client (a restart here, or an idle one forgotten): a client that
        // meant a rekey must start its stream layer over, as this side will (#confirm).
        fresh: !known?.keys.current,
        spi,
        suites,
        encapsulations: o.encapsulations ?? DEFAULT_ENCAPSULATION_PREFERENCE,
        small:
          smallSuites.length > 0 && hs.payload.small
            ? {
                spi: allocateSpi(o.random, (s) => s === spi || this.#bySpi.has(s)),
                suites: smallSuites,
              }
            : undefined,
        ...(auth.psk ? { psk: auth.psk } : {}),
      });
    } catch (e) {
      if (isRoamlinkError(e, ErrorCode.NO_COMMON_SUITE)) this.stats.controlDrops.no_common_suite++;
      else this.stats.controlDrops.peer_not_allowed++;
      return;
    }
    const peer = known ?? new RelayPeer<P>(hs.remoteStaticKey);
    if (!known) this.peers.set(id, peer);
    peer.lastSeen = now;
    // A client that starts over (its first handshake again: it carries candidates) numbers its
    // registration rounds from 1 again: the old session's round must not make them stale.
    const restart = known !== undefined && (hs.payload.candidates?.length ?? 0) > 0;
    if (restart) {
      peer.round = 0;
      peer.roundNonce = undefined;
      peer.chosenEncapsulation = undefined;
      peer.verdict = undefined;
    }
    const pair = new SaPair(answer.result, o.provider, now, {
      replayWindow: o.replayWindow,
      limits: o.limits,
    });
    const replaced = peer.keys.next;
    if (replaced) this.#unindex(replaced);
    peer.keys.next = pair;
    this.#index(peer, pair);
    peer.lastTimestamp = hs.payload.timestamp;
    peer.lastInit = {
      ephemeral: hs.remoteEphemeralKey,
      response: answer.message,
      paths: new Set([path]),
      pair,
      payload: hs.payload,
      restart,
    };
    if (o.keyLog) for (const k of pair.keyInfo()) this.#event(peer, { type: 'sa-keys', info: k });
    this.#out.transmit(path, answer.message);
    this.#implicitRound(peer, path, now, info, datagram.length);
  }

  /** Takes one handshake token for `source` (unknown source: no limit); false when none is left. */
  #handshakeBudget(source: string | undefined, now: number): boolean {
    const rate = this.#o.handshakeRate ?? { perSecond: 50, burst: 50 };
    if (source === undefined || rate.perSecond <= 0) return true;
    const refill = (b: TokenBucket): void => refillBucket(b, now, rate.perSecond, rate.burst);
    let b = this.#rate.get(source);
    if (b) refill(b);
    else {
      if (this.#rate.size >= RATE_SOURCES_MAX) {
        // Sources whose bucket has refilled are forgotten: they are back to a fresh budget anyway.
        for (const [k, v] of this.#rate) {
          refill(v);
          if (v.tokens >= rate.burst) this.#rate.delete(k);
        }
        if (this.#rate.size >= RATE_SOURCES_MAX) return false;
      }
      b = { tokens: rate.burst, at: now };
      this.#rate.set(source, b);
    }
    if (b.tokens < 1) return false;
    b.tokens -= 1;
    return true;
  }

  /**
   * Tells the sender of an ESP packet under an SPI we do not know (we restarted, or forgot an idle
   * client) so, in the clear: it has keys we lost, and only a new handshake helps. Without this the
   * client would notice only at its next rekey. The client treats it as an unauthenticated hint
   * (§4.1); here it is limited per path and in all (UNKNOWN_SPI_PATH_INTERVAL_MS, _PER_SECOND).
   */
  #hintUnknownSpi(spi: number, path: P, now: number): void {
    const last = this.#hinted.get(path);
    if (last !== undefined && now - last < UNKNOWN_SPI_PATH_INTERVAL_MS) {
      this.stats.controlDrops.unknown_spi_ignored++;
      return;
    }
    const b = this.#hintBudget;
    refillBucket(b, now, UNKNOWN_SPI_PER_SECOND, UNKNOWN_SPI_PER_SECOND);
    if (b.tokens < 1) {
      this.stats.controlDrops.unknown_spi_ignored++;
      return;
    }
    b.tokens -= 1;
    if (this.#hinted.size >= HINT_PATHS_MAX) {
      for (const [p, at] of this.#hinted) {
        if (now - at >= UNKNOWN_SPI_PATH_INTERVAL_MS) this.#hinted.delete(p);
      }
      // Still full of recent ones: forget them all rather than grow (the global budget holds).
      if (this.#hinted.size >= HINT_PATHS_MAX) this.#hinted.clear();
    }
    this.#hinted.set(path, now);
    this.stats.unknownSpiHints++;
    this.#out.transmit(path, encodeUnknownSpi(spi));
  }

  /**
   * Round 1 rides on message 1 (docs/PROTOCOL.md §3.2, §7): when message 1 carries the client's
   * candidate views, each copy of it is handled as that round's RREQ for the path it came on, and
   * the RREP follows the response at once, sealed with the new keys (it carries no user data, so
   * it need not wait for their confirmation). The round's nonce is the start of the handshake
   * hash, which only the two ends know.
   */
  #implicitRound(
    peer: RelayPeer<P>,
    path: P,
    now: number,
    info: PathInfo | undefined,
    size: number,
  ): void {
    const init = peer.lastInit;
    // Every copy of the first handshake's message 1 is round 1's RREQ for its path (PROTOCOL
    // §3.2), also one that arrives after the keys were confirmed on a faster path (an HTTP copy
    // behind a UDP one): the relay then knows and has answered every candidate, as after a
    // restart. Not once a rekey replaced the handshake's keys: the RREP would be sealed with
    // keys the client may have dropped.
    if (
      !init?.payload.candidates ||
      peer.round > 1 ||
      (peer.keys.current !== undefined && peer.keys.current !== init.pair && !init.restart)
    ) {
      return;
    }
    const enc = info?.encapsulation;
    const cand = init.payload.candidates.find((c) => c.encapsulation === enc);
    if (!cand || enc === undefined) return;
    const ps = this.#pathState(peer, path, info);
    ps.bytesIn += size;
    this.#rreq(
      peer,
      {
        round: 1,
        nonce: init.pair.handshakeHash.slice(0, 8),
        encapsulation: enc,
        timestamp: now,
        encapsulations: init.payload.encapsulations,
        view: cand.view,
        ...(cand.maxDatagram !== undefined ? { maxDatagram: cand.maxDatagram } : {}),
      },
      path,
      ps,
      now,
      init.pair,
    );
  }
}
