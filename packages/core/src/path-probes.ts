/**
 * Bookkeeping of the client's outstanding PROBEs (docs/PROTOCOL.md §6.7; WO 03/063444, claim 11
 * and the probe paragraph): ids, sizes, send times, tries and retransmission-timeout expiry. No
 * I/O: the session encodes, seals and sends the frames and turns the outcomes into events.
 *
 * Two kinds of probe share one id space:
 * - the verification of a newly chosen path: one data-sized PROBE, resent on each RTO; after
 *   `VERIFY_TRIES` unanswered the path is data-blocked (a firewall passing small packets only, a
 *   PMTU black hole, DPI) and left out of rounds until a probe crosses it;
 * - lighter-path probing: while registered on an encapsulation the relay likes less than one of
 *   the candidates, a data-sized PROBE on each better candidate; registration alone does not prove
 *   that data passes.
 */
import type { Encapsulation } from './encapsulation.ts';
import type { Candidate } from './session.ts';

/** A chosen path is data-blocked after this many unanswered verification probes. */
export const VERIFY_TRIES = 3;

/** RFC 6298-style retransmission timeout from the RTT estimate (ms). */
export function retransmissionTimeout(srtt: number | undefined): number {
  return Math.max(200, 3 * (srtt ?? 100));
}

/**
 * Candidates whose encapsulation the relay prefers (`relayPrefs`, lighter first) to the one in use
 * on `path`; none while nothing is chosen.
 */
export function lighterCandidates<P>(
  candidates: readonly Candidate<P>[],
  path: P | undefined,
  encapsulation: Encapsulation | undefined,
  relayPrefs: readonly Encapsulation[],
): Candidate<P>[] {
  const rank = (e: Encapsulation): number => {
    const i = relayPrefs.indexOf(e);
    return i < 0 ? Number.POSITIVE_INFINITY : i;
  };
  if (encapsulation === undefined) return [];
  const mine = rank(encapsulation);
  return candidates.filter((c) => c.path !== path && rank(c.info.encapsulation) < mine);
}

export interface VerifyProbe<P> {
  id: number;
  path: P;
  size: number;
  sentAt: number;
  tries: number;
}

/** What a PROBE_ACK matched. */
export type ProbeAckMatch = { kind: 'verify' } | { kind: 'lighter'; sentAt: number } | undefined;

/** What the verification probe's RTO expiry calls for. */
export type VerifyExpiry<P> =
  | { kind: 'stale' }
  | { kind: 'retry' }
  | { kind: 'blocked'; path: P; size: number };

export class PathProbes<P> {
  /** Paths that carried registration but not data: left out of rounds until a probe passes. */
  readonly blocked = new Set<P>();
  #id = 0;
  #verify: VerifyProbe<P> | undefined;
  readonly #lighter = new Map<number, { path: P; size: number; sentAt: number }>();

  /** The outstanding verification probe of the chosen path, if any. */
  get verify(): Readonly<VerifyProbe<P>> | undefined {
    return this.#verify;
  }

  /** Records a verification probe of `path` sent now (a retry if the last one was on it). */
  startVerify(path: P, size: number, now: number): number {
    const id = this.#nextId();
    const tries = this.#verify?.path === path ? this.#verify.tries + 1 : 1;
    this.#verify = { id, path, size, sentAt: now, tries };
    return id;
  }

  cancelVerify(): void {
    this.#verify = undefined;
  }

  /** When the verification probe times out, if one is outstanding. */
  verifyDeadline(rto: number): number | undefined {
    return this.#verify === undefined ? undefined : this.#verify.sentAt + rto;
  }

  /**
   * Called once the verification probe's RTO has passed. A probe of a path no longer chosen is
   * dropped; otherwise resend until `VERIFY_TRIES`, then the path is data-blocked.
   */
  verifyExpired(chosen: P | undefined): VerifyExpiry<P> {
    const v = this.#verify!;
    if (v.path !== chosen) {
      this.#verify = undefined;
      return { kind: 'stale' };
    }
    if (v.tries < VERIFY_TRIES) return { kind: 'retry' };
    this.#verify = undefined;
    this.blocked.add(v.path);
    return { kind: 'blocked', path: v.path, size: v.size };
  }

  /** Forgets the lighter-path probes of the last batch (a new batch replaces them). */
  clearLighter(): void {
    this.#lighter.clear();
  }

  /** Records a lighter-path probe on `path` sent now. */
  startLighter(path: P, size: number, now: number): number {
    const id = this.#nextId();
    this.#lighter.set(id, { path, size, sentAt: now });
    return id;
  }

  /**
   * Matches a PROBE_ACK that came on `path`: the verification probe first, then the lighter-path
   * ones (one answer settles the batch). Either way the path is no longer data-blocked.
   */
  ack(id: number, size: number, path: P): ProbeAckMatch {
    const v = this.#verify;
    if (v && v.id === id && v.path === path && size === v.size) {
      this.#verify = undefined;
      this.blocked.delete(path);
      return { kind: 'verify' };
    }
    const p = this.#lighter.get(id);
    if (!p || p.path !== path || size !== p.size) return undefined;
    this.#lighter.clear();
    this.blocked.delete(path);
    return { kind: 'lighter', sentAt: p.sentAt };
  }

  #nextId(): number {
    return ++this.#id >>> 0;
  }
}
