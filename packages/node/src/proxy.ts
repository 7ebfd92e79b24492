/**
 * Reaching the relay through an HTTP forward proxy. Restrictive networks often let traffic out
 * only through a proxy; every stream encapsulation (WebSocket and RLHTTP/1) then rides a tunnel
 * opened with CONNECT (RFC 9110 §9.3.6): the client connects to the proxy, sends
 * `CONNECT host:port HTTP/1.1` with the target in authority-form, and once the proxy answers 2xx
 * the connection carries the client's own bytes to the target and back, unchanged. Any 2xx
 * means the tunnel is up; a 2xx answer to CONNECT has no content, so whatever follows the header
 * section already belongs to the tunnel. Plain HTTP goes through the tunnel too (never in
 * absolute-form to the proxy): the relay then sees exactly the requests the client made, and a
 * proxy cannot buffer the stream.
 *
 * The proxy itself may be reached over TLS (an `https://` proxy URL, as curl and browsers take it):
 * the connection to the proxy is then TLS (its certificate checked as the relay's is, against the
 * CAs Node trusts plus any given), and CONNECT and the forward requests ride inside it, so that a
 * network between the client and its proxy sees neither the relay's name nor the credentials.
 * An https relay through an https proxy is TLS inside TLS.
 *
 * Credentials ride in `Proxy-Authorization: Basic` (RFC 9110 §11.7.2, RFC 7617): base64 of
 * "user-id:password" in UTF-8; a user-id cannot contain ":", neither part a control character.
 * A proxy that wants (other) credentials answers 407 (RFC 9110 §15.5.8).
 *
 * Proxy selection follows the conventions of the usual environment variables: `HTTPS_PROXY`,
 * `https_proxy`, then `HTTP_PROXY`, `http_proxy` (the first non-empty one; the HTTPS variables come
 * first because CONNECT is what they configure), minus the hosts that `NO_PROXY`/`no_proxy` lists.
 * A proxy given explicitly is used as given.
 *
 * Failures are `ProxyError`s with stable codes (`ProxyErrorCode`); on any failure the connection
 * to the proxy is destroyed before the error is reported, so nothing leaks.
 */
import { Agent, type AgentOptions, type ClientRequestArgs } from 'node:http';
import { BlockList, isIP, connect as netConnect, type Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { connect as tlsConnect } from 'node:tls';
import { unbracket } from './host.ts';
import {
  AuthRefusal,
  basicAuthorization,
  noteForwardRefusal,
  type ProxyAuthMemory,
  ProxyAuthSession,
} from './proxy-auth.ts';
import {
  NOT_TLS_ERROR_CODES,
  type RelayTls,
  relayTlsOptions,
  TLS_TRUST_ERROR_CODES,
  tlsOver,
} from './relay-tls.ts';
import { socks5Connect } from './socks-client.ts';

/** Stable codes: callers and logs match on these, never on messages. */
export const ProxyErrorCode = {
  /** The proxy URL (or an environment variable's value) cannot be used. */
  INVALID_URL: 'ROAMLINK_ERR_PROXY_INVALID_URL',
  /** No TCP connection to the proxy (refused, unreachable, name not found). */
  UNREACHABLE: 'ROAMLINK_ERR_PROXY_UNREACHABLE',
  /**
   * An https:// proxy: the TLS handshake with the proxy failed (its certificate is not trusted,
   * or it does not speak TLS on that port). The message names OpenSSL's or Node's code.
   */
  TLS: 'ROAMLINK_ERR_PROXY_TLS',
  /** The proxy answered 407: credentials missing or rejected. */
  AUTH_REQUIRED: 'ROAMLINK_ERR_PROXY_AUTH_REQUIRED',
  /** The proxy answered CONNECT with another non-2xx status (403 by policy, 502, 503, ...). */
  REFUSED: 'ROAMLINK_ERR_PROXY_REFUSED',
  /** The proxy's answer was not HTTP, too large, or the connection ended before it. */
  BAD_RESPONSE: 'ROAMLINK_ERR_PROXY_BAD_RESPONSE',
  /** No complete answer to CONNECT (connection included) within the deadline. */
  TIMEOUT: 'ROAMLINK_ERR_PROXY_TIMEOUT',
  /** The caller's signal aborted the attempt. */
  ABORTED: 'ROAMLINK_ERR_PROXY_ABORTED',
} as const;
export type ProxyErrorCode = (typeof ProxyErrorCode)[keyof typeof ProxyErrorCode];

export class ProxyError extends Error {
  readonly code: ProxyErrorCode;
  /** The proxy's status code, for AUTH_REQUIRED and REFUSED. */
  readonly status: number | undefined;
  constructor(
    code: ProxyErrorCode,
    message: string,
    options?: { cause?: unknown; status?: number },
  ) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'ProxyError';
    this.code = code;
    this.status = options?.status;
  }
}

export function isProxyError(e: unknown, code?: ProxyErrorCode): e is ProxyError {
  return e instanceof ProxyError && (code === undefined || e.code === code);
}

/** An HTTP proxy to tunnel through. */
export interface ProxyConfig {
  /** Host name or IP literal (IPv6 without brackets). */
  readonly hostname: string;
  readonly port: number;
  /** An https:// proxy: the connection to the proxy is TLS. */
  readonly secure: boolean;
  /**
   * A SOCKS5 proxy (socks-client.ts) instead of an HTTP one; `remoteDns` for socks5h://, where the
   * proxy resolves the target's name.
   */
  readonly socks?: { remoteDns: boolean };
  /**
   * For an https:// proxy: the CAs to trust for its certificate, besides Node's, and whether to
   * check it at all (relay-tls.ts; default: checked against Node's CAs).
   */
  readonly tls?: RelayTls;
  /** Percent-decoded; undefined when the URL carries no credentials. */
  readonly username: string | undefined;
  readonly password: string | undefined;
  /**
   * What the proxy was found to want for authentication (proxy-auth.ts), shared by every copy of
   * this configuration: later tunnels start with it.
   */
  readonly memory: ProxyAuthMemory;
  /** The proxy without credentials, "http://host:port" or "https://host:port": safe for logs. */
  readonly href: string;
}

/** Default deadline for the connection to the proxy plus its answer to CONNECT. */
export const DEFAULT_PROXY_CONNECT_TIMEOUT_MS = 10_000;
/** The largest header section accepted in the proxy's answer. */
export const MAX_PROXY_RESPONSE_HEAD_BYTES = 16_384;

// biome-ignore lint/suspicious/noControlCharactersInRegex: RFC 7617 §2 forbids CTLs.
const CTL = /[\u0000-\u001f\u007f]/;

const invalid = (what: string, why: string): ProxyError =>
  new ProxyError(ProxyErrorCode.INVALID_URL, `invalid proxy ${what}: ${why}`);

function decodeCredential(raw: string, what: string): string {
  try {
    return decodeURIComponent(raw);
  } catch {
    throw invalid(what, 'bad percent-encoding');
  }
}

/** "host:port" with an IPv6 host in brackets (authority-form, RFC 9110 §9.3.6). */
export function hostPort(host: string, port: number): string {
  return isIP(host) === 6 ? `[${host}]:${port}` : `${host}:${port}`;
}

/**
 * Parses `http://[user[:password]@]host[:port][/]`, or `https://...` for a proxy reached over TLS.
 * A value without a scheme is taken as http (as the environment variables are often written); the
 * port defaults to 80 for http and 443 for https. `socks5://` and `socks5h://` name a SOCKS5 proxy
 * (socks-client.ts; port 1080 by default). Credentials are percent-decoded.
 */
export function parseProxyUrl(text: string): ProxyConfig {
  const t = text.trim();
  if (t === '') throw invalid('URL', 'empty');
  let u: URL;
  try {
    u = new URL(/^[a-z][a-z0-9+.-]*:\/\//i.test(t) ? t : `http://${t}`);
  } catch {
    throw invalid('URL', 'not a URL');
  }
  const socks = u.protocol === 'socks5:' || u.protocol === 'socks5h:';
  if (u.protocol !== 'http:' && u.protocol !== 'https:' && !socks) {
    throw invalid(
      'URL',
      `scheme ${u.protocol} not supported (http://, https://, socks5:// and socks5h:// are)`,
    );
  }
  const secure = u.protocol === 'https:';
  if (u.hostname === '') throw invalid('URL', 'no host');
  if ((u.pathname !== '' && u.pathname !== '/') || u.search !== '' || u.hash !== '') {
    throw invalid('URL', 'a proxy URL has no path, query or fragment');
  }
  const port = u.port === '' ? (socks ? 1080 : secure ? 443 : 80) : Number(u.port);
  if (port < 1 || port > 65_535) throw invalid('URL', 'port out of range');
  const hostname = unbracket(u.hostname);
  let username: string | undefined;
  let password: string | undefined;
  if (u.username !== '' || u.password !== '') {
    username = decodeCredential(u.username, 'user name');
    password = decodeCredential(u.password, 'password');
    if (username.includes(':')) throw invalid('user name', 'contains ":" (RFC 7617 §2)');
    if (CTL.test(username) || CTL.test(password)) {
      throw invalid('credentials', 'control characters (RFC 7617 §2)');
    }
  }
  return {
    hostname,
    port,
    secure,
    username,
    password,
    memory: {},
    ...(socks ? { socks: { remoteDns: u.protocol === 'socks5h:' } } : {}),
    href: `${u.protocol}//${hostPort(hostname, port)}`,
  };
}

/** The `Proxy-Authorization` value for a proxy's credentials (RFC 7617 §2, UTF-8), if any. */
export function proxyAuthorization(p: ProxyConfig): string | undefined {
  return p.username === undefined ? undefined : basicAuthorization(p.username, p.password ?? '');
}

// ---- selection ----

const defaultPort = (protocol: string): number =>
  protocol === 'https:' || protocol === 'wss:' ? 443 : 80;

function normHost(h: string): string {
  return unbracket(h).toLowerCase().replace(/\.$/, '');
}

/**
 * Whether `NO_PROXY` (value `noProxy`) says to reach `hostname`:`port` directly. Entries are
 * separated by commas or white space, case-insensitive:
 * - `*` alone: every host;
 * - a name: that name and every name under it (`example.com`, `.example.com` and
 *   `*.example.com` all match example.com and a.example.com, never badexample.com);
 * - an IP literal (`10.1.2.3`, `::1`, `[::1]`): that address only, compared as addresses;
 * - a CIDR block (`10.0.0.0/8`, `fd00::/8`): the addresses in it;
 * - any of these with `:port` (IPv6 in brackets, `[::1]:8080`): only that port.
 * Names never match IP literals by suffix. Entries that parse as none of these are ignored.
 */
export function noProxyMatches(noProxy: string, hostname: string, port: number): boolean {
  const host = normHost(hostname);
  const ipType = isIP(host);
  for (let entry of noProxy.split(/[\s,]+/)) {
    entry = entry.toLowerCase();
    if (entry === '') continue;
    if (entry === '*') return true;
    let want: number | undefined;
    const bracketed = /^\[([^\]]+)\](?::(\d+))?$/.exec(entry);
    if (bracketed) {
      entry = bracketed[1]!;
      if (bracketed[2] !== undefined) want = Number(bracketed[2]);
    } else {
      // "name:port" or "v4:port"; a bare IPv6 literal has more than one ":" and no port.
      const hp = /^([^:]+):(\d+)$/.exec(entry);
      if (hp) {
        entry = hp[1]!;
        want = Number(hp[2]);
      }
    }
    if (want !== undefined && want !== port) continue;
    const slash = entry.indexOf('/');
    if (slash >= 0) {
      const net = entry.slice(0, slash);
      const bits = Number(entry.slice(slash + 1));
      const type = isIP(net);
      if (ipType === 0 || type !== ipType || !/^\d+$/.test(entry.slice(slash + 1))) continue;
      if (bits > (type === 4 ? 32 : 128)) continue;
      const block = new BlockList();
      block.addSubnet(net, bits, type === 4 ? 'ipv4' : 'ipv6');
      if (block.check(host, type === 4 ? 'ipv4' : 'ipv6')) return true;
      continue;
    }
    const entryIp = isIP(entry);
    if (entryIp !== 0 || ipType !== 0) {
      if (entryIp === 0 || ipType !== entryIp) continue;
      const block = new BlockList();
      block.addAddress(entry, entryIp === 4 ? 'ipv4' : 'ipv6');
      if (block.check(host, ipType === 4 ? 'ipv4' : 'ipv6')) return true;
      continue;
    }
    const name = entry.replace(/^\*?\./, '').replace(/\.$/, '');
    if (name === '') continue;
    if (host === name || host.endsWith(`.${name}`)) return true;
  }
  return false;
}

export type ProxyEnv = Readonly<Record<string, string | undefined>>;

/** The proxy variables in the order they are consulted. */
export const PROXY_ENV_VARS = ['HTTPS_PROXY', 'https_proxy', 'HTTP_PROXY', 'http_proxy'] as const;

/**
 * The proxy that the environment names for `target` (a URL: ws://, http://, ...), or undefined:
 * none set, or `NO_PROXY`/`no_proxy` lists the target. A value that is set but unusable throws
 * INVALID_URL naming the variable (silently going direct would hide the mistake).
 */
export function proxyFromEnv(
  target: string | URL,
  env: ProxyEnv = process.env,
): ProxyConfig | undefined {
  const name = proxyEnvVar(env);
  if (name === undefined) return undefined;
  const u = typeof target === 'string' ? new URL(target) : target;
  const port = u.port === '' ? defaultPort(u.protocol) : Number(u.port);
  const noProxy = (env.NO_PROXY ?? '').trim() !== '' ? env.NO_PROXY! : (env.no_proxy ?? '');
  if (noProxyMatches(noProxy, u.hostname, port)) return undefined;
  try {
    return parseProxyUrl(env[name]!);
  } catch (e) {
    throw new ProxyError(ProxyErrorCode.INVALID_URL, `${name}: ${(e as Error).message}`, {
      cause: e,
    });
  }
}

/** The proxy variable the environment's proxy comes from: the first one set (PROXY_ENV_VARS). */
export function proxyEnvVar(env: ProxyEnv = process.env): string | undefined {
  return PROXY_ENV_VARS.find((k) => (env[k] ?? '').trim() !== '');
}

/**
 * The proxy to use for `target`: `explicit` when given (a URL or a parsed config; `false` means
 * "never", whatever the environment says), else the environment's (`proxyFromEnv`).
 */
export function selectProxy(
  target: string | URL,
  explicit?: string | ProxyConfig | false,
  env: ProxyEnv = process.env,
): ProxyConfig | undefined {
  if (explicit === false) return undefined;
  if (explicit !== undefined) {
    return typeof explicit === 'string' ? parseProxyUrl(explicit) : explicit;
  }
  return proxyFromEnv(target, env);
}

// ---- CONNECT ----

export interface ConnectViaProxyOptions {
  /** Deadline for the TCP connection plus the proxy's answer (default 10 s). */
  timeoutMs?: number;
  signal?: AbortSignal;
  /** Extra header fields on the CONNECT request (e.g. User-Agent). */
  headers?: Record<string, string>;
}

interface Head {
  status: number;
  reason: string;
  authenticate: string[];
  /** Content-Length, if the answer has one (and no Transfer-Encoding). */
  contentLength: number | undefined;
  /** The proxy closes the connection after this answer (or may: a body without a length). */
  close: boolean;
}

/** Status code and the fields that matter from the proxy's answer. */
function parseHead(head: string): Head {
  const lines = head.split('\r\n');
  const m = /^HTTP\/1\.([01]) (\d{3})(?: (.*))?$/.exec(lines[0] ?? '');
  if (!m) throw new Error(`not an HTTP/1.x status line: ${JSON.stringify(lines[0]!.slice(0, 80))}`);
  const authenticate: string[] = [];
  let contentLength: number | undefined;
  let chunked = false;
  let connection = '';
  for (const l of lines.slice(1)) {
    const c = l.indexOf(':');
    if (c <= 0) continue;
    const name = l.slice(0, c).trim().toLowerCase();
    const value = l.slice(c + 1).trim();
    if (name === 'proxy-authenticate') authenticate.push(value);
    else if (name === 'content-length' && /^\d+$/.test(value)) contentLength = Number(value);
    else if (name === 'transfer-encoding') chunked = true;
    else if (name === 'connection' || name === 'proxy-connection') connection += `,${value}`;
  }
  const tokens = connection.toLowerCase().split(/[\s,]+/);
  const keepAlive = m[1] === '1' ? !tokens.includes('close') : tokens.includes('keep-alive');
  return {
    status: Number(m[2]),
    reason: m[3] ?? '',
    authenticate,
    contentLength: chunked ? undefined : contentLength,
    close: !keepAlive || chunked || contentLength === undefined,
  };
}

/** At most this many requests per CONNECT: probe, NTLM's two, a stale Digest nonce. */
const MAX_AUTH_ROUNDS = 4;

/**
 * Opens a tunnel to `host`:`port` through `proxy` with CONNECT and resolves with the socket,
 * positioned at the first byte from the target (ready for a WebSocket handshake or HTTP
 * requests). A 407 is answered with the credentials in the scheme the proxy asks for
 * (proxy-auth.ts: Basic, Digest, NTLM), on the same connection when the proxy keeps it, else on
 * a new one. Rejects with a ProxyError; every connection to the proxy is destroyed first.
 */
export function connectViaProxy(
  proxy: ProxyConfig | string,
  host: string,
  port: number,
  opts: ConnectViaProxyOptions = {},
): Promise<Socket> {
  let p: ProxyConfig;
  try {
    p = typeof proxy === 'string' ? parseProxyUrl(proxy) : proxy;
  } catch (e) {
    return Promise.reject(e);
  }
  const target = hostPort(unbracket(host), port);
  const signal = opts.signal;
  if (p.socks) {
    return socks5Connect(p, unbracket(host), port, {
      timeoutMs: opts.timeoutMs ?? DEFAULT_PROXY_CONNECT_TIMEOUT_MS,
      signal,
    });
  }
  if (signal?.aborted) {
    return Promise.reject(
      new ProxyError(ProxyErrorCode.ABORTED, `proxy ${p.href}: aborted`, { cause: signal.reason }),
    );
  }
  const timeoutMs = opts.timeoutMs ?? DEFAULT_PROXY_CONNECT_TIMEOUT_MS;
  const fields: [string, string][] = [['Host', target]];
  for (const [k, v] of Object.entries(opts.headers ?? {})) {
    if (/[\r\n]/.test(k) || /[\r\n]/.test(v)) {
      return Promise.reject(
        new ProxyError(ProxyErrorCode.INVALID_URL, `proxy ${p.href}: bad CONNECT header ${k}`),
      );
    }
    fields.push([k, v]);
  }
  const request = (authorization: string | undefined): string => {
    const all =
      authorization === undefined ? fields : [...fields, ['Proxy-Authorization', authorization]];
    return `CONNECT ${target} HTTP/1.1\r\n${all.map(([k, v]) => `${k}: ${v}\r\n`).join('')}\r\n`;
  };
  const auth = new ProxyAuthSession({
    username: p.username,
    password: p.password,
    memory: p.memory,
    method: 'CONNECT',
    uri: target,
    secure: p.secure,
  });

  return new Promise<Socket>((resolve, reject) => {
    const where = `proxy ${p.href} (CONNECT ${target})`;
    let settled = false;
    let rounds = 0;
    /** The connection in use, and what its listeners need. */
    let c!: {
      socket: Socket;
      // `reached`: the TCP connection is up; `connected`: so is TLS to an https proxy (requests
      // are written then).
      reached: boolean;
      connected: boolean;
      authorization: string | undefined;
      buf: Buffer;
      /** Body bytes of a 407 still to skip before the next answer. */
      skip: number;
      /** A request after a 407 went on this connection and is not answered yet. */
      followUp: boolean;
      off: () => void;
    };
    /** A follow-up whose connection the proxy closed was sent again on a new one. */
    let reopened = false;

    const onAbort = (): void =>
      finish(
        new ProxyError(ProxyErrorCode.ABORTED, `${where}: aborted`, { cause: signal?.reason }),
      );
    const timer = setTimeout(() => {
      const stage = c.connected ? 'no answer to CONNECT' : 'no connection';
      finish(new ProxyError(ProxyErrorCode.TIMEOUT, `${where}: ${stage} within ${timeoutMs} ms`));
    }, timeoutMs);
    signal?.addEventListener('abort', onAbort, { once: true });

    function open(authorization: string | undefined): void {
      const socket = dialProxy(p);
      const conn: typeof c = {
        socket,
        reached: false,
        connected: false,
        authorization,
        buf: Buffer.alloc(0),
        skip: 0,
        followUp: false,
        off: () => {},
      };
      c = conn;
      const onReached = (): void => {
        conn.reached = true;
      };
      const onConnect = (): void => {
        conn.reached = true;
        conn.connected = true;
        socket.write(request(conn.authorization));
      };
      const onError = (e: NodeJS.ErrnoException): void => {
        if (!conn.connected && conn.reached && p.secure) {
          finish(
            new ProxyError(
              ProxyErrorCode.TLS,
              `${where}: TLS handshake with the proxy failed: ${e.code ?? e.message}${proxyTlsHint(e.code)}`,
              { cause: e },
            ),
          );
          return;
        }
        const code = conn.connected ? ProxyErrorCode.BAD_RESPONSE : ProxyErrorCode.UNREACHABLE;
        const stage = conn.connected ? 'connection broke before an answer' : 'cannot connect';
        finish(new ProxyError(code, `${where}: ${stage}: ${e.code ?? e.message}`, { cause: e }));
      };
      const onEnd = (): void => {
        // A proxy that said it would keep the connection after its 407, and did not: the
        // request goes once more on a new one (not NTLM's, which belongs to the old one).
        if (conn.followUp && conn.buf.length === 0 && !reopened && !auth.sameConnection) {
          reopened = true;
          drop(conn);
          open(conn.authorization);
          return;
        }
        finish(
          new ProxyError(
            ProxyErrorCode.BAD_RESPONSE,
            `${where}: connection closed before an answer`,
          ),
        );
      };
      const onReadable = (): void => read(conn);
      const connectEvent = p.secure ? 'secureConnect' : 'connect';
      if (p.secure) socket.on('connect', onReached);
      socket.on(connectEvent, onConnect);
      socket.on('error', onError);
      socket.on('end', onEnd);
      socket.on('close', onEnd);
      socket.on('readable', onReadable);
      conn.off = () => {
        socket.off('connect', onReached);
        socket.off(connectEvent, onConnect);
        socket.off('error', onError);
        socket.off('end', onEnd);
        socket.off('close', onEnd);
        socket.off('readable', onReadable);
      };
    }

    function read(conn: typeof c): void {
      let chunk: Buffer | null;
      // biome-ignore lint/suspicious/noAssignInExpressions: the usual read loop.
      while (!settled && c === conn && (chunk = conn.socket.read() as Buffer | null) !== null) {
        conn.buf = conn.buf.length === 0 ? chunk : Buffer.concat([conn.buf, chunk]);
        while (!settled && c === conn) {
          if (conn.skip > 0) {
            const n = Math.min(conn.skip, conn.buf.length);
            conn.skip -= n;
            conn.buf = conn.buf.subarray(n);
            if (conn.skip > 0) break;
          }
          const end = conn.buf.indexOf('\r\n\r\n');
          if (end < 0) {
            if (conn.buf.length > MAX_PROXY_RESPONSE_HEAD_BYTES) {
              finish(
                new ProxyError(ProxyErrorCode.BAD_RESPONSE, `${where}: answer header too large`),
              );
            }
            break;
          }
          let head: Head;
          try {
            head = parseHead(conn.buf.subarray(0, end).toString('latin1'));
          } catch (e) {
            finish(
              new ProxyError(ProxyErrorCode.BAD_RESPONSE, `${where}: ${(e as Error).message}`),
            );
            return;
          }
          conn.buf = conn.buf.subarray(end + 4);
          conn.followUp = false;
          // Interim (1xx) answers may precede the final one; each ends with an empty line.
          if (head.status >= 100 && head.status < 200) continue;
          if (head.status >= 200 && head.status < 300) {
            finish(undefined, conn.buf);
          } else if (head.status === 407) {
            answer407(conn, head);
          } else {
            finish(
              new ProxyError(
                ProxyErrorCode.REFUSED,
                `${where}: refused: ${head.status} ${head.reason}`.trimEnd(),
                { status: head.status },
              ),
            );
          }
        }
      }
    }

    /** A 407: the next request with the credentials it asks for, or AUTH_REQUIRED. */
    function answer407(conn: typeof c, head: Head): void {
      const offered = head.authenticate.length > 0 ? head.authenticate.join(', ') : 'none';
      const next = auth.on407(head.authenticate);
      const refused = (why: string): void =>
        finish(
          new ProxyError(
            ProxyErrorCode.AUTH_REQUIRED,
            `${where}: 407 proxy authentication required (${why}; proxy offers: ${offered})`,
            { status: 407 },
          ),
        );
      const why =
        next instanceof AuthRefusal
          ? next.reason
          : ++rounds >= MAX_AUTH_ROUNDS
            ? 'too many authentication rounds'
            : head.close && auth.sameConnection
              ? 'the proxy closed the connection mid-handshake'
              : undefined;
      if (why !== undefined || next instanceof AuthRefusal) {
        refused(why ?? '');
        return;
      }
      if (!head.close) {
        conn.skip = head.contentLength ?? 0;
        conn.authorization = next;
        conn.followUp = true;
        conn.socket.write(request(next));
        return;
      }
      // The proxy ends this connection: the next request goes on a new one.
      drop(conn);
      open(next);
    }

    /** Leaves `conn` for good: nothing of it outlives this, and a late error of it is no error. */
    function drop(conn: typeof c): void {
      conn.off();
      conn.socket.on('error', () => {});
      conn.socket.destroy();
    }

    function finish(err: ProxyError | undefined, rest?: Buffer): void {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
      const { socket } = c;
      if (err) {
        // Nothing of a failed attempt outlives it.
        drop(c);
        reject(err);
        return;
      }
      c.off();
      // Bytes that came with the answer are the target's: give them back to the stream.
      if (rest !== undefined && rest.length > 0) socket.unshift(rest);
      // Removing the 'readable' listener takes the stream out of paused mode on the next tick;
      // resolving after that lets the new owner's 'data' listener start the flow as usual.
      process.nextTick(() => resolve(socket));
    }

    open(auth.first());
  });
}

/**
 * Learns what a plain-http proxy wants before forward requests go through it, so that none of
 * them carries a password the proxy did not ask for, and none fails for want of one: one request
 * without credentials (HEAD of `url`, in absolute form); a 407 is noted in the proxy's memory
 * (proxy-auth.ts `noteForwardRefusal`). Does nothing where the memory already knows, or without
 * credentials; never throws (a proxy that cannot be reached fails the paths in their own way).
 */
export function learnForwardAuth(p: ProxyConfig, url: string, timeoutMs = 5_000): Promise<void> {
  if (p.username === undefined || p.memory.scheme !== undefined || p.secure || p.socks) {
    return Promise.resolve();
  }
  const u = new URL(url);
  return new Promise<void>((resolve) => {
    const socket = dialProxy(p);
    let buf = Buffer.alloc(0);
    const done = (): void => {
      clearTimeout(timer);
      socket.removeAllListeners('data');
      socket.on('error', () => {});
      socket.destroy();
      resolve();
    };
    const timer = setTimeout(done, timeoutMs);
    socket.on('error', done);
    socket.on('close', done);
    socket.on('connect', () => {
      socket.write(`HEAD ${u.href} HTTP/1.1\r\nHost: ${u.host}\r\nConnection: close\r\n\r\n`);
    });
    socket.on('data', (b: Buffer) => {
      buf = Buffer.concat([buf, b]);
      const end = buf.indexOf('\r\n\r\n');
      if (end < 0 && buf.length < MAX_PROXY_RESPONSE_HEAD_BYTES) return;
      try {
        const head = parseHead(buf.subarray(0, end < 0 ? buf.length : end).toString('latin1'));
        if (head.status === 407) noteForwardRefusal(p.memory, head.authenticate);
      } catch {
        // Not HTTP: the paths will say so.
      }
      done();
    });
  });
}

/**
 * A connection to the proxy itself: TCP, or TLS for an https:// proxy (SNI and the certificate
 * check for the proxy's name, ALPN http/1.1: a proxy speaks HTTP/1.1 to CONNECT).
 */
export function dialProxy(p: ProxyConfig): Socket {
  return p.secure
    ? tlsConnect({ host: p.hostname, port: p.port, ...relayTlsOptions(p.hostname, p.tls ?? {}) })
    : netConnect({ host: p.hostname, port: p.port });
}

/** What a failed TLS handshake with an https:// proxy means, by its error code. */
function proxyTlsHint(code: string | undefined): string {
  if (code === undefined) return '';
  if (NOT_TLS_ERROR_CODES.has(code)) {
    return ' (the proxy does not speak TLS on that port)';
  }
  if (TLS_TRUST_ERROR_CODES.has(code)) return " (the proxy's certificate is not trusted)";
  return '';
}

// ---- agent ----

export interface ProxyAgentOptions extends AgentOptions {
  proxy: ProxyConfig | string;
  /** Deadline for each tunnel (connection to the proxy plus its answer), default 10 s. */
  connectTimeoutMs?: number;
  /** Extra header fields on each CONNECT request. */
  connectHeaders?: Record<string, string>;
  /**
   * TLS to the target inside each tunnel (relay-tls.ts): the agent then serves `https.request`
   * (and `ws` for wss://), and the proxy sees CONNECT and a TLS handshake only.
   */
  tls?: RelayTls;
}

/**
 * An `http.Agent` whose every connection is a CONNECT tunnel through `proxy` to the request's
 * host and port, for node:http requests and for `ws` (its `agent` option). Requests keep their
 * origin-form target and Host: the proxy sees only CONNECT. `destroy()` also ends the tunnels
 * still being opened.
 */
export class ProxyAgent extends Agent {
  readonly proxy: ProxyConfig;
  readonly #timeoutMs: number | undefined;
  readonly #headers: Record<string, string> | undefined;
  readonly #tls: RelayTls | undefined;
  readonly #opening = new Set<AbortController>();
  #destroyed = false;

  constructor(o: ProxyAgentOptions) {
    const { proxy, connectTimeoutMs, connectHeaders, tls, ...rest } = o;
    super(rest);
    this.proxy = typeof proxy === 'string' ? parseProxyUrl(proxy) : proxy;
    this.#timeoutMs = connectTimeoutMs;
    this.#headers = connectHeaders;
    this.#tls = tls;
    // node:http checks that a request's protocol is its agent's: https.request needs "https:".
    if (tls !== undefined) Object.assign(this, { protocol: 'https:', defaultPort: 443 });
  }

  override createConnection(
    options: ClientRequestArgs,
    callback?: (err: Error | null, stream: Duplex) => void,
  ): undefined {
    const cb = callback ?? (() => {});
    const host = options.host ?? options.hostname ?? 'localhost';
    const port = Number(options.port ?? 80);
    const ctl = new AbortController();
    this.#opening.add(ctl);
    const o: ConnectViaProxyOptions = { signal: ctl.signal };
    if (this.#timeoutMs !== undefined) o.timeoutMs = this.#timeoutMs;
    if (this.#headers !== undefined) o.headers = this.#headers;
    connectViaProxy(this.proxy, host, port, o).then(
      (socket) => {
        this.#opening.delete(ctl);
        if (this.#destroyed) {
          socket.destroy();
          cb(new ProxyError(ProxyErrorCode.ABORTED, 'proxy agent destroyed'), socket);
          return;
        }
        cb(null, this.#tls === undefined ? socket : tlsOver(socket, host, this.#tls));
      },
      (e: Error) => {
        this.#opening.delete(ctl);
        // The callback's stream argument is not read on error.
        cb(e, undefined as unknown as Duplex);
      },
    );
    return undefined;
  }

  override destroy(): void {
    this.#destroyed = true;
    for (const c of this.#opening) c.abort();
    this.#opening.clear();
    super.destroy();
  }
}
