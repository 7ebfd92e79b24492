/**
 * The browser client: the core's ClientSession (handshake, registration, moves) and Mux (streams)
 * on the browser's event loop, over the encapsulations a browser has — WebSocket and HTTP
 * (streaming or long polling) — raced like the Node client's (apps/client/src/tunnel.ts): every
 * enabled transport is opened at once, the handshake goes on all of them, and the relay picks.
 *
 * Transports come and go under the session. One that dies (WebSocket close, fetch failure, a path
 * declared dead by the core) is dropped from the candidates and the session registers again on
 * what remains (same SA, a new round, no key exchange); it is dialled again with backoff
 * (250 ms doubling to 8 s, reset once the new path carries a datagram). Streams never notice: the
 * Mux resends what was in flight (`pathChanged`, RFC 9000 §9.4).
 *
 * The page tells the session about moves the network does not announce:
 * - `online`: the network is back, perhaps another one. Every transport is dialled afresh (the old
 *   connections may be bound to a dead interface); each replaces the old one of its kind once up,
 *   and the session registers on the new set.
 * - `resume` (Page Lifecycle, after `freeze`): the same, since the connections may have been cut
 *   while the page was frozen.
 * - `visibilitychange` back to visible after at least 1 s hidden (background tabs have their
 *   timers throttled): the session registers again on what it has.
 * - `offline`: nothing is torn down; redials wait for `online` (or their backoff).
 *
 * Crypto is the core's noble provider: the core's AEAD interface is synchronous (`seal`/`open` in
 * place, per packet), and Web Crypto's AES-GCM is asynchronous only, so it cannot serve as the
 * per-packet provider. ChaCha20-Poly1305 is offered first: noble's GCM expands its key on every
 * call.
 */
import type { Candidate, ClientState, Keypair, MuxEvent, SessionEvent } from '@roamlink/core';
import {
  ClientSession,
  ENCAPSULATION_NAMES,
  Encapsulation,
  ESP_PAYLOAD_OFFSET,
  ESP_TAIL_RESERVE,
  fromHex,
  keypairFromSecret,
  MUX_SESSION_WINDOW,
  Mux,
  NextHeader,
  nobleProvider,
  STREAM_PATH_PAYLOAD,
  StreamError,
  SUITE_NAMES,
  Suite,
  toHex,
  VERDICT_NAMES,
} from '@roamlink/core';
import { BrowserErrorCode, RoamlinkBrowserError } from './errors.ts';
import { DEFAULT_BUFFER_DETECT, HttpPollPath, HttpStreamPath } from './http.ts';
import type { KeyStorage } from './keys.ts';
import { browserRandom, DEFAULT_KEY_NAME, loadOrCreateClientKey } from './keys.ts';
import type { BrowserStream, Datagram } from './mux-host.ts';
import { BrowserMuxHost } from './mux-host.ts';
import type { BrowserEncapsulation, BrowserPath, PathEvents, RelayEndpoint } from './transport.ts';
import { BROWSER_ENCAPSULATIONS, relayEndpoint } from './transport.ts';
import { WsPath } from './websocket.ts';

export type SuiteName = 'chacha20-poly1305' | 'aes-256-gcm';

export interface ConnectOptions {
  /**
   * The relay's HTTP port as a URL: `http://host:port` (or `https://`, or with a path prefix when
   * a reverse proxy mounts the relay under one). WebSocket goes to `<relay>/rl/ws`, HTTP to
   * `<relay>/rl/up|down|poll`.
   */
  relay: string;
  /** The relay's static public key: 32 bytes or 64 hex digits (printed by the relay on start). */
  relayKey: Uint8Array | string;
  /**
   * The client's static key: its 32-byte X25519 secret (bytes or 64 hex digits) or a key pair.
   * Default: made once and kept in `keyStorage` under `keyName`.
   */
  clientKey?: Uint8Array | string | Keypair;
  /** Where a generated key is kept (default "auto": localStorage, else IndexedDB, else memory). */
  keyStorage?: KeyStorage;
  /** The storage entry's name (default "roamlink.client-key"). */
  keyName?: string;
  /** A pre-shared key (Noise IKpsk2), 32 bytes or 64 hex digits, if the relay wants one. */
  psk?: Uint8Array | string;
  /** The encapsulations to race (default all three: ws, http-stream, http-poll). */
  encapsulations?: readonly BrowserEncapsulation[];
  /** Suites to offer, preferred first (default chacha20-poly1305, aes-256-gcm). */
  suites?: readonly SuiteName[];
  /** Reject if not registered within this long (default 15 000 ms). */
  connectTimeoutMs?: number;
  /**
   * How long `connect` lets the WebSocket open before the handshake starts on the HTTP paths
   * alone (default 300 ms); a WebSocket that opens later joins with a new registration round.
   */
  wsWaitMs?: number;
  /** Deadline for one WebSocket to open (default 10 000 ms). */
  wsOpenTimeoutMs?: number;
  /** Per-stream receive window in bytes (default: the core's, 1 MiB, growing). */
  streamWindow?: number;
  /** How long streams wait through an outage before the session closes (default 120 000 ms). */
  outageMs?: number;
  /** Follow the page's online/offline, freeze/resume and visibility events (default true). */
  followPage?: boolean;
  /** Rekey after this long (tests; default the core's 120 s). */
  rekeyAfterMs?: number;
  /** Datagrams held for a `datagrams` reader that is behind (default 256). */
  datagramQueue?: number;
  /** HTTP streaming: buffering detection (see http.ts). */
  bufferDetect?: { factor?: number; minMs?: number; maxMs?: number };
  /** Aborts `connect` (and closes the session). */
  signal?: AbortSignal;
  /** Diagnostics: one call per thing that happened to a transport. */
  onLog?: (msg: string, fields: Record<string, unknown>) => void;
}

export type EncapsulationName = 'websocket' | 'http-stream' | 'http-poll';
export type VerdictName =
  | 'none'
  | 'address'
  | 'address+port'
  | 'port-only'
  | 'protocol'
  | 'unknown';

export interface PathEventDetail {
  /** The transport now carrying data ("ws:1", "hs:<token>", "hp:<token>"). */
  path: string;
  encapsulation: EncapsulationName;
  verdict: VerdictName;
  round: number;
  /** How long the registration round took. */
  rttMs: number;
}
export interface VerdictEventDetail {
  verdict: VerdictName;
  round: number;
  /** When the relay's and the client's verdicts differed: both (the safer one is used). */
  relay?: VerdictName;
  client?: VerdictName;
}
export interface HandoverEventDetail {
  from: string;
  to: string;
  encapsulation: EncapsulationName;
}
export interface RekeyEventDetail {
  suite: SuiteName;
  localSpi: number;
  remoteSpi: number;
}
export interface ClosedEventDetail {
  reason: string;
}

export interface RoamlinkSessionEventMap {
  /** A registration round settled: the relay chose this path. */
  path: CustomEvent<PathEventDetail>;
  /** The verdict in force changed (or was first known), or the two sides disagreed. */
  verdict: CustomEvent<VerdictEventDetail>;
  /** Data moved from one transport to another. */
  handover: CustomEvent<HandoverEventDetail>;
  /** New keys are in use (the session is the same). */
  rekey: CustomEvent<RekeyEventDetail>;
  /** The session is over; every stream has ended with an error. */
  closed: CustomEvent<ClosedEventDetail>;
}

export interface SessionStatus {
  /** connecting → connected ⇄ reconnecting (no registered path right now) → closed. */
  state: 'connecting' | 'connected' | 'reconnecting' | 'closed';
  /** The core's handshake state. */
  handshake: ClientState;
  encapsulation: EncapsulationName | null;
  verdict: VerdictName | null;
  path: string | null;
  round: number;
  rttMs: number | null;
  /** Completed handshakes, rekeys included: a move never adds one. */
  handshakes: number;
  rekeys: number;
  /** The SA in use (inbound and outbound SPI) and its suite. */
  localSpi: number | null;
  remoteSpi: number | null;
  suite: SuiteName | null;
  /** Times data moved to another transport. */
  handovers: number;
  /** Registrations started by a move (a lost or new transport, a page event). */
  moves: number;
  candidates: { path: string; encapsulation: EncapsulationName }[];
  /** `navigator.onLine`, where known. */
  online: boolean | null;
  streams: number;
  /** Stream bytes sent (first time), received (delivered), and sent again. */
  bytesSent: number;
  bytesReceived: number;
  bytesRetransmitted: number;
  datagramsDropped: number;
  /** The client's static public key (hex): what the relay's allow-list names. */
  publicKey: string;
  keyStorage: 'given' | 'localStorage' | 'indexedDB' | 'memory';
  /**
   * The session routing id (32 hex digits, new per `connect`): the `sid` query parameter on every
   * request, which a Workers relay routes by (docs/PROTOCOL.md §7, "Session routing id").
   */
  sid: string;
}

const RECONNECT_MIN_MS = 250;
const RECONNECT_MAX_MS = 8000;
/** Hidden at least this long: register again when visible. */
const HIDDEN_REREGISTER_MS = 1000;
/** The longest host name a stream or datagram target may have. */
const MAX_HOST = 255;

const SUITE_CODES: Readonly<Record<SuiteName, Suite>> = {
  'chacha20-poly1305': Suite.CHACHA20_POLY1305,
  'aes-256-gcm': Suite.AES_256_GCM,
};

function bytesOption(name: string, v: Uint8Array | string, len: number): Uint8Array {
  let b: Uint8Array;
  if (typeof v === 'string') {
    if (!new RegExp(`^[0-9a-fA-F]{${len * 2}}$`).test(v)) {
      throw new RoamlinkBrowserError(
        BrowserErrorCode.INVALID_ARGUMENT,
        `${name} must be ${len * 2} hex digits`,
      );
    }
    b = fromHex(v.toLowerCase());
  } else if (v instanceof Uint8Array && v.length === len) {
    b = v.slice();
  } else {
    throw new RoamlinkBrowserError(
      BrowserErrorCode.INVALID_ARGUMENT,
      `${name} must be ${len} bytes`,
    );
  }
  return b;
}

const encName = (e: Encapsulation | undefined): EncapsulationName | null =>
  e === undefined ? null : ((ENCAPSULATION_NAMES[e] as EncapsulationName | undefined) ?? null);

const verdictName = (v: number | undefined): VerdictName | null =>
  v === undefined ? null : ((VERDICT_NAMES as Record<number, string>)[v] as VerdictName);

const onLine = (): boolean | null => {
  const n = (globalThis as { navigator?: { onLine?: boolean } }).navigator;
  return typeof n?.onLine === 'boolean' ? n.onLine : null;
};

interface Resolved {
  relay: RelayEndpoint;
  relayKey: Uint8Array;
  keypair: Keypair;
  keyStorage: SessionStatus['keyStorage'];
  psk: Uint8Array | undefined;
  enabled: BrowserEncapsulation[];
  suites: Suite[];
}

/** EventTarget with typed listeners: `session.addEventListener('path', (e) => e.detail.path)`. */
export interface RoamlinkSessionEventTarget extends EventTarget {
  addEventListener<K extends keyof RoamlinkSessionEventMap>(
    type: K,
    listener: (ev: RoamlinkSessionEventMap[K]) => unknown,
    options?: boolean | AddEventListenerOptions,
  ): void;
  addEventListener(
    type: string,
    listener: EventListenerOrEventListenerObject | null,
    options?: boolean | AddEventListenerOptions,
  ): void;
  removeEventListener<K extends keyof RoamlinkSessionEventMap>(
    type: K,
    listener: (ev: RoamlinkSessionEventMap[K]) => unknown,
    options?: boolean | EventListenerOptions,
  ): void;
  removeEventListener(
    type: string,
    listener: EventListenerOrEventListenerObject | null,
    options?: boolean | EventListenerOptions,
  ): void;
}
const TypedEventTarget = EventTarget as unknown as new () => RoamlinkSessionEventTarget;

/**
 * A roaming encrypted session with a relay. Open streams and send datagrams through it; listen
 * for `path`, `verdict`, `handover`, `rekey` and `closed`.
 */
export class RoamlinkSession extends TypedEventTarget {
  readonly #r: Resolved;
  readonly #o: ConnectOptions;
  readonly #session: ClientSession<string>;
  readonly #host: BrowserMuxHost;
  readonly #paths = new Map<string, BrowserPath>();
  #candidates: Candidate<string>[] = [];
  readonly #dialing = new Set<BrowserEncapsulation>();
  readonly #backoff = new Map<BrowserEncapsulation, number>();
  readonly #redialTimers = new Map<BrowserEncapsulation, ReturnType<typeof setTimeout>>();
  /** Paths that have carried a datagram (their kind's backoff is reset then). */
  readonly #proven = new Set<string>();
  readonly #abort = new AbortController();
  readonly #pathEvents: PathEvents;
  #wsSeq = 0;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #timerAt = Number.POSITIVE_INFINITY;
  #pumping = false;
  #again = false;
  #started = false;
  #moveWhenEstablished = false;
  #moveQueued = false;
  #registeredOnce = false;
  #lastPath: string | undefined;
  #lastVerdict: number | undefined;
  #goaway = false;
  #closed = false;
  #hiddenAt: number | undefined;
  #waiter: { resolve: () => void; reject: (e: Error) => void } | undefined;
  #unlisten: (() => void) | undefined;
  handovers = 0;
  moves = 0;

  private constructor(r: Resolved, o: ConnectOptions) {
    super();
    this.#r = r;
    this.#o = o;
    this.#session = new ClientSession<string>({
      staticKeypair: r.keypair,
      relayStaticKey: r.relayKey,
      ...(r.psk ? { psk: r.psk } : {}),
      provider: nobleProvider,
      suites: r.suites,
      random: browserRandom,
      ...(o.rekeyAfterMs
        ? { limits: { rekeyAfterMs: o.rekeyAfterMs, rejectAfterMs: o.rekeyAfterMs * 1.5 } }
        : {}),
    });
    const mux = this.#newMux();
    this.#host = new BrowserMuxHost({
      mux,
      clock: Date.now,
      canSend: () => this.#canSend(),
      send: (payload, t) => {
        const pkt = this.#session.sendReserved(payload, NextHeader.ROAMLINK, t);
        if (pkt) for (const p of this.#session.dataPaths) this.#paths.get(p)?.send(pkt);
        this.#pump();
      },
      onEvent: (e) => this.#muxEvent(e),
      ...(o.datagramQueue ? { datagramQueue: o.datagramQueue } : {}),
    });
    this.#pathEvents = {
      onDatagram: (d, id) => this.#receive(d, id),
      onClose: (id, reason) => this.#lose(id, reason),
      onModeChange: (id) => this.#fellBack(id),
      onDrain: () => this.#host.pump(),
    };
  }

  /** Connects: see `connect()`. */
  static async connect(o: ConnectOptions): Promise<RoamlinkSession> {
    const r = await resolveOptions(o);
    const s = new RoamlinkSession(r, o);
    try {
      await s.#start();
    } catch (e) {
      s.#shutdown(`connect failed: ${e instanceof Error ? e.message : String(e)}`, false);
      throw e;
    }
    return s;
  }

  /** What a person or a status page wants to know, now. */
  status(): SessionStatus {
    const s = this.#session;
    const cur = s.current;
    const m = this.#host.mux.stats;
    const path = s.path ?? null;
    let state: SessionStatus['state'];
    if (this.#closed) state = 'closed';
    else if (!this.#registeredOnce) state = 'connecting';
    else if (s.registered && path !== null && this.#paths.has(path)) state = 'connected';
    else state = 'reconnecting';
    return {
      state,
      handshake: s.state,
      encapsulation: encName(s.encapsulation),
      verdict: verdictName(s.verdict),
      path,
      round: s.round,
      rttMs: s.srtt === undefined ? null : Number(s.srtt.toFixed(2)),
      handshakes: s.stats.handshakes,
      rekeys: s.stats.rekeys,
      localSpi: cur?.localSpi ?? null,
      remoteSpi: cur?.remoteSpi ?? null,
      suite: cur ? (SUITE_NAMES[cur.suite] as SuiteName) : null,
      handovers: this.handovers,
      moves: this.moves,
      candidates: this.#candidates.map((c) => ({
        path: c.path,
        encapsulation: encName(c.info.encapsulation) ?? 'websocket',
      })),
      online: onLine(),
      streams: this.#host.streams,
      bytesSent: m.streamBytesSent,
      bytesReceived: m.streamBytesDelivered,
      bytesRetransmitted: m.streamBytesRetransmitted,
      datagramsDropped: this.#host.datagramsDropped,
      publicKey: toHex(this.#r.keypair.publicKey),
      keyStorage: this.#r.keyStorage,
      sid: this.#r.relay.sid,
    };
  }

  /**
   * Opens a TCP stream to `host:port` from the relay (its egress policy decides). Resolves once
   * the relay connected it; rejects with a RoamlinkBrowserError (STREAM_REFUSED, with `stream`
   * saying why) otherwise.
   */
  openStream(host: string, port: number): Promise<BrowserStream> {
    if (typeof host !== 'string' || host.length === 0 || host.length > MAX_HOST) {
      return Promise.reject(
        new RoamlinkBrowserError(BrowserErrorCode.INVALID_ARGUMENT, 'host must be 1-255 chars'),
      );
    }
    if (!Number.isInteger(port) || port < 1 || port > 65_535) {
      return Promise.reject(
        new RoamlinkBrowserError(BrowserErrorCode.INVALID_ARGUMENT, 'port must be 1-65535'),
      );
    }
    return this.#host.open({ host, port });
  }

  /**
   * Sends one UDP datagram to `host:port` from the relay. Unreliable: false when it cannot go now
   * (too big for a packet, the queue is full, the session is closed).
   */
  sendDatagram(host: string, port: number, data: Uint8Array): boolean {
    if (
      !(data instanceof Uint8Array) ||
      typeof host !== 'string' ||
      host.length === 0 ||
      host.length > MAX_HOST ||
      !Number.isInteger(port) ||
      port < 1 ||
      port > 65_535
    ) {
      return false;
    }
    return this.#host.sendDatagram({ host, port }, data);
  }

  /** Datagrams from the relay (answers to `sendDatagram`), as they come; a reader that lags loses some. */
  get datagrams(): ReadableStream<Datagram> {
    return this.#host.datagrams;
  }

  get closed(): boolean {
    return this.#closed;
  }

  /**
   * Demo and test hook: closes the transport carrying data now (or every transport of `kind`) as
   * if the network had cut it. The session moves to what remains and dials it again. Returns how
   * many transports were closed.
   */
  dropTransport(kind?: BrowserEncapsulation): number {
    const ids =
      kind === undefined
        ? [this.#session.path].filter((p): p is string => p !== undefined && this.#paths.has(p))
        : [...this.#paths.values()].filter((p) => p.kind === kind).map((p) => p.id);
    for (const id of ids) this.#drop(id, kind === undefined ? 'dropped' : `${kind}-dropped`);
    return ids.length;
  }

  /** Closes the session: every stream errors with SESSION_CLOSED, every transport closes. */
  close(reason = 'closed by the application'): void {
    this.#shutdown(reason, true, true);
  }

  // --- start ------------------------------------------------------------------------------------

  async #start(): Promise<void> {
    const o = this.#o;
    const signal = o.signal;
    if (signal?.aborted) throw new RoamlinkBrowserError(BrowserErrorCode.CONNECT_FAILED, 'aborted');
    const registered = new Promise<void>((resolve, reject) => {
      this.#waiter = { resolve, reject };
    });
    // Every unhandled path to failure goes through the waiter; keep the promise quiet meanwhile.
    registered.catch(() => {});
    const timeoutMs = o.connectTimeoutMs ?? 15_000;
    const timer = setTimeout(
      () =>
        this.#failConnect(
          new RoamlinkBrowserError(
            BrowserErrorCode.CONNECT_FAILED,
            `not registered within ${timeoutMs} ms`,
          ),
        ),
      timeoutMs,
    );
    const onAbort = (): void =>
      this.#failConnect(new RoamlinkBrowserError(BrowserErrorCode.CONNECT_FAILED, 'aborted'));
    signal?.addEventListener('abort', onAbort, { once: true });
    try {
      const enabled = this.#r.enabled;
      const ws = enabled.includes('ws') ? this.#dialNow('ws', false) : undefined;
      // HTTP paths need no connection of their own: they are up at once.
      await Promise.all(enabled.filter((k) => k !== 'ws').map((k) => this.#dialNow(k, false)));
      if (ws) {
        // The WebSocket gets a moment to open, so that it is raced from the first message;
        // without any HTTP path it gets all the time it needs.
        if (this.#candidates.length === 0) await ws;
        else await Promise.race([ws, sleep(o.wsWaitMs ?? 300)]);
      }
      if (this.#closed) throw new RoamlinkBrowserError(BrowserErrorCode.SESSION_CLOSED, 'closed');
      if (this.#candidates.length === 0) {
        throw new RoamlinkBrowserError(
          BrowserErrorCode.CONNECT_FAILED,
          'no transport to the relay could be opened',
        );
      }
      this.#started = true;
      this.#session.connect([...this.#candidates], Date.now());
      this.#pump();
      await registered;
    } finally {
      clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
      this.#waiter = undefined;
    }
    if (o.followPage ?? true) this.#listen();
  }

  #failConnect(e: Error): void {
    const w = this.#waiter;
    this.#waiter = undefined;
    w?.reject(e);
  }

  // --- the session driver -------------------------------------------------------------------------

  /** Drains the session's transmits and events and re-arms its timer; re-entrant calls fold. */
  #pump(): void {
    if (this.#closed) return;
    if (this.#pumping) {
      this.#again = true;
      return;
    }
    this.#pumping = true;
    const s = this.#session;
    try {
      do {
        this.#again = false;
        for (let t = s.pollTransmit(); t; t = s.pollTransmit())
          this.#paths.get(t.path)?.send(t.data);
        for (let e = s.pollEvent(); e; e = s.pollEvent()) this.#sessionEvent(e);
      } while (this.#again);
    } finally {
      this.#pumping = false;
    }
    if (this.#closed) return;
    const at = s.nextTimeout();
    if (at === this.#timerAt) return;
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#timerAt = at ?? Number.POSITIVE_INFINITY;
    if (at === undefined) return;
    this.#timer = setTimeout(
      () => {
        this.#timer = undefined;
        this.#timerAt = Number.POSITIVE_INFINITY;
        s.handleTimeout(Date.now());
        this.#pump();
        this.#checkPath();
      },
      Math.max(0, at - Date.now()),
    );
  }

  #canSend(): boolean {
    if (this.#session.state !== 'established') return false;
    for (const p of this.#session.dataPaths) if (this.#paths.get(p)?.congested) return false;
    return true;
  }

  #receive(data: Uint8Array, pathId: string): void {
    if (this.#closed) return;
    if (!this.#proven.has(pathId)) {
      // The path carries datagrams: its kind dials without backoff next time.
      this.#proven.add(pathId);
      const p = this.#paths.get(pathId);
      if (p) this.#backoff.delete(p.kind);
    }
    const got = this.#session.receive(data, pathId, Date.now());
    if (got && got.nextHeader === NextHeader.ROAMLINK && this.#host.mux.isMuxFrame(got.payload)) {
      this.#host.receive(got.payload);
    }
    this.#pump();
    this.#checkPath();
  }

  /** A stream layer for this session (a new one starts from nothing: no streams, packet 0). */
  #newMux(): Mux {
    const o = this.#o;
    return new Mux({
      role: 'client',
      // Room for the ESP header and trailer: the SA seals each packet where the mux built it.
      reserve: { head: ESP_PAYLOAD_OFFSET, tail: ESP_TAIL_RESERVE },
      // Every browser path is a stream transport (TCP below): no pacing, as the Node client
      // does on its stream paths; browsers clamp timers anyway.
      pacing: false,
      // Idle streams must not look like a vanished client to the relay: a PING after 30 s.
      keepaliveMs: 30_000,
      now: Date.now(),
      // Every path here is a stream transport.
      maxPayload: STREAM_PATH_PAYLOAD,
      // Streams whose readers stopped (a paused download) hold their windows, up to 8 MiB each:
      // four session windows (64 MiB) before they hold back the rest (PROTOCOL §8.6).
      sessionMemory: 4 * MUX_SESSION_WINDOW,
      ...(o.streamWindow ? { streamWindow: o.streamWindow } : {}),
      ...(o.outageMs ? { outageMs: o.outageMs } : {}),
    });
  }

  #sessionEvent(e: SessionEvent): void {
    switch (e.type) {
      case 'established':
        if (e.relayFresh) {
          // The relay restarted (PROTOCOL §4.1, FRESH): its streams are gone, and so are ours.
          this.#host.restart(
            this.#newMux(),
            new RoamlinkBrowserError(
              BrowserErrorCode.STREAM_RESET,
              'the relay restarted: its streams are gone',
            ),
          );
        }
        if (e.rekey) {
          this.#emit('rekey', {
            suite: SUITE_NAMES[e.suite] as SuiteName,
            localSpi: e.localSpi,
            remoteSpi: e.remoteSpi,
          });
        } else if (this.#moveWhenEstablished) {
          this.#moveWhenEstablished = false;
          this.#move('transport-up');
        }
        this.#host.pump();
        break;
      case 'registered': {
        const path = this.#session.path ?? '';
        this.#registeredOnce = true;
        this.#emit('path', {
          path,
          encapsulation: encName(e.encapsulation) ?? 'websocket',
          verdict: verdictName(e.verdict) ?? 'unknown',
          round: e.round,
          rttMs: e.rttMs,
        });
        if (e.verdict !== this.#lastVerdict) {
          this.#lastVerdict = e.verdict;
          this.#emit('verdict', { verdict: verdictName(e.verdict) ?? 'unknown', round: e.round });
        }
        this.#waiter?.resolve();
        this.#host.pump();
        break;
      }
      case 'verdict-disagreement':
        this.#lastVerdict = e.used;
        this.#emit('verdict', {
          verdict: verdictName(e.used) ?? 'unknown',
          round: e.round,
          relay: verdictName(e.relay) ?? 'unknown',
          client: verdictName(e.client) ?? 'unknown',
        });
        break;
      case 'handshake-failed': {
        const err = new RoamlinkBrowserError(
          BrowserErrorCode.HANDSHAKE_FAILED,
          `handshake failed: ${e.reason}`,
        );
        this.#failConnect(err);
        this.#shutdown(`handshake failed: ${e.reason}`, true);
        return;
      }
      case 'path-dead': {
        // A browser transport that went silent (a changed network, a cut connection the browser
        // has not noticed) does not come back: close it and dial its kind again. The core has
        // already started a round on every candidate.
        const dead = this.#session.path;
        this.#log('path-dead', { path: dead, silentMs: e.silentMs });
        if (dead !== undefined) this.#drop(dead, 'path-dead');
        break;
      }
      default:
        break;
    }
  }

  #muxEvent(e: MuxEvent): void {
    if (e.type === 'dead') {
      this.#shutdown(`no answer from the relay for ${e.silentMs} ms`, true);
    } else if (e.type === 'goaway') {
      this.#goaway = true;
      this.#log('goaway', { code: e.code });
    }
  }

  /**
   * The session's chosen path changed (a round settled elsewhere, a probe upgraded): the stream
   * layer restarts its RTT and congestion state and resends what was in flight on the old path.
   */
  #checkPath(): void {
    const p = this.#session.path;
    if (this.#closed || p === undefined || p === this.#lastPath || !this.#session.registered) {
      return;
    }
    const from = this.#lastPath;
    this.#lastPath = p;
    if (from === undefined) return;
    this.handovers++;
    this.#host.mux.pathChanged(Date.now(), 'path-changed');
    this.#emit('handover', {
      from,
      to: p,
      encapsulation: encName(this.#session.encapsulation) ?? 'websocket',
    });
    this.#host.pump();
  }

  // --- transports ---------------------------------------------------------------------------------

  #has(kind: BrowserEncapsulation): boolean {
    for (const p of this.#paths.values()) if (p.kind === kind) return true;
    return false;
  }

  /** Registers again on every candidate (same SA). */
  #move(reason: string): void {
    if (this.#closed || !this.#started || this.#candidates.length === 0) return;
    const state = this.#session.state;
    if (state === 'handshaking') {
      // A move now would restart the handshake: wait for its answer instead.
      this.#moveWhenEstablished = true;
      return;
    }
    if (state !== 'established') return;
    this.moves++;
    this.#session.move([...this.#candidates], Date.now(), reason);
    this.#pump();
  }

  /** Several transports coming up in one task make one registration round, not one each. */
  #moveSoon(reason: string): void {
    if (this.#moveQueued) return;
    this.#moveQueued = true;
    setTimeout(() => {
      this.#moveQueued = false;
      this.#move(reason);
    }, 0);
  }

  /** Opens one transport of `kind`; with `replace`, it takes the place of the old ones. */
  async #dialNow(kind: BrowserEncapsulation, replace: boolean): Promise<void> {
    if (this.#closed || this.#dialing.has(kind)) return;
    this.#dialing.add(kind);
    try {
      const p = await this.#open(kind);
      if (this.#closed) {
        p.close();
        return;
      }
      if (replace) {
        for (const old of [...this.#paths.values()]) {
          if (old.kind === kind && old.id !== p.id) this.#forget(old.id);
        }
      }
      this.#paths.set(p.id, p);
      this.#candidates.push({
        path: p.id,
        info: { encapsulation: p.encapsulation, view: p.view() },
      });
      this.#log('transport-up', { kind, path: p.id });
      if (this.#started) this.#moveSoon(`${kind}-up`);
    } catch (e) {
      this.#log('dial-failed', { kind, error: e instanceof Error ? e.message : String(e) });
    } finally {
      this.#dialing.delete(kind);
      if (!this.#closed && !this.#has(kind)) this.#redial(kind);
    }
  }

  #open(kind: BrowserEncapsulation): Promise<BrowserPath> {
    const relay = this.#r.relay;
    if (kind === 'ws') {
      return WsPath.open(
        relay,
        `ws:${++this.#wsSeq}`,
        this.#pathEvents,
        this.#o.wsOpenTimeoutMs ?? 10_000,
        this.#abort.signal,
      );
    }
    if (kind === 'http-stream') {
      return Promise.resolve(
        new HttpStreamPath(relay, this.#pathEvents, {
          ...DEFAULT_BUFFER_DETECT,
          ...this.#o.bufferDetect,
        }),
      );
    }
    return Promise.resolve(new HttpPollPath(relay, this.#pathEvents));
  }

  /** Dial `kind` again after a backoff that doubles while it keeps failing. */
  #redial(kind: BrowserEncapsulation, delayMs?: number): void {
    if (this.#closed || this.#dialing.has(kind) || this.#redialTimers.has(kind)) return;
    const wait = delayMs ?? this.#backoff.get(kind) ?? RECONNECT_MIN_MS;
    this.#backoff.set(kind, Math.min(RECONNECT_MAX_MS, Math.max(RECONNECT_MIN_MS, wait * 2)));
    const t = setTimeout(() => {
      this.#redialTimers.delete(kind);
      if (onLine() === false) {
        // The browser knows it is offline: wait for `online` (or the next backoff).
        this.#redial(kind);
        return;
      }
      void this.#dialNow(kind, false);
    }, wait);
    this.#redialTimers.set(kind, t);
  }

  /** Removes a path without reporting (it was replaced or found dead); no new round here. */
  #forget(id: string): void {
    const p = this.#paths.get(id);
    this.#paths.delete(id);
    this.#proven.delete(id);
    this.#candidates = this.#candidates.filter((c) => c.path !== id);
    p?.close();
  }

  /** This side gives up on a path: closed, then handled as lost. */
  #drop(id: string, reason: string): void {
    const p = this.#paths.get(id);
    if (!p) return;
    p.close();
    this.#lose(id, reason);
  }

  /** A transport is gone: register on what remains (same SA, a new round), and dial it again. */
  #lose(id: string, reason: string): void {
    if (this.#closed) return;
    const p = this.#paths.get(id);
    if (!p) return;
    this.#paths.delete(id);
    this.#proven.delete(id);
    this.#candidates = this.#candidates.filter((c) => c.path !== id);
    this.#log('transport-lost', { kind: p.kind, path: id, reason });
    if (this.#goaway && this.#paths.size === 0) {
      this.#shutdown('the relay went away', true);
      return;
    }
    if (this.#candidates.length > 0 && this.#started && this.#session.state !== 'idle') {
      this.#move(reason);
      // What was in flight on the dead transport goes again on the new paths at once.
      this.#host.mux.pathChanged(Date.now(), reason);
      this.#host.pump();
    }
    if (!this.#has(p.kind)) this.#redial(p.kind);
  }

  /** An HTTP streaming path found its stream buffered and polls now: register it as that. */
  #fellBack(id: string): void {
    const c = this.#candidates.find((x) => x.path === id);
    const p = this.#paths.get(id);
    if (!c || !p) return;
    c.info = { encapsulation: Encapsulation.HTTP_POLL, view: p.view() };
    this.#log('http-fallback', { path: id });
    this.#move('http-fallback');
  }

  /**
   * The network may have changed (`online`, `resume`): dial every kind afresh, each replacing the
   * old one once up; the session registers again as they come (one round per task).
   */
  #refresh(reason: string): void {
    if (this.#closed || !this.#started) return;
    this.#log('refresh', { reason });
    for (const kind of this.#r.enabled) {
      const t = this.#redialTimers.get(kind);
      if (t !== undefined) clearTimeout(t);
      this.#redialTimers.delete(kind);
      this.#backoff.delete(kind);
      void this.#dialNow(kind, true);
    }
  }

  // --- the page -------------------------------------------------------------------------------

  #listen(): void {
    const win = globalThis as unknown as Partial<EventTarget>;
    const doc = (globalThis as { document?: Document }).document;
    const onOnline = (): void => this.#refresh('online');
    const onOffline = (): void => this.#log('offline', {});
    const onResume = (): void => this.#refresh('resume');
    const onFreeze = (): void => this.#log('freeze', {});
    const onVisibility = (): void => {
      if (!doc) return;
      if (doc.visibilityState === 'hidden') {
        this.#hiddenAt = Date.now();
        return;
      }
      const since = this.#hiddenAt;
      this.#hiddenAt = undefined;
      if (since !== undefined && Date.now() - since >= HIDDEN_REREGISTER_MS) {
        this.#move('visible');
        this.#host.mux.pathChanged(Date.now(), 'visible');
        this.#host.pump();
      }
    };
    win.addEventListener?.('online', onOnline);
    win.addEventListener?.('offline', onOffline);
    doc?.addEventListener('resume', onResume);
    doc?.addEventListener('freeze', onFreeze);
    doc?.addEventListener('visibilitychange', onVisibility);
    this.#unlisten = () => {
      win.removeEventListener?.('online', onOnline);
      win.removeEventListener?.('offline', onOffline);
      doc?.removeEventListener('resume', onResume);
      doc?.removeEventListener('freeze', onFreeze);
      doc?.removeEventListener('visibilitychange', onVisibility);
    };
  }

  // --- the end --------------------------------------------------------------------------------

  #shutdown(reason: string, announce: boolean, goAway = false): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#log('closed', { reason });
    this.#unlisten?.();
    // WebSockets still opening give up.
    this.#abort.abort();
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    for (const t of this.#redialTimers.values()) clearTimeout(t);
    this.#redialTimers.clear();
    const err = new RoamlinkBrowserError(
      BrowserErrorCode.SESSION_CLOSED,
      `session closed: ${reason}`,
    );
    this.#failConnect(err);
    const paths = [...this.#paths.values()];
    this.#paths.clear();
    this.#candidates = [];
    if (goAway && this.#session.state === 'established') {
      // Tell the relay we are leaving, so that it frees our streams now rather than after its
      // outage timeout; the transports close once the packet had a moment to leave.
      const mux = this.#host.mux;
      mux.goAway(StreamError.SHUTDOWN);
      for (let p = mux.pollPacket(Date.now()); p; p = mux.pollPacket(Date.now())) {
        const pkt = this.#session.sendReserved(p, NextHeader.ROAMLINK, Date.now());
        if (pkt)
          for (const id of this.#session.dataPaths) paths.find((x) => x.id === id)?.send(pkt);
      }
      setTimeout(() => {
        for (const p of paths) p.close();
      }, 20);
    } else {
      for (const p of paths) p.close();
    }
    this.#host.close(err);
    if (announce) this.#emit('closed', { reason });
  }

  #emit<K extends keyof RoamlinkSessionEventMap>(
    type: K,
    detail: RoamlinkSessionEventMap[K]['detail'],
  ): void {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }

  #log(msg: string, fields: Record<string, unknown>): void {
    this.#o.onLog?.(msg, fields);
  }
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function resolveOptions(o: ConnectOptions): Promise<Resolved> {
  if (o === null || typeof o !== 'object') {
    throw new RoamlinkBrowserError(BrowserErrorCode.INVALID_ARGUMENT, 'options are required');
  }
  let relay: RelayEndpoint;
  try {
    // A fresh routing id per session (32 hex digits), on every request of every encapsulation.
    relay = relayEndpoint(o.relay, toHex(browserRandom(16)));
  } catch (e) {
    throw new RoamlinkBrowserError(
      BrowserErrorCode.INVALID_ARGUMENT,
      `relay: ${e instanceof Error ? e.message : String(e)}`,
    );
  }
  const relayKey = bytesOption('relayKey', o.relayKey, 32);
  const psk = o.psk === undefined ? undefined : bytesOption('psk', o.psk, 32);
  const enabled = [...new Set(o.encapsulations ?? BROWSER_ENCAPSULATIONS)];
  if (enabled.length === 0 || enabled.some((e) => !BROWSER_ENCAPSULATIONS.includes(e))) {
    throw new RoamlinkBrowserError(
      BrowserErrorCode.INVALID_ARGUMENT,
      `encapsulations: one or more of ${BROWSER_ENCAPSULATIONS.join(', ')}`,
    );
  }
  const suiteNames = o.suites ?? ['chacha20-poly1305', 'aes-256-gcm'];
  const suites = suiteNames.map((n) => SUITE_CODES[n]);
  if (suites.length === 0 || suites.some((s) => s === undefined)) {
    throw new RoamlinkBrowserError(
      BrowserErrorCode.INVALID_ARGUMENT,
      'suites: chacha20-poly1305 and/or aes-256-gcm',
    );
  }
  let keypair: Keypair;
  let keyStorage: SessionStatus['keyStorage'] = 'given';
  const ck = o.clientKey;
  if (ck === undefined) {
    const stored = await loadOrCreateClientKey(
      o.keyStorage ?? 'auto',
      o.keyName ?? DEFAULT_KEY_NAME,
    );
    keypair = stored.keypair;
    keyStorage = stored.storage;
  } else if (typeof ck === 'string' || ck instanceof Uint8Array) {
    keypair = keypairFromSecret(bytesOption('clientKey', ck, 32));
  } else if (ck.secretKey instanceof Uint8Array && ck.publicKey instanceof Uint8Array) {
    keypair = ck;
  } else {
    throw new RoamlinkBrowserError(BrowserErrorCode.INVALID_ARGUMENT, 'clientKey: bad key pair');
  }
  return { relay, relayKey, keypair, keyStorage, psk, enabled, suites };
}

/**
 * Connects to a relay: opens every enabled encapsulation at once, runs the handshake on all of
 * them, and resolves once the relay has registered the session on one (it picks the lightest that
 * works). Rejects with a RoamlinkBrowserError: INVALID_ARGUMENT, CONNECT_FAILED (no transport,
 * timeout, aborted) or HANDSHAKE_FAILED.
 *
 * ```ts
 * const session = await connect({ relay: 'https://relay.example', relayKey: '3b6a…' });
 * const { readable, writable } = await session.openStream('example.com', 80);
 * ```
 */
export function connect(options: ConnectOptions): Promise<RoamlinkSession> {
  return RoamlinkSession.connect(options);
}
