/**
 * Runs the core's sans-I/O Mux (the stream layer) on the browser's event loop and turns its
 * streams into WHATWG streams: a `ReadableStream<Uint8Array>` and a `WritableStream<Uint8Array>`
 * per stream, with backpressure both ways.
 *
 * - Down: the readable has a high-water mark of 0, so a chunk is handed over only when the reader
 *   asks for one; only then is its flow-control credit returned to the relay (`mux.consumed`).
 *   A reader that stops reading stops the relay once the stream's window is used up; memory stays
 *   bounded by the window.
 * - Up: `write()` resolves once the mux took every byte of the chunk (bounded by its send buffer
 *   and the relay's credit); until then `writer.ready` waits, as WHATWG backpressure does.
 *
 * `writable.close()` ends the sending direction (FIN); `writable.abort()` and `readable.cancel()`
 * reset the stream in both directions (the stream layer has no half-reset). A reset by the relay
 * errors both with a RoamlinkBrowserError (STREAM_RESET).
 *
 * Datagrams: one flow per session, `sendDatagram(target, data)` and a ReadableStream of what comes
 * back; unreliable, so a reader that falls behind loses datagrams (counted), never memory.
 */
import type { Mux, MuxEvent, StreamTarget } from '@roamlink/core';
import { MuxPump, type PumpTimers, StreamError } from '@roamlink/core';

import { BrowserErrorCode, RoamlinkBrowserError, streamErrorName } from './errors.ts';

/** The page's timers for MuxPump (a page has no process to keep alive). */
const BROWSER_TIMERS: PumpTimers = {
  set: (fn, ms) => setTimeout(fn, ms),
  clear: (t) => clearTimeout(t as ReturnType<typeof setTimeout>),
};

export interface BrowserStream {
  /** The stream layer's id of this stream. */
  readonly id: number;
  readonly host: string;
  readonly port: number;
  /** What the relay's destination sends, in order. */
  readonly readable: ReadableStream<Uint8Array>;
  /** What goes to the destination, in order. */
  readonly writable: WritableStream<Uint8Array>;
}

export interface Datagram {
  host: string;
  port: number;
  data: Uint8Array;
}

export interface MuxHostOptions {
  mux: Mux;
  /** Whether a packet may go now (keys usable, transport not congested). */
  canSend: () => boolean;
  /** Seals one mux payload and sends it on the session's data path(s). */
  send: (payload: Uint8Array, now: number) => void;
  /** Events the host does not handle itself (goaway, dead). */
  onEvent?: (e: MuxEvent) => void;
  clock: () => number;
  /** Datagrams held for a reader that is behind (default 256); more are dropped. */
  datagramQueue?: number;
}

/** The one datagram flow of a browser session. */
const FLOW = 1;

class Entry {
  readonly id: number;
  readonly target: StreamTarget;
  readable!: ReadableStream<Uint8Array>;
  writable!: WritableStream<Uint8Array>;
  readCtl!: ReadableStreamDefaultController<Uint8Array>;
  writeCtl!: WritableStreamDefaultController;
  /** Delivered by the mux, not yet asked for by the reader (credit not yet returned). */
  pending: Uint8Array[] = [];
  /** A read is waiting and nothing was pending. */
  wanted = false;
  peerEnded = false;
  readDone = false;
  writeDone = false;
  /** Gone for good (reset either way, refused, or the session closed). */
  dead = false;
  resumeWrite: (() => void) | undefined;
  failWrite: ((e: Error) => void) | undefined;

  constructor(id: number, target: StreamTarget) {
    this.id = id;
    this.target = target;
  }
}

export class BrowserMuxHost {
  /** The stream layer; another one after `restart`. */
  mux: Mux;
  /** Datagrams dropped because the reader of `datagrams` was behind. */
  datagramsDropped = 0;
  readonly datagrams: ReadableStream<Datagram>;
  readonly #o: MuxHostOptions;
  readonly #streams = new Map<number, Entry>();
  readonly #opening = new Map<
    number,
    { resolve: (s: BrowserStream) => void; reject: (e: Error) => void }
  >();
  #dgramCtl!: ReadableStreamDefaultController<Datagram>;
  #pump: MuxPump;
  #closed = false;

  constructor(o: MuxHostOptions) {
    this.mux = o.mux;
    this.#o = o;
    this.#pump = this.#newPump(o.mux);
    this.datagrams = new ReadableStream<Datagram>(
      {
        start: (c) => {
          this.#dgramCtl = c;
        },
      },
      new CountQueuingStrategy({ highWaterMark: o.datagramQueue ?? 256 }),
    );
  }

  get streams(): number {
    return this.#streams.size;
  }

  /** A payload of the mux's frame range arrived (authenticated and decrypted). */
  receive(payload: Uint8Array): void {
    this.mux.receive(payload, this.#o.clock());
    this.pump();
  }

  /** Opens a stream; resolves when the relay accepted it, rejects when it refused. */
  open(target: StreamTarget): Promise<BrowserStream> {
    if (this.#closed) {
      return Promise.reject(
        new RoamlinkBrowserError(BrowserErrorCode.SESSION_CLOSED, 'session closed'),
      );
    }
    const id = this.mux.openStream(target);
    const e = this.#entry(id, target);
    this.#streams.set(id, e);
    const p = new Promise<BrowserStream>((resolve, reject) =>
      this.#opening.set(id, { resolve, reject }),
    );
    this.pump();
    return p;
  }

  /** Sends one datagram to `target`; false when it cannot go (too big, queue full, closed). */
  sendDatagram(target: StreamTarget, data: Uint8Array): boolean {
    if (this.#closed) return false;
    const ok = this.mux.sendDatagram(FLOW, target, data);
    this.pump();
    return ok;
  }

  /** Drain events, flush packets, re-arm the timer (MuxPump). */
  pump(): void {
    this.#pump.pump();
  }

  /**
   * The relay's stream layer started over (it restarted: RESP extension FRESH, docs/PROTOCOL.md
   * §4.1): every stream ends with `error` (their far ends are gone), and `mux`, a new stream layer
   * numbering packets from 0, takes the old one's place. The datagram flow and `datagrams` stay.
   * Streams the relay never accepted open again on the new layer: their callers hold nothing yet
   * (`open` has not resolved), so nothing was written to them and nothing goes twice.
   */
  restart(mux: Mux, error: Error): void {
    if (this.#closed) return;
    this.#pump.close();
    const reopen: {
      target: StreamTarget;
      resolve: (s: BrowserStream) => void;
      reject: (e: Error) => void;
    }[] = [];
    for (const [id, o] of this.#opening) {
      const e = this.#streams.get(id);
      this.#streams.delete(id);
      if (e) reopen.push({ target: e.target, ...o });
    }
    this.#opening.clear();
    for (const e of this.#streams.values()) this.#kill(e, error);
    this.#streams.clear();
    this.mux = mux;
    this.#pump = this.#newPump(mux);
    for (const o of reopen) this.open(o.target).then(o.resolve, o.reject);
  }

  #newPump(mux: Mux): MuxPump {
    const o = this.#o;
    return new MuxPump({
      mux,
      canSend: o.canSend,
      send: o.send,
      onEvent: (e) => this.#event(e),
      clock: o.clock,
      timers: BROWSER_TIMERS,
    });
  }

  /** Ends every stream with `error` and stops. */
  close(error: Error): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#pump.close();
    for (const o of this.#opening.values()) o.reject(error);
    this.#opening.clear();
    for (const e of this.#streams.values()) this.#kill(e, error);
    this.#streams.clear();
    try {
      this.#dgramCtl.close();
    } catch {
      // Already closed or errored.
    }
  }

  #entry(id: number, target: StreamTarget): Entry {
    const e = new Entry(id, target);
    e.readable = new ReadableStream<Uint8Array>(
      {
        start: (c) => {
          e.readCtl = c;
        },
        pull: () => this.#pull(e),
        cancel: () => this.#cancel(e),
      },
      // Nothing is queued ahead of the reader: credit goes back only for what it asked for.
      { highWaterMark: 0 },
    );
    e.writable = new WritableStream<Uint8Array>({
      start: (c) => {
        e.writeCtl = c;
      },
      write: (chunk) => this.#write(e, chunk),
      close: () => {
        e.writeDone = true;
        if (e.dead) return;
        this.mux.end(e.id);
        this.pump();
      },
      abort: () => {
        e.writeDone = true;
        this.#resetLocal(e);
      },
    });
    return e;
  }

  #pull(e: Entry): void {
    const chunk = e.pending.shift();
    if (chunk === undefined) {
      e.wanted = true;
      return;
    }
    e.readCtl.enqueue(chunk);
    this.mux.consumed(e.id, chunk.length);
    if (e.pending.length === 0 && e.peerEnded) this.#endRead(e);
    this.pump();
  }

  #cancel(e: Entry): void {
    let n = 0;
    for (const c of e.pending) n += c.length;
    e.pending = [];
    e.readDone = true;
    if (n > 0) this.mux.consumed(e.id, n);
    // The stream layer has no way to stop only one direction: unless the relay already ended its
    // side, cancelling the readable resets the stream.
    if (!e.peerEnded) this.#resetLocal(e);
    else this.pump();
  }

  #resetLocal(e: Entry): void {
    if (e.dead) return;
    e.dead = true;
    this.mux.reset(e.id, StreamError.RESET);
    const err = new RoamlinkBrowserError(BrowserErrorCode.STREAM_RESET, 'stream reset here', {
      stream: 'reset',
    });
    e.failWrite?.(err);
    e.failWrite = undefined;
    e.resumeWrite = undefined;
    this.pump();
  }

  #write(e: Entry, chunk: Uint8Array): Promise<void> {
    if (!(chunk instanceof Uint8Array)) {
      return Promise.reject(new TypeError('a stream takes Uint8Array chunks'));
    }
    return new Promise<void>((resolve, reject) => {
      let off = 0;
      const attempt = (): void => {
        if (e.dead || this.#closed) {
          e.resumeWrite = undefined;
          e.failWrite = undefined;
          reject(new RoamlinkBrowserError(BrowserErrorCode.STREAM_RESET, 'stream is gone'));
          return;
        }
        off += this.mux.write(e.id, off === 0 ? chunk : chunk.subarray(off));
        this.pump();
        if (off >= chunk.length) {
          e.resumeWrite = undefined;
          e.failWrite = undefined;
          resolve();
        } else {
          e.resumeWrite = attempt;
        }
      };
      e.failWrite = reject;
      attempt();
    });
  }

  #deliver(e: Entry, data: Uint8Array): void {
    if (e.readDone || e.dead) {
      // Nobody will read it: give the credit back at once.
      this.mux.consumed(e.id, data.length);
      return;
    }
    if (e.wanted && e.pending.length === 0) {
      e.wanted = false;
      e.readCtl.enqueue(data);
      this.mux.consumed(e.id, data.length);
      return;
    }
    e.pending.push(data);
  }

  #endRead(e: Entry): void {
    if (e.readDone) return;
    e.readDone = true;
    try {
      e.readCtl.close();
    } catch {
      // Cancelled meanwhile.
    }
  }

  /** Errors both sides of a stream that is gone. */
  #kill(e: Entry, err: Error): void {
    e.dead = true;
    e.pending = [];
    if (!e.readDone) {
      e.readDone = true;
      try {
        e.readCtl.error(err);
      } catch {
        // Already closed.
      }
    }
    if (!e.writeDone) {
      e.writeDone = true;
      try {
        e.writeCtl.error(err);
      } catch {
        // Already closed.
      }
    }
    e.failWrite?.(err);
    e.failWrite = undefined;
    e.resumeWrite = undefined;
  }

  #event(ev: MuxEvent): void {
    switch (ev.type) {
      case 'stream-accepted': {
        const o = this.#opening.get(ev.id);
        this.#opening.delete(ev.id);
        const e = this.#streams.get(ev.id);
        if (o && e) {
          o.resolve({
            id: e.id,
            host: e.target.host,
            port: e.target.port,
            readable: e.readable,
            writable: e.writable,
          });
        }
        return;
      }
      case 'stream-refused': {
        const o = this.#opening.get(ev.id);
        this.#opening.delete(ev.id);
        const e = this.#streams.get(ev.id);
        this.#streams.delete(ev.id);
        const name = streamErrorName(ev.code);
        const err = new RoamlinkBrowserError(
          BrowserErrorCode.STREAM_REFUSED,
          `relay refused the stream (${name})`,
          { stream: name },
        );
        o?.reject(err);
        if (e) this.#kill(e, err);
        return;
      }
      case 'stream-data': {
        const e = this.#streams.get(ev.id);
        if (e) this.#deliver(e, ev.data);
        else this.mux.consumed(ev.id, ev.data.length);
        return;
      }
      case 'stream-end': {
        const e = this.#streams.get(ev.id);
        if (!e) return;
        e.peerEnded = true;
        if (e.pending.length === 0) this.#endRead(e);
        return;
      }
      case 'stream-reset': {
        const name = streamErrorName(ev.code);
        const err = new RoamlinkBrowserError(
          BrowserErrorCode.STREAM_RESET,
          `stream reset by the relay (${name})`,
          { stream: name },
        );
        const o = this.#opening.get(ev.id);
        this.#opening.delete(ev.id);
        o?.reject(err);
        const e = this.#streams.get(ev.id);
        this.#streams.delete(ev.id);
        if (e) this.#kill(e, err);
        return;
      }
      case 'stream-writable':
        this.#streams.get(ev.id)?.resumeWrite?.();
        return;
      case 'stream-closed':
        this.#streams.delete(ev.id);
        return;
      case 'datagram': {
        if (ev.flow !== FLOW) return;
        const c = this.#dgramCtl;
        if ((c.desiredSize ?? 0) <= 0) {
          this.datagramsDropped++;
          return;
        }
        c.enqueue({ host: ev.target.host, port: ev.target.port, data: ev.data });
        return;
      }
      default:
        this.#o.onEvent?.(ev);
    }
  }
}
