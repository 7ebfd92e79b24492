/**
 * Packets as the simulator moves them: an IPv4 header reduced to its addresses and protocol, a
 * UDP or TCP header reduced to the fields the models act on, and the payload bytes. Packets are
 * values: elements that change one (a NAT) build a new object and never mutate the payload.
 * Sizes count the real header bytes (IPv4 20, UDP 8, TCP 20 without options) so that MTU limits,
 * bandwidth and byte counters see what a real network would.
 */
import { type Endpoint, formatEndpoint } from './address.ts';

export const IPV4_HEADER = 20;
export const UDP_HEADER = 8;
export const TCP_HEADER = 20;
/** ICMP header plus the quoted IPv4 header and first 8 bytes of the offending packet (RFC 792). */
export const ICMP_ERROR_SIZE = 8 + IPV4_HEADER + 8;

/** TCP control bits (RFC 9293 §3.1). */
export const TcpFlag = { FIN: 1, SYN: 2, RST: 4, PSH: 8, ACK: 16 } as const;

export interface TcpHeader {
  /** Sequence number. Plain integers: the model never wraps at 2^32 (no run sends 4 GiB). */
  readonly seq: number;
  readonly ack: number;
  readonly flags: number;
  /** Receive window in bytes (already scaled). */
  readonly wnd: number;
  /** MSS option, carried on SYN segments only. */
  readonly mss?: number;
}

/** ICMP destination-unreachable codes (RFC 792, RFC 1812 §5.2.7.1). */
export const IcmpCode = {
  NET_UNREACHABLE: 0,
  HOST_UNREACHABLE: 1,
  PORT_UNREACHABLE: 3,
  FRAGMENTATION_NEEDED: 4,
  ADMIN_PROHIBITED: 13,
} as const;
export type IcmpCode = (typeof IcmpCode)[keyof typeof IcmpCode];

export interface UdpPacket {
  readonly proto: 'udp';
  readonly src: Endpoint;
  readonly dst: Endpoint;
  readonly payload: Uint8Array;
}

export interface TcpPacket {
  readonly proto: 'tcp';
  readonly src: Endpoint;
  readonly dst: Endpoint;
  readonly payload: Uint8Array;
  readonly tcp: TcpHeader;
}

/** An ICMP destination-unreachable error quoting the packet that caused it. Ports are 0. */
export interface IcmpPacket {
  readonly proto: 'icmp';
  readonly src: Endpoint;
  readonly dst: Endpoint;
  readonly payload: Uint8Array;
  readonly icmp: {
    readonly code: IcmpCode;
    /** Next-hop MTU for FRAGMENTATION_NEEDED (RFC 1191 §4). */
    readonly mtu?: number;
    readonly original: UdpPacket | TcpPacket;
  };
}

export type Packet = UdpPacket | TcpPacket | IcmpPacket;
export type TransportPacket = UdpPacket | TcpPacket;

const EMPTY = new Uint8Array(0);

export function udpPacket(src: Endpoint, dst: Endpoint, payload: Uint8Array): UdpPacket {
  return { proto: 'udp', src, dst, payload };
}

export function tcpPacket(
  src: Endpoint,
  dst: Endpoint,
  tcp: TcpHeader,
  payload: Uint8Array = EMPTY,
): TcpPacket {
  return { proto: 'tcp', src, dst, payload, tcp };
}

/** An ICMP error about `original`, sent by `from` back to the original sender. */
export function icmpError(
  from: string,
  original: TransportPacket,
  code: IcmpCode,
  mtu?: number,
): IcmpPacket {
  return {
    proto: 'icmp',
    src: { addr: from, port: 0 },
    dst: { addr: original.src.addr, port: 0 },
    payload: EMPTY,
    icmp: mtu === undefined ? { code, original } : { code, mtu, original },
  };
}

/** Bytes on the wire at the IP layer (what an MTU limits). */
export function wireSize(p: Packet): number {
  switch (p.proto) {
    case 'udp':
      return IPV4_HEADER + UDP_HEADER + p.payload.length;
    case 'tcp':
      return IPV4_HEADER + TCP_HEADER + p.payload.length;
    case 'icmp':
      return IPV4_HEADER + ICMP_ERROR_SIZE;
  }
}

/** TCP sequence space taken by a segment: payload bytes, plus one each for SYN and FIN. */
export function segmentLength(p: TcpPacket): number {
  const f = p.tcp.flags;
  return p.payload.length + (f & TcpFlag.SYN ? 1 : 0) + (f & TcpFlag.FIN ? 1 : 0);
}

/**
 * The RST a host or middlebox sends in answer to `seg` (RFC 9293 §3.10.7.1): if `seg` carried an
 * ACK the reset takes its sequence number from that ACK, otherwise it acknowledges `seg`.
 */
export function resetFor(seg: TcpPacket): TcpPacket {
  const hasAck = (seg.tcp.flags & TcpFlag.ACK) !== 0;
  const tcp: TcpHeader = hasAck
    ? { seq: seg.tcp.ack, ack: 0, flags: TcpFlag.RST, wnd: 0 }
    : { seq: 0, ack: seg.tcp.seq + segmentLength(seg), flags: TcpFlag.RST | TcpFlag.ACK, wnd: 0 };
  return tcpPacket(seg.dst, seg.src, tcp);
}

export function flagString(flags: number): string {
  let s = '';
  if (flags & TcpFlag.SYN) s += 'S';
  if (flags & TcpFlag.FIN) s += 'F';
  if (flags & TcpFlag.RST) s += 'R';
  if (flags & TcpFlag.PSH) s += 'P';
  if (flags & TcpFlag.ACK) s += '.';
  return s;
}

/** One-line summary, stable across runs (used by traces and determinism tests). */
export function formatPacket(p: Packet): string {
  const ends = `${formatEndpoint(p.src)}>${formatEndpoint(p.dst)}`;
  switch (p.proto) {
    case 'udp':
      return `udp ${ends} len=${p.payload.length}`;
    case 'tcp':
      return `tcp ${ends} [${flagString(p.tcp.flags)}] seq=${p.tcp.seq} ack=${p.tcp.ack} len=${p.payload.length}`;
    case 'icmp':
      return `icmp ${p.src.addr}>${p.dst.addr} unreach code=${p.icmp.code} re(${formatPacket(p.icmp.original)})`;
  }
}

/** Flow key as seen at the point of observation: protocol and both endpoints, in order. */
export function flowKey(p: Packet): string {
  return `${p.proto} ${formatEndpoint(p.src)}>${formatEndpoint(p.dst)}`;
}

/** Direction-independent flow key: both directions of a conversation map to the same string. */
export function biflowKey(p: Packet): string {
  const a = formatEndpoint(p.src);
  const b = formatEndpoint(p.dst);
  return a < b ? `${p.proto} ${a}<>${b}` : `${p.proto} ${b}<>${a}`;
}
