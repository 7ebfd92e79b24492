/**
 * Saving and restoring what RelaySessions knows about its peers, through its public surface only.
 *
 * RelaySessions makes SAs in exactly one place: answering a handshake's message 1. Given the same
 * message, the same relay key, the same clock value and the same random bytes (the responder's
 * ephemeral key, the SPI), it makes the same SA pair again (Noise IK is deterministic in those;
 * docs/PROTOCOL.md §3). So the relay keeps, per SA pair it still holds, the message 1 that made it
 * and the random bytes drawn while answering it, and a restart answers each again, silently, in
 * the order they came. Then it sets what changed since: the send counter (RFC 4303 §3.3.3: a
 * sequence number is never used twice under a key; the saved counter may lag by what the last
 * event sent before its save, so a restore skips `TX_RESTORE_SKIP` numbers ahead, a gap the
 * receiver's window takes as it takes a loss), the replay window (everything up to the highest
 * sequence number seen counts as seen, so nothing received before the restart can be replayed
 * after it), which slot each pair is in (previous, current, next), and the registration: round,
 * nonce, decision, chosen encapsulation, verdict and the peer's path.
 *
 * What this costs: these records hold what is needed to derive the SA keys (as a saved key
 * would); they live only as long as the keys (the client rekeys every 2 minutes, keys are
 * rejected after 3) and are deleted with them. A client whose key is no longer allowed is not
 * restored: the replayed handshake is refused like a new one.
 */
import {
  ControlType,
  controlType,
  type Encapsulation,
  type EspReceiver,
  type EspSender,
  isControl,
  type PathInfo,
  type RandomBytes,
  type RelayPeer,
  type RelaySessions,
  type SaPair,
  type Verdict,
} from '@roamlink/core';

/** Sequence numbers skipped at a restore: far more than one event ever sends. */
export const TX_RESTORE_SKIP = 1 << 16;

/** The message 1 that made one SA pair, and the randomness its answer drew. */
export interface HandshakeRecord {
  /** The pair's inbound SPI (its identity in the slots). */
  spi: number;
  init: Uint8Array;
  now: number;
  draws: Uint8Array[];
  path: string;
  info: PathInfo | undefined;
}

/** Counters of one held pair. */
export interface PairCounters {
  spi: number;
  /** Last sequence number sent. */
  tx: number;
  /** Highest sequence number accepted. */
  rx: number;
  /** The same for the small-packet SA (docs/PROTOCOL.md §3.7), if the pair has one. */
  smallTx?: number;
  smallRx?: number;
}

/** Everything needed to bring one peer back. */
export interface PeerState {
  id: string;
  /** Oldest first: the handshakes of the pairs still held. */
  handshakes: HandshakeRecord[];
  slots: { previous?: number; current?: number; next?: number };
  pairs: PairCounters[];
  round: number;
  roundNonce: Uint8Array | undefined;
  decision: number;
  chosenEncapsulation: Encapsulation | undefined;
  roundStartedAt: number;
  verdict: Verdict | undefined;
  path: string | undefined;
}

/**
 * The random source of a RelaySessions: records what one handshake draws, or replays what a
 * recorded one drew.
 */
export class RandomTape {
  readonly random: RandomBytes;
  #recording: Uint8Array[] | undefined;
  #replay: Uint8Array[] = [];

  constructor(source: RandomBytes) {
    this.random = (n) => {
      const next = this.#replay[0];
      if (next !== undefined) {
        this.#replay.shift();
        if (next.length === n) return next.slice();
        // Out of step (the code changed between save and restore): the replay fails its check.
        this.#replay = [];
      }
      const b = source(n);
      this.#recording?.push(b.slice());
      return b;
    };
  }

  record<T>(f: () => T): { result: T; draws: Uint8Array[] } {
    const draws: Uint8Array[] = [];
    this.#recording = draws;
    try {
      return { result: f(), draws };
    } finally {
      this.#recording = undefined;
    }
  }

  replay<T>(draws: readonly Uint8Array[], f: () => T): T {
    this.#replay = draws.map((d) => d.slice());
    try {
      return f();
    } finally {
      this.#replay = [];
    }
  }
}

/** Whether a datagram is a handshake's message 1 (the only input that makes SAs). */
export function isHandshakeInit(datagram: Uint8Array): boolean {
  return isControl(datagram) && controlType(datagram) === ControlType.HANDSHAKE_INIT;
}

/**
 * Feeds a message 1 to `relay`, recording it when it made a new SA pair. Returns the records
 * made (one at most, in practice).
 */
export function receiveInit(
  relay: RelaySessions<string>,
  tape: RandomTape,
  datagram: Uint8Array,
  path: string,
  now: number,
  info: PathInfo | undefined,
): HandshakeRecord[] {
  const before = new Map<string, unknown>();
  for (const p of relay.peers.values()) before.set(p.id, p.lastInit);
  const init = datagram.slice();
  const { draws } = tape.record(() => relay.receive(datagram, path, now, info));
  const made: HandshakeRecord[] = [];
  for (const p of relay.peers.values()) {
    const li = p.lastInit;
    if (li && li !== before.get(p.id)) {
      made.push({ spi: li.pair.localSpi, init, now, draws, path, info });
    }
  }
  return made;
}

function slotSpi(p: SaPair | undefined): number | undefined {
  return p?.localSpi;
}

/** The peer's state to save; `records` are its handshakes, pruned to the pairs it still holds. */
export function exportPeer(
  peer: RelayPeer<string>,
  records: readonly HandshakeRecord[],
): PeerState {
  const k = peer.keys;
  const held = new Set(k.all().map((p) => p.localSpi));
  const slots: PeerState['slots'] = {};
  const prev = slotSpi(k.previous);
  const cur = slotSpi(k.current);
  const next = slotSpi(k.next);
  if (prev !== undefined) slots.previous = prev;
  if (cur !== undefined) slots.current = cur;
  if (next !== undefined) slots.next = next;
  return {
    id: peer.id,
    handshakes: records.filter((r) => held.has(r.spi)),
    slots,
    pairs: k.all().map((p) => ({
      spi: p.localSpi,
      tx: p.tx.seq,
      rx: p.rx.replay.top,
      ...(p.txSmall && p.rxSmall ? { smallTx: p.txSmall.seq, smallRx: p.rxSmall.replay.top } : {}),
    })),
    round: peer.round,
    roundNonce: peer.roundNonce,
    decision: peer.decision,
    chosenEncapsulation: peer.chosenEncapsulation,
    roundStartedAt: peer.roundStartedAt,
    verdict: peer.verdict,
    path: peer.path,
  };
}

/** Moves a rebuilt SA's counters past what the saved one had used and seen. */
function restoreCounters(tx: EspSender, rx: EspReceiver, sent: number, seen: number): void {
  tx.seq = Math.max(tx.seq, sent + TX_RESTORE_SKIP);
  const w = rx.replay;
  for (let seq = Math.max(1, seen - w.size + 1); seq <= seen; seq++) w.update(seq);
}

/**
 * Brings a saved peer back into `relay` (fresh, or at least without this peer). Returns the peer,
 * or undefined when its handshakes could not be made again (the key is no longer allowed, or
 * the saved state does not match this code): the client then has to start over.
 */
export function restorePeer(
  relay: RelaySessions<string>,
  tape: RandomTape,
  s: PeerState,
): RelayPeer<string> | undefined {
  let peer: RelayPeer<string> | undefined;
  for (const r of s.handshakes) {
    tape.replay(r.draws, () => relay.receive(r.init.slice(), r.path, r.now, r.info));
    peer = relay.peers.get(s.id);
    const pair = peer?.keys.next;
    if (!peer || !pair || pair.localSpi !== r.spi) return undefined;
    // Confirmed before the restart: into `current` (the older one moves on to `previous`).
    if (s.slots.current === r.spi || s.slots.previous === r.spi) peer.keys.rotate(pair);
  }
  // What answering again produced (the response, an RREP) was sent long ago.
  while (relay.pollTransmit()) {}
  while (relay.pollEvent()) {}
  if (!peer) return undefined;
  for (const c of s.pairs) {
    const pair = peer.keys.bySpi(c.spi);
    if (!pair) continue;
    restoreCounters(pair.tx, pair.rx, c.tx, c.rx);
    if (pair.txSmall && pair.rxSmall) {
      restoreCounters(pair.txSmall, pair.rxSmall, c.smallTx ?? 0, c.smallRx ?? 0);
    }
  }
  peer.round = s.round;
  peer.roundNonce = s.roundNonce;
  peer.decision = s.decision;
  peer.chosenEncapsulation = s.chosenEncapsulation;
  peer.roundStartedAt = s.roundStartedAt;
  peer.verdict = s.verdict;
  peer.path = s.path;
  return peer;
}
