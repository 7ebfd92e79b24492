/**
 * A relay-side stream layer that survives the loss of its memory. The core Mux keeps its state in
 * private fields, so it cannot be saved; what can be saved is how the client sees it: a handful of
 * cumulative numbers. `ResumableMux` wraps a Mux, reads every packet both ways (the stream
 * layer's framing, docs/PROTOCOL.md §8) and keeps those numbers:
 *
 *   pn       the next packet number the client will see from us
 *   streams  the first stream id the client has not used yet
 *   recv     session flow-control bytes received (the sum over streams of their highest offset,
 *            RFC 9000 §4.1), as the client counts what it sent
 *   sent     the same for what we sent, as the client counts what it received
 *   credit   the highest MAX_DATA the client gave us (how far `sent` may go)
 *   open     per stream still open: its id and both directions' highest offset
 *
 * After a restart a fresh Mux starts at zero, and the wrapper translates between its numbering
 * and the client's: our packet numbers are shifted up (and the client's ACK ranges down), stream
 * ids are shifted by `streams`, MAX_DATA values by `recv` (ours) and `sent` (the client's), and
 * MAX_STREAMS by `streams`. So the client's Mux sees one peer that never went away. The streams
 * that were open when the memory was lost cannot continue (their TCP connections to the target
 * died with it): each gets a RESET (code INTERNAL) whose final size is what we had sent on it,
 * in packets of the wrapper's own (packet numbers reserved between the old and the new range),
 * repeated until the client acknowledges one; the client's frames for those streams are counted
 * (flow control stays in step) and dropped, replaced by a PING so that their packets are still
 * acknowledged.
 *
 * The client's last MAX_DATA is handed to the fresh Mux with the first packet after the resume
 * (the client will not send it again). What the fresh Mux does not know costs a little, never
 * correctness: its RTT and congestion state start over (as after a path change, RFC 9000 §9.4),
 * its own receive window starts at the protocol's initial credit, so a client with more credit in
 * hand may see some packets dropped and resent once, and it grants new streams from the protocol's
 * initial limit.
 */
import {
  decodeMuxPacket,
  encodeMuxPacket,
  MUX_INITIAL_SESSION_CREDIT,
  type Mux,
  type MuxEvent,
  type MuxFrame,
  type MuxStats,
  StreamError,
  type StreamTarget,
} from '@roamlink/core';

/** What must be saved for a Mux to be resumed (all in the client's numbering). */
export interface MuxResumeState {
  v: 1;
  pn: number;
  streams: number;
  recv: number;
  sent: number;
  credit: number;
  /** Open streams: [id, highest offset sent, highest offset received]. */
  open: [number, number, number][];
  /** Streams reset by an earlier resume, not yet acknowledged: [id, final size, received]. */
  stale: [number, number, number][];
}

/** Packet numbers set aside at each resume for the wrapper's own RESET packets. */
export const RESUME_PN_RESERVE = 64;
/** How often an unacknowledged RESET packet goes again. */
const STALE_RETRY_MS = 500;

interface StreamBytes {
  sent: number;
  recv: number;
}

interface Stale {
  finalSize: number;
  recv: number;
}

export class ResumableMux {
  readonly mux: Mux;
  /** How many times this session's stream layer was resumed (0: the original). */
  readonly epoch: number;
  /** Resumed: packets are rewritten between the two numberings (else only read). */
  readonly #translating: boolean;
  readonly #pnOff: number;
  readonly #idOff: number;
  #inOff: number;
  readonly #outOff: number;
  #pnNext: number;
  #streamsNext: number;
  #recv: number;
  #sent: number;
  #credit: number;
  /** The client's credit, for the fresh Mux: rides in with the first packet after a resume. */
  #creditDue: number | undefined;
  readonly #open = new Map<number, StreamBytes>();
  readonly #stale = new Map<number, Stale>();
  /** Our own packets carrying RESETs for stale streams: the next number, and what is in flight. */
  #injectNext: number;
  readonly #injectEnd: number;
  readonly #injected = new Set<number>();
  #injectAt: number | undefined;

  constructor(mux: Mux, from?: MuxResumeState, epoch = 0) {
    this.mux = mux;
    if (from === undefined) {
      this.epoch = 0;
      this.#translating = false;
      this.#pnOff = 0;
      this.#idOff = 0;
      this.#inOff = 0;
      this.#outOff = 0;
      this.#injectNext = 0;
      this.#injectEnd = 0;
      this.#recv = 0;
      this.#sent = 0;
      this.#credit = MUX_INITIAL_SESSION_CREDIT;
      this.#creditDue = undefined;
      this.#streamsNext = 0;
      this.#pnNext = 0;
      return;
    }
    this.epoch = Math.max(1, epoch);
    this.#translating = true;
    this.#injectNext = from.pn;
    this.#injectEnd = from.pn + RESUME_PN_RESERVE;
    this.#pnOff = this.#injectEnd;
    this.#pnNext = this.#pnOff;
    this.#idOff = from.streams;
    this.#streamsNext = from.streams;
    this.#recv = from.recv;
    this.#sent = from.sent;
    this.#inOff = from.recv;
    this.#outOff = from.sent;
    this.#credit = from.credit;
    // The client will not repeat a MAX_DATA it already sent: the fresh Mux hears it from us.
    this.#creditDue = from.credit - from.sent;
    for (const [id, sent, recv] of from.open) this.#stale.set(id, { finalSize: sent, recv });
    for (const [id, finalSize, recv] of from.stale) this.#stale.set(id, { finalSize, recv });
    if (this.#stale.size > 0) this.#injectAt = 0;
  }

  /** The numbers to save now (cheap: no copy of buffered data). */
  state(): MuxResumeState {
    return {
      v: 1,
      // A resume reserves numbers above everything we may have sent, ours included.
      pn: Math.max(this.#pnNext, this.#injectEnd),
      streams: this.#streamsNext,
      recv: this.#recv,
      sent: this.#sent,
      credit: this.#credit,
      open: [...this.#open].map(([id, b]) => [id, b.sent, b.recv]),
      stale: [...this.#stale].map(([id, s]) => [id, s.finalSize, s.recv]),
    };
  }

  /** Streams reset by the resume whose RESET the client has not acknowledged yet. */
  get staleStreams(): number {
    return this.#stale.size;
  }

  isMuxFrame(payload: Uint8Array): boolean {
    return this.mux.isMuxFrame(payload);
  }

  receive(payload: Uint8Array, now: number): void {
    let pkt: ReturnType<typeof decodeMuxPacket>;
    try {
      pkt = decodeMuxPacket(payload);
    } catch {
      this.mux.receive(payload, now);
      return;
    }
    if (!this.#translating) {
      for (const f of pkt.frames) this.#trackIn(f);
      this.mux.receive(payload, now);
      return;
    }
    const out: MuxFrame[] = [];
    let eliciting = false;
    for (const f of pkt.frames) {
      if (f.type !== 'ack') eliciting = true;
      const g = this.#translateIn(f);
      if (g) out.push(g);
    }
    if (this.#creditDue !== undefined) {
      if (this.#creditDue > MUX_INITIAL_SESSION_CREDIT) {
        out.push({ type: 'max-data', max: this.#creditDue });
      }
      this.#creditDue = undefined;
    }
    // A packet whose frames all concerned stale streams is still acknowledged.
    if (out.length === 0 || (eliciting && !out.some((f) => f.type !== 'ack'))) {
      out.push({ type: 'ping' });
    }
    this.mux.receive(encodeMuxPacket(pkt.pn, out), now);
  }

  pollPacket(now: number): Uint8Array | undefined {
    const p = this.mux.pollPacket(now);
    if (p === undefined) return this.#inject(now);
    let pkt: ReturnType<typeof decodeMuxPacket>;
    try {
      pkt = decodeMuxPacket(p);
    } catch {
      return p;
    }
    const pn = pkt.pn + this.#pnOff;
    if (pn >= this.#pnNext) this.#pnNext = pn + 1;
    if (!this.#translating) {
      for (const f of pkt.frames) this.#trackOut(f);
      return p;
    }
    return encodeMuxPacket(
      pn,
      pkt.frames.map((f) => this.#translateOut(f)),
    );
  }

  nextTimeout(): number | undefined {
    const t = this.mux.nextTimeout();
    const i = this.#injectAt;
    if (i === undefined || this.#stale.size === 0 || this.#injectNext >= this.#injectEnd) return t;
    return t === undefined ? i : Math.min(t, i);
  }

  handleTimeout(now: number): void {
    this.mux.handleTimeout(now);
  }

  pollEvent(): MuxEvent | undefined {
    const e = this.mux.pollEvent();
    if (e?.type === 'stream-closed') this.#open.delete(e.id + this.#idOff);
    return e;
  }

  get stats(): MuxStats {
    return this.mux.stats;
  }

  write(id: number, data: Uint8Array): number {
    return this.mux.write(id, data);
  }

  end(id: number): void {
    this.mux.end(id);
  }

  reset(id: number, code: number): void {
    this.mux.reset(id, code);
  }

  consumed(id: number, bytes: number): void {
    this.mux.consumed(id, bytes);
  }

  accept(id: number): void {
    this.mux.accept(id);
  }

  refuse(id: number, code: number): void {
    this.mux.refuse(id, code);
  }

  sendDatagram(flow: number, target: StreamTarget, data: Uint8Array): boolean {
    return this.mux.sendDatagram(flow, target, data);
  }

  goAway(code: number): void {
    this.mux.goAway(code);
  }

  setMaxPayload(bytes: number): void {
    this.mux.setMaxPayload(bytes);
  }

  setPacing(on: boolean): void {
    this.mux.setPacing(on);
  }

  pathChanged(now: number, reason: string): void {
    this.mux.pathChanged(now, reason);
    // The RESETs of stale streams go again at once on the new path.
    if (this.#stale.size > 0) this.#injectAt = now;
  }

  // --- bookkeeping, in the client's numbering ----------------------------------------------------

  /** A stream id the client uses for the first time: every id up to it exists from now on. */
  #streamIn(id: number): StreamBytes | undefined {
    if (id >= this.#streamsNext) {
      for (let i = this.#streamsNext; i <= id; i++) this.#open.set(i, { sent: 0, recv: 0 });
      this.#streamsNext = id + 1;
    }
    return this.#open.get(id);
  }

  #countIn(b: { recv: number }, end: number): number {
    if (end <= b.recv) return 0;
    const grew = end - b.recv;
    b.recv = end;
    this.#recv += grew;
    return grew;
  }

  #countOut(b: StreamBytes | undefined, end: number): void {
    if (!b || end <= b.sent) return;
    this.#sent += end - b.sent;
    b.sent = end;
  }

  #trackIn(f: MuxFrame): void {
    if (f.type === 'stream') {
      const b = this.#streamIn(f.id);
      if (b) this.#countIn(b, f.offset + f.data.length);
    } else if (f.type === 'reset') {
      const b = this.#streamIn(f.id);
      if (b) this.#countIn(b, f.finalSize);
    } else if (f.type === 'max-data' && f.max > this.#credit) {
      this.#credit = f.max;
    }
  }

  #trackOut(f: MuxFrame): void {
    if (f.type === 'stream') this.#countOut(this.#open.get(f.id), f.offset + f.data.length);
    else if (f.type === 'reset') this.#countOut(this.#open.get(f.id), f.finalSize);
  }

  /** A client frame, in the fresh Mux's numbering; undefined: it concerns nothing it knows. */
  #translateIn(f: MuxFrame): MuxFrame | undefined {
    const idOff = this.#idOff;
    switch (f.type) {
      case 'ack': {
        const r = f.ranges;
        const out: number[] = [];
        for (let i = 0; i + 1 < r.length; i += 2) {
          const hi = r[i]!;
          const lo = r[i + 1]!;
          for (const pn of this.#injected) {
            if (pn >= lo && pn <= hi) {
              // One of our RESET packets arrived: every stale stream it carried is done.
              this.#stale.clear();
              this.#injected.clear();
              this.#injectAt = undefined;
              break;
            }
          }
          if (hi < this.#pnOff) continue;
          out.push(hi - this.#pnOff, Math.max(lo, this.#pnOff) - this.#pnOff);
        }
        if (out.length === 0) return undefined;
        return { type: 'ack', largest: out[0]!, delayUs: f.delayUs, ranges: out };
      }
      case 'stream':
      case 'reset': {
        const end = f.type === 'stream' ? f.offset + f.data.length : f.finalSize;
        if (f.id < idOff) {
          // A stream lost with the old memory: keep flow control in step, drop the frame.
          const s = this.#stale.get(f.id);
          if (s) this.#inOff += this.#countIn(s, end);
          return undefined;
        }
        const b = this.#streamIn(f.id);
        if (b) this.#countIn(b, end);
        return { ...f, id: f.id - idOff };
      }
      case 'accept':
      case 'refuse':
      case 'max-stream-data':
        return f.id < idOff ? undefined : { ...f, id: f.id - idOff };
      case 'max-data': {
        if (f.max > this.#credit) this.#credit = f.max;
        const max = f.max - this.#outOff;
        return max > 0 ? { type: 'max-data', max } : undefined;
      }
      default:
        return f;
    }
  }

  /** One of the fresh Mux's frames, in the client's numbering. */
  #translateOut(f: MuxFrame): MuxFrame {
    const idOff = this.#idOff;
    switch (f.type) {
      case 'stream': {
        const id = f.id + idOff;
        this.#countOut(this.#open.get(id), f.offset + f.data.length);
        return { ...f, id };
      }
      case 'reset': {
        const id = f.id + idOff;
        this.#countOut(this.#open.get(id), f.finalSize);
        return { ...f, id };
      }
      case 'accept':
      case 'refuse':
      case 'max-stream-data':
        return { ...f, id: f.id + idOff };
      case 'max-data':
        return { type: 'max-data', max: f.max + this.#inOff };
      case 'max-streams':
        return { type: 'max-streams', count: f.count + idOff };
      default:
        return f;
    }
  }

  /** Our own packet: the RESETs of the stale streams, when due. */
  #inject(now: number): Uint8Array | undefined {
    const at = this.#injectAt;
    if (at === undefined || now < at || this.#stale.size === 0) return undefined;
    if (this.#injectNext >= this.#injectEnd) return undefined;
    const frames: MuxFrame[] = [];
    for (const [id, s] of this.#stale) {
      frames.push({ type: 'reset', id, code: StreamError.INTERNAL, finalSize: s.finalSize });
    }
    const pn = this.#injectNext++;
    this.#injected.add(pn);
    this.#injectAt = now + STALE_RETRY_MS;
    return encodeMuxPacket(pn, frames);
  }
}
