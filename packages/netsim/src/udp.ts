/**
 * UDP sockets. A socket bound to a specific address keeps that source address and fails with
 * EADDRNOTAVAIL once the address is gone; a socket bound to the wildcard address sends from
 * whichever interface is the default at the time (or the interface it is pinned to, as Android's
 * network-bound sockets do), so its source address changes when the host moves. Send errors
 * arrive as an error event (and `send` returns false), never as an exception.
 */
import type { Endpoint } from './address.ts';
import { NetError, type NetErrorCode } from './errors.ts';
import type { Host, Interface } from './host.ts';
import { IcmpCode, type IcmpPacket, type UdpPacket, udpPacket } from './packet.ts';

export interface UdpStats {
  sentPackets: number;
  sentBytes: number;
  receivedPackets: number;
  receivedBytes: number;
  errors: number;
}

export class UdpSocket {
  readonly host: Host;
  readonly port: number;
  /** The specific local address this socket is bound to (undefined: the wildcard address). */
  readonly boundAddr: string | undefined;
  /** The interface this socket is pinned to, if any. */
  readonly iface: string | undefined;
  /** Payload bytes (not headers) through this socket. */
  readonly stats: UdpStats = {
    sentPackets: 0,
    sentBytes: 0,
    receivedPackets: 0,
    receivedBytes: 0,
    errors: 0,
  };
  /** A datagram arrived: payload, sender, and the local endpoint it was addressed to. */
  onMessage: ((data: Uint8Array, from: Endpoint, to: Endpoint) => void) | undefined;
  onError: ((e: NetError) => void) | undefined;
  #closed = false;

  constructor(host: Host, port: number, boundAddr?: string, iface?: string) {
    this.host = host;
    this.port = port;
    this.boundAddr = boundAddr;
    this.iface = iface;
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** The interface a datagram would leave through now (undefined: none usable). */
  route(): Interface | undefined {
    if (this.boundAddr !== undefined) return this.host.interfaceWith(this.boundAddr);
    if (this.iface !== undefined) return this.host.iface(this.iface);
    return this.host.defaultInterface();
  }

  /** The local endpoint as getsockname would report it for the next send (undefined: none). */
  localEndpoint(): Endpoint | undefined {
    const a = this.boundAddr ?? this.route()?.addr;
    return a === undefined ? undefined : { addr: a, port: this.port };
  }

  /**
   * Sends one datagram. Returns false (and an error event follows at the same virtual time) when
   * the OS would have failed the send: EADDRNOTAVAIL, ENETUNREACH, ENETDOWN, EMSGSIZE.
   */
  send(dst: Endpoint, data: Uint8Array): boolean {
    if (this.#closed) throw new TypeError('send on a closed UDP socket');
    const via = this.route();
    let err: NetErrorCode | undefined;
    if (via === undefined) err = this.boundAddr !== undefined ? 'EADDRNOTAVAIL' : 'ENETUNREACH';
    else if (via.addr === undefined) err = this.iface !== undefined ? 'ENETDOWN' : 'ENETUNREACH';
    else if (!via.up) err = 'ENETDOWN';
    else {
      const pkt: UdpPacket = udpPacket({ addr: via.addr, port: this.port }, dst, data);
      err = this.host.transmit(pkt, via);
    }
    if (err !== undefined) {
      this.#error(err, `send to ${dst.addr}:${dst.port}`);
      return false;
    }
    this.stats.sentPackets++;
    this.stats.sentBytes += data.length;
    return true;
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.host.closeUdp(this);
  }

  /** @internal */
  receive(pkt: UdpPacket, _iface: Interface): void {
    if (this.#closed) return;
    this.stats.receivedPackets++;
    this.stats.receivedBytes += pkt.payload.length;
    this.onMessage?.(pkt.payload, pkt.src, pkt.dst);
  }

  /**
   * @internal An ICMP error about a datagram we sent. Real stacks pass these to connected or
   * IP_RECVERR sockets; the simulator always does, so a rejecting firewall is seen at once.
   */
  icmp(pkt: IcmpPacket): void {
    const c = pkt.icmp.code;
    const code: NetErrorCode =
      c === IcmpCode.PORT_UNREACHABLE
        ? 'ECONNREFUSED'
        : c === IcmpCode.FRAGMENTATION_NEEDED
          ? 'EMSGSIZE'
          : 'EHOSTUNREACH';
    this.#error(code, `icmp from ${pkt.src.addr} code ${c}`);
  }

  #error(code: NetErrorCode, message: string): void {
    this.stats.errors++;
    this.host.traceSocket('udp', `${this.host.name}:${this.port}`, code, message);
    const e = new NetError(code, message);
    this.host.net.after(0, () => this.onError?.(e));
  }
}
