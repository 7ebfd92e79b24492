/**
 * The HTTP client's upstream connection: one kept-alive HTTP/1.1 connection that carries the
 * path's POSTs, one at a time, written and read here rather than through node:http.
 *
 * Why: a POST goes out for nearly every small request the tunnel carries, and node:http's client
 * (ClientRequest, the agent's socket pool, IncomingMessage, header objects) cost the client ~80 µs
 * of CPU per POST on the benchmark's machine, about as much as the rest of the tunnel's work for
 * that request. Written here, a POST is one string, one body and one writev; its answer is read by
 * Http1ResponseReader, which takes every framing an intermediary may give it (RFC 9112 §6.3).
 *
 * Requests are origin-form with Host, as node:http sent them. Through a proxy the connection is
 * either a CONNECT tunnel (proxy.ts: the proxy sees only CONNECT) or, in forward mode, a
 * connection to the proxy that carries absolute-form requests (what a proxy that allows CONNECT
 * only to port 443, as squid's default configuration does, lets through to any other port). A connection the relay
 * (or anything on the way) closed while idle is noticed when the next POST finds it gone: that
 * POST is sent once more on a new connection if no byte of an answer had come. Sending a POST
 * twice is harmless: the datagrams it carries are ESP packets, and the relay's replay window
 * drops the second copy (RFC 4303 §3.4.3).
 */
import { connect as netConnect, type Socket } from 'node:net';
import { type Http1Error, type Http1Response, Http1ResponseReader } from './http1-response.ts';
import { connectViaProxy, dialProxy, type ProxyConfig } from './proxy.ts';
import { dialRelayTls, type RelayTls, tlsOver } from './relay-tls.ts';

export interface HttpUplinkOptions {
  /** Where to connect: the relay, the far end of a CONNECT tunnel, or a forward proxy. */
  hostname: string;
  port: number;
  /** The Host field (the base URL's authority). */
  host: string;
  /** A CONNECT tunnel through this proxy to hostname:port. */
  proxy?: ProxyConfig | string;
  /**
   * Forward-proxy mode (RFC 9112 §3.2.2): hostname:port is the proxy, each request-target is in
   * absolute form (`origin` + path), with `Proxy-Authorization` when given. With `proxy`, the
   * proxy is dialled as it says (TLS to an https:// proxy); no CONNECT is sent.
   */
  forward?: { origin: string; authorization?: string | undefined; proxy?: ProxyConfig };
  proxyConnectTimeoutMs?: number;
  /** TLS to the relay (https://), direct or inside the CONNECT tunnel; never with `forward`. */
  tls?: RelayTls;
  /** Longest answer body, default 4 MiB. */
  maxAnswerBytes?: number;
}

/** Called once per POST: an error (a socket or proxy error, or an Http1Error), or the answer. */
export type UplinkCallback = (err: Error | undefined, res?: Http1Response) => void;

const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
const FIELD_VALUE = /^[\t\x20-\x7e\x80-\xff]*$/;
/** Fields this module writes itself: a caller's copy would contradict the framing. */
const OWN_FIELDS = new Set(['content-length', 'transfer-encoding', 'connection']);

interface Conn {
  /** Undefined while a CONNECT tunnel is being opened. */
  socket: Socket | undefined;
  reader: Http1ResponseReader;
  /** It carried a POST before the one in flight (a closed idle connection is retried). */
  reused: boolean;
  dead: boolean;
}

interface Pending {
  head: string;
  body: Uint8Array;
  cb: UplinkCallback;
  /** A byte of its answer came (then a broken connection is not retried). */
  answered: boolean;
  retried: boolean;
}

/**
 * A POST's head: request line (absolute form in forward mode), Host unless `fields` has one,
 * `Proxy-Authorization` in forward mode, the caller's fields but the framing ones, then
 * `framing` (the body's Content-Length or Transfer-Encoding). An Error for a field that is not a
 * token and a value.
 */
export function requestHead(
  o: HttpUplinkOptions,
  path: string,
  fields: readonly [string, string][],
  framing: string,
): string | Error {
  const fwd = o.forward;
  const lines = [`POST ${fwd ? fwd.origin : ''}${path} HTTP/1.1`];
  if (!fields.some(([k]) => k.toLowerCase() === 'host')) lines.push(`Host: ${o.host}`);
  if (fwd?.authorization !== undefined) lines.push(`Proxy-Authorization: ${fwd.authorization}`);
  for (const [k, v] of fields) {
    if (!TOKEN.test(k) || !FIELD_VALUE.test(v)) {
      return new Error(`bad header field ${JSON.stringify(k)}`);
    }
    if (!OWN_FIELDS.has(k.toLowerCase())) lines.push(`${k}: ${v}`);
  }
  lines.push(framing, '', '');
  return lines.join('\r\n');
}

/**
 * A connection as the options say: a socket at once (to the relay, or to a forward proxy), or a
 * CONNECT tunnel through the proxy once it is up.
 */
export function dialUplink(o: HttpUplinkOptions): Socket | Promise<Socket> {
  const tls = o.tls;
  if (o.forward?.proxy !== undefined) return dialProxy(o.forward.proxy);
  if (o.proxy === undefined) {
    return tls === undefined
      ? netConnect({ host: o.hostname, port: o.port })
      : dialRelayTls(o.hostname, o.port, tls);
  }
  const tunnel = connectViaProxy(o.proxy, o.hostname, o.port, {
    ...(o.proxyConnectTimeoutMs === undefined ? {} : { timeoutMs: o.proxyConnectTimeoutMs }),
  });
  return tls === undefined ? tunnel : tunnel.then((s) => tlsOver(s, o.hostname, tls));
}

export class HttpUplink {
  readonly #o: HttpUplinkOptions;
  #conn: Conn | undefined;
  #pending: Pending | undefined;
  #closed = false;
  /** The connection's socket (the current one, or the last), for the path's view. */
  socket: Socket | undefined;

  constructor(o: HttpUplinkOptions) {
    this.#o = o;
  }

  /**
   * Sends `POST path` with `fields` (name, value) and `body`. One at a time: a second call before
   * the first one's callback throws. Host is the base URL's unless `fields` has one;
   * Content-Length is always this module's.
   */
  post(
    path: string,
    fields: readonly [string, string][],
    body: Uint8Array,
    cb: UplinkCallback,
  ): void {
    if (this.#closed) throw new Error('uplink closed');
    if (this.#pending) throw new Error('a POST is already in flight');
    const head = requestHead(this.#o, path, fields, `Content-Length: ${body.length}`);
    if (head instanceof Error) {
      queueMicrotask(() => cb(head));
      return;
    }
    this.#pending = { head, body, cb, answered: false, retried: false };
    this.#send();
  }

  /** Ends the connection; a POST in flight is never answered. */
  close(): void {
    this.#closed = true;
    this.#pending = undefined;
    this.#drop();
  }

  #send(): void {
    const p = this.#pending;
    if (!p) return;
    const c = this.#conn && !this.#conn.dead ? this.#conn : this.#open();
    // Through a proxy the tunnel may still be opening: the POST leaves when it is up.
    if (c.socket) this.#write(c.socket, p);
  }

  #write(socket: Socket, p: Pending): void {
    // One writev: the head and the body leave together (Nagle is off).
    socket.cork();
    socket.write(p.head, 'latin1');
    if (p.body.length > 0) socket.write(p.body);
    socket.uncork();
  }

  /** A new connection: a socket at once, or a CONNECT tunnel through the proxy. */
  #open(): Conn {
    this.#drop();
    const o = this.#o;
    const c: Conn = {
      socket: undefined,
      reader: new Http1ResponseReader(
        o.maxAnswerBytes === undefined ? {} : { maxBodyBytes: o.maxAnswerBytes },
      ),
      reused: false,
      dead: false,
    };
    this.#conn = c;
    const dialed = dialUplink(o);
    if (!(dialed instanceof Promise)) {
      this.#attach(c, dialed);
      return c;
    }
    dialed.then(
      (socket) => {
        if (c.dead) {
          socket.destroy();
          return;
        }
        this.#attach(c, socket);
        if (this.#pending) this.#write(socket, this.#pending);
      },
      (e: Error) => {
        if (c.dead) return;
        c.dead = true;
        if (this.#conn === c) this.#conn = undefined;
        this.#fail(e);
      },
    );
    return c;
  }

  #attach(c: Conn, socket: Socket): void {
    c.socket = socket;
    this.socket = socket;
    socket.setNoDelay(true);
    socket.on('data', (b: Buffer) => this.#data(c, b));
    socket.on('end', () => this.#gone(c, undefined));
    socket.on('error', (e: Error) => this.#gone(c, e));
    socket.on('close', () => this.#gone(c, undefined));
  }

  #data(c: Conn, b: Buffer): void {
    if (c.dead) return;
    const p = this.#pending;
    if (p) p.answered = true;
    let rs: Http1Response[];
    try {
      rs = c.reader.push(b);
    } catch (e) {
      c.dead = true;
      this.#drop();
      this.#fail(e as Http1Error);
      return;
    }
    if (rs.length === 0) return;
    const q = this.#pending;
    this.#pending = undefined;
    c.reused = true;
    // One POST, one answer: an answer to nothing means the connection cannot be trusted (and
    // must not be taken for the answer to the next POST); one that says close ends it.
    if (!q || rs.length > 1 || !rs[0]!.keepAlive) {
      c.dead = true;
      this.#drop();
    }
    q?.cb(undefined, rs[0]);
  }

  /** The connection ended or broke. */
  #gone(c: Conn, err: Error | undefined): void {
    if (c.dead && this.#conn !== c) return;
    c.dead = true;
    let last: Http1Response | undefined;
    let bad: Error | undefined;
    try {
      last = c.reader.end();
    } catch (e) {
      bad = e as Error;
    }
    if (this.#conn === c) this.#drop();
    const p = this.#pending;
    if (!p) return;
    if (last !== undefined) {
      this.#pending = undefined;
      p.cb(undefined, last);
      return;
    }
    // An idle connection closed under the POST just written: once more, on a new one.
    if (c.reused && !p.answered && !p.retried && !this.#closed) {
      p.retried = true;
      this.#send();
      return;
    }
    this.#fail(bad ?? err ?? Object.assign(new Error('connection closed'), { code: 'ECONNRESET' }));
  }

  #fail(e: Error): void {
    const p = this.#pending;
    this.#pending = undefined;
    p?.cb(e);
  }

  #drop(): void {
    const c = this.#conn;
    this.#conn = undefined;
    if (!c) return;
    c.dead = true;
    if (!c.socket) return;
    c.socket.removeAllListeners('data');
    c.socket.on('error', () => {});
    c.socket.destroy();
  }
}
