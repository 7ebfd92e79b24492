/**
 * ESP in TCP as RFC 8229 §3 frames it, on node:net. The client opens the stream with the 6-byte
 * preface "RLNK/1" (in the role of RFC 8229's "IKETCP"), then both sides send records: a 16-bit
 * big-endian Length that counts itself, then Length - 2 bytes of one roamlink datagram. An empty
 * record (Length 2) is a heartbeat and carries nothing. The server closes a connection whose
 * preface is wrong, or whose framing breaks, without answering.
 *
 * With `maxDatagram` above 65 533 the transport also reads and writes extended records (Length 0,
 * then a u32; packages/sim/README.md, "Records") for datagrams a 16-bit Length cannot hold. Both
 * ends announce it as the path's MAX_DATAGRAM (docs/PROTOCOL.md §6.4); the stream layer only makes
 * such datagrams when both did.
 *
 * One connection is one path, "tcp:<n>" (numbered per transport), so that the core can tell two
 * connections apart and the app can route a transmit by the path's prefix. The bytes on the wire
 * are those of the simulator's TCP encapsulation, byte for byte.
 */
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import {
  encodeRecord,
  MAX_RECORD_DATAGRAM_BYTES,
  RECORD_HEADER_BYTES,
  RecordReader,
  recordHeader,
  TCP_PREFACE,
} from '@roamlink/core';
import { allocUninitialized } from './alloc.ts';
import { listenOn } from './listen.ts';
import { adoptWithArena, arenaReads, type ReadGather } from './read-arena.ts';
import type { UdpEndpoint } from './udp.ts';

// The framing lives in the core (shared with the simulator); re-exported for this transport's users.
export {
  encodeRecord,
  MAX_RECORD_DATAGRAM_BYTES,
  RECORD_HEADER_BYTES,
  RecordReader,
  TCP_PREFACE,
} from '@roamlink/core';

/** Records below this are copied out of the read buffer rather than viewed (RecordReader). */
const SMALL_RECORD_BYTES = 4096;
/** Default bound on the bytes queued in one connection before `send` drops (1 MiB). */
export const DEFAULT_MAX_QUEUED_BYTES = 1 << 20;
/**
 * The MAX_DATAGRAM the Node relay and client take and announce on TCP paths, as on WebSocket
 * (WS_MAX_PAYLOAD): the stream layer's packets grow up to it on a fast path, and a cipher call, a
 * write and the bookkeeping are paid per megabyte rather than per 60 KB.
 */
export const TCP_MAX_DATAGRAM = 1 << 20;

export type TcpEndpoint = UdpEndpoint;

export const isTcpPath = (path: string): boolean => path.startsWith('tcp:');

export interface TcpTransportOptions {
  /** Every datagram that arrives, with its connection's path id and the remote endpoint. */
  onDatagram: (datagram: Uint8Array, pathId: string, remote: TcpEndpoint) => void;
  /** A connection closed or failed (not called for `closePath`/`close`). */
  onPathClose?: (pathId: string, reason: string) => void;
  /** Server side: a connection sent a valid preface and is now a path. */
  onPathOpen?: (pathId: string, remote: TcpEndpoint) => void;
  /**
   * A congested path's socket drained (`congested` is false again): a writer that held back can
   * go on now, rather than polling.
   */
  onDrain?: (pathId: string) => void;
  /**
   * Bytes queued in one connection beyond which `send` drops the datagram (default 1 MiB, or four
   * of the largest datagram if that is more).
   */
  maxQueuedBytes?: number;
  /**
   * The largest datagram this side takes and sends (default 65 533, RFC 8229's records only).
   * Above that, extended records are read and written; announce it as the path's MAX_DATAGRAM.
   */
  maxDatagram?: number;
  /**
   * Client: how long `connect` waits for the connection before it fails (default 10 s, as the
   * WebSocket handshake). A firewall that drops SYNs silently would otherwise hold the dial for
   * the kernel's SYN retries (about two minutes on Linux), and no new dial starts meanwhile.
   */
  connectTimeoutMs?: number;
}

/** Default of `TcpTransportOptions.connectTimeoutMs`. */
export const DEFAULT_TCP_CONNECT_TIMEOUT_MS = 10_000;

export interface TcpTransportStats {
  /** Connections closed because their preface was wrong. */
  prefaceRejected: number;
  /**
   * Connections closed because a record's Length was below 2, or 0 without a u32 length above
   * 65 533 and up to `maxDatagram` behind it.
   */
  framingErrors: number;
  /** Datagrams dropped because the connection's queue was over the bound. */
  queueDrops: number;
  /** Times a write left the socket above its high-water mark (backpressure began). */
  congested: number;
  datagramsSent: number;
  datagramsReceived: number;
  heartbeatsReceived: number;
}

/** Reads straight into `reader`'s split record (ReadGather); `failed` on a framing error. */
function gatherInto(reader: RecordReader, failed: () => void): ReadGather {
  return {
    target: (min) => reader.gatherTarget(min),
    filled: (n) => {
      if (!reader.gathered(n)) failed();
    },
  };
}

/** Where an accepted connection's reads go: its preface and records, or a record's rest. */
interface Accepted {
  deliver: (d: Uint8Array) => void;
  gather: ReadGather;
}

interface Conn {
  socket: Socket;
  local: TcpEndpoint;
  remote: TcpEndpoint;
  /** socket.write returned false and no 'drain' since. */
  blocked: boolean;
}

const endpointOf = (address: string | undefined, port: number | undefined): TcpEndpoint => ({
  address: (address ?? '').replace(/^::ffff:(?=\d+\.)/, ''),
  port: port ?? 0,
});

/** Closed-path reasons, stable strings for logs and `move` reasons. */
export const TcpCloseReason = {
  CLOSED: 'tcp-closed',
  BAD_PREFACE: 'tcp-bad-preface',
  FRAMING: 'tcp-framing-error',
} as const;

export class TcpTransport {
  readonly stats: TcpTransportStats = {
    prefaceRejected: 0,
    framingErrors: 0,
    queueDrops: 0,
    congested: 0,
    datagramsSent: 0,
    datagramsReceived: 0,
    heartbeatsReceived: 0,
  };
  readonly #o: TcpTransportOptions;
  readonly #maxQueued: number;
  readonly #maxDatagram: number;
  readonly #conns = new Map<string, Conn>();
  readonly #pending = new Set<Socket>();
  #server: Server | undefined;
  #n = 0;

  constructor(o: TcpTransportOptions) {
    this.#o = o;
    this.#maxDatagram = o.maxDatagram ?? MAX_RECORD_DATAGRAM_BYTES;
    this.#maxQueued = o.maxQueuedBytes ?? Math.max(DEFAULT_MAX_QUEUED_BYTES, 4 * this.#maxDatagram);
  }

  /** The listening address, once `listen` resolved. */
  get listening(): TcpEndpoint | undefined {
    const a = this.#server?.address();
    return a && typeof a === 'object' ? endpointOf(a.address, a.port) : undefined;
  }

  /** The open paths. */
  get paths(): string[] {
    return [...this.#conns.keys()];
  }

  /** The two ends of a path as this side's socket sees them. */
  endpoints(pathId: string): { local: TcpEndpoint; remote: TcpEndpoint } | undefined {
    const c = this.#conns.get(pathId);
    return c ? { local: c.local, remote: c.remote } : undefined;
  }

  /** Whether the path's socket is above its high-water mark (a writer should hold back). */
  congested(pathId: string): boolean {
    return this.#conns.get(pathId)?.blocked ?? false;
  }

  /** Server: accepts connections; each becomes a path once its preface checks out. */
  async listen(host: string, port: number): Promise<TcpEndpoint> {
    if (this.#server) throw new Error('already listening');
    // Accepted connections read into an arena as the client's do (adoptWithArena): with Node's
    // fresh 64 KiB buffers nearly every 60 KB record straddles two reads and is copied whole.
    const server = createServer({ noDelay: true, pauseOnConnect: true }, (accepted) => {
      let into: Accepted | undefined;
      // noDelay is on the connection's handle already (the server set it before 'connection').
      const socket = adoptWithArena(accepted, server, (d) => into?.deliver(d), {
        target: (min, room) => into?.gather.target(min, room),
        filled: (n) => into?.gather.filled(n),
      });
      into = this.#accept(socket);
    });
    this.#server = server;
    return listenOn(server, host, port);
  }

  /**
   * Client: opens a connection, writes the preface, and resolves with the path id once the
   * connection is up (rejects if it cannot be opened).
   */
  connect(host: string, port: number): Promise<string> {
    const reader = this.#reader();
    let framingError = (): void => {};
    const socket = createConnection({
      host,
      port,
      noDelay: true,
      // Reads land in an arena (up to 256 KiB per read syscall, fewer records split), or straight
      // in the record being gathered.
      onread: arenaReads(
        (data) => {
          if (!reader.push(data)) framingError();
          return true;
        },
        gatherInto(reader, () => framingError()),
      ),
    });
    // Written at once: it leaves with the first segment after the handshake.
    socket.write(TCP_PREFACE);
    this.#pending.add(socket);
    return new Promise<string>((resolve, reject) => {
      const failed = (e: Error): void => {
        this.#pending.delete(socket);
        socket.destroy();
        reject(e);
      };
      const timer = setTimeout(
        () =>
          failed(
            Object.assign(new Error(`connect ETIMEDOUT ${host}:${port}`), { code: 'ETIMEDOUT' }),
          ),
        this.#o.connectTimeoutMs ?? DEFAULT_TCP_CONNECT_TIMEOUT_MS,
      );
      timer.unref();
      const onError = (e: Error): void => {
        clearTimeout(timer);
        failed(e);
      };
      socket.once('error', onError);
      socket.once('connect', () => {
        clearTimeout(timer);
        socket.off('error', onError);
        this.#pending.delete(socket);
        const id = this.#open(socket);
        this.#read(id, socket, reader);
        framingError = () => this.#framingError(id, socket);
        resolve(id);
      });
    });
  }

  /**
   * Sends one datagram as a record. Returns false if it was dropped: no such path, a datagram
   * over `maxDatagram`, or the connection's queue over the bound (counted in `queueDrops`).
   */
  send(pathId: string, datagram: Uint8Array): boolean {
    const c = this.#conns.get(pathId);
    if (!c || c.socket.destroyed || !c.socket.writable) return false;
    if (datagram.length > this.#maxDatagram) return false;
    // TCP delivers everything or nothing: beyond the bound, dropping is the datagram semantics the
    // core expects (it recovers as it would from a UDP loss), and memory stays bounded.
    if (c.socket.writableLength + datagram.length + RECORD_HEADER_BYTES > this.#maxQueued) {
      this.stats.queueDrops++;
      return false;
    }
    let ok: boolean;
    if (datagram.length < 512) {
      ok = c.socket.write(encodeRecord(datagram));
    } else {
      // A big datagram is not copied behind its Length: two writes in one writev (cork).
      c.socket.cork();
      c.socket.write(recordHeader(datagram.length));
      ok = c.socket.write(datagram);
      c.socket.uncork();
    }
    if (!ok && !c.blocked) {
      c.blocked = true;
      this.stats.congested++;
    }
    this.stats.datagramsSent++;
    return true;
  }

  /** Closes one path without reporting it through `onPathClose`. */
  closePath(pathId: string): void {
    const c = this.#conns.get(pathId);
    if (!c) return;
    this.#conns.delete(pathId);
    c.socket.destroy();
  }

  /** Stops listening and closes every connection, reporting none. */
  close(): Promise<void> {
    for (const id of [...this.#conns.keys()]) this.closePath(id);
    for (const s of this.#pending) s.destroy();
    this.#pending.clear();
    const server = this.#server;
    this.#server = undefined;
    if (!server) return Promise.resolve();
    return new Promise((resolve) => server.close(() => resolve()));
  }

  #reader(): RecordReader {
    return new RecordReader({
      zeroCopy: true,
      copyBelow: SMALL_RECORD_BYTES,
      maxDatagram: this.#maxDatagram,
      // Written whole before it is handed up: no need to zero up to a megabyte first.
      alloc: allocUninitialized,
    });
  }

  #open(socket: Socket): string {
    const id = `tcp:${++this.#n}`;
    const c: Conn = {
      socket,
      local: endpointOf(socket.localAddress, socket.localPort),
      remote: endpointOf(socket.remoteAddress, socket.remotePort),
      blocked: false,
    };
    this.#conns.set(id, c);
    socket.on('drain', () => {
      if (!c.blocked) return;
      c.blocked = false;
      this.#o.onDrain?.(id);
    });
    const closed = (reason: string): void => {
      // Only a path still registered is reported: closePath and close() remove it first.
      if (this.#conns.get(id) !== c) return;
      this.#conns.delete(id);
      socket.destroy();
      this.#o.onPathClose?.(id, reason);
    };
    socket.on('error', (e: NodeJS.ErrnoException) =>
      closed(`${TcpCloseReason.CLOSED}: ${e.code ?? e.message}`),
    );
    socket.on('close', () => closed(TcpCloseReason.CLOSED));
    return id;
  }

  #read(id: string, socket: Socket, reader: RecordReader): void {
    const remote =
      this.#conns.get(id)?.remote ?? endpointOf(socket.remoteAddress, socket.remotePort);
    reader.onRecord = (d) => {
      if (d.length === 0) {
        this.stats.heartbeatsReceived++;
        return;
      }
      this.stats.datagramsReceived++;
      this.#o.onDatagram(d, id, remote);
    };
  }

  #framingError(id: string, socket: Socket): void {
    this.stats.framingErrors++;
    const c = this.#conns.get(id);
    if (c?.socket === socket) {
      this.#conns.delete(id);
      this.#o.onPathClose?.(id, TcpCloseReason.FRAMING);
    }
    socket.destroy();
  }

  /** Takes on an accepted connection; returns where its reads go. */
  #accept(socket: Socket): Accepted {
    this.#pending.add(socket);
    let seen = 0;
    let id: string | undefined;
    const reader = this.#reader();
    // Before the preface is complete the connection is not a path: errors and closes are silent.
    const early = (): void => {
      this.#pending.delete(socket);
      socket.destroy();
    };
    socket.on('error', early);
    socket.on('close', early);
    // Only a record of an open path is ever gathered (the preface is read from the arena).
    const gather = gatherInto(reader, () => {
      if (id !== undefined) this.#framingError(id, socket);
    });
    const deliver = (d: Uint8Array): void => {
      let rest: Uint8Array = d;
      if (id === undefined) {
        const n = Math.min(TCP_PREFACE.length - seen, d.length);
        for (let i = 0; i < n; i++) {
          if (d[i] !== TCP_PREFACE[seen + i]) {
            // Not roamlink (a scanner, a mistyped port): close without a word.
            this.stats.prefaceRejected++;
            socket.removeAllListeners('data');
            early();
            return;
          }
        }
        seen += n;
        if (seen < TCP_PREFACE.length) return;
        rest = d.subarray(n);
        socket.off('error', early);
        socket.off('close', early);
        this.#pending.delete(socket);
        id = this.#open(socket);
        this.#read(id, socket, reader);
        this.#o.onPathOpen?.(id, this.#conns.get(id)!.remote);
      }
      if (rest.length > 0 && !reader.push(rest)) this.#framingError(id, socket);
    };
    return { deliver, gather };
  }
}
