/**
 * The client's session with a relay: the initiator of every handshake and of every registration
 * round. Sans-I/O (see session.ts).
 *
 * Handshake (docs/PROTOCOL.md §4): `connect(candidates, now)` sends message 1 on every candidate
 * path at once (the same bytes, so the relay sees duplicates of one handshake); the first valid
 * response installs the SA pair. Rekeying follows WireGuard's timers: the current keys keep
 * sending until the new ones are in, old keys keep receiving, nothing waits.
 *
 * Registration (WO 03/063444; docs/PROTOCOL.md §6-7): once keys exist, and on every move, the
 * client sends an RREQ for a new round on every candidate path at once, each carrying the outer
 * header fields it sent on that path. It does not wait for the answer: until the RREP names the
 * chosen path, every data packet goes out on every candidate (the relay's replay window drops the
 * extra copies), within a small budget, so client → relay data resumes after half a round trip.
 * The RREP settles the path; the client checks the relay's verdict against its own (claim 8) and
 * keeps the safer one.
 *
 * Dead paths: when the client has sent since it last heard anything and the silence lasts
 * `deadProbeMs`, it challenges the path (PATH_CHALLENGE); with no answer after `deadConfirmMs`
 * more, the path is dead and a new round goes out on every candidate.
 *
 * NAT keepalives (RFC 3948 §2.3) and the binding timeout: behind a NAT on UDP the client learns
 * how long its NAT keeps an idle binding instead of assuming a short one, so that keepalives go
 * as seldom as the NAT allows without the main binding ever being lost. RFC 4787 REQ-5 asks NATs
 * for at least 2 minutes (5 by default) but many keep less; REQ-6 makes outbound packets refresh a
 * binding, which is what keepalives rely on. The measurement follows RFC 5780 §4.6 on a second UDP
 * flow the adapter opens (`binding-probe-wanted`, then `setBindingProbePath`), timed by the relay:
 * a BINDING_TEST (which itself refreshes the measurement binding) asks the relay to answer after a
 * delay; an answer proves the NAT kept the binding idle that long, silence that it did not. The
 * delay grows by half while answered and is then bisected to a ±15 % bracket. The main path keeps
 * a safe interval throughout: a conservative start, then 0.8 × the longest delay answered.
 *
 * The separable state machines live in their own pure modules, which this class composes and
 * drives with the clock: binding-search.ts (the binding-timeout search and the keepalive interval
 * it allows), path-probes.ts (outstanding PROBEs: chosen-path verification and lighter-path
 * probing), dead-path.ts (silence, challenge, death) and registration-round.ts (round numbers,
 * RREQ retransmission timing, which RREPs answer the round).
 */
import type { BindingTimeout } from './binding-search.ts';
import { BindingSearch } from './binding-search.ts';
import { toHex } from './bytes.ts';
import { NextHeader } from './constants.ts';
import type { CryptoProvider, Suite } from './crypto/aead.ts';
import { DeadPathDetector } from './dead-path.ts';
import { DEFAULT_ENCAPSULATION_PREFERENCE, Encapsulation } from './encapsulation.ts';
import { ErrorCode, isRoamlinkError } from './errors.ts';
import type { EspOpened } from './esp.ts';
import { DROP_NAMES, Drop, newEspOpened, readSpi, sealReserved } from './esp.ts';
import {
  ControlType,
  controlType,
  decodeUnknownSpi,
  InitiatorHandshake,
  isControl,
} from './handshake.ts';
import type { Keypair, RandomBytes } from './noise.ts';
import type { Verdict } from './path.ts';
import { lighterCandidates, PathProbes, retransmissionTimeout } from './path-probes.ts';
import {
  type BindingFrame,
  decodeBindingFrame,
  decodePathFrame,
  decodeProbeAck,
  decodeRrep,
  encodeBindingTest,
  encodePathChallenge,
  encodePathResponse,
  encodeProbe,
  encodeRreq,
  fitOuterView,
  RegFrameType,
} from './registration-frames.ts';
import type { Round } from './registration-round.ts';
import { RegistrationRounds } from './registration-round.ts';
import type { SaLimits } from './sa.ts';
import { SaPair } from './sa.ts';
import type { Candidate, Delivery, SessionEvent, SessionStats, Transmit } from './session.ts';
import {
  allocateSpi,
  KeySlots,
  NAT_KEEPALIVE,
  newSessionStats,
  Outbox,
  smallSuitesWithin,
} from './session.ts';
import { nextTai64n } from './tai64n.ts';
import { computeVerdict, saferVerdict } from './verdict.ts';

/** Room for a view in an RREQ: the 1200-byte frame minus its fixed fields and lists. */
const VIEW_BUDGET = 1100;

/** The least time between two rekeys an UNKNOWN_SPI hint may start (docs/PROTOCOL.md §4.1). */
export const UNKNOWN_SPI_MIN_INTERVAL_MS = 1000;

export interface ClientSessionOptions {
  staticKeypair: Keypair;
  relayStaticKey: Uint8Array;
  psk?: Uint8Array;
  provider: CryptoProvider;
  /** Suites to offer, fastest first. Default: the provider's order. */
  suites?: readonly Suite[];
  encapsulations?: readonly Encapsulation[];
  random: RandomBytes;
  limits?: Partial<SaLimits>;
  replayWindow?: number;
  /** First handshake retransmission after this long (default 1000 ms), doubling each time. */
  handshakeRetryMs?: number;
  /** Longest gap between retransmissions (default 8000 ms). */
  handshakeRetryMaxMs?: number;
  /** Give up after this long without a response (default 90 s, WireGuard's REKEY_ATTEMPT_TIME). */
  handshakeGiveUpMs?: number;
  /** First RREQ retransmission after this long with no RREP (default 500 ms), doubling, max 4 s. */
  registrationRetryMs?: number;
  /** Data packets duplicated on every candidate while a round is unanswered (default 64). */
  duplicatePackets?: number;
  /** Silence (while sending) before the path is challenged (default 1000 ms). */
  deadProbeMs?: number;
  /** Further silence after the challenge before the path is declared dead (default 1000 ms). */
  deadConfirmMs?: number;
  /** Emit `sa-keys` events carrying key material, for a key log. Default false. */
  keyLog?: boolean;
  /** Packets held while no keys are usable (default 256); older ones are dropped first. */
  maxStaged?: number;
  /**
   * While registered on an encapsulation the relay likes less than one of the candidates, probe
   * the better candidates this often (default 4000 ms) with data-sized PROBEs.
   */
  probeIntervalMs?: number;
  /** Size of a PROBE frame: as large as data packets, so that it tests what data meets (1200). */
  probeBytes?: number;
  /**
   * NAT keepalive interval while the binding timeout is being learned, and the first test's delay
   * (default 15 000 ms: below the 20-30 s that the least generous NATs keep an idle binding).
   */
  keepaliveStartMs?: number;
  /** Never send NAT keepalives more often than this, whatever was measured (default 10 000 ms). */
  keepaliveMinMs?: number;
  /** Longest delay a BINDING_TEST asks for (default 150 000 ms; at most 300 000). */
  bindingTestMaxMs?: number;
}

export type { BindingTimeout } from './binding-search.ts';

export type ClientState = 'idle' | 'handshaking' | 'established' | 'failed';

interface Pending<P> {
  hs: InitiatorHandshake;
  /** Where every attempt of this handshake goes, when not the usual (a rekey after a hint). */
  via: P[] | undefined;
  sentAt: number;
  startedAt: number;
  attempt: number;
  rekey: boolean;
}

export class ClientSession<P> {
  readonly stats: SessionStats = newSessionStats();
  /** Where data goes once registration has settled (the chosen path). */
  path: P | undefined;
  /** Encapsulation of the chosen path. */
  encapsulation: Encapsulation | undefined;
  /** The verdict in force (the safer of the relay's and our own). */
  verdict: Verdict | undefined;
  /** NAT keepalive interval the relay asked for on the chosen path; 0 = none. */
  keepaliveMs = 0;
  /**
   * The largest datagram the relay takes on the chosen path, from its RREP; undefined: it
   * announced none (DEFAULT_MAX_DATAGRAM on stream paths).
   */
  peerMaxDatagram: number | undefined;
  /** Smoothed RTT estimate (ms) from handshakes, RREPs and path challenges. */
  srtt: number | undefined;
  readonly #o: ClientSessionOptions;
  readonly #out = new Outbox<P>();
  readonly #keys = new KeySlots();
  readonly #opened: EspOpened = newEspOpened();
  readonly #staged: { payload: Uint8Array; nextHeader: number }[] = [];
  #pending: Pending<P> | undefined;
  #candidates: Candidate<P>[] = [];
  #dataPaths: P[] = [];
  #duplicatesLeft = 0;
  readonly #rounds = new RegistrationRounds();
  #lastTimestamp: Uint8Array | undefined;
  #lastHintAt = Number.NEGATIVE_INFINITY;
  #failed = false;
  #lastSentAt = 0;
  readonly #dead: DeadPathDetector;
  /** The relay's encapsulation preference, from its RREPs (lighter first). */
  #relayPrefs: readonly Encapsulation[] = DEFAULT_ENCAPSULATION_PREFERENCE;
  #nextProbeAt = 0;
  /** Outstanding PROBEs (chosen-path verification, lighter paths) and the data-blocked paths. */
  readonly #probes = new PathProbes<P>();
  /** `binding-probe-wanted` was emitted since the last move. */
  #bindingWanted = false;
  /** The adapter's measurement flow: never a candidate, never the chosen path. */
  #bindingPath: P | undefined;
  /** The bounds learned since the last move; set once a measurement flow was handed over. */
  #binding: BindingSearch | undefined;
  #bindingTest: { id: number; delayMs: number; sentAt: number } | undefined;
  #bindingId = 0;

  constructor(o: ClientSessionOptions) {
    this.#o = o;
    this.#dead = new DeadPathDetector({
      probeMs: o.deadProbeMs ?? 1000,
      confirmMs: o.deadConfirmMs ?? 1000,
    });
  }

  get state(): ClientState {
    if (this.#keys.current) return 'established';
    if (this.#pending) return 'handshaking';
    return this.#failed ? 'failed' : 'idle';
  }

  /** The SA pair used for sending now. */
  get current(): SaPair | undefined {
    return this.#keys.current;
  }

  /** Every live SA pair (for status pages and tests). */
  get saPairs(): SaPair[] {
    return this.#keys.all();
  }

  /** The paths a data packet from `send` must go out on: usually one, all candidates mid-move. */
  get dataPaths(): readonly P[] {
    return this.#dataPaths;
  }

  /** The registration round in progress or last completed. */
  get round(): number {
    return this.#rounds.number;
  }

  /** True once the current round has a chosen path. */
  get registered(): boolean {
    return this.#rounds.registered;
  }

  /** What the binding-timeout search has learned since the last move (undefined: not started). */
  get bindingTimeout(): BindingTimeout | undefined {
    return this.#binding?.snapshot();
  }

  /**
   * The NAT keepalive interval in force on the chosen path; 0 = none. Without a measurement flow
   * it is the relay's (`keepaliveMs`). With one: the conservative start until a delay has been
   * answered, then 0.8 × the longest answered delay; never above 0.8 × a delay that went
   * unanswered, never below `keepaliveMinMs`.
   */
  get natKeepaliveMs(): number {
    if (this.keepaliveMs <= 0) return 0;
    return this.#binding ? this.#binding.keepaliveMs() : this.keepaliveMs;
  }

  /**
   * Hands over (or, with undefined, takes back) the second UDP flow to the relay on which the
   * binding timeout is measured, after a `binding-probe-wanted` event. Its own socket gives it its
   * own NAT binding; nothing arriving on it ever moves the chosen path. Tests start at once when
   * the session is registered on UDP behind a NAT.
   */
  setBindingProbePath(candidate: Candidate<P> | undefined, now: number): void {
    this.#bindingTest = undefined;
    if (candidate === undefined) {
      this.#bindingPath = undefined;
      return;
    }
    if (candidate.info.encapsulation !== Encapsulation.UDP) {
      throw new RangeError('the binding probe path must be UDP');
    }
    if (candidate.path === this.path || this.#candidates.some((c) => c.path === candidate.path)) {
      throw new RangeError('the binding probe path must not be a candidate');
    }
    this.#bindingPath = candidate.path;
    this.#binding ??= this.#newBindingSearch();
    this.#bindingStep(now);
  }

  /** Starts the first handshake, sending message 1 on every candidate at once. */
  connect(candidates: Candidate<P>[], now: number): void {
    if (candidates.length === 0) throw new RangeError('connect needs at least one candidate');
    this.#candidates = candidates;
    this.path = candidates[0]!.path;
    this.#dataPaths = [this.path];
    this.#failed = false;
    this.#startHandshake(now, false);
  }

  /**
   * The client moved (new addresses, a dead path, a network-change event): registers again on
   * every candidate at once. No new key exchange.
   */
  move(candidates: Candidate<P>[], now: number, reason: string): void {
    if (candidates.length === 0) throw new RangeError('move needs at least one candidate');
    this.#candidates = candidates;
    // Another network, perhaps another NAT: what was measured no longer holds.
    this.#bindingWanted = false;
    this.#bindingPath = undefined;
    this.#bindingTest = undefined;
    this.#binding = undefined;
    if (!this.#keys.current) {
      // No keys yet: the handshake itself goes out on the new paths.
      this.path = candidates[0]!.path;
      this.#dataPaths = [this.path];
      this.#startHandshake(now, false);
      return;
    }
    this.#startRound(now, reason);
  }

  /**
   * Seals `payload` and returns the packet, to be sent on every path in `dataPaths`; or undefined
   * if no keys are usable yet (the payload is then held and sent when they are).
   */
  send(payload: Uint8Array, nextHeader: number, now: number): Uint8Array | undefined {
    return this.#send(payload, nextHeader, now, false);
  }

  /**
   * As `send`, but seals `payload` where it lies, without a copy: the bytes before and after the
   * view (ESP_PAYLOAD_OFFSET and ESP_TAIL_RESERVE of them) are scratch the caller reserved, as
   * the stream layer's packets have. Falls back to a copy if the room is not there.
   */
  sendReserved(payload: Uint8Array, nextHeader: number, now: number): Uint8Array | undefined {
    return this.#send(payload, nextHeader, now, true);
  }

  #send(
    payload: Uint8Array,
    nextHeader: number,
    now: number,
    reserved: boolean,
  ): Uint8Array | undefined {
    const cur = this.#usable(now);
    if (!cur) {
      this.#stage(payload, nextHeader);
      return undefined;
    }
    const tx = cur.sender(payload.length);
    const pkt =
      (reserved ? sealReserved(tx, payload, nextHeader) : undefined) ??
      tx.seal(payload, nextHeader);
    this.stats.packetsSent++;
    this.#sent(now);
    if (this.#dataPaths.length > 1 && --this.#duplicatesLeft <= 0) {
      // Budget spent and still no answer: settle on the most preferred usable candidate.
      this.#dataPaths = [this.#roundCandidates()[0]!.path];
    }
    if (!this.#pending && cur.wantsRekey(now)) this.#startHandshake(now, true);
    return pkt;
  }

  /** Feeds one received datagram. Returns what it delivers, if anything; never throws on input. */
  receive(datagram: Uint8Array, path: P, now: number): Delivery | undefined {
    if (isControl(datagram)) {
      this.#control(datagram, path, now);
      return undefined;
    }
    if (datagram.length < 4) {
      this.stats.espDrops.too_short++;
      return undefined;
    }
    const spi = readSpi(datagram);
    const pair = this.#keys.bySpi(spi);
    if (!pair || pair.expired(now)) {
      this.stats.espDrops.bad_spi++;
      return undefined;
    }
    const r = pair.receiver(spi)!.open(datagram, this.#opened);
    if (r !== Drop.NONE) {
      this.stats.espDrops[DROP_NAMES[r] as Exclude<(typeof DROP_NAMES)[number], 'none'>]++;
      return undefined;
    }
    // Authenticated and fresh: only now may it move state.
    this.stats.packetsReceived++;
    // The measurement flow proves nothing about the chosen path.
    const onBindingPath = this.#bindingPath !== undefined && path === this.#bindingPath;
    if (!onBindingPath) this.#dead.heard();
    if (!this.#pending && pair === this.#keys.current && pair.wantsRekey(now)) {
      this.#startHandshake(now, true);
    }
    const { nextHeader, payload, seq } = this.#opened;
    if (nextHeader === NextHeader.NO_NEXT_HEADER) {
      this.stats.keepalivesReceived++;
      return undefined;
    }
    if (nextHeader === NextHeader.ROAMLINK && payload.length > 0) {
      if (onBindingPath) {
        // Only BINDING_ACKs belong here; no other registration frame may act on this flow.
        if (payload[0] === RegFrameType.BINDING_ACK) this.#bindingAckFrame(payload, path, now);
        if (payload[0]! >= RegFrameType.RREQ && payload[0]! <= RegFrameType.BINDING_ACK) {
          return undefined;
        }
      } else if (this.#registrationFrame(payload, path, now)) {
        return undefined;
      }
    }
    return { nextHeader, payload, seq };
  }

  handleTimeout(now: number): void {
    for (const p of this.#keys.expire(now)) {
      this.#out.event({ type: 'keys-expired', localSpi: p.localSpi });
    }
    const pend = this.#pending;
    if (pend) {
      const o = this.#o;
      if (now - pend.startedAt >= (o.handshakeGiveUpMs ?? 90_000)) {
        this.#pending = undefined;
        this.#failed = !this.#keys.current;
        this.#out.event({ type: 'handshake-failed', reason: 'no response' });
      } else if (now >= this.#retryAt(pend)) {
        this.#sendInit(now, pend.rekey, pend.startedAt, pend.attempt + 1, pend.via);
      }
    } else if (this.#keys.current?.wantsRekey(now)) {
      this.#startHandshake(now, true);
    }
    if (!this.#keys.current) return;
    const retryAt = this.#rounds.retryAt(this.srtt, this.#o.registrationRetryMs);
    if (retryAt !== undefined && now >= retryAt) this.#sendRreqs(this.#rounds.resend(now), now);
    // Silence since the first packet nothing has answered: challenge, then give the path up.
    const due = this.registered ? this.#dead.due(now, this.srtt) : undefined;
    if (due === 'challenge') {
      this.#sendChallenge(now, 'silence');
    } else if (due !== undefined) {
      this.#out.event({ type: 'path-dead', silentMs: due.silentMs });
      this.#startRound(now, 'dead-path');
    }
    const verifyAt = this.#probes.verifyDeadline(retransmissionTimeout(this.srtt));
    if (verifyAt !== undefined && now >= verifyAt) {
      const x = this.#probes.verifyExpired(this.path);
      if (x.kind === 'retry') {
        this.#verifyPath(now);
      } else if (x.kind === 'blocked') {
        this.#out.event({ type: 'path-data-blocked', size: x.size });
        if (this.#roundCandidates().some((c) => c.path !== x.path))
          this.#startRound(now, 'data-blocked');
      }
    }
    if (this.#nextProbeAt > 0 && now >= this.#nextProbeAt) this.#sendProbes(now);
    const test = this.#bindingTest;
    if (test && now >= this.#bindingDeadline(test)) {
      // Silence: the measurement binding did not survive `delayMs` idle (or the ack was lost,
      // which errs on the safe side). An upper bound.
      this.#bindingTest = undefined;
      this.#binding?.unanswered(test.delayMs);
      this.#out.event({ type: 'binding-test', delayMs: test.delayMs, answered: false });
      this.#bindingStep(now);
    } else if (!test) {
      this.#bindingStep(now);
    }
    const keepaliveAt = this.#keepaliveAt();
    if (keepaliveAt !== undefined && now >= keepaliveAt && this.path !== undefined) {
      this.#out.transmit(this.path, NAT_KEEPALIVE);
      this.stats.natKeepalivesSent++;
      this.#lastSentAt = now;
    }
  }

  nextTimeout(): number | undefined {
    let t = Number.POSITIVE_INFINITY;
    const e = this.#keys.nextExpiry();
    if (e !== undefined) t = Math.min(t, e);
    const pend = this.#pending;
    if (pend) {
      t = Math.min(t, this.#retryAt(pend), pend.startedAt + (this.#o.handshakeGiveUpMs ?? 90_000));
    } else if (this.#keys.current) {
      const c = this.#keys.current;
      t = Math.min(t, c.createdAt + c.limits.rekeyAfterMs);
    }
    if (this.#keys.current) {
      const r = this.#rounds.retryAt(this.srtt, this.#o.registrationRetryMs);
      if (r !== undefined) t = Math.min(t, r);
      const d = this.registered ? this.#dead.deadline(this.srtt) : undefined;
      if (d !== undefined) t = Math.min(t, d);
      const k = this.#keepaliveAt();
      if (k !== undefined) t = Math.min(t, k);
      if (this.#nextProbeAt > 0) t = Math.min(t, this.#nextProbeAt);
      const v = this.#probes.verifyDeadline(retransmissionTimeout(this.srtt));
      if (v !== undefined) t = Math.min(t, v);
      if (this.#bindingTest) t = Math.min(t, this.#bindingDeadline(this.#bindingTest));
    }
    return t === Number.POSITIVE_INFINITY ? undefined : t;
  }

  pollTransmit(): Transmit<P> | undefined {
    return this.#out.pollTransmit();
  }

  pollEvent(): SessionEvent | undefined {
    return this.#out.pollEvent();
  }

  // --- registration ------------------------------------------------------------------------

  /**
   * Starts a round. With `implicitNonce`, the round's RREQs already went out inside message 1
   * (round 1), so nothing is sent now; they are sent only if no RREP comes.
   */
  #startRound(now: number, reason: string, implicitNonce?: Uint8Array, sentAt = now): void {
    const round = this.#rounds.start(implicitNonce ?? this.#o.random(8), reason, sentAt, now);
    this.#dead.cancelChallenge();
    this.#nextProbeAt = 0;
    // Until the RREP names a path, data goes out on every candidate (half an RTT to resume), and
    // twice on datagram paths, so that one lost copy does not cost the resume a packet interval.
    const cands = this.#roundCandidates();
    const twice =
      reason === 'connect' ? [] : cands.filter((c) => c.info.encapsulation === Encapsulation.UDP);
    this.#dataPaths = [...cands.map((c) => c.path), ...twice.map((c) => c.path)];
    this.#duplicatesLeft = this.#o.duplicatePackets ?? 64;
    if (implicitNonce) {
      this.stats.registrations++;
      this.#out.event({
        type: 'registration-sent',
        round: round.round,
        reason,
        paths: 0,
        attempt: 1,
      });
    } else {
      this.#sendRreqs(round, now);
    }
  }

  #sendRreqs(round: Round, now: number): void {
    const cur = this.#keys.current;
    if (!cur) return;
    const prefs = this.#o.encapsulations ?? DEFAULT_ENCAPSULATION_PREFERENCE;
    // The relay takes the first RREQ of a round and upgrades only for one that follows within its
    // grace window: sent lighter first (in the relay's order), the one it prefers tends to arrive
    // first, and the session does not pass through a heavier path on its way.
    const rank = (e: Encapsulation): number => {
      const i = this.#relayPrefs.indexOf(e);
      return i < 0 ? this.#relayPrefs.length : i;
    };
    const candidates = [...this.#roundCandidates()].sort(
      (a, b) => rank(a.info.encapsulation) - rank(b.info.encapsulation),
    );
    for (const c of candidates) {
      const frame = encodeRreq({
        round: round.round,
        nonce: round.nonce,
        encapsulation: c.info.encapsulation,
        timestamp: now,
        encapsulations: [...prefs],
        view: fitOuterView(c.info.view, VIEW_BUDGET),
        ...(c.info.maxDatagram !== undefined ? { maxDatagram: c.info.maxDatagram } : {}),
      });
      const pkt = cur.tx.seal(frame, NextHeader.ROAMLINK);
      this.#out.transmit(c.path, pkt);
      // A datagram path may lose the RREQ: a second copy (the relay's replay window drops it if
      // both arrive) keeps one loss from delaying the move.
      if (c.info.encapsulation === Encapsulation.UDP && round.reason !== 'connect') {
        this.#out.transmit(c.path, pkt);
      }
    }
    this.#sent(now);
    this.stats.registrations++;
    this.#out.event({
      type: 'registration-sent',
      round: round.round,
      reason: round.reason,
      paths: this.#roundCandidates().length,
      attempt: round.attempt,
    });
  }

  #keepaliveAt(): number | undefined {
    // RFC 3948 §2.3 keepalives keep a UDP NAT binding; other encapsulations have their own.
    if (this.keepaliveMs <= 0 || this.encapsulation !== Encapsulation.UDP) return undefined;
    return this.#lastSentAt + this.natKeepaliveMs;
  }

  // --- NAT binding timeout (RFC 5780 §4.6; RFC 4787 REQ-5, REQ-6) ------------------------------

  #newBindingSearch(): BindingSearch {
    const o = this.#o;
    return new BindingSearch({
      startMs: o.keepaliveStartMs ?? 15_000,
      floorMs: o.keepaliveMinMs ?? 10_000,
      maxMs: Math.min(o.bindingTestMaxMs ?? 150_000, 300_000),
    });
  }

  /** Tests run only on a measurement flow, behind a NAT, on UDP: with no NAT there is no traffic. */
  #bindingEligible(): boolean {
    return (
      this.#bindingPath !== undefined &&
      this.#keys.current !== undefined &&
      this.registered &&
      this.keepaliveMs > 0 &&
      this.encapsulation === Encapsulation.UDP &&
      this.#binding !== undefined &&
      !this.#binding.done
    );
  }

  /** A test is given up after its delay plus max(1 s, 4 × SRTT). */
  #bindingDeadline(t: { delayMs: number; sentAt: number }): number {
    return t.sentAt + t.delayMs + Math.max(1000, 4 * (this.srtt ?? 0));
  }

  /** Sends the next BINDING_TEST if none is outstanding, or ends the search. */
  #bindingStep(now: number): void {
    if (this.#bindingTest || !this.#bindingEligible()) return;
    const b = this.#binding!;
    const delayMs = b.next();
    if (delayMs === undefined) {
      this.#out.event({
        type: 'binding-learned',
        lowerMs: b.lowerMs,
        upperMs: b.upperMs,
        keepaliveMs: this.natKeepaliveMs,
      });
      return;
    }
    const cur = this.#keys.current!;
    const id = ++this.#bindingId >>> 0;
    this.#bindingTest = { id, delayMs, sentAt: now };
    // The test is itself the outbound packet that refreshes the measurement binding (RFC 4787
    // REQ-6), so the idle time the ack measures starts now. Not counted as sending on the chosen
    // path: it neither defers the main keepalive nor arms dead-path detection.
    this.#out.transmit(
      this.#bindingPath!,
      cur.tx.seal(encodeBindingTest({ id, delayMs }), NextHeader.ROAMLINK),
    );
  }

  #bindingAckFrame(payload: Uint8Array, path: P, now: number): void {
    let f: BindingFrame & { type: number };
    try {
      f = decodeBindingFrame(payload);
    } catch (e) {
      if (!isRoamlinkError(e, ErrorCode.MALFORMED)) throw e;
      this.stats.controlDrops.frame_malformed++;
      return;
    }
    const t = this.#bindingTest;
    // Only the answer to the outstanding test, on the measurement flow, no sooner than the delay
    // it asked for, counts: an early or unknown answer proves nothing about idle time.
    if (
      !t ||
      path !== this.#bindingPath ||
      f.id !== t.id ||
      f.delayMs !== t.delayMs ||
      now - t.sentAt < t.delayMs
    ) {
      return;
    }
    this.#bindingTest = undefined;
    this.#binding?.answered(t.delayMs);
    this.#out.event({ type: 'binding-test', delayMs: t.delayMs, answered: true });
    this.#bindingStep(now);
  }

  #sent(now: number): void {
    this.#dead.sent(now);
    this.#lastSentAt = now;
  }

  #rtt(sample: number): void {
    this.srtt = this.srtt === undefined ? sample : this.srtt * 0.875 + sample * 0.125;
  }

  #sendChallenge(now: number, reason: string): void {
    const cur = this.#keys.current;
    if (!cur || this.path === undefined) return;
    const data = this.#o.random(8);
    this.#dead.challenged(data, now);
    this.#out.transmit(this.path, cur.tx.seal(encodePathChallenge(data), NextHeader.ROAMLINK));
    this.#sent(now);
    this.#out.event({ type: 'path-challenge', reason });
  }

  /** Handles registration frames; returns false for anything the application should see. */
  #registrationFrame(payload: Uint8Array, path: P, now: number): boolean {
    const type = payload[0];
    try {
      if (type === RegFrameType.RREP) {
        this.#rrep(decodeRrep(payload), path, now);
        return true;
      }
      if (type === RegFrameType.PATH_CHALLENGE || type === RegFrameType.PATH_RESPONSE) {
        const f = decodePathFrame(payload);
        const cur = this.#keys.current;
        if (f.type === RegFrameType.PATH_CHALLENGE) {
          // RFC 9000 §8.2.2: answer on the path the challenge came on.
          if (cur)
            this.#out.transmit(path, cur.tx.seal(encodePathResponse(f.data), NextHeader.ROAMLINK));
        } else {
          const rtt = this.#dead.response(f.data, now);
          if (rtt !== undefined) {
            this.#rtt(rtt);
            this.#out.event({ type: 'path-validated', rttMs: rtt });
          }
        }
        return true;
      }
      if (type === RegFrameType.PROBE_ACK) {
        this.#probeAck(decodeProbeAck(payload), path, now);
        return true;
      }
      if (type === RegFrameType.BINDING_ACK || type === RegFrameType.BINDING_TEST) {
        // Off the measurement flow an ack is ignored (#bindingAckFrame checks the path); a test is
        // the client's to send, never to answer.
        if (type === RegFrameType.BINDING_ACK) this.#bindingAckFrame(payload, path, now);
        return true;
      }
    } catch (e) {
      if (!isRoamlinkError(e, ErrorCode.MALFORMED)) throw e;
      this.stats.controlDrops.frame_malformed++;
      return true;
    }
    return false;
  }

  /** The candidates a round registers on: all but the data-blocked ones (unless none is left). */
  #roundCandidates(): Candidate<P>[] {
    const ok = this.#candidates.filter((c) => !this.#probes.blocked.has(c.path));
    return ok.length > 0 ? ok : this.#candidates;
  }

  /**
   * WO 03/063444: a probe checks that data, not only registration, passes. Each newly chosen path
   * gets a PROBE as large as data; unanswered after three retransmission timeouts, the path is
   * data-blocked (a firewall passing small packets only, a PMTU black hole, DPI) and the client
   * registers again without it.
   */
  #verifyPath(now: number): void {
    const cur = this.#keys.current;
    if (!cur || this.path === undefined) return;
    const size = this.#o.probeBytes ?? 1200;
    const id = this.#probes.startVerify(this.path, size, now);
    const frame = encodeProbe({ id, encapsulation: this.encapsulation ?? Encapsulation.UDP, size });
    this.#out.transmit(this.path, cur.tx.seal(frame, NextHeader.ROAMLINK));
  }

  /** Candidates whose encapsulation the relay prefers to the one in use. */
  #betterCandidates(): Candidate<P>[] {
    return lighterCandidates(this.#candidates, this.path, this.encapsulation, this.#relayPrefs);
  }

  #scheduleProbes(now: number): void {
    this.#nextProbeAt =
      this.#betterCandidates().length > 0 ? now + (this.#o.probeIntervalMs ?? 4000) : 0;
  }

  /**
   * WO 03/063444 (claim 11 and the probe paragraph): a lighter path is used only once a probe as
   * large as data has crossed it and come back; registration alone does not prove that data
   * passes a firewall.
   */
  #sendProbes(now: number): void {
    const cur = this.#keys.current;
    this.#probes.clearLighter();
    if (cur) {
      const size = this.#o.probeBytes ?? 1200;
      for (const c of this.#betterCandidates()) {
        const id = this.#probes.startLighter(c.path, size, now);
        const frame = encodeProbe({ id, encapsulation: c.info.encapsulation, size });
        this.#out.transmit(c.path, cur.tx.seal(frame, NextHeader.ROAMLINK));
      }
    }
    this.#scheduleProbes(now);
  }

  #probeAck(ack: ReturnType<typeof decodeProbeAck>, path: P, now: number): void {
    const m = this.#probes.ack(ack.id, ack.size, path);
    if (m?.kind !== 'lighter') return;
    this.#rtt(now - m.sentAt);
    // The lighter path carries data-sized packets both ways: register again; the relay prefers it.
    this.#startRound(now, 'probe-answered');
  }

  #rrep(rrep: ReturnType<typeof decodeRrep>, path: P, now: number): void {
    const outcome = this.#rounds.rrep(rrep, now);
    if (outcome.kind === 'stale') {
      this.stats.controlDrops.stale_registration++;
      return;
    }
    if (outcome.kind !== 'chosen') return;
    const { round } = outcome;
    const cand = this.#candidates.find((c) => c.path === path);
    if (outcome.rttMs !== undefined) this.#rtt(outcome.rttMs);
    this.path = path;
    this.#dataPaths = [path];
    this.encapsulation = rrep.chosenEncapsulation;
    const own = cand
      ? computeVerdict(cand.info.view, rrep.observed, cand.info.encapsulation)
      : rrep.verdict;
    const used = saferVerdict(own, rrep.verdict);
    if (own !== rrep.verdict) {
      this.#out.event({
        type: 'verdict-disagreement',
        round: round.round,
        relay: rrep.verdict,
        client: own,
        used,
      });
    }
    this.verdict = used;
    this.keepaliveMs = rrep.keepaliveMs;
    this.peerMaxDatagram = rrep.maxDatagram;
    if (
      !this.#bindingWanted &&
      rrep.keepaliveMs > 0 &&
      rrep.chosenEncapsulation === Encapsulation.UDP
    ) {
      // Behind a NAT on UDP: ask the adapter for a measurement flow, once per network.
      this.#bindingWanted = true;
      this.#out.event({ type: 'binding-probe-wanted' });
    }
    if (rrep.encapsulations.length > 0) this.#relayPrefs = rrep.encapsulations;
    this.#scheduleProbes(now);
    this.#probes.cancelVerify();
    this.#verifyPath(now);
    this.#out.event({
      type: 'registered',
      round: round.round,
      encapsulation: rrep.chosenEncapsulation,
      verdict: used,
      decision: rrep.decision,
      rttMs: now - round.startedAt,
    });
    this.#bindingStep(now);
  }

  // --- handshake ---------------------------------------------------------------------------

  #usable(now: number): SaPair | undefined {
    const cur = this.#keys.current;
    if (!cur) return undefined;
    if (cur.expired(now)) {
      this.#keys.current = undefined;
      this.#out.event({ type: 'keys-expired', localSpi: cur.localSpi });
      if (!this.#pending) this.#startHandshake(now, true);
      return undefined;
    }
    return cur;
  }

  #stage(payload: Uint8Array, nextHeader: number): void {
    const max = this.#o.maxStaged ?? 256;
    if (this.#staged.length >= max) {
      this.#staged.shift();
      this.stats.controlDrops.no_keys++;
    }
    // The caller may reuse its buffer once we return; keep our own copy.
    this.#staged.push({ payload: payload.slice(), nextHeader });
  }

  #retryAt(p: Pending<P>): number {
    const base = this.#o.handshakeRetryMs ?? 1000;
    const max = this.#o.handshakeRetryMaxMs ?? 8000;
    return p.sentAt + Math.min(max, base * 2 ** (p.attempt - 1));
  }

  /**
   * The relay says it does not know the SPI we send under (docs/PROTOCOL.md §4.2): it restarted,
   * or forgot us. The message cannot be authenticated (the relay has no keys for us), so it is
   * only a hint, and one that can do no harm: it starts a rekey, an authenticated handshake that
   * keeps the session, at most once per UNKNOWN_SPI_MIN_INTERVAL_MS; it never ends anything.
   * Without it the client would wait for its next scheduled rekey (2 minutes) or the stream
   * layer's outage limit before it noticed.
   */
  #unknownSpi(datagram: Uint8Array, path: P, now: number): void {
    const spi = decodeUnknownSpi(datagram);
    const cur = this.#keys.current;
    if (
      spi === undefined ||
      !cur ||
      (spi !== cur.remoteSpi && spi !== cur.txSmall?.spi) ||
      this.#pending ||
      now - this.#lastHintAt < UNKNOWN_SPI_MIN_INTERVAL_MS
    ) {
      this.stats.controlDrops.unknown_spi_ignored++;
      return;
    }
    this.#lastHintAt = now;
    this.stats.unknownSpiHints++;
    // On the path the hint came by, which reaches the relay now, as well as the chosen one: that
    // one may be a transport that died with the relay and was dialled again under another id.
    const chosen = this.path;
    this.#sendInit(
      now,
      true,
      now,
      1,
      chosen === undefined || chosen === path ? [path] : [path, chosen],
    );
  }

  #startHandshake(now: number, rekey: boolean): void {
    this.#sendInit(now, rekey, now, 1);
  }

  #sendInit(now: number, rekey: boolean, startedAt: number, attempt: number, via?: P[]): void {
    const o = this.#o;
    // A fresh message (new ephemeral, SPI and timestamp) per attempt: a lost one is simply gone.
    const spi = allocateSpi(o.random, (s) => this.#keys.bySpi(s) !== undefined);
    const suites = o.suites ?? o.provider.suites;
    // Offer a small-packet SA (docs/PROTOCOL.md §3.7) among the suites we offer at all.
    const smallSuites = smallSuitesWithin(o.provider, suites);
    const small =
      smallSuites.length > 0
        ? {
            spi: allocateSpi(o.random, (s) => s === spi || this.#keys.bySpi(s) !== undefined),
            suites: smallSuites,
          }
        : undefined;
    const timestamp = nextTai64n(now, this.#lastTimestamp);
    this.#lastTimestamp = timestamp;
    const hs = new InitiatorHandshake({
      staticKeypair: o.staticKeypair,
      relayStaticKey: o.relayStaticKey,
      spi,
      timestamp,
      suites,
      small,
      encapsulations: o.encapsulations ?? DEFAULT_ENCAPSULATION_PREFERENCE,
      random: o.random,
      x25519: o.provider.x25519,
      ...(o.psk ? { psk: o.psk } : {}),
      // The first handshake carries every candidate's view: round 1 is answered with it.
      ...(!rekey && !this.#rounds.current
        ? {
            candidates: this.#candidates.map((c) => ({
              encapsulation: c.info.encapsulation,
              view: fitOuterView(c.info.view, VIEW_BUDGET),
              ...(c.info.maxDatagram !== undefined ? { maxDatagram: c.info.maxDatagram } : {}),
            })),
          }
        : {}),
    });
    // A rekey goes on the chosen path; the first handshake on every candidate at once.
    const paths =
      via ?? (rekey && this.path !== undefined ? [this.path] : this.#candidates.map((c) => c.path));
    this.#pending = { hs, via, sentAt: now, startedAt, attempt, rekey };
    for (const p of paths) this.#out.transmit(p, hs.message);
    this.#out.event({ type: 'handshake-sent', spi, attempt, rekey });
  }

  #control(datagram: Uint8Array, path: P, now: number): void {
    const type = controlType(datagram);
    if (type === ControlType.UNKNOWN_SPI) {
      this.#unknownSpi(datagram, path, now);
      return;
    }
    if (type !== ControlType.HANDSHAKE_RESP) {
      this.stats.controlDrops.unknown_control++;
      return;
    }
    const pend = this.#pending;
    if (!pend || InitiatorHandshake.responseReceiverSpi(datagram) !== pend.hs.spi) {
      // A duplicate answer (the relay answers every path that reached it) or a stale one.
      this.stats.controlDrops.handshake_unexpected++;
      return;
    }
    let done: ReturnType<InitiatorHandshake['consume']>;
    try {
      done = pend.hs.consume(datagram);
    } catch (e) {
      if (isRoamlinkError(e, ErrorCode.AUTH_FAILED)) this.stats.controlDrops.handshake_auth++;
      else if (isRoamlinkError(e, ErrorCode.NO_COMMON_SUITE))
        this.stats.controlDrops.no_common_suite++;
      else this.stats.controlDrops.handshake_malformed++;
      return;
    }
    const o = this.#o;
    const pair = new SaPair(done.result, o.provider, now, {
      replayWindow: o.replayWindow,
      limits: o.limits,
    });
    this.#pending = undefined;
    this.#keys.rotate(pair);
    this.#dead.heard();
    if (pend.attempt === 1) this.#rtt(now - pend.sentAt);
    this.stats.handshakes++;
    if (pend.rekey) this.stats.rekeys++;
    if (o.keyLog) for (const info of pair.keyInfo()) this.#out.event({ type: 'sa-keys', info });
    this.#out.event({
      type: 'established',
      suite: pair.suite,
      localSpi: pair.localSpi,
      remoteSpi: pair.remoteSpi,
      rekey: pend.rekey,
      ...(pair.smallSuite === undefined ? {} : { smallSuite: pair.smallSuite }),
      ...(pend.rekey && done.payload.fresh ? { relayFresh: true } : {}),
    });
    // A rekey is confirmed on the chosen path; one a hint started, on the path its answer came
    // by (the chosen one may be dead: the relay restarted and took its transports with it).
    let confirmOn: P | undefined = pend.rekey && pend.via === undefined ? this.path : path;
    if (!pend.rekey && !this.#rounds.current) {
      if (pend.hs.carriesViews) {
        // Round 1 rode on message 1: the relay answers it right behind the response. Its nonce
        // is the start of the handshake hash, which only the two ends know.
        this.#startRound(now, 'connect', pair.handshakeHash.slice(0, 8), pend.sentAt);
      } else {
        // The views did not fit: round 1 goes as RREQs now, which also confirm the keys.
        this.#startRound(now, 'connect');
        confirmOn = undefined;
      }
    }
    if (confirmOn !== undefined && this.#staged.length === 0) {
      // Confirm the new keys to the relay with a keepalive (RFC 4303 §2.6), on a path known to work.
      this.#out.transmit(confirmOn, pair.tx.seal(new Uint8Array(0), NextHeader.NO_NEXT_HEADER));
    }
    for (const s of this.#staged.splice(0)) {
      const pkt = pair.tx.seal(s.payload, s.nextHeader);
      for (const p of this.#dataPaths) this.#out.transmit(p, pkt);
      this.stats.packetsSent++;
    }
  }
}

/** Hex of a public key, the map key for peers. */
export const keyId = (publicKey: Uint8Array): string => toHex(publicKey);
