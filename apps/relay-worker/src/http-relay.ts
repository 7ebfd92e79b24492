/**
 * The relay half of RLHTTP/1 (packages/sim/README.md, "HTTP streaming and HTTP long polling"; the
 * Node relay's is packages/node/src/http.ts) on the Fetch API alone: a `Request` in, a `Response`
 * out, a `ReadableStream` for the held stream. Runtime-neutral: no Node and no Workers imports,
 * timers only through `setTimeout`/`setInterval`.
 *
 *   POST <base>/up?s=<token>&m=<stream|poll>   records up; 204, or 200 with copies (Roamlink-Ack)
 *   POST <base>/up?s=<token>&m=stream          with Roamlink-Stream: up, chunked: the up-stream;
 *                                              200 once its first record is in, open till its end
 *   GET  <base>/down?s=<token>                 chunked stream: marker at once, then records
 *   GET  <base>/poll?s=<token>                 held until a datagram is queued (200) or 25 s (204)
 *
 * One token is one path, "hs:<token>" or "hp:<token>". Numbering (`Roamlink-Seq`), copies kept for
 * a client that has not seen its stream (`Roamlink-Ack`), and the fallback of a streaming token to
 * polling are the core's session table (`HttpSessions`), as on Node. Datagrams queued in one turn
 * share a chunk or a poll answer.
 */
import {
  decodeRecords,
  EMPTY_RECORD,
  encodeRecords,
  type HttpDown,
  HttpMode,
  type HttpSession,
  HttpSessions,
  MAX_RECORD_DATAGRAM_BYTES,
  RecordReader,
  seqField,
} from '@roamlink/core';

export const HTTP_BASE = '/rl';
export const ACK_HEADER = 'roamlink-ack';
export const SEQ_HEADER = 'Roamlink-Seq';
/** Records per poll or POST answer (RLHTTP/1: at most 960 KiB unless one datagram is larger). */
const MAX_BATCH_BYTES = 960 * 1024;
const MAX_UP_BODY_BYTES = 1 << 20;
const MAX_QUEUED_BYTES = 1 << 20;

export { HttpMode };

export interface FetchHttpRelayOptions {
  /** Every datagram that arrives, with its path id, the mode it travels as and its request. */
  onDatagram: (datagram: Uint8Array, pathId: string, mode: HttpMode, req: Request) => void;
  /** A session expired ("closed: session expired"). */
  onPathClose?: (pathId: string, reason: string) => void;
  maxQueuedBytes?: number;
  sessionIdleMs?: number;
  heartbeatMs?: number;
  pollHoldMs?: number;
  streamTrustMs?: number;
}

export const isHttpPath = (p: string): boolean => p.startsWith('hs:') || p.startsWith('hp:');

const empty = (status: number, extra: Record<string, string> = {}): Response =>
  new Response(null, { status, headers: { 'Cache-Control': 'no-store', ...extra } });

export class FetchHttpRelay {
  readonly #o: FetchHttpRelayOptions;
  readonly #sessions: HttpSessions;
  /** Each session's up-stream, as the function that ends it (a newer one ends the older). */
  readonly #upstreams = new Map<HttpSession, () => void>();

  constructor(o: FetchHttpRelayOptions) {
    this.#o = o;
    this.#sessions = new HttpSessions({
      maxQueuedBytes: o.maxQueuedBytes ?? MAX_QUEUED_BYTES,
      maxBatchBytes: MAX_BATCH_BYTES,
      sessionIdleMs: o.sessionIdleMs ?? 60_000,
      streamTrustMs: o.streamTrustMs ?? 10_000,
      timers: {
        set: (fn, ms) => setTimeout(fn, ms),
        clear: (h) => clearTimeout(h as ReturnType<typeof setTimeout>),
      },
      onExpired: (s) => this.#o.onPathClose?.(s.id, 'closed: session expired'),
    });
  }

  get paths(): string[] {
    return this.#sessions.paths;
  }

  /** Whether any down request (stream or held poll) is attached: the object must stay up. */
  get holding(): boolean {
    return this.#sessions.holding;
  }

  mode(pathId: string): HttpMode | undefined {
    const s = this.#sessions.get(pathId);
    return s && this.#sessions.modeOf(s);
  }

  congested(pathId: string): boolean {
    return this.#sessions.congested(pathId);
  }

  send(pathId: string, datagram: Uint8Array): boolean {
    if (datagram.length === 0 || datagram.length > MAX_RECORD_DATAGRAM_BYTES) return false;
    return this.#sessions.queue(pathId, datagram) === 'queued';
  }

  close(): void {
    this.#sessions.close();
    for (const end of [...this.#upstreams.values()]) end();
  }

  /** A request for `route` ("/up", "/down" or "/poll"; method already checked). */
  async handle(req: Request, route: string): Promise<Response> {
    const query = new URL(req.url).searchParams;
    if (route === '/up') return this.#up(req, query);
    const mode: HttpMode = route === '/down' ? 'stream' : 'poll';
    const s = this.#session(req, query, mode);
    if (s instanceof Response) return s;
    if (mode === 'stream' && s.polled) return empty(409);
    return mode === 'stream' ? this.#stream(s) : this.#poll(s);
  }

  #session(req: Request, query: URLSearchParams, mode: HttpMode): HttpSession | Response {
    const s = this.#sessions.open(query.get('s'), seqField(req.headers.get(ACK_HEADER)), mode);
    return typeof s === 'number' ? empty(s) : s;
  }

  async #up(req: Request, query: URLSearchParams): Promise<Response> {
    const m = query.get('m');
    if (m !== 'stream' && m !== 'poll') return empty(400);
    if (req.headers.get('roamlink-stream') === 'up') return this.#upstream(req, query);
    if (Number(req.headers.get('content-length') ?? '0') > MAX_UP_BODY_BYTES) return empty(413);
    const body = new Uint8Array(await req.arrayBuffer());
    if (body.length > MAX_UP_BODY_BYTES) return empty(413);
    const datagrams = decodeRecords(body);
    if (datagrams === undefined) return empty(400);
    const s = this.#session(req, query, m);
    if (s instanceof Response) return s;
    const sessions = this.#sessions;
    sessions.touch(s);
    const mode = sessions.modeOf(s);
    for (const d of datagrams) {
      if (d.length === 0) continue;
      if (!sessions.live(s)) break;
      this.#o.onDatagram(d, s.id, mode, req);
    }
    const answer = sessions.answerPost(s, seqField(req.headers.get(ACK_HEADER)));
    if (answer === undefined || answer.datagrams.length === 0) return empty(204);
    return new Response(encodeRecords(answer.datagrams), {
      status: 200,
      headers: {
        'Content-Type': 'application/octet-stream',
        'Cache-Control': 'no-store',
        [SEQ_HEADER]: String(answer.first),
      },
    });
  }

  /**
   * The up-stream (RLHTTP/1 "Upstream, streaming"): the body's records are read as they arrive and
   * handed up; the 200 goes once the first record (the marker) is in, its body open until the
   * request's ends. Whether the runtime and what stands before it pass a request body unbuffered
   * and an answer before the body ends is what the client's deadline finds out.
   */
  async #upstream(req: Request, query: URLSearchParams): Promise<Response> {
    if (query.get('m') !== 'stream') return empty(400);
    const s = this.#sessions.get(`hs:${query.get('s') ?? ''}`);
    if (s === undefined || s.polled || req.body === null) return empty(409);
    const sessions = this.#sessions;
    this.#upstreams.get(s)?.();
    const input = req.body.getReader();
    let ctl: ReadableStreamDefaultController<Uint8Array> | undefined;
    let ended = false;
    const end = (): void => {
      if (ended) return;
      ended = true;
      if (this.#upstreams.get(s) === end) this.#upstreams.delete(s);
      input.cancel().catch(() => {});
      try {
        ctl?.close();
      } catch {
        // Already closed by the client going away.
      }
    };
    this.#upstreams.set(s, end);
    let opened = false;
    const records = new RecordReader({ zeroCopy: true });
    records.onRecord = (d) => {
      opened = true;
      if (d.length > 0 && sessions.live(s)) this.#o.onDatagram(d, s.id, HttpMode.STREAM, req);
    };
    // Until the marker: nothing is answered.
    while (!opened) {
      const r = await input.read().catch(() => ({ done: true as const, value: undefined }));
      if (r.done || !records.push(r.value) || ended) {
        end();
        return empty(400);
      }
    }
    void (async () => {
      while (!ended) {
        const r = await input.read().catch(() => ({ done: true as const, value: undefined }));
        if (r.done || !sessions.live(s) || s.polled || !records.push(r.value)) break;
        sessions.touch(s);
      }
      end();
    })();
    return new Response(
      new ReadableStream<Uint8Array>({
        start: (c) => {
          ctl = c;
        },
        cancel: end,
      }),
      {
        status: 200,
        headers: { 'Content-Type': 'application/octet-stream', 'Cache-Control': 'no-store' },
      },
    );
  }

  #stream(s: HttpSession): Response {
    let ended = false;
    let flushing = false;
    let ctl: ReadableStreamDefaultController<Uint8Array> | undefined;
    let heartbeat: ReturnType<typeof setInterval> | undefined;
    const stop = (): void => {
      if (ended) return;
      ended = true;
      if (heartbeat) clearInterval(heartbeat);
      this.#sessions.detach(s, down);
    };
    const flush = (): void => {
      flushing = false;
      if (ended || !ctl || s.queue.length === 0) return;
      ctl.enqueue(encodeRecords(this.#sessions.take(s, Number.POSITIVE_INFINITY)));
    };
    const down: HttpDown = {
      kick: () => {
        if (flushing) return;
        flushing = true;
        queueMicrotask(flush);
      },
      close: () => {
        if (ended) return;
        stop();
        try {
          ctl?.close();
        } catch {
          // Already errored by the client going away.
        }
      },
      drain: flush,
    };
    const first = s.headSeq;
    const body = new ReadableStream<Uint8Array>({
      start: (c) => {
        ctl = c;
        c.enqueue(EMPTY_RECORD.slice());
      },
      cancel: () => stop(),
    });
    heartbeat = setInterval(() => {
      if (!ended) ctl?.enqueue(EMPTY_RECORD.slice());
    }, this.#o.heartbeatMs ?? 15_000);
    this.#sessions.attach(s, down);
    this.#sessions.streamStarted(s);
    if (s.queue.length > 0) down.kick();
    return new Response(body, {
      status: 200,
      headers: {
        'Content-Type': 'application/octet-stream',
        'Cache-Control': 'no-store',
        'X-Accel-Buffering': 'no',
        [SEQ_HEADER]: String(first),
      },
    });
  }

  #poll(s: HttpSession): Promise<Response> {
    return new Promise<Response>((resolve) => {
      let ended = false;
      let answering = false;
      const answer = (emptyAnswer: boolean): void => {
        if (ended) return;
        ended = true;
        clearTimeout(hold);
        this.#sessions.detach(s, down);
        if (emptyAnswer || s.queue.length === 0) {
          resolve(empty(204));
          return;
        }
        const first = s.headSeq;
        const body = encodeRecords(this.#sessions.take(s));
        resolve(
          new Response(body, {
            status: 200,
            headers: {
              'Content-Type': 'application/octet-stream',
              'Cache-Control': 'no-store',
              ...(s.mode === 'stream' ? { [SEQ_HEADER]: String(first) } : {}),
            },
          }),
        );
      };
      const down: HttpDown = {
        kick: () => {
          if (answering) return;
          answering = true;
          queueMicrotask(() => answer(false));
        },
        close: () => answer(true),
      };
      const hold = setTimeout(() => answer(false), this.#o.pollHoldMs ?? 25_000);
      this.#sessions.attach(s, down);
      if (s.queue.length > 0) down.kick();
    });
  }
}
