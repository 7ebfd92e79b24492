/**
 * The trace hook: every observable step of a run (a packet sent, delivered or dropped, a NAT
 * mapping made or expired, a TCP state change, an interface change) as one small record. Tracing
 * costs nothing when no listener is set: emitters check `tracing` before building a record.
 */
import { formatPacket, type Packet } from './packet.ts';

export type TraceKind =
  | 'send' // a host handed a packet to an interface
  | 'deliver' // a packet reached a host
  | 'drop' // an element, a host or the internet discarded a packet
  | 'reply' // an element answered a packet itself (RST or ICMP)
  | 'nat' // a NAT made, refreshed away, flushed or changed a mapping
  | 'link' // a link went up or down
  | 'iface' // an interface changed address, chain, or went up or down
  | 'tcp' // a TCP connection changed state or failed
  | 'udp' // a UDP socket error
  | 'proxy'; // an HTTP proxy decision

export interface TraceEvent {
  /** Virtual time in milliseconds. */
  readonly t: number;
  readonly kind: TraceKind;
  /** The element, host or interface where it happened. */
  readonly where: string;
  readonly pkt?: Packet;
  /** Why (drop reasons, error codes, state names). */
  readonly reason?: string;
  readonly info?: string;
}

/** One stable line per event: the form determinism tests compare. */
export function formatEvent(e: TraceEvent): string {
  let s = `${e.t.toFixed(3)} ${e.kind} ${e.where}`;
  if (e.reason !== undefined) s += ` ${e.reason}`;
  if (e.pkt !== undefined) s += ` ${formatPacket(e.pkt)}`;
  if (e.info !== undefined) s += ` ${e.info}`;
  return s;
}
