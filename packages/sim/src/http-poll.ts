/**
 * HTTP long polling: batched POSTs upstream (http-session.ts); downstream the client keeps one
 * `GET <base>/poll?s=<token>` outstanding. The relay answers it as soon as at least one datagram
 * is queued (200, a Content-Length body of records, at most maxPollBytes) or after holdMs (default
 * 25 s) with 204; the client asks again at once. Every answer is a complete response, so it works
 * through proxies that buffer responses, at the cost of one round trip per answer under load.
 */
import { Encapsulation, type PathInfo } from '@roamlink/core';
import type { Host, HttpHeaders, HttpResponder, HttpServerRequest, Timer } from '@roamlink/netsim';
import { encodeRecords, RecordReader } from './framing.ts';
import { HttpClientConnection, type HttpTarget, httpTarget } from './http-client.ts';
import {
  type DownChannel,
  HttpMode,
  type HttpSessionTable,
  HttpUplink,
  onConnectionGone,
  SEQ_HEADER,
  seqField,
} from './http-session.ts';
import {
  ClientPathBase,
  type ClientPathOptions,
  defaultRng,
  hex,
  nextPathId,
  PathError,
  randomBytes,
} from './types.ts';

export const DEFAULT_POLL_HOLD_MS = 25_000;
export const DEFAULT_MAX_POLL_BYTES = 65_536;

/**
 * The client's polling loop, shared by polling paths and by streaming paths that fell back: one
 * `GET <base>/poll?s=<token>` outstanding at a time, on its own connection (reopened when the
 * server ends keep-alive), the next sent as soon as an answer is complete.
 */
export class HttpPoller {
  /** An answer (200 or 204) arrived complete; `first` is its `Roamlink-Seq`, if any. */
  onAnswer: (datagrams: Uint8Array[], first: number | undefined) => void = () => {};
  onFail: (reason: string) => void = () => {};
  /** Fields for each poll only (say, `Roamlink-Ack`). */
  perRequest: () => HttpHeaders = () => [];
  /** Polls completed (answers received). */
  polls = 0;
  readonly #host: Host;
  readonly #target: HttpTarget;
  readonly #opts: ClientPathOptions;
  readonly #token: string;
  readonly #headers: HttpHeaders;
  #conn: HttpClientConnection | undefined;
  #closed = false;

  constructor(host: Host, target: HttpTarget, opts: ClientPathOptions, token: string) {
    this.#host = host;
    this.#target = target;
    this.#opts = opts;
    this.#token = token;
    this.#headers = [
      ['Accept', 'application/octet-stream'],
      ['Cache-Control', 'no-cache'],
      ...(opts.headers ?? []),
    ];
  }

  /** Sends the first poll (the next ones follow by themselves). */
  start(): void {
    this.#poll();
  }

  close(): void {
    this.#closed = true;
    this.#conn?.close();
  }

  #poll(): void {
    if (this.#closed) return;
    let c = this.#conn;
    if (c === undefined || c.done) {
      c = new HttpClientConnection(this.#host, this.#target, this.#opts);
      c.onFail = (r) => {
        if (!this.#closed) this.onFail(r);
      };
      c.onIdleClose = () => {};
      this.#conn = c;
    }
    const reader = new RecordReader();
    const got: Uint8Array[] = [];
    reader.onRecord = (d) => {
      if (d.length > 0) got.push(d);
    };
    let ok = false;
    let first: number | undefined;
    const headers = [...this.#headers, ...this.perRequest()];
    c.request('GET', `${this.#target.basePath}/poll?s=${this.#token}`, headers, undefined, {
      onHead: (h) => {
        ok = h.status === 200 || h.status === 204;
        if (!ok) this.#fail(`${PathError.HTTP_STATUS}: poll ${h.status} ${h.reason}`);
        else if (h.status === 200) first = seqField(h.headers, SEQ_HEADER);
      },
      onBody: (b) => {
        if (ok && !reader.push(b)) this.#fail(`${PathError.PROTOCOL}: bad record length`);
      },
      onEnd: () => {
        if (!ok || this.#closed) return;
        if (!reader.atBoundary || (first !== undefined && Number.isNaN(first))) {
          this.#fail(`${PathError.PROTOCOL}: truncated record or bad ${SEQ_HEADER}`);
          return;
        }
        this.polls++;
        this.onAnswer(got, first);
        // Ask again at once: a poll is always outstanding.
        this.#poll();
      },
    });
  }

  #fail(reason: string): void {
    if (this.#closed) return;
    this.close();
    this.onFail(reason);
  }
}

export class HttpPollClientPath extends ClientPathBase {
  readonly token: string;
  readonly uplink: HttpUplink;
  readonly #poller: HttpPoller;

  constructor(host: Host, opts: ClientPathOptions) {
    const id = nextPathId(host, 'hp');
    super(host, id, opts);
    const rng = opts.rng ?? defaultRng(host, id);
    this.token = hex(randomBytes(rng, 16));
    const target = httpTarget(host, opts);
    this.uplink = new HttpUplink(host, target, opts, this.token, HttpMode.POLL);
    this.uplink.onFail = (r) => this.fail(r);
    // Any answer from the relay proves the path works end to end.
    this.uplink.onAnswer = () => this.opened();
    this.#poller = new HttpPoller(host, target, opts, this.token);
    this.#poller.onFail = (r) => this.fail(r);
    this.#poller.onAnswer = (got) => {
      this.opened();
      for (const d of got) this.delivered(d);
    };
    this.#poller.start();
  }

  /** Polls completed (answers received). */
  get polls(): number {
    return this.#poller.polls;
  }

  get info(): PathInfo {
    return { encapsulation: Encapsulation.HTTP_POLL, view: this.uplink.view() };
  }

  protected override sendsBeforeOpen(): boolean {
    return true;
  }

  protected transmit(datagram: Uint8Array): boolean {
    return this.uplink.push(datagram);
  }

  protected shutdown(): void {
    this.uplink.close();
    this.#poller.close();
  }
}

/**
 * Relay half: holds `GET <base>/poll?s=<token>` until a datagram is queued (answered in the same
 * instant, so datagrams sent together leave together) or `holdMs` passes (204).
 */
export function handlePoll(
  table: HttpSessionTable,
  req: HttpServerRequest,
  res: HttpResponder,
  opts: { holdMs: number; maxBytes: number },
): void {
  const s = table.session(req, res, HttpMode.POLL);
  if (s === undefined) return;
  const net = table.host.net;
  const conn = req.conn;
  let answerTimer: Timer | undefined;
  let ended = false;
  let unwatch: () => void = () => {};
  const finish = () => {
    ended = true;
    answerTimer?.cancel();
    hold.cancel();
    unwatch();
    table.detach(s, down);
  };
  const answer = (empty = false) => {
    answerTimer = undefined;
    if (ended) return;
    finish();
    if (!conn.writable) return;
    const headers: [string, string][] = [['Cache-Control', 'no-store']];
    if (empty || s.queue.length === 0) {
      res.writeHead(204, headers);
      res.end();
      return;
    }
    const first = s.headSeq;
    const body = encodeRecords(table.take(s, opts.maxBytes));
    res.writeHead(200, [
      ['Content-Type', 'application/octet-stream'],
      ['Content-Length', String(body.length)],
      ...headers,
      // A streaming session that fell back numbers its datagrams (http-session.ts).
      ...(s.mode === HttpMode.STREAM ? [[SEQ_HEADER, String(first)] as [string, string]] : []),
    ]);
    res.end(body);
  };
  const down: DownChannel = {
    kick: () => {
      answerTimer ??= net.after(0, () => answer());
    },
    // Superseded by a newer poll, or the relay closing: answer empty now; data waits for the new.
    close: () => answer(true),
  };
  const hold = net.after(opts.holdMs, () => answer());
  table.attach(s, down);
  unwatch = onConnectionGone(conn, finish);
  if (s.queue.length > 0) down.kick();
}
