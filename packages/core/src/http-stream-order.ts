/**
 * The client half of an RLHTTP/1 streaming path (docs/PROTOCOL.md §7.4), without I/O. The relay
 * numbers the datagrams it sends a token (`Roamlink-Seq`) and, until the client has seen a byte of
 * its stream, also answers POSTs with copies of what it streamed (the client's `Roamlink-Ack`
 * says what it has). This keeps the numbering: each datagram is delivered once, whichever way it
 * came first, and a gap (copies the relay could not keep) is a loss for the layers above to
 * recover. It also says how long to wait for the stream's first byte before falling back to
 * polling. The Node, browser and simulated clients bring the requests and the timer.
 */

/** clamp(factor × the first POST's answer time, minMs, maxMs): the wait for the stream's first byte. */
export interface BufferDetect {
  factor: number;
  minMs: number;
  maxMs: number;
}

/** The wire format's clamp(1.5 × T, 100 ms, 3 s). */
export const BUFFER_DETECT: BufferDetect = { factor: 1.5, minMs: 100, maxMs: 3000 };

/** `BUFFER_DETECT` with what `o` sets (a field left out or undefined keeps the default). */
export function bufferDetect(
  o?: {
    [K in keyof BufferDetect]?: number | undefined;
  },
): BufferDetect {
  return {
    factor: o?.factor ?? BUFFER_DETECT.factor,
    minMs: o?.minMs ?? BUFFER_DETECT.minMs,
    maxMs: o?.maxMs ?? BUFFER_DETECT.maxMs,
  };
}

/** How long after the GET left to wait for the stream's first byte (no answer yet: maxMs). */
export function bufferWaitMs(d: BufferDetect, firstAnswerMs: number | undefined): number {
  if (firstAnswerMs === undefined) return d.maxMs;
  return Math.min(d.maxMs, Math.max(d.minMs, d.factor * firstAnswerMs));
}

export class HttpStreamOrder {
  /** The number of the next datagram this client lacks. */
  next = 0;
  /** Whether a byte of the stream's body arrived: from then on no acks, and no fallback. */
  bodySeen = false;
  /** The number of the stream's next record (its `Roamlink-Seq`, then counted). */
  #streamSeq: number | undefined;

  /** The down stream's answer named its first record's number, or (undefined) did not. */
  streamOpened(seq: number | undefined): void {
    this.#streamSeq = seq;
  }

  /** The `Roamlink-Ack` each request carries while the stream has shown nothing. */
  get ack(): number | undefined {
    return this.bodySeen ? undefined : this.next;
  }

  /** A datagram from the stream: whether it is new (deliver it) or a duplicate. */
  fromStream(): boolean {
    const seq = this.#streamSeq;
    // A relay that does not number its datagrams sends each once.
    if (seq === undefined) return true;
    this.#streamSeq = seq + 1;
    return this.admit(seq);
  }

  /** Datagram number `seq` (a POST or poll answer's copy): whether it is new. */
  admit(seq: number): boolean {
    if (seq < this.next) return false;
    this.next = seq + 1;
    return true;
  }
}
