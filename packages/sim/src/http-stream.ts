/**
 * HTTP streaming: batched POSTs upstream (http-session.ts) and one long `GET <base>/down?s=<token>`
 * whose chunked response (RFC 9112 §7.1) carries records downstream as they come.
 *
 * The relay writes an empty record, the stream-open marker, as soon as the GET arrives, and again
 * as a heartbeat while idle. A proxy that buffers responses until they end holds that marker back
 * for ever; the client notices by itself (nobody tells it about the proxy) and falls back to long
 * polling on the same token, losing nothing and costing no round trip:
 * - until the first byte of its stream arrives, each of its requests carries `Roamlink-Ack` (how
 *   many of the session's numbered datagrams it holds), and the relay answers its POSTs with the
 *   copies of what it wrote to the stream that the client lacks. The answer to the POST that
 *   carried the handshake brings the handshake's answer back, stream or no stream.
 * - when no byte of the stream arrived within factor × the first POST's answer time (clamped;
 *   both measured from when the request could leave), the path polls the same token instead
 *   (http-poll.ts) with its `Roamlink-Ack`; the relay ends the stream and queues again what the
 *   client lacks. The path now reports HTTP polling (`info`) and calls `onInfoChange`, so that its
 *   owner can register it again as what it is.
 */
import {
  type BufferDetect,
  bufferDetect,
  bufferWaitMs,
  Encapsulation,
  HttpStreamOrder,
  type PathInfo,
} from '@roamlink/core';
import type { Host, HttpHeaders, HttpResponder, HttpServerRequest, Timer } from '@roamlink/netsim';
import { EMPTY_RECORD, encodeRecords, RecordReader } from './framing.ts';
import { HttpClientConnection, type HttpTarget, httpTarget } from './http-client.ts';
import { HttpPoller } from './http-poll.ts';
import {
  ACK_HEADER,
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

export class HttpStreamClientPath extends ClientPathBase {
  /** The session token tying this path's requests together (32 hex digits). */
  readonly token: string;
  readonly uplink: HttpUplink;
  readonly down: HttpClientConnection;
  /** Datagrams that came twice (a POST's answer and the stream both carried them), dropped. */
  duplicatesDropped = 0;
  readonly #reader = new RecordReader();
  readonly #target: HttpTarget;
  readonly #opts: ClientPathOptions;
  readonly #detect: BufferDetect;
  readonly #order = new HttpStreamOrder();
  #getSentAt: number | undefined;
  #timer: Timer | undefined;
  #poller: HttpPoller | undefined;
  /** When the path gave up on its stream and began to poll. */
  fellBackAt: number | undefined;

  constructor(host: Host, opts: ClientPathOptions) {
    const id = nextPathId(host, 'hs');
    super(host, id, opts);
    const rng = opts.rng ?? defaultRng(host, id);
    this.token = hex(randomBytes(rng, 16));
    this.#opts = opts;
    this.#detect = bufferDetect(opts.bufferDetect);
    const target = httpTarget(host, opts);
    this.#target = target;
    this.uplink = new HttpUplink(host, target, opts, this.token, HttpMode.STREAM);
    this.uplink.onFail = (r) => this.fail(r);
    this.uplink.perRequest = () => this.#ack();
    this.uplink.onAnswer = () => {
      // While the stream shows nothing, POST answers carry what the relay sends: the path works.
      this.opened();
      this.#arm();
    };
    this.uplink.onRecords = (first, ds) => this.#take(first, ds);

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
        if (h.status !== 200) {
          this.fail(`${PathError.HTTP_STATUS}: GET ${h.status} ${h.reason}`);
          return;
        }
        const seq = seqField(h.headers, SEQ_HEADER);
        if (seq !== undefined && Number.isNaN(seq))
          this.fail(`${PathError.PROTOCOL}: bad ${SEQ_HEADER}`);
        else this.#order.streamOpened(seq);
      },
      onBody: (b) => {
        if (this.fellBackAt !== undefined) return;
        if (!this.#order.bodySeen) {
          this.#order.bodySeen = true;
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
      if (d.length === 0) return;
      if (this.#order.fromStream()) this.delivered(d);
      else this.duplicatesDropped++;
    };
  }

  get info(): PathInfo {
    const encapsulation =
      this.fellBackAt === undefined ? Encapsulation.HTTP_STREAM : Encapsulation.HTTP_POLL;
    return { encapsulation, view: this.uplink.view() };
  }

  /** `Roamlink-Ack` while no byte of the stream has arrived (for good, once fallen back). */
  #ack(): HttpHeaders {
    const ack = this.#order.ack;
    return ack === undefined ? [] : [[ACK_HEADER, String(ack)]];
  }

  /** Datagrams numbered from `first`: each is delivered once, whichever way it came first. */
  #take(first: number, ds: readonly Uint8Array[]): void {
    for (const [i, d] of ds.entries()) {
      if (this.isDone) return;
      if (this.#order.admit(first + i)) this.delivered(d);
      else this.duplicatesDropped++;
    }
  }

  /** The deadline for the first body byte, given what is known now. */
  #arm(): void {
    const start = this.#getSentAt;
    if (start === undefined || this.#order.bodySeen || this.fellBackAt !== undefined || this.isDone)
      return;
    const wait = bufferWaitMs(this.#detect, this.uplink.firstAnswerMs);
    const at = Math.max(this.host.now, start + wait);
    if (this.#timer !== undefined && this.#timer.at <= at) return;
    this.#timer?.cancel();
    this.#timer = this.host.net.at(at, () => {
      this.#timer = undefined;
      if (!this.#order.bodySeen) this.#fallBack();
    });
  }

  /** The stream is buffered: poll the same token from now on. */
  #fallBack(): void {
    if (this.isDone || this.fellBackAt !== undefined) return;
    this.fellBackAt = this.host.now;
    // Whatever the proxy releases on this connection later is not read: the relay sends it again.
    this.down.close();
    this.uplink.setMode(HttpMode.POLL);
    const p = new HttpPoller(this.host, this.#target, this.#opts, this.token);
    p.perRequest = () => this.#ack();
    p.onFail = (r) => this.fail(r);
    p.onAnswer = (ds, first) => {
      this.opened();
      if (first === undefined) for (const d of ds) this.delivered(d);
      else this.#take(first, ds);
    };
    this.#poller = p;
    p.start();
    this.infoChanged();
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
    this.#poller?.close();
  }
}

/**
 * Relay half: `GET <base>/down?s=<token>` answers 200 with a chunked body that stays open: the
 * marker at once, then records as datagrams are queued (batched per instant), and a heartbeat.
 * `Roamlink-Seq` numbers the first record to come; until the client shows that the stream flows,
 * the session keeps copies of what is written (http-session.ts).
 */
export function handleStreamDown(
  table: HttpSessionTable,
  req: HttpServerRequest,
  res: HttpResponder,
  heartbeatMs: number,
): void {
  const s = table.session(req, res, HttpMode.STREAM);
  if (s === undefined) return;
  if (s.polled) {
    // Fallen back to polling: never back.
    table.reject(res, 409);
    return;
  }
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
    flushTimer?.cancel();
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
    drain: flush,
  };
  res.writeHead(200, [
    ['Content-Type', 'application/octet-stream'],
    ['Cache-Control', 'no-store'],
    // Asks reverse proxies that honour it (nginx) not to buffer; a hint, never relied on.
    ['X-Accel-Buffering', 'no'],
    [SEQ_HEADER, String(s.headSeq)],
  ]);
  res.write(EMPTY_RECORD);
  table.attach(s, down);
  table.streamStarted(s);
  unwatch = onConnectionGone(conn, stop);
  beat();
  if (s.queue.length > 0) down.kick();
}
