/**
 * The one narrow interface every simulated encapsulation implements (issue 4: "one small
 * interface, one file each; the core never sees a socket"), and the pieces the five client halves
 * share: path ids, statistics, the bounded queue before a path opens, and the stable reasons a
 * path fails with.
 *
 * A datagram is an opaque roamlink datagram (an RFC 3948-framed ESP packet or control message).
 * Every encapsulation carries it intact, exactly once per send on a working path and in order on
 * the stream-based ones; UDP may lose or reorder, as UDP does.
 */
import type { PathInfo } from '@roamlink/core';
import type { Host, NetError, TcpOptions } from '@roamlink/netsim';

/** Per path, in datagrams and datagram bytes (the payload handed to send / onDatagram, no framing). */
export interface SimPathStats {
  datagramsSent: number;
  datagramsReceived: number;
  bytesSent: number;
  bytesReceived: number;
  /** Virtual ms from opening the path until it was ready (onOpen). */
  setupMs?: number;
}

export interface SimClientPath {
  /** Unique per host: "udp#1", "tcp#2", "ws#3", "hs#4" (HTTP streaming), "hp#5" (HTTP polling). */
  readonly id: string;
  /**
   * The encapsulation and the client's own view of what it sends on this path, as a real client
   * knows it (read it when building a registration request: a UDP socket's source address
   * follows the default interface).
   */
  readonly info: PathInfo;
  /**
   * Hands one datagram to the path. Before the path is open it waits (up to the path's
   * `maxQueuedBytes`: in the path for WebSocket, in TCP's send buffer for TCP, in the next POST
   * for HTTP; UDP is open at once) and leaves in order. Returns false when the datagram was not
   * taken: the path is closed or failed, the datagram is empty or longer than
   * MAX_DATAGRAM_BYTES, or the queue (or the connection's unacknowledged bytes) is over the bound.
   * true means taken, not delivered.
   */
  send(datagram: Uint8Array): boolean;
  onDatagram: (datagram: Uint8Array) => void;
  /**
   * Ready: UDP at once (asynchronously); TCP connected; WebSocket upgraded; HTTP streaming's
   * stream-open marker or first POST answer received; HTTP polling's first answer from the relay.
   */
  onOpen: () => void;
  /**
   * `info` changed: an HTTP streaming path found its stream buffered and now polls (its
   * encapsulation reads HTTP polling). Register the path again with the new info.
   */
  onInfoChange: () => void;
  /** The path failed or the peer closed it; called once, never after close(). See PathError. */
  onError: (reason: string) => void;
  /** Closes the path; no callback fires afterwards. */
  close(): void;
  /** RFC 3948 §2.3 NAT keepalive (UDP paths only). */
  sendKeepalive?(): boolean;
  readonly stats: SimPathStats;
}

export interface SimRelayEndpoint {
  /** A datagram arrived on `pathId`; `info.view` is what the relay observed on that path. */
  onDatagram: (datagram: Uint8Array, pathId: string, info: PathInfo) => void;
  /** A connection-oriented path went away (peer closed, reset, session expired). */
  onPathClose: (pathId: string, reason: string) => void;
  /** Sends on a path a datagram came from. false: unknown or closed path, or over a bound. */
  send(pathId: string, datagram: Uint8Array): boolean;
  close(): void;
  readonly stats: SimRelayStats;
}

export interface SimRelayStats {
  datagramsReceived: number;
  datagramsSent: number;
  /** RFC 3948 §2.3 keepalives received on UDP (dropped). */
  keepalivesReceived: number;
  /** TCP connections closed for a wrong preface or broken framing. */
  tcpRejected: number;
  /** HTTP requests answered with an error status (bad route, token, framing, upgrade). */
  httpRejected: number;
  /** WebSocket connections closed for a broken rule (unmasked, text, too big). */
  wsProtocolErrors: number;
}

/** Something that draws uniform 32-bit integers; netsim's Prng is one. */
export interface RandomSource {
  nextU32(): number;
}

/** An HTTP proxy the client must use for WebSocket and HTTP paths. */
export interface ProxyConfig {
  readonly addr: string;
  readonly port: number;
  /**
   * "forward" (default): requests in absolute form, so the proxy sees (and may refuse, strip or
   * buffer) them; "connect": an opaque CONNECT tunnel to the relay first.
   */
  readonly mode?: 'forward' | 'connect';
  /** Extra header fields for the proxy (say, Proxy-Authorization). */
  readonly headers?: readonly [string, string][];
}

/** Where the relay is, for every encapsulation. Ports default to RELAY_PORTS. */
export interface RelayAddress {
  readonly addr: string;
  readonly udpPort?: number;
  readonly tcpPort?: number;
  readonly httpPort?: number;
  /** Name for URLs and Host (a proxy resolves it through the network's names); default addr. */
  readonly hostname?: string;
}

export interface ClientPathOptions {
  readonly relay: RelayAddress;
  /** HTTP proxy for WebSocket and HTTP paths (ignored by UDP and TCP). */
  readonly proxy?: ProxyConfig;
  /** Path prefix of the relay's HTTP endpoints (default "/rl"). */
  readonly basePath?: string;
  /**
   * Base URL of the relay's HTTP endpoints for WebSocket and HTTP paths ("http://relay.example:8080/rl"
   * or "ws://..."): overrides relay.hostname, relay.httpPort and basePath. No TLS in the simulator.
   */
  readonly url?: string;
  /** Local interface or address to send from (default: the host's default route). */
  readonly iface?: string;
  readonly localAddr?: string;
  /** Local UDP port (default ephemeral). */
  readonly localPort?: number;
  /** Masks, WebSocket keys and HTTP session tokens come from here (default a fork of the net's). */
  readonly rng?: RandomSource;
  /** Bound on datagram bytes waiting (before open, in an HTTP batch, or unacknowledged in TCP). */
  readonly maxQueuedBytes?: number;
  /** Extra request header fields for WebSocket and HTTP (say, User-Agent). */
  readonly headers?: readonly [string, string][];
  readonly tcp?: TcpOptions;
  /**
   * HTTP streaming: fall back to polling (same token, `onInfoChange`) when no byte of the
   * down-stream arrived within factor × (first POST's response time), clamped to [minMs, maxMs];
   * maxMs alone before any POST was answered. Defaults 1.5, 100, 3000.
   */
  readonly bufferDetect?: { factor?: number; minMs?: number; maxMs?: number };
  /** HTTP: largest POST body (default 65 536 bytes; a larger single datagram goes alone). */
  readonly maxBatchBytes?: number;
}

export const RELAY_PORTS = { udp: 4500, tcp: 443, http: 80 } as const;

/** The length prefix of TCP and HTTP framing is 16 bits and counts itself (RFC 8229 §3). */
export const MAX_DATAGRAM_BYTES = 65_533;
export const DEFAULT_MAX_QUEUED_BYTES = 1 << 20;
export const DEFAULT_BASE_PATH = '/rl';

/**
 * Why a path failed: `onError` receives one of these, optionally followed by ": " and detail.
 * Stable: callers match on the part before the colon.
 */
export const PathError = {
  /** The peer closed the path (FIN, WebSocket close, end of the HTTP down-stream). */
  CLOSED: 'closed',
  /** Reset or aborted (RST, a lost local address). */
  RESET: 'reset',
  /** Connection refused (RST to the SYN, ICMP port unreachable). */
  REFUSED: 'refused',
  /** No answer (TCP user or connect timeout). */
  TIMEOUT: 'timeout',
  /** ICMP unreachable / administratively prohibited, no route, interface down. */
  UNREACHABLE: 'unreachable',
  /** The WebSocket upgrade was refused (403, 501, ...: a proxy's policy). */
  UPGRADE_REFUSED: 'upgrade-refused',
  /** The upgrade never reached the relay as one (a proxy stripped it: 426 or a plain 2xx). */
  UPGRADE_STRIPPED: 'upgrade-stripped',
  /** The proxy refused the CONNECT tunnel. */
  PROXY_REFUSED: 'proxy-refused',
  /** Any other unexpected HTTP status. */
  HTTP_STATUS: 'http-status',
  /** The WebSocket handshake answer was wrong (Sec-WebSocket-Accept, Upgrade). */
  BAD_HANDSHAKE: 'bad-handshake',
  /** Broken framing from the peer. */
  PROTOCOL: 'protocol',
  /**
   * HTTP streaming: no byte of the down-stream arrived in time; a proxy buffers responses.
   * Reserved: the simulator's streaming path falls back to polling by itself instead.
   */
  BUFFERED: 'buffered',
} as const;
export type PathError = (typeof PathError)[keyof typeof PathError];

export function netErrorReason(e: NetError): string {
  switch (e.code) {
    case 'ECONNREFUSED':
      return `${PathError.REFUSED}: ${e.message}`;
    case 'ETIMEDOUT':
      return `${PathError.TIMEOUT}: ${e.message}`;
    case 'EHOSTUNREACH':
    case 'ENETUNREACH':
    case 'ENETDOWN':
    case 'EADDRNOTAVAIL':
      return `${PathError.UNREACHABLE}: ${e.message}`;
    default:
      return `${PathError.RESET}: ${e.message}`;
  }
}

const counters = new WeakMap<Host, number>();

/** "udp#1", "tcp#2", ...: unique per host, deterministic per run. */
export function nextPathId(host: Host, kind: string): string {
  const n = (counters.get(host) ?? 0) + 1;
  counters.set(host, n);
  return `${kind}#${n}`;
}

export function defaultRng(host: Host, id: string): RandomSource {
  return host.net.rng(`sim/${host.name}/${id}`);
}

export function randomBytes(rng: RandomSource, n: number): Uint8Array {
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i += 4) {
    let v = rng.nextU32();
    for (let j = i; j < Math.min(n, i + 4); j++) {
      out[j] = v & 255;
      v >>>= 8;
    }
  }
  return out;
}

const HEX = '0123456789abcdef';
export function hex(b: Uint8Array): string {
  let s = '';
  for (const v of b) s += HEX[v >> 4]! + HEX[v & 15]!;
  return s;
}

/**
 * What every client half shares: callbacks, statistics, open/failed/closed state and the bounded
 * queue of datagrams sent before the path could carry them.
 */
export abstract class ClientPathBase implements SimClientPath {
  readonly id: string;
  readonly host: Host;
  readonly stats: SimPathStats = {
    datagramsSent: 0,
    datagramsReceived: 0,
    bytesSent: 0,
    bytesReceived: 0,
  };
  onDatagram: (datagram: Uint8Array) => void = () => {};
  onOpen: () => void = () => {};
  onError: (reason: string) => void = () => {};
  onInfoChange: () => void = () => {};
  protected readonly maxQueuedBytes: number;
  protected readonly openedAt: number;
  #state: 'opening' | 'open' | 'done' = 'opening';
  #queue: Uint8Array[] = [];
  #queuedBytes = 0;

  constructor(host: Host, id: string, opts: { maxQueuedBytes?: number }) {
    this.host = host;
    this.id = id;
    this.maxQueuedBytes = opts.maxQueuedBytes ?? DEFAULT_MAX_QUEUED_BYTES;
    this.openedAt = host.now;
  }

  abstract get info(): PathInfo;

  get isOpen(): boolean {
    return this.#state === 'open';
  }

  get isDone(): boolean {
    return this.#state === 'done';
  }

  send(datagram: Uint8Array): boolean {
    if (this.#state === 'done') return false;
    if (datagram.length === 0 || datagram.length > MAX_DATAGRAM_BYTES) return false;
    if (this.#state === 'opening' && !this.sendsBeforeOpen()) {
      if (this.#queuedBytes + datagram.length > this.maxQueuedBytes) return false;
      // The caller may reuse its buffer once send returns.
      this.#queue.push(datagram.slice());
      this.#queuedBytes += datagram.length;
      this.#count(datagram);
      return true;
    }
    if (!this.transmit(datagram)) return false;
    this.#count(datagram);
    return true;
  }

  close(): void {
    if (this.#state === 'done') return;
    this.#state = 'done';
    this.#queue = [];
    this.shutdown();
  }

  /** Whether datagrams go to transmit() even before the path is open (TCP, HTTP). */
  protected sendsBeforeOpen(): boolean {
    return false;
  }

  /** Puts one datagram on the wire (or into the transport's own queue). */
  protected abstract transmit(datagram: Uint8Array): boolean;

  /** Releases sockets and timers; no callback may fire afterwards. */
  protected abstract shutdown(): void;

  /** The path is ready: flush the queue, tell the owner. */
  protected opened(): void {
    if (this.#state !== 'opening') return;
    this.#state = 'open';
    this.stats.setupMs = this.host.now - this.openedAt;
    const q = this.#queue;
    this.#queue = [];
    this.#queuedBytes = 0;
    for (const d of q) this.transmit(d);
    this.onOpen();
  }

  /** `info` changed: tell the owner (never after close or failure). */
  protected infoChanged(): void {
    if (this.#state !== 'done') this.onInfoChange();
  }

  protected delivered(datagram: Uint8Array): void {
    if (this.#state === 'done') return;
    this.stats.datagramsReceived++;
    this.stats.bytesReceived += datagram.length;
    this.onDatagram(datagram);
  }

  /** The path failed: release everything, then tell the owner once. */
  protected fail(reason: string): void {
    if (this.#state === 'done') return;
    this.#state = 'done';
    this.#queue = [];
    this.shutdown();
    this.onError(reason);
  }

  #count(d: Uint8Array): void {
    this.stats.datagramsSent++;
    this.stats.bytesSent += d.length;
  }
}
