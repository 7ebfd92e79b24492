/**
 * ESP over WebSocket (RFC 6455) on Node with `ws`: one binary message is one roamlink datagram,
 * nothing around it (the simulator's WebSocket encapsulation, byte for byte). The relay side
 * attaches to a Node HTTP server's `upgrade` event for WS_PATH, so that WebSocket shares the HTTP
 * port with the relay's hono app; the client side connects to `ws://host:port/rl/ws`.
 *
 * One connection is one path, "ws:<n>" (numbered per transport), routed by that prefix. A text
 * message is a protocol violation; a message over WS_MAX_PAYLOAD (1 MiB, which both ends announce
 * in registration as the path's MAX_DATAGRAM) closes the connection with 1009 (RFC 6455 §7.4.1,
 * done by `ws`). `send` never queues without bound: past `maxBufferedBytes` in the socket's
 * `bufferedAmount` it drops and counts, which the core recovers from as it would a UDP loss; a
 * writer that waits while the path is `congested` never gets there. Every close this side starts
 * arms a close timer: a peer that never answers the close handshake (§7.1.1) has its socket
 * destroyed.
 *
 * Close codes from the private range 4000–4999 (§7.4.2), with stable meanings:
 *
 * | code | name               | meaning                                                      |
 * |------|--------------------|--------------------------------------------------------------|
 * | 4000 | RELAY_SHUTDOWN     | the relay is shutting down; move to another candidate        |
 * | 4001 | IDLE_TIMEOUT       | nothing received for `idleTimeoutMs`                          |
 * | 4002 | PROTOCOL_VIOLATION | the peer broke this encapsulation (e.g. sent a text message) |
 * | 4003 | NOT_ALLOWED        | the relay refused this path by policy                        |
 * | 4004 | CLIENT_CLOSING     | the client is closing the path (it leaves or moves away)     |
 */
import type { IncomingMessage, Server } from 'node:http';
import { createRequire } from 'node:module';
import type { createConnection, NetConnectOpts, Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { type ClientOptions, type RawData, WebSocket, WebSocketServer } from 'ws';
import { unbracket } from './host.ts';
import { DEFAULT_PROXY_CONNECT_TIMEOUT_MS, ProxyAgent, type ProxyConfig } from './proxy.ts';
import { type RelayTls, relayTlsOptions } from './relay-tls.ts';
import type { UdpEndpoint } from './udp.ts';
import { connectWsFrames } from './ws-frame-reads.ts';

/**
 * How `ws` masks and unmasks frames in this process (RFC 6455 §5.3): 'native' when its optional
 * peer `bufferutil` resolves from where `ws` is loaded as a native addon (a prebuild for this
 * platform; linux-arm64 has none) and WS_NO_BUFFER_UTIL is unset, 'javascript' otherwise: `ws`'s
 * own byte loop, which cost a WebSocket upload ~2.5x the CPU. The relay and the client report it.
 */
export function wsMasking(): 'native' | 'javascript' {
  const mask = wsBufferUtil()?.mask;
  return typeof mask === 'function' && String(mask).includes('[native code]')
    ? 'native'
    : 'javascript';
}

/** `ws`'s optional mask helper as `ws` itself finds it; undefined if absent or turned off. */
export function wsBufferUtil():
  | {
      mask(source: Buffer, mask: Buffer, output: Buffer, offset: number, length: number): void;
      unmask(buffer: Buffer, mask: Buffer): void;
    }
  | undefined {
  if (process.env.WS_NO_BUFFER_UTIL) return undefined;
  try {
    return createRequire(createRequire(import.meta.url).resolve('ws'))('bufferutil');
  } catch {
    return undefined;
  }
}

/** The request path of the WebSocket encapsulation (base "/rl"). */
export const WS_PATH = '/rl/ws';
/**
 * The largest message accepted; a larger one closes the connection with 1009. Both ends announce
 * it as the path's MAX_DATAGRAM (docs/PROTOCOL.md §6.4), so that two Node ends carry up to 1 MiB
 * per packet; a peer that announces nothing (a browser, an edge relay) gets at most 64 KiB.
 */
export const WS_MAX_PAYLOAD = 1 << 20;
/** Default bound on `bufferedAmount` before `send` drops (4 MiB). */
export const DEFAULT_MAX_BUFFERED_BYTES = 4 << 20;
/**
 * Default `bufferedAmount` above which a path is `congested` (512 KiB): a writer that waits then
 * keeps at most this and one datagram queued, so a slow link does not queue seconds of data.
 */
export const DEFAULT_CONGESTED_BYTES = 512 << 10;
/** How long a close handshake may take before the socket is destroyed. */
export const DEFAULT_CLOSE_TIMEOUT_MS = 2_000;

export const WsCloseCode = {
  RELAY_SHUTDOWN: 4000,
  IDLE_TIMEOUT: 4001,
  PROTOCOL_VIOLATION: 4002,
  NOT_ALLOWED: 4003,
  CLIENT_CLOSING: 4004,
} as const;
export type WsCloseCode = (typeof WsCloseCode)[keyof typeof WsCloseCode];

export const isWsPath = (path: string): boolean => path.startsWith('ws:');

export type WsEndpoint = UdpEndpoint;

/**
 * One path's outer view as this side knows it. Relay: the peer and local socket ends, the request
 * target, Host and every request header (names lower-case), so that registration can see a proxy.
 * Client: its socket's ends, the URL it requested, Host and the headers it set itself. Through a
 * proxy (CONNECT tunnel) the client's socket ends are those of its connection to the proxy, and
 * url/host/headers stay those of its inner upgrade request (the CONNECT request and its
 * Proxy-Authorization are not part of the view: the relay never sees them).
 */
export interface WsPathView {
  local: WsEndpoint;
  remote: WsEndpoint;
  url: string;
  host: string | undefined;
  headers: [string, string][];
}

export interface WebSocketTransportOptions {
  /** Every datagram that arrives, with its connection's path id. */
  onDatagram: (datagram: Uint8Array, pathId: string) => void;
  /** A connection closed or failed (not called for `closePath`/`close`). */
  onPathClose?: (pathId: string, reason: string, code: number) => void;
  /** Relay side: a connection completed its upgrade and is now a path. */
  onPathOpen?: (pathId: string, view: WsPathView) => void;
  /**
   * A path that was `congested` wrote out the message that took it over `congestedBytes`: a
   * writer that held back can go on now, rather than polling.
   */
  onDrain?: (pathId: string) => void;
  /** `bufferedAmount` beyond which `send` drops the datagram (default 4 MiB). */
  maxBufferedBytes?: number;
  /** `bufferedAmount` above which the path is `congested` (default 512 KiB). */
  congestedBytes?: number;
  /** Close handshake deadline before the socket is destroyed (default 2 s). */
  closeTimeoutMs?: number;
  /** Closes a path with 4001 after this long without a message (default: never). */
  idleTimeoutMs?: number;
}

export interface WsConnectOptions {
  /**
   * Reach the relay through this HTTP proxy: the upgrade rides a CONNECT tunnel (proxy.ts). The
   * caller chooses it (`selectProxy` reads HTTPS_PROXY/NO_PROXY); nothing here reads the
   * environment. Failures reject with a ProxyError (`code` ROAMLINK_ERR_PROXY_*).
   */
  proxy?: ProxyConfig | string;
  /** Deadline for the tunnel (connection to the proxy and its answer), default 10 s. */
  proxyConnectTimeoutMs?: number;
  /** For a wss:// URL: the CAs to trust and whether to check the certificate (relay-tls.ts). */
  tls?: RelayTls;
}

export interface WebSocketTransportStats {
  /** Upgrade requests answered 404 because their path was not WS_PATH. */
  wrongPath: number;
  /** Connections closed with 4002 (a text message). */
  protocolViolations: number;
  /** Datagrams dropped because `bufferedAmount` was over the bound. */
  bufferDrops: number;
  /** Sockets destroyed because their close handshake did not finish in time. */
  closeTimeouts: number;
  datagramsSent: number;
  datagramsReceived: number;
}

const BINARY = { binary: true } as const;

interface Conn {
  ws: WebSocket;
  view: WsPathView;
  idle: NodeJS.Timeout | undefined;
}

/** Closed-path reasons, stable prefixes for logs and `move` reasons. */
export const WsCloseReason = {
  CLOSED: 'ws-closed',
  ERROR: 'ws-error',
} as const;

const endpointOf = (address: string | undefined, port: number | undefined): WsEndpoint => ({
  address: (address ?? '').replace(/^::ffff:(?=\d+\.)/, ''),
  port: port ?? 0,
});

/** Request headers as [lower-case name, value] pairs, in arrival order, repeats kept. */
function headerPairs(req: IncomingMessage): [string, string][] {
  const out: [string, string][] = [];
  const raw = req.rawHeaders;
  for (let i = 0; i + 1 < raw.length; i += 2) out.push([raw[i]!.toLowerCase(), raw[i + 1]!]);
  return out;
}

export class WebSocketTransport {
  readonly stats: WebSocketTransportStats = {
    wrongPath: 0,
    protocolViolations: 0,
    bufferDrops: 0,
    closeTimeouts: 0,
    datagramsSent: 0,
    datagramsReceived: 0,
  };
  readonly #o: WebSocketTransportOptions;
  readonly #maxBuffered: number;
  readonly #congestedBytes: number;
  readonly #closeTimeoutMs: number;
  readonly #conns = new Map<string, Conn>();
  /** Sockets this side is closing: destroyed if the handshake has not finished in time. */
  readonly #closing = new Set<WebSocket>();
  readonly #pending = new Set<WebSocket>();
  #wss: WebSocketServer | undefined;
  #server: Server | undefined;
  #onUpgrade: ((req: IncomingMessage, socket: Duplex, head: Buffer) => void) | undefined;
  #n = 0;

  constructor(o: WebSocketTransportOptions) {
    this.#o = o;
    this.#maxBuffered = o.maxBufferedBytes ?? DEFAULT_MAX_BUFFERED_BYTES;
    this.#congestedBytes = Math.min(
      o.congestedBytes ?? DEFAULT_CONGESTED_BYTES,
      this.#maxBuffered / 2,
    );
    this.#closeTimeoutMs = o.closeTimeoutMs ?? DEFAULT_CLOSE_TIMEOUT_MS;
  }

  /** The open paths. */
  get paths(): string[] {
    return [...this.#conns.keys()];
  }

  /** A path's outer view as this side knows it. */
  view(pathId: string): WsPathView | undefined {
    return this.#conns.get(pathId)?.view;
  }

  /**
   * Relay: takes the upgrades for `path` on `server`; other paths get 404 before any upgrade.
   * Requests without `Upgrade: websocket` never reach here (Node hands them to the app).
   */
  attach(server: Server, path: string = WS_PATH): void {
    if (this.#wss) throw new Error('already attached');
    const wss = new WebSocketServer({
      noServer: true,
      maxPayload: WS_MAX_PAYLOAD,
      // Datagrams are ciphertext: compression only costs CPU (and opens a memory hazard).
      perMessageDeflate: false,
      clientTracking: false,
    });
    this.#wss = wss;
    this.#server = server;
    this.#onUpgrade = (req, socket, head) => {
      const target = req.url ?? '';
      const q = target.indexOf('?');
      if ((q < 0 ? target : target.slice(0, q)) !== path) {
        this.stats.wrongPath++;
        // Answered before any upgrade, then the connection ends (end() destroys once flushed).
        socket.end('HTTP/1.1 404 Not Found\r\nConnection: close\r\nContent-Length: 0\r\n\r\n');
        return;
      }
      wss.handleUpgrade(req, socket, head, (ws) => {
        const s = req.socket;
        const view: WsPathView = {
          local: endpointOf(s.localAddress, s.localPort),
          remote: endpointOf(s.remoteAddress, s.remotePort),
          url: target,
          host: req.headers.host,
          headers: headerPairs(req),
        };
        const id = this.#open(ws, view);
        this.#o.onPathOpen?.(id, view);
      });
    };
    server.on('upgrade', this.#onUpgrade);
  }

  /**
   * Client: connects to `url` (ws://host:port/rl/ws) with `headers` (e.g. User-Agent), and
   * resolves with the path id once the upgrade succeeded (rejects otherwise). With `opts.proxy`
   * the connection is a CONNECT tunnel through that proxy.
   */
  connect(
    url: string,
    headers: Record<string, string> = {},
    opts: WsConnectOptions = {},
  ): Promise<string> {
    // One agent per proxied connection: the upgrade takes the socket out of it, and destroying
    // it when the WebSocket closes also ends a tunnel still being opened.
    const target = new URL(url);
    const secure = target.protocol === 'wss:' || target.protocol === 'https:';
    const tls = secure ? (opts.tls ?? {}) : undefined;
    const agent =
      opts.proxy === undefined
        ? undefined
        : new ProxyAgent({
            proxy: opts.proxy,
            connectTimeoutMs: opts.proxyConnectTimeoutMs ?? DEFAULT_PROXY_CONNECT_TIMEOUT_MS,
            ...(tls === undefined ? {} : { tls }),
          });
    const options: ClientOptions = {
      headers,
      maxPayload: WS_MAX_PAYLOAD,
      perMessageDeflate: false,
      handshakeTimeout: 10_000,
    };
    if (agent) options.agent = agent;
    // Direct wss://: `ws` hands these to tls.connect.
    else if (tls !== undefined)
      Object.assign(options, relayTlsOptions(unbracket(target.hostname), tls));
    // Direct ws://: reads into an arena, handed to `ws` a whole frame at a time (no joining copy).
    // Through a proxy the agent makes the socket; over TLS `ws` reads what TLS decrypted.
    else
      options.createConnection = ((o: NetConnectOpts) =>
        connectWsFrames(o, WS_MAX_PAYLOAD)) as typeof createConnection;
    const ws = new WebSocket(url, options);
    if (agent) ws.once('close', () => agent.destroy());
    this.#pending.add(ws);
    return new Promise<string>((resolve, reject) => {
      let socket: Socket | undefined;
      ws.once('upgrade', (res: IncomingMessage) => {
        socket = res.socket;
      });
      const failed = (e: Error): void => {
        this.#pending.delete(ws);
        ws.terminate();
        reject(e);
      };
      ws.once('error', failed);
      ws.once('unexpected-response', (_req, res: IncomingMessage) => {
        failed(new Error(`upgrade refused: ${res.statusCode}`));
      });
      ws.once('open', () => {
        ws.off('error', failed);
        this.#pending.delete(ws);
        const u = target;
        const set = Object.entries(headers).map(([k, v]): [string, string] => [k.toLowerCase(), v]);
        const id = this.#open(ws, {
          // Proxied: the ends of the connection to the proxy (the tunnel's socket).
          local: endpointOf(socket?.localAddress, socket?.localPort),
          remote: endpointOf(socket?.remoteAddress, socket?.remotePort),
          url,
          // `ws` sends the URL's authority as Host unless one was set.
          host: headers.Host ?? headers.host ?? u.host,
          headers: set,
        });
        resolve(id);
      });
    });
  }

  /**
   * Whether the path's socket holds more than `congestedBytes` (at most half the drop bound): a
   * writer that can wait (the stream layer) should, rather than have `send` drop.
   */
  congested(pathId: string): boolean {
    const c = this.#conns.get(pathId);
    return c !== undefined && c.ws.bufferedAmount > this.#congestedBytes;
  }

  /**
   * Sends one datagram as one binary message. Returns false if it was dropped: no such open path,
   * a datagram over WS_MAX_PAYLOAD, or `bufferedAmount` over the bound (counted in `bufferDrops`).
   */
  send(pathId: string, datagram: Uint8Array): boolean {
    const c = this.#conns.get(pathId);
    if (!c || c.ws.readyState !== WebSocket.OPEN) return false;
    if (datagram.length > WS_MAX_PAYLOAD) return false;
    // The socket delivers everything or nothing: beyond the bound, dropping is the datagram
    // semantics the core expects, and memory stays bounded.
    if (c.ws.bufferedAmount + datagram.length > this.#maxBuffered) {
      this.stats.bufferDrops++;
      return false;
    }
    const onDrain = this.#o.onDrain;
    if (onDrain && c.ws.bufferedAmount + datagram.length > this.#congestedBytes) {
      // This message makes the path congested; once it is written out, the queue behind it is
      // short again (a writer that checks `congested` sent nothing meanwhile).
      c.ws.send(datagram, BINARY, () => {
        if (this.#conns.get(pathId) === c) onDrain(pathId);
      });
    } else {
      c.ws.send(datagram, BINARY);
    }
    this.stats.datagramsSent++;
    return true;
  }

  /** Closes one path with `code` without reporting it through `onPathClose`. */
  closePath(pathId: string, code: number = WsCloseCode.CLIENT_CLOSING, reason = ''): void {
    const c = this.#conns.get(pathId);
    if (!c) return;
    this.#conns.delete(pathId);
    this.#startClose(c, code, reason);
  }

  /**
   * Closes every path with `code` (default 4000, the relay shutting down) and detaches from the
   * HTTP server; resolves when every socket is gone (at the latest after the close timer).
   */
  close(code: number = WsCloseCode.RELAY_SHUTDOWN, reason = 'relay shutting down'): Promise<void> {
    if (this.#server && this.#onUpgrade) this.#server.off('upgrade', this.#onUpgrade);
    this.#server = undefined;
    this.#onUpgrade = undefined;
    this.#wss?.close();
    this.#wss = undefined;
    for (const ws of this.#pending) ws.terminate();
    this.#pending.clear();
    for (const id of [...this.#conns.keys()]) this.closePath(id, code, reason);
    const waiting = [...this.#closing].map(
      (ws) => new Promise<void>((resolve) => ws.once('close', () => resolve())),
    );
    return Promise.all(waiting).then(() => {});
  }

  #startClose(c: Conn, code: number, reason: string): void {
    if (c.idle) clearTimeout(c.idle);
    const ws = c.ws;
    if (ws.readyState === WebSocket.CLOSED) return;
    this.#closing.add(ws);
    const timer = setTimeout(() => {
      // The peer never answered our close frame: do not hold the socket any longer.
      if (ws.readyState !== WebSocket.CLOSED) {
        this.stats.closeTimeouts++;
        ws.terminate();
      }
    }, this.#closeTimeoutMs);
    timer.unref();
    ws.once('close', () => {
      clearTimeout(timer);
      this.#closing.delete(ws);
    });
    if (ws.readyState === WebSocket.OPEN) ws.close(code, reason);
  }

  #open(ws: WebSocket, view: WsPathView): string {
    const id = `ws:${++this.#n}`;
    const c: Conn = { ws, view, idle: undefined };
    this.#conns.set(id, c);
    const idleMs = this.#o.idleTimeoutMs;
    if (idleMs !== undefined) {
      c.idle = setTimeout(
        () => this.#fail(id, c, WsCloseCode.IDLE_TIMEOUT, 'idle timeout'),
        idleMs,
      );
      c.idle.unref();
    }
    ws.on('message', (data: RawData, isBinary: boolean) => {
      if (this.#conns.get(id) !== c) return;
      if (!isBinary) {
        this.stats.protocolViolations++;
        this.#fail(id, c, WsCloseCode.PROTOCOL_VIOLATION, 'text not allowed');
        return;
      }
      c.idle?.refresh();
      this.stats.datagramsReceived++;
      // A plain Uint8Array view, no copy (as the TCP transport's records): `ws` hands out a
      // message as a slice of the socket read it arrived in (unmasked in place on the relay),
      // or a buffer of its own when it had to gather it, and never writes to it again; the
      // core decrypts it in place. A fragmented message comes as a list and is joined.
      const d = Array.isArray(data)
        ? new Uint8Array(Buffer.concat(data))
        : data instanceof ArrayBuffer
          ? new Uint8Array(data)
          : new Uint8Array(data.buffer, data.byteOffset, data.length);
      this.#o.onDatagram(d, id);
    });
    // `ws` closes the connection itself after an error (1009 for an oversize message, 1002 for a
    // framing error); the 'close' that follows reports it. Without a listener it would throw.
    ws.on('error', () => {});
    ws.on('close', (code: number, reason: Buffer) => {
      if (c.idle) clearTimeout(c.idle);
      // Only a path still registered is reported: closePath and close() remove it first.
      if (this.#conns.get(id) !== c) return;
      this.#conns.delete(id);
      const why = reason.length > 0 ? ` ${reason.toString('utf8')}` : '';
      this.#o.onPathClose?.(id, `${WsCloseReason.CLOSED}: ${code}${why}`, code);
    });
    return id;
  }

  /** This side ends a path for a reason the peer should know: reported, then closed with `code`. */
  #fail(id: string, c: Conn, code: number, reason: string): void {
    if (this.#conns.get(id) !== c) return;
    this.#conns.delete(id);
    this.#startClose(c, code, reason);
    this.#o.onPathClose?.(id, `${WsCloseReason.CLOSED}: ${code} ${reason}`, code);
  }
}
