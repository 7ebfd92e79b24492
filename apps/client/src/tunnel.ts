/**
 * The client's whole machine on Node: the transports (UDP, TCP, WebSocket, HTTP streaming, HTTP
 * polling), the sans-I/O ClientSession that races them, and the stream layer (Mux) on top, with
 * a TunnelDialer that the SOCKS5 server and `-L` forwards open streams through.
 *
 * Transports come and go under it. A transport that dies (closed connection, HTTP error, a proxy
 * buffering the stream) is dropped from the candidates and the session registers again on what
 * remains: the same SA, a new registration round, no key exchange. A lost transport is dialled
 * again in the background with backoff; when it is back, the client registers with it among the
 * candidates, so the relay can move the session back to a lighter encapsulation. Streams never
 * notice: the Mux resends what was in flight on the old path (docs/PROTOCOL.md §8).
 */
import { createSocket } from 'node:dgram';
import type {
  Candidate,
  CryptoProvider,
  Keypair,
  MuxEvent,
  SaKeyInfo,
  SessionEvent,
  StreamTarget,
  Suite,
} from '@roamlink/core';
import {
  ClientSession,
  ENCAPSULATION_NAMES,
  Encapsulation,
  ESP_PAYLOAD_OFFSET,
  ESP_TAIL_RESERVE,
  Mux,
  NextHeader,
  StreamError,
  streamPathPayload,
  VERDICT_NAMES,
} from '@roamlink/core';
import type { RelayTls, TunnelDatagrams, TunnelDialer, UdpEndpoint } from '@roamlink/node';
import {
  allocUninitialized,
  HTTP_BASE,
  HttpPollClient,
  HttpStreamClient,
  isHttpPath,
  isHttpStreamPath,
  isTcpPath,
  isWsPath,
  learnForwardAuth,
  MuxHost,
  needsConnect,
  nodeMuxWindows,
  nodeRandom,
  type PacScript,
  type ProxyConfig,
  pacProxyFor,
  parseProxyUrl,
  SessionDriver,
  selectProxy,
  TCP_MAX_DATAGRAM,
  TcpTransport,
  TunnelError,
  UDP_PAYLOAD_CEILING,
  UdpTransport,
  WebSocketTransport,
  WS_MAX_PAYLOAD,
  WS_PATH,
  WsCloseCode,
} from '@roamlink/node';

/** RFC 6455 §7.4.1: the endpoint (or something on the way) received a message too big for it. */
const WS_MESSAGE_TOO_BIG = 1009;

/** The local address a datagram to `to` would leave from (a connected UDP socket tells). */
async function sourceAddressFor(to: UdpEndpoint): Promise<string> {
  const wildcard = to.address.includes(':') ? '::' : '0.0.0.0';
  const s = createSocket(to.address.includes(':') ? 'udp6' : 'udp4');
  try {
    await new Promise<void>((resolve, reject) => {
      s.once('error', reject);
      s.connect(to.port, to.address, () => resolve());
    });
    return s.address().address;
  } catch {
    return wildcard;
  } finally {
    s.close();
  }
}

export type TransportKind = 'udp' | 'tcp' | 'ws' | 'http';
export const TRANSPORT_KINDS: readonly TransportKind[] = ['udp', 'tcp', 'ws', 'http'];

export interface TunnelClientOptions {
  /** The relay's UDP endpoint; TCP defaults to the same address and port. */
  relay: UdpEndpoint;
  relayTcp?: UdpEndpoint;
  /** The relay's HTTP port (WebSocket and HTTP); default: the relay's address, port + 1. */
  relayHttp?: UdpEndpoint;
  /**
   * The relay's HTTP face as a URL, `http(s)://host[:port][/prefix]` (overrides relayHttp): https
   * puts the WebSocket (wss://) and HTTP paths in TLS, as an edge relay or a TLS front on 443
   * needs; a path is the prefix a reverse proxy serves the relay's routes under.
   */
  relayUrl?: string;
  /** For an https relayUrl: the CAs to trust, and whether to check the certificate. */
  tls?: RelayTls;
  relayKey: Uint8Array;
  keypair: Keypair;
  provider: CryptoProvider;
  suites: readonly Suite[];
  enabled?: Partial<Record<TransportKind, boolean>>;
  rekeyAfterMs?: number;
  /** Called with each SA's keys when set (the key log). */
  keyLog?: (info: SaKeyInfo) => void;
  onSessionEvent?: (e: SessionEvent) => void;
  onMuxEvent?: (e: MuxEvent) => void;
  /** Frames that are not the stream layer's (echo replies), decrypted. */
  onFrame?: (payload: Uint8Array) => void;
  onLog?: (msg: string, fields?: Record<string, unknown>) => void;
  /** Per-stream receive window (bytes). */
  streamWindow?: number;
  /** How long streams wait through an outage before the session gives up (default 120 s). */
  outageMs?: number;
  /** A PING after this long without sending while streams are open (default STREAM_KEEPALIVE_MS). */
  keepaliveMs?: number;
  userAgent?: string;
  /**
   * An HTTP proxy for the WebSocket and HTTP paths (basic auth from the URL); false: none.
   * Default: HTTPS_PROXY / HTTP_PROXY from the environment, honouring NO_PROXY. WebSocket goes in
   * a CONNECT tunnel; the HTTP paths send their requests to the proxy in absolute form (forward
   * mode). A proxy that allows CONNECT to the relay's port gives WebSocket, which the relay
   * prefers to HTTP, so HTTP in a CONNECT tunnel would add nothing; one that allows CONNECT only
   * to port 443 (squid's default) still forwards plain requests to the relay's port. An
   * https:// proxy is reached over TLS (proxy.ts), its certificate checked as `proxyTls` says.
   */
  proxy?: string | false;
  /** For an https:// proxy: CAs to trust for its certificate, or no check (relay-tls.ts). */
  proxyTls?: RelayTls;
  /**
   * Without `proxy`: a PAC script chooses the proxy for each WebSocket and HTTP URL (pac.ts);
   * DIRECT means none. The environment's proxies are then not consulted.
   */
  proxyPac?: PacScript;
  /** Credentials for a proxy whose URL has none (one from PAC, say). */
  proxyUser?: { username: string; password: string };
  /**
   * false: HTTP streaming paths keep to a POST per batch and never try the up-stream (one open
   * chunked POST; packages/node/src/http-upstream.ts). Default: tried, and used where it passes.
   */
  httpUpstream?: boolean;
  /**
   * Dial a lost transport again (default true). Off, a loss is final: what a test of one move
   * wants, and nothing a user would.
   */
  redial?: boolean;
}

/** A PING while streams are open and idle this long (the relay forgets silent clients). */
export const STREAM_KEEPALIVE_MS = 30_000;
const RECONNECT_MIN_MS = 250;
const RECONNECT_MAX_MS = 8000;

type HttpClient = HttpStreamClient | HttpPollClient;

export interface TunnelStatus {
  state: string;
  encapsulation: string | null;
  verdict: string | null;
  path: string | null;
  rttMs: number | null;
  handovers: number;
  candidates: string[];
  streams: number;
  /**
   * Streams opened here that wait for the relay's stream limit (`streamLimit`, its
   * --max-streams-per-session): each goes once another stream of the session closes.
   */
  streamsWaiting: number;
  streamLimit: number;
  bytesSent: number;
  bytesReceived: number;
  /**
   * On an HTTP streaming path, its up-stream (packages/node/src/http.ts `upstream`): "live" when
   * datagrams go on one open POST body, "refused" when the path keeps to a POST per batch; null on
   * other paths.
   */
  httpUpstream: 'live' | 'trying' | 'refused' | 'none' | null;
  /** The current path is in TLS (wss:// or https://; UDP and TCP paths never are). */
  tls: boolean;
  /**
   * The proxy the current path goes through (WebSocket and HTTP paths only): its URL without
   * credentials, how the path uses it (CONNECT tunnels or forward requests) and the
   * authentication scheme it was found to want, if any.
   */
  proxy: { href: string; mode: 'connect' | 'forward'; auth: string | null } | null;
}

export class TunnelClient {
  readonly session: ClientSession<string>;
  readonly driver: SessionDriver<string, SessionEvent>;
  /** The stream layer; a new one when the relay started over (#relayStartedOver). */
  host: MuxHost;
  /** Times the relay held no session for a rekey of ours (it restarted): streams started over. */
  relayRestarts = 0;
  readonly #o: TunnelClientOptions;
  readonly #enabled: Record<TransportKind, boolean>;
  #candidates: Candidate<string>[] = [];
  #udp: UdpTransport | undefined;
  readonly #tcp: TcpTransport;
  readonly #ws: WebSocketTransport;
  readonly #http = new Map<string, HttpClient>();
  /** Proxy configurations by proxy and credentials (#proxyFor). */
  readonly #proxies = new Map<string, ProxyConfig>();
  /** The proxy each WebSocket or HTTP path was opened through, and how. */
  readonly #viaProxy = new Map<string, { proxy: ProxyConfig; mode: 'connect' | 'forward' }>();
  /**
   * The session routing id (docs/PROTOCOL.md §7, "Session routing id"): on every WebSocket and
   * HTTP request, so that a relay spread over servers (Workers) routes them to one place.
   */
  readonly #sid = Buffer.from(nodeRandom(16)).toString('hex');
  readonly #dialing = new Set<TransportKind>();
  readonly #backoff = new Map<TransportKind, number>();
  /** The backoff timer of each kind waiting to be dialled again. */
  readonly #waiting = new Map<TransportKind, NodeJS.Timeout>();
  readonly #timers = new Set<NodeJS.Timeout>();
  #lastPath: string | undefined;
  #lastEnc: Encapsulation | undefined;
  /** What WebSocket paths announce as MAX_DATAGRAM; undefined once a 1009 showed it does not pass. */
  #wsMaxDatagram: number | undefined = WS_MAX_PAYLOAD;
  #closed = false;
  handovers = 0;
  moves = 0;

  private constructor(o: TunnelClientOptions) {
    this.#o = o;
    this.#enabled = { udp: true, tcp: true, ws: true, http: true, ...o.enabled };
    this.session = new ClientSession<string>({
      staticKeypair: o.keypair,
      relayStaticKey: o.relayKey,
      provider: o.provider,
      suites: o.suites,
      random: nodeRandom,
      keyLog: o.keyLog !== undefined,
      ...(o.rekeyAfterMs
        ? { limits: { rekeyAfterMs: o.rekeyAfterMs, rejectAfterMs: o.rekeyAfterMs * 1.5 } }
        : {}),
    });
    this.driver = new SessionDriver<string, SessionEvent>(
      this.session,
      (p, d) => this.#sendOn(p, d),
      (e) => this.#sessionEvent(e),
    );
    this.host = this.#newHost();
    const onDatagram = (data: Uint8Array, path: string): void => this.#receive(data, path);
    this.#tcp = new TcpTransport({
      onDatagram,
      onPathClose: (p, r) => this.#lose(p, r, 'tcp'),
      // The stream layer held back for a full socket: it goes on at once, not at its retry timer.
      onDrain: () => this.host.pump(),
      maxDatagram: TCP_MAX_DATAGRAM,
    });
    this.#ws = new WebSocketTransport({
      onDatagram,
      onPathClose: (p, r, code) => {
        // 1009 (message too big, RFC 6455 §7.4.1): something between here and the relay does not
        // carry what both ends take. WebSocket paths from now on announce nothing (64 KiB).
        if (code === WS_MESSAGE_TOO_BIG && this.#wsMaxDatagram !== undefined) {
          this.#wsMaxDatagram = undefined;
          this.#log('ws-large-messages-off', { path: p });
        }
        this.#lose(p, r, 'ws');
      },
      onDrain: () => this.host.pump(),
    });
  }

  /** Opens every enabled transport at once and starts the handshake on all of them. */
  static async start(o: TunnelClientOptions): Promise<TunnelClient> {
    const c = new TunnelClient(o);
    const failed: string[] = [];
    await Promise.all(
      TRANSPORT_KINDS.filter((k) => c.#enabled[k]).map((k) =>
        c.#dial(k).catch((e: unknown) => {
          const error = dialError(e);
          failed.push(`${k}: ${error}`);
          c.#log('dial-failed', { kind: k, error });
        }),
      ),
    );
    if (c.#candidates.length === 0) {
      throw new Error(`no transport to the relay could be opened (${failed.join('; ')})`);
    }
    c.session.connect([...c.#candidates], c.driver.now());
    c.driver.pump();
    for (const k of TRANSPORT_KINDS) if (c.#enabled[k] && !c.#has(k)) c.#redial(k);
    return c;
  }

  /** Streams and datagrams through the tunnel, for the SOCKS5 server and forwards. */
  readonly dialer: TunnelDialer = {
    connect: (target: StreamTarget) => this.host.open(target),
    openDatagrams: (): TunnelDatagrams => this.host.openDatagrams(),
  };

  /** Sends one non-stream frame (an echo request) on the data paths. */
  sendFrame(payload: Uint8Array): void {
    const now = this.driver.now();
    const pkt = this.session.send(payload, NextHeader.ROAMLINK, now);
    if (pkt) for (const p of this.session.dataPaths) this.#sendOn(p, pkt);
    this.driver.pump();
  }

  /** Test and operator hook: drop the live transport(s) of a kind, as if the network killed them. */
  drop(kind: TransportKind, reason = `${kind}-dropped`): void {
    for (const c of [...this.#candidates]) {
      if (this.#kindOfPath(c.path) !== kind) continue;
      this.#closePath(c.path);
      this.#lose(c.path, reason, kind);
    }
  }

  /**
   * The network changed under the client (its interfaces' addresses did: Wi-Fi to cellular):
   * every transport may be bound to an address that is gone, and what failed before may pass now.
   * All are dropped and dialled again at once; waits a failing relay had earned are forgotten.
   */
  networkChanged(reason = 'interfaces-changed'): void {
    this.#backoff.clear();
    for (const k of TRANSPORT_KINDS) if (this.#enabled[k]) this.drop(k, reason);
    for (const [kind, t] of this.#waiting) {
      clearTimeout(t);
      this.#timers.delete(t);
      this.#dialing.delete(kind);
    }
    this.#waiting.clear();
    for (const k of TRANSPORT_KINDS) if (this.#enabled[k] && !this.#has(k)) this.#redial(k, 0);
  }

  /** Turns a transport kind on or off (off closes it: "HTTP only" is all but http off). */
  setEnabled(kind: TransportKind, on: boolean): void {
    this.#enabled[kind] = on;
    if (!on) this.drop(kind, `${kind}-disabled`);
    else if (!this.#has(kind)) this.#redial(kind, 0);
  }

  get enabled(): Readonly<Record<TransportKind, boolean>> {
    return this.#enabled;
  }

  status(): TunnelStatus {
    const s = this.session;
    const m = this.host.mux.stats;
    return {
      state: s.state,
      encapsulation:
        s.encapsulation === undefined ? null : (ENCAPSULATION_NAMES[s.encapsulation] ?? null),
      verdict: s.verdict === undefined ? null : VERDICT_NAMES[s.verdict],
      path: s.path ?? null,
      // The stream layer's estimate follows the traffic (every ACK); the session's comes from
      // handshakes and registration rounds only (the first one includes start-up work).
      rttMs: m.rttSampled
        ? Number(m.rttMs.toFixed(2))
        : s.srtt === undefined
          ? null
          : Number(s.srtt.toFixed(2)),
      handovers: this.handovers,
      candidates: this.#candidates.map((c) => ENCAPSULATION_NAMES[c.info.encapsulation] ?? '?'),
      streams: this.host.streams,
      streamsWaiting: this.host.mux.streamsWaiting,
      streamLimit: this.host.mux.streamLimit,
      bytesSent: m.streamBytesSent,
      bytesReceived: m.streamBytesDelivered,
      httpUpstream:
        s.path === undefined || !isHttpStreamPath(s.path)
          ? null
          : (this.#http.get(s.path)?.upstream ?? null),
      tls:
        s.path !== undefined &&
        (isWsPath(s.path) || isHttpPath(s.path)) &&
        this.#httpEndpoint().secure,
      proxy: this.#proxyOf(s.path),
    };
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    for (const t of this.#timers) clearTimeout(t);
    if (this.session.state === 'established') {
      // Tell the relay we are leaving, so that it frees our streams now rather than after the
      // outage timeout; then give the packet a moment to leave before the sockets close.
      this.host.mux.goAway(StreamError.SHUTDOWN);
      this.host.pump();
      await new Promise((r) => setTimeout(r, 20));
    }
    this.host.close();
    this.driver.close();
    for (const c of this.#http.values()) c.close();
    this.#http.clear();
    const udp = this.#udp;
    this.#udp = undefined;
    await Promise.all([
      udp?.close(),
      this.#tcp.close(),
      this.#ws.close(WsCloseCode.CLIENT_CLOSING, 'client closing'),
    ]);
  }

  #log(msg: string, fields: Record<string, unknown> = {}): void {
    this.#o.onLog?.(msg, fields);
  }

  #has(kind: TransportKind): boolean {
    return this.#candidates.some((c) => this.#kindOfPath(c.path) === kind);
  }

  #kindOfPath(path: string): TransportKind {
    if (isTcpPath(path)) return 'tcp';
    if (isWsPath(path)) return 'ws';
    if (isHttpPath(path)) return 'http';
    return 'udp';
  }

  #sendOn(path: string, data: Uint8Array): void {
    if (isTcpPath(path)) this.#tcp.send(path, data);
    else if (isWsPath(path)) this.#ws.send(path, data);
    else if (isHttpPath(path)) this.#http.get(path)?.send(data);
    else this.#udp?.send(path, data);
  }

  /** Keys usable and no transport the packet would go on is backed up. */
  #canSend(): boolean {
    if (this.session.state !== 'established') return false;
    for (const p of this.session.dataPaths) {
      if (isTcpPath(p) && this.#tcp.congested(p)) return false;
      if (isWsPath(p) && this.#ws.congested(p)) return false;
      if (isHttpPath(p) && this.#http.get(p)?.congested) return false;
    }
    return true;
  }

  /** A stream layer for this session (a new one starts from nothing: no streams, packet 0). */
  #newHost(): MuxHost {
    const o = this.#o;
    return new MuxHost({
      mux: new Mux({
        role: 'client',
        // Room for the ESP header and trailer: the SA seals each packet where the mux built it.
        reserve: { head: ESP_PAYLOAD_OFFSET, tail: ESP_TAIL_RESERVE },
        // Socket reads are never reused: the send buffer keeps them instead of copying.
        adoptWrites: true,
        // It writes every byte of a packet: no zero-filling of 60 000-byte buffers.
        alloc: allocUninitialized,
        // Idle streams must not look like a vanished client to the relay (its --peer-idle-ms).
        keepaliveMs: o.keepaliveMs ?? STREAM_KEEPALIVE_MS,
        now: Date.now(),
        ...nodeMuxWindows(o.streamWindow),
        ...(o.outageMs ? { outageMs: o.outageMs } : {}),
      }),
      canSend: () => this.#canSend(),
      // Not established: the 'established' and 'registered' events pump (#sessionEvent). TCP and
      // WebSocket drains pump too; an HTTP path's queue has no drain event, so it is retried.
      resumes: () => this.session.state !== 'established',
      send: (payload, t) => {
        const pkt = this.session.sendReserved(payload, NextHeader.ROAMLINK, t);
        if (pkt) for (const p of this.session.dataPaths) this.#sendOn(p, pkt);
        this.driver.pump();
      },
      ...(o.onMuxEvent ? { onEvent: o.onMuxEvent } : {}),
    });
  }

  /** What the status says of the proxy `path` goes through. */
  #proxyOf(path: string | undefined): TunnelStatus['proxy'] {
    const v = path === undefined ? undefined : this.#viaProxy.get(path);
    if (!v) return null;
    return { href: v.proxy.href, mode: v.mode, auth: v.proxy.memory.scheme ?? null };
  }

  /**
   * The proxy for a path to `url` (the option, else the environment), with its TLS settings; one
   * configuration per proxy and credentials for the client's life, so that what the proxy wants
   * for authentication is learnt once (its `memory`).
   */
  #proxyFor(url: string): ProxyConfig | undefined {
    let p: ProxyConfig | undefined;
    const pac = this.#o.proxyPac;
    if (this.#o.proxy === undefined && pac !== undefined) {
      const chosen = pacProxyFor(pac, url);
      p = chosen === false ? undefined : parseProxyUrl(chosen);
    } else {
      p = selectProxy(url, this.#o.proxy);
    }
    if (p === undefined) return undefined;
    const user = this.#o.proxyUser;
    if (p.username === undefined && user !== undefined) p = { ...p, ...user };
    const key = `${p.href}\n${p.username ?? ''}\n${p.password ?? ''}`;
    let known = this.#proxies.get(key);
    if (!known) {
      known = p.secure && this.#o.proxyTls ? { ...p, tls: this.#o.proxyTls } : p;
      this.#proxies.set(key, known);
    }
    return known;
  }

  #receive(data: Uint8Array, path: string): void {
    // The relay answers on this kind of transport: its next redial starts from the shortest wait
    // again. (Not when a dial succeeds: an HTTP "dial" touches no socket, and a port that accepts
    // and then closes would be dialled four times a second forever.)
    if (this.#backoff.size > 0) this.#backoff.delete(this.#kindOfPath(path));
    const got = this.session.receive(data, path, this.driver.now());
    if (got && got.nextHeader === NextHeader.ROAMLINK) {
      if (this.host.mux.isMuxFrame(got.payload)) this.host.receive(got.payload);
      else this.#o.onFrame?.(got.payload);
    }
    this.driver.pump();
    this.#checkPath();
  }

  #sessionEvent(e: SessionEvent): void {
    if (e.type === 'sa-keys') {
      this.#o.keyLog?.(e.info);
      return;
    }
    this.#o.onSessionEvent?.(e);
    if (e.type === 'established' && e.relayFresh) this.#relayStartedOver();
    if (e.type === 'established' || e.type === 'registered') this.host.pump();
    this.#checkPath();
  }

  /**
   * A rekey found the relay without our session (it restarted: RESP extension FRESH). Its stream
   * layer is new, so ours must be: the old one's packet numbers would make the relay's first
   * packets look like duplicates, and its streams, whose far ends the relay closed with its
   * sockets, could never finish. They end now with an error (the SOCKS clients see their
   * connections close) and new ones open at once. Streams the relay never accepted (often the
   * very connection whose first packet found the relay without our SA: a laptop waking up) open
   * again on the new layer instead: their users see nothing but a round trip more.
   */
  #relayStartedOver(): void {
    const old = this.host;
    this.host = this.#newHost();
    this.relayRestarts++;
    const reopen = old.takeOpening();
    old.close(new TunnelError('shutdown', 'the relay restarted: its streams are gone'));
    for (const o of reopen) this.host.open(o.target).then(o.resolve, o.reject);
    // The new stream layer learns the path afresh (packet size, datagram or stream).
    this.#lastPath = undefined;
    this.#lastEnc = undefined;
    this.#log('relay-restarted', { reopened: reopen.length });
  }

  /**
   * The session's path changed (a registration settled, a probe upgraded, a dead path was left):
   * the stream layer restarts its RTT and congestion state and resends what was in flight on the
   * old path (RFC 9000 §9.4), and sizes packets for the new encapsulation.
   */
  #checkPath(): void {
    const p = this.session.path;
    const enc = this.session.encapsulation;
    // Fitted once the relay has named the encapsulation (the first RREP): the path the handshake
    // went out on is often the one that wins, so the path alone does not show the change.
    if (p === undefined || enc === undefined) return;
    const datagram = enc === Encapsulation.UDP;
    // On a stream path, packets as large as both ends take: ours as announced in the RREQ, the
    // relay's from its RREP (docs/PROTOCOL.md §6.4).
    const payload = datagram
      ? undefined
      : streamPathPayload(
          this.#candidates.find((c) => c.path === p)?.info.maxDatagram,
          this.session.peerMaxDatagram,
        );
    if (p === this.#lastPath && enc === this.#lastEnc) {
      if (payload !== undefined && payload !== this.host.mux.maxPayload) {
        this.host.mux.setMaxPayload(payload);
        this.host.pump();
      }
      return;
    }
    const moved = this.#lastPath !== undefined && p !== this.#lastPath;
    this.#lastPath = p;
    this.#lastEnc = enc;
    // On UDP the path's real MTU is looked for (RFC 8899): loopback and jumbo-frame LANs carry
    // far more than the 1360 bytes every path takes, and per-packet cost is what limits speed.
    this.host.mux.usePath({
      datagram,
      changed: moved,
      now: this.driver.now(),
      datagramCeiling: UDP_PAYLOAD_CEILING,
      ...(payload !== undefined ? { streamPayload: payload } : {}),
    });
    if (moved) {
      this.handovers++;
      this.#log('handover', { path: p, encapsulation: ENCAPSULATION_NAMES[enc] });
    }
    this.host.pump();
  }

  #closePath(path: string): void {
    if (isTcpPath(path)) this.#tcp.closePath(path);
    else if (isWsPath(path)) this.#ws.closePath(path, WsCloseCode.CLIENT_CLOSING, 'dropped');
    else if (isHttpPath(path)) {
      this.#http.get(path)?.close();
      this.#http.delete(path);
    } else {
      const udp = this.#udp;
      this.#udp = undefined;
      void udp?.close();
    }
  }

  /** A transport is gone: register on what remains (same SA, a new round), and dial it again. */
  #lose(path: string, reason: string, kind: TransportKind): void {
    if (this.#closed) return;
    const before = this.#candidates.length;
    this.#candidates = this.#candidates.filter((c) => c.path !== path);
    this.#viaProxy.delete(path);
    if (this.#candidates.length === before) return;
    this.#log('transport-lost', { kind, reason, remaining: this.#candidates.length });
    if (this.#candidates.length > 0 && this.session.state !== 'idle') {
      if (this.session.state === 'established') this.moves++;
      this.session.move([...this.#candidates], this.driver.now(), reason);
      // What was in flight on the dead transport goes again on the new paths at once.
      this.host.mux.pathChanged(this.driver.now(), reason);
      this.driver.pump();
      this.host.pump();
    }
    if (this.#enabled[kind] && !this.#has(kind)) this.#redial(kind);
  }

  /** Dial `kind` again after a backoff that doubles while it keeps failing. */
  #redial(kind: TransportKind, delayMs?: number): void {
    if (this.#closed || this.#dialing.has(kind) || this.#o.redial === false) return;
    const wait = delayMs ?? this.#backoff.get(kind) ?? RECONNECT_MIN_MS;
    this.#backoff.set(kind, Math.min(RECONNECT_MAX_MS, Math.max(RECONNECT_MIN_MS, wait * 2)));
    this.#dialing.add(kind);
    const t = setTimeout(() => {
      this.#timers.delete(t);
      this.#waiting.delete(kind);
      if (this.#closed || !this.#enabled[kind]) {
        this.#dialing.delete(kind);
        return;
      }
      this.#dial(kind)
        .then(() => {
          if (this.#closed) return;
          if (this.session.state === 'established' || this.session.state === 'handshaking') {
            // A move is one of a session that exists; before that, only the candidates change.
            if (this.session.state === 'established') this.moves++;
            this.session.move([...this.#candidates], this.driver.now(), `${kind}-up`);
            this.driver.pump();
          }
        })
        .catch((e: unknown) => {
          this.#log('dial-failed', { kind, error: dialError(e) });
        })
        .finally(() => {
          this.#dialing.delete(kind);
          if (!this.#closed && this.#enabled[kind] && !this.#has(kind)) this.#redial(kind);
        });
    }, wait);
    t.unref();
    this.#timers.add(t);
    this.#waiting.set(kind, t);
  }

  #fellBack(path: string): void {
    const c = this.#candidates.find((x) => x.path === path);
    const client = this.#http.get(path);
    if (!c || !client) return;
    const v = client.view();
    c.info = {
      encapsulation: Encapsulation.HTTP_POLL,
      view: { ...c.info.view, url: v.url },
    };
    this.#log('http-fallback', { path });
    if (this.session.state === 'established') {
      this.moves++;
      this.session.move([...this.#candidates], this.driver.now(), 'http-fallback');
      this.driver.pump();
    }
  }

  /** Where the WebSocket and HTTP paths go: scheme, authority and the routes' prefix. */
  #httpEndpoint(): { secure: boolean; authority: string; prefix: string } {
    if (this.#o.relayUrl !== undefined) {
      const u = new URL(this.#o.relayUrl);
      return {
        secure: u.protocol === 'https:',
        authority: u.host,
        prefix: u.pathname.replace(/\/+$/, ''),
      };
    }
    const r = this.#o.relay;
    const e = this.#o.relayHttp ?? { address: r.address, port: Math.min(r.port + 1, 65535) };
    const host = e.address.includes(':') ? `[${e.address}]` : e.address;
    return { secure: false, authority: `${host}:${e.port}`, prefix: '' };
  }

  async #dial(kind: TransportKind): Promise<void> {
    const ua = this.#o.userAgent ?? 'roamlink-client/0.1';
    const onDatagram = (data: Uint8Array, path: string): void => this.#receive(data, path);
    switch (kind) {
      case 'udp': {
        const relay = this.#o.relay;
        // Bound to the address the kernel would route to the relay from, so that the RREQ can
        // name its own source address (and the verdict can say "none" where nothing translates).
        const udp = await UdpTransport.bind(
          { address: await sourceAddressFor(relay), port: 0 },
          onDatagram,
        );
        this.#udp = udp;
        const path = udp.addEndpoint(relay);
        udp.socket.on('error', (e: NodeJS.ErrnoException) => {
          if (this.#udp === udp) this.#udp = undefined;
          void udp.close();
          this.#lose(path, `udp-error: ${e.code ?? e.message}`, 'udp');
        });
        // The client's own copy of the outer header fields it sends (the RREQ carries it). A
        // wildcard bind does not know its source address: unknown.
        const local = udp.local;
        this.#candidates.push({
          path,
          info: {
            encapsulation: Encapsulation.UDP,
            view: {
              ...(local.address === '0.0.0.0' || local.address === '::'
                ? {}
                : { srcAddr: local.address }),
              srcPort: local.port,
              dstAddr: relay.address,
              dstPort: relay.port,
            },
          },
        });
        return;
      }
      case 'tcp': {
        const e = this.#o.relayTcp ?? this.#o.relay;
        const path = await this.#tcp.connect(e.address, e.port);
        const ends = this.#tcp.endpoints(path)!;
        this.#candidates.push({
          path,
          info: {
            encapsulation: Encapsulation.TCP,
            maxDatagram: TCP_MAX_DATAGRAM,
            view: {
              srcAddr: ends.local.address,
              srcPort: ends.local.port,
              dstAddr: ends.remote.address,
              dstPort: ends.remote.port,
            },
          },
        });
        return;
      }
      case 'ws': {
        const e = this.#httpEndpoint();
        const url = `${e.secure ? 'wss' : 'ws'}://${e.authority}${e.prefix}${WS_PATH}?sid=${this.#sid}`;
        const proxy = this.#proxyFor(url);
        const path = await this.#ws.connect(
          url,
          { 'User-Agent': ua },
          {
            ...(proxy ? { proxy } : {}),
            ...(e.secure && this.#o.tls ? { tls: this.#o.tls } : {}),
          },
        );
        const v = this.#ws.view(path)!;
        if (proxy) this.#viaProxy.set(path, { proxy, mode: 'connect' });
        this.#candidates.push({
          path,
          info: {
            encapsulation: Encapsulation.WEBSOCKET,
            ...(this.#wsMaxDatagram !== undefined ? { maxDatagram: this.#wsMaxDatagram } : {}),
            view: {
              srcAddr: v.local.address,
              srcPort: v.local.port,
              dstAddr: v.remote.address,
              dstPort: v.remote.port,
              url: v.url,
              ...(v.host === undefined ? {} : { host: v.host }),
              headers: v.headers,
            },
          },
        });
        return;
      }
      case 'http': {
        const e = this.#httpEndpoint();
        const kinds = [
          [Encapsulation.HTTP_STREAM, HttpStreamClient],
          [Encapsulation.HTTP_POLL, HttpPollClient],
        ] as const;
        const baseUrl = `${e.secure ? 'https' : 'http'}://${e.authority}${e.prefix}${HTTP_BASE}`;
        const proxy = this.#proxyFor(baseUrl);
        // Forward requests to a plain proxy carry the scheme it asked for, learnt first.
        if (proxy && !e.secure) await learnForwardAuth(proxy, `${baseUrl}/`);
        // Plain http goes to the proxy as forward requests (with Basic); https cannot, and rides
        // CONNECT, as does everything to a proxy that wants NTLM or Digest.
        const mode =
          e.secure || (proxy && (proxy.socks || needsConnect(proxy.memory)))
            ? 'connect'
            : 'forward';
        for (const [encapsulation, Kind] of kinds) {
          const c = new Kind({
            baseUrl,
            ...(proxy ? { proxy, proxyMode: mode } : {}),
            ...(e.secure && this.#o.tls ? { tls: this.#o.tls } : {}),
            ...(this.#o.httpUpstream === false ? { upstream: false } : {}),
            // The clients build their own request targets: the routing id goes as a header.
            headers: { 'User-Agent': ua, 'Roamlink-Session': this.#sid },
            onDatagram,
            onError: (path, reason) => {
              this.#http.delete(path);
              this.#lose(path, reason, 'http');
            },
            // A proxy buffered the stream: the same path polls now. Register it as what it is.
            onModeChange: (path) => this.#fellBack(path),
          });
          this.#http.set(c.pathId, c);
          if (proxy) this.#viaProxy.set(c.pathId, { proxy, mode });
          // Nothing to wait for (the first POST leaves with the first datagram): the view is
          // what the client will send; its own address and port are unknown.
          const v = c.view();
          this.#candidates.push({
            path: c.pathId,
            info: {
              encapsulation,
              view: {
                dstAddr: v.remote.address,
                dstPort: v.remote.port,
                url: v.url,
                ...(v.host === undefined ? {} : { host: v.host }),
                headers: v.headers,
              },
            },
          });
        }
        return;
      }
    }
  }
}

/**
 * A failed dial in a log line: the error's code first when its message lacks it (a TLS
 * certificate error says "unable to verify the first certificate" and keeps its code apart).
 */
function dialError(e: unknown): string {
  if (!(e instanceof Error)) return String(e);
  const code = (e as NodeJS.ErrnoException).code;
  return code === undefined || e.message.includes(code) ? String(e) : `${code}: ${e.message}`;
}
