/**
 * The client's registration rounds (WO 03/063444; docs/PROTOCOL.md §6.4-6.5, §7.1), as a pure state
 * machine: the round counter, the round in progress, when its RREQs are due again, and which RREPs
 * answer it. No I/O and no clock: the session sends the RREQs and acts on what an RREP settles.
 */
import { equalBytes } from './bytes.ts';

export interface Round {
  round: number;
  nonce: Uint8Array;
  reason: string;
  /** When the round's first RREQs went out (for the `registered` event's rttMs). */
  startedAt: number;
  /** When they last went out. */
  sentAt: number;
  attempt: number;
  /** Highest relay decision seen in this round (0: no chosen RREP yet). */
  decision: number;
}

/** Longest gap between RREQ retransmissions (ms). */
export const ROUND_RETRY_MAX_MS = 4000;

/**
 * Delay before attempt `attempt + 1` of an unanswered round: `retryMs`, or by default
 * max(500 ms, 3 × SRTT), doubling per attempt, at most 4 s.
 */
export function roundRetryDelay(
  attempt: number,
  srtt: number | undefined,
  retryMs: number | undefined,
): number {
  const base = retryMs ?? Math.max(500, 3 * (srtt ?? 100));
  return Math.min(ROUND_RETRY_MAX_MS, base * 2 ** (attempt - 1));
}

/** What an RREP does to the round in progress. */
export type RrepOutcome =
  /** Wrong round or nonce: not an answer to this round. */
  | { kind: 'stale' }
  /** Not `chosen`, or no higher decision than one already seen: nothing moves. */
  | { kind: 'ignored' }
  /** The path it came on is chosen; `rttMs` is a sample when it is the round's first. */
  | { kind: 'chosen'; round: Round; rttMs: number | undefined };

export class RegistrationRounds {
  #counter = 0;
  #current: Round | undefined;

  /** The number of the round in progress or last completed (0: none yet). */
  get number(): number {
    return this.#counter;
  }

  /** The round in progress or last completed. */
  get current(): Round | undefined {
    return this.#current;
  }

  /** True once the current round has a chosen path. */
  get registered(): boolean {
    return this.#current !== undefined && this.#current.decision > 0;
  }

  /** Starts the next round; its RREQs went (or go) out at `sentAt`, recorded as sent `now`. */
  start(nonce: Uint8Array, reason: string, sentAt: number, now: number): Round {
    this.#current = {
      round: ++this.#counter,
      nonce,
      reason,
      startedAt: sentAt,
      sentAt: now,
      attempt: 1,
      decision: 0,
    };
    return this.#current;
  }

  /** When the unanswered round's RREQs are due again; undefined once a path is chosen. */
  retryAt(srtt: number | undefined, retryMs: number | undefined): number | undefined {
    const r = this.#current;
    if (r?.decision !== 0) return undefined;
    return r.sentAt + roundRetryDelay(r.attempt, srtt, retryMs);
  }

  /** Records that the unanswered round's RREQs go out again now. */
  resend(now: number): Round {
    const r = this.#current!;
    r.attempt++;
    r.sentAt = now;
    return r;
  }

  /** Judges an RREP against the round in progress and records a higher decision. */
  rrep(
    rrep: { round: number; nonce: Uint8Array; chosen: boolean; decision: number },
    now: number,
  ): RrepOutcome {
    const r = this.#current;
    if (!r || rrep.round !== r.round || !equalBytes(rrep.nonce, r.nonce)) return { kind: 'stale' };
    if (!rrep.chosen || rrep.decision <= r.decision) return { kind: 'ignored' };
    const rttMs = r.decision === 0 ? now - r.sentAt : undefined;
    r.decision = rrep.decision;
    return { kind: 'chosen', round: r, rttMs };
  }
}
