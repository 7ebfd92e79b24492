/**
 * ESP in UDP (RFC 3948) on Node's dgram. roamlink datagrams are already framed as RFC 3948
 * frames them — ESP packets start with their SPI, control messages with the 4-byte non-ESP
 * marker — so this adapter only adds the one-byte 0xFF NAT keepalive (§2.3), which it drops on
 * receipt. Paths are "address:port" strings, the remote endpoint as this socket sees it.
 */
import { createSocket, type Socket } from 'node:dgram';
import { lookup as dnsLookup, type LookupOneOptions } from 'node:dns';
import { isIP } from 'node:net';

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

/** A dgram socket's `lookup` option. */
export type LiteralLookup = (
  host: string,
  family: number | LookupOneOptions,
  cb: (err: NodeJS.ErrnoException | null, address: string, family: number) => void,
) => void;

/**
 * A lookup for one socket. dgram resolves the address of every datagram it sends, even a literal
 * IP (which dns.lookup answers on the next tick). The relay's paths are literals (learnt from
 * datagrams), and so is a client's relay address unless given as a name: literals are answered
 * at once, one deferral less per packet; names still go to dns.lookup, every time. The last
 * literal is remembered: a relay sends to the same few peers over and over, and isIP's regular
 * expressions cost ~1.7 µs per datagram on the benchmark's machine (a profile of the relay), the
 * memo a string comparison.
 */
export function literalLookup(): LiteralLookup {
  let last = '';
  let lastFamily = 0;
  return (host, family, cb) => {
    if (host === last) {
      cb(null, host, lastFamily);
      return;
    }
    const v = isIP(host);
    if (v === 0) {
      dnsLookup(host, family as LookupOneOptions, cb);
      return;
    }
    last = host;
    lastFamily = v;
    cb(null, host, v);
  };
}

/** Most endpoints a transport keeps resolved at once (see `#remember`). */
const ENDPOINT_CACHE = 4096;

/** What a UDP socket asks of the kernel for each of its buffers. */
const SOCKET_BUFFER_BYTES = 4 * 1024 * 1024;

export class UdpTransport {
  readonly socket: Socket;
  readonly #endpoints = new Map<string, UdpEndpoint>();
  #local: UdpEndpoint | undefined;
  #last: { address: string; port: number; path: string; from: UdpEndpoint } | undefined;
  keepalivesReceived = 0;

  readonly #cacheSize: number;

  private constructor(socket: Socket, cacheSize: number) {
    this.socket = socket;
    this.#cacheSize = cacheSize;
  }

  /** Binds a UDP socket; `onDatagram` gets every roamlink datagram with its path. */
  static async bind(
    bind: UdpEndpoint,
    onDatagram: (data: Uint8Array, path: string, from: UdpEndpoint) => void,
    opts: { endpointCache?: number } = {},
  ): Promise<UdpTransport> {
    const socket = createSocket({
      type: bind.address.includes(':') ? 'udp6' : 'udp4',
      // The default receive buffer (~208 KiB on Linux) holds three 64 KiB datagrams: a reader
      // busy for a moment loses the rest. The kernel caps these at net.core.[rw]mem_max.
      recvBufferSize: SOCKET_BUFFER_BYTES,
      sendBufferSize: SOCKET_BUFFER_BYTES,
      lookup: literalLookup(),
    });
    const t = new UdpTransport(socket, opts.endpointCache ?? ENDPOINT_CACHE);
    socket.on('message', (msg, rinfo) => {
      // RFC 3948 §2.3: a single 0xFF byte is a NAT keepalive, nothing more.
      if (msg.length === 1 && msg[0] === 0xff) {
        t.keepalivesReceived++;
        return;
      }
      // Most datagrams come from the sender of the one before: skip building its path string.
      let last = t.#last;
      if (last === undefined || last.port !== rinfo.port || last.address !== rinfo.address) {
        const path = pathOf(rinfo);
        let from = t.#endpoints.get(path);
        if (!from) {
          from = { address: rinfo.address, port: rinfo.port };
          t.#remember(path, from);
        }
        last = { address: rinfo.address, port: rinfo.port, path, from };
        t.#last = last;
      }
      onDatagram(new Uint8Array(msg.buffer, msg.byteOffset, msg.length), last.path, last.from);
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
    let e = this.#endpoints.get(path);
    if (!e) {
      // Forgotten from the cache (or never seen): the path names its endpoint.
      try {
        e = parseEndpoint(path);
      } catch {
        return;
      }
      this.#remember(path, e);
    }
    this.socket.send(data, e.port, e.address);
  }

  /**
   * Paths → endpoints is a cache: every datagram from a new source adds one, so a flood from
   * spoofed sources would grow it without end. Past its size (ENDPOINT_CACHE) it starts over.
   */
  #remember(path: string, e: UdpEndpoint): void {
    if (this.#endpoints.size >= this.#cacheSize) this.#endpoints.clear();
    this.#endpoints.set(path, e);
  }

  close(): Promise<void> {
    return new Promise((resolve) => this.socket.close(() => resolve()));
  }
}
