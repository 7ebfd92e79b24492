/**
 * Dead-path detection on the client's chosen path (docs/PROTOCOL.md §7.1), as a pure state
 * machine. When something was sent since anything authenticated was last heard and the silence
 * lasts max(`probeMs`, 4 × SRTT), the path is challenged (PATH_CHALLENGE, §6.6; RFC 9000 §8.2);
 * with no answer after max(`confirmMs`, 3 × SRTT) more, it is dead. No I/O and no clock: the
 * session reports what it sent and heard and acts on `due`.
 */
import { equalBytes } from './bytes.ts';

export interface DeadPathOptions {
  /** Silence (while sending) before the path is challenged (ms). */
  probeMs: number;
  /** Further silence after the challenge before the path is declared dead (ms). */
  confirmMs: number;
}

export class DeadPathDetector {
  /** When the first packet went out that nothing has answered yet (0: all answered). */
  unansweredSince = 0;
  #challenge: { data: Uint8Array; sentAt: number } | undefined;
  readonly #o: DeadPathOptions;

  constructor(o: DeadPathOptions) {
    this.#o = o;
  }

  /** Something went out on the chosen path. */
  sent(now: number): void {
    if (this.unansweredSince === 0) this.unansweredSince = now;
  }

  /** Something authenticated came in: the silence is over. */
  heard(): void {
    this.unansweredSince = 0;
  }

  /** A PATH_CHALLENGE carrying `data` went out. */
  challenged(data: Uint8Array, now: number): void {
    this.#challenge = { data, sentAt: now };
  }

  /** Forgets the outstanding challenge (a new round settles the path anew). */
  cancelChallenge(): void {
    this.#challenge = undefined;
  }

  /** A PATH_RESPONSE came: the round-trip time if it answers the outstanding challenge. */
  response(data: Uint8Array, now: number): number | undefined {
    const c = this.#challenge;
    if (!c || !equalBytes(c.data, data)) return undefined;
    this.#challenge = undefined;
    return now - c.sentAt;
  }

  /**
   * What the silence calls for now: a challenge, or the path's death (the challenge is then
   * forgotten; `silentMs` is how long nothing was heard).
   */
  due(now: number, srtt: number | undefined): 'challenge' | { silentMs: number } | undefined {
    const since = this.unansweredSince;
    if (since <= 0) return undefined;
    if (!this.#challenge) {
      return now - since >= this.#probeMs(srtt) ? 'challenge' : undefined;
    }
    if (now - this.#challenge.sentAt < this.#confirmMs(srtt)) return undefined;
    this.#challenge = undefined;
    return { silentMs: now - since };
  }

  /** When `due` next has something to say, if anything is unanswered. */
  deadline(srtt: number | undefined): number | undefined {
    if (this.unansweredSince <= 0) return undefined;
    return this.#challenge
      ? this.#challenge.sentAt + this.#confirmMs(srtt)
      : this.unansweredSince + this.#probeMs(srtt);
  }

  #probeMs(srtt: number | undefined): number {
    return Math.max(this.#o.probeMs, 4 * (srtt ?? 0));
  }

  #confirmMs(srtt: number | undefined): number {
    return Math.max(this.#o.confirmMs, 3 * (srtt ?? 0));
  }
}
