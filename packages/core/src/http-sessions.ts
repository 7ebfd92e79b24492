/**
 * The relay's session table of RLHTTP/1 (packages/sim/README.md, "HTTP streaming and HTTP long
 * polling"; docs/PROTOCOL.md §7.4): one session per client token, its queue of datagrams for the
 * client numbered from `headSeq`, the copies it keeps while a streaming client has not yet seen
 * its stream (`Roamlink-Ack`), the fallback of a streaming token to polling, and the session's
 * idle and trust timers. Runtime-neutral: the Node relay (node:http) and the Fetch relay (Workers,
 * Deno, Bun) bring the requests and responses (a `HttpDown` per held down request) and timers.
 */
import { RECORD_HEADER_BYTES } from './records.ts';

/** What a token's datagrams travel as: a chunked stream, or polls. */
export const HttpMode = { STREAM: 'stream', POLL: 'poll' } as const;
export type HttpMode = (typeof HttpMode)[keyof typeof HttpMode];

/** Tokens a relay accepts: URL-safe, 16 to 128 characters. */
export function isSessionToken(t: string): boolean {
  return /^[A-Za-z0-9_-]{16,128}$/.test(t);
}

/**
 * A `Roamlink-Ack`/`Roamlink-Seq` field's value (surrounding spaces ignored, RFC 9110 §5.5):
 * undefined when absent, NaN when malformed (not 1 to 15 decimal digits, or repeated).
 */
export function seqField(value: string | readonly string[] | null | undefined): number | undefined {
  if (value === undefined || value === null) return undefined;
  if (typeof value !== 'string') return Number.NaN;
  const t = value.trim();
  return /^\d{1,15}$/.test(t) ? Number(t) : Number.NaN;
}

/** How many of `queue`'s head fit in `maxBytes` of records (at least one). */
export function batchCount(queue: readonly Uint8Array[], maxBytes: number): number {
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

/** A held down request (a stream response, or a poll) as the table sees it. */
export interface HttpDown {
  /** Datagrams were queued: take them now or when possible. */
  kick(): void;
  /** Replaced by a newer down request, or the relay closing. */
  close(): void;
  /** A stream: write what is queued now, not in a later turn. */
  drain?(): void;
}

export interface HttpSession {
  readonly id: string;
  readonly token: string;
  /** The mode the token was first seen with. */
  readonly mode: HttpMode;
  /** Datagrams waiting for the client; queue[0] is numbered `headSeq`. */
  queue: Uint8Array[];
  queuedBytes: number;
  headSeq: number;
  /**
   * Copies of datagrams already written to the stream (numbered `keptSeq` up to `headSeq`), kept
   * while the client has not seen its stream: it may still ask for them.
   */
  kept: Uint8Array[];
  keptBytes: number;
  keptSeq: number;
  /** The client has shown that its stream flows (or it never streams): keep no copies. */
  confirmed: boolean;
  /** A streaming session whose client fell back to polling, for good. */
  polled: boolean;
  down: HttpDown | undefined;
  idle: unknown;
  trust: unknown;
}

/** The host's timers (a Node host unrefs them: they must not keep a process alive). */
export interface HttpTimers {
  set(fn: () => void, ms: number): unknown;
  clear(handle: unknown): void;
}

export interface HttpSessionsOptions {
  /** Bytes of datagrams waiting for a client per session; copies as much again. */
  maxQueuedBytes: number;
  /** Records per poll answer and per POST answer (at least one datagram). */
  maxBatchBytes: number;
  /** Forget a session with no down request and no request for this long. */
  sessionIdleMs: number;
  /** Keep a stream's copies at most this long after it opened, unless the client says. */
  streamTrustMs: number;
  timers: HttpTimers;
  /** A session expired and is forgotten. */
  onExpired(s: HttpSession): void;
  /** A streaming session's client fell back to polling. */
  onFallback?(s: HttpSession): void;
  /**
   * The caller never changes a datagram's bytes after `queue` (each packet is a buffer of its
   * own, as the core's are): they are kept as they are, not copied (default false: copied).
   */
  adoptDatagrams?: boolean;
}

/** Why `queue` refused a datagram. */
export type HttpQueueResult = 'queued' | 'no-session' | 'full';

export class HttpSessions {
  readonly #o: HttpSessionsOptions;
  readonly #byToken = new Map<string, HttpSession>();
  readonly #byId = new Map<string, HttpSession>();

  constructor(o: HttpSessionsOptions) {
    this.#o = o;
  }

  /** The live sessions' path ids ("hs:<token>", "hp:<token>"). */
  get paths(): string[] {
    return [...this.#byId.keys()];
  }

  /** Whether any session holds a down request (stream or poll). */
  get holding(): boolean {
    for (const s of this.#byId.values()) if (s.down) return true;
    return false;
  }

  get(pathId: string): HttpSession | undefined {
    return this.#byId.get(pathId);
  }

  /** Whether `s` is still in the table (a datagram handed up may have closed it). */
  live(s: HttpSession): boolean {
    return this.#byId.get(s.id) === s;
  }

  /**
   * What a session's datagrams travel as now: "poll" for polling sessions and for streaming
   * sessions that fell back.
   */
  modeOf(s: HttpSession): HttpMode {
    return s.mode === HttpMode.STREAM && !s.polled ? HttpMode.STREAM : HttpMode.POLL;
  }

  /**
   * The session a request's token names, made on first sight, or the status to answer: 400 for
   * a bad token or `Roamlink-Ack` (not a count, or more than was ever sent), 409 for a token
   * already bound to the other mode. A streaming token asked in polling mode with an ack is its
   * client falling back: the session switches to polling for good.
   */
  open(token: string | null, ack: number | undefined, mode: HttpMode): HttpSession | 400 | 409 {
    if (token === null || !isSessionToken(token)) return 400;
    let s = this.#byToken.get(token);
    if (ack !== undefined && (Number.isNaN(ack) || ack > (s?.headSeq ?? 0))) return 400;
    if (s === undefined) {
      const id = `${mode === HttpMode.STREAM ? 'hs' : 'hp'}:${token}`;
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
        confirmed: mode === HttpMode.POLL,
        polled: false,
        down: undefined,
        idle: undefined,
        trust: undefined,
      };
      this.#byToken.set(token, s);
      this.#byId.set(id, s);
      this.touch(s);
    } else if (s.mode === HttpMode.STREAM && mode === HttpMode.POLL && ack !== undefined) {
      this.#fallBack(s, ack);
    } else if (s.mode !== mode && !(s.polled && mode === HttpMode.POLL)) {
      return 409;
    }
    if (ack !== undefined && s.mode === HttpMode.STREAM) this.#acked(s, ack);
    return s;
  }

  /** Whether the session's queue is over half its bound (a writer that can wait should). */
  congested(pathId: string): boolean {
    const s = this.#byId.get(pathId);
    return s !== undefined && s.queuedBytes > this.#o.maxQueuedBytes / 2;
  }

  /** Queues a datagram (a copy unless `adoptDatagrams`) for the client; wakes its down request. */
  queue(pathId: string, datagram: Uint8Array): HttpQueueResult {
    const s = this.#byId.get(pathId);
    if (s === undefined) return 'no-session';
    if (s.queuedBytes + datagram.length > this.#o.maxQueuedBytes) return 'full';
    s.queue.push(this.#o.adoptDatagrams ? datagram : datagram.slice());
    s.queuedBytes += datagram.length;
    s.down?.kick();
    return 'queued';
  }

  /**
   * After a POST's datagrams were handed up: what goes back in its answer, if anything. Without
   * `Roamlink-Ack` a streaming client says its stream flows (no copies from now on). With it, it
   * gets the copies it lacks, after what is queued was written to the stream; with no stream
   * attached, what is queued (copies kept alike). A polled session holding a poll gets nothing
   * (the poll takes it). The first datagram's number comes with them.
   */
  answerPost(
    s: HttpSession,
    ack: number | undefined,
  ): { first: number; datagrams: Uint8Array[] } | undefined {
    if (s.mode !== HttpMode.STREAM) return undefined;
    if (ack === undefined) {
      if (!s.confirmed) this.#confirm(s);
      return undefined;
    }
    if (!this.live(s)) return undefined;
    const max = this.#o.maxBatchBytes;
    if (s.down !== undefined) {
      if (s.polled) return { first: s.headSeq, datagrams: [] };
      s.down.drain?.();
    } else if (s.queue.length > 0) {
      const first = s.headSeq;
      const taken = this.take(s, max);
      if (s.confirmed) return { first, datagrams: taken };
    }
    return { first: s.keptSeq, datagrams: s.kept.slice(0, batchCount(s.kept, max)) };
  }

  /**
   * Takes queued datagrams, at most `maxBytes` of records (at least one; default a batch); the
   * first is numbered `s.headSeq` as it was before the call. Copies stay while unconfirmed.
   */
  take(s: HttpSession, maxBytes = this.#o.maxBatchBytes): Uint8Array[] {
    const out = s.queue.splice(0, batchCount(s.queue, maxBytes));
    s.headSeq += out.length;
    for (const d of out) s.queuedBytes -= d.length;
    if (!s.confirmed) {
      for (const d of out) {
        s.kept.push(d);
        s.keptBytes += d.length;
      }
      // Bounded: the oldest copies go first (a client that needs them sees a gap, as a loss).
      while (s.keptBytes > this.#o.maxQueuedBytes && s.kept.length > 0) {
        s.keptBytes -= s.kept.shift()!.length;
        s.keptSeq++;
      }
    }
    return out;
  }

  /** A stream response began: unless the client says otherwise, trust it after a while. */
  streamStarted(s: HttpSession): void {
    this.#clearTrust(s);
    if (s.confirmed) return;
    s.trust = this.#o.timers.set(() => {
      s.trust = undefined;
      this.#confirm(s);
    }, this.#o.streamTrustMs);
  }

  /** A down request now holds the session; the one it replaces is closed. */
  attach(s: HttpSession, down: HttpDown): void {
    const old = s.down;
    s.down = down;
    this.#clearIdle(s);
    old?.close();
  }

  /** A down request ended (if it is still the session's). */
  detach(s: HttpSession, down: HttpDown): void {
    if (s.down !== down) return;
    s.down = undefined;
    this.touch(s);
  }

  /** Activity: restarts the idle timer while no down request is attached. */
  touch(s: HttpSession): void {
    this.#clearIdle(s);
    if (s.down !== undefined || !this.live(s)) return;
    s.idle = this.#o.timers.set(() => {
      s.idle = undefined;
      if (!this.live(s)) return;
      this.#byId.delete(s.id);
      this.#byToken.delete(s.token);
      this.#clearTrust(s);
      s.queue = [];
      s.kept = [];
      this.#o.onExpired(s);
    }, this.#o.sessionIdleMs);
  }

  /** Ends every held down request and forgets every session (nothing reported). */
  close(): void {
    for (const s of this.#byId.values()) {
      this.#clearIdle(s);
      this.#clearTrust(s);
      const d = s.down;
      s.down = undefined;
      d?.close();
    }
    this.#byId.clear();
    this.#byToken.clear();
  }

  /** The client's stream flows (or the relay stopped waiting to hear so): drop the copies. */
  #confirm(s: HttpSession): void {
    s.confirmed = true;
    this.#clearTrust(s);
    s.keptSeq = s.headSeq;
    s.kept = [];
    s.keptBytes = 0;
  }

  /** The client holds everything below `ack`: those copies are no longer needed. */
  #acked(s: HttpSession, ack: number): void {
    while (s.keptSeq < ack && s.kept.length > 0) {
      s.keptBytes -= s.kept.shift()!.length;
      s.keptSeq++;
    }
    if (s.kept.length === 0) s.keptSeq = Math.max(s.keptSeq, Math.min(ack, s.headSeq));
  }

  /**
   * The client gave up on its stream (it holds everything below `ack`): end the stream, put what
   * was written to it since back at the head of the queue, and from now on answer polls.
   */
  #fallBack(s: HttpSession, ack: number): void {
    if (s.polled) return;
    s.polled = true;
    this.#o.onFallback?.(s);
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

  #clearIdle(s: HttpSession): void {
    if (s.idle !== undefined) this.#o.timers.clear(s.idle);
    s.idle = undefined;
  }

  #clearTrust(s: HttpSession): void {
    if (s.trust !== undefined) this.#o.timers.clear(s.trust);
    s.trust = undefined;
  }
}
