/**
 * Test application traffic for the scenario runner (a fixture, not product code): each side sends
 * numbered messages at a fixed interval over the tunnel, with a tiny ARQ on top (cumulative acks
 * piggybacked on every message, resend after a timeout) so that what a dead path swallowed is
 * recovered, as any reliable application over a datagram tunnel would do.
 *
 * Every transmission (first send or resend) carries its own id, so the receiver can tell a
 * transport duplicate (the same transmission delivered twice: the tunnel's fault, must never
 * happen) from an application retransmission (a message sent again by this ARQ: expected).
 *
 * Message layout: type (1 data, 2 ack-only), message number (u32), transmission id (u32),
 * cumulative ack (u32: every message below it has arrived), then a pattern derived from the
 * message number up to the message size, checked on arrival.
 */

export const AppType = { DATA: 1, ACK: 2 } as const;

const HEADER = 13;
const ACK_BYTES = 16;

export interface AppOptions {
  /** Bytes per data message (at least 16). */
  readonly messageBytes: number;
  /** Resend a message not acknowledged within this many ms. */
  readonly rtoMs: number;
  /** At most this many resends per tick, so that a long outage does not end in a burst. */
  readonly maxResendsPerTick?: number;
}

/** One data message as the receiver saw it. */
export interface AppArrival {
  readonly msg: number;
  readonly tx: number;
  /** When the transmission that arrived was sent. */
  readonly sentAt: number;
  readonly at: number;
}

/** One side of the test application. */
export class AppEndpoint {
  readonly #o: AppOptions;
  /** Sent at least once, in order. */
  #nextMsg = 0;
  readonly #unacked = new Map<number, number>();
  #received = new Set<number>();
  /** Every message below this one has arrived. */
  #cum = 0;
  #ackDirty = false;
  /** Transmission ids seen; a second arrival of one is a transport duplicate. */
  readonly #seenTx = new Set<number>();
  readonly #txSentAt: Map<number, number>;
  #nextTx: { n: number };
  readonly arrivals: AppArrival[] = [];
  transportDuplicates = 0;
  corrupted = 0;
  appDuplicates = 0;
  retransmissions = 0;
  /** The message numbers this side generated (the peer must deliver all of them). */
  get generated(): number {
    return this.#nextMsg;
  }
  /** Distinct messages of the peer delivered here. */
  get delivered(): number {
    return this.#received.size;
  }
  get unacked(): number {
    return this.#unacked.size;
  }

  /**
   * `txIds` and `txSentAt` are shared by both sides of one run so that transmission ids are unique
   * across the run and the receiver can look up when a transmission was sent.
   */
  constructor(o: AppOptions, txIds: { n: number }, txSentAt: Map<number, number>) {
    if (o.messageBytes < ACK_BYTES) throw new RangeError('messageBytes must be at least 16');
    this.#o = o;
    this.#nextTx = txIds;
    this.#txSentAt = txSentAt;
  }

  /**
   * One tick: a new message when `generate`, else an ack when one is owed, and resends of
   * overdue messages. Returns the payloads to hand to the tunnel, in order.
   */
  tick(now: number, generate: boolean): Uint8Array[] {
    const out: Uint8Array[] = [];
    let budget = this.#o.maxResendsPerTick ?? 8;
    for (const [msg, sentAt] of this.#unacked) {
      if (budget <= 0) break;
      if (now - sentAt < this.#o.rtoMs) continue;
      budget--;
      this.retransmissions++;
      this.#unacked.set(msg, now);
      out.push(this.#encode(AppType.DATA, msg, now));
    }
    // Map iteration is in insertion order; keep resent messages at the back for the next round.
    for (const p of out) {
      const msg = readU32(p, 1);
      this.#unacked.delete(msg);
      this.#unacked.set(msg, now);
    }
    if (generate) {
      const msg = this.#nextMsg++;
      this.#unacked.set(msg, now);
      out.push(this.#encode(AppType.DATA, msg, now));
    } else if (this.#ackDirty) {
      out.push(this.#encode(AppType.ACK, 0, now));
    }
    if (out.length > 0) this.#ackDirty = false;
    return out;
  }

  /** A payload the tunnel delivered. */
  receive(payload: Uint8Array, now: number): void {
    if (payload.length < ACK_BYTES) {
      this.corrupted++;
      return;
    }
    const type = payload[0];
    const msg = readU32(payload, 1);
    const tx = readU32(payload, 5);
    const cum = readU32(payload, 9);
    if (this.#seenTx.has(tx)) {
      this.transportDuplicates++;
      return;
    }
    this.#seenTx.add(tx);
    for (const m of [...this.#unacked.keys()]) if (m < cum) this.#unacked.delete(m);
    if (type !== AppType.DATA) return;
    if (!checkPattern(payload, msg, this.#o.messageBytes)) {
      this.corrupted++;
      return;
    }
    this.#ackDirty = true;
    this.arrivals.push({ msg, tx, sentAt: this.#txSentAt.get(tx) ?? Number.NaN, at: now });
    if (this.#received.has(msg) || msg < this.#cum) {
      this.appDuplicates++;
      return;
    }
    this.#received.add(msg);
    while (this.#received.has(this.#cum)) {
      this.#received.delete(this.#cum);
      this.#cum++;
    }
  }

  /** Distinct messages delivered: below the cumulative point plus those above it. */
  get distinctDelivered(): number {
    return this.#cum + this.#received.size;
  }

  #encode(type: number, msg: number, now: number): Uint8Array {
    const size = type === AppType.DATA ? this.#o.messageBytes : ACK_BYTES;
    const b = new Uint8Array(size);
    const tx = this.#nextTx.n++;
    this.#txSentAt.set(tx, now);
    b[0] = type;
    writeU32(b, 1, msg);
    writeU32(b, 5, tx);
    writeU32(b, 9, this.#cum);
    if (type === AppType.DATA) for (let i = HEADER; i < size; i++) b[i] = pattern(msg, i);
    return b;
  }
}

function pattern(msg: number, i: number): number {
  return (msg * 131 + i * 17 + (msg >>> 8)) & 255;
}

function checkPattern(b: Uint8Array, msg: number, size: number): boolean {
  if (b.length !== size) return false;
  for (let i = HEADER; i < size; i++) if (b[i] !== pattern(msg, i)) return false;
  return true;
}

function writeU32(b: Uint8Array, off: number, v: number): void {
  b[off] = (v >>> 24) & 255;
  b[off + 1] = (v >>> 16) & 255;
  b[off + 2] = (v >>> 8) & 255;
  b[off + 3] = v & 255;
}

function readU32(b: Uint8Array, off: number): number {
  return ((b[off]! << 24) | (b[off + 1]! << 16) | (b[off + 2]! << 8) | b[off + 3]!) >>> 0;
}
