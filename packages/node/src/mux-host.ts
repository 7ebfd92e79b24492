/**
 * Runs a sans-I/O Mux (the stream layer, docs/PROTOCOL.md §8) on Node's event loop and turns its
 * streams into Node Duplex streams, so that a SOCKS connection, a `-L` forward or the relay's TCP
 * egress socket can simply be piped to one.
 *
 * The host owns one timer for the mux's next deadline and flushes packets whenever something may
 * have changed (a packet came in, the app wrote, a transport drained). The app gives it two
 * functions: `canSend()` (keys usable and the current path's transport not congested: a stream
 * transport's queue is bounded, and writing past it would only turn into losses) and
 * `send(payload)` (seal with the SA and put on the wire).
 */
import { Duplex } from 'node:stream';
import type { Mux, MuxEvent, StreamTarget } from '@roamlink/core';
import { DATAGRAM_PATH_CEILING, MuxPump, type PumpTimers, StreamError } from '@roamlink/core';
import type { TunnelDatagrams, TunnelErrorCode } from './socks5.ts';
import { TunnelError } from './socks5.ts';

export interface MuxHostOptions {
  mux: Mux;
  /** Whether a packet may go now (keys usable, transport not congested). */
  canSend: () => boolean;
  /** While `canSend` is false, whether the owner pumps by itself when it can (MuxPumpOptions). */
  resumes?: () => boolean;
  /** Seals one mux payload and sends it on the session's current path(s). */
  send: (payload: Uint8Array, now: number) => void;
  /** Events the host does not handle itself: stream-open, goaway, dead. */
  onEvent?: (e: MuxEvent) => void;
  /** Datagrams for flows the host does not know (the relay's egress side takes them). */
  onDatagram?: (flow: number, target: StreamTarget, data: Uint8Array) => void;
  clock?: () => number;
}

/**
 * The Node relay's and client's flow-control windows, twice the core's defaults (8 MiB a stream,
 * 16 MiB a session), which suit a browser tab or a Worker's memory. Under a bulk download, data
 * sitting in socket buffers and the transport's queue (up to 4 MiB of 1 MiB packets) counts
 * against the window as well: over 10 alternating pairs of 1 GiB downloads through TCP, 16/32
 * gave 463 against 426 MB/s (medians) and 8% less relay CPU per GiB; 16/16 gave nothing. A
 * session still holds at most SESSION_WINDOW_NODE of unacknowledged or undelivered stream data
 * per direction.
 */
export const STREAM_WINDOW_MAX_NODE = 16 * 1024 * 1024;
export const SESSION_WINDOW_NODE = 32 * 1024 * 1024;
/**
 * What a Node session's streams may hold received and not yet consumed (Mux `sessionMemory`):
 * four session windows. Readers that stop (a paused download; an upload to a server that does
 * not read) hold up to their stream windows, 16 MiB each once grown; with the session bound at
 * one window, two of them stopped every other stream of the session, new ones included. Now six
 * can stop before the others feel it.
 */
export const SESSION_MEMORY_NODE = 4 * SESSION_WINDOW_NODE;

/** The Mux window options of the Node relay and client, with an optional initial stream window. */
export function nodeMuxWindows(streamWindow?: number): {
  maxStreamWindow: number;
  sessionWindow: number;
  sessionMemory: number;
  streamWindow?: number;
} {
  return {
    maxStreamWindow: Math.max(STREAM_WINDOW_MAX_NODE, streamWindow ?? 0),
    sessionWindow: SESSION_WINDOW_NODE,
    sessionMemory: SESSION_MEMORY_NODE,
    ...(streamWindow ? { streamWindow } : {}),
  };
}

/**
 * The payload ceiling for the path-MTU search on UDP: DATAGRAM_PATH_CEILING unless
 * ROAMLINK_UDP_MAX_PAYLOAD caps it (at most 1360 turns the search off), e.g. to measure packets
 * per second at the common 1400-byte packet.
 */
export const UDP_PAYLOAD_CEILING = Math.max(
  1200,
  Math.min(
    DATAGRAM_PATH_CEILING,
    Number(process.env.ROAMLINK_UDP_MAX_PAYLOAD) || DATAGRAM_PATH_CEILING,
  ),
);

/** Node's timers for MuxPump: the deadline timer alone does not keep the process alive. */
const NODE_TIMERS: PumpTimers = {
  set: (fn, ms, background) => {
    const t = setTimeout(fn, ms);
    if (background) t.unref();
    return t;
  },
  clear: (t) => clearTimeout(t as NodeJS.Timeout),
};

/** Stream error codes on the wire (StreamError) as the SOCKS layer names them. */
export function tunnelErrorCode(code: number): TunnelErrorCode {
  switch (code) {
    case StreamError.POLICY:
      return 'policy';
    case StreamError.REFUSED:
      return 'refused';
    case StreamError.UNREACHABLE:
      return 'unreachable';
    case StreamError.TIMEOUT:
      return 'timeout';
    case StreamError.DNS:
      return 'dns';
    case StreamError.SHUTDOWN:
      return 'shutdown';
    default:
      return 'internal';
  }
}

const STREAM_ERROR_NAMES = new Map<number, string>(
  Object.entries(StreamError).map(([k, v]) => [v, k.toLowerCase()]),
);
export const streamErrorName = (code: number): string => STREAM_ERROR_NAMES.get(code) ?? `${code}`;

/** One mux stream as a Node Duplex. Reading frees the peer's flow-control credit. */
export class MuxDuplex extends Duplex {
  readonly id: number;
  readonly target: StreamTarget;
  readonly #host: MuxHost;
  /** Delivered bytes not yet handed back as credit (the reader is behind). */
  #unconsumed = 0;
  #resumeWrite: (() => void) | undefined;
  #peerDone = false;
  #resetByPeer = false;

  constructor(host: MuxHost, id: number, target: StreamTarget) {
    super({ allowHalfOpen: true, readableHighWaterMark: 256 * 1024 });
    this.#host = host;
    this.id = id;
    this.target = target;
  }

  /** Data delivered by the mux, in order. */
  deliver(data: Uint8Array): void {
    if (this.destroyed) {
      this.#host.mux.consumed(this.id, data.length);
      return;
    }
    if (this.push(data)) this.#host.mux.consumed(this.id, data.length);
    else this.#unconsumed += data.length;
  }

  peerEnded(): void {
    this.#peerDone = true;
    if (!this.destroyed) this.push(null);
  }

  /** Destroyed without a word to the peer (the stream was refused). */
  forget(): void {
    this.#resetByPeer = true;
    this.destroy();
  }

  peerReset(code: number): void {
    this.#resetByPeer = true;
    this.destroy(
      new TunnelError(tunnelErrorCode(code), `stream reset by peer (${streamErrorName(code)})`),
    );
  }

  writable_(): void {
    const resume = this.#resumeWrite;
    this.#resumeWrite = undefined;
    resume?.();
  }

  override _read(): void {
    if (this.#unconsumed > 0) {
      const n = this.#unconsumed;
      this.#unconsumed = 0;
      this.#host.mux.consumed(this.id, n);
      this.#host.pump();
    }
  }

  override _write(chunk: Uint8Array, _enc: BufferEncoding, cb: (e?: Error | null) => void): void {
    let off = 0;
    const attempt = (): void => {
      if (this.destroyed) {
        cb(new Error('stream destroyed'));
        return;
      }
      off += this.#host.mux.write(this.id, off === 0 ? chunk : chunk.subarray(off));
      // A write to an idle path is sent at once (a request: latency counts); while data is in
      // flight, writes of the same turn are gathered into full packets (bulk: packets count).
      if (this.#host.mux.idle) this.#host.pump();
      else this.#host.pumpSoon();
      if (off >= chunk.length) cb();
      else this.#resumeWrite = attempt;
    };
    attempt();
  }

  override _final(cb: (e?: Error | null) => void): void {
    this.#host.mux.end(this.id);
    this.#host.pump();
    cb();
  }

  override _destroy(err: Error | null, cb: (e?: Error | null) => void): void {
    // Bytes delivered but never read: hand their credit back, or the stream can never close.
    if (this.#unconsumed > 0) {
      const n = this.#unconsumed;
      this.#unconsumed = 0;
      this.#host.mux.consumed(this.id, n);
    }
    if (!this.#resetByPeer && (err || !this.#peerDone || !this.writableFinished)) {
      this.#host.mux.reset(this.id, StreamError.RESET);
      this.#host.pump();
    }
    cb(err);
  }
}

export class MuxHost {
  readonly mux: Mux;
  readonly #o: MuxHostOptions;
  readonly #clock: () => number;
  readonly #streams = new Map<number, MuxDuplex>();
  readonly #opening = new Map<
    number,
    { resolve: (d: MuxDuplex) => void; reject: (e: Error) => void }
  >();
  readonly #flows = new Map<number, (from: StreamTarget, data: Uint8Array) => void>();
  /** Told when the host closes, by flow: the datagram flows still open (their users end them). */
  readonly #flowEnds = new Map<number, () => void>();
  #nextFlow = 1;
  readonly #pump: MuxPump;
  #soon: NodeJS.Immediate | undefined;
  #closed = false;

  constructor(o: MuxHostOptions) {
    this.mux = o.mux;
    this.#o = o;
    this.#clock = o.clock ?? Date.now;
    this.#pump = new MuxPump({
      mux: o.mux,
      canSend: o.canSend,
      ...(o.resumes ? { resumes: o.resumes } : {}),
      send: o.send,
      onEvent: (e) => this.#event(e),
      clock: this.#clock,
      timers: NODE_TIMERS,
    });
  }

  get streams(): number {
    return this.#streams.size;
  }

  /** A payload of the mux's frame range arrived (already authenticated and decrypted). */
  receive(payload: Uint8Array): void {
    this.mux.receive(payload, this.#clock());
    this.pump();
  }

  /** Client: opens a stream; resolves when the relay accepted it, rejects with a TunnelError. */
  open(target: StreamTarget): Promise<MuxDuplex> {
    const id = this.mux.openStream(target);
    const d = new MuxDuplex(this, id, target);
    this.#streams.set(id, d);
    const p = new Promise<MuxDuplex>((resolve, reject) =>
      this.#opening.set(id, { resolve, reject }),
    );
    this.pump();
    return p;
  }

  /** Relay: the Duplex of a stream the peer opened ('stream-open'); accept or refuse it. */
  stream(id: number): MuxDuplex | undefined {
    return this.#streams.get(id);
  }

  /** Relay: the stream's destination is connected; bytes may flow. */
  accept(id: number): void {
    this.mux.accept(id);
    this.pump();
  }

  /** Relay: the stream cannot be served (policy, connect failure); the client hears `code`. */
  refuse(id: number, code: number): void {
    const d = this.#streams.get(id);
    this.#streams.delete(id);
    this.mux.refuse(id, code);
    // Quietly: the refusal already tells the client; no reset follows it.
    d?.forget();
    this.pump();
  }

  /** Client: a datagram association (SOCKS UDP ASSOCIATE) carried as mux datagrams. */
  openDatagrams(): TunnelDatagrams {
    const flow = this.#nextFlow++;
    let cb: (from: StreamTarget, data: Uint8Array) => void = () => {};
    this.#flows.set(flow, (from, data) => cb(from, data));
    return {
      send: (target, data) => {
        if (this.#closed) return;
        this.mux.sendDatagram(flow, target, data);
        this.pump();
      },
      onMessage: (f) => {
        cb = f;
      },
      onClose: (f) => {
        this.#flowEnds.set(flow, f);
      },
      close: () => {
        this.#flows.delete(flow);
        this.#flowEnds.delete(flow);
      },
    };
  }

  /**
   * Pumps once the current I/O phase is over (setImmediate runs right after it, in the same turn
   * of the event loop). An app's socket delivers 64 KiB reads, several per turn when it is
   * busy: pumping after each one would send a full packet and a small remainder per read, twice
   * the packets (and their per-packet work, here and at the peer) for the same bytes.
   */
  pumpSoon(): void {
    if (this.#soon || this.#closed) return;
    this.#soon = setImmediate(() => {
      this.#soon = undefined;
      this.pump();
    });
  }

  /** Drain events, flush packets, re-arm the timer (MuxPump). */
  pump(): void {
    this.#pump.pump();
  }

  /**
   * Takes the streams still opening out of this host, for a new one to open again: the relay
   * started over, and never accepted them (it lost them, or saw them and died before it could).
   * Their users hold no Duplex yet (`open` has not resolved), so nothing was written to them and
   * opening them again sends nothing twice; at most the target sees a second connect, the first
   * one's socket having died with the relay. They leave without a reset (the relay knows none).
   */
  takeOpening(): {
    target: StreamTarget;
    resolve: (d: MuxDuplex) => void;
    reject: (e: Error) => void;
  }[] {
    const out = [];
    for (const [id, o] of this.#opening) {
      const d = this.#streams.get(id);
      this.#streams.delete(id);
      if (!d) continue;
      d.forget();
      out.push({ target: d.target, ...o });
    }
    this.#opening.clear();
    return out;
  }

  /** Stops: every stream and every stream still opening fails with `reason`. */
  close(reason = new TunnelError('shutdown', 'tunnel closed')): void {
    this.#closed = true;
    this.#pump.close();
    if (this.#soon) clearImmediate(this.#soon);
    for (const o of this.#opening.values()) o.reject(reason);
    this.#opening.clear();
    const ends = [...this.#flowEnds.values()];
    this.#flowEnds.clear();
    for (const end of ends) end();
    for (const s of this.#streams.values()) {
      // A stream its user has let go of (its socket closed, the stream not yet freed) has no
      // 'error' listener left, and an unheard 'error' would take the process down.
      if (s.listenerCount('error') === 0) s.on('error', () => {});
      s.destroy(reason);
    }
    this.#streams.clear();
  }

  #event(e: MuxEvent): void {
    switch (e.type) {
      case 'stream-open': {
        this.#streams.set(e.id, new MuxDuplex(this, e.id, e.target));
        this.#o.onEvent?.(e);
        return;
      }
      case 'stream-accepted': {
        const o = this.#opening.get(e.id);
        this.#opening.delete(e.id);
        const d = this.#streams.get(e.id);
        if (o && d) o.resolve(d);
        return;
      }
      case 'stream-refused': {
        const o = this.#opening.get(e.id);
        this.#opening.delete(e.id);
        const d = this.#streams.get(e.id);
        this.#streams.delete(e.id);
        const err = new TunnelError(
          tunnelErrorCode(e.code),
          `relay refused the stream (${streamErrorName(e.code)})`,
        );
        if (o) o.reject(err);
        d?.destroy();
        return;
      }
      case 'stream-data': {
        const d = this.#streams.get(e.id);
        // Nobody to read it (the stream was destroyed here): give the credit back at once.
        if (d) d.deliver(e.data);
        else this.mux.consumed(e.id, e.data.length);
        return;
      }
      case 'stream-end':
        this.#streams.get(e.id)?.peerEnded();
        return;
      case 'stream-reset': {
        const o = this.#opening.get(e.id);
        this.#opening.delete(e.id);
        o?.reject(new TunnelError(tunnelErrorCode(e.code), 'stream reset before it was accepted'));
        this.#streams.get(e.id)?.peerReset(e.code);
        this.#streams.delete(e.id);
        return;
      }
      case 'stream-writable':
        this.#streams.get(e.id)?.writable_();
        return;
      case 'stream-closed':
        this.#streams.delete(e.id);
        return;
      case 'datagram': {
        const f = this.#flows.get(e.flow);
        if (f) f(e.target, e.data);
        else this.#o.onDatagram?.(e.flow, e.target, e.data);
        return;
      }
      default:
        this.#o.onEvent?.(e);
    }
  }
}
