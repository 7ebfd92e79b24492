/**
 * What registration knows about a path: which encapsulation carries it and the outer header
 * fields of that path as one side sees them (WO 03/063444 claims 1-8: the client puts its own copy
 * of the outer fields into the RREQ; the relay compares them with what arrived).
 *
 * A client's view holds what it sent: its socket's source and destination address and port, or
 * for WebSocket/HTTP the URL, Host and the headers it set. A relay's view holds what it observed:
 * the peer address and port, its own address and port, and for HTTP the request target, Host and
 * the headers a proxy or CDN may have added or changed (Forwarded, Via, X-Forwarded-For, ...).
 * A field that a runtime cannot know (a browser's own address) is absent: "unknown".
 */
import type { Encapsulation } from './encapsulation.ts';

export interface OuterView {
  srcAddr?: string;
  srcPort?: number;
  dstAddr?: string;
  dstPort?: number;
  /** HTTP request target as sent (client: the full URL it requested) or seen (relay: the target). */
  url?: string;
  /** HTTP Host header. */
  host?: string;
  /** HTTP headers: the client's as it set them; the relay's as received. Names lower-case. */
  headers?: [string, string][];
}

/** What an adapter says about a path when it hands the core a datagram or a candidate. */
export interface PathInfo {
  encapsulation: Encapsulation;
  view: OuterView;
  /**
   * The largest datagram this side's transport takes on the path, announced to the peer in RREQ
   * or RREP (docs/PROTOCOL.md §6.4). Absent: the encapsulation's default (DEFAULT_MAX_DATAGRAM on
   * TCP, WebSocket and HTTP), which every peer takes.
   */
  maxDatagram?: number;
}

/**
 * The translation verdict (docs/PROTOCOL.md §6): what happened to the outer headers between the
 * client and the relay. Codes are on the wire in RREP.
 */
export const Verdict = {
  /** Nothing was translated: the client's view equals the relay's. */
  NONE: 0,
  /** The source address was translated, the port kept (a port-preserving NAT). */
  ADDRESS: 1,
  /** Source address and port translated (a NAPT, the common NAT). */
  ADDRESS_AND_PORT: 2,
  /** Only the source port changed (a port-translating firewall or a host-local NAT). */
  PORT_ONLY: 3,
  /** An HTTP proxy or CDN terminated and re-originated the protocol. */
  PROTOCOL: 4,
  /** Not enough known to tell (a browser cannot see its own address). */
  UNKNOWN: 5,
} as const;
export type Verdict = (typeof Verdict)[keyof typeof Verdict];

export const VERDICT_NAMES: Record<Verdict, string> = {
  [Verdict.NONE]: 'none',
  [Verdict.ADDRESS]: 'address',
  [Verdict.ADDRESS_AND_PORT]: 'address+port',
  [Verdict.PORT_ONLY]: 'port-only',
  [Verdict.PROTOCOL]: 'protocol',
  [Verdict.UNKNOWN]: 'unknown',
};
