/**
 * The relay on Node: UDP (RFC 3948), TCP (RFC 8229 framing), WebSocket (RFC 6455) and plain HTTP
 * (RLHTTP/1: streaming and long polling) at once, the sans-I/O RelaySessions behind them, and per
 * client a stream layer (Mux) whose streams go out as TCP connections and whose datagrams go out
 * as UDP, each checked against the egress policy first.
 *
 * Paths are strings: "addr:port" for UDP, "tcp:<n>" for a TCP connection, "ws:<n>" for a
 * WebSocket, "hs:<token>"/"hp:<token>" for an HTTP streaming/polling session; a transmit goes to
 * the transport its path's prefix names. The HTTP port is one Node HTTP server: requests under
 * /rl/ go to the HTTP encapsulations, WebSocket upgrades on /rl/ws to `ws`, everything else to the
 * hono app (createRelayApp).
 *
 * A client's mux lives as long as its peer entry (keyed by its static key), not as long as one SA
 * or one path: a move, a rekey or an outage leaves its streams where they are.
 */
import { createSocket, type Socket as UdpSocket } from 'node:dgram';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer, type Server as HttpsServer } from 'node:https';
import { connect as tcpConnect } from 'node:net';
import { getRequestListener } from '@hono/node-server';
import type {
  Authorization,
  CryptoProvider,
  Encapsulation as EncapsulationT,
  Keypair,
  MuxEvent,
  MuxStats,
  OuterView,
  PathInfo,
  RelayEvent,
  RelayPeer,
  SaKeyInfo,
  StreamTarget,
  Suite,
} from '@roamlink/core';
import {
  decodeEcho,
  ENCAPSULATION_NAMES,
  Encapsulation,
  ESP_PAYLOAD_OFFSET,
  ESP_TAIL_RESERVE,
  echoReplyInPlace,
  FrameType,
  Mux,
  NextHeader,
  RelaySessions,
  StreamError,
  SUITE_NAMES,
  streamPathPayload,
  toHex,
  VERDICT_NAMES,
} from '@roamlink/core';
import type { UdpEndpoint, WsPathView } from '@roamlink/node';
import {
  allocUninitialized,
  arenaReads,
  corkedPipe,
  HttpRelayTransport,
  isHttpPath,
  isTcpPath,
  isWsPath,
  listenOn,
  MuxHost,
  nodeMuxWindows,
  nodeRandom,
  RELAY_HTTP_IDLE_MS,
  SessionDriver,
  TCP_MAX_DATAGRAM,
  TcpTransport,
  UDP_PAYLOAD_CEILING,
  UdpTransport,
  UP_BODY_DEADLINE_MS,
  WebSocketTransport,
  WS_MAX_PAYLOAD,
  WsCloseCode,
} from '@roamlink/node';
import { createRelayApp, type RelayAppDeps } from './app.ts';

/** The egress decision for one destination: an address to connect to, or a refusal. */
export type EgressAnswer = { address: string } | { refused: number; reason: string };

/** Streams one client may hold open when `maxStreams` is not given. */
const DEFAULT_MAX_STREAMS = 1024;

/**
 * A datagram flow's egress socket (SOCKS UDP ASSOCIATE on the client) closes after this long
 * without a datagram either way: the client ends an association without telling the relay, and
 * each one kept its socket until the session ended (200 associations, 200 sockets). Two minutes:
 * what RFC 4787 REQ-5 asks of a NAT's UDP mappings, which is the part the relay plays here.
 */
export const FLOW_IDLE_MS = 120_000;

interface EgressFlow {
  socket: UdpSocket;
  /** The last datagram either way (driver time). */
  usedAt: number;
}

export interface RelayOptions {
  keypair: Keypair;
  provider: CryptoProvider;
  suites: readonly Suite[];
  /** Listen addresses; undefined turns that listener off. */
  udp?: UdpEndpoint | undefined;
  tcp?: UdpEndpoint | undefined;
  http?: UdpEndpoint | undefined;
  /**
   * TLS on the HTTP port (https:// and wss://, PEM certificate chain and key): what a client
   * behind a firewall that passes only TLS on 443 needs. The SA inside does not depend on it.
   */
  tls?: { cert: string | Buffer; key: string | Buffer } | undefined;
  encapsulations?: readonly EncapsulationT[];
  authorize: (clientKey: Uint8Array) => Authorization;
  /** Resolves and checks a destination (DNS, then the policy on the address: no rebinding). */
  egress: (target: StreamTarget) => Promise<EgressAnswer>;
  rekeyAfterMs?: number;
  keyLog?: (info: SaKeyInfo) => void;
  log: (
    level: 'debug' | 'info' | 'warn' | 'error',
    msg: string,
    fields?: Record<string, unknown>,
  ) => void;
  /** Extra routes and data for the HTTP face (metrics, status). */
  app?: Partial<RelayAppDeps>;
  /** Called for every session event and mux event (metrics). */
  observe?: (e: RelayEvent<string> | (MuxEvent & { peer: string })) => void;
  streamWindow?: number;
  outageMs?: number;
  /** Every datagram's size as it arrives or leaves, by encapsulation (metrics). */
  onBytes?: (direction: 'in' | 'out', encapsulation: EncapsulationT, bytes: number) => void;
  /**
   * RTT samples (metrics): every `rttSampleMs`, each session whose stream layer had packets
   * acknowledged since the last look gives its smoothed RTT, with its current encapsulation.
   */
  onRtt?: (encapsulation: EncapsulationT, ms: number) => void;
  /** How often `onRtt` looks at the sessions (default 10 s). */
  rttSampleMs?: number;
  /**
   * Streams one client may hold open (default 1024); from 100 up, more wait (MAX_STREAMS). Its
   * datagram flows are bounded by the same number (the least recently used closes).
   */
  maxStreams?: number;
  /** A datagram flow's egress socket closes after this long without a datagram (FLOW_IDLE_MS). */
  flowIdleMs?: number;
  /** Connect timeout for egress TCP (default 10 s). */
  connectTimeoutMs?: number;
  /**
   * A client not heard from for this long is forgotten (RelaySessions.forgetIdle): its stream
   * layer, streams and egress sockets go. Default 10 minutes.
   */
  peerIdleMs?: number;
  /** Message 1s answered per second per source address (burst the same); 0 = no limit. */
  handshakeRate?: number;
}

/** What the relay keeps per client beside its RelayPeer: the stream layer and its egress. */
interface PeerTunnel {
  peer: RelayPeer<string>;
  host: MuxHost;
  lastPath: string | undefined;
  /** UDP egress sockets by flow, least recently used first (`datagramOut` re-inserts on use). */
  flows: Map<number, EgressFlow>;
  /** The peer's session this stream layer belongs to (RelayPeer.generation). */
  generation: number;
  /** The stream layer's packetsAcked when `onRtt` last looked (a fresh RTT needs new ACKs). */
  ackedAtRttSample: number;
}

export interface RelayHandle {
  publicKey: string;
  udp: UdpEndpoint | undefined;
  tcp: UdpEndpoint | undefined;
  http: UdpEndpoint | undefined;
  sessions: RelaySessions<string>;
  /** Live tunnels (clients with a stream layer), their open streams and stream-layer stats. */
  tunnels(): { peer: string; path: string | undefined; streams: number; stats: MuxStats }[];
  /** Test and operator hook: close the UDP listener (true: open it again on the same port). */
  setUdp(on: boolean): Promise<void>;
  /**
   * A new certificate and key for the HTTP port (a renewed certificate): new connections get it,
   * open ones keep theirs. Throws, changing nothing, when TLS is off or the pair is not valid.
   */
  setTls(tls: { cert: string | Buffer; key: string | Buffer }): void;
  /** Tells every client (GOAWAY), waits up to `graceMs` for streams to finish, then stops. */
  close(graceMs?: number): Promise<void>;
}

export async function startRelay(o: RelayOptions): Promise<RelayHandle> {
  const relay = new RelaySessions<string>({
    staticKeypair: o.keypair,
    provider: o.provider,
    suites: o.suites,
    random: nodeRandom,
    authorize: o.authorize,
    keyLog: o.keyLog !== undefined,
    ...(o.encapsulations ? { encapsulations: o.encapsulations } : {}),
    ...(o.handshakeRate === undefined
      ? {}
      : { handshakeRate: { perSecond: o.handshakeRate, burst: Math.max(1, o.handshakeRate) } }),
    ...(o.rekeyAfterMs
      ? { limits: { rekeyAfterMs: o.rekeyAfterMs, rejectAfterMs: o.rekeyAfterMs * 1.5 } }
      : {}),
  });
  const tunnels = new Map<string, PeerTunnel>();
  /** Per session: the streams the stream layer allows, and the datagram flows kept. */
  const maxStreams = o.maxStreams ?? DEFAULT_MAX_STREAMS;
  /** Each tunnel by the path its stream layer last moved to (PeerTunnel.lastPath). */
  const tunnelOnPath = new Map<string, PeerTunnel>();
  /** Moves a tunnel's `lastPath`, and its entry in tunnelOnPath (undefined: it goes). */
  const setLastPath = (t: PeerTunnel, p: string | undefined): void => {
    if (t.lastPath !== undefined && tunnelOnPath.get(t.lastPath) === t)
      tunnelOnPath.delete(t.lastPath);
    t.lastPath = p;
    if (p !== undefined) tunnelOnPath.set(p, t);
  };
  let udp: UdpTransport | undefined;
  let udpBind: UdpEndpoint | undefined;
  let closing = false;

  const bytes = o.onBytes;
  const sendOn = (path: string, data: Uint8Array): void => {
    if (isTcpPath(path)) {
      tcp.send(path, data);
      bytes?.('out', Encapsulation.TCP, data.length);
    } else if (isWsPath(path)) {
      ws.send(path, data);
      bytes?.('out', Encapsulation.WEBSOCKET, data.length);
    } else if (isHttpPath(path)) {
      httpT.send(path, data);
      const polling = httpT.mode(path) === 'poll';
      bytes?.('out', polling ? Encapsulation.HTTP_POLL : Encapsulation.HTTP_STREAM, data.length);
    } else if (udp) {
      udp.send(path, data);
      bytes?.('out', Encapsulation.UDP, data.length);
    }
  };
  const congested = (path: string): boolean =>
    isTcpPath(path)
      ? tcp.congested(path)
      : isWsPath(path)
        ? ws.congested(path)
        : isHttpPath(path) && httpT.congested(path);

  /**
   * A full transport queue emptied: the stream layer of the peer on that path, which held back
   * (canSend was false), goes on now instead of at its retry timer.
   */
  const drained = (path: string): void => {
    const t = tunnelOnPath.get(path);
    if (t && t.peer.path === path) t.host.pump();
  };

  /** Peers whose path may have moved since their stream layer last looked (checkPaths). */
  const pathsToCheck = new Set<string>();
  const driver = new SessionDriver<string, RelayEvent<string>>(relay, sendOn, (e) => {
    if (e.type === 'sa-keys') {
      o.keyLog?.(e.info);
      return;
    }
    pathsToCheck.add(e.peer.id);
    o.observe?.(e);
    o.log(
      e.type === 'path-changed' || e.type === 'registration-answered' ? 'debug' : 'info',
      e.type,
      {
        peer: e.peer.id.slice(0, 16),
        path: e.peer.path,
        // Names, not wire codes: an operator reads these (the status page says the same).
        ...('suite' in e ? { suite: SUITE_NAMES[e.suite] ?? e.suite } : {}),
        ...('verdict' in e ? { verdict: VERDICT_NAMES[e.verdict] ?? e.verdict } : {}),
        ...('encapsulation' in e
          ? { encapsulation: ENCAPSULATION_NAMES[e.encapsulation] ?? e.encapsulation }
          : {}),
        ...('chosen' in e ? { chosen: e.chosen } : {}),
        ...('reason' in e ? { reason: e.reason } : {}),
        ...('rekey' in e ? { rekey: e.rekey } : {}),
      },
    );
  });

  /**
   * A peer's path may have moved (an event about it, or a datagram from it): its stream layer
   * resends what the old path held. Only those peers are looked at, not every tunnel per packet.
   */
  const checkPaths = (): void => {
    for (const id of pathsToCheck) {
      const t = tunnels.get(id);
      const p = t?.peer.path;
      if (!t || p === undefined) continue;
      // A datagram path that did not move: nothing to fit (the common case, once per packet).
      if (p === t.lastPath && t.host.mux.pacing) continue;
      const ps = t.peer.paths.get(p);
      const enc = ps?.info?.encapsulation;
      const datagram = enc === Encapsulation.UDP || enc === undefined;
      // On a stream path, packets as large as both ends take (the client's RREQ says its side).
      const payload = datagram
        ? undefined
        : streamPathPayload(ps?.info?.maxDatagram, ps?.rreq?.maxDatagram);
      if (p === t.lastPath) {
        if (payload !== undefined && payload !== t.host.mux.maxPayload) {
          t.host.mux.setMaxPayload(payload);
          t.host.pump();
        }
        continue;
      }
      const first = t.lastPath === undefined;
      setLastPath(t, p);
      // On UDP each direction finds its own path MTU (RFC 8899).
      t.host.mux.usePath({
        datagram,
        changed: !first,
        now: driver.now(),
        datagramCeiling: UDP_PAYLOAD_CEILING,
        ...(payload !== undefined ? { streamPayload: payload } : {}),
      });
      t.host.pump();
    }
    pathsToCheck.clear();
  };

  const tunnelOf = (peer: RelayPeer<string>): PeerTunnel => {
    let t = tunnels.get(peer.id);
    if (t && t.generation === peer.generation) return t;
    // The client started over (a restart, a new handshake that is no rekey): its old streams
    // belong to a session that is gone.
    if (t) dropTunnel(t);
    const id = peer.id;
    const host: MuxHost = new MuxHost({
      mux: new Mux({
        role: 'relay',
        // Room for the ESP header and trailer: the SA seals each packet where the mux built it.
        reserve: { head: ESP_PAYLOAD_OFFSET, tail: ESP_TAIL_RESERVE },
        // Socket reads are never reused: the send buffer keeps them instead of copying.
        adoptWrites: true,
        // It writes every byte of a packet: no zero-filling of 60 000-byte buffers.
        alloc: allocUninitialized,
        now: Date.now(),
        ...nodeMuxWindows(o.streamWindow),
        ...(o.outageMs ? { outageMs: o.outageMs } : {}),
        // The client's streams beyond it wait for MAX_STREAMS (the client says so) rather than
        // being refused; the mux's floor is the 100 every client starts with, and below that
        // the check where a stream opens refuses the rest.
        maxStreams,
      }),
      canSend: () =>
        peer.keys.current !== undefined && peer.path !== undefined && !congested(peer.path),
      send: (payload, now) => {
        const pkt = relay.sendReserved(peer, payload, NextHeader.ROAMLINK, now);
        if (pkt && peer.path !== undefined) sendOn(peer.path, pkt);
        driver.pump();
      },
      onEvent: (e) => muxEvent(t!, e),
      onDatagram: (flow, target, data) => datagramOut(t!, flow, target, data),
    });
    t = {
      peer,
      host,
      lastPath: undefined,
      flows: new Map(),
      generation: peer.generation,
      ackedAtRttSample: 0,
    };
    tunnels.set(id, t);
    return t;
  };

  const muxEvent = (t: PeerTunnel, e: MuxEvent): void => {
    o.observe?.({ ...e, peer: t.peer.id });
    if (e.type === 'stream-open') void openEgress(t, e.id, e.target);
    else if (e.type === 'goaway') {
      // The client is leaving: its streams end now, not after the outage timeout.
      o.log('info', 'client-goaway', { peer: t.peer.id.slice(0, 16) });
      dropTunnel(t);
    } else if (e.type === 'dead') {
      o.log('warn', 'tunnel-dead', { peer: t.peer.id.slice(0, 16), silentMs: e.silentMs });
      dropTunnel(t);
    }
  };

  const dropTunnel = (t: PeerTunnel): void => {
    const m = t.host.mux.stats;
    o.log('debug', 'tunnel-closed', {
      peer: t.peer.id.slice(0, 16),
      packetsSent: m.packetsSent,
      packetsLost: m.packetsLost,
      retransmittedBytes: m.streamBytesRetransmitted,
      ptos: m.ptos,
      congestionReductions: m.congestionReductions,
      rttMs: m.rttMs,
      cwnd: m.cwnd,
    });
    t.host.close();
    setLastPath(t, undefined);
    for (const f of t.flows.values()) f.socket.close();
    t.flows.clear();
    tunnels.delete(t.peer.id);
  };

  /** A stream the client opened: policy, then a TCP connection, then bytes both ways. */
  const openEgress = async (t: PeerTunnel, id: number, target: StreamTarget): Promise<void> => {
    const d = t.host.stream(id);
    if (!d) return;
    const refuse = (code: number, reason: string): void => {
      o.log('info', 'stream-refused', {
        peer: t.peer.id.slice(0, 16),
        target: `${target.host}:${target.port}`,
        code,
        reason,
      });
      o.observe?.({ type: 'stream-refused', id, code, peer: t.peer.id });
      t.host.refuse(id, code);
    };
    if (closing) return refuse(StreamError.SHUTDOWN, 'relay shutting down');
    if (t.host.streams > maxStreams) return refuse(StreamError.LIMIT, 'too many streams');
    const decision = await o.egress(target);
    if ('refused' in decision) return refuse(decision.refused, decision.reason);
    const sock = tcpConnect({
      host: decision.address,
      port: target.port,
      noDelay: true,
      timeout: o.connectTimeoutMs ?? 10_000,
      // Up to 256 KiB per read, handed to the stream as views (it keeps them until acknowledged);
      // false pauses the socket until the stream drains.
      onread: arenaReads((data) => {
        if (d.destroyed) {
          sock.destroy();
          return false;
        }
        return d.write(data);
      }),
    });
    let connected = false;
    sock.once('timeout', () => {
      if (!connected)
        sock.destroy(Object.assign(new Error('connect timeout'), { code: 'ETIMEDOUT' }));
    });
    sock.on('error', (err: NodeJS.ErrnoException) => {
      if (!connected) refuse(errnoToStreamError(err.code), err.code ?? err.message);
      else d.destroy(err);
    });
    sock.once('connect', () => {
      connected = true;
      sock.setTimeout(0);
      t.host.accept(id);
      o.log('debug', 'stream-open', {
        peer: t.peer.id.slice(0, 16),
        target: `${target.host}:${target.port}`,
        address: decision.address,
      });
      d.on('drain', () => sock.resume());
      sock.once('end', () => d.end());
      // Many small chunks per loop turn come out of the tunnel: corked, they leave in one writev.
      corkedPipe(d, sock);
      d.on('error', () => sock.destroy());
      sock.on('close', () => {
        if (!d.writableEnded) d.destroy();
      });
    });
  };

  /**
   * A datagram for a UDP destination: one socket per flow, the policy for every destination. A
   * session keeps at most its stream limit of flows: a new one beyond closes the least recently
   * used (the sweep closes idle ones, FLOW_IDLE_MS).
   */
  const datagramOut = (
    t: PeerTunnel,
    flow: number,
    target: StreamTarget,
    data: Uint8Array,
  ): void => {
    const copy = data.slice();
    void o.egress(target).then((decision) => {
      if ('refused' in decision || tunnels.get(t.peer.id) !== t) return;
      let f = t.flows.get(flow);
      if (f) {
        // Least recently used first: to the end of the map.
        t.flows.delete(flow);
      } else {
        if (t.flows.size >= maxStreams) closeFlow(t, t.flows.keys().next().value!, 'limit');
        const socket = createSocket({ type: decision.address.includes(':') ? 'udp6' : 'udp4' });
        socket.on('error', () => {});
        const entry: EgressFlow = { socket, usedAt: 0 };
        socket.on('message', (msg, rinfo) => {
          entry.usedAt = driver.now();
          t.host.mux.sendDatagram(flow, { host: rinfo.address, port: rinfo.port }, msg);
          t.host.pump();
        });
        f = entry;
      }
      f.usedAt = driver.now();
      t.flows.set(flow, f);
      f.socket.send(copy, target.port, decision.address);
    });
  };

  const closeFlow = (t: PeerTunnel, flow: number, reason: 'idle' | 'limit'): void => {
    const f = t.flows.get(flow);
    if (!f) return;
    t.flows.delete(flow);
    f.socket.close();
    o.log('debug', 'flow-closed', { peer: t.peer.id.slice(0, 16), flow, reason });
  };

  /** One datagram from any transport, with what the relay observed about its path. */
  const deliver = (data: Uint8Array, path: string, info: PathInfo): void => {
    bytes?.('in', info.encapsulation, data.length);
    const now = driver.now();
    const got = relay.receive(data, path, now, info);
    if (got) pathsToCheck.add(got.peer.id);
    if (got && got.nextHeader === NextHeader.ROAMLINK && got.payload.length > 0) {
      const t = tunnelOf(got.peer);
      if (t.host.mux.isMuxFrame(got.payload)) {
        t.host.receive(got.payload);
      } else if (got.payload[0] === FrameType.ECHO_REQUEST) {
        try {
          decodeEcho(got.payload);
          const pkt = relay.send(got.peer, echoReplyInPlace(got.payload), NextHeader.ROAMLINK, now);
          if (pkt && got.peer.path !== undefined) sendOn(got.peer.path, pkt);
        } catch {
          // A malformed frame inside an authentic packet: the peer's bug; drop it.
        }
      }
    }
    driver.pump();
    checkPaths();
  };

  // What the relay observed of a path is built once per connection or sender, not per packet:
  // keyed by the transport's own object for it, which lives as long as the path does.
  const infos = new WeakMap<object, PathInfo>();
  const infoOf = (key: object, make: () => PathInfo): PathInfo => {
    let info = infos.get(key);
    if (!info) {
      info = make();
      infos.set(key, info);
    }
    return info;
  };

  const bindUdp = async (bind: UdpEndpoint): Promise<UdpTransport> => {
    const u = await UdpTransport.bind(bind, (data, path, from) => {
      deliver(
        data,
        path,
        infoOf(from, () => {
          const local = u.local;
          return {
            encapsulation: Encapsulation.UDP,
            view: {
              srcAddr: from.address,
              srcPort: from.port,
              dstAddr: local.address,
              dstPort: local.port,
            },
          };
        }),
      );
    });
    return u;
  };
  if (o.udp) {
    udp = await bindUdp(o.udp);
    udpBind = udp.local;
  }

  const tcp = new TcpTransport({
    onDatagram: (data, path) => {
      const ends = tcp.endpoints(path);
      if (!ends) return;
      deliver(
        data,
        path,
        infoOf(ends.remote, () => ({
          encapsulation: Encapsulation.TCP,
          view: {
            srcAddr: ends.remote.address,
            srcPort: ends.remote.port,
            dstAddr: ends.local.address,
            dstPort: ends.local.port,
          },
          maxDatagram: TCP_MAX_DATAGRAM,
        })),
      );
    },
    onPathClose: (path, reason) => o.log('debug', 'tcp-closed', { path, reason }),
    onDrain: (path) => drained(path),
    maxDatagram: TCP_MAX_DATAGRAM,
  });
  const tcpLocal = o.tcp ? await tcp.listen(o.tcp.address, o.tcp.port) : undefined;

  const ws = new WebSocketTransport({
    onDatagram: (data, path) => {
      const v = ws.view(path);
      if (!v) return;
      deliver(
        data,
        path,
        infoOf(v, () => ({
          encapsulation: Encapsulation.WEBSOCKET,
          view: requestView(v),
          maxDatagram: WS_MAX_PAYLOAD,
        })),
      );
    },
    onPathClose: (path, reason) => o.log('debug', 'ws-closed', { path, reason }),
    onDrain: (path) => drained(path),
  });
  const httpT = new HttpRelayTransport({
    onDatagram: (data, path, v) => {
      deliver(data, path, {
        // A streaming path that fell back (a proxy buffered it) keeps its id but polls now.
        encapsulation: v.mode === 'poll' ? Encapsulation.HTTP_POLL : Encapsulation.HTTP_STREAM,
        view: requestView(v),
      });
    },
    onPathClose: (path, reason) => o.log('debug', 'http-closed', { path, reason }),
  });

  const startedAt = Date.now();
  const app = createRelayApp({
    now: Date.now,
    startedAt,
    sessions: () => relay.peers.size,
    ...o.app,
  });
  const honoListener = getRequestListener(app.fetch);
  let server: Server | undefined;
  let httpLocal: UdpEndpoint | undefined;
  if (o.http) {
    const onRequest = (req: IncomingMessage, res: ServerResponse): void => {
      if (httpT.handle(req, res)) return;
      // The server has no whole-request deadline (below): the hono app's requests get the one a
      // POST to the tunnel has.
      const deadline = setTimeout(() => {
        if (!req.complete) req.destroy();
      }, UP_BODY_DEADLINE_MS);
      deadline.unref();
      req.once('close', () => clearTimeout(deadline));
      void honoListener(req, res);
    };
    const s: Server = o.tls
      ? createHttpsServer(
          { cert: o.tls.cert, key: o.tls.key, ALPNProtocols: ['http/1.1'] },
          onRequest,
        )
      : createServer(onRequest);
    s.keepAliveTimeout = RELAY_HTTP_IDLE_MS;
    // No deadline for a whole request: the HTTP up-stream's body never ends (a POST's body has
    // its own, UP_BODY_DEADLINE_MS); headersTimeout still bounds every head.
    s.requestTimeout = 0;
    server = s;
    ws.attach(s);
    httpLocal = await listenOn(s, o.http.address, o.http.port);
  }

  // Clients gone without a word (no GOAWAY: a closed lid, a lost network) are forgotten once
  // silent for peerIdleMs: without it their egress sockets stayed open and their sessions counted
  // against the session limit for ever. Live clients with open streams send keepalives.
  const peerIdleMs = o.peerIdleMs ?? 600_000;
  const flowIdleMs = o.flowIdleMs ?? FLOW_IDLE_MS;
  const sweep = setInterval(
    () => {
      const now = driver.now();
      for (const t of tunnels.values()) {
        for (const [flow, f] of t.flows)
          if (now - f.usedAt >= flowIdleMs) closeFlow(t, flow, 'idle');
      }
      for (const peer of relay.forgetIdle(now, peerIdleMs)) {
        const t = tunnels.get(peer.id);
        o.log('info', 'peer-forgotten', {
          peer: peer.id.slice(0, 16),
          silentMs: driver.now() - peer.lastSeen,
          streams: t?.host.streams ?? 0,
        });
        if (t) dropTunnel(t);
      }
    },
    Math.min(30_000, Math.max(250, Math.min(peerIdleMs, flowIdleMs) / 4)),
  );
  sweep.unref();

  const onRtt = o.onRtt;
  const rttSampler = onRtt
    ? setInterval(() => {
        for (const t of tunnels.values()) {
          const m = t.host.mux.stats;
          if (!m.rttSampled || m.packetsAcked === t.ackedAtRttSample) continue;
          t.ackedAtRttSample = m.packetsAcked;
          const p = t.peer.path;
          const enc = p === undefined ? undefined : t.peer.paths.get(p)?.info?.encapsulation;
          if (enc !== undefined) onRtt(enc, m.rttMs);
        }
      }, o.rttSampleMs ?? 10_000)
    : undefined;
  rttSampler?.unref();

  return {
    publicKey: toHex(o.keypair.publicKey),
    udp: udpBind,
    tcp: tcpLocal,
    http: httpLocal,
    sessions: relay,
    tunnels: () =>
      [...tunnels.values()].map((t) => ({
        peer: t.peer.id,
        path: t.peer.path,
        streams: t.host.streams,
        stats: t.host.mux.stats,
      })),
    async setUdp(on: boolean): Promise<void> {
      if (!udpBind) return;
      if (!on && udp) {
        const u = udp;
        udp = undefined;
        await u.close();
        o.log('info', 'udp-closed', {});
      } else if (on && !udp) {
        udp = await bindUdp(udpBind);
        o.log('info', 'udp-opened', {});
      }
    },
    setTls(tls): void {
      if (!o.tls || !server)
        throw new Error('the relay serves no TLS (start it with a certificate)');
      // The server's other TLS options (ALPN) stay as they were.
      (server as unknown as HttpsServer).setSecureContext({ cert: tls.cert, key: tls.key });
    },
    async close(graceMs = 0): Promise<void> {
      closing = true;
      clearInterval(sweep);
      clearInterval(rttSampler);
      for (const t of tunnels.values()) {
        t.host.mux.goAway(StreamError.SHUTDOWN);
        t.host.pump();
      }
      const until = Date.now() + graceMs;
      while (Date.now() < until && [...tunnels.values()].some((t) => t.host.streams > 0)) {
        await new Promise((r) => setTimeout(r, 50));
      }
      for (const t of [...tunnels.values()]) dropTunnel(t);
      driver.close();
      httpT.close();
      await Promise.all([
        udp?.close(),
        tcp.close(),
        ws.close(WsCloseCode.RELAY_SHUTDOWN, 'relay shutting down'),
      ]);
      if (server) {
        server.closeAllConnections();
        await new Promise<void>((resolve) => server!.close(() => resolve()));
      }
    },
  };
}

/**
 * What the relay observed on a WebSocket or HTTP path: the socket's two ends and the request as
 * it arrived (a proxy shows in its headers).
 */
function requestView(v: WsPathView): OuterView {
  return {
    srcAddr: v.remote.address,
    srcPort: v.remote.port,
    dstAddr: v.local.address,
    dstPort: v.local.port,
    url: v.url,
    ...(v.host === undefined ? {} : { host: v.host }),
    headers: v.headers,
  };
}

/** A failed egress connect, as the client will hear it (and SOCKS will say it). */
export function errnoToStreamError(code: string | undefined): number {
  switch (code) {
    case 'ECONNREFUSED':
      return StreamError.REFUSED;
    case 'EHOSTUNREACH':
    case 'ENETUNREACH':
    case 'EADDRNOTAVAIL':
      return StreamError.UNREACHABLE;
    case 'ETIMEDOUT':
      return StreamError.TIMEOUT;
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
      return StreamError.DNS;
    default:
      return StreamError.INTERNAL;
  }
}

export const encapsulationName = (e: EncapsulationT): string => ENCAPSULATION_NAMES[e];
