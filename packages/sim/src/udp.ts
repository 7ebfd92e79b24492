/**
 * ESP in UDP (RFC 3948): one roamlink datagram per UDP datagram. The datagrams are already framed
 * as RFC 3948 §2 frames them (ESP packets start with their SPI, control messages with the 4-byte
 * non-ESP marker), so the only thing this layer adds is the one-byte 0xFF NAT keepalive of §2.3,
 * which the receiver drops.
 *
 * Relay path ids name the remote endpoint as the relay sees it ("udp:198.18.1.1:40123"): a NAT
 * rebinding is a new path, which is what registration must notice.
 */
import { Encapsulation, type PathInfo } from '@roamlink/core';
import type { Endpoint, Host, NetError, UdpSocket } from '@roamlink/netsim';
import {
  ClientPathBase,
  type ClientPathOptions,
  MAX_DATAGRAM_BYTES,
  nextPathId,
  PathError,
  RELAY_PORTS,
  type SimRelayStats,
} from './types.ts';

/** RFC 3948 §2.3: a single 0xFF byte is a NAT keepalive, never a datagram. */
export const NAT_KEEPALIVE_BYTE = 0xff;
const KEEPALIVE = new Uint8Array([NAT_KEEPALIVE_BYTE]);

export function isNatKeepalive(d: Uint8Array): boolean {
  return d.length === 1 && d[0] === NAT_KEEPALIVE_BYTE;
}

export class UdpClientPath extends ClientPathBase {
  readonly socket: UdpSocket;
  readonly remote: Endpoint;
  keepalivesSent = 0;

  constructor(host: Host, opts: ClientPathOptions) {
    super(host, nextPathId(host, 'udp'), opts);
    const bind: { addr?: string; iface?: string } = {};
    if (opts.localAddr !== undefined) bind.addr = opts.localAddr;
    if (opts.iface !== undefined) bind.iface = opts.iface;
    this.socket = host.bindUdp(opts.localPort, bind);
    this.remote = { addr: opts.relay.addr, port: opts.relay.udpPort ?? RELAY_PORTS.udp };
    this.socket.onMessage = (data, from) => {
      // A connected socket hears only its peer.
      if (from.addr !== this.remote.addr || from.port !== this.remote.port) return;
      if (isNatKeepalive(data)) return;
      this.delivered(data);
    };
    this.socket.onError = (e) => this.#error(e);
    // Connectionless: ready at once, but asynchronously so the owner can set onOpen first.
    host.net.after(0, () => this.opened());
  }

  get info(): PathInfo {
    const local = this.socket.localEndpoint();
    const view: PathInfo['view'] = { dstAddr: this.remote.addr, dstPort: this.remote.port };
    if (local !== undefined) {
      view.srcAddr = local.addr;
      view.srcPort = local.port;
    }
    return { encapsulation: Encapsulation.UDP, view };
  }

  sendKeepalive(): boolean {
    if (this.isDone) return false;
    const ok = this.socket.send(this.remote, KEEPALIVE);
    if (ok) this.keepalivesSent++;
    return ok;
  }

  protected override sendsBeforeOpen(): boolean {
    return true;
  }

  protected transmit(datagram: Uint8Array): boolean {
    return this.socket.send(this.remote, datagram);
  }

  protected shutdown(): void {
    this.socket.onMessage = undefined;
    this.socket.onError = undefined;
    this.socket.close();
  }

  #error(e: NetError): void {
    // Send failures (no route, interface down, too big) were already reported by send() returning
    // false and may pass; these two come only from ICMP: the relay is unreachable on this path.
    if (e.code === 'EHOSTUNREACH' || e.code === 'ECONNREFUSED') {
      this.fail(`${PathError.UNREACHABLE}: ${e.message}`);
    }
  }
}

export function udpRelayPathId(from: Endpoint): string {
  return `udp:${from.addr}:${from.port}`;
}

function parseUdpPathId(id: string): Endpoint | undefined {
  const m = /^udp:(\d{1,3}(?:\.\d{1,3}){3}):(\d{1,5})$/.exec(id);
  return m === null ? undefined : { addr: m[1]!, port: Number(m[2]) };
}

/** The relay half: one socket for every client. */
export class UdpRelay {
  readonly socket: UdpSocket;
  onDatagram: (datagram: Uint8Array, pathId: string, info: PathInfo) => void = () => {};
  readonly #stats: SimRelayStats;

  constructor(host: Host, port: number, stats: SimRelayStats, addr?: string) {
    this.#stats = stats;
    this.socket = host.bindUdp(port, addr === undefined ? {} : { addr });
    this.socket.onMessage = (data, from, to) => {
      if (isNatKeepalive(data)) {
        stats.keepalivesReceived++;
        return;
      }
      stats.datagramsReceived++;
      const info: PathInfo = {
        encapsulation: Encapsulation.UDP,
        view: { srcAddr: from.addr, srcPort: from.port, dstAddr: to.addr, dstPort: to.port },
      };
      this.onDatagram(data, udpRelayPathId(from), info);
    };
  }

  /** The id names the endpoint, so any "udp:" path can be answered without state. */
  send(pathId: string, datagram: Uint8Array): boolean {
    const to = parseUdpPathId(pathId);
    if (to === undefined || this.socket.closed) return false;
    if (datagram.length === 0 || datagram.length > MAX_DATAGRAM_BYTES) return false;
    if (!this.socket.send(to, datagram)) return false;
    this.#stats.datagramsSent++;
    return true;
  }

  close(): void {
    this.socket.close();
  }
}
