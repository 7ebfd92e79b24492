/**
 * ESP over plain HTTP/1.1 (RFC 9112) on Node: the simulator's "RLHTTP/1" wire format, byte for
 * byte (packages/sim/README.md, "HTTP streaming and HTTP long polling"). Bodies carry records,
 * RFC 8229 §3's framing (tcp.ts): a 16-bit length that counts itself, then one datagram.
 *
 * Upstream, both modes: `POST <base>/up?s=<token>&m=<stream|poll>`, a body of records, answered
 * 204. The client keeps one POST in flight per path and batches what is sent meanwhile into the
 * next, so a new path costs no round trip of its own: the first POST leaves with the first
 * datagrams.
 *
 * Downstream, streaming: one `GET <base>/down?s=<token>` whose chunked response stays open; the
 * relay writes the stream-open marker (an empty record) at once, then records, and a heartbeat.
 * The relay numbers what it queues for a streaming session (`Roamlink-Seq` on the stream's 200
 * names the next record's number).
 *
 * Buffering proxies cost no round trip. A proxy that buffers whole responses holds the stream
 * back; until the client sees a byte of it, each of its requests carries `Roamlink-Ack: <n>` (it
 * holds every datagram numbered below n), and the relay keeps copies of what it wrote to the
 * stream and answers that client's POSTs with 200 and the copies from n on (`Roamlink-Seq` names
 * the first). So the handshake's answer comes back with the POST that carried the handshake,
 * stream or no stream; the client delivers each number once. When no body byte arrived within
 * clamp(1.5 × first POST's answer time, 100 ms, 3 s) of the GET leaving, the same path (same
 * token, same path id) falls back to long polling on that token, still with `Roamlink-Ack`: the
 * relay ends the stream, queues the copies from n on again, and from then on hands the path's
 * datagrams up as HTTP polling (`mode` in the view); the client reports the change
 * (`onModeChange`) so that its owner registers the path again.
 *
 * Downstream, long polling: `GET <base>/poll?s=<token>` held until a datagram is queued (200, a
 * Content-Length body of records) or 25 s pass (204); the client asks again at once. Every answer
 * is complete, so it works through buffering proxies.
 *
 * The relay side handles these routes on the relay's Node HTTP server before its hono app sees
 * the request (`handle` returns false for anything outside `<base>/`). One token is one path,
 * "hs:<token>" or "hp:<token>"; datagrams for the client wait in a bounded queue until the down
 * request takes them; a session with no down request and no request for 60 s is forgotten.
 */
import { randomBytes } from 'node:crypto';
import {
  Agent,
  type ClientRequest,
  request as httpRequest,
  type IncomingMessage,
  type ServerResponse,
} from 'node:http';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';
import type { NetConnectOpts, Socket } from 'node:net';
import {
  type BufferDetect,
  batchCount,
  bufferDetect,
  bufferWaitMs,
  decodeRecords,
  EMPTY_RECORD,
  encodeRecords,
  type HttpDown,
  HttpMode,
  type HttpSession,
  HttpSessions,
  HttpStreamOrder,
  isSessionToken,
  MAX_RECORD_DATAGRAM_BYTES,
  RecordReader,
  recordPieces,
  seqField,
} from '@roamlink/core';
import { unbracket } from './host.ts';
import { HttpUplink, type HttpUplinkOptions } from './http-uplink.ts';
import { HttpUpstream } from './http-upstream.ts';
import {
  isProxyError,
  ProxyAgent,
  type ProxyConfig,
  parseProxyUrl,
  proxyAuthorization,
} from './proxy.ts';
import { forwardSendsBasic, noteForwardRefusal } from './proxy-auth.ts';
import { connectWithArena } from './read-arena.ts';
import { writeRecordChunk } from './record-chunk.ts';
import { type RelayTls, relayTlsOptions } from './relay-tls.ts';
import { DEFAULT_MAX_QUEUED_BYTES } from './tcp.ts';
import type { UdpEndpoint } from './udp.ts';
import type { WsPathView } from './websocket.ts';

/** The base of every RLHTTP/1 route (the WebSocket encapsulation is `<base>/ws`). */
export const HTTP_BASE = '/rl';
/**
 * Records per POST body or poll answer, unless one datagram is larger: 960 KiB, under the 1 MiB a
 * relay reads and the 1 MiB body limit of common front ends (nginx's default). A POST path moves
 * one batch per round trip, so the bound is its throughput: 64 KiB gave ~1.1 MB/s over a 50 ms
 * round trip. What is queued leaves in order either way, so a larger batch never makes a packet
 * queued behind it wait longer.
 */
export const DEFAULT_MAX_BATCH_BYTES = 960 * 1024;
/** The largest request body the relay reads (a batch plus slack); larger gets 413. */
export const MAX_UP_BODY_BYTES = 1 << 20;
export const DEFAULT_HEARTBEAT_MS = 15_000;
/**
 * How long the relay's HTTP server keeps an idle connection (its `keepAliveTimeout`; Node's own
 * default is 5 s). Longer than the client's keepalive interval (30 s while streams are open), so
 * the POSTs of a quiet session keep their connection: after a pause, the next keystroke's POST
 * would otherwise wait for a new connection, through a proxy a new CONNECT tunnel too, one or two
 * round trips.
 */
export const RELAY_HTTP_IDLE_MS = 65_000;
export const DEFAULT_POLL_HOLD_MS = 25_000;
export const DEFAULT_SESSION_IDLE_MS = 60_000;
/** A stream open this long counts as flowing even if its client never said so; copies go. */
export const DEFAULT_STREAM_TRUST_MS = 10_000;

/**
 * Request field of a streaming client that has not (yet) seen a byte of its stream: how many of
 * the session's numbered datagrams it holds (all those numbered below).
 */
export const ACK_HEADER = 'Roamlink-Ack';
/** Response field: the number of the first datagram in this body (stream, POST and poll answers). */
export const SEQ_HEADER = 'Roamlink-Seq';
/** Request field: the session routing id (docs/PROTOCOL.md §7.5); this relay ignores it. */
const SESSION_HEADER = 'Roamlink-Session';
/**
 * Request field of the streaming upload (the up-stream): `Roamlink-Stream: up` on a chunked
 * `POST <base>/up` whose body stays open and carries records as they are sent.
 */
export const STREAM_HEADER = 'Roamlink-Stream';
/**
 * The longest a POST's body may take to arrive (the up-stream's excepted, which never ends). The
 * relay's server has no request deadline of its own (`requestTimeout` 0: it would cut the
 * up-stream), so a body that trickles is cut here.
 */
export const UP_BODY_DEADLINE_MS = 60_000;

/**
 * CORS (the Fetch standard's): a page from any origin may use these routes, without credentials
 * (`*`), and read `Roamlink-Seq`. Every answer under the base carries these fields; an OPTIONS
 * preflight for a known route is answered 204 with the methods and the request fields a client
 * sends (Content-Type, Roamlink-Ack, Roamlink-Session as the Workers relay allows it), cached
 * for 10 minutes. The WebSocket route checks no Origin either: any page may connect; the Noise
 * handshake, not the origin, authenticates a client.
 */
export const CORS_HEADERS: readonly [string, string][] = [
  ['Access-Control-Allow-Origin', '*'],
  ['Access-Control-Expose-Headers', SEQ_HEADER],
];
const PREFLIGHT_HEADERS: readonly [string, string][] = [
  ['Access-Control-Allow-Methods', 'GET, POST'],
  ['Access-Control-Allow-Headers', `Content-Type, ${ACK_HEADER}, ${SESSION_HEADER}, Cache-Control`],
  ['Access-Control-Max-Age', '600'],
];

export { HttpMode, isSessionToken, seqField };

/** Path-error reasons, stable prefixes (detail after ": "), as the simulator names them. */
export const HttpPathError = {
  CLOSED: 'closed',
  HTTP_STATUS: 'http-status',
  HTTP_ERROR: 'http-error',
  PROTOCOL: 'protocol',
  /**
   * Reserved: a streaming client whose stream is buffered falls back to polling by itself
   * (`onModeChange`) instead of failing.
   */
  BUFFERED: 'buffered',
} as const;

export const isHttpStreamPath = (path: string): boolean => path.startsWith('hs:');
export const isHttpPollPath = (path: string): boolean => path.startsWith('hp:');
export const isHttpPath = (path: string): boolean => isHttpStreamPath(path) || isHttpPollPath(path);

/**
 * A path's view (the same shape as a WebSocket path's: socket ends, request target, Host,
 * headers), plus what the path's datagrams travel as now: "stream", or "poll" (a polling path,
 * or a streaming path that fell back to polling; its id keeps the "hs:" prefix).
 */
export interface HttpPathView extends WsPathView {
  mode: HttpMode;
}

const endpointOf = (address: string | undefined, port: number | undefined): UdpEndpoint => ({
  address: (address ?? '').replace(/^::ffff:(?=\d+\.)/, ''),
  port: port ?? 0,
});

// ---- relay ----

export interface HttpRelayOptions {
  /**
   * Every datagram that arrives, with its path id and the view of the POST that carried it;
   * `view.mode` says what it arrives as (a streaming session that fell back says "poll").
   */
  onDatagram: (datagram: Uint8Array, pathId: string, view: HttpPathView) => void;
  /** A session expired (reason "closed: session expired"). */
  onPathClose?: (pathId: string, reason: string) => void;
  /** Bytes of datagrams waiting for the client per session (default 1 MiB); copies as much again. */
  maxQueuedBytes?: number;
  /** Forget a session with no down request and no request for this long (default 60 s). */
  sessionIdleMs?: number;
  /** Empty record on an idle stream this often (default 15 s). */
  heartbeatMs?: number;
  /** Answer a poll 204 after holding it this long (default 25 s). */
  pollHoldMs?: number;
  /** Records per poll answer, also per POST answer (default 960 KiB, at least one datagram). */
  maxPollBytes?: number;
  /**
   * Streaming: copies of what was written to a stream are kept until the client shows that the
   * stream flows, or for at most this long after it opened (default 10 s).
   */
  streamTrustMs?: number;
  /** The routes' base (default "/rl"). */
  base?: string;
  /** A POST's body must arrive within this (default UP_BODY_DEADLINE_MS); else the connection goes. */
  upBodyDeadlineMs?: number;
}

export interface HttpRelayStats {
  /** Requests answered 4xx (bad token, route, method, body, mode, Roamlink-Ack). */
  rejected: number;
  datagramsSent: number;
  datagramsReceived: number;
  /** Datagrams `send` refused because the session's queue was full. */
  queueDrops: number;
  sessionsExpired: number;
  /** Streaming sessions whose client fell back to polling. */
  fallbacks: number;
  /** Up-streams opened (answered 200). */
  upstreams: number;
}

/**
 * Writes pieces as one chunk of a chunked response, in one system call. A corked ServerResponse
 * gathers a chunk's pieces, but its uncork() uncorks the socket first and then writes the size
 * line, the pieces and the CRLF one by one: four writes for a small record, and the client woken
 * for the first few bytes. Corking the socket too holds them all until it is uncorked here.
 */
export function writeChunk(res: ServerResponse, pieces: Iterable<Uint8Array>): void {
  const socket = res.socket;
  socket?.cork();
  res.cork();
  for (const p of pieces) res.write(p);
  res.uncork();
  socket?.uncork();
}

/**
 * A failed request's error in a path failure: its code (a socket's ECONNRESET), and for a
 * proxy's refusal what the proxy said too (its scheme, whether credentials went), which the code
 * alone does not tell.
 */
function errorText(e: Error): string {
  const code = (e as NodeJS.ErrnoException).code;
  if (code === undefined) return e.message;
  return isProxyError(e) ? `${code}: ${e.message}` : code;
}

/** Request headers as [lower-case name, value] pairs, in arrival order, repeats kept. */
function headerPairs(req: IncomingMessage): [string, string][] {
  const out: [string, string][] = [];
  const raw = req.rawHeaders;
  for (let i = 0; i + 1 < raw.length; i += 2) out.push([raw[i]!.toLowerCase(), raw[i + 1]!]);
  return out;
}

/** The relay's view of one request: the peer (the proxy's, when proxied), itself, target, fields. */
function observedView(req: IncomingMessage, mode: HttpMode): HttpPathView {
  const s = req.socket;
  return {
    local: endpointOf(s.localAddress, s.localPort),
    remote: endpointOf(s.remoteAddress, s.remotePort),
    url: req.url ?? '',
    host: req.headers.host,
    headers: headerPairs(req),
    mode,
  };
}

/** Path and query of a target in origin or absolute form (a forward proxy sends the latter). */
function splitTarget(target: string): { path: string; query: URLSearchParams } {
  let t = target;
  if (!t.startsWith('/')) {
    try {
      const u = new URL(t);
      t = u.pathname + u.search;
    } catch {
      return { path: '', query: new URLSearchParams() };
    }
  }
  const q = t.indexOf('?');
  return {
    path: q < 0 ? t : t.slice(0, q),
    query: new URLSearchParams(q < 0 ? '' : t.slice(q + 1)),
  };
}

export class HttpRelayTransport {
  readonly stats: HttpRelayStats = {
    rejected: 0,
    datagramsSent: 0,
    datagramsReceived: 0,
    queueDrops: 0,
    sessionsExpired: 0,
    fallbacks: 0,
    upstreams: 0,
  };
  readonly #o: HttpRelayOptions;
  /** Each session's up-stream, if it has one (a newer one ends the older). */
  readonly #upstreams = new Map<HttpSession, ServerResponse>();
  readonly #base: string;
  readonly #heartbeatMs: number;
  readonly #holdMs: number;
  readonly #sessions: HttpSessions;
  #closed = false;

  constructor(o: HttpRelayOptions) {
    this.#o = o;
    this.#base = o.base ?? HTTP_BASE;
    this.#heartbeatMs = o.heartbeatMs ?? DEFAULT_HEARTBEAT_MS;
    this.#holdMs = o.pollHoldMs ?? DEFAULT_POLL_HOLD_MS;
    this.#sessions = new HttpSessions({
      maxQueuedBytes: o.maxQueuedBytes ?? DEFAULT_MAX_QUEUED_BYTES,
      maxBatchBytes: o.maxPollBytes ?? DEFAULT_MAX_BATCH_BYTES,
      sessionIdleMs: o.sessionIdleMs ?? DEFAULT_SESSION_IDLE_MS,
      streamTrustMs: o.streamTrustMs ?? DEFAULT_STREAM_TRUST_MS,
      // `send` takes packets the core built, each a buffer of its own and never written again (the
      // TCP and UDP transports write them by reference too): no copy per datagram.
      adoptDatagrams: true,
      // A session's timers never keep the process alive.
      timers: {
        set: (fn, ms) => setTimeout(fn, ms).unref(),
        clear: (h) => clearTimeout(h as NodeJS.Timeout),
      },
      onExpired: (s) => {
        this.stats.sessionsExpired++;
        this.#o.onPathClose?.(s.id, `${HttpPathError.CLOSED}: session expired`);
      },
      onFallback: () => {
        this.stats.fallbacks++;
      },
    });
  }

  /** The live sessions' path ids. */
  get paths(): string[] {
    return this.#sessions.paths;
  }

  /**
   * What a session's datagrams travel as now: "poll" for polling sessions and for streaming
   * sessions that fell back; undefined for an unknown path.
   */
  mode(pathId: string): HttpMode | undefined {
    const s = this.#sessions.get(pathId);
    return s === undefined ? undefined : this.#sessions.modeOf(s);
  }

  /**
   * Takes a request under `<base>/` (true), or leaves it to the caller (false). `<base>/ws`
   * without an upgrade gets 426; an unknown route 404, a known one with another method 405.
   */
  handle(req: IncomingMessage, res: ServerResponse): boolean {
    const { path, query } = splitTarget(req.url ?? '');
    if (!path.startsWith(`${this.#base}/`)) return false;
    const route = path.slice(this.#base.length);
    const want = route === '/up' ? 'POST' : route === '/down' || route === '/poll' ? 'GET' : '';
    if (this.#closed) {
      this.#reject(req, res, 503);
    } else if (route === '/ws') {
      // Upgrades never reach here (the server's 'upgrade' event takes them).
      this.#reject(req, res, 426, [['Upgrade', 'websocket']]);
    } else if (want === '') {
      this.#reject(req, res, 404);
    } else if (req.method === 'OPTIONS') {
      // A cross-origin page's preflight (CORS_HEADERS).
      req.resume();
      res.writeHead(204, [...CORS_HEADERS, ...PREFLIGHT_HEADERS, ['Cache-Control', 'no-store']]);
      res.end();
    } else if (req.method !== want) {
      this.#reject(req, res, 405, [['Allow', want]]);
    } else if (route === '/up') {
      if (req.headers['roamlink-stream'] === 'up') this.#upstream(req, res, query);
      else this.#up(req, res, query);
    } else {
      const mode = route === '/down' ? HttpMode.STREAM : HttpMode.POLL;
      const s = this.#session(req, res, query, mode);
      if (s === undefined) return true;
      if (mode === HttpMode.STREAM && s.polled) {
        // Fallen back to polling: never back.
        this.#reject(req, res, 409);
        return true;
      }
      // A GET's body (there should be none) is read and dropped, so the connection stays usable.
      req.resume();
      if (mode === HttpMode.STREAM) this.#stream(s, req, res);
      else this.#poll(s, req, res);
    }
    return true;
  }

  /** Whether the session's queue is over half its bound (a writer that can wait should). */
  congested(pathId: string): boolean {
    return this.#sessions.congested(pathId);
  }

  /**
   * Queues a datagram for the client. false: no such session, a datagram too long for a record,
   * or the session's queue over its bound (counted in `queueDrops`).
   */
  send(pathId: string, datagram: Uint8Array): boolean {
    if (datagram.length === 0 || datagram.length > MAX_RECORD_DATAGRAM_BYTES) return false;
    const r = this.#sessions.queue(pathId, datagram);
    if (r === 'full') this.stats.queueDrops++;
    if (r !== 'queued') return false;
    this.stats.datagramsSent++;
    return true;
  }

  /** Ends every stream and held poll and forgets every session (nothing reported). */
  close(): void {
    this.#closed = true;
    this.#sessions.close();
    for (const res of this.#upstreams.values()) res.destroy();
    this.#upstreams.clear();
  }

  #reject(
    req: IncomingMessage,
    res: ServerResponse,
    status: number,
    extra: [string, string][] = [],
  ): void {
    this.stats.rejected++;
    req.resume();
    res.writeHead(status, [
      ['Content-Length', '0'],
      ['Cache-Control', 'no-store'],
      ...CORS_HEADERS,
      ...extra,
    ]);
    res.end();
  }

  /**
   * The session the `s` parameter names, made on first sight; undefined when answered 4xx (a bad
   * token or `Roamlink-Ack`, or a token already used with the other mode).
   */
  #session(
    req: IncomingMessage,
    res: ServerResponse,
    query: URLSearchParams,
    mode: HttpMode,
  ): HttpSession | undefined {
    const s = this.#sessions.open(query.get('s'), seqField(req.headers['roamlink-ack']), mode);
    if (typeof s === 'number') {
      this.#reject(req, res, s);
      return undefined;
    }
    return s;
  }

  #up(req: IncomingMessage, res: ServerResponse, query: URLSearchParams): void {
    const m = query.get('m');
    if (m !== HttpMode.STREAM && m !== HttpMode.POLL) {
      this.#reject(req, res, 400);
      return;
    }
    const declared = Number(req.headers['content-length'] ?? '0');
    if (declared > MAX_UP_BODY_BYTES) {
      this.#reject(req, res, 413);
      return;
    }
    // The socket ends now, while the socket is surely open; the mode once the session is known.
    const seen = observedView(req, m);
    const chunks: Buffer[] = [];
    let size = 0;
    let over = false;
    const deadline = setTimeout(
      () => req.destroy(),
      this.#o.upBodyDeadlineMs ?? UP_BODY_DEADLINE_MS,
    );
    deadline.unref();
    req.on('close', () => clearTimeout(deadline));
    req.on('data', (c: Buffer) => {
      if (over) return;
      size += c.length;
      if (size > MAX_UP_BODY_BYTES) {
        // A chunked body past the bound: refuse it without holding the rest in memory.
        over = true;
        chunks.length = 0;
        return;
      }
      chunks.push(c);
    });
    req.on('end', () => {
      clearTimeout(deadline);
      if (over) {
        this.#reject(req, res, 413);
        return;
      }
      const datagrams = decodeRecords(Buffer.concat(chunks));
      if (datagrams === undefined) {
        this.#reject(req, res, 400);
        return;
      }
      // Only a well-formed request touches the session (or makes one).
      const s = this.#session(req, res, query, m);
      if (s === undefined) return;
      const sessions = this.#sessions;
      sessions.touch(s);
      const view: HttpPathView = { ...seen, mode: sessions.modeOf(s) };
      // Handed up in order before the answer: the answer says the relay has them.
      for (const d of datagrams) {
        if (d.length === 0) continue;
        if (!sessions.live(s)) break;
        this.stats.datagramsReceived++;
        this.#o.onDatagram(d, s.id, view);
      }
      // After handing up, so that what the relay answered to these datagrams rides along.
      const answer = sessions.answerPost(s, seqField(req.headers['roamlink-ack']));
      if (answer === undefined || answer.datagrams.length === 0) {
        res.writeHead(204, [['Cache-Control', 'no-store'], ...CORS_HEADERS]);
        res.end();
        return;
      }
      const body = encodeRecords(answer.datagrams);
      res.writeHead(200, [
        ...CORS_HEADERS,
        ['Content-Type', 'application/octet-stream'],
        ['Content-Length', String(body.length)],
        ['Cache-Control', 'no-store'],
        [SEQ_HEADER, String(answer.first)],
      ]);
      res.end(body);
    });
    req.on('error', () => {});
  }

  /**
   * The up-stream: a chunked `POST <base>/up?s=<token>&m=stream` with `Roamlink-Stream: up` for a
   * streaming session whose stream has not fallen back. Its body is records, read as they arrive,
   * the first an empty one (the marker). The answer's head (200, a chunked body that stays empty)
   * goes as soon as the first record is in, so the client knows that the body's bytes pass
   * whatever is on the way, unbuffered; the answer ends when the body does. Datagrams are handed
   * up as a POST's are, with the up-stream request's view. A newer up-stream ends the older.
   */
  #upstream(req: IncomingMessage, res: ServerResponse, query: URLSearchParams): void {
    if (query.get('m') !== HttpMode.STREAM) {
      this.#reject(req, res, 400);
      return;
    }
    const token = query.get('s');
    const s = token === null ? undefined : this.#sessions.get(`hs:${token}`);
    // Only a session that exists and streams: the up-stream never opens one.
    if (s === undefined || s.polled) {
      this.#reject(req, res, 409);
      return;
    }
    const sessions = this.#sessions;
    const older = this.#upstreams.get(s);
    if (older !== undefined) older.destroy();
    this.#upstreams.set(s, res);
    const view = observedView(req, HttpMode.STREAM);
    const reader = new RecordReader({ zeroCopy: true });
    let open = false;
    const stop = (): void => {
      if (this.#upstreams.get(s) === res) this.#upstreams.delete(s);
    };
    reader.onRecord = (d) => {
      if (!open) {
        open = true;
        this.stats.upstreams++;
        res.socket?.setNoDelay(true);
        res.writeHead(200, [
          ...CORS_HEADERS,
          ['Content-Type', 'application/octet-stream'],
          ['Cache-Control', 'no-store'],
        ]);
        res.flushHeaders();
      }
      if (d.length === 0) return;
      this.stats.datagramsReceived++;
      this.#o.onDatagram(d, s.id, view);
    };
    req.on('data', (c: Buffer) => {
      if (!sessions.live(s) || s.polled) {
        // The session ended or fell back: its up-stream goes with it.
        stop();
        res.destroy();
        return;
      }
      sessions.touch(s);
      if (!reader.push(c)) {
        this.stats.rejected++;
        stop();
        if (open) res.destroy();
        else this.#reject(req, res, 400);
      }
    });
    req.on('end', () => {
      stop();
      if (!open || !reader.atBoundary) {
        if (!res.headersSent) this.#reject(req, res, 400);
        else res.destroy();
        return;
      }
      res.end();
    });
    res.on('close', stop);
    req.on('error', stop);
  }

  /**
   * `<base>/down`: 200 (`Roamlink-Seq`: the next record's number), chunked, the marker at once,
   * then records as queued, and a heartbeat.
   */
  #stream(s: HttpSession, req: IncomingMessage, res: ServerResponse): void {
    let ended = false;
    const heartbeat = setInterval(() => {
      if (!ended) writeChunk(res, [EMPTY_RECORD]);
    }, this.#heartbeatMs);
    heartbeat.unref();
    const stop = (): void => {
      if (ended) return;
      ended = true;
      clearInterval(heartbeat);
      this.#sessions.detach(s, down);
    };
    const flush = (): void => {
      // A response already gone takes nothing: the datagrams wait for the next request.
      if (ended || res.destroyed || res.writableEnded || s.queue.length === 0) return;
      const ds = this.#sessions.take(s, Number.POSITIVE_INFINITY);
      // Once the head is out, chunks go to the socket itself (record-chunk.ts: one system call,
      // a large packet written as it is): ServerResponse's own chunked writing cost the relay
      // ~10 µs per small reply. Its end() still writes the last chunk, on the same socket.
      const socket = res.socket;
      if (socket !== null && res.headersSent && res.writableLength === 0) {
        writeRecordChunk(socket, ds);
      } else {
        writeChunk(res, recordPieces(ds));
      }
    };
    const down: HttpDown = {
      // A datagram leaves as it is queued, as on a TCP path: the stream layer has gathered the
      // turn's writes into packets already, and a reply waits for no later turn.
      kick: flush,
      close: () => {
        if (ended) return;
        stop();
        res.end();
      },
      drain: flush,
    };
    res.socket?.setNoDelay(true);
    res.writeHead(200, [
      ...CORS_HEADERS,
      ['Content-Type', 'application/octet-stream'],
      ['Cache-Control', 'no-store'],
      // Asks reverse proxies that honour it (nginx) not to buffer; a hint, never relied on.
      ['X-Accel-Buffering', 'no'],
      [SEQ_HEADER, String(s.headSeq)],
    ]);
    writeChunk(res, [EMPTY_RECORD]);
    this.#sessions.attach(s, down);
    this.#sessions.streamStarted(s);
    res.on('close', stop);
    req.on('error', stop);
    if (s.queue.length > 0) down.kick();
  }

  /** `<base>/poll`: held until a datagram is queued (200 with records) or the hold ends (204). */
  #poll(s: HttpSession, req: IncomingMessage, res: ServerResponse): void {
    let ended = false;
    let answering: NodeJS.Immediate | undefined;
    const finish = (): void => {
      if (ended) return;
      ended = true;
      clearTimeout(hold);
      if (answering) clearImmediate(answering);
      this.#sessions.detach(s, down);
    };
    const answer = (empty: boolean): void => {
      if (ended) return;
      finish();
      if (res.writableEnded || res.destroyed) return;
      if (empty || s.queue.length === 0) {
        res.writeHead(204, [['Cache-Control', 'no-store'], ...CORS_HEADERS]);
        res.end();
        return;
      }
      const first = s.headSeq;
      const body = encodeRecords(this.#sessions.take(s));
      res.writeHead(200, [
        ...CORS_HEADERS,
        ['Content-Type', 'application/octet-stream'],
        ['Content-Length', String(body.length)],
        ['Cache-Control', 'no-store'],
        // A streaming session that fell back numbers its datagrams.
        ...(s.mode === HttpMode.STREAM ? [[SEQ_HEADER, String(first)] as [string, string]] : []),
      ]);
      res.end(body);
    };
    const down: HttpDown = {
      kick: () => {
        answering ??= setImmediate(() => {
          answering = undefined;
          answer(false);
        });
      },
      // Superseded by a newer poll, or the relay closing: answer empty now; data waits.
      close: () => answer(true),
    };
    const hold = setTimeout(() => answer(false), this.#holdMs);
    hold.unref();
    this.#sessions.attach(s, down);
    res.on('close', finish);
    req.on('error', finish);
    if (s.queue.length > 0) down.kick();
  }
}

// ---- client ----

export interface HttpClientOptions {
  /** The relay's base URL, e.g. "http://127.0.0.1:51821/rl" (a reverse proxy's works too). */
  baseUrl: string;
  /** Every datagram that arrives on this path (each once, in the relay's order). */
  onDatagram: (datagram: Uint8Array, pathId: string) => void;
  /** The path failed (reported once; the path is closed): "http-status: ...", "protocol: ..." */
  onError?: (pathId: string, reason: string) => void;
  /**
   * The way down works end to end: the stream-open marker or a POST's answer arrived
   * (streaming), or any relay answer (polling).
   */
  onOpen?: (pathId: string) => void;
  /**
   * Streaming only: the stream is buffered, and the path (same id, same token) now polls; its
   * `view()` and `mode` say "poll". Register the path again as HTTP polling.
   */
  onModeChange?: (pathId: string, mode: 'poll') => void;
  /** Extra request header fields (e.g. User-Agent), on every request. */
  headers?: Record<string, string>;
  /** The session token (default: 32 hex digits from 16 random bytes). */
  token?: string;
  /** Bytes waiting for the next POST before `send` drops (default 1920 KiB: a batch behind the one in flight). */
  maxQueuedBytes?: number;
  /** Records per POST body (default 960 KiB, at least one datagram). */
  maxBatchBytes?: number;
  /**
   * Streaming only: the first body byte is due within clamp(factor × T, minMs, maxMs) of the GET
   * leaving, T the first POST's answer time (maxMs while no POST was answered); else the path
   * falls back to polling. Defaults 1.5, 100, 3000.
   */
  bufferDetect?: Partial<BufferDetect>;
  /**
   * Reach the relay through this HTTP proxy: each of the path's connections is a CONNECT tunnel
   * (proxy.ts), the requests inside unchanged (origin-form, Host of the relay), so a proxy can
   * neither buffer the stream nor see the requests. The caller chooses it (`selectProxy` reads
   * HTTPS_PROXY/NO_PROXY); nothing here reads the environment. A tunnel that fails fails the
   * path with "http-error: ROAMLINK_ERR_PROXY_..." (the ProxyError's code).
   */
  proxy?: ProxyConfig | string;
  /**
   * How requests go through `proxy`: "connect" (default), each connection a CONNECT tunnel as
   * above; or "forward", each request sent to the proxy in absolute form (RFC 9112 §3.2.2) with
   * `Proxy-Authorization`, as a browser sends plain http:// requests through a proxy. Forward
   * passes proxies that allow CONNECT only to port 443 (squid's default configuration) and lets
   * the relay see what the proxy changed (Via, the request target); such a proxy may also buffer
   * the stream, which the path detects and answers by polling.
   */
  proxyMode?: 'connect' | 'forward';
  /** Deadline for each tunnel (connection to the proxy and its answer), default 10 s. */
  proxyConnectTimeoutMs?: number;
  /**
   * For an https:// base URL: the CAs to trust and whether to check the certificate
   * (relay-tls.ts). Each connection is TLS to the relay, direct or inside a CONNECT tunnel; a
   * forward proxy cannot carry https requests, so `proxyMode` "forward" is taken as "connect".
   */
  tls?: RelayTls;
  /**
   * Streaming only: once the stream shows a byte, try the up-stream (http-upstream.ts: one
   * chunked POST whose body stays open) and send on it instead of a POST per batch if the relay
   * answers it within the buffering deadline. Default true.
   */
  upstream?: boolean;
  /** After an up-stream that worked ends, the next is tried this much later (default 5 s). */
  upstreamRetryMs?: number;
}

export interface HttpClientStats {
  /** POSTs answered 2xx. */
  posts: number;
  datagramsSent: number;
  datagramsReceived: number;
  /** Datagrams `send` dropped (closed, too long, or over the queue bound). */
  queueDrops: number;
  /** Numbered datagrams that came a second time (a POST's answer and the stream), dropped. */
  duplicatesDropped: number;
  /** Up-streams the relay answered (the path sent on them). */
  upstreams: number;
}

/** The up-stream takes more batches while less than this waits in its socket's buffer. */
const UPSTREAM_BUFFER_BYTES = 256 * 1024;
/** After an up-stream that worked ends, the next is tried this much later. */
export const DEFAULT_UPSTREAM_RETRY_MS = 5_000;

/**
 * The client's view of its path: the URL, Host and headers it sends, and the POST's socket ends.
 * Through a proxy the socket ends are those of the POST's connection to the proxy (before the
 * first POST has a socket: the proxy's address), and url/host/headers stay those of the inner
 * POST; the CONNECT request and its Proxy-Authorization are not part of the view. Fields that
 * differ per request (Content-Length, Roamlink-Ack) are left out.
 */
export type HttpClientView = HttpPathView;

interface Target {
  hostname: string;
  port: number;
  host: string;
  basePath: string;
  url: string;
  secure: boolean;
}

function parseBase(baseUrl: string): Target {
  const u = new URL(baseUrl);
  if (u.protocol !== 'http:' && u.protocol !== 'https:') {
    throw new RangeError(`not an http or https URL: ${baseUrl}`);
  }
  const secure = u.protocol === 'https:';
  return {
    secure,
    hostname: unbracket(u.hostname),
    port: u.port === '' ? (secure ? 443 : 80) : Number(u.port),
    host: u.host,
    basePath: u.pathname.replace(/\/$/, ''),
    url: `${u.protocol}//${u.host}`,
  };
}

/**
 * The keep-alive agent of a direct path: its connections read into an arena (connectWithArena),
 * up to 256 KiB a read, so node:http's parser runs a quarter as often and hands the streamed GET's
 * body on in larger pieces (fewer records straddle two and get copied again). Alternating 512 MiB
 * downloads over HTTP: client CPU 4.80 → 4.00 s per GiB, 190 → 205 MB/s (medians of 15). Through
 * a proxy the ProxyAgent's CONNECT tunnels read as Node does.
 */
class ArenaAgent extends Agent {
  // Agent calls this with a callback and also takes the socket returned; the returned one is used.
  override createConnection(options: NetConnectOpts): Socket {
    return connectWithArena(options);
  }
}

/**
 * What both client modes share: the keep-alive agent (a POST in flight and the down request on
 * two connections, reused), the batching uplink, the polling loop, and failing once.
 */
abstract class HttpClientBase {
  readonly token: string;
  readonly pathId: string;
  readonly stats: HttpClientStats = {
    posts: 0,
    datagramsSent: 0,
    datagramsReceived: 0,
    queueDrops: 0,
    duplicatesDropped: 0,
    upstreams: 0,
  };
  /** Polls answered. */
  polls = 0;
  /** Time from the first POST leaving to its answer (ms). */
  firstAnswerMs: number | undefined;
  protected readonly o: HttpClientOptions;
  protected readonly target: Target;
  protected readonly agent: Agent;
  readonly #proxy: ProxyConfig | undefined;
  protected readonly extraHeaders: Record<string, string>;
  #mode: HttpMode;
  #upPath: string;
  readonly #maxQueued: number;
  readonly #maxBatch: number;
  readonly #requests = new Set<ClientRequest>();
  /** Requests ended on purpose while the path lives (a buffered stream): their errors are not the path's. */
  readonly #abandoned = new WeakSet<ClientRequest>();
  #queue: Uint8Array[] = [];
  #queued = 0;
  #inFlight = false;
  #flushing: NodeJS.Immediate | undefined;
  #opened = false;
  #done = false;
  /** The POSTs' connection (http-uplink.ts); the GET and the polls go through `agent`. */
  readonly #uplink: HttpUplink;
  /** Forward-proxy mode: the proxy, and the fields every request through it carries. */
  readonly #forward: { proxy: ProxyConfig; fields: Record<string, string> } | undefined;
  /** Where the POSTs' (and the up-stream's) connections go. */
  readonly #dial: HttpUplinkOptions;
  /** https.request when the path's connections are TLS (to the relay, or to a forward proxy). */
  readonly #requestFn: typeof httpRequest;
  /** The up-stream being tried or in use, if any. */
  #up: HttpUpstream | undefined;
  /** The relay answered it; the path sends on it once no POST is in flight (order kept). */
  #upReady = false;
  /** The path sends on the up-stream (no POSTs). */
  #upLive = false;
  /** The up-stream's answer deadline, or the retry after one that worked ended. */
  #upTimer: NodeJS.Timeout | undefined;
  /** An up-stream was not answered in time: none is tried again on this path. */
  #upRefused = false;
  /** Why the last up-stream ended or was refused ("status 501", "no answer in 150 ms", ...). */
  upstreamEnd: string | undefined;

  constructor(o: HttpClientOptions, mode: HttpMode) {
    this.o = o;
    this.target = parseBase(o.baseUrl);
    this.token = o.token ?? randomBytes(16).toString('hex');
    this.pathId = `${mode === HttpMode.STREAM ? 'hs' : 'hp'}:${this.token}`;
    this.#mode = mode;
    this.#upPath = this.#upPathFor(mode);
    // Room for a full batch behind the one in flight (twice a batch): with the bound at one batch,
    // what the stream layer sent while a 960 KiB POST was out overflowed and was dropped as a loss.
    this.#maxQueued = o.maxQueuedBytes ?? 2 * DEFAULT_MAX_BATCH_BYTES;
    this.#maxBatch = o.maxBatchBytes ?? DEFAULT_MAX_BATCH_BYTES;
    this.extraHeaders = o.headers ?? {};
    const proxy =
      o.proxy === undefined || typeof o.proxy !== 'string' ? o.proxy : parseProxyUrl(o.proxy);
    this.#proxy = proxy;
    const tls = this.target.secure ? (o.tls ?? {}) : undefined;
    // A SOCKS proxy only tunnels: no forward requests.
    const forward =
      proxy !== undefined && o.proxyMode === 'forward' && tls === undefined && !proxy.socks;
    const authorization =
      forward && forwardSendsBasic(proxy.memory, proxy.secure)
        ? proxyAuthorization(proxy)
        : undefined;
    // Forward requests to an https:// proxy go over TLS to the proxy (to the relay they are plain).
    const proxyTls = forward && proxy.secure ? (proxy.tls ?? {}) : undefined;
    this.#requestFn = tls !== undefined || proxyTls !== undefined ? httpsRequest : httpRequest;
    // Forward mode: every connection goes to the proxy; requests name the relay's URL.
    this.#forward = forward
      ? {
          proxy,
          fields: {
            Host: this.target.host,
            ...(authorization === undefined ? {} : { 'Proxy-Authorization': authorization }),
          },
        }
      : undefined;
    this.#dial = forward
      ? {
          hostname: proxy.hostname,
          port: proxy.port,
          host: this.target.host,
          forward: { origin: this.target.url, authorization, proxy },
        }
      : {
          hostname: this.target.hostname,
          port: this.target.port,
          host: this.target.host,
          ...(proxy === undefined ? {} : { proxy }),
          ...(tls === undefined ? {} : { tls }),
          ...(o.proxyConnectTimeoutMs === undefined
            ? {}
            : { proxyConnectTimeoutMs: o.proxyConnectTimeoutMs }),
        };
    this.#uplink = new HttpUplink(this.#dial);
    // Two sockets: the held down request would block a poll queued behind it on one. Through a
    // proxy in CONNECT mode each is a tunnel.
    this.agent =
      proxy !== undefined && !forward
        ? new ProxyAgent({
            keepAlive: true,
            maxSockets: 2,
            proxy,
            ...(tls === undefined ? {} : { tls }),
            ...(o.proxyConnectTimeoutMs === undefined
              ? {}
              : { connectTimeoutMs: o.proxyConnectTimeoutMs }),
          })
        : tls !== undefined || proxyTls !== undefined
          ? new HttpsAgent({
              keepAlive: true,
              maxSockets: 2,
              ...(proxyTls !== undefined
                ? relayTlsOptions(proxy!.hostname, proxyTls)
                : relayTlsOptions(this.target.hostname, tls!)),
            })
          : new ArenaAgent({ keepAlive: true, maxSockets: 2 });
  }

  /** What the path's datagrams travel as now: a streaming path that fell back says "poll". */
  get mode(): HttpMode {
    return this.#mode;
  }

  /** Whether the queue for the next POST is over half its bound (a writer that can wait should). */
  get congested(): boolean {
    return this.#queued > this.#maxQueued / 2;
  }

  get isDone(): boolean {
    return this.#done;
  }

  /**
   * The up-stream: "live" (the path sends on it), "trying" (opened, not answered yet, or to be
   * tried again), "refused" (not answered in time, or refused: POSTs for good), "none" (not
   * tried: polling, turned off, or the stream has not flowed yet).
   */
  get upstream(): 'live' | 'trying' | 'refused' | 'none' {
    if (this.#upLive) return 'live';
    if (this.#upRefused) return 'refused';
    return this.#up !== undefined || this.#upTimer !== undefined ? 'trying' : 'none';
  }

  /** The client's copy of the outer fields it sends on this path (the next POST's). */
  view(): HttpClientView {
    // The connection the next datagram leaves on.
    const s = this.#upLive ? this.#up?.socket : this.#uplink.socket;
    const headers: [string, string][] = [
      ['content-type', 'application/octet-stream'],
      ...Object.entries(this.extraHeaders).map(([k, v]): [string, string] => [k.toLowerCase(), v]),
    ];
    return {
      local: endpointOf(s?.localAddress, s?.localPort),
      remote: s
        ? endpointOf(s.remoteAddress, s.remotePort)
        : this.#proxy
          ? { address: this.#proxy.hostname, port: this.#proxy.port }
          : { address: this.target.hostname, port: this.target.port },
      url: `${this.target.url}${this.#upPath}`,
      host: this.target.host,
      headers,
      mode: this.#mode,
    };
  }

  /** Queues a datagram for the next POST. false: closed, too long, or over the bound. */
  send(datagram: Uint8Array): boolean {
    if (
      this.#done ||
      datagram.length === 0 ||
      datagram.length > MAX_RECORD_DATAGRAM_BYTES ||
      this.#queued + datagram.length > this.#maxQueued
    ) {
      this.stats.queueDrops++;
      return false;
    }
    const up = this.#up;
    if (
      this.#upLive &&
      up !== undefined &&
      this.#queue.length === 0 &&
      up.writableLength < UPSTREAM_BUFFER_BYTES
    ) {
      // On the up-stream a datagram leaves at once, as one chunk, as on a TCP path (the stream
      // layer has gathered the turn's writes into packets already), and by reference: the core
      // never writes a packet again once handed to a transport (the TCP transport relies on it).
      up.write([datagram]);
      this.stats.datagramsSent++;
      return true;
    }
    this.#queue.push(datagram.slice());
    this.#queued += datagram.length;
    this.stats.datagramsSent++;
    // Whatever else is sent in this turn of the event loop rides in the same POST (or chunk).
    if (!this.#inFlight || this.#upLive) this.#flushing ??= setImmediate(() => this.#flush());
    return true;
  }

  /** Closes the path quietly (nothing reported). */
  close(): void {
    if (this.#done) return;
    this.#done = true;
    if (this.#flushing) clearImmediate(this.#flushing);
    this.#queue = [];
    this.#endUpstream();
    this.shutdown();
    for (const r of this.#requests) r.destroy();
    this.#requests.clear();
    this.#uplink.close();
    this.agent.destroy();
  }

  protected abstract shutdown(): void;

  /** Fails the path once: closed, then reported. */
  protected fail(reason: string): void {
    if (this.#done) return;
    this.close();
    this.o.onError?.(this.pathId, reason);
  }

  protected opened(): void {
    if (this.#opened || this.#done) return;
    this.#opened = true;
    this.o.onOpen?.(this.pathId);
  }

  protected delivered(d: Uint8Array): void {
    if (this.#done) return;
    this.stats.datagramsReceived++;
    this.o.onDatagram(d, this.pathId);
  }

  protected headers(more: Record<string, string>): Record<string, string> {
    return { ...more, ...this.extraHeaders };
  }

  /** Fields for one request only, after the others (a streaming client's `Roamlink-Ack`). */
  protected perRequest(): Record<string, string> {
    return {};
  }

  /**
   * Datagrams from a POST's or a poll's answer: numbered from `first` (its `Roamlink-Seq`), or
   * not numbered (a polling session's).
   */
  protected received(_first: number | undefined, ds: readonly Uint8Array[]): void {
    for (const d of ds) this.delivered(d);
  }

  /** The POSTs from now on name another mode (a streaming path falling back to polling). */
  protected setMode(mode: HttpMode): void {
    this.#mode = mode;
    this.#upPath = this.#upPathFor(mode);
    if (mode !== HttpMode.STREAM) {
      this.#upRefused = true;
      this.#endUpstream();
    }
  }

  /**
   * Tries the up-stream (the stream flows, so nothing buffers answers on the way; whether
   * anything buffers request bodies is what the try finds out). `waitMs`: how long its answer
   * may take before the path keeps to POSTs for good.
   */
  protected tryUpstream(waitMs: number): void {
    if (
      this.o.upstream === false ||
      this.#done ||
      this.#up !== undefined ||
      this.#upRefused ||
      this.#mode !== HttpMode.STREAM
    ) {
      return;
    }
    if (this.#upTimer) clearTimeout(this.#upTimer);
    const up = new HttpUpstream({
      ...this.#dial,
      path: this.#upPath,
      fields: Object.entries(this.headers({ 'Content-Type': 'application/octet-stream' })),
      onOpen: () => {
        if (this.#up !== up) return;
        if (this.#upTimer) clearTimeout(this.#upTimer);
        this.#upTimer = undefined;
        this.stats.upstreams++;
        this.#upReady = true;
        // What a POST in flight carries is handed up before its answer: switching after the
        // answer keeps the datagrams in the order they were sent.
        if (!this.#inFlight) this.#switchUp();
      },
      onClose: (reason) => {
        if (this.#up !== up) return;
        this.upstreamEnd = reason;
        const worked = this.#upReady;
        this.#endUpstream();
        if (this.#done) return;
        if (!worked) this.#upRefused = true;
        else {
          // It worked, and ended (a proxy's or the relay's timeout, a reset): POSTs meanwhile,
          // and another try later.
          this.#upTimer = setTimeout(() => {
            this.#upTimer = undefined;
            this.tryUpstream(waitMs);
          }, this.o.upstreamRetryMs ?? DEFAULT_UPSTREAM_RETRY_MS);
          this.#upTimer.unref();
        }
        this.#flush();
      },
      onDrain: () => this.#flush(),
    });
    this.#up = up;
    this.#upTimer = setTimeout(() => {
      this.#upTimer = undefined;
      if (this.#up !== up || this.#upReady) return;
      // No answer in time: something on the way holds the body back.
      this.upstreamEnd = `no answer in ${Math.round(waitMs)} ms`;
      this.#upRefused = true;
      this.#endUpstream();
    }, waitMs);
    this.#upTimer.unref();
  }

  #switchUp(): void {
    if (!this.#upReady || this.#upLive || this.#done) return;
    this.#upLive = true;
    this.#flush();
  }

  #endUpstream(): void {
    if (this.#upTimer) clearTimeout(this.#upTimer);
    this.#upTimer = undefined;
    this.#up?.close();
    this.#up = undefined;
    this.#upReady = false;
    this.#upLive = false;
  }

  /** Ends a request on purpose without failing the path. */
  protected abandon(req: ClientRequest): void {
    this.#abandoned.add(req);
    req.destroy();
  }

  /** One request on the path's agent, tracked so that close() can end it. */
  protected request(
    method: string,
    path: string,
    headers: Record<string, string>,
    onResponse: (res: IncomingMessage) => void,
  ): ClientRequest {
    const fwd = this.#forward;
    const req = this.#requestFn(
      fwd
        ? {
            agent: this.agent,
            hostname: fwd.proxy.hostname,
            port: fwd.proxy.port,
            method,
            path: `${this.target.url}${path}`,
            headers: { ...fwd.fields, ...headers },
          }
        : {
            agent: this.agent,
            hostname: this.target.hostname,
            port: this.target.port,
            method,
            path,
            headers,
          },
      onResponse,
    );
    this.#requests.add(req);
    req.once('close', () => this.#requests.delete(req));
    req.on('error', (e: NodeJS.ErrnoException) => {
      if (this.#abandoned.has(req)) return;
      this.fail(`${HttpPathError.HTTP_ERROR}: ${errorText(e)}`);
    });
    req.on('socket', (s: Socket) => s.setNoDelay(true));
    return req;
  }

  /**
   * A forward request answered 407: the scheme the proxy asks for is remembered with its
   * configuration, so that the path, dialled again, answers it (Basic on each request; NTLM or
   * Digest by CONNECT; proxy-auth.ts).
   */
  protected forwardRefused(status: number, authenticate: string | undefined): void {
    if (status !== 407 || this.#forward === undefined || authenticate === undefined) return;
    noteForwardRefusal(this.#forward.proxy.memory, [authenticate]);
  }

  /** Hook: a POST was answered 2xx (its head is in). */
  protected onAnswer(): void {}

  /**
   * The polling loop: one `GET <base>/poll?s=<token>` outstanding, the next sent as soon as an
   * answer is complete.
   */
  protected poll(): void {
    if (this.#done) return;
    const req = this.request(
      'GET',
      `${this.target.basePath}/poll?s=${this.token}`,
      {
        ...this.headers({ Accept: 'application/octet-stream', 'Cache-Control': 'no-cache' }),
        ...this.perRequest(),
      },
      (res) => {
        const status = res.statusCode ?? 0;
        if (status !== 200 && status !== 204) {
          res.resume();
          this.forwardRefused(status, res.headers['proxy-authenticate']);
          this.fail(`${HttpPathError.HTTP_STATUS}: poll ${status} ${res.statusMessage}`);
          return;
        }
        const first = status === 200 ? seqField(res.headers['roamlink-seq']) : undefined;
        const reader = new RecordReader({ zeroCopy: true });
        const got: Uint8Array[] = [];
        reader.onRecord = (d) => {
          if (d.length > 0) got.push(d);
        };
        let bad = false;
        res.on('data', (b: Buffer) => {
          if (!bad && !reader.push(b)) bad = true;
        });
        res.on('end', () => {
          if (this.#done) return;
          if (bad || !reader.atBoundary || (first !== undefined && Number.isNaN(first))) {
            this.fail(`${HttpPathError.PROTOCOL}: bad records or ${SEQ_HEADER} in poll answer`);
            return;
          }
          this.polls++;
          this.opened();
          this.received(first, got);
          this.poll();
        });
        res.on('error', () => this.fail(`${HttpPathError.CLOSED}: poll broke`));
      },
    );
    req.end();
  }

  #upPathFor(mode: HttpMode): string {
    return `${this.target.basePath}/up?s=${this.token}&m=${mode}`;
  }

  #flush(): void {
    this.#flushing = undefined;
    if (this.#done || this.#queue.length === 0) return;
    const up = this.#up;
    if (this.#upLive && up !== undefined) {
      // One chunk per batch while the socket's buffer has room; the rest waits for its drain.
      while (this.#queue.length > 0 && up.writableLength < UPSTREAM_BUFFER_BYTES) {
        const batch = this.#queue.splice(0, batchCount(this.#queue, this.#maxBatch));
        for (const d of batch) this.#queued -= d.length;
        up.write(batch);
      }
      return;
    }
    if (this.#inFlight) return;
    const batch = this.#queue.splice(0, batchCount(this.#queue, this.#maxBatch));
    for (const d of batch) this.#queued -= d.length;
    const body = encodeRecords(batch);
    this.#inFlight = true;
    const started = performance.now();
    const fields = Object.entries({
      ...this.headers({ 'Content-Type': 'application/octet-stream' }),
      ...this.perRequest(),
    });
    this.#uplink.post(this.#upPath, fields, body, (err, res) => {
      if (this.#done) return;
      if (err !== undefined || res === undefined) {
        this.fail(`${HttpPathError.HTTP_ERROR}: ${err ? errorText(err) : 'no answer'}`);
        return;
      }
      const status = res.status;
      if (status < 200 || status >= 300) {
        this.forwardRefused(status, res.headers.get('proxy-authenticate'));
        this.fail(`${HttpPathError.HTTP_STATUS}: POST ${status} ${res.reason}`);
        return;
      }
      this.stats.posts++;
      this.firstAnswerMs ??= performance.now() - started;
      // A 200 with `Roamlink-Seq` carries records: what the relay streamed that this client
      // has not seen (streaming, until its stream shows a byte).
      const first = status === 200 ? seqField(res.headers.get('roamlink-seq')) : undefined;
      this.onAnswer();
      if (this.#done) return;
      this.#inFlight = false;
      if (this.#upReady) this.#switchUp();
      if (first !== undefined) {
        const ds = decodeRecords(res.body);
        if (ds === undefined || Number.isNaN(first)) {
          this.fail(`${HttpPathError.PROTOCOL}: bad POST answer`);
          return;
        }
        this.received(
          first,
          ds.filter((d) => d.length > 0),
        );
      }
      this.#flush();
    });
  }
}

/**
 * HTTP streaming, client side: batched POSTs up, one long GET down. Until a byte of the GET's body
 * arrives, each request carries `Roamlink-Ack` and POST answers bring what the relay streamed;
 * when none arrived in time (a buffering proxy), the path polls the same token from then on and
 * calls `onModeChange(id, "poll")`.
 */
export class HttpStreamClient extends HttpClientBase {
  /** When the path gave up on its stream and began to poll (performance.now()), if it did. */
  fellBackAt: number | undefined;
  readonly #reader = new RecordReader({ zeroCopy: true });
  readonly #detect: BufferDetect;
  readonly #order = new HttpStreamOrder();
  #getSentAt: number | undefined;
  #timer: NodeJS.Timeout | undefined;
  #down: ClientRequest | undefined;

  constructor(o: HttpClientOptions) {
    super(o, HttpMode.STREAM);
    this.#detect = bufferDetect(o.bufferDetect);
    this.#reader.onRecord = (d) => {
      // The first record (the marker) says the stream flows end to end.
      this.opened();
      if (d.length === 0) return;
      if (this.#order.fromStream()) this.delivered(d);
      else this.stats.duplicatesDropped++;
    };
    const req = this.request(
      'GET',
      `${this.target.basePath}/down?s=${this.token}`,
      this.headers({ Accept: 'application/octet-stream', 'Cache-Control': 'no-cache' }),
      (res) => {
        if (this.fellBackAt !== undefined) {
          res.destroy();
          return;
        }
        if (res.statusCode !== 200) {
          res.resume();
          this.forwardRefused(res.statusCode ?? 0, res.headers['proxy-authenticate']);
          this.fail(`${HttpPathError.HTTP_STATUS}: GET ${res.statusCode} ${res.statusMessage}`);
          return;
        }
        const seq = seqField(res.headers['roamlink-seq']);
        if (seq !== undefined && Number.isNaN(seq)) {
          res.resume();
          this.fail(`${HttpPathError.PROTOCOL}: bad ${SEQ_HEADER}`);
          return;
        }
        this.#order.streamOpened(seq);
        res.on('data', (b: Buffer) => {
          if (this.fellBackAt !== undefined) return;
          if (!this.#order.bodySeen) {
            this.#order.bodySeen = true;
            if (this.#timer) clearTimeout(this.#timer);
            this.#timer = undefined;
            // Nothing on the way buffers answers: try sending on one open body too.
            this.tryUpstream(bufferWaitMs(this.#detect, this.firstAnswerMs));
          }
          if (!this.#reader.push(b)) this.fail(`${HttpPathError.PROTOCOL}: bad record length`);
        });
        res.on('end', () => {
          if (this.fellBackAt === undefined)
            this.fail(`${HttpPathError.CLOSED}: down-stream ended`);
        });
        res.on('error', () => {
          if (this.fellBackAt === undefined)
            this.fail(`${HttpPathError.CLOSED}: down-stream broke`);
        });
      },
    );
    req.on('socket', (s: Socket) => {
      // The clock starts when the GET can leave: its connection is up.
      const start = (): void => {
        this.#getSentAt = performance.now();
        this.#arm();
      };
      if (s.connecting) s.once('connect', start);
      else start();
    });
    req.end();
    this.#down = req;
  }

  protected override onAnswer(): void {
    // While the stream shows nothing, POST answers carry what the relay sends: the path works.
    this.opened();
    this.#arm();
  }

  /** `Roamlink-Ack` while no byte of the stream has arrived (for good, once fallen back). */
  protected override perRequest(): Record<string, string> {
    const ack = this.#order.ack;
    return ack === undefined ? {} : { [ACK_HEADER]: String(ack) };
  }

  protected override received(first: number | undefined, ds: readonly Uint8Array[]): void {
    if (first === undefined) super.received(first, ds);
    else this.#take(first, ds);
  }

  /** Datagrams numbered from `first`: each is delivered once, whichever way it came first. */
  #take(first: number, ds: readonly Uint8Array[]): void {
    for (const [i, d] of ds.entries()) {
      if (this.isDone) return;
      if (this.#order.admit(first + i)) this.delivered(d);
      else this.stats.duplicatesDropped++;
    }
  }

  /** The deadline for the first body byte, given what is known now. */
  #arm(): void {
    const start = this.#getSentAt;
    if (
      start === undefined ||
      this.#order.bodySeen ||
      this.fellBackAt !== undefined ||
      this.isDone
    ) {
      return;
    }
    const wait = bufferWaitMs(this.#detect, this.firstAnswerMs);
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = setTimeout(
      () => {
        this.#timer = undefined;
        if (!this.#order.bodySeen) this.#fallBack();
      },
      Math.max(0, start + wait - performance.now()),
    );
    this.#timer.unref();
  }

  /** The stream is buffered: poll the same token from now on. */
  #fallBack(): void {
    if (this.isDone || this.fellBackAt !== undefined) return;
    this.fellBackAt = performance.now();
    // Whatever the proxy releases on this connection later is not read: the relay sends it again.
    if (this.#down) this.abandon(this.#down);
    this.#down = undefined;
    this.setMode(HttpMode.POLL);
    this.poll();
    if (!this.isDone) this.o.onModeChange?.(this.pathId, HttpMode.POLL);
  }

  protected shutdown(): void {
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = undefined;
  }
}

/**
 * HTTP long polling, client side: batched POSTs up; one poll always outstanding down, sent again
 * as soon as an answer is complete.
 */
export class HttpPollClient extends HttpClientBase {
  constructor(o: HttpClientOptions) {
    super(o, HttpMode.POLL);
    this.poll();
  }

  protected override onAnswer(): void {
    // Any answer from the relay proves the path works end to end.
    this.opened();
  }

  protected shutdown(): void {}
}
