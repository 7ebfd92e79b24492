/**
 * ESP over plain HTTP with `fetch`: the RLHTTP/1 wire format of the Node client and the relay
 * (packages/sim/README.md, "HTTP streaming and HTTP long polling"; packages/node/src/http.ts).
 * Bodies are RFC 8229 §3 records (the core's records.ts).
 *
 * Every request's URL also carries the session routing id, `sid=<id>` (transport.ts; relays
 * that do not route by it ignore it).
 *
 * Upstream, both modes: `POST <base>/up?s=<token>&sid=<id>&m=<stream|poll>` with a body of
 * records; one POST in flight per path, what is sent meanwhile (or in the same task) rides in the
 * next, at most 960 KiB of records each. A browser cannot stream a request body over HTTP/1.1,
 * so batching is the only way up.
 *
 * Downstream, streaming (`HttpStreamPath`): one `GET <base>/down?s=<token>` whose body the page
 * reads as a ReadableStream, record by record. Until a byte of that body arrives, every request
 * carries `Roamlink-Ack: <n>` and POST answers bring what the relay streamed (numbered by
 * `Roamlink-Seq`), so a buffering proxy costs no round trip; each number is delivered once. With
 * no body byte within clamp(1.5 × the first POST's answer time, 1 s, 3 s) of the GET leaving (a
 * floor of 1 s, not 100 ms: see DEFAULT_BUFFER_DETECT), or no `response.body` at all (a browser
 * that cannot stream a fetch), the path falls back to long polling on the same token and says so
 * (`onModeChange`).
 *
 * Downstream, long polling (`HttpPollPath`): one `GET <base>/poll?s=<token>` outstanding, asked
 * again as soon as an answer is complete.
 *
 * Cross-origin pages: the POSTs (Content-Type application/octet-stream) and every request with
 * `Roamlink-Ack` are preflighted (CORS), once per URL while the preflight is cached; the relay
 * answers the preflight and exposes `Roamlink-Seq`. Requests go without credentials.
 *
 * The view: the POST's URL, Host (the URL's authority) and the one header the page sets,
 * Content-Type. The browser's own headers (Origin, User-Agent, Sec-Fetch-*) are the browser's:
 * they are not in the view and so not compared. The page's address and port are unknown.
 */
import type { BufferDetect, OuterView } from '@roamlink/core';
import {
  BUFFER_DETECT,
  batchCount,
  bufferWaitMs,
  decodeRecords,
  Encapsulation,
  encodeRecords,
  HttpStreamOrder,
  MAX_RECORD_DATAGRAM_BYTES,
  RecordReader,
  seqField,
  toHex,
} from '@roamlink/core';
import { browserRandom } from './keys.ts';
import type { BrowserPath, PathEvents, RelayEndpoint } from './transport.ts';
import { SID_PARAM } from './transport.ts';

export const ACK_HEADER = 'Roamlink-Ack';
export const SEQ_HEADER = 'Roamlink-Seq';
/**
 * Records per POST body, unless one datagram is larger (RLHTTP/1: 960 KiB, under the 1 MiB a
 * relay reads): one batch per round trip is a POST path's throughput.
 */
export const MAX_BATCH_BYTES = 960 * 1024;
/** Bytes waiting for the next POST before `send` drops: a full batch behind the one in flight. */
export const MAX_QUEUED_BYTES = 2 * MAX_BATCH_BYTES;

export type { BufferDetect };
/**
 * The wire format's clamp(1.5 × T, 100 ms, 3 s) with a larger floor: a page cannot see when its
 * GET's connection is up (the Node client starts the clock then), so the clock starts with the
 * fetch, before a CORS preflight and a connection the page cannot observe, and a busy browser adds
 * tens of milliseconds more to either request. Waiting longer costs nothing while the stream is
 * silent (POST answers carry what the relay streamed); a wrong fallback would poll for good.
 */
export const DEFAULT_BUFFER_DETECT: BufferDetect = { ...BUFFER_DETECT, minMs: 1000 };

export interface HttpPathStats {
  posts: number;
  polls: number;
  datagramsSent: number;
  datagramsReceived: number;
  queueDrops: number;
  duplicatesDropped: number;
}

const isAbort = (e: unknown): boolean => e instanceof Error && e.name === 'AbortError';
const message = (e: unknown): string => (e instanceof Error ? e.message : String(e));

abstract class HttpPathBase implements BrowserPath {
  readonly id: string;
  readonly token: string;
  abstract readonly kind: 'http-stream' | 'http-poll';
  readonly stats: HttpPathStats = {
    posts: 0,
    polls: 0,
    datagramsSent: 0,
    datagramsReceived: 0,
    queueDrops: 0,
    duplicatesDropped: 0,
  };
  /** Time from the first POST leaving to its answer (ms). */
  firstAnswerMs: number | undefined;
  protected readonly relay: RelayEndpoint;
  protected readonly ev: PathEvents;
  protected readonly abort = new AbortController();
  #mode: 'stream' | 'poll';
  #queue: Uint8Array[] = [];
  #queued = 0;
  #inFlight = false;
  #scheduled = false;
  #done = false;

  constructor(relay: RelayEndpoint, ev: PathEvents, mode: 'stream' | 'poll') {
    this.relay = relay;
    this.ev = ev;
    this.token = toHex(browserRandom(16));
    this.id = `${mode === 'stream' ? 'hs' : 'hp'}:${this.token}`;
    this.#mode = mode;
  }

  get encapsulation(): Encapsulation {
    return this.#mode === 'stream' ? Encapsulation.HTTP_STREAM : Encapsulation.HTTP_POLL;
  }

  get mode(): 'stream' | 'poll' {
    return this.#mode;
  }

  get done(): boolean {
    return this.#done;
  }

  get congested(): boolean {
    return this.#queued > MAX_QUEUED_BYTES / 2;
  }

  /** `<base><route>?s=<token>&sid=<routing id>` (the Node relay ignores `sid`). */
  protected url(route: string): string {
    const r = this.relay;
    return `${r.origin}${r.basePath}${route}?s=${this.token}&${SID_PARAM}=${r.sid}`;
  }

  #upUrl(): string {
    return `${this.url('/up')}&m=${this.#mode}`;
  }

  view(): OuterView {
    return {
      dstAddr: this.relay.hostname,
      dstPort: this.relay.port,
      url: this.#upUrl(),
      host: this.relay.host,
      headers: [['content-type', 'application/octet-stream']],
    };
  }

  send(datagram: Uint8Array): boolean {
    if (
      this.#done ||
      datagram.length === 0 ||
      datagram.length > MAX_RECORD_DATAGRAM_BYTES ||
      this.#queued + datagram.length > MAX_QUEUED_BYTES
    ) {
      this.stats.queueDrops++;
      return false;
    }
    // Packets are never reused by the core once sent, so a view is safe to hold until the POST.
    this.#queue.push(datagram);
    this.#queued += datagram.length;
    this.stats.datagramsSent++;
    if (!this.#inFlight && !this.#scheduled) {
      // Whatever else is sent in this task rides in the same POST.
      this.#scheduled = true;
      queueMicrotask(() => {
        this.#scheduled = false;
        this.#flush();
      });
    }
    return true;
  }

  close(): void {
    if (this.#done) return;
    this.#done = true;
    this.#queue = [];
    this.#queued = 0;
    this.shutdown();
    this.abort.abort();
  }

  protected abstract shutdown(): void;

  protected fail(reason: string): void {
    if (this.#done) return;
    this.close();
    this.ev.onClose(this.id, reason);
  }

  protected delivered(d: Uint8Array): void {
    if (this.#done) return;
    this.stats.datagramsReceived++;
    this.ev.onDatagram(d, this.id);
  }

  /** Fields for one request only (a streaming path's `Roamlink-Ack`). */
  protected perRequest(): Record<string, string> {
    return {};
  }

  /** Datagrams from an answer, numbered from `first` or (undefined) not numbered. */
  protected received(_first: number | undefined, ds: readonly Uint8Array[]): void {
    for (const d of ds) this.delivered(d);
  }

  /** A POST was answered 2xx. */
  protected onAnswer(): void {}

  protected setMode(mode: 'stream' | 'poll'): void {
    this.#mode = mode;
  }

  /** The polling loop: one poll outstanding, the next as soon as an answer is complete. */
  protected async pollLoop(): Promise<void> {
    while (!this.#done) {
      let res: Response;
      try {
        res = await fetch(this.url('/poll'), {
          headers: { Accept: 'application/octet-stream', ...this.perRequest() },
          cache: 'no-store',
          credentials: 'omit',
          signal: this.abort.signal,
        });
      } catch (e) {
        if (!isAbort(e)) this.fail(`http-error: poll: ${message(e)}`);
        return;
      }
      if (res.status !== 200 && res.status !== 204) {
        void res.body?.cancel();
        this.fail(`http-status: poll ${res.status}`);
        return;
      }
      const first = res.status === 200 ? seqField(res.headers.get(SEQ_HEADER)) : undefined;
      let body: Uint8Array;
      try {
        body = new Uint8Array(await res.arrayBuffer());
      } catch (e) {
        if (!isAbort(e)) this.fail('closed: poll broke');
        return;
      }
      if (this.#done) return;
      const ds = decodeRecords(body);
      if (ds === undefined || (first !== undefined && Number.isNaN(first))) {
        this.fail(`protocol: bad records or ${SEQ_HEADER} in poll answer`);
        return;
      }
      this.stats.polls++;
      this.received(
        first,
        ds.filter((d) => d.length > 0),
      );
    }
  }

  #flush(): void {
    if (this.#done || this.#inFlight || this.#queue.length === 0) return;
    const batch = this.#queue.splice(0, batchCount(this.#queue, MAX_BATCH_BYTES));
    for (const d of batch) this.#queued -= d.length;
    const body = encodeRecords(batch);
    this.#inFlight = true;
    const started = performance.now();
    void this.#post(body, started);
  }

  async #post(body: Uint8Array, started: number): Promise<void> {
    let res: Response;
    try {
      res = await fetch(this.#upUrl(), {
        method: 'POST',
        body: body as Uint8Array<ArrayBuffer>,
        headers: { 'Content-Type': 'application/octet-stream', ...this.perRequest() },
        cache: 'no-store',
        credentials: 'omit',
        signal: this.abort.signal,
      });
    } catch (e) {
      if (!isAbort(e)) this.fail(`http-error: POST: ${message(e)}`);
      return;
    }
    if (res.status < 200 || res.status >= 300) {
      void res.body?.cancel();
      this.fail(`http-status: POST ${res.status}`);
      return;
    }
    this.stats.posts++;
    this.firstAnswerMs ??= performance.now() - started;
    const first = res.status === 200 ? seqField(res.headers.get(SEQ_HEADER)) : undefined;
    this.onAnswer();
    let answer: Uint8Array | undefined;
    try {
      answer = first === undefined ? undefined : new Uint8Array(await res.arrayBuffer());
      if (answer === undefined) void res.body?.cancel();
    } catch (e) {
      if (!isAbort(e)) this.fail('closed: POST answer broke');
      return;
    }
    if (this.#done) return;
    this.#inFlight = false;
    if (first !== undefined && answer !== undefined) {
      const ds = decodeRecords(answer);
      if (ds === undefined || Number.isNaN(first)) {
        this.fail('protocol: bad POST answer');
        return;
      }
      this.received(
        first,
        ds.filter((d) => d.length > 0),
      );
    }
    this.#flush();
    this.ev.onDrain?.();
  }
}

/**
 * HTTP streaming: batched POSTs up, one long GET down read as a stream; falls back to polling on
 * the same token when the stream shows nothing in time.
 */
export class HttpStreamPath extends HttpPathBase {
  readonly kind = 'http-stream' as const;
  /** When the path gave up on its stream and began to poll (performance.now()), if it did. */
  fellBackAt: number | undefined;
  readonly #reader = new RecordReader();
  readonly #detect: BufferDetect;
  readonly #down = new AbortController();
  readonly #getSentAt: number;
  readonly #order = new HttpStreamOrder();
  #timer: ReturnType<typeof setTimeout> | undefined;

  constructor(relay: RelayEndpoint, ev: PathEvents, detect: BufferDetect = DEFAULT_BUFFER_DETECT) {
    super(relay, ev, 'stream');
    this.#detect = detect;
    this.#reader.onRecord = (d) => {
      if (d.length === 0) return;
      if (this.#order.fromStream()) this.delivered(d);
      else this.stats.duplicatesDropped++;
    };
    this.abort.signal.addEventListener('abort', () => this.#down.abort(), { once: true });
    this.#getSentAt = performance.now();
    void this.#stream();
    this.#arm();
  }

  protected override onAnswer(): void {
    this.#arm();
  }

  protected override perRequest(): Record<string, string> {
    const ack = this.#order.ack;
    return ack === undefined ? {} : { [ACK_HEADER]: String(ack) };
  }

  protected override received(first: number | undefined, ds: readonly Uint8Array[]): void {
    if (first === undefined) super.received(first, ds);
    else this.#take(first, ds);
  }

  protected shutdown(): void {
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
  }

  async #stream(): Promise<void> {
    let res: Response;
    try {
      res = await fetch(this.url('/down'), {
        headers: { Accept: 'application/octet-stream', ...this.perRequest() },
        cache: 'no-store',
        credentials: 'omit',
        signal: this.#down.signal,
      });
    } catch (e) {
      if (!isAbort(e) && this.fellBackAt === undefined) {
        this.fail(`http-error: GET: ${message(e)}`);
      }
      return;
    }
    if (this.fellBackAt !== undefined) {
      void res.body?.cancel();
      return;
    }
    if (res.status !== 200) {
      void res.body?.cancel();
      this.fail(`http-status: GET ${res.status}`);
      return;
    }
    const seq = seqField(res.headers.get(SEQ_HEADER));
    if (seq !== undefined && Number.isNaN(seq)) {
      void res.body?.cancel();
      this.fail(`protocol: bad ${SEQ_HEADER}`);
      return;
    }
    this.#order.streamOpened(seq);
    if (res.body === null) {
      // This browser cannot read a response as it arrives: poll instead.
      this.#fallBack();
      return;
    }
    const reader = res.body.getReader();
    try {
      for (;;) {
        const { done, value } = await reader.read();
        if (this.fellBackAt !== undefined || this.done) return;
        if (done) {
          this.fail('closed: down-stream ended');
          return;
        }
        if (!this.#order.bodySeen && value.length > 0) {
          this.#order.bodySeen = true;
          if (this.#timer !== undefined) clearTimeout(this.#timer);
          this.#timer = undefined;
        }
        if (!this.#reader.push(value)) {
          this.fail('protocol: bad record length');
          return;
        }
      }
    } catch (e) {
      if (!isAbort(e) && this.fellBackAt === undefined) this.fail('closed: down-stream broke');
    }
  }

  /** Datagrams numbered from `first`: each is delivered once, whichever way it came first. */
  #take(first: number, ds: readonly Uint8Array[]): void {
    for (const [i, d] of ds.entries()) {
      if (this.done) return;
      if (this.#order.admit(first + i)) this.delivered(d);
      else this.stats.duplicatesDropped++;
    }
  }

  /** The deadline for the stream's first body byte, given what is known now. */
  #arm(): void {
    if (this.#order.bodySeen || this.fellBackAt !== undefined || this.done) return;
    const wait = bufferWaitMs(this.#detect, this.firstAnswerMs);
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = setTimeout(
      () => {
        this.#timer = undefined;
        if (!this.#order.bodySeen) this.#fallBack();
      },
      Math.max(0, this.#getSentAt + wait - performance.now()),
    );
  }

  /** The stream is buffered (or cannot be read as it comes): poll the same token from now on. */
  #fallBack(): void {
    if (this.done || this.fellBackAt !== undefined) return;
    this.fellBackAt = performance.now();
    this.#down.abort();
    this.setMode('poll');
    void this.pollLoop();
    if (!this.done) this.ev.onModeChange?.(this.id);
  }
}

/** HTTP long polling: batched POSTs up, one poll always outstanding down. */
export class HttpPollPath extends HttpPathBase {
  readonly kind = 'http-poll' as const;

  constructor(relay: RelayEndpoint, ev: PathEvents) {
    super(relay, ev, 'poll');
    void this.pollLoop();
  }

  protected shutdown(): void {}
}
