/**
 * HTTP/1.1 responses read from bytes (RFC 9112), sans-I/O: the reader for the HTTP client's POSTs
 * (http-uplink.ts). Whatever stands between the client and the relay may reframe an answer, so
 * every framing a response may have is read: Content-Length, chunked (§7.1: extensions and
 * trailer fields skipped), a body delimited by the connection's close (§6.3 rule 8), none at all
 * (1xx, 204, 304: §6.3 rule 1), and interim 1xx answers before the final one (skipped; the
 * caller sends no Expect). Strict where a lenient reading could desynchronise the connection
 * (§11.2): a bad status line, a bad or conflicting Content-Length, a bad chunk size, or a head
 * over its bound is an error, and the connection is not used again.
 */

export const Http1ErrorCode = {
  /** The status line is not `HTTP/1.x NNN reason`. */
  BAD_STATUS_LINE: 'bad-status-line',
  /** A header line without a name and a colon. */
  BAD_HEADER: 'bad-header',
  /** The status line and the header fields are longer than `maxHeadBytes`. */
  HEAD_TOO_LARGE: 'head-too-large',
  /** Content-Length not a number, or two different ones (§6.3 rule 5). */
  BAD_LENGTH: 'bad-length',
  /** A chunk size line that is not hex digits (§7.1), or a chunk not followed by CRLF. */
  BAD_CHUNK: 'bad-chunk',
  /** A body longer than `maxBodyBytes`. */
  BODY_TOO_LARGE: 'body-too-large',
  /** The connection ended inside a message. */
  TRUNCATED: 'truncated',
} as const;
export type Http1ErrorCode = (typeof Http1ErrorCode)[keyof typeof Http1ErrorCode];

export class Http1Error extends Error {
  readonly code: Http1ErrorCode;
  constructor(code: Http1ErrorCode, message: string) {
    super(`${code}: ${message}`);
    this.name = 'Http1Error';
    this.code = code;
  }
}

export interface Http1Response {
  /** 0 for HTTP/1.0, 1 for HTTP/1.1. */
  minor: number;
  status: number;
  reason: string;
  /** Field names in lower case; a repeated field's values joined with ", " (RFC 9110 §5.3). */
  headers: Map<string, string>;
  body: Uint8Array;
  /** Whether the connection may carry another request (§9.3; never after a close-delimited body). */
  keepAlive: boolean;
}

export interface Http1ResponseReaderOptions {
  /** Longest status line plus header section, default 16 KiB. */
  maxHeadBytes?: number;
  /** Longest body, default 4 MiB. */
  maxBodyBytes?: number;
  /**
   * Called with each final response's head as soon as it is read, before its body (an answer
   * whose body stays open, as the HTTP up-stream's does, is known by its head).
   */
  onHead?: (head: Omit<Http1Response, 'body'>) => void;
}

const CRLF = Buffer.from('\r\n');
const HEAD_END = Buffer.from('\r\n\r\n');
const STATUS_LINE = /^HTTP\/1\.([01]) ([1-9]\d\d)(?: (.*))?$/;
const FIELD_NAME = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
const CHUNK_SIZE = /^([0-9A-Fa-f]{1,8})[ \t]*(?:;.*)?$/;

const State = {
  HEAD: 0,
  LENGTH: 1,
  CHUNK_SIZE: 2,
  CHUNK_DATA: 3,
  CHUNK_END: 4,
  TRAILER: 5,
  UNTIL_CLOSE: 6,
} as const;
type State = (typeof State)[keyof typeof State];

/**
 * Reads the responses on one connection, in order. `push` returns the responses its bytes
 * completed; `end` (the peer closed) completes a body delimited by the close. After an error the
 * reader stays failed: the bytes after a framing error cannot be trusted.
 */
export class Http1ResponseReader {
  readonly #maxHead: number;
  readonly #maxBody: number;
  readonly #onHead: ((head: Omit<Http1Response, 'body'>) => void) | undefined;
  #buf: Buffer = Buffer.alloc(0);
  #state: State = State.HEAD;
  #head: Omit<Http1Response, 'body'> | undefined;
  #parts: Buffer[] = [];
  #bodyBytes = 0;
  #left = 0;
  #failed: Http1Error | undefined;

  constructor(o: Http1ResponseReaderOptions = {}) {
    this.#maxHead = o.maxHeadBytes ?? 16 * 1024;
    this.#maxBody = o.maxBodyBytes ?? 4 * 1024 * 1024;
    this.#onHead = o.onHead;
  }

  /** No part of a message is held: the connection is between responses. */
  get idle(): boolean {
    return this.#state === State.HEAD && this.#buf.length === 0 && this.#failed === undefined;
  }

  /** The responses these bytes complete, in order. Throws Http1Error on malformed input. */
  push(bytes: Uint8Array): Http1Response[] {
    if (this.#failed) throw this.#failed;
    const b = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    this.#buf = this.#buf.length === 0 ? b : Buffer.concat([this.#buf, b]);
    const out: Http1Response[] = [];
    try {
      for (;;) {
        const r = this.#step();
        if (r === undefined) break;
        if (r !== null) out.push(r);
      }
    } catch (e) {
      this.#failed = e as Http1Error;
      throw e;
    }
    return out;
  }

  /** The peer closed: the response its close completes, if any. Throws if it cut one short. */
  end(): Http1Response | undefined {
    if (this.#failed) throw this.#failed;
    if (this.#state === State.UNTIL_CLOSE) {
      this.#state = State.HEAD;
      return this.#finish(true);
    }
    if (this.#state !== State.HEAD || this.#buf.length > 0) {
      this.#failed = new Http1Error(
        Http1ErrorCode.TRUNCATED,
        'connection closed inside a response',
      );
      throw this.#failed;
    }
    return undefined;
  }

  /** One step: a response (complete), null (progress, go on), undefined (needs more bytes). */
  #step(): Http1Response | null | undefined {
    switch (this.#state) {
      case State.HEAD:
        return this.#readHead();
      case State.LENGTH: {
        if (this.#buf.length === 0) return undefined;
        const n = Math.min(this.#left, this.#buf.length);
        this.#take(n);
        this.#left -= n;
        if (this.#left > 0) return undefined;
        this.#state = State.HEAD;
        return this.#finish();
      }
      case State.CHUNK_SIZE: {
        const line = this.#line();
        if (line === undefined) return undefined;
        const m = CHUNK_SIZE.exec(line);
        if (!m) throw new Http1Error(Http1ErrorCode.BAD_CHUNK, `chunk size line "${clip(line)}"`);
        this.#left = Number.parseInt(m[1]!, 16);
        if (this.#bodyBytes + this.#left > this.#maxBody) {
          throw new Http1Error(Http1ErrorCode.BODY_TOO_LARGE, `over ${this.#maxBody} bytes`);
        }
        this.#state = this.#left === 0 ? State.TRAILER : State.CHUNK_DATA;
        return null;
      }
      case State.CHUNK_DATA: {
        if (this.#buf.length === 0) return undefined;
        const n = Math.min(this.#left, this.#buf.length);
        this.#take(n);
        this.#left -= n;
        if (this.#left === 0) this.#state = State.CHUNK_END;
        return this.#left === 0 ? null : undefined;
      }
      case State.CHUNK_END: {
        if (this.#buf.length < 2) return undefined;
        if (this.#buf[0] !== 0x0d || this.#buf[1] !== 0x0a) {
          throw new Http1Error(Http1ErrorCode.BAD_CHUNK, 'chunk data not followed by CRLF');
        }
        this.#buf = this.#buf.subarray(2);
        this.#state = State.CHUNK_SIZE;
        return null;
      }
      case State.TRAILER: {
        // Trailer fields (§7.1.2) carry nothing the client uses: skipped up to the empty line.
        const line = this.#line();
        if (line === undefined) return undefined;
        if (line !== '') return null;
        this.#state = State.HEAD;
        return this.#finish();
      }
      case State.UNTIL_CLOSE: {
        if (this.#buf.length === 0) return undefined;
        this.#take(this.#buf.length);
        return undefined;
      }
    }
  }

  #readHead(): Http1Response | null | undefined {
    const end = this.#buf.indexOf(HEAD_END);
    if (end < 0) {
      if (this.#buf.length > this.#maxHead) {
        throw new Http1Error(Http1ErrorCode.HEAD_TOO_LARGE, `over ${this.#maxHead} bytes`);
      }
      return undefined;
    }
    if (end > this.#maxHead) {
      throw new Http1Error(Http1ErrorCode.HEAD_TOO_LARGE, `over ${this.#maxHead} bytes`);
    }
    const lines = this.#buf.toString('latin1', 0, end).split('\r\n');
    this.#buf = this.#buf.subarray(end + 4);
    const m = STATUS_LINE.exec(lines[0]!);
    if (!m) {
      throw new Http1Error(Http1ErrorCode.BAD_STATUS_LINE, `"${clip(lines[0]!)}"`);
    }
    const minor = Number(m[1]);
    const status = Number(m[2]);
    const headers = new Map<string, string>();
    for (let i = 1; i < lines.length; i++) {
      const l = lines[i]!;
      const c = l.indexOf(':');
      const name = c > 0 ? l.slice(0, c) : '';
      if (!FIELD_NAME.test(name)) {
        throw new Http1Error(Http1ErrorCode.BAD_HEADER, `"${clip(l)}"`);
      }
      const key = name.toLowerCase();
      const value = l.slice(c + 1).trim();
      const had = headers.get(key);
      headers.set(key, had === undefined ? value : `${had}, ${value}`);
    }
    // Interim answers (100 Continue, 103 Early Hints) come before the final one (RFC 9110 §15.2).
    if (status < 200 && status !== 101) return null;
    const connection = tokens(headers.get('connection'));
    const keepAlive =
      minor === 1 ? !connection.includes('close') : connection.includes('keep-alive');
    this.#head = { minor, status, reason: m[3] ?? '', headers, keepAlive };
    this.#onHead?.(this.#head);
    this.#parts = [];
    this.#bodyBytes = 0;
    // §6.3: no body for 1xx, 204 and 304; then Transfer-Encoding; then Content-Length; else the
    // body runs to the connection's close.
    if (status < 200 || status === 204 || status === 304) return this.#finish();
    const te = tokens(headers.get('transfer-encoding'));
    if (te.length > 0) {
      if (te[te.length - 1] === 'chunked') {
        this.#state = State.CHUNK_SIZE;
        return null;
      }
      this.#state = State.UNTIL_CLOSE;
      return null;
    }
    const cl = headers.get('content-length');
    if (cl !== undefined) {
      const values = new Set(cl.split(',').map((v) => v.trim()));
      const v = [...values][0]!;
      if (values.size !== 1 || !/^\d{1,15}$/.test(v)) {
        throw new Http1Error(Http1ErrorCode.BAD_LENGTH, `Content-Length "${clip(cl)}"`);
      }
      this.#left = Number(v);
      if (this.#left > this.#maxBody) {
        throw new Http1Error(Http1ErrorCode.BODY_TOO_LARGE, `over ${this.#maxBody} bytes`);
      }
      if (this.#left === 0) return this.#finish();
      this.#state = State.LENGTH;
      return null;
    }
    this.#state = State.UNTIL_CLOSE;
    return null;
  }

  /** The next CRLF-ended line (without it), or undefined until one is in. */
  #line(): string | undefined {
    const i = this.#buf.indexOf(CRLF);
    if (i < 0) {
      if (this.#buf.length > this.#maxHead) {
        throw new Http1Error(Http1ErrorCode.HEAD_TOO_LARGE, `line over ${this.#maxHead} bytes`);
      }
      return undefined;
    }
    const line = this.#buf.toString('latin1', 0, i);
    this.#buf = this.#buf.subarray(i + 2);
    return line;
  }

  /** Moves n buffered bytes into the body. */
  #take(n: number): void {
    if (this.#bodyBytes + n > this.#maxBody) {
      throw new Http1Error(Http1ErrorCode.BODY_TOO_LARGE, `over ${this.#maxBody} bytes`);
    }
    this.#parts.push(this.#buf.subarray(0, n));
    this.#bodyBytes += n;
    this.#buf = this.#buf.subarray(n);
  }

  /** The response whose body is complete; `closed`: its body ran to the connection's close. */
  #finish(closed = false): Http1Response {
    const parts = this.#parts;
    this.#parts = [];
    const body = parts.length === 1 ? parts[0]! : Buffer.concat(parts);
    const head = this.#head!;
    return { ...head, keepAlive: head.keepAlive && !closed, body };
  }
}

function tokens(v: string | undefined): string[] {
  return v === undefined
    ? []
    : v
        .toLowerCase()
        .split(',')
        .map((t) => t.trim())
        .filter((t) => t !== '');
}

function clip(s: string): string {
  return s.length > 60 ? `${s.slice(0, 60)}…` : s;
}
