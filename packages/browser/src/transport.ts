/**
 * What every browser transport is to the session: one path (a WebSocket, or one RLHTTP/1 token)
 * that hands whole datagrams up with its path id and takes `send(datagram)`. Paths are strings,
 * as on Node: "ws:<n>", "hs:<token>" (HTTP streaming; it keeps its id after falling back to
 * polling), "hp:<token>" (HTTP long polling).
 */
import type { Encapsulation, OuterView } from '@roamlink/core';

/** The encapsulations a browser has, by the names the relay's `--encapsulations` uses. */
export type BrowserEncapsulation = 'ws' | 'http-stream' | 'http-poll';
export const BROWSER_ENCAPSULATIONS: readonly BrowserEncapsulation[] = [
  'ws',
  'http-stream',
  'http-poll',
];

export interface PathEvents {
  /** A datagram arrived on the path. */
  onDatagram: (datagram: Uint8Array, pathId: string) => void;
  /** The path failed; it is closed already. Reported once, never for `close()`. */
  onClose: (pathId: string, reason: string) => void;
  /** HTTP streaming only: the stream is buffered and the path polls now (register it again). */
  onModeChange?: (pathId: string) => void;
  /** Room opened in a path's queue (a POST was answered): blocked writers may go on. */
  onDrain?: () => void;
}

export interface BrowserPath {
  readonly id: string;
  /** The encapsulation the path's datagrams travel as now. */
  readonly encapsulation: Encapsulation;
  /** Which of the browser encapsulations dialled it (a fallen-back stream stays "http-stream"). */
  readonly kind: BrowserEncapsulation;
  /** The client's copy of the outer fields it sends (what registration compares). */
  view(): OuterView;
  /** Sends one datagram; false when dropped (closed, too long, or the queue is full). */
  send(datagram: Uint8Array): boolean;
  /** The queue is more than half full: a writer that can wait should. */
  readonly congested: boolean;
  /** Closes the path quietly (nothing reported). */
  close(): void;
}

/** A relay URL taken apart: where its WebSocket and RLHTTP/1 routes are. */
export interface RelayEndpoint {
  /** `http://host:port` or `https://host:port` */
  origin: string;
  /** `host:port` as the browser sends it in Host (the default port left out). */
  host: string;
  hostname: string;
  port: number;
  /** `<prefix>/rl`: the RLHTTP/1 base path (a reverse proxy may mount the relay under a prefix). */
  basePath: string;
  /**
   * The session routing id (docs/PROTOCOL.md §7, "Session routing id"): chosen at random per
   * session, sent as the `sid` query parameter on every request of every encapsulation, so that a
   * relay spread over several servers (Cloudflare Workers: one Durable Object per session) routes
   * them all to the same place. It routes; it does not authenticate.
   */
  sid: string;
  /** The WebSocket URL: `ws[s]://host:port<prefix>/rl/ws?sid=<sid>`. */
  wsUrl: string;
}

/** The query parameter that carries the session routing id. */
export const SID_PARAM = 'sid';

/** What relays accept as a routing id (clients send 32 hex digits). */
export const isSessionId = (s: string): boolean => /^[A-Za-z0-9_-]{16,128}$/.test(s);

/**
 * Parses the `relay` option: an http(s) URL, optionally with a path prefix; nothing else. `sid` is
 * the session's routing id (see `RelayEndpoint.sid`).
 */
export function relayEndpoint(relay: string, sid: string): RelayEndpoint {
  if (!isSessionId(sid)) throw new RangeError('session routing id: 16-128 of [A-Za-z0-9_-]');
  const u = new URL(relay);
  if (u.protocol !== 'http:' && u.protocol !== 'https:') {
    throw new RangeError(`relay must be an http: or https: URL, got ${relay}`);
  }
  if (u.search !== '' || u.hash !== '') throw new RangeError('relay URL must not have ? or #');
  const prefix = u.pathname.replace(/\/+$/, '');
  const basePath = `${prefix}/rl`;
  const tls = u.protocol === 'https:';
  return {
    origin: u.origin,
    host: u.host,
    hostname: u.hostname.replace(/^\[(.*)\]$/, '$1'),
    port: u.port === '' ? (tls ? 443 : 80) : Number(u.port),
    basePath,
    sid,
    wsUrl: `${tls ? 'wss' : 'ws'}://${u.host}${basePath}/ws?${SID_PARAM}=${sid}`,
  };
}
