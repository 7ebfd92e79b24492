/**
 * The relay half of RLHTTP/1 (packages/sim/README.md, "HTTP streaming and HTTP long polling"; the
 * Node relay's is packages/node/src/http.ts) on the Fetch API alone: a `Request` in, a `Response`
 * out, a `ReadableStream` for the held stream. Runtime-neutral: no Node and no Workers imports,
 * timers only through `setTimeout`/`setInterval`.
 *
 *   POST <base>/up?s=<token>&m=<stream|poll>   records up; 204, or 200 with copies (Roamlink-Ack)
 *   GET  <base>/down?s=<token>                 chunked stream: marker at once, then records
 *   GET  <base>/poll?s=<token>                 held until a datagram is queued (200) or 25 s (204)
 *
 * One token is one path, "hs:<token>" or "hp:<token>". Numbering (`Roamlink-Seq`), copies kept for
 * a client that has not seen its stream (`Roamlink-Ack`), and the fallback of a streaming token to
 * polling work as on Node. Datagrams queued in one turn share a chunk or a poll answer.
 */
import {
  decodeRecords,
  EMPTY_RECORD,
  encodeRecords,
  MAX_RECORD_DATAGRAM_BYTES,
  RECORD_HEADER_BYTES,
} from '@roamlink/core';

export const HTTP_BASE = '/rl';
export const ACK_HEADER = 'roamlink-ack';
export const SEQ_HEADER = 'Roamlink-Seq';
const MAX_BATCH_BYTES = 65_536;
const MAX_UP_BODY_BYTES = 1 << 20;
const MAX_QUEUED_BYTES = 1 << 20;

export type HttpMode = 'stream' | 'poll';

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

/** Tokens the relay accepts: URL-safe, 16 to 128 characters. */
export const isToken = (t: string): boolean => /^[A-Za-z0-9_-]{16,128}$/.test(t);

/** A `Roamlink-Ack` value: undefined when absent, NaN when not 1-15 decimal digits. */
function seqField(v: string | null): number | undefined {
  if (v === null) return undefined;
  const t = v.trim();
  return /^\d{1,15}$/.test(t) ? Number(t) : Number.NaN;
}

function batchCount(queue: readonly Uint8Array[], maxBytes: number): number {
  let n = 0;
  let bytes = 0;
  for (const d of queue) {
    const add = d.length + RECORD_HEADER_BYTES;
    if (n > 0 && bytes + add > maxBytes) break;
    n++;
    bytes += add;
  }
  return n;
}

const empty = (status: number, extra: Record<string, string> = {}): Response =>
  new Response(null, { status, headers: { 'Cache-Control': 'no-store', ...extra } });

interface Down {
  kick(): void;
  close(): void;
  /** A stream: write what is queued now. */
  drain?(): void;
}

interface Session {
  id: string;
  token: string;
  mode: HttpMode;
  queue: Uint8Array[];
  queuedBytes: number;
  headSeq: number;
  kept: Uint8Array[];
  keptBytes: number;
  keptSeq: number;
  confirmed: boolean;
  polled: boolean;
  down: Down | undefined;
  idle: ReturnType<typeof setTimeout> | undefined;
  trust: ReturnType<typeof setTimeout> | undefined;
}

export class FetchHttpRelay {
  readonly #o: FetchHttpRelayOptions;
  readonly #maxQueued: number;
  readonly #byToken = new Map<string, Session>();
  readonly #byId = new Map<string, Session>();

  constructor(o: FetchHttpRelayOptions) {
    this.#o = o;
    this.#maxQueued = o.maxQueuedBytes ?? MAX_QUEUED_BYTES;
  }

  get paths(): string[] {
    return [...this.#byId.keys()];
  }

  /** Whether any down request (stream or held poll) is attached: the object must stay up. */
  get holding(): boolean {
    for (const s of this.#byId.values()) if (s.down) return true;
    return false;
  }

  mode(pathId: string): HttpMode | undefined {
    const s = this.#byId.get(pathId);
    return s && this.#modeOf(s);
  }

  congested(pathId: string): boolean {
    const s = this.#byId.get(pathId);
    return s !== undefined && s.queuedBytes > this.#maxQueued / 2;
  }

  send(pathId: string, datagram: Uint8Array): boolean {
    const s = this.#byId.get(pathId);
    if (!s || datagram.length === 0 || datagram.length > MAX_RECORD_DATAGRAM_BYTES) return false;
    if (s.queuedBytes + datagram.length > this.#maxQueued) return false;
    s.queue.push(datagram.slice());
    s.queuedBytes += datagram.length;
    s.down?.kick();
    return true;
  }

  close(): void {
    for (const s of this.#byId.values()) {
      if (s.idle) clearTimeout(s.idle);
      if (s.trust) clearTimeout(s.trust);
      const d = s.down;
      s.down = undefined;
      d?.close();
    }
    this.#byId.clear();
    this.#byToken.clear();
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

  #modeOf(s: Session): HttpMode {
    return s.mode === 'stream' && !s.polled ? 'stream' : 'poll';
  }

  #session(req: Request, query: URLSearchParams, mode: HttpMode): Session | Response {
    const token = query.get('s');
    if (token === null || !isToken(token)) return empty(400);
    const ack = seqField(req.headers.get(ACK_HEADER));
    let s = this.#byToken.get(token);
    if (ack !== undefined && (Number.isNaN(ack) || ack > (s?.headSeq ?? 0))) return empty(400);
    if (s === undefined) {
      const id = `${mode === 'stream' ? 'hs' : 'hp'}:${token}`;
      s = {
        id,
        token,
        mode,
        queue: [],
        queuedBytes: 0,
        headSeq: 0,
        kept: [],
        keptBytes: 0,
        keptSeq: 0,
        confirmed: mode === 'poll',
        polled: false,
        down: undefined,
        idle: undefined,
        trust: undefined,
      };
      this.#byToken.set(token, s);
      this.#byId.set(id, s);
      this.#touch(s);
    } else if (s.mode === 'stream' && mode === 'poll' && ack !== undefined) {
      this.#fallBack(s, ack);
    } else if (s.mode !== mode && !(s.polled && mode === 'poll')) {
      return empty(409);
    }
    if (ack !== undefined && s.mode === 'stream') this.#acked(s, ack);
    return s;
  }

  async #up(req: Request, query: URLSearchParams): Promise<Response> {
    const m = query.get('m');
    if (m !== 'stream' && m !== 'poll') return empty(400);
    if (Number(req.headers.get('content-length') ?? '0') > MAX_UP_BODY_BYTES) return empty(413);
    const body = new Uint8Array(await req.arrayBuffer());
    if (body.length > MAX_UP_BODY_BYTES) return empty(413);
    const datagrams = decodeRecords(body);
    if (datagrams === undefined) return empty(400);
    const s = this.#session(req, query, m);
    if (s instanceof Response) return s;
    this.#touch(s);
    const mode = this.#modeOf(s);
    for (const d of datagrams) {
      if (d.length === 0) continue;
      if (!this.#byId.has(s.id)) break;
      this.#o.onDatagram(d, s.id, mode, req);
    }
    const ack = seqField(req.headers.get(ACK_HEADER));
    if (s.mode === 'stream' && ack === undefined && !s.confirmed) this.#confirm(s);
    const answer =
      s.mode === 'stream' && ack !== undefined && this.#byId.has(s.id)
        ? this.#answerUp(s)
        : undefined;
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

  #answerUp(s: Session): { first: number; datagrams: Uint8Array[] } {
    if (s.down !== undefined) {
      if (s.polled) return { first: s.headSeq, datagrams: [] };
      s.down.drain?.();
    } else if (s.queue.length > 0) {
      const first = s.headSeq;
      const taken = this.#take(s, MAX_BATCH_BYTES);
      if (s.confirmed) return { first, datagrams: taken };
    }
    return { first: s.keptSeq, datagrams: s.kept.slice(0, batchCount(s.kept, MAX_BATCH_BYTES)) };
  }

  #stream(s: Session): Response {
    let ended = false;
    let flushing = false;
    let ctl: ReadableStreamDefaultController<Uint8Array> | undefined;
    let heartbeat: ReturnType<typeof setInterval> | undefined;
    const stop = (): void => {
      if (ended) return;
      ended = true;
      if (heartbeat) clearInterval(heartbeat);
      this.#detach(s, down);
    };
    const flush = (): void => {
      flushing = false;
      if (ended || !ctl || s.queue.length === 0) return;
      ctl.enqueue(encodeRecords(this.#take(s, Number.POSITIVE_INFINITY)));
    };
    const down: Down = {
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
    this.#attach(s, down);
    this.#streamStarted(s);
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

  #poll(s: Session): Promise<Response> {
    return new Promise<Response>((resolve) => {
      let ended = false;
      let answering = false;
      const answer = (emptyAnswer: boolean): void => {
        if (ended) return;
        ended = true;
        clearTimeout(hold);
        this.#detach(s, down);
        if (emptyAnswer || s.queue.length === 0) {
          resolve(empty(204));
          return;
        }
        const first = s.headSeq;
        const body = encodeRecords(this.#take(s, MAX_BATCH_BYTES));
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
      const down: Down = {
        kick: () => {
          if (answering) return;
          answering = true;
          queueMicrotask(() => answer(false));
        },
        close: () => answer(true),
      };
      const hold = setTimeout(() => answer(false), this.#o.pollHoldMs ?? 25_000);
      this.#attach(s, down);
      if (s.queue.length > 0) down.kick();
    });
  }

  #take(s: Session, maxBytes: number): Uint8Array[] {
    const out = s.queue.splice(0, batchCount(s.queue, maxBytes));
    s.headSeq += out.length;
    for (const d of out) s.queuedBytes -= d.length;
    if (!s.confirmed) {
      for (const d of out) {
        s.kept.push(d);
        s.keptBytes += d.length;
      }
      while (s.keptBytes > this.#maxQueued && s.kept.length > 0) {
        s.keptBytes -= s.kept.shift()!.length;
        s.keptSeq++;
      }
    }
    return out;
  }

  #confirm(s: Session): void {
    s.confirmed = true;
    if (s.trust) clearTimeout(s.trust);
    s.trust = undefined;
    s.keptSeq = s.headSeq;
    s.kept = [];
    s.keptBytes = 0;
  }

  #streamStarted(s: Session): void {
    if (s.trust) clearTimeout(s.trust);
    s.trust = undefined;
    if (s.confirmed) return;
    s.trust = setTimeout(() => {
      s.trust = undefined;
      this.#confirm(s);
    }, this.#o.streamTrustMs ?? 10_000);
  }

  #acked(s: Session, ack: number): void {
    while (s.keptSeq < ack && s.kept.length > 0) {
      s.keptBytes -= s.kept.shift()!.length;
      s.keptSeq++;
    }
    if (s.kept.length === 0) s.keptSeq = Math.max(s.keptSeq, Math.min(ack, s.headSeq));
  }

  #fallBack(s: Session, ack: number): void {
    if (s.polled) return;
    s.polled = true;
    this.#acked(s, ack);
    s.queue = [...s.kept, ...s.queue];
    s.queuedBytes += s.keptBytes;
    s.headSeq = s.keptSeq;
    s.kept = [];
    s.keptBytes = 0;
    this.#confirm(s);
    const old = s.down;
    s.down = undefined;
    old?.close();
  }

  #attach(s: Session, down: Down): void {
    const old = s.down;
    s.down = down;
    if (s.idle) clearTimeout(s.idle);
    s.idle = undefined;
    old?.close();
  }

  #detach(s: Session, down: Down): void {
    if (s.down !== down) return;
    s.down = undefined;
    this.#touch(s);
  }

  #touch(s: Session): void {
    if (s.idle) clearTimeout(s.idle);
    s.idle = undefined;
    if (s.down !== undefined || !this.#byId.has(s.id)) return;
    s.idle = setTimeout(() => {
      if (this.#byId.get(s.id) !== s) return;
      this.#byId.delete(s.id);
      this.#byToken.delete(s.token);
      if (s.trust) clearTimeout(s.trust);
      s.trust = undefined;
      s.queue = [];
      s.kept = [];
      this.#o.onPathClose?.(s.id, 'closed: session expired');
    }, this.#o.sessionIdleMs ?? 60_000);
  }
}
