/**
 * A minimal HTTP/1.1 server on a simulated TCP listener: an origin for proxy scenarios and the
 * shape a relay's HTTP endpoint takes in the simulator. Requests on a connection are answered in
 * order (keep-alive); responses are sent with Content-Length when ended in one go, chunked when
 * written in parts (streaming), and an Upgrade request may be answered with 101 and a raw stream.
 */
import type { Host } from './host.ts';
import {
  encodeChunk,
  encodeResponse,
  type HttpHeaders,
  HttpParser,
  type HttpRequestHead,
  headerHasToken,
  headerValue,
  LAST_CHUNK,
  serializeResponseHead,
  setHeader,
} from './http.ts';
import type { TcpConnection, TcpListener, TcpOptions } from './tcp.ts';

export interface HttpServerRequest {
  readonly head: HttpRequestHead;
  readonly body: Uint8Array;
  readonly conn: TcpConnection;
}

/** Raw bytes after a protocol switch (101). */
export interface RawStream {
  write(data: Uint8Array): void;
  onData: ((data: Uint8Array) => void) | undefined;
  close(): void;
}

export interface HttpResponder {
  /** Status line and headers. Without Content-Length the body is sent chunked. */
  writeHead(status: number, headers?: HttpHeaders, reason?: string): void;
  write(data: Uint8Array): void;
  /** Ends the response (a 200 with Content-Length if no head was written). */
  end(data?: Uint8Array): void;
  /** Answers 101 Switching Protocols; later bytes on the connection are raw. */
  upgrade(headers?: HttpHeaders): RawStream;
  readonly conn: TcpConnection;
}

export type HttpHandler = (req: HttpServerRequest, res: HttpResponder) => void;

const REASONS: Record<number, string> = {
  101: 'Switching Protocols',
  200: 'OK',
  204: 'No Content',
  400: 'Bad Request',
  403: 'Forbidden',
  404: 'Not Found',
  426: 'Upgrade Required',
  500: 'Internal Server Error',
  501: 'Not Implemented',
  502: 'Bad Gateway',
  504: 'Gateway Timeout',
};

export function reasonPhrase(status: number): string {
  return REASONS[status] ?? 'Status';
}

export function serveHttp(
  host: Host,
  port: number,
  handler: HttpHandler,
  opts: TcpOptions & { addr?: string } = {},
): TcpListener {
  return host.listen(port, (conn) => serveConnection(conn, handler), opts);
}

/** Serves HTTP/1.1 on one accepted connection. */
export function serveConnection(conn: TcpConnection, handler: HttpHandler): void {
  const parser = new HttpParser('request');
  let head: HttpRequestHead | undefined;
  let body: Uint8Array[] = [];
  let raw: RawStream | undefined;
  parser.onHead = (h) => {
    head = h;
    body = [];
    // Bytes after a CONNECT or an Upgrade request may not be HTTP: wait for the answer.
    if (h.method === 'CONNECT' || headerValue(h.headers, 'upgrade') !== undefined) parser.pause();
  };
  parser.onBody = (c) => body.push(c);
  parser.onEnd = () => {
    const h = head!;
    parser.pause();
    let n = 0;
    for (const c of body) n += c.length;
    const all = new Uint8Array(n);
    let o = 0;
    for (const c of body) {
      all.set(c, o);
      o += c.length;
    }
    const wantsClose = headerHasToken(h.headers, 'connection', 'close') || h.version === 'HTTP/1.0';
    let chunked = false;
    let started = false;
    let done = false;
    const finish = () => {
      done = true;
      if (wantsClose) conn.close();
      else parser.resume();
    };
    const res: HttpResponder = {
      conn,
      writeHead(status, headers = [], reason = reasonPhrase(status)) {
        if (started) throw new TypeError('head already written');
        started = true;
        chunked =
          headerValue(headers, 'content-length') === undefined &&
          status >= 200 &&
          status !== 204 &&
          status !== 304 &&
          h.method !== 'HEAD';
        const hs = chunked ? setHeader(headers, 'Transfer-Encoding', 'chunked') : headers;
        conn.write(serializeResponseHead({ version: 'HTTP/1.1', status, reason, headers: hs }));
      },
      write(data) {
        // The client may be gone (a proxy gave up); later writes are dropped, as a server's are.
        if (!conn.writable) return;
        if (!started) res.writeHead(200);
        if (data.length === 0) return;
        conn.write(chunked ? encodeChunk(data) : data);
      },
      end(data) {
        if (done || !conn.writable) return;
        if (!started) {
          started = true;
          conn.write(
            encodeResponse(
              { version: 'HTTP/1.1', status: 200, reason: 'OK', headers: [] },
              data ?? new Uint8Array(0),
            ),
          );
        } else {
          if (data !== undefined) res.write(data);
          if (chunked) conn.write(LAST_CHUNK);
        }
        finish();
      },
      upgrade(headers = []) {
        started = true;
        done = true;
        conn.write(
          serializeResponseHead({
            version: 'HTTP/1.1',
            status: 101,
            reason: reasonPhrase(101),
            headers,
          }),
        );
        const stream: RawStream = {
          write: (d) => conn.write(d),
          onData: undefined,
          close: () => conn.close(),
        };
        raw = stream;
        const pending = parser.takeRaw();
        if (pending.length > 0) conn.host.net.after(0, () => stream.onData?.(pending));
        return stream;
      },
    };
    handler({ head: h, body: all, conn }, res);
  };
  parser.onError = () => {
    conn.write(
      encodeResponse({
        version: 'HTTP/1.1',
        status: 400,
        reason: reasonPhrase(400),
        headers: [['Connection', 'close']],
      }),
    );
    conn.close();
  };
  conn.onData = (d) => {
    if (raw !== undefined) raw.onData?.(d);
    else parser.push(d);
  };
  conn.onEnd = () => {
    if (raw === undefined) parser.end();
    conn.close();
  };
}
