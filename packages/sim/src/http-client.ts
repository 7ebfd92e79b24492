/**
 * A small HTTP/1.1 client connection (RFC 9112) for the WebSocket and HTTP encapsulations: one TCP
 * connection, to the relay or through a proxy, carrying requests in order and parsing their
 * responses as they arrive (streamed bodies included). Through a proxy it either sends requests in
 * absolute form (RFC 9112 §3.2.2, "forward": the proxy sees and may rewrite, refuse or buffer them)
 * or first opens a CONNECT tunnel (RFC 9110 §9.3.6, "connect": the proxy sees only bytes).
 *
 * Requests written before the connection is ready are held by TCP (direct, forward) or here
 * (until the CONNECT answer), so a new path costs no round trip beyond its handshakes.
 */
import type { OuterView } from '@roamlink/core';
import {
  type Endpoint,
  encodeRequest,
  type Host,
  type HttpHeaders,
  HttpParser,
  type HttpResponseHead,
  headerValue,
  isIpv4,
  type TcpConnection,
} from '@roamlink/netsim';
import {
  type ClientPathOptions,
  DEFAULT_BASE_PATH,
  netErrorReason,
  PathError,
  type ProxyConfig,
  RELAY_PORTS,
} from './types.ts';

/** Where WebSocket and HTTP requests go: the relay's authority and the first TCP hop. */
export interface HttpTarget {
  /** "host" or "host:port" as it appears in URLs and Host. */
  readonly authority: string;
  /** "host:port", port always given: the authority-form target of CONNECT (RFC 9110 §9.3.6). */
  readonly tunnelAuthority: string;
  /** Where the client's TCP connection goes: the relay, or the proxy. */
  readonly connectTo: Endpoint;
  readonly proxy: ProxyConfig | undefined;
  /** Path prefix of the relay's endpoints ("/rl"). */
  readonly basePath: string;
}

export function httpTarget(host: Host, opts: ClientPathOptions): HttpTarget {
  const r = opts.relay;
  let port: number = r.httpPort ?? RELAY_PORTS.http;
  let name = r.hostname ?? r.addr;
  let basePath = opts.basePath ?? DEFAULT_BASE_PATH;
  if (opts.url !== undefined) {
    const m = /^(?:http|ws):\/\/([^/:?#]+)(?::(\d{1,5}))?(\/[^?#]*)?$/i.exec(opts.url);
    if (m === null) throw new RangeError(`unsupported relay URL ${opts.url}`);
    name = m[1]!;
    port = m[2] === undefined ? 80 : Number(m[2]);
    basePath = (m[3] ?? '').replace(/\/+$/, '');
  }
  const authority = port === 80 ? name : `${name}:${port}`;
  let connectTo: Endpoint;
  if (opts.proxy !== undefined) connectTo = { addr: opts.proxy.addr, port: opts.proxy.port };
  else {
    const addr = isIpv4(name) ? name : (host.net.resolve(name) ?? r.addr);
    connectTo = { addr, port };
  }
  return {
    authority,
    tunnelAuthority: `${name}:${port}`,
    connectTo,
    proxy: opts.proxy,
    basePath,
  };
}

export interface ResponseHandlers {
  onHead(head: HttpResponseHead): void;
  onBody(chunk: Uint8Array): void;
  onEnd(): void;
}

export interface SentRequest {
  readonly method: string;
  /** When the request was handed to the connection. */
  readonly writtenAt: number;
  /** When its bytes could first leave (connection or tunnel ready), once known. */
  readonly sentAt: number | undefined;
}

interface Pending extends ResponseHandlers {
  req: { method: string; writtenAt: number; conn: HttpClientConnection };
}

/** One client connection. Callbacks: see the fields. */
export class HttpClientConnection {
  readonly conn: TcpConnection;
  readonly target: HttpTarget;
  /** TCP connected, or (connect mode) the tunnel is up: requests now leave at once. */
  onReady: () => void = () => {};
  /** The connection failed, or ended with a response outstanding. */
  onFail: (reason: string) => void = () => {};
  /** The server closed the connection between responses (keep-alive over). */
  onIdleClose: () => void = () => {};
  /** After a 101: the raw bytes that follow. */
  onRaw: (bytes: Uint8Array) => void = () => {};
  readonly #host: Host;
  #parser = new HttpParser('response');
  readonly #pending: Pending[] = [];
  /** Requests waiting for the CONNECT tunnel. */
  #held: Uint8Array[] = [];
  #tunnel: 'none' | 'opening' | 'up' = 'none';
  #raw = false;
  #readyAt: number | undefined;
  #done = false;
  #peerEnded = false;

  constructor(
    host: Host,
    target: HttpTarget,
    opts: Pick<ClientPathOptions, 'iface' | 'localAddr' | 'tcp'>,
  ) {
    this.#host = host;
    this.target = target;
    const o: Parameters<Host['connect']>[1] = { ...opts.tcp };
    if (opts.iface !== undefined) o.iface = opts.iface;
    if (opts.localAddr !== undefined) o.addr = opts.localAddr;
    const c = host.connect(target.connectTo, o);
    this.conn = c;
    this.#wire(this.#parser);
    if (target.proxy?.mode === 'connect') {
      this.#tunnel = 'opening';
      this.#parser.expect('CONNECT');
      const t = target.tunnelAuthority;
      const headers: HttpHeaders = [['Host', t], ...(target.proxy.headers ?? [])];
      c.write(encodeRequest({ method: 'CONNECT', target: t, version: 'HTTP/1.1', headers }));
    }
    c.onOpen = () => {
      if (this.#tunnel === 'none') this.#ready();
    };
    c.onData = (d) => {
      if (this.#raw) this.onRaw(d);
      else this.#parser.push(d);
    };
    c.onEnd = () => {
      if (this.#raw) return this.#fail(`${PathError.CLOSED}: peer closed the connection`);
      // No new request may go on this connection, even from a handler the parser calls now.
      this.#peerEnded = true;
      this.#parser.end();
      if (this.#done) return;
      if (this.#pending.length > 0 || this.#tunnel === 'opening') {
        this.#fail(`${PathError.CLOSED}: connection closed before the response`);
      } else {
        this.close();
        this.onIdleClose();
      }
    };
    c.onClose = () => this.#fail(PathError.CLOSED);
    c.onError = (e) => this.#fail(netErrorReason(e));
  }

  /** No further request may be sent (failed, closed, or the server ended the connection). */
  get done(): boolean {
    return this.#done || this.#peerEnded;
  }

  get readyAt(): number | undefined {
    return this.#readyAt;
  }

  /** Requests sent and not yet fully answered. */
  get outstanding(): number {
    return this.#pending.length;
  }

  /** The client's view of a request: URL, Host, the fields it set, its own TCP endpoints. */
  view(url: string, headers: HttpHeaders): OuterView {
    const c = this.conn;
    return {
      srcAddr: c.local.addr,
      srcPort: c.local.port,
      dstAddr: c.remote.addr,
      dstPort: c.remote.port,
      url,
      host: this.target.authority,
      headers: headers.map(([k, v]) => [k.toLowerCase(), v]),
    };
  }

  /**
   * Sends a request for `path` (origin form; absolute form is made here for a forward proxy).
   * `headers` should not include Host (added first) or framing fields.
   */
  request(
    method: string,
    path: string,
    headers: HttpHeaders,
    body: Uint8Array | undefined,
    handlers: ResponseHandlers,
  ): SentRequest {
    if (this.done) throw new TypeError('request on a finished HTTP connection');
    const t = this.target;
    const forward = t.proxy !== undefined && t.proxy.mode !== 'connect';
    const hs: HttpHeaders = [['Host', t.authority], ...headers];
    if (forward) hs.push(...(t.proxy?.headers ?? []));
    const wire = encodeRequest(
      {
        method,
        target: forward ? `http://${t.authority}${path}` : path,
        version: 'HTTP/1.1',
        headers: hs,
      },
      body,
    );
    const req = { method, writtenAt: this.#host.now, conn: this };
    this.#pending.push({ ...handlers, req });
    if (this.#tunnel === 'opening') this.#held.push(wire);
    else {
      this.#parser.expect(method);
      this.conn.write(wire);
    }
    return {
      method,
      writtenAt: req.writtenAt,
      get sentAt() {
        const r = req.conn.readyAt;
        return r === undefined ? undefined : Math.max(r, req.writtenAt);
      },
    };
  }

  /** Writes raw bytes (after a 101). */
  write(bytes: Uint8Array): boolean {
    if (this.#done || !this.conn.writable) return false;
    return this.conn.write(bytes);
  }

  /** Graceful close; no callback fires afterwards. */
  close(): void {
    if (this.#done) return;
    this.#done = true;
    this.#detach();
    this.conn.close();
  }

  #ready(): void {
    this.#readyAt = this.#host.now;
    this.onReady();
  }

  #wire(p: HttpParser<'response'>): void {
    // Every callback checks #done: a handler may have failed or closed the connection meanwhile.
    p.onHead = (h) => {
      if (this.#done) return;
      if (this.#tunnel === 'opening') return this.#connectAnswer(h);
      this.#pending[0]?.onHead(h);
    };
    p.onBody = (b) => {
      if (!this.#done && this.#tunnel !== 'opening') this.#pending[0]?.onBody(b);
    };
    p.onEnd = () => {
      if (this.#done || this.#tunnel === 'opening') return;
      this.#pending.shift()?.onEnd();
    };
    p.onTunnel = () => {
      if (this.#done) return;
      if (this.#tunnel === 'opening') return this.#tunnelUp(p.takeRaw());
      // 101 Switching Protocols: the rest of the stream is the new protocol's.
      this.#raw = true;
      this.#pending.shift();
      const rest = p.takeRaw();
      if (rest.length > 0) this.onRaw(rest);
    };
    p.onError = (e) => {
      if (!this.#done) this.#fail(`${PathError.PROTOCOL}: ${e.message}`);
    };
  }

  #connectAnswer(h: HttpResponseHead): void {
    if (h.status >= 200 && h.status < 300) return; // onTunnel follows
    const via = headerValue(h.headers, 'via');
    this.#fail(
      `${PathError.PROXY_REFUSED}: CONNECT ${h.status} ${h.reason}${via === undefined ? '' : ` (via ${via})`}`,
    );
  }

  #tunnelUp(early: Uint8Array): void {
    this.#tunnel = 'up';
    // A fresh parser: what follows is the relay's HTTP, inside the tunnel.
    this.#parser = new HttpParser('response');
    this.#wire(this.#parser);
    for (const p of this.#pending) this.#parser.expect(p.req.method);
    const held = this.#held;
    this.#held = [];
    for (const w of held) this.conn.write(w);
    this.#ready();
    if (early.length > 0) this.#parser.push(early);
  }

  #fail(reason: string): void {
    if (this.#done) return;
    this.#done = true;
    this.#detach();
    this.conn.abort();
    this.onFail(reason);
  }

  #detach(): void {
    const c = this.conn;
    c.onOpen = undefined;
    c.onData = undefined;
    c.onEnd = undefined;
    c.onClose = undefined;
    c.onError = undefined;
    this.#pending.length = 0;
    this.#held = [];
  }
}
