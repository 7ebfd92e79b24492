/**
 * The relay's side of all five encapsulations at once on one host: UDP and TCP on their own ports,
 * WebSocket and both HTTP encapsulations on one HTTP port (issue 4's layout), each datagram handed
 * up with its path id and what the relay observed on that path.
 *
 * Path ids: "udp:<addr>:<port>" (the remote endpoint as seen), "tcp:<n>" and "ws:<n>" (one per
 * connection), "hs:<token>" and "hp:<token>" (one per HTTP session).
 */
import { Encapsulation, type PathInfo } from '@roamlink/core';
import {
  type Host,
  type HttpHandler,
  type HttpResponder,
  type HttpServerRequest,
  serveConnection,
  type TcpConnection,
  type TcpListener,
} from '@roamlink/netsim';
import { DEFAULT_MAX_POLL_BYTES, DEFAULT_POLL_HOLD_MS, handlePoll } from './http-poll.ts';
import { HttpSessionTable, observedView, onConnectionGone } from './http-session.ts';
import { handleStreamDown } from './http-stream.ts';
import { TcpRelay } from './tcp.ts';
import {
  DEFAULT_BASE_PATH,
  DEFAULT_MAX_QUEUED_BYTES,
  RELAY_PORTS,
  type SimRelayEndpoint,
  type SimRelayStats,
} from './types.ts';
import { UdpRelay } from './udp.ts';
import { WebSocketRelay } from './websocket.ts';

export interface RelayOptions {
  /** Listen on this address only (default every address of the host). */
  readonly addr?: string;
  /** Ports (default RELAY_PORTS: UDP 4500, TCP 443, HTTP 80); null leaves one out. */
  readonly udpPort?: number | null;
  readonly tcpPort?: number | null;
  readonly httpPort?: number | null;
  /** Path prefix of the HTTP endpoints (default "/rl"). */
  readonly basePath?: string;
  /** Per path, bytes waiting for the client (TCP/WebSocket unacknowledged, HTTP queued). */
  readonly maxQueuedBytes?: number;
  /** HTTP streaming heartbeat (an empty record) while the stream is open (default 15 s). */
  readonly streamHeartbeatMs?: number;
  /** Long polling: how long a poll is held without data (default 25 s). */
  readonly pollHoldMs?: number;
  /** Long polling: largest answer body, also of a POST's answer (default 65 536 bytes). */
  readonly maxPollBytes?: number;
  /** HTTP sessions with no request and no down channel are forgotten after this (default 60 s). */
  readonly sessionIdleMs?: number;
  /**
   * HTTP streaming: copies of what was written to a stream are kept until the client shows that
   * the stream flows, or at most this long (default 10 s).
   */
  readonly streamTrustMs?: number;
  /** Requests outside the base path (health, status pages); default 404. */
  readonly fallback?: HttpHandler;
}

class Relay implements SimRelayEndpoint {
  onDatagram: (datagram: Uint8Array, pathId: string, info: PathInfo) => void = () => {};
  onPathClose: (pathId: string, reason: string) => void = () => {};
  readonly stats: SimRelayStats = {
    datagramsReceived: 0,
    datagramsSent: 0,
    keepalivesReceived: 0,
    tcpRejected: 0,
    httpRejected: 0,
    wsProtocolErrors: 0,
  };
  readonly udp: UdpRelay | undefined;
  readonly tcp: TcpRelay | undefined;
  readonly ws: WebSocketRelay;
  readonly sessions: HttpSessionTable;
  readonly httpListener: TcpListener | undefined;
  /** Accepted HTTP connections, closed with the relay (keep-alive ones would outlive it). */
  readonly #httpConns = new Set<TcpConnection>();
  #closed = false;

  constructor(host: Host, o: RelayOptions) {
    const maxQueued = o.maxQueuedBytes ?? DEFAULT_MAX_QUEUED_BYTES;
    // Nothing surfaces once the relay is closed, whatever is still in flight.
    const up = (d: Uint8Array, id: string, info: PathInfo) => {
      if (!this.#closed) this.onDatagram(d, id, info);
    };
    const gone = (id: string, reason: string) => {
      if (!this.#closed) this.onPathClose(id, reason);
    };
    const udpPort = o.udpPort === undefined ? RELAY_PORTS.udp : o.udpPort;
    const tcpPort = o.tcpPort === undefined ? RELAY_PORTS.tcp : o.tcpPort;
    const httpPort = o.httpPort === undefined ? RELAY_PORTS.http : o.httpPort;
    if (udpPort !== null) {
      this.udp = new UdpRelay(host, udpPort, this.stats, o.addr);
      this.udp.onDatagram = up;
    }
    if (tcpPort !== null) {
      const t = new TcpRelay(host, tcpPort, this.stats, {
        ...(o.addr === undefined ? {} : { addr: o.addr }),
        maxBufferedBytes: maxQueued,
      });
      t.onDatagram = up;
      t.onPathClose = gone;
      this.tcp = t;
    }
    this.ws = new WebSocketRelay(this.stats, { maxBufferedBytes: maxQueued });
    this.ws.onDatagram = up;
    this.ws.onPathClose = gone;
    this.sessions = new HttpSessionTable(host, this.stats, {
      maxQueuedBytes: maxQueued,
      maxAnswerBytes: o.maxPollBytes ?? DEFAULT_MAX_POLL_BYTES,
      ...(o.sessionIdleMs === undefined ? {} : { sessionIdleMs: o.sessionIdleMs }),
      ...(o.streamTrustMs === undefined ? {} : { streamTrustMs: o.streamTrustMs }),
    });
    this.sessions.onDatagram = up;
    this.sessions.onPathClose = gone;
    if (httpPort !== null) {
      const handler = this.#router(o);
      const accept = (c: TcpConnection) => {
        this.#httpConns.add(c);
        serveConnection(c, handler);
        onConnectionGone(c, () => this.#httpConns.delete(c));
      };
      this.httpListener = host.listen(
        httpPort,
        accept,
        o.addr === undefined ? {} : { addr: o.addr },
      );
    }
  }

  #router(o: RelayOptions): HttpHandler {
    const base = o.basePath ?? DEFAULT_BASE_PATH;
    const heartbeat = o.streamHeartbeatMs ?? 15_000;
    const poll = {
      holdMs: o.pollHoldMs ?? DEFAULT_POLL_HOLD_MS,
      maxBytes: o.maxPollBytes ?? DEFAULT_MAX_POLL_BYTES,
    };
    return (req: HttpServerRequest, res: HttpResponder) => {
      const t = req.head.target;
      const q = t.indexOf('?');
      const path = q < 0 ? t : t.slice(0, q);
      const m = req.head.method;
      const info = (encapsulation: Encapsulation): PathInfo => ({
        encapsulation,
        view: observedView(req),
      });
      if (path === `${base}/ws`) return this.ws.handle(req, res, info(Encapsulation.WEBSOCKET));
      // The session decides what a POST's datagrams arrive as (a stream may have become polled).
      if (path === `${base}/up` && m === 'POST')
        return this.sessions.handleUp(req, res, observedView(req));
      if (path === `${base}/down` && m === 'GET') {
        return handleStreamDown(this.sessions, req, res, heartbeat);
      }
      if (path === `${base}/poll` && m === 'GET') return handlePoll(this.sessions, req, res, poll);
      const ours = [`${base}/up`, `${base}/down`, `${base}/poll`].includes(path);
      if (!ours && !path.startsWith(`${base}/`) && o.fallback !== undefined) {
        return o.fallback(req, res);
      }
      this.sessions.reject(res, ours ? 405 : 404);
    };
  }

  send(pathId: string, datagram: Uint8Array): boolean {
    if (this.#closed) return false;
    const c = pathId.indexOf(':');
    switch (pathId.slice(0, c)) {
      case 'udp':
        return this.udp?.send(pathId, datagram) ?? false;
      case 'tcp':
        return this.tcp?.send(pathId, datagram) ?? false;
      case 'ws':
        return this.ws.send(pathId, datagram);
      case 'hs':
      case 'hp':
        return this.sessions.send(pathId, datagram);
      default:
        return false;
    }
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.udp?.close();
    this.tcp?.close();
    this.httpListener?.close();
    // Close frames and last answers first, then the connections, reading nothing more.
    this.ws.close();
    this.sessions.close();
    for (const c of this.#httpConns) {
      c.onData = undefined;
      c.close();
    }
    this.#httpConns.clear();
  }
}

/** Starts all five encapsulations' listeners on `host`. */
export function listenRelay(host: Host, opts: RelayOptions = {}): SimRelayEndpoint {
  return new Relay(host, opts);
}
