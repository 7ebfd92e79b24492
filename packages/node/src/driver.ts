/**
 * Drives a sans-I/O session from Node's event loop: after every input it drains the session's
 * transmits and events and keeps one timer due no later than the session's next timeout (one
 * that fires early finds nothing due and re-arms). The session itself never sees a socket or a
 * clock.
 */
import type { Transmit } from '@roamlink/core';

export interface Drivable<P, E> {
  pollTransmit(): Transmit<P> | undefined;
  pollEvent(): E | undefined;
  nextTimeout(): number | undefined;
  handleTimeout(now: number): void;
}

export class SessionDriver<P, E> {
  readonly #s: Drivable<P, E>;
  readonly #send: (path: P, data: Uint8Array) => void;
  readonly #onEvent: (e: E) => void;
  readonly #clock: () => number;
  #timer: NodeJS.Timeout | undefined;
  #timerAt = Number.POSITIVE_INFINITY;
  #closed = false;

  constructor(
    session: Drivable<P, E>,
    send: (path: P, data: Uint8Array) => void,
    onEvent: (e: E) => void,
    clock: () => number = Date.now,
  ) {
    this.#s = session;
    this.#send = send;
    this.#onEvent = onEvent;
    this.#clock = clock;
  }

  now(): number {
    return this.#clock();
  }

  /** Call after every call into the session. */
  pump(): void {
    if (this.#closed) return;
    for (let t = this.#s.pollTransmit(); t; t = this.#s.pollTransmit()) this.#send(t.path, t.data);
    for (let e = this.#s.pollEvent(); e; e = this.#s.pollEvent()) this.#onEvent(e);
    const at = this.#s.nextTimeout();
    // As MuxPump does: no deadline, or a later one, keeps an armed timer (it fires early, finds
    // nothing due and re-arms); only an earlier deadline replaces it.
    if (at === undefined || at >= this.#timerAt) return;
    this.#clear();
    this.#timerAt = at;
    this.#timer = setTimeout(
      () => {
        this.#timer = undefined;
        this.#timerAt = Number.POSITIVE_INFINITY;
        this.#s.handleTimeout(this.#clock());
        this.pump();
      },
      Math.max(0, at - this.#clock()),
    );
    this.#timer.unref();
  }

  close(): void {
    this.#closed = true;
    this.#clear();
  }

  #clear(): void {
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#timerAt = Number.POSITIVE_INFINITY;
  }
}
