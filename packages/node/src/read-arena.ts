/**
 * Where a socket's reads land when it is opened with Node's `onread`: consecutive slices of one
 * 256 KiB buffer, a fresh one when less than 64 KiB is left. Without it every read is a fresh
 * 64 KiB buffer: more read syscalls for the same bytes and, for records, more of them split
 * between two reads. The slices are handed on as views (the stream layer keeps them until the
 * peer acknowledges them; records may be decrypted in place), so a slice is never written twice;
 * a buffer is freed with the last view of it.
 */
import {
  createConnection,
  type NetConnectOpts,
  type Server,
  Socket,
  type SocketConstructorOpts,
} from 'node:net';

export const READ_ARENA_BYTES = 256 * 1024;
const MIN_READ_BYTES = 64 * 1024;

export class ReadArena {
  #buf: Uint8Array = new Uint8Array(0);
  #pos = 0;

  /**
   * How many bytes the next read may take right after the last one, in the same buffer: what
   * `next()` returns, or 0 when it will start a fresh buffer.
   */
  room(): number {
    const left = this.#buf.length - this.#pos;
    return left < MIN_READ_BYTES ? 0 : left;
  }

  /** The buffer for the next read (`onread.buffer`). */
  next(): Uint8Array {
    if (this.#buf.length - this.#pos < MIN_READ_BYTES) {
      // Not zeroed: only what a read wrote is ever looked at.
      this.#buf = Buffer.allocUnsafeSlow(READ_ARENA_BYTES);
      this.#pos = 0;
    }
    return this.#buf.subarray(this.#pos);
  }

  /** A read filled `n` bytes of the last buffer: they are the caller's now. */
  used(n: number): void {
    this.#pos += n;
  }
}

/**
 * A reader that may take reads straight into its own buffer: a record (RFC 8229 framing) or a
 * WebSocket frame split across reads is gathered there instead of being copied out of the arena
 * (RecordReader's `gatherTarget` and `gathered`, WsFrameReads).
 */
export interface ReadGather {
  /**
   * Where the next read may go instead of the arena (at least `min` bytes), or undefined. `room`:
   * how much the arena's next read may take right after the last read (ReadArena.room), so a
   * record or frame whose rest fits there can be read on in place.
   */
  target(min: number, room: number): Uint8Array | undefined;
  /** The read went to the last target and filled `n` bytes of it. */
  filled(n: number): void;
}

/**
 * Node's `onread` socket option over a fresh arena: each read is handed to `deliver` as a view of
 * the bytes it filled; `deliver` returning false pauses the socket (Node's contract). With
 * `gather`, a read goes into the gatherer's buffer instead whenever it offers 64 KiB or more.
 *
 * Node asks for the next read's buffer right after handing over the last read (and once before
 * the first), so the last buffer given out is always the one the next callback reports.
 */
export function arenaReads(
  deliver: (data: Uint8Array) => boolean,
  gather?: ReadGather,
): {
  buffer: () => Uint8Array;
  callback: (n: number, buf: Uint8Array) => boolean;
} {
  const arena = new ReadArena();
  let gathering = false;
  return {
    buffer: () => {
      const t = gather?.target(MIN_READ_BYTES, arena.room());
      gathering = t !== undefined;
      return t ?? arena.next();
    },
    callback: (n, buf) => {
      if (gathering) {
        gather!.filled(n);
        return true;
      }
      arena.used(n);
      return deliver(buf.subarray(0, n));
    },
  };
}

/**
 * A server's accepted connection, reading into an arena. `net.Server` takes no `onread`, so the
 * connection's handle moves into a socket built with one, the way Node itself rebuilds a socket
 * around a handle passed between processes. The server must accept with `pauseOnConnect` (nothing
 * is read before the move). The new socket counts against the server as the accepted one did, so
 * `server.close()` still waits for it. Where the handle cannot move (no `_handle`: not a plain
 * TCP socket), the accepted socket is returned as it was, resumed, delivering through 'data'.
 */
export function adoptWithArena(
  accepted: Socket,
  server: Server,
  deliver: (data: Uint8Array) => void,
  gather?: ReadGather,
): Socket {
  const internal = accepted as unknown as { _handle: unknown };
  const handle = internal._handle;
  if (handle === null || typeof handle !== 'object') {
    accepted.on('data', deliver);
    accepted.resume();
    return accepted;
  }
  internal._handle = null;
  const socket = new Socket({
    handle,
    readable: true,
    writable: true,
    onread: arenaReads((data) => {
      deliver(data);
      return true;
    }, gather),
  } as SocketConstructorOpts);
  // What Node's server sets on the sockets it accepts: its connection count drops when this one
  // closes.
  const owned = socket as unknown as { server: Server; _server: Server };
  owned.server = server;
  owned._server = server;
  return socket;
}

/**
 * A TCP connection whose reads land in an arena and are still handed out as 'data' events, for a
 * consumer that only listens (node:http's client): it is handed views of up to 256 KiB reads
 * instead of fresh 64 KiB ones, so the parser runs a quarter as often and a response body comes
 * in larger pieces (fewer records straddle two). With `onread` Node keeps nothing for a listener
 * that comes later, so the consumer must listen before any byte can arrive, as an HTTP client does
 * (the server speaks only when asked).
 */
export function connectWithArena(options: NetConnectOpts): Socket {
  const socket: Socket = createConnection({
    ...options,
    onread: arenaReads((data) => {
      socket.emit('data', data);
      return true;
    }),
  });
  return socket;
}
