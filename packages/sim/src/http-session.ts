/**
 * What HTTP streaming and HTTP long polling share (the wire format is in README.md, "HTTP
 * encapsulations"):
 * - upstream, the client's `POST <base>/up?s=<token>&m=<stream|poll>` requests, each carrying a
 *   batch of records (framing.ts) in a Content-Length body and answered `204 No Content`. One POST
 *   is in flight at a time per path; what is sent meanwhile is batched into the next, so order is
 *   kept and a new path costs no round trip (the first POST leaves with the first datagrams).
 * - on the relay, the session table: the token the client chose ties its up and down requests
 *   into one path ("hs:<token>" or "hp:<token>"), and datagrams for the client wait in a bounded
 *   queue until the down channel (stream or poll) takes them.
 */
import type { OuterView, PathInfo } from '@roamlink/core';
import type {
  Host,
  HttpHeaders,
  HttpResponder,
  HttpServerRequest,
  TcpConnection,
  Timer,
} from '@roamlink/netsim';
import { decodeRecords, encodeRecords, RECORD_HEADER_BYTES } from './framing.ts';
import { HttpClientConnection, type HttpTarget } from './http-client.ts';
import {
  type ClientPathOptions,
  DEFAULT_MAX_QUEUED_BYTES,
  MAX_DATAGRAM_BYTES,
  netErrorReason,
  PathError,
  type SimRelayStats,
} from './types.ts';

export const HttpMode = { STREAM: 'stream', POLL: 'poll' } as const;
export type HttpMode = (typeof HttpMode)[keyof typeof HttpMode];

export const DEFAULT_MAX_BATCH_BYTES = 65_536;

/** Tokens the relay accepts: URL-safe, 16 to 128 characters (clients send 32 hex digits). */
export function isSessionToken(t: string): boolean {
  return /^[A-Za-z0-9_-]{16,128}$/.test(t);
}

/** The query of an origin-form target as a map ("/rl/up?s=x&m=stream"). */
export function parseQuery(target: string): Map<string, string> {
  const out = new Map<string, string>();
  const q = target.indexOf('?');
  if (q < 0) return out;
  for (const part of target.slice(q + 1).split('&')) {
    if (part === '') continue;
    const eq = part.indexOf('=');
    out.set(eq < 0 ? part : part.slice(0, eq), eq < 0 ? '' : part.slice(eq + 1));
  }
  return out;
}

// ---- client: the upstream POSTs ----

export class HttpUplink {
  /** Fails the path: a POST answered with an error, or its connection broke. */
  onFail: (reason: string) => void = () => {};
  /** A POST was answered 2xx; `ms` is that POST's time from leaving to its answer. */
  onAnswer: (ms: number) => void = () => {};
  /** Time from the first POST leaving until its answer. */
  firstAnswerMs: number | undefined;
  readonly url: string;
  readonly headers: HttpHeaders;
  readonly #host: Host;
  readonly #target: HttpTarget;
  readonly #opts: ClientPathOptions;
  readonly #path: string;
  readonly #maxQueued: number;
  readonly #maxBatch: number;
  #conn: HttpClientConnection;
  #queue: Uint8Array[] = [];
  #queued = 0;
  #inFlight = false;
  #flushTimer: Timer | undefined;
  #closed = false;

  constructor(
    host: Host,
    target: HttpTarget,
    opts: ClientPathOptions,
    token: string,
    mode: HttpMode,
  ) {
    this.#host = host;
    this.#target = target;
    this.#opts = opts;
    this.#path = `${target.basePath}/up?s=${token}&m=${mode}`;
    this.url = `http://${target.authority}${this.#path}`;
    this.headers = [['Content-Type', 'application/octet-stream'], ...(opts.headers ?? [])];
    this.#maxQueued = opts.maxQueuedBytes ?? DEFAULT_MAX_QUEUED_BYTES;
    this.#maxBatch = opts.maxBatchBytes ?? DEFAULT_MAX_BATCH_BYTES;
    // Connect now, so the POST connection's handshake runs alongside the down-stream's.
    this.#conn = this.#connect();
  }

  /** The client's view: the POST's URL and fields, and its connection's endpoints. */
  view(): OuterView {
    return this.#conn.view(this.url, [['Host', this.#target.authority], ...this.headers]);
  }

  /** Queues a datagram for the next POST. false: closed or over the bound. */
  push(datagram: Uint8Array): boolean {
    if (this.#closed || this.#queued + datagram.length > this.#maxQueued) return false;
    this.#queue.push(datagram.slice());
    this.#queued += datagram.length;
    // Same virtual instant: whatever else is sent now rides in the same POST.
    if (!this.#inFlight && this.#flushTimer === undefined) {
      this.#flushTimer = this.#host.net.after(0, () => {
        this.#flushTimer = undefined;
        this.#flush();
      });
    }
    return true;
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#flushTimer?.cancel();
    this.#queue = [];
    this.#conn.close();
  }

  #connect(): HttpClientConnection {
    const c = new HttpClientConnection(this.#host, this.#target, this.#opts);
    c.onFail = (r) => {
      if (!this.#closed) this.onFail(r);
    };
    // A server that ends keep-alive is fine: the next POST opens a new connection.
    c.onIdleClose = () => {};
    return c;
  }

  #flush(): void {
    if (this.#closed || this.#inFlight || this.#queue.length === 0) return;
    let n = 0;
    let bytes = 0;
    for (const d of this.#queue) {
      const add = d.length + RECORD_HEADER_BYTES;
      if (n > 0 && bytes + add > this.#maxBatch) break;
      n++;
      bytes += add;
    }
    const batch = this.#queue.splice(0, n);
    for (const d of batch) this.#queued -= d.length;
    if (this.#conn.done) this.#conn = this.#connect();
    this.#inFlight = true;
    const sent = this.#conn.request('POST', this.#path, this.headers, encodeRecords(batch), {
      onHead: (h) => {
        if (h.status < 200 || h.status >= 300) {
          this.close();
          this.onFail(`${PathError.HTTP_STATUS}: POST ${h.status} ${h.reason}`);
          return;
        }
        const ms = this.#host.now - (sent.sentAt ?? sent.writtenAt);
        this.firstAnswerMs ??= ms;
        this.onAnswer(ms);
      },
      onBody: () => {},
      onEnd: () => {
        this.#inFlight = false;
        this.#flush();
      },
    });
  }
}

// ---- relay: connections ----

const watchers = new WeakMap<TcpConnection, Set<(reason: string) => void>>();

/**
 * Calls `fn` once when a server-side connection ends (closed or failed). serveConnection leaves
 * onClose and onError free; several parties (the relay's bookkeeping, a held poll, a stream, a
 * WebSocket) share them through this. Returns the way to stop watching.
 */
export function onConnectionGone(conn: TcpConnection, fn: (reason: string) => void): () => void {
  let set = watchers.get(conn);
  if (set === undefined) {
    const all = new Set<(reason: string) => void>();
    set = all;
    watchers.set(conn, all);
    const fire = (reason: string) => {
      for (const f of [...all]) f(reason);
      all.clear();
    };
    conn.onClose = () => fire(PathError.CLOSED);
    conn.onError = (e) => fire(netErrorReason(e));
  }
  const s = set;
  s.add(fn);
  return () => s.delete(fn);
}

// ---- relay: sessions ----

/** A session's way down to the client (one streaming response, or the poll being held). */
export interface DownChannel {
  /** Datagrams were queued: take them now or when possible. */
  kick(): void;
  /** The relay is closing, or a newer down request replaces this one. */
  close(): void;
}

export interface RelaySession {
  readonly id: string;
  readonly token: string;
  readonly mode: HttpMode;
  queue: Uint8Array[];
  queuedBytes: number;
  down: DownChannel | undefined;
  idle: Timer | undefined;
}

export interface HttpSessionOptions {
  /** Bytes of datagrams waiting for the client per session (default 1 MiB). */
  readonly maxQueuedBytes?: number;
  /** A session with no down channel and no request for this long is forgotten (default 60 s). */
  readonly sessionIdleMs?: number;
}

/** The relay's view of one request: peer (the proxy, when proxied), itself, target, fields. */
export function observedView(req: HttpServerRequest): OuterView {
  const c = req.conn;
  const headers: [string, string][] = req.head.headers.map(([k, v]) => [k.toLowerCase(), v]);
  const view: OuterView = {
    srcAddr: c.remote.addr,
    srcPort: c.remote.port,
    dstAddr: c.local.addr,
    dstPort: c.local.port,
    url: req.head.target,
    headers,
  };
  const host = headers.find(([k]) => k === 'host')?.[1];
  if (host !== undefined) view.host = host;
  return view;
}

export class HttpSessionTable {
  onDatagram: (datagram: Uint8Array, pathId: string, info: PathInfo) => void = () => {};
  onPathClose: (pathId: string, reason: string) => void = () => {};
  readonly host: Host;
  readonly stats: SimRelayStats;
  readonly #maxQueued: number;
  readonly #idleMs: number;
  readonly #byToken = new Map<string, RelaySession>();
  readonly #byId = new Map<string, RelaySession>();

  constructor(host: Host, stats: SimRelayStats, opts: HttpSessionOptions = {}) {
    this.host = host;
    this.stats = stats;
    this.#maxQueued = opts.maxQueuedBytes ?? DEFAULT_MAX_QUEUED_BYTES;
    this.#idleMs = opts.sessionIdleMs ?? 60_000;
  }

  /** Answers an error and counts it. */
  reject(res: HttpResponder, status: number): void {
    this.stats.httpRejected++;
    res.writeHead(status, [
      ['Content-Length', '0'],
      ['Cache-Control', 'no-store'],
    ]);
    res.end();
  }

  /**
   * The session named by the request's `s` parameter, made on first sight; undefined (the
   * request answered with an error) for a bad token or one already used with the other mode.
   */
  session(req: HttpServerRequest, res: HttpResponder, mode: HttpMode): RelaySession | undefined {
    const token = parseQuery(req.head.target).get('s');
    if (token === undefined || !isSessionToken(token)) {
      this.reject(res, 400);
      return undefined;
    }
    let s = this.#byToken.get(token);
    if (s === undefined) {
      const id = `${mode === HttpMode.STREAM ? 'hs' : 'hp'}:${token}`;
      s = { id, token, mode, queue: [], queuedBytes: 0, down: undefined, idle: undefined };
      this.#byToken.set(token, s);
      this.#byId.set(id, s);
    } else if (s.mode !== mode) {
      this.reject(res, 409);
      return undefined;
    }
    return s;
  }

  /** POST <base>/up: the records in the body are datagrams from the client. */
  handleUp(req: HttpServerRequest, res: HttpResponder, info: PathInfo): void {
    const m = parseQuery(req.head.target).get('m');
    if (m !== HttpMode.STREAM && m !== HttpMode.POLL) {
      this.reject(res, 400);
      return;
    }
    const s = this.session(req, res, m);
    if (s === undefined) return;
    const datagrams = decodeRecords(req.body);
    if (datagrams === undefined) {
      this.reject(res, 400);
      return;
    }
    res.writeHead(204, [['Cache-Control', 'no-store']]);
    res.end();
    this.touch(s);
    for (const d of datagrams) {
      if (d.length === 0) continue;
      this.stats.datagramsReceived++;
      this.onDatagram(d, s.id, info);
    }
  }

  send(pathId: string, datagram: Uint8Array): boolean {
    const s = this.#byId.get(pathId);
    if (s === undefined) return false;
    if (datagram.length === 0 || datagram.length > MAX_DATAGRAM_BYTES) return false;
    if (s.queuedBytes + datagram.length > this.#maxQueued) return false;
    s.queue.push(datagram.slice());
    s.queuedBytes += datagram.length;
    this.stats.datagramsSent++;
    s.down?.kick();
    return true;
  }

  /** Takes queued datagrams, at most `maxBytes` of records (at least one datagram). */
  take(s: RelaySession, maxBytes = Number.POSITIVE_INFINITY): Uint8Array[] {
    let n = 0;
    let bytes = 0;
    for (const d of s.queue) {
      const add = d.length + RECORD_HEADER_BYTES;
      if (n > 0 && bytes + add > maxBytes) break;
      n++;
      bytes += add;
    }
    const out = s.queue.splice(0, n);
    for (const d of out) s.queuedBytes -= d.length;
    return out;
  }

  /** A down channel attaches (replacing any older one). */
  attach(s: RelaySession, down: DownChannel): void {
    const old = s.down;
    s.down = down;
    old?.close();
    s.idle?.cancel();
    s.idle = undefined;
  }

  /** A down channel ended; the session now waits for the next request, or expires. */
  detach(s: RelaySession, down: DownChannel): void {
    if (s.down !== down) return;
    s.down = undefined;
    this.touch(s);
  }

  /** Activity: restarts the idle timer while no down channel is attached. */
  touch(s: RelaySession): void {
    s.idle?.cancel();
    s.idle = undefined;
    if (s.down !== undefined || !this.#byId.has(s.id)) return;
    s.idle = this.host.net.after(this.#idleMs, () => this.#expire(s));
  }

  close(): void {
    for (const s of this.#byId.values()) {
      s.idle?.cancel();
      s.down?.close();
      s.down = undefined;
    }
    this.#byId.clear();
    this.#byToken.clear();
  }

  #expire(s: RelaySession): void {
    this.#byId.delete(s.id);
    this.#byToken.delete(s.token);
    this.onPathClose(s.id, `${PathError.CLOSED}: session expired`);
  }
}
