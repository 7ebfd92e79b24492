/**
 * The client's session with a relay: the initiator of every handshake. Sans-I/O (see session.ts).
 *
 * Lifecycle: `connect(paths, now)` sends message 1 on every given path at once (the same bytes,
 * so the relay sees duplicates of one handshake); the first valid response installs the SA pair
 * and the client confirms it with a keepalive (Next Header 59), so the relay may start sending.
 *
 * Rekeying (WireGuard's timers, whitepaper §6): once the current keys are `rekeyAfterMs` old or
 * have used `rekeyAfterPackets` sequence numbers in either direction, the client starts a new
 * handshake while it goes on sending with the current keys. When the response arrives it switches
 * sending to the new keys at once and keeps the old ones for receiving (slot `previous`): packets
 * in flight under either key are accepted, and no packet waits for the handshake.
 */
import { toHex } from './bytes.ts';
import { NextHeader } from './constants.ts';
import type { CryptoProvider, Suite } from './crypto/aead.ts';
import type { Encapsulation } from './encapsulation.ts';
import { DEFAULT_ENCAPSULATION_PREFERENCE } from './encapsulation.ts';
import { ErrorCode, isRoamlinkError } from './errors.ts';
import type { EspOpened } from './esp.ts';
import { DROP_NAMES, Drop, newEspOpened, readSpi } from './esp.ts';
import { ControlType, controlType, InitiatorHandshake, isControl } from './handshake.ts';
import type { Keypair, RandomBytes } from './noise.ts';
import type { SaLimits } from './sa.ts';
import { SaPair } from './sa.ts';
import type { Delivery, SessionEvent, SessionStats, Transmit } from './session.ts';
import { allocateSpi, KeySlots, newSessionStats, Outbox } from './session.ts';
import { nextTai64n } from './tai64n.ts';

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
  /** Emit `sa-keys` events carrying key material, for a key log. Default false. */
  keyLog?: boolean;
  /** Packets held while no keys are usable (default 256); older ones are dropped first. */
  maxStaged?: number;
}

export type ClientState = 'idle' | 'handshaking' | 'established' | 'failed';

interface Pending<P> {
  hs: InitiatorHandshake;
  paths: P[];
  sentAt: number;
  startedAt: number;
  attempt: number;
  rekey: boolean;
}

export class ClientSession<P> {
  readonly stats: SessionStats = newSessionStats();
  /** Where data goes now. Registration (a later layer) moves it; a handshake does not. */
  path: P | undefined;
  readonly #o: ClientSessionOptions;
  readonly #out = new Outbox<P>();
  readonly #keys = new KeySlots();
  readonly #opened: EspOpened = newEspOpened();
  readonly #staged: { payload: Uint8Array; nextHeader: number }[] = [];
  #pending: Pending<P> | undefined;
  #paths: P[] = [];
  #lastTimestamp: Uint8Array | undefined;
  #failed = false;

  constructor(o: ClientSessionOptions) {
    this.#o = o;
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

  /** Starts the first handshake, sending message 1 on every path in `paths`. */
  connect(paths: P[], now: number): void {
    if (paths.length === 0) throw new RangeError('connect needs at least one path');
    this.#paths = paths;
    this.path ??= paths[0];
    this.#failed = false;
    this.#startHandshake(now, false);
  }

  /**
   * Seals `payload` for the current path and returns the packet, or undefined if no keys are
   * usable yet (the payload is then held and sent when they are). May queue a rekey handshake.
   */
  send(payload: Uint8Array, nextHeader: number, now: number): Uint8Array | undefined {
    const cur = this.#usable(now);
    if (!cur) {
      this.#stage(payload, nextHeader);
      return undefined;
    }
    const pkt = cur.tx.seal(payload, nextHeader);
    this.stats.packetsSent++;
    if (!this.#pending && cur.wantsRekey(now)) this.#startHandshake(now, true);
    return pkt;
  }

  /** Feeds one received datagram. Returns what it delivers, if anything; never throws on input. */
  receive(datagram: Uint8Array, path: P, now: number): Delivery | undefined {
    if (isControl(datagram)) {
      this.#control(datagram, now);
      return undefined;
    }
    if (datagram.length < 4) {
      this.stats.espDrops.too_short++;
      return undefined;
    }
    const pair = this.#keys.bySpi(readSpi(datagram));
    if (!pair || pair.expired(now)) {
      this.stats.espDrops.bad_spi++;
      return undefined;
    }
    const r = pair.rx.open(datagram, this.#opened);
    if (r !== Drop.NONE) {
      this.stats.espDrops[DROP_NAMES[r] as Exclude<(typeof DROP_NAMES)[number], 'none'>]++;
      return undefined;
    }
    this.stats.packetsReceived++;
    if (!this.#pending && pair === this.#keys.current && pair.wantsRekey(now)) {
      this.#startHandshake(now, true);
    }
    void path; // Path changes are registration's business (a later layer), never a data packet's alone here.
    const { nextHeader, payload, seq } = this.#opened;
    if (nextHeader === NextHeader.NO_NEXT_HEADER) {
      this.stats.keepalivesReceived++;
      return undefined;
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
        this.#sendInit(now, pend.rekey, pend.startedAt, pend.attempt + 1);
      }
      return;
    }
    const cur = this.#keys.current;
    if (cur?.wantsRekey(now)) this.#startHandshake(now, true);
  }

  nextTimeout(): number | undefined {
    const times: number[] = [];
    const e = this.#keys.nextExpiry();
    if (e !== undefined) times.push(e);
    const pend = this.#pending;
    if (pend) {
      times.push(this.#retryAt(pend), pend.startedAt + (this.#o.handshakeGiveUpMs ?? 90_000));
    } else if (this.#keys.current) {
      const c = this.#keys.current;
      times.push(c.createdAt + c.limits.rekeyAfterMs);
    }
    return times.length ? Math.min(...times) : undefined;
  }

  pollTransmit(): Transmit<P> | undefined {
    return this.#out.pollTransmit();
  }

  pollEvent(): SessionEvent | undefined {
    return this.#out.pollEvent();
  }

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

  #startHandshake(now: number, rekey: boolean): void {
    this.#sendInit(now, rekey, now, 1);
  }

  #sendInit(now: number, rekey: boolean, startedAt: number, attempt: number): void {
    const o = this.#o;
    // A fresh message (new ephemeral, SPI and timestamp) per attempt: a lost one is simply gone.
    const spi = allocateSpi(o.random, (s) => this.#keys.bySpi(s) !== undefined);
    const timestamp = nextTai64n(now, this.#lastTimestamp);
    this.#lastTimestamp = timestamp;
    const hs = new InitiatorHandshake({
      staticKeypair: o.staticKeypair,
      relayStaticKey: o.relayStaticKey,
      spi,
      timestamp,
      suites: o.suites ?? o.provider.suites,
      encapsulations: o.encapsulations ?? DEFAULT_ENCAPSULATION_PREFERENCE,
      random: o.random,
      ...(o.psk ? { psk: o.psk } : {}),
    });
    const paths = this.#paths.length ? this.#paths : this.path !== undefined ? [this.path] : [];
    this.#pending = { hs, paths, sentAt: now, startedAt, attempt, rekey };
    for (const p of paths) this.#out.transmit(p, hs.message);
    this.#out.event({ type: 'handshake-sent', spi, attempt, rekey });
  }

  #control(datagram: Uint8Array, now: number): void {
    if (controlType(datagram) !== ControlType.HANDSHAKE_RESP) {
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
    this.stats.handshakes++;
    if (pend.rekey) this.stats.rekeys++;
    if (o.keyLog) for (const info of pair.keyInfo()) this.#out.event({ type: 'sa-keys', info });
    this.#out.event({
      type: 'established',
      suite: pair.suite,
      localSpi: pair.localSpi,
      remoteSpi: pair.remoteSpi,
      rekey: pend.rekey,
    });
    // Confirm the new keys to the relay: staged data if any, else a keepalive (RFC 4303 §2.6).
    const path = this.path;
    if (path === undefined) return;
    if (this.#staged.length === 0) {
      this.#out.transmit(path, pair.tx.seal(new Uint8Array(0), NextHeader.NO_NEXT_HEADER));
      return;
    }
    for (const s of this.#staged.splice(0)) {
      this.#out.transmit(path, pair.tx.seal(s.payload, s.nextHeader));
      this.stats.packetsSent++;
    }
  }
}

/** Hex of a public key, the map key for peers. */
export const keyId = (publicKey: Uint8Array): string => toHex(publicKey);
