/**
 * What the status page shows, kept from the relay's own events: runtime-neutral (no Node imports,
 * no clock of its own, no timers), so the same recorder can run wherever the relay runs.
 *
 * Fed with every session event and mux event (`observe`, the `observe` option of startRelay) and,
 * once a second, with each tunnel's mux stats (`sample`), it keeps per session (per client static
 * key):
 *
 * - the latest registration round: every encapsulation raced in it, when its first RREQ arrived
 *   relative to the round's first RREQ (docs/PROTOCOL.md §7), which one was chosen and the verdict
 *   the relay answered on each;
 * - the verdict of the chosen path with both views side by side: what the client said it sent
 *   (its RREQ, `RelayPathState.rreq.view`) and what the relay observed (`RelayPathState.info`);
 * - RTT and throughput as time series, one point per sample, bounded (10 min at 1 s by default);
 * and, for all sessions, a bounded timeline of moves, fallbacks, probes, rekeys, GOAWAYs and dead
 * tunnels, each with its reason.
 *
 * `snapshot()` is the whole state as plain JSON; `subscribe()` hears each change as a small
 * update (a session's summary, one sample of every session, one timeline entry), in order, so a
 * page that applies them to a snapshot stays current.
 */
import type { MuxEvent, OuterView, RelayEvent, RelayPeer } from '@roamlink/core';
import {
  DEFAULT_ENCAPSULATION_PREFERENCE,
  ENCAPSULATION_NAMES,
  type Encapsulation,
  INITIAL_RTT_MS,
  StreamError,
  SUITE_NAMES,
  type Suite,
  VERDICT_NAMES,
  type Verdict,
} from '@roamlink/core';

/** What the recorder is fed: a session event, or a mux event with the peer it belongs to. */
export type StatusInput = RelayEvent<string> | (MuxEvent & { peer: string });

/** The part of a tunnel's mux stats that a sample reads. */
export interface MuxSample {
  bytesSent: number;
  bytesReceived: number;
  /** Smoothed RTT (RFC 9002 §5.3). */
  rttMs: number;
  /** 0 until the first RTT sample (and then `rttMs` is the initial guess, INITIAL_RTT_MS). */
  minRttMs: number;
  streamsActive: number;
}

export interface StatusRecorderOptions {
  /** Milliseconds since the epoch; the recorder reads no clock of its own. */
  now: () => number;
  /** How much of the RTT and throughput history is kept (default 600 000 ms: 10 min). */
  historyMs?: number;
  /** The sampling interval the host keeps (default 1000 ms); with historyMs, the series bound. */
  sampleMs?: number;
  /** Timeline entries kept, all sessions together (default 500). */
  timelineMax?: number;
  /** Sessions kept; past this the one heard from least recently that is not connected goes. */
  maxSessions?: number;
  /** Encapsulations in the relay's order of preference (a move down this list is a fallback). */
  encapsulations?: readonly Encapsulation[];
}

/** The relay itself, as the page shows it in its header. */
export interface RelayInfo {
  startedAt: number;
  publicKey: string | null;
  encapsulations: string[];
  /** Where the relay listens ("addr:port"; null: that listener is off or not known). */
  udp: string | null;
  tcp: string | null;
  http: string | null;
  /**
   * True where the relay has no view of all its sessions at once (Workers: each session lives in
   * its own Durable Object): a page shows one session, named by its routing id (`?sid=`).
   */
  sessionScoped?: boolean;
}

export type SessionState = 'connecting' | 'connected' | 'left' | 'dead';

/** One encapsulation raced in a registration round. */
export interface RaceEntry {
  encapsulation: string;
  path: string;
  /** When its first RREQ of the round arrived, in ms after the round's first RREQ. */
  arrivedMs: number;
  /** Chosen: the path the session moved to in this round (or upgraded to within the grace). */
  chosen: boolean;
  /** The verdict the relay answered on this path. */
  verdict: string;
}

export interface RoundStatus {
  round: number;
  /** When its first RREQ arrived (ms since the epoch). */
  startedAt: number;
  /** The relay's decision counter (1 = the first RREQ won; more: upgrades within the grace). */
  decision: number;
  /** The chosen encapsulation. */
  chosen: string | null;
  /** In order of arrival. */
  raced: RaceEntry[];
}

/** How one outer field compares between the two views. */
export type FieldMatch = 'same' | 'differs' | 'client-only' | 'relay-only' | 'unknown';

export interface ViewRow {
  /** `srcAddr`, `srcPort`, `dstAddr`, `dstPort`, `url`, `host` or `header:<name>`. */
  field: string;
  client: string | null;
  relay: string | null;
  match: FieldMatch;
}

export interface VerdictStatus {
  /** The verdict's name (VERDICT_NAMES) and wire code. */
  verdict: string;
  code: number;
  round: number;
  encapsulation: string;
  path: string;
  /** What the client said it sent (its RREQ); null if no RREQ came on this path. */
  clientView: OuterView | null;
  /** What the relay observed on the path. */
  relayView: OuterView | null;
  /** Field by field: addresses and ports, URL and Host, then every header either side has. */
  rows: ViewRow[];
}

export interface SessionSummary {
  /** The client's static public key, hex. */
  id: string;
  state: SessionState;
  /** First heard of, and last heard of (ms since the epoch). */
  since: number;
  lastEventAt: number;
  path: string | null;
  encapsulation: string | null;
  suite: string | null;
  handshakes: number;
  rekeys: number;
  moves: number;
  fallbacks: number;
  streamsOpened: number;
  streamsRefused: number;
  streamsActive: number;
  /** The latest registration round. */
  round: RoundStatus | null;
  /** The verdict of the chosen path. */
  verdict: VerdictStatus | null;
  /** The latest RTT and rates (null before the first sample). */
  rttMs: number | null;
  txBps: number | null;
  rxBps: number | null;
}

/**
 * A session's history, columnar: point i is (t[i], rttMs[i], txBps[i], rxBps[i]). tx is what the
 * relay sent to the client, rx what it received from it; rttMs is null before a sample exists.
 */
export interface SessionSeries {
  t: number[];
  rttMs: (number | null)[];
  txBps: number[];
  rxBps: number[];
}

export interface SessionStatus extends SessionSummary {
  series: SessionSeries;
}

export type TimelineKind =
  | 'connect'
  | 'move'
  | 'fallback'
  | 'probe'
  | 'rekey'
  | 'goaway'
  | 'dead'
  | 'registration';

export interface TimelineEntry {
  /** Increases by one per entry, across sessions. */
  seq: number;
  t: number;
  session: string;
  kind: TimelineKind;
  /** One line for a person: "Moved tcp → udp". */
  title: string;
  /** Why, where the event says: `registration`, `upgrade`, `rebinding`, `http-poll fallback`… */
  reason: string | null;
  /** Encapsulations (or paths) before and after, for moves and fallbacks. */
  from: string | null;
  to: string | null;
  /** A measurement that goes with it (RTT of a probe, bytes of a path-MTU probe, …). */
  value: number | null;
  /** The registration round in force when it happened. */
  round: number | null;
}

export interface StatusSnapshot {
  version: 1;
  now: number;
  relay: RelayInfo;
  sessions: SessionStatus[];
  timeline: TimelineEntry[];
}

export type StatusUpdate =
  | { type: 'session'; session: SessionSummary }
  | { type: 'forget'; id: string }
  | {
      type: 'sample';
      t: number;
      points: { id: string; rttMs: number | null; txBps: number; rxBps: number }[];
    }
  | { type: 'timeline'; entry: TimelineEntry }
  | { type: 'relay'; relay: RelayInfo };

interface SessionRecord {
  summary: SessionSummary;
  series: SessionSeries;
  peer: RelayPeer<string> | undefined;
  /** The last mux counters, for rates. */
  last: { t: number; sent: number; received: number } | undefined;
  changed: boolean;
  /** The latest round whose choice is on the timeline. */
  announced: number;
  /** The round the session connected in: its upgrades finish the first race, no moves. */
  connectRound: number;
}

const encName = (e: Encapsulation | undefined): string | null =>
  e === undefined ? null : (ENCAPSULATION_NAMES[e] ?? `encapsulation-${e}`);

const verdictName = (v: Verdict): string => VERDICT_NAMES[v] ?? `verdict-${v}`;

/** An address as the verdict compares it: lower case, no brackets, IPv4-mapped IPv6 as IPv4. */
function normAddr(a: string): string {
  const s = a.toLowerCase().replace(/^\[|\]$/g, '');
  return s.startsWith('::ffff:') && s.includes('.') ? s.slice(7) : s;
}

/** The path and query of a URL or request target (origin-form or absolute-form). */
function target(u: string): string {
  const m = /^[a-z][a-z0-9+.-]*:\/\/[^/?#]*(.*)$/i.exec(u);
  const rest = m ? m[1]! : u;
  return rest === '' ? '/' : rest;
}

/** Compares the client's view with the relay's, field by field, for a person to read. */
export function compareViews(client: OuterView | null, relay: OuterView | null): ViewRow[] {
  const rows: ViewRow[] = [];
  const row = (
    field: string,
    c: string | number | undefined,
    r: string | number | undefined,
    norm: (s: string) => string = (s) => s,
  ): void => {
    if (c === undefined && r === undefined) return;
    const cs = c === undefined ? null : String(c);
    const rs = r === undefined ? null : String(r);
    const match: FieldMatch =
      cs === null || rs === null ? 'unknown' : norm(cs) === norm(rs) ? 'same' : 'differs';
    rows.push({ field, client: cs, relay: rs, match });
  };
  row('srcAddr', client?.srcAddr, relay?.srcAddr, normAddr);
  row('srcPort', client?.srcPort, relay?.srcPort);
  row('dstAddr', client?.dstAddr, relay?.dstAddr, normAddr);
  row('dstPort', client?.dstPort, relay?.dstPort);
  row('url', client?.url, relay?.url, target);
  row('host', client?.host, relay?.host, (s) => s.toLowerCase());
  const ch = new Map<string, string>();
  for (const [k, v] of client?.headers ?? []) ch.set(k.toLowerCase(), v);
  const rh = new Map<string, string>();
  for (const [k, v] of relay?.headers ?? []) rh.set(k.toLowerCase(), v);
  for (const [k, v] of ch) {
    if (k === 'host') continue;
    const r = rh.get(k);
    rows.push({
      field: `header:${k}`,
      client: v,
      relay: r ?? null,
      match: r === undefined ? 'client-only' : r === v ? 'same' : 'differs',
    });
  }
  for (const [k, v] of rh) {
    if (k === 'host' || ch.has(k)) continue;
    rows.push({ field: `header:${k}`, client: null, relay: v, match: 'relay-only' });
  }
  return rows;
}

const copyView = (v: OuterView | undefined): OuterView | null =>
  v === undefined
    ? null
    : {
        ...v,
        ...(v.headers ? { headers: v.headers.map(([k, x]) => [k, x] as [string, string]) } : {}),
      };

/** GOAWAY codes as a person reads them (0: a plain goodbye; else the stream-layer error). */
const GOAWAY_REASONS: Record<number, string> = {
  0: 'no error',
  [StreamError.SHUTDOWN]: 'shutting down',
  [StreamError.RESET]: 'reset',
  [StreamError.INTERNAL]: 'internal error',
};

export class StatusRecorder {
  readonly #o: Required<Omit<StatusRecorderOptions, 'encapsulations'>>;
  readonly #preference: readonly Encapsulation[];
  readonly #sessions = new Map<string, SessionRecord>();
  readonly #timeline: TimelineEntry[] = [];
  readonly #subscribers = new Set<(u: StatusUpdate) => void>();
  readonly #relay: RelayInfo;
  #seq = 0;

  constructor(o: StatusRecorderOptions) {
    this.#o = {
      now: o.now,
      historyMs: o.historyMs ?? 600_000,
      sampleMs: o.sampleMs ?? 1000,
      timelineMax: o.timelineMax ?? 500,
      maxSessions: o.maxSessions ?? 64,
    };
    this.#preference = o.encapsulations ?? DEFAULT_ENCAPSULATION_PREFERENCE;
    this.#relay = {
      startedAt: o.now(),
      publicKey: null,
      encapsulations: this.#preference.map((e) => encName(e)!),
      udp: null,
      tcp: null,
      http: null,
    };
  }

  /** The relay's own facts for the page header (its key is known once it listens). */
  setRelay(info: Partial<RelayInfo>): void {
    Object.assign(this.#relay, info);
    this.#emit({ type: 'relay', relay: { ...this.#relay } });
  }

  /** Hears every change from now on; returns the call that stops it. */
  subscribe(fn: (u: StatusUpdate) => void): () => void {
    this.#subscribers.add(fn);
    return () => {
      this.#subscribers.delete(fn);
    };
  }

  get subscribers(): number {
    return this.#subscribers.size;
  }

  /** One session event or mux event. Events it has no use for change nothing. */
  observe(e: StatusInput): void {
    const now = this.#o.now();
    if (typeof e.peer === 'string') this.#mux(e as MuxEvent & { peer: string }, now);
    else this.#session(e as RelayEvent<string>, now);
    this.#flush();
  }

  /**
   * One sample of every tunnel's mux stats (the host calls this once a second). Sessions without
   * a tunnel get a point too (no traffic, no RTT), so every series shares the time axis.
   */
  sample(tunnels: Iterable<{ peer: string; stats: MuxSample }>): void {
    const now = this.#o.now();
    const seen = new Map<string, MuxSample>();
    for (const t of tunnels) seen.set(t.peer, t.stats);
    const points: { id: string; rttMs: number | null; txBps: number; rxBps: number }[] = [];
    for (const rec of this.#sessions.values()) {
      const st = seen.get(rec.summary.id);
      let tx = 0;
      let rx = 0;
      let rtt: number | null = null;
      if (st) {
        const last = rec.last;
        if (
          last &&
          now > last.t &&
          st.bytesSent >= last.sent &&
          st.bytesReceived >= last.received
        ) {
          const dt = (now - last.t) / 1000;
          tx = Math.round((st.bytesSent - last.sent) / dt);
          rx = Math.round((st.bytesReceived - last.received) / dt);
        }
        rec.last = { t: now, sent: st.bytesSent, received: st.bytesReceived };
        // Before its first sample the estimator holds the RFC 9002 initial guess (min 0).
        const none = st.minRttMs === 0 && st.rttMs === INITIAL_RTT_MS;
        rtt = none ? null : Math.round(st.rttMs * 100) / 100;
        rec.summary.streamsActive = st.streamsActive;
      } else {
        rec.last = undefined;
        if (rec.summary.state !== 'connected') continue;
      }
      this.#push(rec, now, rtt, tx, rx);
      rec.summary.rttMs = rtt;
      rec.summary.txBps = tx;
      rec.summary.rxBps = rx;
      points.push({ id: rec.summary.id, rttMs: rtt, txBps: tx, rxBps: rx });
    }
    if (points.length > 0) this.#emit({ type: 'sample', t: now, points });
  }

  snapshot(): StatusSnapshot {
    return {
      version: 1,
      now: this.#o.now(),
      relay: { ...this.#relay, encapsulations: [...this.#relay.encapsulations] },
      sessions: [...this.#sessions.values()].map((r) => ({
        ...structuredClone(r.summary),
        series: {
          t: [...r.series.t],
          rttMs: [...r.series.rttMs],
          txBps: [...r.series.txBps],
          rxBps: [...r.series.rxBps],
        },
      })),
      timeline: this.#timeline.map((e) => ({ ...e })),
    };
  }

  // --- Sessions -------------------------------------------------------------------------------

  #record(id: string, now: number): SessionRecord {
    let rec = this.#sessions.get(id);
    if (!rec) {
      rec = {
        summary: {
          id,
          state: 'connecting',
          since: now,
          lastEventAt: now,
          path: null,
          encapsulation: null,
          suite: null,
          handshakes: 0,
          rekeys: 0,
          moves: 0,
          fallbacks: 0,
          streamsOpened: 0,
          streamsRefused: 0,
          streamsActive: 0,
          round: null,
          verdict: null,
          rttMs: null,
          txBps: null,
          rxBps: null,
        },
        series: { t: [], rttMs: [], txBps: [], rxBps: [] },
        peer: undefined,
        last: undefined,
        changed: true,
        announced: 0,
        connectRound: 1,
      };
      this.#sessions.set(id, rec);
      this.#bound();
    }
    rec.summary.lastEventAt = now;
    return rec;
  }

  /** Keeps at most maxSessions: the least recently heard of that is not connected goes first. */
  #bound(): void {
    while (this.#sessions.size > this.#o.maxSessions) {
      let victim: SessionRecord | undefined;
      for (const r of this.#sessions.values()) {
        const better =
          !victim ||
          (victim.summary.state === 'connected' && r.summary.state !== 'connected') ||
          ((victim.summary.state === 'connected') === (r.summary.state === 'connected') &&
            r.summary.lastEventAt < victim.summary.lastEventAt);
        if (better) victim = r;
      }
      this.#sessions.delete(victim!.summary.id);
      this.#emit({ type: 'forget', id: victim!.summary.id });
    }
  }

  #session(e: RelayEvent<string>, now: number): void {
    const peer = e.peer;
    const rec = this.#record(peer.id, now);
    rec.peer = peer;
    const s = rec.summary;
    switch (e.type) {
      case 'established': {
        s.suite = SUITE_NAMES[e.suite as Suite] ?? String(e.suite);
        s.handshakes++;
        if (!e.rekey && s.handshakes > 1) {
          rec.connectRound = 1;
          // A fresh handshake from a key already known: the client started over.
          this.#entry(
            rec,
            now,
            'connect',
            'New session: the client started over',
            'handshake',
            null,
            s.encapsulation,
            null,
          );
        }
        if (e.rekey) {
          s.rekeys++;
          this.#entry(rec, now, 'rekey', `Rekeyed (${s.suite})`, 'rekey', null, null, null);
        }
        if (s.state !== 'connected' && s.path !== null) s.state = 'connected';
        rec.changed = true;
        return;
      }
      case 'path-changed':
        this.#pathChanged(rec, peer, e.reason, now);
        return;
      case 'registration-answered':
        this.#answered(rec, peer, e, now);
        return;
      case 'path-validated': {
        const v = Math.round(e.rttMs * 100) / 100;
        this.#entry(
          rec,
          now,
          'probe',
          `Path validated: PATH_CHALLENGE answered in ${v} ms`,
          'path validation',
          null,
          s.encapsulation,
          v,
        );
        return;
      }
      default:
        return;
    }
  }

  /** Where the peer is now: its path and that path's encapsulation. */
  #where(peer: RelayPeer<string>): { path: string | null; enc: string | null } {
    const path = peer.path ?? null;
    return {
      path,
      enc: encName(path === null ? undefined : peer.paths.get(path)?.info?.encapsulation),
    };
  }

  #rank(enc: string | null): number {
    const i = this.#preference.findIndex((e) => encName(e) === enc);
    return i < 0 ? Number.POSITIVE_INFINITY : i;
  }

  /**
   * A change of where the session is: its first path (connect), a move, or a fallback (a move
   * down the relay's preference, or the same HTTP path going from streaming to polling).
   */
  #moved(rec: SessionRecord, peer: RelayPeer<string>, reason: string, now: number): boolean {
    const s = rec.summary;
    const w = this.#where(peer);
    if (w.path === s.path && w.enc === s.encapsulation) return false;
    rec.announced = peer.round;
    const from = s.encapsulation;
    const fromPath = s.path;
    s.path = w.path;
    s.encapsulation = w.enc;
    rec.changed = true;
    if (fromPath === null) {
      rec.connectRound = peer.round;
      if (peer.keys.current) s.state = 'connected';
      this.#entry(rec, now, 'connect', `Registered on ${w.enc ?? '?'}`, reason, null, w.enc, null);
      return true;
    }
    if (s.state === 'left' || s.state === 'dead' || s.state === 'connecting') {
      if (peer.keys.current) s.state = 'connected';
    }
    const down = this.#rank(w.enc) > this.#rank(from);
    if (down || (fromPath === w.path && from !== w.enc)) {
      s.fallbacks++;
      this.#entry(rec, now, 'fallback', `Fell back ${from} → ${w.enc}`, reason, from, w.enc, null);
    } else {
      if (peer.round !== rec.connectRound) s.moves++;
      const title =
        from === w.enc
          ? `Moved to a new ${w.enc} path`
          : `${reason === 'upgrade' ? 'Upgraded' : 'Moved'} ${from ?? '?'} → ${w.enc ?? '?'}`;
      this.#entry(rec, now, 'move', title, reason, from, w.enc, null);
    }
    return true;
  }

  #pathChanged(rec: SessionRecord, peer: RelayPeer<string>, reason: string, now: number): void {
    this.#moved(rec, peer, reason, now);
  }

  #answered(
    rec: SessionRecord,
    peer: RelayPeer<string>,
    e: Extract<RelayEvent<string>, { type: 'registration-answered' }>,
    now: number,
  ): void {
    const s = rec.summary;
    const enc = encName(e.encapsulation)!;
    // The path this RREQ came on: the one whose latest RREQ is of this round, with this
    // encapsulation; the latest to arrive if there are several.
    let path: string | undefined;
    let at = Number.NEGATIVE_INFINITY;
    for (const [p, ps] of peer.paths) {
      if (ps.rreq?.round !== e.round || ps.info?.encapsulation !== e.encapsulation) continue;
      if (ps.rreq.at > at) {
        at = ps.rreq.at;
        path = p;
      }
    }
    if (path === undefined) return;
    let round = s.round;
    // A new round, or round 1 again: the client restarted with the same key (a new session's
    // rounds count from 1 again), and its race is a new one, not more rows of the old.
    if (!round || round.round !== e.round || round.startedAt !== peer.roundStartedAt) {
      round = {
        round: e.round,
        startedAt: peer.roundStartedAt,
        decision: e.decision,
        chosen: null,
        raced: [],
      };
      s.round = round;
    }
    round.decision = e.decision;
    let entry = round.raced.find((r) => r.path === path);
    if (!entry) {
      entry = {
        encapsulation: enc,
        path,
        arrivedMs: Math.max(0, Math.round(at - round.startedAt)),
        chosen: false,
        verdict: verdictName(e.verdict),
      };
      round.raced.push(entry);
      round.raced.sort((a, b) => a.arrivedMs - b.arrivedMs);
    }
    entry.encapsulation = enc;
    entry.verdict = verdictName(e.verdict);
    for (const r of round.raced) r.chosen = r.path === peer.path;
    round.chosen = encName(peer.chosenEncapsulation) ?? null;
    if (e.chosen) {
      const ps = peer.paths.get(path);
      const clientView = copyView(ps?.rreq?.view);
      const relayView = copyView(ps?.info?.view);
      s.verdict = {
        verdict: verdictName(e.verdict),
        code: e.verdict,
        round: e.round,
        encapsulation: enc,
        path,
        clientView,
        relayView,
        rows: compareViews(clientView, relayView),
      };
      // An HTTP path that fell back to polling registers again on the same path.
      const why = enc === 'http-poll' ? 'http-poll fallback' : 'registration';
      if (!this.#moved(rec, peer, why, now) && rec.announced < e.round) {
        // A round whose first answer kept the session where it was (a transport came back, a
        // refresh); a preferred one may still upgrade it within the grace window.
        rec.announced = e.round;
        this.#entry(
          rec,
          now,
          'registration',
          `Round ${e.round}: ${enc} answered first`,
          'registration',
          null,
          enc,
          null,
        );
      }
    }
    rec.changed = true;
  }

  #mux(e: MuxEvent & { peer: string }, now: number): void {
    const rec = this.#record(e.peer, now);
    const s = rec.summary;
    switch (e.type) {
      case 'stream-open':
        s.streamsOpened++;
        rec.changed = true;
        return;
      case 'stream-refused':
        s.streamsRefused++;
        rec.changed = true;
        return;
      case 'goaway': {
        s.state = 'left';
        rec.changed = true;
        const why = GOAWAY_REASONS[e.code] ?? `code ${e.code}`;
        this.#entry(rec, now, 'goaway', 'Client said GOAWAY', why, s.encapsulation, null, e.code);
        return;
      }
      case 'dead': {
        s.state = 'dead';
        rec.changed = true;
        const secs = Math.round(e.silentMs / 100) / 10;
        this.#entry(
          rec,
          now,
          'dead',
          `Silent for ${secs} s: tunnel dropped`,
          'outage timeout',
          s.encapsulation,
          null,
          e.silentMs,
        );
        return;
      }
      case 'max-payload':
        this.#entry(
          rec,
          now,
          'probe',
          `Path MTU probe acknowledged: ${e.bytes}-byte packets`,
          'path-MTU search (RFC 8899)',
          null,
          s.encapsulation,
          e.bytes,
        );
        return;
      default:
        return;
    }
  }

  // --- Output ---------------------------------------------------------------------------------

  #entry(
    rec: SessionRecord,
    now: number,
    kind: TimelineKind,
    title: string,
    reason: string | null,
    from: string | null,
    to: string | null,
    value: number | null,
  ): void {
    // The session's summary goes first, so a page that shows the entry already knows the session.
    this.#flush();
    const entry: TimelineEntry = {
      seq: ++this.#seq,
      t: now,
      session: rec.summary.id,
      kind,
      title,
      reason,
      from,
      to,
      value,
      round: rec.peer?.round ?? null,
    };
    this.#timeline.push(entry);
    if (this.#timeline.length > this.#o.timelineMax) this.#timeline.shift();
    this.#emit({ type: 'timeline', entry: { ...entry } });
  }

  #push(rec: SessionRecord, t: number, rtt: number | null, tx: number, rx: number): void {
    const s = rec.series;
    s.t.push(t);
    s.rttMs.push(rtt);
    s.txBps.push(tx);
    s.rxBps.push(rx);
    const max = Math.max(1, Math.ceil(this.#o.historyMs / this.#o.sampleMs));
    const cutoff = t - this.#o.historyMs;
    let drop = Math.max(0, s.t.length - max);
    while (drop < s.t.length && s.t[drop]! <= cutoff) drop++;
    if (drop > 0) {
      s.t.splice(0, drop);
      s.rttMs.splice(0, drop);
      s.txBps.splice(0, drop);
      s.rxBps.splice(0, drop);
    }
  }

  /** Sends the summary of every session that changed. */
  #flush(): void {
    for (const rec of this.#sessions.values()) {
      if (!rec.changed) continue;
      rec.changed = false;
      this.#emit({ type: 'session', session: structuredClone(rec.summary) });
    }
  }

  #emit(u: StatusUpdate): void {
    for (const fn of this.#subscribers) {
      try {
        fn(u);
      } catch {
        // A subscriber's failure is its own: the others and the relay go on.
      }
    }
  }
}
