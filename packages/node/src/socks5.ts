/**
 * A SOCKS5 server (RFC 1928, with RFC 1929 username/password authentication when configured) whose
 * connections go through a tunnel behind the small `TunnelDialer` interface. Nothing here knows
 * about the tunnel: the client app plugs its stream layer in, tests plug in a direct dialer.
 *
 * - Method negotiation (§3): 0x00 without `auth`, 0x02 with it; anything else gets 0xFF.
 * - CONNECT (§4): the reply is sent once the dialer resolved, BND.ADDR/BND.PORT zero. Domain names
 *   are handed to the dialer as given, never resolved here (socks5h semantics).
 * - BIND and unknown commands: 0x07. Unknown ATYP: 0x08. Malformed request: 0x01.
 * - UDP ASSOCIATE (§7): a UDP socket bound on the control connection's local address; datagrams
 *   only from the control connection's peer address (and the port it named, if it named one);
 *   FRAG other than 0 dropped and counted; the association ends with the control connection.
 *
 * Hostile input never throws out of a connection handler: every bad request gets the SOCKS error
 * where one exists, is counted by reason, and its socket closed. Bytes are carried with stream
 * backpressure both ways, a FIN on one side becomes end() on the other, and an error on either
 * side destroys both (the client's socket with a TCP RST).
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import { createSocket, type Socket as UdpSocket } from 'node:dgram';
import { isIPv4, isIPv6, Socket } from 'node:net';
import { type Duplex, finished } from 'node:stream';
import { ErrorCode, RoamlinkError } from '@roamlink/core';
import { formatEndpoint, LocalServer, safeLogger, unmapV4 } from './local-server.ts';
import { corkedPipe } from './pipe.ts';

/** Where a tunnelled stream or datagram goes: an IP literal or a domain name, never resolved here. */
export interface TunnelTarget {
  host: string;
  port: number;
}

export type TunnelErrorCode =
  | 'policy'
  | 'refused'
  | 'unreachable'
  | 'network'
  | 'timeout'
  | 'dns'
  | 'shutdown'
  | 'internal';

/** What `carryStream` logs: the stream's connect and its close. */
export interface CarryLogEvent {
  event: 'connect' | 'close';
  remote: string;
  target: TunnelTarget;
  code?: TunnelErrorCode;
  message?: string;
  bytesFromClient?: number;
  bytesToClient?: number;
}

/**
 * A local connection's tunnel stream, once open: dropped if the connection or its server went
 * meanwhile; otherwise counted, logged, tracked for the server's close, and spliced to the
 * connection (after `ready`, say a SOCKS reply), its close logged with the bytes carried.
 */
export function carryStream(
  c: {
    listener: { closing: boolean; tunnels: Set<Duplex> };
    stats: { connects: number };
    log: (e: CarryLogEvent) => void;
    s: Socket;
    stream: Duplex;
    remote: string;
    target: TunnelTarget;
  },
  ready?: () => void,
): void {
  const { listener, s, stream, remote, target, log } = c;
  if (s.destroyed || listener.closing) {
    stream.on('error', () => {});
    stream.destroy();
    return;
  }
  c.stats.connects++;
  listener.tunnels.add(stream);
  log({ event: 'connect', remote, target });
  ready?.();
  spliceStreams(s, stream, (err) => {
    listener.tunnels.delete(stream);
    log({
      event: 'close',
      remote,
      target,
      bytesFromClient: s.bytesRead,
      bytesToClient: s.bytesWritten,
      ...(err ? { message: err.message } : {}),
      ...(err instanceof TunnelError ? { code: err.code } : {}),
    });
  });
}

/** A zero count for each way a stream's connect can fail (the servers' `connectFailures`). */
export function newConnectFailures(): Record<TunnelErrorCode, number> {
  return {
    policy: 0,
    refused: 0,
    unreachable: 0,
    network: 0,
    timeout: 0,
    dns: 0,
    shutdown: 0,
    internal: 0,
  };
}

/** Why the tunnel could not open (or lost) a stream. Callers match on `code`, never on `message`. */
export class TunnelError extends Error {
  readonly code: TunnelErrorCode;
  constructor(code: TunnelErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'TunnelError';
    this.code = code;
  }
}

export interface TunnelDialer {
  /** Opens a TCP stream to target through the tunnel; resolves once the far end accepted, rejects with TunnelError. */
  connect(target: TunnelTarget, signal?: AbortSignal): Promise<Duplex>;
  /** UDP: one association per SOCKS UDP ASSOCIATE. Optional: when absent, UDP ASSOCIATE gets reply 0x07. */
  openDatagrams?(): TunnelDatagrams;
}

export interface TunnelDatagrams {
  send(target: TunnelTarget, data: Uint8Array): void;
  onMessage(cb: (from: TunnelTarget, data: Uint8Array) => void): void;
  /**
   * The tunnel ended the flow by itself (it closed, or the relay restarted and its stream layer
   * with it): nothing sent on it arrives any more.
   */
  onClose?(cb: () => void): void;
  close(): void;
}

/** REP values of a SOCKS5 reply (RFC 1928 §6). */
export const SocksReply = {
  SUCCEEDED: 0x00,
  GENERAL_FAILURE: 0x01,
  NOT_ALLOWED: 0x02,
  NETWORK_UNREACHABLE: 0x03,
  HOST_UNREACHABLE: 0x04,
  CONNECTION_REFUSED: 0x05,
  TTL_EXPIRED: 0x06,
  COMMAND_NOT_SUPPORTED: 0x07,
  ADDRESS_TYPE_NOT_SUPPORTED: 0x08,
} as const;

/** ATYP values (RFC 1928 §4). */
export const SocksAtyp = { IPV4: 0x01, DOMAIN: 0x03, IPV6: 0x04 } as const;

/** The reply code for a dial failure: a TunnelError by its code, anything else 0x01. */
export function socksReplyFor(err: unknown): number {
  if (!(err instanceof TunnelError)) return SocksReply.GENERAL_FAILURE;
  switch (err.code) {
    case 'policy':
      return SocksReply.NOT_ALLOWED;
    case 'network':
      return SocksReply.NETWORK_UNREACHABLE;
    case 'unreachable':
    case 'dns':
      return SocksReply.HOST_UNREACHABLE;
    case 'refused':
      return SocksReply.CONNECTION_REFUSED;
    case 'timeout':
      return SocksReply.TTL_EXPIRED;
    default:
      return SocksReply.GENERAL_FAILURE;
  }
}

// ---------------------------------------------------------------------------------------------
// Address codec (RFC 1928 §4-§5, §7)

const stripZone = (a: string): string => {
  const z = a.indexOf('%');
  return z < 0 ? a : a.slice(0, z);
};

function formatIPv6(b: Uint8Array): string {
  const g: number[] = [];
  for (let i = 0; i < 16; i += 2) g.push((b[i]! << 8) | b[i + 1]!);
  // RFC 5952 §4.2: the longest run of two or more zero groups (the first of equals) becomes "::".
  let best = -1;
  let bestLen = 1;
  for (let i = 0; i < 8; ) {
    if (g[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && g[j] === 0) j++;
    if (j - i > bestLen) {
      best = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hex = (a: number[]): string => a.map((x) => x.toString(16)).join(':');
  if (best < 0) return hex(g);
  return `${hex(g.slice(0, best))}::${hex(g.slice(best + bestLen))}`;
}

/** The 16 bytes of an IPv6 literal that `isIPv6` accepted (zone already removed). */
function parseIPv6(s: string): Uint8Array {
  const groups = (part: string): number[] =>
    part === ''
      ? []
      : part.split(':').flatMap((x) => {
          if (!x.includes('.')) return [Number.parseInt(x, 16)];
          const [a, b, c, d] = x.split('.').map(Number) as [number, number, number, number];
          return [(a << 8) | b, (c << 8) | d];
        });
  const cut = s.indexOf('::');
  const head = groups(cut < 0 ? s : s.slice(0, cut));
  const tail = cut < 0 ? [] : groups(s.slice(cut + 2));
  const out = new Uint8Array(16);
  const put = (g: number, i: number): void => {
    out[2 * i] = g >> 8;
    out[2 * i + 1] = g & 0xff;
  };
  for (const [i, g] of head.entries()) put(g, i);
  for (const [i, g] of tail.entries()) put(g, 8 - tail.length + i);
  return out;
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

/** A domain name as sent: 1-255 bytes of UTF-8 with no control characters; undefined otherwise. */
function decodeDomain(b: Uint8Array): string | undefined {
  if (b.length === 0) return undefined;
  let name: string;
  try {
    name = utf8.decode(b);
  } catch {
    return undefined;
  }
  // biome-ignore lint/suspicious/noControlCharactersInRegex: rejecting them is the point
  return /[\u0000-\u001f\u007f]/.test(name) ? undefined : name;
}

/** ATYP, DST.ADDR and DST.PORT for a target. Throws RangeError for a name that cannot be sent. */
export function encodeSocksAddress(t: TunnelTarget): Uint8Array {
  const host = unmapV4(stripZone(t.host));
  let head: Uint8Array;
  if (isIPv4(host)) {
    head = Uint8Array.of(SocksAtyp.IPV4, ...host.split('.').map(Number));
  } else if (isIPv6(host)) {
    head = Uint8Array.of(SocksAtyp.IPV6, ...parseIPv6(host));
  } else {
    const name = new TextEncoder().encode(t.host);
    if (name.length < 1 || name.length > 255)
      throw new RangeError('domain name must be 1-255 bytes');
    head = Uint8Array.of(SocksAtyp.DOMAIN, name.length, ...name);
  }
  const out = new Uint8Array(head.length + 2);
  out.set(head);
  out[head.length] = (t.port >> 8) & 0xff;
  out[head.length + 1] = t.port & 0xff;
  return out;
}

type AddressResult =
  | { ok: true; target: TunnelTarget; length: number }
  | { ok: false; why: 'short' | 'atyp' | 'malformed' };

/** Reads ATYP, ADDR, PORT at `off`. */
export function decodeSocksAddress(b: Uint8Array, off = 0): AddressResult {
  const atyp = b[off];
  if (atyp === undefined) return { ok: false, why: 'short' };
  let addrLen: number;
  let start = off + 1;
  if (atyp === SocksAtyp.IPV4) addrLen = 4;
  else if (atyp === SocksAtyp.IPV6) addrLen = 16;
  else if (atyp === SocksAtyp.DOMAIN) {
    const n = b[off + 1];
    if (n === undefined) return { ok: false, why: 'short' };
    addrLen = n;
    start++;
  } else return { ok: false, why: 'atyp' };
  const end = start + addrLen;
  if (b.length < end + 2) return { ok: false, why: 'short' };
  const a = b.subarray(start, end);
  let host: string | undefined;
  if (atyp === SocksAtyp.IPV4) host = Array.from(a).join('.');
  else if (atyp === SocksAtyp.IPV6) host = formatIPv6(a);
  else host = decodeDomain(a);
  if (host === undefined) return { ok: false, why: 'malformed' };
  return { ok: true, target: { host, port: (b[end]! << 8) | b[end + 1]! }, length: end + 2 - off };
}

/** A UDP request header (RFC 1928 §7) for `target` followed by `data`. */
export function encodeSocksUdp(target: TunnelTarget, data: Uint8Array): Uint8Array {
  const addr = encodeSocksAddress(target);
  const out = new Uint8Array(3 + addr.length + data.length);
  out.set(addr, 3);
  out.set(data, 3 + addr.length);
  return out;
}

/** Parses a UDP request header; undefined when the datagram is malformed. */
export function decodeSocksUdp(
  b: Uint8Array,
): { frag: number; target: TunnelTarget; data: Uint8Array } | undefined {
  if (b.length < 4) return undefined;
  const r = decodeSocksAddress(b, 3);
  if (!r.ok) return undefined;
  return { frag: b[2]!, target: r.target, data: b.subarray(3 + r.length) };
}

/** A 10-or-more-byte reply: VER, REP, RSV, then the bound address (zeros when none). */
function reply(rep: number, bound: TunnelTarget = { host: '0.0.0.0', port: 0 }): Uint8Array {
  const addr = encodeSocksAddress(bound);
  const out = new Uint8Array(3 + addr.length);
  out[0] = 5;
  out[1] = rep;
  out.set(addr, 3);
  return out;
}

// ---------------------------------------------------------------------------------------------
// Plumbing shared with the -L forwards

/**
 * Carries bytes both ways between a client socket and a tunnel stream with pipe semantics
 * (backpressure both ways, end() on the other side when one side's reader ends). An error or a
 * premature close on either side destroys both, the client socket with an RST when it is a TCP
 * socket. `done` is called once: without an error when both directions finished cleanly.
 */
export function spliceStreams(client: Duplex, tunnel: Duplex, done?: (err?: Error) => void): void {
  let settled = false;
  let clean = 0;
  const settle = (err?: Error): void => {
    if (settled) return;
    settled = true;
    if (err) {
      client.unpipe(tunnel);
      tunnel.unpipe(client);
      if (client instanceof Socket && !client.destroyed) client.resetAndDestroy();
      else client.destroy();
      tunnel.destroy(err);
    }
    try {
      done?.(err);
    } catch {
      // a logging callback must not break the connection's teardown
    }
  };
  const onFinished = (err?: Error | null): void => {
    if (err) settle(err);
    else if (++clean === 2) settle();
  };
  finished(client, onFinished);
  finished(tunnel, onFinished);
  client.pipe(tunnel);
  // Many small chunks per loop turn come out of the tunnel: corked, they leave in one writev.
  corkedPipe(tunnel, client);
}

/**
 * Dials `target`, giving up after `timeoutMs` (TunnelError 'timeout') or when `client` closes
 * first (TunnelError 'shutdown'). A stream that arrives after giving up is destroyed.
 */
export function dialTunnel(
  dialer: TunnelDialer,
  target: TunnelTarget,
  timeoutMs: number,
  client: Socket,
): Promise<Duplex> {
  const ac = new AbortController();
  return new Promise<Duplex>((resolve, reject) => {
    let over = false;
    const giveUp = (e: TunnelError): void => {
      if (over) return;
      over = true;
      cleanup();
      ac.abort(e);
      reject(e);
    };
    const timer = setTimeout(
      () => giveUp(new TunnelError('timeout', `no answer from the tunnel in ${timeoutMs} ms`)),
      timeoutMs,
    );
    const onClose = (): void => giveUp(new TunnelError('shutdown', 'client went away'));
    const cleanup = (): void => {
      clearTimeout(timer);
      client.off('close', onClose);
    };
    client.once('close', onClose);
    let p: Promise<Duplex>;
    try {
      p = dialer.connect(target, ac.signal);
    } catch (e) {
      p = Promise.reject(e);
    }
    p.then(
      (stream) => {
        if (over) {
          stream.on('error', () => {});
          stream.destroy();
          return;
        }
        over = true;
        cleanup();
        resolve(stream);
      },
      (e: unknown) => {
        if (over) return;
        over = true;
        cleanup();
        reject(e instanceof Error ? e : new TunnelError('internal', String(e)));
      },
    );
  });
}

export { formatEndpoint };

// ---------------------------------------------------------------------------------------------
// The server

/** Why a connection was turned away before it carried anything (stable strings). */
export type SocksRejectReason =
  | 'bad-version'
  | 'no-acceptable-method'
  | 'auth-failed'
  | 'malformed'
  | 'command-not-supported'
  | 'address-type-not-supported'
  | 'truncated'
  | 'handshake-timeout'
  | 'too-many-connections'
  | 'udp-setup-failed';

const REJECT_REASONS: readonly SocksRejectReason[] = [
  'bad-version',
  'no-acceptable-method',
  'auth-failed',
  'malformed',
  'command-not-supported',
  'address-type-not-supported',
  'truncated',
  'handshake-timeout',
  'too-many-connections',
  'udp-setup-failed',
];

export interface SocksServerStats {
  accepted: number;
  rejected: Record<SocksRejectReason, number>;
  /** CONNECTs that the dialer accepted. */
  connects: number;
  /** CONNECTs the dialer refused or that timed out, by TunnelErrorCode ('internal' for others). */
  connectFailures: Record<TunnelErrorCode, number>;
  udpAssociations: number;
  /** Datagrams from the client handed to the tunnel. */
  udpDatagramsIn: number;
  /** Datagrams from the tunnel sent to the client. */
  udpDatagramsOut: number;
  /** Dropped: FRAG other than 0 (fragmentation is not supported). */
  udpFragDropped: number;
  /** Dropped: from an address (or port) other than the association's client. */
  udpForeignDropped: number;
  /** Dropped: header too short, unknown ATYP, or a bad domain name. */
  udpMalformedDropped: number;
  /** Dropped: from the tunnel before the client sent anything (no port to send to) or unencodable. */
  udpUndeliverable: number;
}

export interface SocksLogEvent {
  event: 'accept' | 'reject' | 'connect' | 'connect-failed' | 'close' | 'udp-open' | 'udp-close';
  /** The client's address:port. */
  remote: string;
  reason?: SocksRejectReason;
  /** The reply code sent, when one was. */
  reply?: number;
  target?: TunnelTarget;
  code?: TunnelErrorCode;
  message?: string;
  /** At close: bytes read from and written to the client socket (handshake included). */
  bytesFromClient?: number;
  bytesToClient?: number;
}

export interface SocksServerOptions {
  host: string;
  port: number;
  dialer: TunnelDialer;
  /** Requires RFC 1929 username/password (method 0x02) instead of no authentication. */
  auth?: { username: string; password: string };
  onLog?: (e: SocksLogEvent) => void;
  /** From accept to a complete request, however the bytes trickle in (default 10 000). */
  handshakeTimeoutMs?: number;
  /** Open client connections beyond which new ones are closed at once (default 1024). */
  maxConnections?: number;
  /** How long CONNECT waits for the dialer before replying 0x06 (default 30 000). */
  connectTimeoutMs?: number;
}

export interface SocksServer {
  address: { host: string; port: number };
  connections(): number;
  readonly stats: SocksServerStats;
  close(): Promise<void>;
}

export const DEFAULT_SOCKS_HANDSHAKE_TIMEOUT_MS = 10_000;
export const DEFAULT_TUNNEL_CONNECT_TIMEOUT_MS = 30_000;
export const DEFAULT_MAX_LOCAL_CONNECTIONS = 1024;
/** How long a rejected socket may stay half-closed waiting for the client's FIN. */
const REJECT_LINGER_MS = 2_000;

const CMD_CONNECT = 0x01;
const CMD_UDP_ASSOCIATE = 0x03;
const METHOD_NONE = 0x00;
const METHOD_USERPASS = 0x02;
const METHOD_NO_ACCEPTABLE = 0xff;

/** A handshake that ends the connection: why, and the bytes to answer with (if any). */
class Reject {
  readonly reason: SocksRejectReason;
  readonly answer: Uint8Array | undefined;
  constructor(reason: SocksRejectReason, answer?: Uint8Array) {
    this.reason = reason;
    this.answer = answer;
  }
}

/**
 * Exact-length reads during the handshake, in paused mode: what is not asked for stays in the
 * socket's buffer (so data pipelined after the request reaches the tunnel), and the socket stops
 * reading from the kernel once that buffer is full.
 */
class HandshakeReader {
  readonly #s: Socket;
  #want = 0;
  #pending: { resolve: (b: Buffer) => void; reject: (e: unknown) => void } | undefined;
  #failure: unknown;
  #ended = false;

  constructor(s: Socket) {
    this.#s = s;
    s.on('readable', this.#poll);
    s.on('end', this.#onEnd);
    s.on('close', this.#onClose);
  }

  read(n: number): Promise<Buffer> {
    if (this.#failure !== undefined) return Promise.reject(this.#failure);
    if (n === 0) return Promise.resolve(Buffer.alloc(0));
    this.#want = n;
    return new Promise((resolve, reject) => {
      this.#pending = { resolve, reject };
      this.#poll();
    });
  }

  fail(e: unknown): void {
    this.#failure ??= e;
    const p = this.#pending;
    this.#pending = undefined;
    p?.reject(this.#failure);
  }

  detach(): void {
    this.#s.off('readable', this.#poll);
    this.#s.off('end', this.#onEnd);
    this.#s.off('close', this.#onClose);
  }

  #poll = (): void => {
    if (!this.#pending) return;
    const b = this.#s.read(this.#want) as Buffer | null;
    if (b && b.length === this.#want) {
      const p = this.#pending;
      this.#pending = undefined;
      p.resolve(b);
    } else if (b || this.#ended || this.#s.readableEnded) {
      // read(n) hands back a short remainder only once the stream has ended.
      this.fail(new Reject('truncated'));
    }
  };

  #onEnd = (): void => {
    this.#ended = true;
    this.fail(new Reject('truncated'));
  };

  #onClose = (): void => this.fail(new Reject('truncated'));
}

const digest = (s: string | Uint8Array): Buffer => createHash('sha256').update(s).digest();

function checkOptions(o: SocksServerOptions): void {
  const bad = (m: string): never => {
    throw new RoamlinkError(ErrorCode.INVALID_ARGUMENT, m);
  };
  if (!Number.isInteger(o.port) || o.port < 0 || o.port > 65535) bad(`bad port ${o.port}`);
  if (o.auth) {
    for (const [k, v] of Object.entries(o.auth)) {
      const n = Buffer.byteLength(v);
      // RFC 1929 §2: UNAME and PASSWD are 1 to 255 bytes.
      if (n < 1 || n > 255) bad(`auth ${k} must be 1-255 bytes`);
    }
  }
  for (const k of ['handshakeTimeoutMs', 'maxConnections', 'connectTimeoutMs'] as const) {
    const v = o[k];
    if (v !== undefined && !(Number.isFinite(v) && v > 0)) bad(`${k} must be positive`);
  }
}

/** Starts a SOCKS5 server on host:port (port 0: any free port). */
export async function startSocksServer(o: SocksServerOptions): Promise<SocksServer> {
  checkOptions(o);
  const handshakeMs = o.handshakeTimeoutMs ?? DEFAULT_SOCKS_HANDSHAKE_TIMEOUT_MS;
  const connectMs = o.connectTimeoutMs ?? DEFAULT_TUNNEL_CONNECT_TIMEOUT_MS;
  const maxConns = o.maxConnections ?? DEFAULT_MAX_LOCAL_CONNECTIONS;
  const authDigests = o.auth && { user: digest(o.auth.username), pass: digest(o.auth.password) };
  const stats: SocksServerStats = {
    accepted: 0,
    rejected: Object.fromEntries(REJECT_REASONS.map((r) => [r, 0])) as Record<
      SocksRejectReason,
      number
    >,
    connects: 0,
    connectFailures: newConnectFailures(),
    udpAssociations: 0,
    udpDatagramsIn: 0,
    udpDatagramsOut: 0,
    udpFragDropped: 0,
    udpForeignDropped: 0,
    udpMalformedDropped: 0,
    udpUndeliverable: 0,
  };

  const log = safeLogger(o.onLog);

  const rejectConn = (s: Socket, remote: string, r: Reject): void => {
    stats.rejected[r.reason]++;
    log({
      event: 'reject',
      remote,
      reason: r.reason,
      // A §6 reply (10 bytes or more), not a method selection or an RFC 1929 status.
      ...(r.answer && r.answer.length >= 10 ? { reply: r.answer[1]! } : {}),
    });
    endWith(s, r.answer);
  };

  /** Answers (if there is an answer), sends FIN, and destroys once the client closed too. */
  const endWith = (s: Socket, answer?: Uint8Array): void => {
    if (s.destroyed) return;
    if (answer) s.end(answer);
    else s.end();
    // Keep reading (and discarding) so the client's FIN is seen; unread data at close would
    // turn our FIN into an RST and could destroy the answer before the client read it.
    s.on('end', () => s.destroy());
    s.resume();
    const t = setTimeout(() => s.destroy(), REJECT_LINGER_MS);
    t.unref();
    s.once('close', () => clearTimeout(t));
  };

  const handshake = async (
    s: Socket,
    reader: HandshakeReader,
    phase: { now: 'greeting' | 'auth' | 'request' },
  ): Promise<{ cmd: number; target: TunnelTarget }> => {
    // §3: VER, NMETHODS, METHODS.
    const [ver, nMethods] = await reader.read(2);
    if (ver !== 5) throw new Reject('bad-version');
    const methods = await reader.read(nMethods!);
    const want = authDigests ? METHOD_USERPASS : METHOD_NONE;
    if (!methods.includes(want)) {
      throw new Reject('no-acceptable-method', Uint8Array.of(5, METHOD_NO_ACCEPTABLE));
    }
    s.write(Uint8Array.of(5, want));
    if (authDigests) {
      // RFC 1929 §2: VER 0x01, ULEN, UNAME, PLEN, PASSWD; answer VER, STATUS (0 = success).
      phase.now = 'auth';
      const [aver, ulen] = await reader.read(2);
      if (aver !== 1) throw new Reject('bad-version', Uint8Array.of(1, 1));
      const user = await reader.read(ulen!);
      const [plen] = await reader.read(1);
      const pass = await reader.read(plen!);
      // Both compared, in constant time, whatever the first result.
      const okUser = timingSafeEqual(digest(user), authDigests.user);
      const okPass = timingSafeEqual(digest(pass), authDigests.pass);
      if (!(okUser && okPass)) throw new Reject('auth-failed', Uint8Array.of(1, 1));
      s.write(Uint8Array.of(1, 0));
    }
    // §4: VER, CMD, RSV, ATYP, DST.ADDR, DST.PORT.
    phase.now = 'request';
    const head = await reader.read(4);
    if (head[0] !== 5) throw new Reject('bad-version', reply(SocksReply.GENERAL_FAILURE));
    const atyp = head[3]!;
    let rest: Buffer;
    if (atyp === SocksAtyp.IPV4) rest = await reader.read(4 + 2);
    else if (atyp === SocksAtyp.IPV6) rest = await reader.read(16 + 2);
    else if (atyp === SocksAtyp.DOMAIN) {
      const len = await reader.read(1);
      rest = Buffer.concat([len, await reader.read(len[0]! + 2)]);
    } else {
      throw new Reject('address-type-not-supported', reply(SocksReply.ADDRESS_TYPE_NOT_SUPPORTED));
    }
    const addr = decodeSocksAddress(Buffer.concat([head.subarray(3), rest]));
    if (!addr.ok) throw new Reject('malformed', reply(SocksReply.GENERAL_FAILURE));
    const cmd = head[1]!;
    if (cmd !== CMD_CONNECT && cmd !== CMD_UDP_ASSOCIATE) {
      // BIND (0x02) and anything unknown.
      throw new Reject('command-not-supported', reply(SocksReply.COMMAND_NOT_SUPPORTED));
    }
    return { cmd, target: addr.target };
  };

  const doConnect = async (s: Socket, remote: string, target: TunnelTarget): Promise<void> => {
    let stream: Duplex;
    try {
      stream = await dialTunnel(o.dialer, target, connectMs, s);
    } catch (e) {
      const code: TunnelErrorCode = e instanceof TunnelError ? e.code : 'internal';
      stats.connectFailures[code]++;
      const rep = socksReplyFor(e);
      log({
        event: 'connect-failed',
        remote,
        target,
        code,
        reply: rep,
        message: e instanceof Error ? e.message : String(e),
      });
      endWith(s, reply(rep));
      return;
    }
    carryStream({ listener, stats, log, s, stream, remote, target }, () =>
      s.write(reply(SocksReply.SUCCEEDED)),
    );
  };

  const doUdp = async (s: Socket, remote: string, requested: TunnelTarget): Promise<void> => {
    if (!o.dialer.openDatagrams) {
      rejectConn(
        s,
        remote,
        new Reject('command-not-supported', reply(SocksReply.COMMAND_NOT_SUPPORTED)),
      );
      return;
    }
    const local = unmapV4(s.localAddress ?? '127.0.0.1');
    const peer = unmapV4(s.remoteAddress ?? '');
    // §7: the client's address is the control connection's; DST.PORT, when not 0, the port it
    // will send from.
    const fixedPort = requested.port !== 0 ? requested.port : undefined;
    const udp: UdpSocket = createSocket({ type: isIPv6(local) ? 'udp6' : 'udp4' });
    udp.on('error', () => {});
    let dg: TunnelDatagrams;
    try {
      await new Promise<void>((resolve, reject) => {
        udp.once('error', reject);
        udp.bind(0, local, () => {
          udp.off('error', reject);
          resolve();
        });
      });
      dg = o.dialer.openDatagrams();
    } catch (e) {
      udp.close();
      rejectConn(s, remote, new Reject('udp-setup-failed', reply(SocksReply.GENERAL_FAILURE)));
      log({ event: 'udp-close', remote, message: e instanceof Error ? e.message : String(e) });
      return;
    }
    let open = true;
    const teardown = (): void => {
      if (!open) return;
      open = false;
      udp.close();
      try {
        dg.close();
      } catch {
        // the tunnel's side is gone either way
      }
      log({ event: 'udp-close', remote });
    };
    if (s.destroyed || listener.closing) {
      teardown();
      return;
    }
    let clientPort = fixedPort;
    udp.on('message', (msg, rinfo) => {
      if (
        unmapV4(rinfo.address) !== peer ||
        (fixedPort !== undefined && rinfo.port !== fixedPort)
      ) {
        stats.udpForeignDropped++;
        return;
      }
      const d = decodeSocksUdp(msg);
      if (!d) {
        stats.udpMalformedDropped++;
        return;
      }
      if (d.frag !== 0) {
        stats.udpFragDropped++;
        return;
      }
      clientPort = rinfo.port;
      stats.udpDatagramsIn++;
      try {
        dg.send(d.target, d.data);
      } catch {
        stats.udpUndeliverable++;
      }
    });
    dg.onMessage((from, data) => {
      if (!open || clientPort === undefined) {
        stats.udpUndeliverable++;
        return;
      }
      let out: Uint8Array;
      try {
        out = encodeSocksUdp(from, data);
      } catch {
        stats.udpUndeliverable++;
        return;
      }
      stats.udpDatagramsOut++;
      udp.send(out, clientPort, peer);
    });
    stats.udpAssociations++;
    const bound = udp.address();
    s.write(reply(SocksReply.SUCCEEDED, { host: local, port: bound.port }));
    log({ event: 'udp-open', remote, target: { host: local, port: bound.port } });
    // The control connection only keeps the association alive: whatever it carries is ignored,
    // and its end ends the association.
    s.on('end', () => s.end());
    s.once('close', teardown);
    // A flow the tunnel ended (the relay restarted) ends the association, as RFC 1928 §7 ends
    // one: by closing its TCP connection, so that the application associates again.
    dg.onClose?.(() => s.destroy());
    s.resume();
  };

  const session = async (s: Socket, remote: string): Promise<void> => {
    const reader = new HandshakeReader(s);
    const phase: { now: 'greeting' | 'auth' | 'request' } = { now: 'greeting' };
    const timer = setTimeout(() => reader.fail(new Reject('handshake-timeout')), handshakeMs);
    let req: { cmd: number; target: TunnelTarget } | undefined;
    let failure: unknown;
    try {
      req = await handshake(s, reader, phase);
    } catch (e) {
      failure = e;
    }
    clearTimeout(timer);
    // Detached before anything else touches the socket's reading: the reader's 'readable'
    // listener would otherwise keep a later resume() from flowing.
    reader.detach();
    if (!req) {
      let r = failure instanceof Reject ? failure : new Reject('malformed');
      if (!r.answer && (r.reason === 'truncated' || r.reason === 'handshake-timeout')) {
        // Past the greeting there is an error answer to give: RFC 1929 failure, or reply 0x01.
        if (phase.now === 'auth') r = new Reject(r.reason, Uint8Array.of(1, 1));
        else if (phase.now === 'request') {
          r = new Reject(r.reason, reply(SocksReply.GENERAL_FAILURE));
        }
      }
      rejectConn(s, remote, r);
      return;
    }
    if (req.cmd === CMD_CONNECT) await doConnect(s, remote, req.target);
    else await doUdp(s, remote, req.target);
  };

  const listener: LocalServer = new LocalServer({
    serverOptions: { allowHalfOpen: true, noDelay: true },
    maxConnections: maxConns,
    onRefused: (remote) => {
      stats.rejected['too-many-connections']++;
      log({ event: 'reject', remote, reason: 'too-many-connections' });
    },
    onAccepted: (remote) => {
      stats.accepted++;
      log({ event: 'accept', remote });
    },
    handle: session,
    onFailed: (remote, message) => log({ event: 'close', remote, message }),
  });
  const address = await listener.listen(o.host, o.port);

  return {
    address,
    stats,
    connections: () => listener.sockets.size,
    close: () => listener.close(),
  };
}
