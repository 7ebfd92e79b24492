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
 * - for streaming sessions, the fallback to polling (README.md, "Buffering proxies"): the relay
 *   numbers the datagrams it queues for the client; while the client has not seen a byte of its
 *   stream it says so on every request (`Roamlink-Ack: <n>`, "I hold every datagram below n"), and
 *   the relay keeps copies of what it wrote to the stream and answers that client's POSTs with the
 *   copies it lacks. A proxy that buffers the stream therefore delays nothing (the handshake's
 *   answer comes back with the POST that carried it); when the client gives up on the stream it
 *   polls the same token, and the relay moves the copies back to the head of the queue.
 */
import {
  seqField as coreSeqField,
  Encapsulation,
  type HttpDown,
  HttpMode,
  type HttpSession,
  HttpSessions,
  isSessionToken,
  type OuterView,
  type PathInfo,
} from '@roamlink/core';
import {
  type Host,
  type HttpHeaders,
  type HttpResponder,
  type HttpServerRequest,
  headerValue,
  type TcpConnection,
  type Timer,
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

export { HttpMode, isSessionToken };

export const DEFAULT_MAX_BATCH_BYTES = 65_536;

/**
 * Request field of a streaming path's client that has not (yet) seen a byte of its stream: the
 * number of datagrams of this session it holds, all those numbered below (README.md).
 */
export const ACK_HEADER = 'Roamlink-Ack';
/** Response field: the number of the first datagram in this body (streams, POST and poll answers). */
export const SEQ_HEADER = 'Roamlink-Seq';

/**
 * A sequence-number field's value (RFC 9110 §5.5: surrounding spaces ignored): undefined when
 * absent, NaN when malformed (not 1 to 15 decimal digits).
 */
export function seqField(headers: HttpHeaders, name: string): number | undefined {
  return coreSeqField(headerValue(headers, name));
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
  /**
   * A POST's answer carried datagrams (streaming sessions whose stream is not confirmed): the
   * first is numbered `first`, the others follow.
   */
  onRecords: (first: number, datagrams: Uint8Array[]) => void = () => {};
  /** Fields for the next POST only (kept out of the view, as Content-Length is). */
  perRequest: () => HttpHeaders = () => [];
  /** Time from the first POST leaving until its answer. */
  firstAnswerMs: number | undefined;
  readonly headers: HttpHeaders;
  readonly #host: Host;
  readonly #target: HttpTarget;
  readonly #opts: ClientPathOptions;
  readonly #token: string;
  #path: string;
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
    this.#token = token;
    this.#path = `${target.basePath}/up?s=${token}&m=${mode}`;
    this.headers = [['Content-Type', 'application/octet-stream'], ...(opts.headers ?? [])];
    this.#maxQueued = opts.maxQueuedBytes ?? DEFAULT_MAX_QUEUED_BYTES;
    this.#maxBatch = opts.maxBatchBytes ?? DEFAULT_MAX_BATCH_BYTES;
    // Connect now, so the POST connection's handshake runs alongside the down-stream's.
    this.#conn = this.#connect();
  }

  /** The URL of the next POST. */
  get url(): string {
    return `http://${this.#target.authority}${this.#path}`;
  }

  /** The POSTs from now on name another mode (a streaming path falling back to polling). */
  setMode(mode: HttpMode): void {
    this.#path = `${this.#target.basePath}/up?s=${this.#token}&m=${mode}`;
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
    const headers = [...this.headers, ...this.perRequest()];
    let first: number | undefined;
    const body: Uint8Array[] = [];
    const sent = this.#conn.request('POST', this.#path, headers, encodeRecords(batch), {
      onHead: (h) => {
        if (h.status < 200 || h.status >= 300) {
          this.close();
          this.onFail(`${PathError.HTTP_STATUS}: POST ${h.status} ${h.reason}`);
          return;
        }
        const ms = this.#host.now - (sent.sentAt ?? sent.writtenAt);
        this.firstAnswerMs ??= ms;
        if (h.status === 200) first = seqField(h.headers, SEQ_HEADER);
        this.onAnswer(ms);
      },
      onBody: (b) => {
        if (first !== undefined) body.push(b);
      },
      onEnd: () => {
        if (this.#closed) return;
        this.#inFlight = false;
        if (first !== undefined) {
          const ds = decodeRecords(concat(body));
          if (ds === undefined || Number.isNaN(first)) {
            this.close();
            this.onFail(`${PathError.PROTOCOL}: bad POST answer`);
            return;
          }
          const got = ds.filter((d) => d.length > 0);
          if (got.length > 0) this.onRecords(first, got);
        }
        this.#flush();
      },
    });
  }
}

function concat(parts: readonly Uint8Array[]): Uint8Array {
  if (parts.length === 1) return parts[0]!;
  let n = 0;
  for (const p of parts) n += p.length;
  const out = new Uint8Array(n);
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
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
export type DownChannel = HttpDown;
/** A session: the core's table keeps it (`HttpSessions`). */
export type RelaySession = HttpSession;

export interface HttpSessionOptions {
  /** Bytes of datagrams waiting for the client per session (default 1 MiB); copies as much again. */
  readonly maxQueuedBytes?: number;
  /** A session with no down channel and no request for this long is forgotten (default 60 s). */
  readonly sessionIdleMs?: number;
  /** Largest body of records in a POST's answer (default 65 536 bytes). */
  readonly maxAnswerBytes?: number;
  /**
   * A stream open this long counts as flowing even if the client never said so (default 10 s;
   * clients give up on a silent stream within 3 s): its copies are dropped.
   */
  readonly streamTrustMs?: number;
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

/**
 * The relay's session table on the simulator: the core's `HttpSessions` (the same code the Node
 * and Fetch relays run) with virtual-time timers, and the POST route.
 */
export class HttpSessionTable {
  onDatagram: (datagram: Uint8Array, pathId: string, info: PathInfo) => void = () => {};
  onPathClose: (pathId: string, reason: string) => void = () => {};
  readonly host: Host;
  readonly stats: SimRelayStats;
  readonly #sessions: HttpSessions;

  constructor(host: Host, stats: SimRelayStats, opts: HttpSessionOptions = {}) {
    this.host = host;
    this.stats = stats;
    this.#sessions = new HttpSessions({
      maxQueuedBytes: opts.maxQueuedBytes ?? DEFAULT_MAX_QUEUED_BYTES,
      maxBatchBytes: opts.maxAnswerBytes ?? DEFAULT_MAX_BATCH_BYTES,
      sessionIdleMs: opts.sessionIdleMs ?? 60_000,
      streamTrustMs: opts.streamTrustMs ?? 10_000,
      timers: {
        set: (fn, ms) => host.net.after(ms, fn),
        clear: (t) => (t as Timer).cancel(),
      },
      onExpired: (s) => this.onPathClose(s.id, `${PathError.CLOSED}: session expired`),
    });
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
   * request answered with an error) for a bad token or `Roamlink-Ack`, or a token already used
   * with the other mode. A streaming token asked in polling mode with `Roamlink-Ack` is the
   * client falling back: the session switches to polling for good.
   */
  session(req: HttpServerRequest, res: HttpResponder, mode: HttpMode): RelaySession | undefined {
    const token = parseQuery(req.head.target).get('s') ?? null;
    const s = this.#sessions.open(token, seqField(req.head.headers, ACK_HEADER), mode);
    if (typeof s === 'number') {
      this.reject(res, s);
      return undefined;
    }
    return s;
  }

  /** What a session's datagrams arrive as: a streaming session that fell back is polled. */
  encapsulation(s: RelaySession): Encapsulation {
    return this.#sessions.modeOf(s) === HttpMode.STREAM
      ? Encapsulation.HTTP_STREAM
      : Encapsulation.HTTP_POLL;
  }

  /** POST <base>/up: the records in the body are datagrams from the client. */
  handleUp(req: HttpServerRequest, res: HttpResponder, view: OuterView): void {
    const m = parseQuery(req.head.target).get('m');
    if (m !== HttpMode.STREAM && m !== HttpMode.POLL) {
      this.reject(res, 400);
      return;
    }
    const datagrams = decodeRecords(req.body);
    if (datagrams === undefined) {
      this.reject(res, 400);
      return;
    }
    const s = this.session(req, res, m);
    if (s === undefined) return;
    const sessions = this.#sessions;
    sessions.touch(s);
    const info: PathInfo = { encapsulation: this.encapsulation(s), view };
    for (const d of datagrams) {
      if (d.length === 0) continue;
      if (!sessions.live(s)) break;
      this.stats.datagramsReceived++;
      this.onDatagram(d, s.id, info);
    }
    // After handing up, so that what the relay answers to these datagrams can ride along.
    const answer = sessions.answerPost(s, seqField(req.head.headers, ACK_HEADER));
    if (answer === undefined || answer.datagrams.length === 0) {
      res.writeHead(204, [['Cache-Control', 'no-store']]);
      res.end();
      return;
    }
    const body = encodeRecords(answer.datagrams);
    res.writeHead(200, [
      ['Content-Type', 'application/octet-stream'],
      ['Content-Length', String(body.length)],
      ['Cache-Control', 'no-store'],
      [SEQ_HEADER, String(answer.first)],
    ]);
    res.end(body);
  }

  send(pathId: string, datagram: Uint8Array): boolean {
    if (datagram.length === 0 || datagram.length > MAX_DATAGRAM_BYTES) return false;
    if (this.#sessions.queue(pathId, datagram) !== 'queued') return false;
    this.stats.datagramsSent++;
    return true;
  }

  /**
   * Takes queued datagrams, at most `maxBytes` of records (at least one datagram); the first is
   * numbered `s.headSeq` as it was before the call. Copies stay while the session is unconfirmed.
   */
  take(s: RelaySession, maxBytes = Number.POSITIVE_INFINITY): Uint8Array[] {
    return this.#sessions.take(s, maxBytes);
  }

  /** A stream response began: unless the client says otherwise, trust it after a while. */
  streamStarted(s: RelaySession): void {
    this.#sessions.streamStarted(s);
  }

  /** A down channel attaches (replacing any older one). */
  attach(s: RelaySession, down: DownChannel): void {
    this.#sessions.attach(s, down);
  }

  /** A down channel ended; the session now waits for the next request, or expires. */
  detach(s: RelaySession, down: DownChannel): void {
    this.#sessions.detach(s, down);
  }

  close(): void {
    this.#sessions.close();
  }
}
