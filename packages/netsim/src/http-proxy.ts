/**
 * An HTTP/1.1 forward proxy on a simulated host, behaving as the proxies roamlink must cross do
 * (RFC 9110 §7.6, RFC 9112 §3.2.2 and §9.3): it parses requests from the client's byte stream,
 * opens its own TCP connection to the origin (absolute-form targets; origin-form ones go to a
 * configured origin, as a reverse proxy or CDN does), and rewrites headers on the way: hop-by-hop
 * fields dropped (Connection and what it names, Keep-Alive, Proxy-*, TE, Trailer,
 * Transfer-Encoding, Upgrade), Via and X-Forwarded-For appended, Host set from the target, and
 * optionally every field name lowercased (as an HTTP/2 hop would leave them). Policies: CONNECT
 * allowed or refused, WebSocket Upgrade allowed, refused (403 or 501) or stripped, responses
 * streamed or buffered until complete (what breaks streaming HTTP tunnels), a response timeout
 * (504) and an idle timeout.
 */
import { type Endpoint, formatEndpoint, isIpv4 } from './address.ts';
import type { Host } from './host.ts';
import {
  encodeChunk,
  encodeResponse,
  type HttpHeaders,
  HttpParser,
  type HttpRequestHead,
  type HttpResponseHead,
  headerHasToken,
  headerValue,
  LAST_CHUNK,
  serializeRequestHead,
  serializeResponseHead,
  setHeader,
  withoutHeaders,
} from './http.ts';
import { reasonPhrase } from './http-server.ts';
import type { Timer } from './scheduler.ts';
import type { TcpConnection, TcpListener, TcpOptions } from './tcp.ts';

export interface HttpProxyOptions {
  /** Name in Via (default the host's name). */
  readonly name?: string;
  /** Listening port (default 3128). */
  readonly port?: number;
  /** Allow CONNECT tunnels (default true). */
  readonly allowConnect?: boolean;
  /** Ports CONNECT may reach (default any). */
  readonly connectPorts?: readonly number[];
  /** WebSocket (any Upgrade) requests: forward, refuse with 403 or 501, or strip the upgrade. */
  readonly websocket?: 'allow' | 'refuse-403' | 'refuse-501' | 'strip';
  /** Hold each response until it is complete, then send it with Content-Length (default false). */
  readonly bufferResponses?: boolean;
  /**
   * Time from forwarding a request until the response head arrives (streaming) or the whole
   * response has arrived (buffering), ms; then 504 or, if already answering, the connection is
   * cut (default 60 000).
   */
  readonly responseTimeout?: number;
  /** Close a client connection (and its origin connection) idle for this long, ms (default none). */
  readonly idleTimeout?: number;
  /** Append X-Forwarded-For (default true). */
  readonly forwardedFor?: boolean;
  /** Lowercase every forwarded field name, Host included (default false). */
  readonly lowercaseHeaders?: boolean;
  /** Where origin-form requests go (reverse-proxy mode); without it they get 400. */
  readonly origin?: Endpoint;
  /** TCP options for both sides. */
  readonly tcp?: TcpOptions;
}

export interface HttpProxyCounts {
  requests: number;
  connects: number;
  upgrades: number;
  refused: number;
  badGateway: number;
  timeouts: number;
}

/** RFC 9110 §7.6.1 hop-by-hop fields, plus the proxy-specific ones real proxies also drop. */
const HOP_BY_HOP = [
  'connection',
  'keep-alive',
  'proxy-connection',
  'proxy-authenticate',
  'proxy-authorization',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
];

export class HttpProxy {
  readonly host: Host;
  readonly opts: HttpProxyOptions;
  readonly listener: TcpListener;
  readonly counts: HttpProxyCounts = {
    requests: 0,
    connects: 0,
    upgrades: 0,
    refused: 0,
    badGateway: 0,
    timeouts: 0,
  };

  constructor(host: Host, opts: HttpProxyOptions = {}) {
    this.host = host;
    this.opts = opts;
    this.listener = host.listen(opts.port ?? 3128, (c) => new ProxySession(this, c), opts.tcp);
  }

  get name(): string {
    return this.opts.name ?? this.host.name;
  }

  close(): void {
    this.listener.close();
  }

  /** @internal */
  trace(reason: string, info?: string): void {
    const net = this.host.net;
    if (!net.tracing) return;
    net.trace(
      info === undefined
        ? { kind: 'proxy', where: this.name, reason }
        : { kind: 'proxy', where: this.name, reason, info },
    );
  }

  /** @internal An authority ("host:port" or "host") to an endpoint, via the network's names. */
  resolve(authority: string, defaultPort: number): Endpoint | undefined {
    const m = /^([^:]+)(?::(\d{1,5}))?$/.exec(authority);
    if (m === null) return undefined;
    const addr = isIpv4(m[1]!) ? m[1]! : this.host.net.resolve(m[1]!);
    if (addr === undefined) return undefined;
    return { addr, port: m[2] === undefined ? defaultPort : Number(m[2]) };
  }
}

/** Everything about one client connection. */
class ProxySession {
  readonly #proxy: HttpProxy;
  readonly #client: TcpConnection;
  readonly #parser = new HttpParser('request');
  #upstream: TcpConnection | undefined;
  #upstreamKey = '';
  #resParser: HttpParser<'response'> | undefined;
  /** The request being forwarded. */
  #req:
    | {
        head: HttpRequestHead;
        chunked: boolean;
        refuse: number | undefined;
        wantsClose: boolean;
        upgrade: boolean;
      }
    | undefined;
  #responseStarted = false;
  #resChunked = false;
  #buffered: { head: HttpResponseHead; body: Uint8Array[] } | undefined;
  #timer: Timer | undefined;
  #idle: Timer | undefined;
  #tunnel = false;
  #closed = false;

  constructor(proxy: HttpProxy, client: TcpConnection) {
    this.#proxy = proxy;
    this.#client = client;
    const p = this.#parser;
    p.onHead = (h) => this.#onRequestHead(h);
    p.onBody = (b) => this.#onRequestBody(b);
    p.onEnd = () => this.#onRequestEnd();
    p.onError = () => this.#answer(400, true);
    client.onData = (d) => {
      this.#touch();
      if (this.#tunnel) this.#upstream?.write(d);
      else p.push(d);
    };
    client.onEnd = () => {
      if (this.#tunnel) this.#upstream?.close();
      else if (this.#req === undefined) this.#shutdown();
    };
    client.onError = () => this.#shutdown(true);
    client.onClose = () => this.#shutdown();
    this.#touch();
  }

  // ---- requests ----

  #onRequestHead(h: HttpRequestHead): void {
    const proxy = this.#proxy;
    proxy.counts.requests++;
    this.#parser.pause();
    const wantsClose = headerHasToken(h.headers, 'connection', 'close') || h.version === 'HTTP/1.0';
    if (h.method === 'CONNECT') {
      this.#connect(h);
      return;
    }

    let origin: Endpoint | undefined;
    let path = h.target;
    let authority: string | undefined;
    const abs = /^http:\/\/([^/?#]+)([^#]*)$/i.exec(h.target);
    if (abs !== null) {
      authority = abs[1]!;
      origin = proxy.resolve(authority, 80);
      path = abs[2] === '' ? '/' : abs[2]!;
    } else if (proxy.opts.origin !== undefined && h.target.startsWith('/')) {
      origin = proxy.opts.origin;
    }
    const isUpgrade =
      headerValue(h.headers, 'upgrade') !== undefined &&
      headerHasToken(h.headers, 'connection', 'upgrade');
    const ws = proxy.opts.websocket ?? 'allow';
    let refuse: number | undefined;
    if (origin === undefined) refuse = abs !== null ? 502 : 400;
    else if (isUpgrade && ws === 'refuse-403') refuse = 403;
    else if (isUpgrade && ws === 'refuse-501') refuse = 501;
    const upgrade = isUpgrade && ws === 'allow';
    if (isUpgrade) {
      proxy.counts.upgrades++;
      proxy.trace(`upgrade-${refuse === undefined ? (upgrade ? 'forward' : 'strip') : 'refuse'}`);
    }
    const chunked = headerValue(h.headers, 'transfer-encoding') !== undefined;
    this.#req = {
      head: h,
      chunked,
      refuse,
      wantsClose: wantsClose || refuse !== undefined,
      upgrade,
    };
    if (refuse !== undefined || origin === undefined) return;

    // RFC 9110 §7.6.1: drop hop-by-hop fields, and any the Connection field names.
    const named = (headerValue(h.headers, 'connection') ?? '')
      .split(',')
      .map((x) => x.trim())
      .filter((x) => x !== '');
    let hs = withoutHeaders(h.headers, [...HOP_BY_HOP, ...named]);
    if (authority !== undefined) hs = setHeader(hs, 'Host', authority);
    hs = this.#appendVia(hs, h.version);
    if (proxy.opts.forwardedFor ?? true) {
      const prior = headerValue(hs, 'x-forwarded-for');
      const me = this.#client.remote.addr;
      hs = setHeader(hs, 'X-Forwarded-For', prior === undefined ? me : `${prior}, ${me}`);
    }
    if (chunked) hs.push(['Transfer-Encoding', 'chunked']);
    if (upgrade) {
      hs.push(['Connection', 'Upgrade']);
      hs.push(['Upgrade', headerValue(h.headers, 'upgrade')!]);
    }
    if (proxy.opts.lowercaseHeaders) hs = hs.map(([k, v]) => [k.toLowerCase(), v]);

    const up = this.#originConnection(origin);
    this.#resParser!.expect(h.method);
    up.write(
      serializeRequestHead({ method: h.method, target: path, version: 'HTTP/1.1', headers: hs }),
    );
    this.#responseStarted = false;
    this.#buffered = undefined;
    this.#armResponseTimer();
  }

  #onRequestBody(b: Uint8Array): void {
    const r = this.#req;
    if (r === undefined || r.refuse !== undefined || this.#upstream === undefined) return;
    this.#upstream.write(r.chunked ? encodeChunk(b) : b);
  }

  #onRequestEnd(): void {
    const r = this.#req;
    if (r === undefined) return;
    if (r.refuse !== undefined) {
      this.#proxy.counts.refused++;
      this.#proxy.trace(`refuse-${r.refuse}`, r.head.target);
      this.#answer(r.refuse, true);
      return;
    }
    if (r.chunked) this.#upstream?.write(LAST_CHUNK);
  }

  #appendVia(hs: HttpHeaders, version: string): HttpHeaders {
    const me = `${version.replace('HTTP/', '')} ${this.#proxy.name}`;
    const prior = headerValue(hs, 'via');
    return setHeader(hs, 'Via', prior === undefined ? me : `${prior}, ${me}`);
  }

  // ---- CONNECT ----

  #connect(h: HttpRequestHead): void {
    const proxy = this.#proxy;
    proxy.counts.connects++;
    const dst = proxy.resolve(h.target, 443);
    const ports = proxy.opts.connectPorts;
    if (
      !(proxy.opts.allowConnect ?? true) ||
      (dst !== undefined && ports !== undefined && !ports.includes(dst.port))
    ) {
      proxy.counts.refused++;
      proxy.trace('refuse-connect', h.target);
      this.#answer(403, true);
      return;
    }
    if (dst === undefined) {
      this.#answer(502, true);
      return;
    }
    proxy.trace('connect', formatEndpoint(dst));
    const up = proxy.host.connect(dst, proxy.opts.tcp ?? {});
    this.#upstream = up;
    up.onOpen = () => {
      this.#tunnel = true;
      this.#client.write(
        serializeResponseHead({
          version: 'HTTP/1.1',
          status: 200,
          reason: 'Connection Established',
          headers: [],
        }),
      );
      const early = this.#parser.takeRaw();
      if (early.length > 0) up.write(early);
    };
    up.onData = (d) => {
      this.#touch();
      this.#client.write(d);
    };
    up.onEnd = () => this.#client.close();
    up.onClose = () => this.#client.close();
    up.onError = () => {
      if (this.#tunnel) this.#client.abort();
      else {
        proxy.counts.badGateway++;
        this.#answer(502, true);
      }
    };
  }

  // ---- origin side ----

  #originConnection(origin: Endpoint): TcpConnection {
    const key = formatEndpoint(origin);
    if (
      this.#upstream !== undefined &&
      this.#upstreamKey === key &&
      this.#resParser !== undefined
    ) {
      const s = this.#upstream.state;
      if (s === 'ESTABLISHED' || s === 'SYN_SENT') return this.#upstream;
    }
    this.#dropUpstream();
    const up = this.#proxy.host.connect(origin, this.#proxy.opts.tcp ?? {});
    const rp = new HttpParser('response');
    this.#upstream = up;
    this.#upstreamKey = key;
    this.#resParser = rp;
    rp.onHead = (h) => this.#onResponseHead(h);
    rp.onBody = (b) => this.#onResponseBody(b);
    rp.onEnd = () => this.#onResponseEnd();
    rp.onTunnel = () => this.#onResponseTunnel();
    rp.onError = () => this.#upstreamFailed();
    up.onData = (d) => {
      this.#touch();
      if (this.#tunnel) this.#client.write(d);
      else rp.push(d);
    };
    up.onEnd = () => {
      if (this.#tunnel) return this.#client.close();
      rp.end();
      if (this.#upstream === up) this.#dropUpstream();
    };
    up.onError = () => {
      if (this.#upstream === up) this.#upstreamFailed();
    };
    return up;
  }

  #onResponseHead(h: HttpResponseHead): void {
    const r = this.#req;
    if (r === undefined) return;
    const informational = h.status >= 100 && h.status < 200 && h.status !== 101;
    if (!this.#proxy.opts.bufferResponses && !informational) this.#clearResponseTimer();
    const noBody =
      r.head.method === 'HEAD' || h.status < 200 || h.status === 204 || h.status === 304;
    const named = (headerValue(h.headers, 'connection') ?? '').split(',').map((x) => x.trim());
    let hs = withoutHeaders(h.headers, [...HOP_BY_HOP, ...named.filter((x) => x !== '')]);
    hs = this.#appendVia(hs, h.version);
    if (h.status === 101) {
      hs.push(['Connection', 'Upgrade']);
      const u = headerValue(h.headers, 'upgrade');
      if (u !== undefined) hs.push(['Upgrade', u]);
    }
    if (this.#proxy.opts.lowercaseHeaders) hs = hs.map(([k, v]) => [k.toLowerCase(), v]);
    if (informational) {
      this.#client.write(serializeResponseHead({ ...h, version: 'HTTP/1.1', headers: hs }));
      return;
    }
    if (this.#proxy.opts.bufferResponses && h.status !== 101) {
      this.#buffered = { head: { ...h, headers: hs }, body: [] };
      return;
    }
    this.#responseStarted = true;
    this.#resChunked =
      !noBody && h.status !== 101 && headerValue(hs, 'content-length') === undefined;
    if (this.#resChunked) hs.push(['Transfer-Encoding', 'chunked']);
    this.#client.write(serializeResponseHead({ ...h, version: 'HTTP/1.1', headers: hs }));
  }

  #onResponseBody(b: Uint8Array): void {
    if (this.#buffered !== undefined) {
      this.#buffered.body.push(b);
      return;
    }
    this.#client.write(this.#resChunked ? encodeChunk(b) : b);
  }

  #onResponseEnd(): void {
    this.#clearResponseTimer();
    const b = this.#buffered;
    if (b !== undefined) {
      let n = 0;
      for (const c of b.body) n += c.length;
      const body = new Uint8Array(n);
      let o = 0;
      for (const c of b.body) {
        body.set(c, o);
        o += c.length;
      }
      const noBody =
        this.#req?.head.method === 'HEAD' || b.head.status === 204 || b.head.status === 304;
      const headers = noBody
        ? b.head.headers
        : setHeader(b.head.headers, 'Content-Length', String(n));
      this.#client.write(encodeResponse({ ...b.head, version: 'HTTP/1.1', headers }, body));
      this.#buffered = undefined;
    } else if (this.#resChunked) this.#client.write(LAST_CHUNK);
    this.#resChunked = false;
    const r = this.#req;
    this.#req = undefined;
    if (r?.wantsClose) {
      this.#closeClient();
      return;
    }
    this.#parser.resume();
  }

  #onResponseTunnel(): void {
    // 101 from the origin: both connections become one raw byte pipe.
    this.#clearResponseTimer();
    this.#tunnel = true;
    this.#req = undefined;
    const up = this.#upstream!;
    const fromOrigin = this.#resParser!.takeRaw();
    if (fromOrigin.length > 0) this.#client.write(fromOrigin);
    const fromClient = this.#parser.takeRaw();
    if (fromClient.length > 0) up.write(fromClient);
  }

  #upstreamFailed(): void {
    this.#dropUpstream();
    if (this.#req === undefined) return;
    this.#proxy.counts.badGateway++;
    if (this.#responseStarted) {
      this.#abortAll();
      return;
    }
    this.#answer(502, true);
  }

  #dropUpstream(): void {
    const up = this.#upstream;
    this.#upstream = undefined;
    this.#resParser = undefined;
    if (up === undefined) return;
    up.onData = undefined;
    up.onEnd = undefined;
    up.onError = undefined;
    up.onClose = undefined;
    if (up.state === 'ESTABLISHED' || up.state === 'CLOSE_WAIT') up.close();
    else if (up.state === 'SYN_SENT') up.abort();
  }

  // ---- timers and endings ----

  #armResponseTimer(): void {
    this.#clearResponseTimer();
    const t = this.#proxy.opts.responseTimeout ?? 60_000;
    this.#timer = this.#proxy.host.net.after(t, () => {
      this.#timer = undefined;
      this.#proxy.counts.timeouts++;
      this.#proxy.trace('response-timeout', this.#req?.head.target);
      if (this.#responseStarted) return this.#abortAll();
      this.#dropUpstream();
      this.#answer(504, true);
    });
  }

  #clearResponseTimer(): void {
    this.#timer?.cancel();
    this.#timer = undefined;
  }

  #touch(): void {
    const t = this.#proxy.opts.idleTimeout;
    if (t === undefined || this.#closed) return;
    this.#idle?.cancel();
    this.#idle = this.#proxy.host.net.after(t, () => {
      this.#proxy.trace('idle-timeout');
      this.#abortAll();
    });
  }

  /** Answers the client itself (refusals, gateway errors). */
  #answer(status: number, close: boolean): void {
    if (this.#closed) return;
    const headers: HttpHeaders = [['Via', `1.1 ${this.#proxy.name}`]];
    if (close) headers.push(['Connection', 'close']);
    this.#client.write(
      encodeResponse(
        { version: 'HTTP/1.1', status, reason: reasonPhrase(status), headers },
        new Uint8Array(0),
      ),
    );
    this.#req = undefined;
    if (close) this.#closeClient();
    else this.#parser.resume();
  }

  #closeClient(): void {
    this.#dropUpstream();
    this.#client.close();
    this.#shutdown();
  }

  #abortAll(): void {
    this.#upstream?.abort();
    this.#client.abort();
    this.#shutdown();
  }

  #shutdown(abort = false): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#clearResponseTimer();
    this.#idle?.cancel();
    if (abort) this.#upstream?.abort();
    else this.#dropUpstream();
    if (this.#client.state === 'CLOSE_WAIT') this.#client.close();
  }
}
