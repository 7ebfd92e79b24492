/**
 * The listening half that the SOCKS5 server and `-L` forwards share: accept local connections up
 * to a limit, hand each to the caller's handler, and on close stop listening and end every
 * connection and every tunnel stream still carrying one.
 */
import { createServer, type Server, type ServerOpts, type Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { listenOn } from './listen.ts';

const MAPPED_V4 = /^::ffff:(?=\d+\.\d+\.\d+\.\d+$)/i;
/** An IPv4-mapped IPv6 address as the IPv4 address it stands for. */
export const unmapV4 = (a: string): string => a.replace(MAPPED_V4, '');

/** A socket's end as `host:port` (`[v6]:port`), for logs. */
export const formatEndpoint = (host: string | undefined, port: number | undefined): string => {
  const h = unmapV4(host ?? '?');
  return h.includes(':') ? `[${h}]:${port ?? 0}` : `${h}:${port ?? 0}`;
};

/** The caller's logger, or nothing; a logger that throws must not take a connection down. */
export function safeLogger<E>(onLog: ((e: E) => void) | undefined): (e: E) => void {
  return (e) => {
    if (!onLog) return;
    try {
      onLog(e);
    } catch {
      // ignored, as said
    }
  };
}

export interface LocalServerOptions {
  serverOptions: ServerOpts;
  maxConnections: number;
  /** A connection over the limit (or arriving while closing): it is destroyed at once. */
  onRefused: (remote: string) => void;
  onAccepted: (remote: string) => void;
  /** Serves one connection; a rejection is reported and ends the connection. */
  handle: (s: Socket, remote: string) => Promise<void>;
  onFailed: (remote: string, message: string) => void;
}

export class LocalServer {
  readonly sockets = new Set<Socket>();
  /** Tunnel streams the handlers opened; `close` destroys those still open. */
  readonly tunnels = new Set<Duplex>();
  closing = false;
  readonly #server: Server;

  constructor(o: LocalServerOptions) {
    this.#server = createServer(o.serverOptions, (s) => {
      // Errors show up through the handler's reads, the splice or the close event; this listener
      // keeps a late one from ever being unhandled.
      s.on('error', () => {});
      const remote = formatEndpoint(s.remoteAddress, s.remotePort);
      if (this.closing || this.sockets.size >= o.maxConnections) {
        o.onRefused(remote);
        s.destroy();
        return;
      }
      this.sockets.add(s);
      s.once('close', () => this.sockets.delete(s));
      o.onAccepted(remote);
      o.handle(s, remote).catch((e: unknown) => {
        o.onFailed(remote, e instanceof Error ? e.message : String(e));
        s.destroy();
      });
    });
    this.#server.on('error', () => {});
  }

  async listen(host: string, port: number): Promise<{ host: string; port: number }> {
    const bound = await listenOn(this.#server, host, port);
    return { host: bound.address, port: bound.port };
  }

  async close(): Promise<void> {
    if (this.closing) return;
    this.closing = true;
    const closed = new Promise<void>((resolve) => this.#server.close(() => resolve()));
    for (const t of this.tunnels) t.destroy();
    for (const s of this.sockets) s.destroy();
    await closed;
  }
}
