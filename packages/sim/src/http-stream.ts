/**
 * HTTP streaming: batched POSTs upstream (http-session.ts) and one long `GET <base>/down?s=<token>`
 * whose chunked response (RFC 9112 §7.1) carries records downstream as they come.
 *
 * The relay writes an empty record, the stream-open marker, as soon as the GET arrives, and again
 * as a heartbeat while idle. A proxy that buffers responses until they end holds that marker back
 * for ever; the client notices (it does not need to be told about the proxy): when no byte of the
 * body arrived within factor × the first POST's answer time (clamped; both measured from when the
 * request could leave), it fails the path with "buffered" so the caller falls back to polling.
 */
import { Encapsulation, type PathInfo } from '@roamlink/core';
import type { Host, HttpHeaders, HttpResponder, HttpServerRequest, Timer } from '@roamlink/netsim';
import { EMPTY_RECORD, encodeRecords, RecordReader } from './framing.ts';
import { HttpClientConnection, httpTarget } from './http-client.ts';
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

export class HttpStreamClientPath extends ClientPathBase {
  /** The session token tying this path's requests together (32 hex digits). */
  readonly token: string;
  readonly uplink: HttpUplink;
  readonly down: HttpClientConnection;
  readonly #reader = new RecordReader();
  readonly #factor: number;
  readonly #minMs: number;
  readonly #maxMs: number;
  #getSentAt: number | undefined;
  #bodySeen = false;
  #timer: Timer | undefined;

  constructor(host: Host, opts: ClientPathOptions) {
    const id = nextPathId(host, 'hs');
    super(host, id, opts);
    const rng = opts.rng ?? defaultRng(host, id);
    this.token = hex(randomBytes(rng, 16));
    this.#factor = opts.bufferDetect?.factor ?? 1.5;
    this.#minMs = opts.bufferDetect?.minMs ?? 100;
    this.#maxMs = opts.bufferDetect?.maxMs ?? 3000;
    const target = httpTarget(host, opts);
    this.uplink = new HttpUplink(host, target, opts, this.token, HttpMode.STREAM);
    this.uplink.onFail = (r) => this.fail(r);
    this.uplink.onAnswer = () => this.#arm();

    this.down = new HttpClientConnection(host, target, opts);
    this.down.onFail = (r) => this.fail(r);
    this.down.onIdleClose = () => this.fail(`${PathError.CLOSED}: down-stream connection closed`);
    this.down.onReady = () => {
      // The GET, written at once, leaves now: the buffering clock starts.
      this.#getSentAt = host.now;
      this.#arm();
    };
    const headers: HttpHeaders = [
      ['Accept', 'application/octet-stream'],
      ['Cache-Control', 'no-cache'],
      ...(opts.headers ?? []),
    ];
    this.down.request('GET', `${target.basePath}/down?s=${this.token}`, headers, undefined, {
      onHead: (h) => {
        if (h.status !== 200) this.fail(`${PathError.HTTP_STATUS}: GET ${h.status} ${h.reason}`);
      },
      onBody: (b) => {
        if (!this.#bodySeen) {
          this.#bodySeen = true;
          this.#timer?.cancel();
          this.#timer = undefined;
        }
        if (!this.#reader.push(b)) this.fail(`${PathError.PROTOCOL}: bad record length`);
      },
      onEnd: () => this.fail(`${PathError.CLOSED}: down-stream ended`),
    });
    this.#reader.onRecord = (d) => {
      // The first record (the marker) says the stream flows end to end.
      this.opened();
      if (d.length > 0) this.delivered(d);
    };
  }

  get info(): PathInfo {
    return { encapsulation: Encapsulation.HTTP_STREAM, view: this.uplink.view() };
  }

  /** The deadline for the first body byte, given what is known now. */
  #arm(): void {
    const start = this.#getSentAt;
    if (start === undefined || this.#bodySeen || this.isDone) return;
    const t = this.uplink.firstAnswerMs;
    const wait =
      t === undefined
        ? this.#maxMs
        : Math.min(this.#maxMs, Math.max(this.#minMs, this.#factor * t));
    const at = Math.max(this.host.now, start + wait);
    if (this.#timer !== undefined && this.#timer.at <= at) return;
    this.#timer?.cancel();
    this.#timer = this.host.net.at(at, () => {
      this.#timer = undefined;
      if (!this.#bodySeen) this.fail(PathError.BUFFERED);
    });
  }

  protected override sendsBeforeOpen(): boolean {
    // POSTs need no open stream: the first leaves with the first datagrams.
    return true;
  }

  protected transmit(datagram: Uint8Array): boolean {
    return this.uplink.push(datagram);
  }

  protected shutdown(): void {
    this.#timer?.cancel();
    this.#timer = undefined;
    this.uplink.close();
    this.down.close();
  }
}

/**
 * Relay half: `GET <base>/down?s=<token>` answers 200 with a chunked body that stays open: the
 * marker at once, then records as datagrams are queued (batched per instant), and a heartbeat.
 */
export function handleStreamDown(
  table: HttpSessionTable,
  req: HttpServerRequest,
  res: HttpResponder,
  heartbeatMs: number,
): void {
  const s = table.session(req, res, HttpMode.STREAM);
  if (s === undefined) return;
  const net = table.host.net;
  const conn = req.conn;
  let flushTimer: Timer | undefined;
  let heartbeat: Timer | undefined;
  let ended = false;
  let unwatch: () => void = () => {};
  const beat = () => {
    heartbeat = net.after(heartbeatMs, () => {
      if (ended) return;
      if (conn.writable) res.write(EMPTY_RECORD);
      beat();
    });
  };
  const stop = () => {
    if (ended) return;
    ended = true;
    flushTimer?.cancel();
    heartbeat?.cancel();
    unwatch();
    table.detach(s, down);
  };
  const flush = () => {
    flushTimer = undefined;
    if (ended || !conn.writable || s.queue.length === 0) return;
    res.write(encodeRecords(table.take(s)));
  };
  const down: DownChannel = {
    kick: () => {
      flushTimer ??= net.after(0, flush);
    },
    close: () => {
      if (ended) return;
      stop();
      res.end();
    },
  };
  res.writeHead(200, [
    ['Content-Type', 'application/octet-stream'],
    ['Cache-Control', 'no-store'],
    // Asks reverse proxies that honour it (nginx) not to buffer; a hint, never relied on.
    ['X-Accel-Buffering', 'no'],
  ]);
  res.write(EMPTY_RECORD);
  table.attach(s, down);
  unwatch = onConnectionGone(conn, stop);
  beat();
  if (s.queue.length > 0) down.kick();
}
