/**
 * A simplified but honest TCP (RFC 9293), enough for TCP and HTTP encapsulations to pay their
 * real costs in a simulation:
 * - three-way handshake with an MSS option (one round trip before data can flow);
 * - a byte stream cut into segments of at most MSS (from the interface MTU and the peer's MSS,
 *   lowered by ICMP "fragmentation needed", RFC 1191), cumulative ACKs, in-order delivery with an
 *   out-of-order buffer (so head-of-line blocking is real);
 * - retransmission timeout from RTT samples per RFC 6298 (Karn's rule, exponential backoff);
 * - Reno/NewReno congestion control: initial window 10 segments (RFC 6928), slow start and
 *   congestion avoidance, fast retransmit and recovery on three duplicate ACKs (RFC 5681, 6582);
 * - FIN (half-close) and RST, TIME_WAIT, and death with ETIMEDOUT when nothing is acknowledged
 *   for `userTimeout` ms (RFC 5482) or the handshake does not finish in `connectTimeout` ms.
 * Left out: SACK, delayed ACKs, Nagle, window scaling limits, zero-window probing (receivers here
 * consume at once), keepalives, simultaneous open, sequence wrap-around (numbers never wrap).
 */
import { type Endpoint, formatEndpoint } from './address.ts';
import { NetError, type NetErrorCode } from './errors.ts';
import type { Host } from './host.ts';
import {
  IcmpCode,
  type IcmpPacket,
  IPV4_HEADER,
  TCP_HEADER,
  TcpFlag,
  type TcpHeader,
  type TcpPacket,
  tcpPacket,
} from './packet.ts';
import type { Timer } from './scheduler.ts';

export interface TcpOptions {
  /** Largest segment payload to send and advertise (default interface MTU - 40). */
  readonly mss?: number;
  /** Receive window advertised, bytes (default 262 144). */
  readonly rcvWindow?: number;
  /** Initial congestion window in segments (default 10, RFC 6928). */
  readonly initialCwnd?: number;
  /** "reno" (default, with NewReno recovery) or "none": send whatever the peer's window allows. */
  readonly congestionControl?: 'reno' | 'none';
  /** RTO before any RTT sample, ms (default 1000, RFC 6298 §2.1). */
  readonly initialRto?: number;
  /** Lower bound of the RTO, ms (default 200, as Linux; RFC 6298 suggests 1000). */
  readonly minRto?: number;
  /** Upper bound of the RTO, ms (default 60 000, RFC 6298 §2.5). */
  readonly maxRto?: number;
  /** Give up (ETIMEDOUT) when outstanding data sees no ACK for this long, ms (default 100 000). */
  readonly userTimeout?: number;
  /** Give up on a handshake after this long, ms (default 127 000: Linux's six SYN retries). */
  readonly connectTimeout?: number;
  /** TIME_WAIT duration, ms (default 60 000, as Linux). */
  readonly timeWait?: number;
}

export type TcpState =
  | 'CLOSED'
  | 'SYN_SENT'
  | 'SYN_RCVD'
  | 'ESTABLISHED'
  | 'FIN_WAIT_1'
  | 'FIN_WAIT_2'
  | 'CLOSE_WAIT'
  | 'CLOSING'
  | 'LAST_ACK'
  | 'TIME_WAIT';

export interface TcpStats {
  /** Application bytes handed to write(). */
  bytesWritten: number;
  /** Payload bytes put on the wire, retransmissions included. */
  bytesSent: number;
  /** Application bytes the peer acknowledged. */
  bytesAcked: number;
  /** Application bytes delivered in order to onData. */
  bytesReceived: number;
  segmentsSent: number;
  segmentsReceived: number;
  /** Segments sent again (after a timeout, fast retransmit or PMTU change). */
  retransmits: number;
  timeouts: number;
  fastRetransmits: number;
}

const RECEIVING_STATES: ReadonlySet<TcpState> = new Set([
  'ESTABLISHED',
  'FIN_WAIT_1',
  'FIN_WAIT_2',
]);

export class TcpListener {
  readonly host: Host;
  readonly port: number;
  readonly addr: string | undefined;
  readonly opts: TcpOptions;
  onConnection: (c: TcpConnection) => void;
  #closed = false;

  constructor(
    host: Host,
    port: number,
    addr: string | undefined,
    onConnection: (c: TcpConnection) => void,
    opts: TcpOptions,
  ) {
    this.host = host;
    this.port = port;
    this.addr = addr;
    this.onConnection = onConnection;
    this.opts = opts;
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** Stops accepting; connections already made are not affected. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.host.closeListener(this);
  }
}

export class TcpConnection {
  readonly host: Host;
  readonly local: Endpoint;
  readonly remote: Endpoint;
  readonly key: string;
  readonly stats: TcpStats = {
    bytesWritten: 0,
    bytesSent: 0,
    bytesAcked: 0,
    bytesReceived: 0,
    segmentsSent: 0,
    segmentsReceived: 0,
    retransmits: 0,
    timeouts: 0,
    fastRetransmits: 0,
  };
  /** The handshake completed (client side; servers get the connection from the listener). */
  onOpen: (() => void) | undefined;
  /** In-order bytes from the peer. */
  onData: ((data: Uint8Array) => void) | undefined;
  /** The peer sent FIN: no more data will come (the connection may still send). */
  onEnd: (() => void) | undefined;
  /** The connection closed cleanly. Exactly one of onClose and onError ends a connection. */
  onClose: (() => void) | undefined;
  /** The connection failed (refused, reset, timed out, aborted). */
  onError: ((e: NetError) => void) | undefined;

  #state: TcpState = 'CLOSED';
  readonly #opts: TcpOptions;
  readonly #listener: TcpListener | undefined;
  readonly #ifaceMtu: number;
  #finished = false;
  // Send side. Sequence numbers are plain integers; data byte i is at iss + 1 + i.
  #iss = 0;
  #sndUna = 0;
  #sndNxt = 0;
  #sndMax = 0;
  #sndWnd = 65_535;
  #dataEnd = 0;
  readonly #chunks: Uint8Array[] = [];
  #chunksBase = 0;
  #finQueued = false;
  // Receive side.
  #rcvNxt = 0;
  readonly #ooo = new Map<number, Uint8Array>();
  #peerFinSeq: number | undefined;
  #peerFinDone = false;
  // Congestion control (RFC 5681, RFC 6582).
  #mss: number;
  #cwnd = 0;
  #ssthresh = Number.POSITIVE_INFINITY;
  #dupAcks = 0;
  #inRecovery = false;
  #recover = 0;
  // Retransmission timer (RFC 6298).
  #srtt: number | undefined;
  #rttvar = 0;
  #rto: number;
  #timer: Timer | undefined;
  #timing: { end: number; at: number } | undefined;
  #openedAt = 0;
  #lastProgress = 0;
  #softError: NetErrorCode | undefined;
  #synsSent = 0;

  constructor(
    host: Host,
    local: Endpoint,
    remote: Endpoint,
    opts: TcpOptions,
    ifaceMtu: number,
    listener?: TcpListener,
  ) {
    this.host = host;
    this.local = local;
    this.remote = remote;
    this.key = `${formatEndpoint(local)}>${formatEndpoint(remote)}`;
    this.#opts = opts;
    this.#listener = listener;
    this.#ifaceMtu = ifaceMtu;
    this.#mss = this.#ownMss();
    this.#rto = opts.initialRto ?? 1000;
  }

  get state(): TcpState {
    return this.#state;
  }
  /** Smoothed RTT in ms, once measured. */
  get srtt(): number | undefined {
    return this.#srtt;
  }
  get rto(): number {
    return this.#rto;
  }
  get cwnd(): number {
    return this.#cwnd;
  }
  get mss(): number {
    return this.#mss;
  }
  /** Whether write() may still be called (not closed for sending, not failed). */
  get writable(): boolean {
    return !this.#finQueued && !this.#finished;
  }

  /** Bytes written but not yet acknowledged by the peer. */
  get bufferedAmount(): number {
    return Math.max(0, this.#dataEnd - Math.max(this.#sndUna, this.#iss + 1));
  }

  /** Queues bytes for sending. Returns false if the connection is already gone. */
  write(data: Uint8Array): boolean {
    if (this.#finQueued) throw new TypeError('write after close()');
    if (this.#finished) return false;
    if (data.length === 0) return true;
    this.#chunks.push(data.slice());
    this.#dataEnd += data.length;
    this.stats.bytesWritten += data.length;
    if (this.#synchronized()) this.#pump();
    return true;
  }

  /** Graceful close: FIN after all written data. onClose follows when both sides are done. */
  close(): void {
    if (this.#finished || this.#finQueued) return;
    switch (this.#state) {
      case 'SYN_SENT':
      case 'SYN_RCVD':
      case 'CLOSED': {
        this.#terminate(true);
        return;
      }
      case 'ESTABLISHED':
        this.#setState('FIN_WAIT_1');
        break;
      case 'CLOSE_WAIT':
        this.#setState('LAST_ACK');
        break;
      default:
        return;
    }
    this.#finQueued = true;
    this.#pump();
  }

  /** Hard close: sends RST, fires no callback. */
  abort(): void {
    if (this.#finished) return;
    if (this.#state !== 'CLOSED' && this.#state !== 'SYN_SENT' && this.#state !== 'TIME_WAIT') {
      this.#emit(this.#sndNxt, TcpFlag.RST | TcpFlag.ACK);
    }
    this.#finished = true;
    this.#cleanup();
  }

  /** @internal Client side: send the SYN. */
  open(): void {
    this.#openedAt = this.host.now;
    this.#initSend();
    this.#setState('SYN_SENT');
    this.#sendSyn();
  }

  /** @internal Server side: a SYN arrived for our listener. */
  accept(syn: TcpPacket): void {
    this.#openedAt = this.host.now;
    this.#rcvNxt = syn.tcp.seq + 1;
    this.#peerMss(syn.tcp);
    this.#sndWnd = syn.tcp.wnd;
    this.#initSend();
    this.#setState('SYN_RCVD');
    this.#sendSyn();
  }

  /** @internal Ends the connection with an error event. */
  fail(code: NetErrorCode, message?: string): void {
    if (this.#finished) return;
    this.#finished = true;
    this.host.traceSocket('tcp', this.key, code, message);
    this.#cleanup();
    const e = new NetError(code, message ?? this.key);
    this.host.net.after(0, () => this.onError?.(e));
  }

  /** @internal An ICMP error quoting one of our segments. */
  icmp(pkt: IcmpPacket): void {
    if (this.#finished) return;
    const { code, mtu } = pkt.icmp;
    if (code === IcmpCode.FRAGMENTATION_NEEDED && mtu !== undefined) {
      const m = Math.max(mtu - IPV4_HEADER - TCP_HEADER, 68);
      if (m < this.#mss) {
        this.#mss = m;
        // RFC 1191 §6.5: resend what was lost at the smaller size, without a congestion signal.
        if (this.#synchronized()) {
          this.#sndNxt = this.#sndUna;
          this.#pump(true);
        }
      }
      return;
    }
    const err: NetErrorCode = code === IcmpCode.PORT_UNREACHABLE ? 'ECONNREFUSED' : 'EHOSTUNREACH';
    // RFC 1122 §4.2.3.9: hard errors abort a connection still opening; otherwise remember them.
    if (this.#state === 'SYN_SENT') this.fail(err, `icmp code ${code}`);
    else this.#softError = err;
  }

  /** @internal A segment for this connection arrived. */
  segment(seg: TcpPacket): void {
    if (this.#finished && this.#state !== 'TIME_WAIT') return;
    this.stats.segmentsReceived++;
    const h = seg.tcp;
    const f = h.flags;
    if (this.#state === 'TIME_WAIT') {
      // Only re-acknowledge a retransmitted FIN (our last ACK was lost).
      if (f & TcpFlag.RST) this.#cleanup();
      else if (f & TcpFlag.FIN) this.#sendAck();
      return;
    }
    if (this.#state === 'SYN_SENT') {
      this.#inSynSent(seg);
      return;
    }
    if (this.#state === 'SYN_RCVD') {
      if (f & TcpFlag.RST) {
        this.#terminate(undefined);
        return;
      }
      if (f & TcpFlag.SYN) {
        this.#sendSyn();
        return;
      }
      if (!(f & TcpFlag.ACK) || h.ack !== this.#iss + 1) return;
      this.#sndUna = this.#iss + 1;
      this.#sndWnd = h.wnd;
      this.#sample(h.ack);
      this.#lastProgress = this.host.now;
      this.#stopTimer();
      this.#setState('ESTABLISHED');
      this.#listener?.onConnection(this);
      if (this.#finished) return;
    }
    if (f & TcpFlag.RST) {
      // RFC 9293 §3.10.7.4 (simplified): a reset in the window kills the connection.
      if (h.seq >= this.#rcvNxt && h.seq <= this.#rcvNxt + this.#rcvWindow()) {
        this.fail('ECONNRESET', 'reset by peer');
      }
      return;
    }
    if (f & TcpFlag.SYN) {
      this.#sendAck();
      return;
    } // our ACK of their SYN-ACK was lost
    if (f & TcpFlag.ACK) this.#onAck(seg);
    if (this.#finished) return;
    this.#onPayload(seg);
  }

  // ---- handshake ----

  #initSend(): void {
    this.#iss = this.host.rng.int(0, 0x7fff_ffff);
    this.#sndUna = this.#iss;
    this.#sndNxt = this.#iss + 1;
    this.#sndMax = this.#iss + 1;
    this.#dataEnd = this.#iss + 1 + this.stats.bytesWritten;
    this.#chunksBase = this.#iss + 1;
    this.#lastProgress = this.host.now;
  }

  #sendSyn(): void {
    const client = this.#state === 'SYN_SENT';
    const flags = client ? TcpFlag.SYN : TcpFlag.SYN | TcpFlag.ACK;
    const first = this.#synsSent++ === 0;
    this.#emit(this.#iss, flags, undefined, this.#ownMss());
    // Karn's rule: a retransmitted SYN gives no RTT sample.
    this.#timing = first ? { end: this.#iss + 1, at: this.host.now } : undefined;
    this.#armTimer();
  }

  #inSynSent(seg: TcpPacket): void {
    const h = seg.tcp;
    const f = h.flags;
    if (f & TcpFlag.ACK && h.ack !== this.#iss + 1) {
      if (!(f & TcpFlag.RST)) this.#emitRaw(h.ack, 0, TcpFlag.RST);
      return;
    }
    if (f & TcpFlag.RST) {
      if (f & TcpFlag.ACK) this.fail('ECONNREFUSED', 'reset in answer to SYN');
      return;
    }
    if (!(f & TcpFlag.SYN) || !(f & TcpFlag.ACK)) return; // simultaneous open is not modelled
    this.#rcvNxt = h.seq + 1;
    this.#peerMss(h);
    this.#sndUna = this.#iss + 1;
    this.#sndWnd = h.wnd;
    this.#sample(h.ack);
    this.#lastProgress = this.host.now;
    this.#stopTimer();
    this.#setState('ESTABLISHED');
    // Data written before the handshake finished leaves with (and acknowledges) the SYN-ACK.
    if (!this.#pump()) this.#sendAck();
    this.onOpen?.();
  }

  #ownMss(): number {
    return this.#opts.mss ?? this.#ifaceMtu - IPV4_HEADER - TCP_HEADER;
  }

  #peerMss(h: TcpHeader): void {
    // RFC 9293 §3.7.1: without the option, assume 536.
    this.#mss = Math.min(this.#ownMss(), h.mss ?? 536);
    this.#cwnd =
      this.#opts.congestionControl === 'none'
        ? Number.POSITIVE_INFINITY
        : (this.#opts.initialCwnd ?? 10) * this.#mss;
  }

  // ---- sending ----

  #synchronized(): boolean {
    const s = this.#state;
    return s !== 'CLOSED' && s !== 'SYN_SENT' && s !== 'SYN_RCVD';
  }

  /** Sends what the windows allow. Returns whether any segment left. */
  #pump(retransmitting = false): boolean {
    if (this.#finished) return false;
    let sent = false;
    const wnd = Math.min(this.#cwnd, this.#sndWnd);
    for (;;) {
      const flight = this.#sndNxt - this.#sndUna;
      if (this.#sndNxt < this.#dataEnd) {
        const remaining = this.#dataEnd - this.#sndNxt;
        const want = Math.min(this.#mss, remaining);
        const room = wnd - flight;
        // Sender silly-window avoidance (RFC 9293 §3.8.6.2.1): no runt segments mid-flight.
        if (room < want && (flight > 0 || room <= 0)) break;
        const len = Math.min(want, room);
        if (this.#sndUna === this.#sndMax) this.#lastProgress = this.host.now;
        const seq = this.#sndNxt;
        const isNew = seq >= this.#sndMax;
        if (!isNew) this.stats.retransmits++;
        const last = seq + len === this.#dataEnd;
        this.#emit(seq, TcpFlag.ACK | (last ? TcpFlag.PSH : 0), this.#slice(seq, len));
        if (isNew && this.#timing === undefined && !retransmitting) {
          this.#timing = { end: seq + len, at: this.host.now };
        }
        this.#sndNxt += len;
        sent = true;
      } else if (this.#finQueued && this.#sndNxt === this.#dataEnd) {
        if (this.#sndNxt < this.#sndMax) this.stats.retransmits++;
        if (this.#sndUna === this.#sndMax) this.#lastProgress = this.host.now;
        this.#emit(this.#dataEnd, TcpFlag.FIN | TcpFlag.ACK);
        this.#sndNxt = this.#dataEnd + 1;
        sent = true;
        break;
      } else break;
    }
    if (this.#sndNxt > this.#sndMax) this.#sndMax = this.#sndNxt;
    if (this.#sndMax > this.#sndUna && this.#timer === undefined) this.#armTimer();
    return sent;
  }

  /** Resends the first unacknowledged segment (fast retransmit, partial ACK). */
  #resendHead(): void {
    const seq = this.#sndUna;
    this.stats.retransmits++;
    this.#timing = undefined;
    if (seq < this.#dataEnd) {
      const len = Math.min(this.#mss, this.#dataEnd - seq);
      this.#emit(seq, TcpFlag.ACK, this.#slice(seq, len));
    } else if (this.#finQueued) this.#emit(this.#dataEnd, TcpFlag.FIN | TcpFlag.ACK);
  }

  #slice(seq: number, len: number): Uint8Array {
    let off = seq - this.#chunksBase;
    for (let i = 0; i < this.#chunks.length; i++) {
      const c = this.#chunks[i]!;
      if (off < c.length) {
        if (off + len <= c.length) return c.subarray(off, off + len);
        const out = new Uint8Array(len);
        let n = 0;
        for (let j = i; n < len; j++) {
          const part = this.#chunks[j]!.subarray(j === i ? off : 0);
          const take = Math.min(part.length, len - n);
          out.set(part.subarray(0, take), n);
          n += take;
        }
        return out;
      }
      off -= c.length;
    }
    throw new RangeError('tcp: slice beyond the send buffer');
  }

  #sendAck(): void {
    this.#emit(this.#sndNxt, TcpFlag.ACK);
  }

  #emit(seq: number, flags: number, payload?: Uint8Array, mss?: number): void {
    const ack = flags & TcpFlag.ACK ? this.#rcvNxt : 0;
    this.#emitRaw(seq, ack, flags, payload, mss);
  }

  #emitRaw(seq: number, ack: number, flags: number, payload?: Uint8Array, mss?: number): void {
    const h: TcpHeader =
      mss === undefined
        ? { seq, ack, flags, wnd: this.#rcvWindow() }
        : { seq, ack, flags, wnd: this.#rcvWindow(), mss };
    this.stats.segmentsSent++;
    if (payload !== undefined) this.stats.bytesSent += payload.length;
    const err = this.host.transmit(tcpPacket(this.local, this.remote, h, payload));
    // A failed send is a lost segment to TCP; the error is reported if the connection dies.
    if (err !== undefined)
      this.#softError = err === 'EADDRNOTAVAIL' ? 'EHOSTUNREACH' : 'ENETUNREACH';
  }

  #rcvWindow(): number {
    return this.#opts.rcvWindow ?? 262_144;
  }

  // ---- acknowledgements and congestion control ----

  #onAck(seg: TcpPacket): void {
    const h = seg.tcp;
    const ack = h.ack;
    if (ack > this.#sndMax) {
      this.#sendAck();
      return;
    } // acknowledges what we never sent
    this.#sndWnd = h.wnd;
    const reno = this.#opts.congestionControl !== 'none';
    if (ack > this.#sndUna) {
      const acked = ack - this.#sndUna;
      const dataAcked = Math.min(ack, this.#dataEnd) - Math.min(this.#sndUna, this.#dataEnd);
      this.stats.bytesAcked += Math.max(0, dataAcked);
      this.#sndUna = ack;
      if (this.#sndNxt < ack) this.#sndNxt = ack;
      this.#dropAcked();
      this.#sample(ack);
      this.#lastProgress = this.host.now;
      this.#softError = undefined;
      this.#rto = this.#computedRto();
      if (reno) {
        if (this.#inRecovery) {
          if (ack >= this.#recover) {
            this.#inRecovery = false;
            this.#cwnd = Math.min(this.#ssthresh, this.#sndMax - ack + this.#mss);
          } else {
            // RFC 6582 §3.2: a partial ACK means the next hole is lost too.
            this.#resendHead();
            this.#cwnd = Math.max(this.#cwnd - acked + this.#mss, this.#mss);
          }
        } else if (this.#cwnd < this.#ssthresh) this.#cwnd += Math.min(acked, this.#mss);
        else this.#cwnd += (this.#mss * this.#mss) / this.#cwnd;
      }
      this.#dupAcks = 0;
      this.#stopTimer();
      if (this.#sndMax > this.#sndUna) this.#armTimer();
      if (this.#finQueued && ack > this.#dataEnd) this.#ourFinAcked();
    } else if (
      ack === this.#sndUna &&
      seg.payload.length === 0 &&
      !(h.flags & (TcpFlag.SYN | TcpFlag.FIN)) &&
      this.#sndMax > this.#sndUna
    ) {
      this.#dupAcks++;
      if (this.#dupAcks === 3 && !this.#inRecovery) {
        // RFC 5681 §3.2 fast retransmit, entering NewReno recovery.
        this.stats.fastRetransmits++;
        const flight = this.#sndMax - this.#sndUna;
        this.#ssthresh = Math.max(flight / 2, 2 * this.#mss);
        this.#resendHead();
        if (reno) this.#cwnd = this.#ssthresh + 3 * this.#mss;
        this.#inRecovery = true;
        this.#recover = this.#sndMax;
      } else if (this.#dupAcks > 3 && this.#inRecovery && reno) this.#cwnd += this.#mss;
    }
    if (!this.#finished) this.#pump();
  }

  #dropAcked(): void {
    while (this.#chunks.length > 0) {
      const c = this.#chunks[0]!;
      if (this.#chunksBase + c.length > this.#sndUna) break;
      this.#chunksBase += c.length;
      this.#chunks.shift();
    }
  }

  /** RFC 6298 §2 and Karn's rule: only segments sent once give samples. */
  #sample(ack: number): void {
    const t = this.#timing;
    if (t === undefined || ack < t.end) return;
    this.#timing = undefined;
    const r = this.host.now - t.at;
    if (this.#srtt === undefined) {
      this.#srtt = r;
      this.#rttvar = r / 2;
    } else {
      this.#rttvar = 0.75 * this.#rttvar + 0.25 * Math.abs(this.#srtt - r);
      this.#srtt = 0.875 * this.#srtt + 0.125 * r;
    }
    this.#rto = this.#computedRto();
  }

  #computedRto(): number {
    if (this.#srtt === undefined) return this.#opts.initialRto ?? 1000;
    const raw = this.#srtt + Math.max(1, 4 * this.#rttvar);
    return Math.min(Math.max(raw, this.#opts.minRto ?? 200), this.#opts.maxRto ?? 60_000);
  }

  #deadline(): number {
    if (this.#state === 'SYN_SENT' || this.#state === 'SYN_RCVD') {
      return this.#openedAt + (this.#opts.connectTimeout ?? 127_000);
    }
    return this.#lastProgress + (this.#opts.userTimeout ?? 100_000);
  }

  #armTimer(): void {
    this.#timer?.cancel();
    const s = this.host.net.scheduler;
    const at = Math.max(s.now, Math.min(s.now + this.#rto, this.#deadline()));
    this.#timer = s.at(at, () => this.#onTimeout());
  }

  #stopTimer(): void {
    this.#timer?.cancel();
    this.#timer = undefined;
  }

  #onTimeout(): void {
    this.#timer = undefined;
    if (this.#finished) return;
    const opening = this.#state === 'SYN_SENT' || this.#state === 'SYN_RCVD';
    if (!opening && this.#sndMax <= this.#sndUna) return;
    if (this.host.now >= this.#deadline()) {
      // A half-open server connection dies quietly: its listener never saw it.
      if (this.#state === 'SYN_RCVD') {
        this.#terminate(undefined);
        return;
      }
      this.fail(this.#softError ?? 'ETIMEDOUT', 'no acknowledgement');
      return;
    }
    this.stats.timeouts++;
    this.#rto = Math.min(this.#rto * 2, this.#opts.maxRto ?? 60_000);
    if (opening) {
      this.#sendSyn();
      return;
    }
    // RFC 5681 §3.1: after a timeout, one segment and slow start from the first hole.
    this.#ssthresh = Math.max((this.#sndMax - this.#sndUna) / 2, 2 * this.#mss);
    if (this.#opts.congestionControl !== 'none') this.#cwnd = this.#mss;
    this.#inRecovery = false;
    this.#dupAcks = 0;
    this.#recover = this.#sndMax;
    this.#timing = undefined;
    this.#sndNxt = this.#sndUna;
    this.#pump(true);
    if (this.#timer === undefined) this.#armTimer();
  }

  // ---- receiving ----

  #onPayload(seg: TcpPacket): void {
    const h = seg.tcp;
    let data = seg.payload;
    let seq = h.seq;
    let needAck = false;
    const delivered: Uint8Array[] = [];
    if (data.length > 0) {
      needAck = true;
      if (RECEIVING_STATES.has(this.#state)) {
        if (seq < this.#rcvNxt) {
          const trim = this.#rcvNxt - seq;
          data = trim >= data.length ? data.subarray(data.length) : data.subarray(trim);
          seq = this.#rcvNxt;
        }
        if (data.length > 0) {
          if (seq === this.#rcvNxt) {
            delivered.push(data);
            this.#rcvNxt += data.length;
            this.#drainOoo(delivered);
          } else if (seq < this.#rcvNxt + this.#rcvWindow()) {
            const prev = this.#ooo.get(seq);
            if (prev === undefined || prev.length < data.length) this.#ooo.set(seq, data);
          }
        }
      }
    }
    let ended = false;
    if (h.flags & TcpFlag.FIN) {
      needAck = true;
      this.#peerFinSeq = h.seq + seg.payload.length;
    }
    if (!this.#peerFinDone && this.#peerFinSeq !== undefined && this.#rcvNxt === this.#peerFinSeq) {
      this.#peerFinDone = true;
      this.#rcvNxt++;
      ended = true;
    }
    if (needAck) this.#sendAck();
    for (const d of delivered) {
      this.stats.bytesReceived += d.length;
      if (this.#finished) return;
      this.onData?.(d);
    }
    if (!ended || this.#finished) return;
    switch (this.#state) {
      case 'ESTABLISHED':
        this.#setState('CLOSE_WAIT');
        break;
      case 'FIN_WAIT_1':
        this.#setState('CLOSING');
        break;
      case 'FIN_WAIT_2':
        this.#enterTimeWait();
        break;
      default:
        return;
    }
    this.onEnd?.();
  }

  #drainOoo(delivered: Uint8Array[]): void {
    let progress = true;
    while (progress && this.#ooo.size > 0) {
      progress = false;
      for (const [s, d] of this.#ooo) {
        if (s > this.#rcvNxt) continue;
        this.#ooo.delete(s);
        if (s + d.length > this.#rcvNxt) {
          const tail = d.subarray(this.#rcvNxt - s);
          delivered.push(tail);
          this.#rcvNxt += tail.length;
          progress = true;
        }
      }
    }
  }

  // ---- closing ----

  #ourFinAcked(): void {
    switch (this.#state) {
      case 'FIN_WAIT_1':
        this.#setState('FIN_WAIT_2');
        return;
      case 'CLOSING': {
        this.#enterTimeWait();
        return;
      }
      case 'LAST_ACK': {
        this.#terminate(true);
        return;
      }
      default:
        return;
    }
  }

  #enterTimeWait(): void {
    this.#setState('TIME_WAIT');
    this.#stopTimer();
    this.#finished = true;
    this.host.net.after(0, () => this.onClose?.());
    this.host.net.after(this.#opts.timeWait ?? 60_000, () => this.#cleanup());
  }

  /** Ends the connection; `clean` fires onClose. */
  #terminate(clean: true | undefined): void {
    if (this.#finished && this.#state !== 'TIME_WAIT') return;
    this.#finished = true;
    this.#cleanup();
    if (clean) this.host.net.after(0, () => this.onClose?.());
  }

  #cleanup(): void {
    this.#stopTimer();
    if (this.#state !== 'CLOSED') this.#setState('CLOSED');
    this.host.forget(this);
  }

  #setState(s: TcpState): void {
    this.#state = s;
    this.host.traceSocket('tcp', this.key, s);
  }
}
