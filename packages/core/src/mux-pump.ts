/**
 * Runs a sans-I/O Mux on a host's event loop: drains its events, sends packets while the
 * transport takes them, and keeps one timer for the mux's next deadline. The Node and browser
 * stream hosts share it; they bring the timers (the core keeps none of its own) and what to do
 * with each event.
 */
import type { Mux, MuxEvent } from './mux.ts';

/** The host's timers. `background`: the timer alone must not keep the process alive. */
export interface PumpTimers {
  set(fn: () => void, ms: number, background: boolean): unknown;
  clear(handle: unknown): void;
}

export interface MuxPumpOptions {
  mux: Mux;
  /** Whether a packet may go now (keys usable, transport not congested). */
  canSend: () => boolean;
  /**
   * While `canSend` is false: whether the host itself will call `pump` when sending can resume
   * (a session not yet established pumps on its `established` event; a transport with a drain
   * event pumps on it). Then a held-back pump sets no retry timer. Default: false, retry.
   */
  resumes?: () => boolean;
  /** Seals one mux payload and sends it. */
  send: (payload: Uint8Array, now: number) => void;
  /** Every event the mux emits, in order. */
  onEvent: (e: MuxEvent) => void;
  clock: () => number;
  timers: PumpTimers;
}

/** How soon a sender held back by a full transport queue looks again (ms). */
const RETRY_MS = 1;

export class MuxPump {
  readonly #o: MuxPumpOptions;
  #timer: unknown;
  #timerAt = Number.POSITIVE_INFINITY;
  #retry: unknown;
  #pumping = false;
  #again = false;
  #closed = false;

  constructor(o: MuxPumpOptions) {
    this.#o = o;
  }

  /** Drain events, flush packets, re-arm the timer. Re-entrant calls fold into one more pass. */
  pump(): void {
    if (this.#closed) return;
    if (this.#pumping) {
      this.#again = true;
      return;
    }
    this.#pumping = true;
    try {
      do {
        this.#again = false;
        const mux = this.#o.mux;
        for (let e = mux.pollEvent(); e; e = mux.pollEvent()) this.#o.onEvent(e);
        this.#flush();
      } while (this.#again);
    } finally {
      this.#pumping = false;
    }
    this.#arm();
  }

  /** Stops: no more passes, no timers left. */
  close(): void {
    this.#closed = true;
    if (this.#timer !== undefined) this.#o.timers.clear(this.#timer);
    if (this.#retry !== undefined) this.#o.timers.clear(this.#retry);
    this.#timer = undefined;
    this.#retry = undefined;
  }

  #flush(): void {
    const o = this.#o;
    const now = o.clock();
    for (;;) {
      if (!o.canSend()) {
        // Nothing to send, or the host will say when it can: no timer. (A client that was
        // handshaking with a relay that did not answer woke up a thousand times a second here.)
        if (!o.mux.hasPending || o.resumes?.()) return;
        // A transport queue is full with no drain event to wait for: look again shortly.
        this.#retry ??= o.timers.set(
          () => {
            this.#retry = undefined;
            this.pump();
          },
          RETRY_MS,
          false,
        );
        return;
      }
      const p = o.mux.pollPacket(now);
      if (!p) return;
      o.send(p, now);
    }
  }

  #arm(): void {
    const o = this.#o;
    const at = o.mux.nextTimeout();
    // A deadline that moved later (or went away) keeps the armed timer: it fires early, finds
    // nothing due and re-arms. Every packet moves the loss and ACK deadlines on, so re-arming on
    // each would cost a timer cancelled and created per packet.
    if (at === undefined || at >= this.#timerAt) return;
    if (this.#timer !== undefined) o.timers.clear(this.#timer);
    this.#timerAt = at;
    this.#timer = o.timers.set(
      () => {
        this.#timer = undefined;
        this.#timerAt = Number.POSITIVE_INFINITY;
        o.mux.handleTimeout(o.clock());
        this.pump();
      },
      Math.max(0, at - o.clock()),
      true,
    );
  }
}
