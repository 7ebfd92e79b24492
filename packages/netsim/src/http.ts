/**
 * A small HTTP/1.1 message parser and serializer (RFC 9112), incremental over a byte stream:
 * request and status lines, header fields (order and case kept), bodies framed by Content-Length,
 * chunked transfer coding (§7.1, extensions and trailers skipped over) or, for responses, by the
 * connection closing (§6.3). It knows which responses have no body (HEAD, 1xx, 204, 304) and
 * which switch the stream to raw bytes (101 Switching Protocols, 2xx to CONNECT). It parses, it
 * does not judge: policy (what a proxy forwards or refuses) lives with its users.
 */

export type HttpHeaders = [name: string, value: string][];

export interface HttpRequestHead {
  readonly method: string;
  readonly target: string;
  readonly version: string;
  readonly headers: HttpHeaders;
}

export interface HttpResponseHead {
  readonly version: string;
  readonly status: number;
  readonly reason: string;
  readonly headers: HttpHeaders;
}

export const HttpErrorCode = {
  /** The bytes are not HTTP/1.x. */
  MALFORMED: 'HTTP_MALFORMED',
  /** The header section is over the size limit. */
  TOO_LARGE: 'HTTP_HEADERS_TOO_LARGE',
  /** The stream ended inside a message. */
  TRUNCATED: 'HTTP_TRUNCATED',
} as const;
export type HttpErrorCode = (typeof HttpErrorCode)[keyof typeof HttpErrorCode];

export class HttpError extends Error {
  readonly code: HttpErrorCode;
  constructor(code: HttpErrorCode, message: string) {
    super(`${code}: ${message}`);
    this.name = 'HttpError';
    this.code = code;
  }
}

// ---- bytes and strings (header sections are ISO-8859-1 on the wire, RFC 9110 §5.5) ----

export function latin1(b: Uint8Array): string {
  let s = '';
  for (let i = 0; i < b.length; i += 8192) {
    s += String.fromCharCode(...b.subarray(i, Math.min(i + 8192, b.length)));
  }
  return s;
}

export function fromLatin1(s: string): Uint8Array {
  const out = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) out[i] = s.charCodeAt(i) & 255;
  return out;
}

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  if (a.length === 0) return b;
  const out = new Uint8Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
}

// ---- header helpers ----

/** All values of a field, joined with ", " (RFC 9110 §5.3); undefined when absent. */
export function headerValue(headers: HttpHeaders, name: string): string | undefined {
  const n = name.toLowerCase();
  const vs = headers.filter(([k]) => k.toLowerCase() === n).map(([, v]) => v);
  return vs.length === 0 ? undefined : vs.join(', ');
}

/** Whether a comma-separated field contains `token` (case-insensitive). */
export function headerHasToken(headers: HttpHeaders, name: string, token: string): boolean {
  const v = headerValue(headers, name);
  if (v === undefined) return false;
  const t = token.toLowerCase();
  return v.split(',').some((x) => x.trim().toLowerCase() === t);
}

/** A copy without the named fields (case-insensitive). */
export function withoutHeaders(headers: HttpHeaders, names: Iterable<string>): HttpHeaders {
  const drop = new Set([...names].map((n) => n.toLowerCase()));
  return headers.filter(([k]) => !drop.has(k.toLowerCase()));
}

/** A copy with `name` set to `value` (replacing every earlier occurrence, keeping its place). */
export function setHeader(headers: HttpHeaders, name: string, value: string): HttpHeaders {
  const n = name.toLowerCase();
  const i = headers.findIndex(([k]) => k.toLowerCase() === n);
  const rest = headers.filter(([k]) => k.toLowerCase() !== n);
  if (i < 0) return [...rest, [name, value]];
  rest.splice(i, 0, [headers[i]![0], value]);
  return rest;
}

// ---- serializer ----

function headerLines(headers: HttpHeaders): string {
  let s = '';
  for (const [k, v] of headers) {
    if (!/^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/.test(k) || /[\r\n]/.test(v)) {
      throw new TypeError(`invalid header field ${JSON.stringify(k)}`);
    }
    s += `${k}: ${v}\r\n`;
  }
  return `${s}\r\n`;
}

export function serializeRequestHead(h: HttpRequestHead): Uint8Array {
  return fromLatin1(`${h.method} ${h.target} ${h.version}\r\n${headerLines(h.headers)}`);
}

export function serializeResponseHead(h: HttpResponseHead): Uint8Array {
  return fromLatin1(`${h.version} ${h.status} ${h.reason}\r\n${headerLines(h.headers)}`);
}

/** One chunk of the chunked transfer coding (RFC 9112 §7.1). Empty input gives no bytes. */
export function encodeChunk(data: Uint8Array): Uint8Array {
  if (data.length === 0) return new Uint8Array(0);
  return concat(concat(fromLatin1(`${data.length.toString(16)}\r\n`), data), fromLatin1('\r\n'));
}

/** The last-chunk and empty trailer section that end a chunked body. */
export const LAST_CHUNK: Uint8Array = fromLatin1('0\r\n\r\n');

/** A whole request with a Content-Length body (unless the head already frames it). */
export function encodeRequest(
  h: HttpRequestHead,
  body: Uint8Array = new Uint8Array(0),
): Uint8Array {
  const framed =
    headerValue(h.headers, 'content-length') !== undefined ||
    headerValue(h.headers, 'transfer-encoding') !== undefined;
  const headers =
    framed || (body.length === 0 && !['POST', 'PUT', 'PATCH'].includes(h.method))
      ? h.headers
      : setHeader(h.headers, 'Content-Length', String(body.length));
  return concat(serializeRequestHead({ ...h, headers }), body);
}

/** A whole response with a Content-Length body (unless the head already frames it). */
export function encodeResponse(
  h: HttpResponseHead,
  body: Uint8Array = new Uint8Array(0),
): Uint8Array {
  const framed =
    headerValue(h.headers, 'content-length') !== undefined ||
    headerValue(h.headers, 'transfer-encoding') !== undefined ||
    h.status < 200 ||
    h.status === 204 ||
    h.status === 304;
  const headers = framed ? h.headers : setHeader(h.headers, 'Content-Length', String(body.length));
  return concat(serializeResponseHead({ ...h, headers }), body);
}

// ---- parser ----

type Framing = 'none' | 'length' | 'chunked' | 'close' | 'tunnel';

type Phase =
  | 'head'
  | 'length'
  | 'chunk-size'
  | 'chunk-data'
  | 'chunk-crlf'
  | 'trailers'
  | 'close'
  | 'tunnel'
  | 'error';

export interface HttpParserOptions {
  /** Largest header section accepted, bytes (default 65 536). */
  readonly maxHeaderBytes?: number;
}

/**
 * Feed bytes with push(); callbacks fire as parts of messages complete. Several messages may
 * follow each other on one stream (keep-alive, pipelining). For responses, tell the parser the
 * method of each request with expect() so that HEAD and CONNECT answers are framed right.
 */
export class HttpParser<K extends 'request' | 'response'> {
  readonly kind: K;
  onHead: ((head: K extends 'request' ? HttpRequestHead : HttpResponseHead) => void) | undefined;
  onBody: ((chunk: Uint8Array) => void) | undefined;
  /** A message (head and body) is complete. */
  onEnd: (() => void) | undefined;
  /** The stream switched protocols (101, CONNECT 2xx): later bytes are raw; see takeRaw(). */
  onTunnel: (() => void) | undefined;
  onError: ((e: HttpError) => void) | undefined;
  readonly #max: number;
  #buf: Uint8Array = new Uint8Array(0);
  #phase: Phase = 'head';
  #remaining = 0;
  readonly #methods: string[] = [];
  #paused = false;
  #running = false;

  constructor(kind: K, opts: HttpParserOptions = {}) {
    this.kind = kind;
    this.#max = opts.maxHeaderBytes ?? 65_536;
  }

  /** Whether the parser is between messages (nothing partial buffered). */
  get idle(): boolean {
    return this.#phase === 'head' && this.#buf.length === 0;
  }

  get failed(): boolean {
    return this.#phase === 'error';
  }

  get tunnelled(): boolean {
    return this.#phase === 'tunnel';
  }

  /** For response parsers: the method of the next request whose response will follow. */
  expect(method: string): void {
    this.#methods.push(method.toUpperCase());
  }

  /**
   * Stops before the next message (a proxy deciding what to do with a CONNECT or an Upgrade);
   * bytes keep being buffered until resume() or takeRaw().
   */
  pause(): void {
    this.#paused = true;
  }

  resume(): void {
    this.#paused = false;
    this.#run();
  }

  /** After a tunnel switch or pause: the raw bytes already buffered (the parser forgets them). */
  takeRaw(): Uint8Array {
    const b = this.#buf;
    this.#buf = new Uint8Array(0);
    return b;
  }

  push(bytes: Uint8Array): void {
    if (this.#phase === 'error') return;
    this.#buf = concat(this.#buf, bytes);
    this.#run();
  }

  /** The stream ended: completes a close-delimited body, else reports truncation. */
  end(): void {
    if (this.#phase === 'close') {
      this.#phase = 'head';
      this.onEnd?.();
    } else if (this.#phase !== 'head' && this.#phase !== 'tunnel' && this.#phase !== 'error') {
      this.#fail(HttpErrorCode.TRUNCATED, `stream ended in ${this.#phase}`);
    } else if (this.#phase === 'head' && this.#buf.length > 0) {
      this.#fail(HttpErrorCode.TRUNCATED, 'stream ended inside a header section');
    }
  }

  #fail(code: HttpErrorCode, msg: string): void {
    this.#phase = 'error';
    this.onError?.(new HttpError(code, msg));
  }

  #run(): void {
    // Callbacks may call resume() or push(); the loop already running picks that up.
    if (this.#running) return;
    this.#running = true;
    try {
      this.#loop();
    } finally {
      this.#running = false;
    }
  }

  #loop(): void {
    for (;;) {
      switch (this.#phase) {
        case 'head':
          if (this.#paused || !this.#head()) return;
          break;
        case 'length': {
          if (this.#buf.length === 0) return;
          const n = Math.min(this.#remaining, this.#buf.length);
          const part = this.#buf.subarray(0, n);
          this.#buf = this.#buf.subarray(n);
          this.#remaining -= n;
          this.onBody?.(part);
          if (this.#remaining === 0) this.#finish();
          break;
        }
        case 'chunk-size': {
          const line = this.#line();
          if (line === undefined) return;
          const size = line.split(';')[0]!.trim();
          if (!/^[0-9a-fA-F]{1,12}$/.test(size)) {
            this.#fail(HttpErrorCode.MALFORMED, `bad chunk size ${JSON.stringify(line)}`);
            return;
          }
          this.#remaining = Number.parseInt(size, 16);
          this.#phase = this.#remaining === 0 ? 'trailers' : 'chunk-data';
          break;
        }
        case 'chunk-data': {
          if (this.#buf.length === 0) return;
          const n = Math.min(this.#remaining, this.#buf.length);
          const part = this.#buf.subarray(0, n);
          this.#buf = this.#buf.subarray(n);
          this.#remaining -= n;
          this.onBody?.(part);
          if (this.#remaining === 0) this.#phase = 'chunk-crlf';
          break;
        }
        case 'chunk-crlf': {
          const line = this.#line();
          if (line === undefined) return;
          if (line !== '') {
            this.#fail(HttpErrorCode.MALFORMED, 'chunk not followed by CRLF');
            return;
          }
          this.#phase = 'chunk-size';
          break;
        }
        case 'trailers': {
          const line = this.#line();
          if (line === undefined) return;
          if (line === '') this.#finish();
          break;
        }
        case 'close': {
          if (this.#buf.length === 0) return;
          const part = this.#buf;
          this.#buf = new Uint8Array(0);
          this.onBody?.(part);
          return;
        }
        case 'tunnel':
        case 'error':
          return;
      }
    }
  }

  /** One CRLF-terminated line (a bare LF is accepted, RFC 9112 §2.2), or undefined. */
  #line(): string | undefined {
    const i = this.#buf.indexOf(10);
    if (i < 0) {
      if (this.#buf.length > this.#max) this.#fail(HttpErrorCode.TOO_LARGE, 'line too long');
      return undefined;
    }
    const end = i > 0 && this.#buf[i - 1] === 13 ? i - 1 : i;
    const s = latin1(this.#buf.subarray(0, end));
    this.#buf = this.#buf.subarray(i + 1);
    return s;
  }

  #head(): boolean {
    // RFC 9112 §2.2: ignore empty lines before a request line.
    while (this.#buf.length >= 2 && this.#buf[0] === 13 && this.#buf[1] === 10) {
      this.#buf = this.#buf.subarray(2);
    }
    const b = this.#buf;
    let end = -1;
    for (let i = 0; i + 1 < b.length; i++) {
      if (b[i] === 10 && (b[i + 1] === 10 || (b[i + 1] === 13 && b[i + 2] === 10))) {
        end = i;
        break;
      }
    }
    if (end < 0) {
      if (b.length > this.#max) this.#fail(HttpErrorCode.TOO_LARGE, 'header section too large');
      return false;
    }
    const after = b[end + 1] === 10 ? end + 2 : end + 3;
    if (end > this.#max) {
      this.#fail(HttpErrorCode.TOO_LARGE, 'header section too large');
      return false;
    }
    const text = latin1(b.subarray(0, end)).replace(/\r$/, '');
    this.#buf = b.subarray(after);
    const lines = text.split(/\r?\n/);
    const start = lines.shift()!;
    const headers: HttpHeaders = [];
    for (const l of lines) {
      if (/^[ \t]/.test(l)) {
        this.#fail(HttpErrorCode.MALFORMED, 'obsolete line folding');
        return false;
      }
      const c = l.indexOf(':');
      const name = c > 0 ? l.slice(0, c) : '';
      if (!/^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/.test(name)) {
        this.#fail(HttpErrorCode.MALFORMED, `bad header line ${JSON.stringify(l)}`);
        return false;
      }
      headers.push([name, l.slice(c + 1).trim()]);
    }
    return this.kind === 'request'
      ? this.#requestHead(start, headers)
      : this.#responseHead(start, headers);
  }

  #requestHead(start: string, headers: HttpHeaders): boolean {
    const m = /^([!#$%&'*+.^_`|~0-9A-Za-z-]+) (\S+) (HTTP\/1\.[01])$/.exec(start);
    if (m === null) {
      this.#fail(HttpErrorCode.MALFORMED, `bad request line ${JSON.stringify(start)}`);
      return false;
    }
    const head: HttpRequestHead = { method: m[1]!, target: m[2]!, version: m[3]!, headers };
    const framing = this.#bodyFraming(headers, false);
    if (framing === undefined) return false;
    (this.onHead as ((h: HttpRequestHead) => void) | undefined)?.(head);
    return this.#startBody(framing === 'close' ? 'none' : framing);
  }

  #responseHead(start: string, headers: HttpHeaders): boolean {
    const m = /^(HTTP\/1\.[01]) (\d{3})(?: (.*))?$/.exec(start);
    if (m === null) {
      this.#fail(HttpErrorCode.MALFORMED, `bad status line ${JSON.stringify(start)}`);
      return false;
    }
    const status = Number(m[2]);
    const head: HttpResponseHead = { version: m[1]!, status, reason: m[3] ?? '', headers };
    const informational = status >= 100 && status < 200 && status !== 101;
    const method = informational ? this.#methods[0] : this.#methods.shift();
    let framing: Framing | undefined;
    if (status === 101 || (method === 'CONNECT' && status >= 200 && status < 300))
      framing = 'tunnel';
    else if (
      method === 'HEAD' ||
      (status >= 100 && status < 200) ||
      status === 204 ||
      status === 304
    ) {
      framing = 'none';
    } else framing = this.#bodyFraming(headers, true);
    if (framing === undefined) return false;
    (this.onHead as ((h: HttpResponseHead) => void) | undefined)?.(head);
    if (informational) return this.#phase === 'head';
    return this.#startBody(framing);
  }

  /** RFC 9112 §6.3: how the body is delimited. */
  #bodyFraming(headers: HttpHeaders, response: boolean): Framing | undefined {
    const te = headerValue(headers, 'transfer-encoding');
    if (te !== undefined) {
      const codings = te.split(',').map((x) => x.trim().toLowerCase());
      if (codings[codings.length - 1] === 'chunked') return 'chunked';
      if (response) return 'close';
      this.#fail(HttpErrorCode.MALFORMED, 'request transfer coding is not chunked');
      return undefined;
    }
    const cl = headerValue(headers, 'content-length');
    if (cl !== undefined) {
      const vals = new Set(cl.split(',').map((x) => x.trim()));
      const v = [...vals][0]!;
      if (vals.size !== 1 || !/^\d{1,15}$/.test(v)) {
        this.#fail(HttpErrorCode.MALFORMED, `bad Content-Length ${JSON.stringify(cl)}`);
        return undefined;
      }
      this.#remaining = Number(v);
      return this.#remaining === 0 ? 'none' : 'length';
    }
    return response ? 'close' : 'none';
  }

  #startBody(framing: Framing): boolean {
    switch (framing) {
      case 'none':
        this.#finish();
        break;
      case 'length':
        this.#phase = 'length';
        break;
      case 'chunked':
        this.#phase = 'chunk-size';
        break;
      case 'close':
        this.#phase = 'close';
        break;
      case 'tunnel':
        this.#phase = 'tunnel';
        this.onTunnel?.();
        return false;
    }
    return this.#phase !== 'error' && this.#phase !== 'tunnel';
  }

  #finish(): void {
    this.#phase = 'head';
    this.onEnd?.();
  }
}
