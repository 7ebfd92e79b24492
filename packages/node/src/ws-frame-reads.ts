/**
 * A WebSocket client connection whose reads land in an arena and reach `ws` cut at frame
 * boundaries, so that `ws` never copies a frame to join it (RFC 6455 §5.2 framing).
 *
 * `ws` joins a frame whose bytes came in several 'data' chunks by copying them into a fresh
 * buffer (its receiver's `consume`): a client downloading 1 MiB messages from 64 KiB socket reads
 * copied every byte once more (~0.22 s of CPU per GiB in a profile). Here the connection reads
 * with Node's `onread` into LARGE_READ_ARENA_BYTES buffers; a frame's bytes, read by however many
 * reads, lie one after the other in the arena, and are handed to `ws` as one chunk (a view: no
 * copy) once the frame is whole. Only a frame that would run past the end of an arena buffer is
 * gathered into a buffer of its own: its head copied, its rest read straight into it.
 *
 * Before the frames come the HTTP response to the upgrade (node:http reads it from the same
 * 'data' events): its bytes pass through as they are read. Anything but a 101 answer, and any
 * frame longer than `maxFrame` (which `ws` refuses anyway), turns the framing off for the rest of
 * the connection: the bytes then pass through as they are read, as from a plain socket. Complete
 * frames are never held back; what is held is only the frame still arriving.
 */
import {
  createConnection,
  type NetConnectOpts,
  type Socket,
  type TcpNetConnectOpts,
} from 'node:net';
import { arenaReads, type ReadGather } from './read-arena.ts';

const CRLFCRLF = [13, 10, 13, 10] as const;
/** "HTTP/1.1 101" (or 1.0): the status line's first 12 bytes. */
const SWITCHING = /^HTTP\/1\.[01] 101$/;

/**
 * Bytes of the frame that starts at `d[o]`: header (2, +2 or +8 of extended length, +4 of mask)
 * and payload; undefined while its header is incomplete, -1 for a length over `max`.
 */
export function frameBytes(d: Uint8Array, o: number, max: number): number | undefined {
  if (d.length - o < 2) return undefined;
  const b1 = d[o + 1]!;
  const mask = b1 & 0x80 ? 4 : 0;
  const len7 = b1 & 0x7f;
  let header: number;
  let payload: number;
  if (len7 < 126) {
    header = 2 + mask;
    payload = len7;
  } else if (len7 === 126) {
    header = 4 + mask;
    if (d.length - o < 4) return undefined;
    payload = (d[o + 2]! << 8) | d[o + 3]!;
  } else {
    header = 10 + mask;
    if (d.length - o < 10) return undefined;
    // A 64-bit length (§5.2: its top bit 0); anything over 2^32 is over any maxFrame here.
    if ((d[o + 2]! | d[o + 3]! | d[o + 4]! | d[o + 5]!) !== 0) return -1;
    payload = ((d[o + 6]! << 24) | (d[o + 7]! << 16) | (d[o + 8]! << 8) | d[o + 9]!) >>> 0;
  }
  return payload > max ? -1 : header + payload;
}

/**
 * The state of one connection's reads: `read` takes each read (a view of the arena, or nothing
 * when the read went to `gather`'s target) and calls `emit` with chunks cut at frame boundaries.
 */
export class WsFrameReads implements ReadGather {
  readonly #emit: (chunk: Buffer) => void;
  readonly #maxFrame: number;
  #phase: 'http' | 'frames' | 'raw' = 'http';
  /** The status line's first bytes, and how much of "\r\n\r\n" the head's last bytes matched. */
  #status = '';
  #crlf = 0;
  /** The frame still arriving, as a view of where it was read (its bytes so far). */
  #held: Buffer | undefined;
  /** The same frame, gathered into a buffer of its own, and how much of it is filled. */
  #own: Buffer | undefined;
  #ownFilled = 0;

  constructor(emit: (chunk: Buffer) => void, maxFrame: number) {
    this.#emit = emit;
    this.#maxFrame = maxFrame;
  }

  /** A read of the arena (never an empty one). */
  read(d: Buffer): void {
    let chunk = d;
    if (this.#phase === 'raw') {
      this.#emit(chunk);
      return;
    }
    if (this.#phase === 'http') {
      // -1 also once the status turned out not to be 101 (then 'raw').
      const end = this.#headEnd(chunk);
      if (end < 0) {
        this.#emit(chunk);
        return;
      }
      // The head ends inside this read: it goes on its own, the frames after it are cut.
      this.#emit(chunk.subarray(0, end));
      this.#phase = 'frames';
      chunk = chunk.subarray(end);
      if (chunk.length === 0) return;
    }
    if (this.#own !== undefined) {
      // A read into the arena while gathering: the gathered frame's last bytes, then what follows.
      const take = Math.min(this.#own.length - this.#ownFilled, chunk.length);
      this.#own.set(chunk.subarray(0, take), this.#ownFilled);
      this.#ownFilled += take;
      if (this.#ownFilled < this.#own.length) return;
      this.#emitOwn();
      chunk = chunk.subarray(take);
      if (chunk.length === 0) return;
    }
    const held = this.#held;
    if (held !== undefined) {
      this.#held = undefined;
      if (held.buffer === chunk.buffer && held.byteOffset + held.length === chunk.byteOffset) {
        chunk = Buffer.from(chunk.buffer, held.byteOffset, held.length + chunk.length);
      } else {
        // Not where the frame's head lies (the arena moved on): joined by copying, as `ws` would.
        chunk = Buffer.concat([held, chunk]);
      }
    }
    this.#cut(chunk);
  }

  /** ReadGather: the frame still arriving, read on in place if it fits, else into its own buffer. */
  target(min: number, room: number): Uint8Array | undefined {
    if (this.#own !== undefined) {
      const missing = this.#own.length - this.#ownFilled;
      return missing >= min ? this.#own.subarray(this.#ownFilled) : undefined;
    }
    const held = this.#held;
    if (held === undefined || this.#phase !== 'frames') return undefined;
    const total = frameBytes(held, 0, this.#maxFrame);
    if (total === undefined || total < 0 || total - held.length <= room) return undefined;
    const own = Buffer.allocUnsafeSlow(total);
    own.set(held, 0);
    this.#own = own;
    this.#ownFilled = held.length;
    this.#held = undefined;
    return total - held.length >= min ? own.subarray(held.length) : undefined;
  }

  /** ReadGather: a read filled `n` bytes of the last target. */
  filled(n: number): void {
    this.#ownFilled += n;
    if (this.#ownFilled === this.#own!.length) this.#emitOwn();
  }

  #emitOwn(): void {
    const own = this.#own!;
    this.#own = undefined;
    this.#ownFilled = 0;
    this.#emit(own);
  }

  /** Emits the whole frames at the start of `d`; holds the incomplete one after them. */
  #cut(d: Buffer): void {
    let o = 0;
    for (;;) {
      const n = frameBytes(d, o, this.#maxFrame);
      if (n === -1) {
        // Longer than `ws` takes: it will close the connection; pass everything on as read.
        this.#phase = 'raw';
        this.#emit(d);
        return;
      }
      if (n === undefined || d.length - o < n) break;
      o += n;
    }
    if (o > 0) this.#emit(o === d.length ? d : d.subarray(0, o));
    if (o < d.length) this.#held = d.subarray(o);
  }

  /**
   * Where the HTTP head ends in `d` (the offset after its blank line), or -1 if not in `d`.
   * Turns framing off ('raw') if the status is not 101.
   */
  #headEnd(d: Uint8Array): number {
    for (let i = 0; i < d.length; i++) {
      const c = d[i]!;
      if (this.#status.length < 12) {
        this.#status += String.fromCharCode(c);
        if (this.#status.length === 12 && !SWITCHING.test(this.#status)) {
          this.#phase = 'raw';
          return -1;
        }
      }
      this.#crlf = c === CRLFCRLF[this.#crlf] ? this.#crlf + 1 : c === 13 ? 1 : 0;
      if (this.#crlf === 4) return i + 1;
    }
    return -1;
  }
}

/**
 * `net.connect` for `ws`'s `createConnection` option: the WebSocket's frames reach `ws` whole,
 * as views of the read arena (WsFrameReads). Reads still arrive as 'data' events, which
 * node:http (the upgrade's response) and then `ws` listen to; like any `onread` socket, it keeps
 * nothing for a listener that comes later.
 */
export function connectWsFrames(options: NetConnectOpts, maxFrame: number): Socket {
  const frames = new WsFrameReads((chunk) => socket.emit('data', chunk), maxFrame);
  // As `ws`'s own connect: a `path` here would make net dial an IPC socket, never the relay.
  const { path: _path, ...tcp } = options as TcpNetConnectOpts & { path?: string };
  const socket: Socket = createConnection({
    ...tcp,
    onread: arenaReads((data) => {
      frames.read(data as Buffer);
      return true;
    }, frames),
  });
  return socket;
}
