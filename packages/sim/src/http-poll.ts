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

export class HttpPollClientPath extends ClientPathBase {
  readonly token: string;
  readonly uplink: HttpUplink;
  /** Polls completed (answers received). */
  polls = 0;
  readonly #target: HttpTarget;
  readonly #opts: ClientPathOptions;
  readonly #headers: HttpHeaders;
  #conn: HttpClientConnection | undefined;

  constructor(host: Host, opts: ClientPathOptions) {
    const id = nextPathId(host, 'hp');
    super(host, id, opts);
    const rng = opts.rng ?? defaultRng(host, id);
    this.token = hex(randomBytes(rng, 16));
    this.#opts = opts;
    this.#target = httpTarget(host, opts);
    this.#headers = [
      ['Accept', 'application/octet-stream'],
      ['Cache-Control', 'no-cache'],
      ...(opts.headers ?? []),
    ];
    this.uplink = new HttpUplink(host, this.#target, opts, this.token, HttpMode.POLL);
    this.uplink.onFail = (r) => this.fail(r);
    // Any answer from the relay proves the path works end to end.
    this.uplink.onAnswer = () => this.opened();
    this.#poll();
  }

  get info(): PathInfo {
    return { encapsulation: Encapsulation.HTTP_POLL, view: this.uplink.view() };
  }

  #poll(): void {
    if (this.isDone) return;
    let c = this.#conn;
    if (c === undefined || c.done) {
      c = new HttpClientConnection(this.host, this.#target, this.#opts);
      c.onFail = (r) => this.fail(r);
      c.onIdleClose = () => {};
      this.#conn = c;
    }
    const reader = new RecordReader();
    const got: Uint8Array[] = [];
    reader.onRecord = (d) => {
      if (d.length > 0) got.push(d);
    };
    let ok = false;
    c.request('GET', `${this.#target.basePath}/poll?s=${this.token}`, this.#headers, undefined, {
      onHead: (h) => {
        ok = h.status === 200 || h.status === 204;
        if (!ok) this.fail(`${PathError.HTTP_STATUS}: poll ${h.status} ${h.reason}`);
      },
      onBody: (b) => {
        if (ok && !reader.push(b)) this.fail(`${PathError.PROTOCOL}: bad record length`);
      },
      onEnd: () => {
        if (!ok || this.isDone) return;
        if (!reader.atBoundary) {
          this.fail(`${PathError.PROTOCOL}: truncated record`);
          return;
        }
        this.polls++;
        this.opened();
        for (const d of got) this.delivered(d);
        // Ask again at once: a poll is always outstanding.
        this.#poll();
      },
    });
  }

  protected override sendsBeforeOpen(): boolean {
    return true;
  }

  protected transmit(datagram: Uint8Array): boolean {
    return this.uplink.push(datagram);
  }

  protected shutdown(): void {
    this.uplink.close();
    this.#conn?.close();
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
    const body = encodeRecords(table.take(s, opts.maxBytes));
    res.writeHead(200, [
      ['Content-Type', 'application/octet-stream'],
      ['Content-Length', String(body.length)],
      ...headers,
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
