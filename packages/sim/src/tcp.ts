/**
 * ESP in TCP as RFC 8229 frames it: the client opens the stream with a 6-byte preface that names
 * the protocol (RFC 8229 §3 uses "IKETCP"; roamlink uses "RLNK/1", bytes 52 4c 4e 4b 2f 31), then
 * both sides send length-prefixed records (framing.ts), one datagram each. The relay closes a
 * connection whose preface is wrong, or whose framing breaks, without answering.
 *
 * The client writes the preface and any datagrams at once: they leave with the ACK that completes
 * the handshake, so the first datagram arrives after 1.5 round trips.
 */
/** "RLNK/1": identifies a roamlink TCP stream (RFC 8229 §3's "IKETCP" plays the same role). */
import { Encapsulation, type PathInfo, TCP_PREFACE } from '@roamlink/core';
import type { Host, TcpConnection, TcpListener } from '@roamlink/netsim';
import { EMPTY_RECORD, encodeRecord, RecordReader } from './framing.ts';
import {
  ClientPathBase,
  type ClientPathOptions,
  MAX_DATAGRAM_BYTES,
  netErrorReason,
  nextPathId,
  PathError,
  RELAY_PORTS,
  type SimRelayStats,
} from './types.ts';

export { TCP_PREFACE };

export class TcpClientPath extends ClientPathBase {
  readonly conn: TcpConnection;
  readonly #reader = new RecordReader();

  constructor(host: Host, opts: ClientPathOptions) {
    super(host, nextPathId(host, 'tcp'), opts);
    const o: Parameters<Host['connect']>[1] = { ...opts.tcp };
    if (opts.iface !== undefined) o.iface = opts.iface;
    if (opts.localAddr !== undefined) o.addr = opts.localAddr;
    this.conn = host.connect(
      { addr: opts.relay.addr, port: opts.relay.tcpPort ?? RELAY_PORTS.tcp },
      o,
    );
    this.conn.write(TCP_PREFACE);
    this.#reader.onRecord = (d) => {
      if (d.length > 0) this.delivered(d);
    };
    this.conn.onOpen = () => this.opened();
    this.conn.onData = (d) => {
      if (!this.#reader.push(d)) this.fail(`${PathError.PROTOCOL}: bad record length`);
    };
    this.conn.onEnd = () => this.fail(`${PathError.CLOSED}: relay closed the connection`);
    this.conn.onClose = () => this.fail(PathError.CLOSED);
    this.conn.onError = (e) => this.fail(netErrorReason(e));
  }

  get info(): PathInfo {
    const c = this.conn;
    return {
      encapsulation: Encapsulation.TCP,
      view: {
        srcAddr: c.local.addr,
        srcPort: c.local.port,
        dstAddr: c.remote.addr,
        dstPort: c.remote.port,
      },
    };
  }

  /** Heartbeat: an empty record (the relay ignores it); keeps NAT and proxy state warm. */
  sendEmptyRecord(): boolean {
    if (this.isDone || !this.conn.writable) return false;
    return this.conn.write(EMPTY_RECORD);
  }

  protected override sendsBeforeOpen(): boolean {
    // TCP holds written bytes until the handshake is done: it is the queue.
    return true;
  }

  protected transmit(datagram: Uint8Array): boolean {
    const c = this.conn;
    if (!c.writable || c.bufferedAmount + datagram.length > this.maxQueuedBytes) return false;
    return c.write(encodeRecord(datagram));
  }

  protected shutdown(): void {
    const c = this.conn;
    c.onOpen = undefined;
    c.onData = undefined;
    c.onEnd = undefined;
    c.onClose = undefined;
    c.onError = undefined;
    c.close();
  }
}

/** The relay half: accepts connections, checks the preface, reads records. Ids "tcp:<n>". */
export class TcpRelay {
  readonly listener: TcpListener;
  onDatagram: (datagram: Uint8Array, pathId: string, info: PathInfo) => void = () => {};
  onPathClose: (pathId: string, reason: string) => void = () => {};
  readonly #stats: SimRelayStats;
  readonly #conns = new Map<string, TcpConnection>();
  readonly #maxBuffered: number;
  #n = 0;

  constructor(
    host: Host,
    port: number,
    stats: SimRelayStats,
    opts: { addr?: string; maxBufferedBytes: number },
  ) {
    this.#stats = stats;
    this.#maxBuffered = opts.maxBufferedBytes;
    this.listener = host.listen(
      port,
      (c) => this.#accept(c),
      opts.addr === undefined ? {} : { addr: opts.addr },
    );
  }

  #accept(conn: TcpConnection): void {
    const id = `tcp:${++this.#n}`;
    const stats = this.#stats;
    const info: PathInfo = {
      encapsulation: Encapsulation.TCP,
      view: {
        srcAddr: conn.remote.addr,
        srcPort: conn.remote.port,
        dstAddr: conn.local.addr,
        dstPort: conn.local.port,
      },
    };
    let seen = 0;
    let announced = false;
    const reader = new RecordReader();
    reader.onRecord = (d) => {
      if (d.length === 0) return; // heartbeat
      stats.datagramsReceived++;
      this.onDatagram(d, id, info);
    };
    const reject = () => {
      stats.tcpRejected++;
      conn.onData = undefined;
      this.#drop(id, `${PathError.PROTOCOL}: rejected`, announced);
      conn.close();
    };
    conn.onData = (d) => {
      let rest = d;
      if (seen < TCP_PREFACE.length) {
        const n = Math.min(TCP_PREFACE.length - seen, d.length);
        for (let i = 0; i < n; i++) {
          if (d[i] !== TCP_PREFACE[seen + i]) {
            reject();
            return;
          }
        }
        seen += n;
        rest = d.subarray(n);
        if (seen < TCP_PREFACE.length) return;
        announced = true;
        this.#conns.set(id, conn);
      }
      if (rest.length > 0 && !reader.push(rest)) reject();
    };
    conn.onEnd = () => {
      this.#drop(id, PathError.CLOSED, announced);
      conn.close();
    };
    conn.onError = (e) => this.#drop(id, netErrorReason(e), announced);
  }

  #drop(id: string, reason: string, announced: boolean): void {
    if (!this.#conns.delete(id) || !announced) return;
    this.onPathClose(id, reason);
  }

  send(pathId: string, datagram: Uint8Array): boolean {
    const c = this.#conns.get(pathId);
    if (c === undefined || !c.writable) return false;
    if (datagram.length === 0 || datagram.length > MAX_DATAGRAM_BYTES) return false;
    if (c.bufferedAmount + datagram.length > this.#maxBuffered) return false;
    if (!c.write(encodeRecord(datagram))) return false;
    this.#stats.datagramsSent++;
    return true;
  }

  close(): void {
    this.listener.close();
    for (const c of this.#conns.values()) {
      c.onData = undefined;
      c.onEnd = undefined;
      c.onError = undefined;
      c.close();
    }
    this.#conns.clear();
  }
}
