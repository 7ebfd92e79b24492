/**
 * The relay for runtimes that speak the Fetch API (Workers, Deno, Bun): what the Node relay holds
 * per client (apps/relay/src/relay.ts), without Node. The RelaySessions with the clients' SAs and
 * registrations, per client the stream layer (a ResumableMux) and its egress, TCP connections
 * from the runtime's `connect` (checked against the egress policy first, config.ts), and the
 * RLHTTP/1 relay half (http-relay.ts). WebSocket paths are the runtime's: it hands each binary
 * message to `deliver` and gives `sendWs` for the other way.
 *
 * These runtimes have no UDP socket to serve on (Workers have no UDP and no TCP listener at all),
 * so the relay offers WebSocket, HTTP streaming and HTTP polling only: the handshake response and
 * every RREP list just those.
 *
 * State that must outlive the memory (Workers) is exported after every event (`onEvent` then
 * `exportState`) and read back with `importState` (relay-state.ts, mux-resume.ts); the Deno and
 * Bun entries keep everything in one process and export nothing.
 */
import {
  decodeEcho,
  Encapsulation,
  echoReplyInPlace,
  FrameType,
  Mux,
  type MuxEvent,
  type MuxStats,
  NextHeader,
  nobleProvider,
  type OuterView,
  type PathInfo,
  type RandomBytes,
  type RelayEvent,
  type RelayPeer,
  RelaySessions,
  STREAM_PATH_PAYLOAD,
  StreamError,
  type StreamTarget,
} from '@roamlink/core';
import { checkEgressWithoutDns, type WorkerRelayConfig } from './config.ts';
import { FetchHttpRelay, type HttpMode, isHttpPath } from './http-relay.ts';
import { type MuxResumeState, ResumableMux } from './mux-resume.ts';
import {
  exportPeer,
  type HandshakeRecord,
  isHandshakeInit,
  type PeerState,
  RandomTape,
  receiveInit,
  restorePeer,
} from './relay-state.ts';

/** The encapsulations these runtimes serve, in the relay's order of preference. */
export const EDGE_ENCAPSULATIONS = [
  Encapsulation.WEBSOCKET,
  Encapsulation.HTTP_STREAM,
  Encapsulation.HTTP_POLL,
] as const;

/** The largest WebSocket message taken (as on Node); larger closes with 1009. */
export const WS_MAX_PAYLOAD = 65_535;

/** A connected TCP connection as web streams (Workers' `connect()`, Deno's `Deno.connect`). */
export interface EgressSocket {
  readable: ReadableStream<Uint8Array>;
  writable: WritableStream<Uint8Array>;
  close(): unknown;
}

export interface EdgeRelayOptions {
  config: WorkerRelayConfig;
  random: RandomBytes;
  /** Opens a TCP connection to an allowed target; rejects (or throws) when it cannot. */
  connect: (target: StreamTarget) => Promise<EgressSocket>;
  /** One datagram as one binary message on a WebSocket path; false if the path is gone. */
  sendWs: (path: string, data: Uint8Array) => boolean;
  /** Timers further out than `shortTimerMs` go here (Workers: the storage alarm). */
  longTimer?: (at: number) => void;
  /** Default 5000 ms; with no `longTimer`, every timer is a `setTimeout`. */
  shortTimerMs?: number;
  /** After every event: the state changed (Workers save `exportState()` now). */
  onEvent?: () => void;
  /**
   * Hears every session event (but key material) and every stream-layer event with its peer's
   * id: what the status page's recorder is fed (apps/relay/src/status.ts, StatusInput).
   */
  observe?: (e: RelayEvent<string> | (MuxEvent & { peer: string })) => void;
}

export interface SavedPeer {
  peer: PeerState;
  mux: MuxResumeState | undefined;
  epoch: number;
}

export interface SavedState {
  v: 1;
  peers: SavedPeer[];
}

/**
 * What the relay observes about a request: the target and every header (a proxy in between, and
 * at the Workers edge the platform's own CF-Connecting-IP, X-Forwarded-Proto and the like, show
 * in the verdict, as they should). The client's address: the socket's where the runtime says
 * (`remote`), else the edge's CF-Connecting-IP (no port).
 */
export function observedView(
  req: Request,
  remote?: { address: string; port: number } | undefined,
): OuterView {
  const u = new URL(req.url);
  const headers: [string, string][] = [];
  for (const [k, v] of req.headers) headers.push([k.toLowerCase(), v]);
  const ip = remote?.address ?? req.headers.get('cf-connecting-ip') ?? undefined;
  const host = req.headers.get('host');
  return {
    ...(ip ? { srcAddr: ip.replace(/^::ffff:(?=\d+\.)/, '') } : {}),
    ...(remote?.port ? { srcPort: remote.port } : {}),
    url: u.pathname + u.search,
    ...(host ? { host } : {}),
    headers,
  };
}

/** One TCP connection to a stream's target. */
interface Egress {
  socket: EgressSocket | undefined;
  writer: WritableStreamDefaultWriter<Uint8Array> | undefined;
  /** Client data that came before the connection was up. */
  early: Uint8Array[];
  ended: boolean;
  closed: boolean;
  /** Resolves a reader waiting for the stream to take more ('stream-writable'). */
  wake: (() => void) | undefined;
}

/** The stream layer of one peer and its egress connections. */
interface Tunnel {
  peer: RelayPeer<string>;
  mux: ResumableMux;
  lastPath: string | undefined;
  egress: Map<number, Egress>;
  timer: ReturnType<typeof setTimeout> | undefined;
  timerAt: number;
  pumping: boolean;
  again: boolean;
}

export class EdgeRelay {
  readonly relay: RelaySessions<string>;
  readonly http: FetchHttpRelay;
  readonly #o: EdgeRelayOptions;
  readonly #tape: RandomTape;
  readonly #tunnels = new Map<string, Tunnel>();
  readonly #handshakes = new Map<string, HandshakeRecord[]>();
  readonly #epochs = new Map<string, number>();
  readonly #views = new WeakMap<Request, OuterView>();
  #remoteOf: ((req: Request) => { address: string; port: number } | undefined) | undefined;
  #relayTimer: ReturnType<typeof setTimeout> | undefined;
  #relayTimerAt = Number.POSITIVE_INFINITY;
  /** Peers brought back from saved state. */
  restored = 0;

  constructor(o: EdgeRelayOptions) {
    this.#o = o;
    this.#tape = new RandomTape(o.random);
    this.relay = new RelaySessions<string>({
      staticKeypair: o.config.keypair,
      provider: nobleProvider,
      random: this.#tape.random,
      authorize: o.config.authorize,
      encapsulations: EDGE_ENCAPSULATIONS,
    });
    this.http = new FetchHttpRelay({
      onDatagram: (d, path, mode, req) => this.deliver(d, path, this.#httpInfo(req, mode)),
    });
  }

  /** Where the runtime knows a request's socket ends (Deno, Bun), the HTTP views use them. */
  set remoteOf(f: (req: Request) => { address: string; port: number } | undefined) {
    this.#remoteOf = f;
  }

  /** A request under /rl/ other than the WebSocket upgrade ("/up", "/down", "/poll"). */
  async handleHttp(req: Request, route: string): Promise<Response> {
    try {
      return await this.http.handle(req, route);
    } finally {
      this.#o.onEvent?.();
    }
  }

  /** One datagram from any path, with what the relay observed about that path. */
  deliver(data: Uint8Array, path: string, info: PathInfo): void {
    const now = Date.now();
    if (isHandshakeInit(data)) {
      for (const r of receiveInit(this.relay, this.#tape, data, path, now, info)) {
        for (const p of this.relay.peers.values()) {
          if (p.lastInit?.pair.localSpi !== r.spi) continue;
          this.#handshakes.set(p.id, [...(this.#handshakes.get(p.id) ?? []), r]);
        }
      }
    } else {
      const got = this.relay.receive(data, path, now, info);
      if (got && got.nextHeader === NextHeader.ROAMLINK && got.payload.length > 0) {
        const t = this.#tunnelOf(got.peer);
        if (t.mux.isMuxFrame(got.payload)) {
          t.mux.receive(got.payload, now);
          this.#pump(t);
        } else if (got.payload[0] === FrameType.ECHO_REQUEST) {
          try {
            decodeEcho(got.payload);
            const pkt = this.relay.send(
              got.peer,
              echoReplyInPlace(got.payload),
              NextHeader.ROAMLINK,
              now,
            );
            if (pkt && got.peer.path !== undefined) this.#sendOn(got.peer.path, pkt);
          } catch {
            // A malformed frame inside an authentic packet: the peer's bug; dropped.
          }
        }
      }
    }
    this.#pumpRelay();
  }

  /** A binary WebSocket message (the runtime checked it is binary). */
  deliverWs(data: Uint8Array, path: string, view: OuterView): void {
    this.deliver(data, path, { encapsulation: Encapsulation.WEBSOCKET, view });
    this.#o.onEvent?.();
  }

  /** The relay's timers that went to `longTimer` are due. */
  timeout(): void {
    this.relay.handleTimeout(Date.now());
    this.#pumpRelay();
    this.#o.onEvent?.();
  }

  /** Something changed outside (a path closed): let the owner save. */
  touched(): void {
    this.#o.onEvent?.();
  }

  /** Whether a peer holds usable or pending keys. */
  get hasSessions(): boolean {
    for (const p of this.relay.peers.values()) if (p.keys.current || p.keys.next) return true;
    return false;
  }

  // --- saving and restoring ----------------------------------------------------------------------

  exportState(): SavedState {
    const peers: SavedPeer[] = [];
    for (const p of this.relay.peers.values()) {
      if (!p.keys.current && !p.keys.next) continue;
      const saved = exportPeer(p, this.#handshakes.get(p.id) ?? []);
      // Only the handshakes of pairs still held are worth keeping.
      this.#handshakes.set(p.id, saved.handshakes);
      peers.push({
        peer: saved,
        mux: this.#tunnels.get(p.id)?.mux.state(),
        epoch: this.#epochs.get(p.id) ?? 0,
      });
    }
    return { v: 1, peers };
  }

  /** Brings saved peers back (a fresh relay); the resumed stream layers send their RESETs. */
  importState(s: SavedState): void {
    if (s.v !== 1) return;
    for (const sp of s.peers) {
      const peer = restorePeer(this.relay, this.#tape, sp.peer);
      if (!peer) continue;
      this.#handshakes.set(peer.id, sp.peer.handshakes);
      this.#epochs.set(peer.id, sp.epoch);
      if (sp.mux) this.#tunnelOf(peer, sp.mux, sp.epoch + 1);
      this.restored++;
    }
    this.#pumpRelay();
    for (const t of this.#tunnels.values()) this.#pump(t);
  }

  debugState(): unknown {
    return {
      restored: this.restored,
      http: this.http.paths.length,
      peers: [...this.relay.peers.values()].map((p) => ({
        id: p.id.slice(0, 16),
        path: p.path ?? null,
        round: p.round,
        encapsulation: p.chosenEncapsulation ?? null,
        epoch: this.#tunnels.get(p.id)?.mux.epoch ?? null,
        streams: this.#tunnels.get(p.id)?.egress.size ?? 0,
        staleStreams: this.#tunnels.get(p.id)?.mux.staleStreams ?? 0,
      })),
    };
  }

  /** Each tunnel's stream-layer stats (the status page samples them once a second). */
  tunnels(): { peer: string; stats: MuxStats }[] {
    return [...this.#tunnels.values()].map((t) => ({ peer: t.peer.id, stats: t.mux.stats }));
  }

  /** Ends every stream, connection and held request. */
  close(): void {
    for (const id of [...this.#tunnels.keys()]) this.#dropTunnel(id);
    if (this.#relayTimer) clearTimeout(this.#relayTimer);
    this.http.close();
  }

  // --- paths -------------------------------------------------------------------------------------

  #httpInfo(req: Request, mode: HttpMode): PathInfo {
    let view = this.#views.get(req);
    if (!view) {
      view = observedView(req, this.#remoteOf?.(req));
      this.#views.set(req, view);
    }
    return {
      // A streaming path that fell back keeps its id but travels as polling now.
      encapsulation: mode === 'poll' ? Encapsulation.HTTP_POLL : Encapsulation.HTTP_STREAM,
      view,
    };
  }

  #sendOn(path: string, data: Uint8Array): void {
    if (isHttpPath(path)) this.http.send(path, data);
    else this.#o.sendWs(path, data);
  }

  #congested(path: string): boolean {
    return isHttpPath(path) && this.http.congested(path);
  }

  /** Sends what the sessions want sent, takes their events, re-arms their timer. */
  #pumpRelay(): void {
    const r = this.relay;
    for (let t = r.pollTransmit(); t; t = r.pollTransmit()) this.#sendOn(t.path, t.data);
    for (let e = r.pollEvent(); e; e = r.pollEvent()) this.#relayEvent(e);
    for (const t of this.#tunnels.values()) this.#checkPath(t);
    const at = r.nextTimeout();
    if (at === this.#relayTimerAt) return;
    if (this.#relayTimer) clearTimeout(this.#relayTimer);
    this.#relayTimer = undefined;
    this.#relayTimerAt = at ?? Number.POSITIVE_INFINITY;
    if (at === undefined) return;
    const wait = at - Date.now();
    const long = this.#o.longTimer;
    if (long && wait > (this.#o.shortTimerMs ?? 5_000)) {
      long(at);
      return;
    }
    this.#relayTimer = setTimeout(
      () => {
        this.#relayTimer = undefined;
        this.#relayTimerAt = Number.POSITIVE_INFINITY;
        this.timeout();
      },
      Math.max(0, wait),
    );
  }

  #relayEvent(e: RelayEvent<string>): void {
    if (e.type !== 'sa-keys') this.#o.observe?.(e);
    if (e.type === 'keys-expired' && !e.peer.keys.current && !e.peer.keys.next) {
      this.#dropTunnel(e.peer.id);
    }
  }

  /** The peer's path moved: the stream layer resends what the old path held. */
  #checkPath(t: Tunnel): void {
    const p = t.peer.path;
    if (p === undefined || p === t.lastPath) return;
    const first = t.lastPath === undefined;
    t.lastPath = p;
    if (!first) t.mux.pathChanged(Date.now(), 'path-changed');
    this.#pump(t);
  }

  // --- the stream layer and its egress ------------------------------------------------------------

  #tunnelOf(peer: RelayPeer<string>, resume?: MuxResumeState, epoch = 0): Tunnel {
    let t = this.#tunnels.get(peer.id);
    if (t) return t;
    // Pacing is for datagram paths; a stream transport paces itself (as on Node).
    const mux = new Mux({
      role: 'relay',
      now: Date.now(),
      // Every path here is a stream transport.
      maxPayload: STREAM_PATH_PAYLOAD,
      pacing: false,
    });
    t = {
      peer,
      mux: new ResumableMux(mux, resume, epoch),
      lastPath: peer.path,
      egress: new Map(),
      timer: undefined,
      timerAt: Number.POSITIVE_INFINITY,
      pumping: false,
      again: false,
    };
    this.#tunnels.set(peer.id, t);
    this.#epochs.set(peer.id, t.mux.epoch);
    return t;
  }

  #dropTunnel(id: string): void {
    const t = this.#tunnels.get(id);
    if (!t) return;
    this.#tunnels.delete(id);
    if (t.timer) clearTimeout(t.timer);
    for (const e of t.egress.values()) this.#closeEgress(e);
  }

  /** Drains the stream layer's events, sends its packets, re-arms its timer. */
  #pump(t: Tunnel): void {
    if (t.pumping) {
      t.again = true;
      return;
    }
    t.pumping = true;
    try {
      do {
        t.again = false;
        for (let e = t.mux.pollEvent(); e; e = t.mux.pollEvent()) this.#muxEvent(t, e);
        const now = Date.now();
        const peer = t.peer;
        while (peer.keys.current && peer.path !== undefined && !this.#congested(peer.path)) {
          const p = t.mux.pollPacket(now);
          if (!p) break;
          const pkt = this.relay.send(peer, p, NextHeader.ROAMLINK, now);
          if (pkt && peer.path !== undefined) this.#sendOn(peer.path, pkt);
        }
        const r = this.relay;
        for (let x = r.pollTransmit(); x; x = r.pollTransmit()) this.#sendOn(x.path, x.data);
      } while (t.again);
    } finally {
      t.pumping = false;
    }
    const at = t.mux.nextTimeout();
    if (at === t.timerAt) return;
    if (t.timer) clearTimeout(t.timer);
    t.timer = undefined;
    t.timerAt = at ?? Number.POSITIVE_INFINITY;
    if (at === undefined) return;
    t.timer = setTimeout(
      () => {
        t.timer = undefined;
        t.timerAt = Number.POSITIVE_INFINITY;
        t.mux.handleTimeout(Date.now());
        this.#pump(t);
        this.#o.onEvent?.();
      },
      Math.max(0, at - Date.now()),
    );
  }

  #muxEvent(t: Tunnel, e: MuxEvent): void {
    this.#o.observe?.({ ...e, peer: t.peer.id });
    switch (e.type) {
      case 'stream-open':
        this.#openEgress(t, e.id, e.target);
        return;
      case 'stream-data': {
        const g = t.egress.get(e.id);
        if (!g || g.closed) {
          t.mux.consumed(e.id, e.data.length);
          return;
        }
        const data = e.data.slice();
        if (!g.writer) g.early.push(data);
        else this.#writeOut(t, e.id, g, data);
        return;
      }
      case 'stream-end': {
        const g = t.egress.get(e.id);
        if (!g) return;
        g.ended = true;
        if (g.writer && g.early.length === 0) void g.writer.close().catch(() => {});
        return;
      }
      case 'stream-reset': {
        const g = t.egress.get(e.id);
        if (g) this.#closeEgress(g);
        return;
      }
      case 'stream-writable':
        t.egress.get(e.id)?.wake?.();
        return;
      case 'stream-closed': {
        const g = t.egress.get(e.id);
        t.egress.delete(e.id);
        if (g) this.#closeEgress(g);
        return;
      }
      case 'dead':
        this.#dropTunnel(t.peer.id);
        return;
      default:
        return;
    }
  }

  /** Client bytes to the target; the credit goes back once the socket took them. */
  #writeOut(t: Tunnel, id: number, g: Egress, data: Uint8Array): void {
    g.writer!.write(data).then(
      () => {
        t.mux.consumed(id, data.length);
        this.#pump(t);
        this.#o.onEvent?.();
      },
      () => {
        t.mux.reset(id, StreamError.RESET);
        this.#pump(t);
        this.#o.onEvent?.();
      },
    );
  }

  /** A stream the client opened: policy, then a connection, then bytes both ways. */
  #openEgress(t: Tunnel, id: number, target: StreamTarget): void {
    const decision = checkEgressWithoutDns(this.#o.config.policy, target.host, target.port);
    if (!decision.ok) {
      t.mux.refuse(id, StreamError.POLICY);
      this.#pump(t);
      return;
    }
    const g: Egress = {
      socket: undefined,
      writer: undefined,
      early: [],
      ended: false,
      closed: false,
      wake: undefined,
    };
    let opening: Promise<EgressSocket>;
    try {
      opening = this.#o.connect(target);
    } catch {
      t.mux.refuse(id, StreamError.UNREACHABLE);
      this.#pump(t);
      return;
    }
    t.egress.set(id, g);
    opening.then(
      (socket) => {
        g.socket = socket;
        if (g.closed) {
          // The stream ended while the connection was being made.
          void Promise.resolve(socket.close()).catch(() => {});
          return;
        }
        g.writer = socket.writable.getWriter();
        t.mux.accept(id);
        for (const d of g.early.splice(0)) this.#writeOut(t, id, g, d);
        if (g.ended) void g.writer.close().catch(() => {});
        this.#pump(t);
        this.#o.onEvent?.();
        void this.#readIn(t, id, g, socket);
      },
      () => {
        if (g.closed) return;
        t.egress.delete(id);
        g.closed = true;
        t.mux.refuse(id, StreamError.REFUSED);
        this.#pump(t);
        this.#o.onEvent?.();
      },
    );
  }

  /** Target bytes to the client, as fast as the stream's credit allows. */
  async #readIn(t: Tunnel, id: number, g: Egress, socket: EgressSocket): Promise<void> {
    const reader = socket.readable.getReader();
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (g.closed) return;
        if (done) {
          t.mux.end(id);
          this.#pump(t);
          this.#o.onEvent?.();
          return;
        }
        let off = 0;
        while (off < value.length) {
          off += t.mux.write(id, off === 0 ? value : value.subarray(off));
          this.#pump(t);
          if (off < value.length) {
            await new Promise<void>((resolve) => {
              g.wake = resolve;
            });
            g.wake = undefined;
            if (g.closed) return;
          }
        }
        this.#o.onEvent?.();
      }
    } catch {
      if (!g.closed) {
        t.mux.reset(id, StreamError.RESET);
        this.#pump(t);
        this.#o.onEvent?.();
      }
    }
  }

  #closeEgress(g: Egress): void {
    if (g.closed) return;
    g.closed = true;
    g.wake?.();
    try {
      void Promise.resolve(g.socket?.close()).catch(() => {});
    } catch {
      // Already closed.
    }
  }
}
