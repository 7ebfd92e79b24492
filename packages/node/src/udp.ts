/**
 * ESP in UDP (RFC 3948) on Node's dgram. roamlink datagrams are already framed as RFC 3948
 * frames them — ESP packets start with their SPI, control messages with the 4-byte non-ESP
 * marker — so this adapter only adds the one-byte 0xFF NAT keepalive (§2.3), which it drops on
 * receipt. Paths are "address:port" strings, the remote endpoint as this socket sees it.
 */
import { createSocket, type Socket } from 'node:dgram';

export interface UdpEndpoint {
  address: string;
  port: number;
}

export const pathOf = (e: UdpEndpoint): string =>
  e.address.includes(':') ? `[${e.address}]:${e.port}` : `${e.address}:${e.port}`;

/** Parses "host:port" or "[v6]:port". Port 0 (any) is allowed only when `forBind` is set. */
export function parseEndpoint(s: string, forBind = false): UdpEndpoint {
  const m = /^\[?([^\]]+?)\]?:(\d+)$/.exec(s);
  if (!m) throw new RangeError(`expected host:port, got "${s}"`);
  const port = Number(m[2]);
  if (port < (forBind ? 0 : 1) || port > 65535) throw new RangeError(`bad port in "${s}"`);
  return { address: m[1]!, port };
}

/** What a UDP socket asks of the kernel for each of its buffers. */
const SOCKET_BUFFER_BYTES = 4 * 1024 * 1024;

export class UdpTransport {
  readonly socket: Socket;
  readonly #endpoints = new Map<string, UdpEndpoint>();
  #local: UdpEndpoint | undefined;
  keepalivesReceived = 0;

  private constructor(socket: Socket) {
    this.socket = socket;
  }

  /** Binds a UDP socket; `onDatagram` gets every roamlink datagram with its path. */
  static async bind(
    bind: UdpEndpoint,
    onDatagram: (data: Uint8Array, path: string, from: UdpEndpoint) => void,
  ): Promise<UdpTransport> {
    const socket = createSocket({
      type: bind.address.includes(':') ? 'udp6' : 'udp4',
      // The default receive buffer (~208 KiB on Linux) holds three 64 KiB datagrams: a reader
      // busy for a moment loses the rest. The kernel caps these at net.core.[rw]mem_max.
      recvBufferSize: SOCKET_BUFFER_BYTES,
      sendBufferSize: SOCKET_BUFFER_BYTES,
    });
    const t = new UdpTransport(socket);
    socket.on('message', (msg, rinfo) => {
      // RFC 3948 §2.3: a single 0xFF byte is a NAT keepalive, nothing more.
      if (msg.length === 1 && msg[0] === 0xff) {
        t.keepalivesReceived++;
        return;
      }
      const path = pathOf(rinfo);
      let from = t.#endpoints.get(path);
      if (!from) {
        from = { address: rinfo.address, port: rinfo.port };
        t.#endpoints.set(path, from);
      }
      onDatagram(new Uint8Array(msg.buffer, msg.byteOffset, msg.length), path, from);
    });
    await new Promise<void>((resolve, reject) => {
      socket.once('error', reject);
      socket.bind(bind.port, bind.address, () => {
        socket.off('error', reject);
        resolve();
      });
    });
    return t;
  }

  /** The bound address (asked of the socket once: every received datagram's view names it). */
  get local(): UdpEndpoint {
    if (!this.#local) {
      const a = this.socket.address();
      this.#local = { address: a.address, port: a.port };
    }
    return this.#local;
  }

  /** Registers an endpoint we may send to before hearing from it (the relay, for a client). */
  addEndpoint(e: UdpEndpoint): string {
    const p = pathOf(e);
    this.#endpoints.set(p, e);
    return p;
  }

  send(path: string, data: Uint8Array): void {
    const e = this.#endpoints.get(path);
    if (!e) return;
    this.socket.send(data, e.port, e.address);
  }

  close(): Promise<void> {
    return new Promise((resolve) => this.socket.close(() => resolve()));
  }
}
