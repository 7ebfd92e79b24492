/**
 * A small Prometheus registry: counters, gauges and histograms with labels, rendered in the text
 * exposition format 0.0.4 (`text/plain; version=0.0.4`). No dependencies, no clock, no I/O.
 *
 * Format rules kept here: one `# HELP` and one `# TYPE` line per family, then its samples as one
 * uninterrupted group; HELP text escapes `\` and line feed, label values escape `\`, `"` and line
 * feed; values are Go-style floats (`+Inf`, `-Inf`, `NaN`); a histogram `x` renders cumulative
 * `x_bucket{le="…"}` lines ending with `le="+Inf"`, then `x_sum` and `x_count`. Families render
 * in the order they were declared, series in the order they were first used.
 *
 * Hot paths take a bound series once (`counter.labels({ encapsulation: 'udp' })`) and call
 * `inc(n)` on it: no label work per packet.
 *
 * `relayMetrics(registry)` declares roamlink's own metrics (names per the Prometheus naming
 * conventions: `roamlink_` prefix, base units, `_total` on counters).
 */
import {
  ENCAPSULATION_NAMES,
  ErrorCode,
  RoamlinkError,
  type SessionStats,
  Verdict,
} from '@roamlink/core';

export const PROMETHEUS_CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8';

export type Labels = Readonly<Record<string, string | number>>;

const METRIC_NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/;

function invalid(message: string): RoamlinkError {
  return new RoamlinkError(ErrorCode.INVALID_ARGUMENT, message);
}

/** Escapes a label value: backslash, double quote, line feed. */
export function escapeLabelValue(v: string): string {
  return v.replace(/[\\"\n]/g, (c) => (c === '\\' ? '\\\\' : c === '"' ? '\\"' : '\\n'));
}

/** Escapes HELP text: backslash and line feed. */
export function escapeHelp(v: string): string {
  return v.replace(/[\\\n]/g, (c) => (c === '\\' ? '\\\\' : '\\n'));
}

/** A sample value as Go's strconv would write it for Prometheus. */
export function formatValue(v: number): string {
  if (Number.isNaN(v)) return 'NaN';
  if (v === Number.POSITIVE_INFINITY) return '+Inf';
  if (v === Number.NEGATIVE_INFINITY) return '-Inf';
  return String(v);
}

export interface MetricOptions {
  name: string;
  help: string;
  labelNames?: readonly string[];
  /** Runs before each render: set values from an outside source (a size, a stats object). */
  collect?: () => void;
}

interface Series<S> {
  /** `{a="x",b="y"}` or '' — computed once. */
  readonly labelText: string;
  readonly state: S;
}

type MetricType = 'counter' | 'gauge' | 'histogram';

abstract class Family<S> {
  readonly name: string;
  readonly help: string;
  readonly labelNames: readonly string[];
  abstract readonly type: MetricType;
  readonly #collect: (() => void) | undefined;
  readonly #series = new Map<string, Series<S>>();

  constructor(o: MetricOptions, reserved: readonly string[] = []) {
    if (!METRIC_NAME.test(o.name)) throw invalid(`metric name "${o.name}" is not valid`);
    const names = o.labelNames ?? [];
    for (const l of names) {
      if (!LABEL_NAME.test(l) || l.startsWith('__') || reserved.includes(l)) {
        throw invalid(`label name "${l}" is not valid for metric ${o.name}`);
      }
    }
    if (new Set(names).size !== names.length) throw invalid(`duplicate label names on ${o.name}`);
    this.name = o.name;
    this.help = o.help;
    this.labelNames = names;
    this.#collect = o.collect;
  }

  protected abstract initial(): S;

  /** The series for these labels, created on first use; exactly the declared label names. */
  protected seriesFor(labels: Labels | undefined): Series<S> {
    const values: string[] = [];
    const given = labels ?? {};
    let count = 0;
    for (const k in given) if (Object.hasOwn(given, k)) count++;
    if (count !== this.labelNames.length) throw this.#labelError(given);
    for (const n of this.labelNames) {
      const v = given[n];
      if (v === undefined) throw this.#labelError(given);
      values.push(String(v));
    }
    const key = values.join('\u0000');
    let s = this.#series.get(key);
    if (!s) {
      const labelText =
        values.length === 0
          ? ''
          : `{${this.labelNames.map((n, i) => `${n}="${escapeLabelValue(values[i]!)}"`).join(',')}}`;
      s = { labelText, state: this.initial() };
      this.#series.set(key, s);
    }
    return s;
  }

  #labelError(given: Labels): RoamlinkError {
    return invalid(
      `${this.name} takes labels {${this.labelNames.join(', ')}}, got {${Object.keys(given).join(', ')}}`,
    );
  }

  protected abstract renderSeries(s: Series<S>, out: string[]): void;

  render(out: string[]): void {
    this.#collect?.();
    out.push(`# HELP ${this.name} ${escapeHelp(this.help)}`);
    out.push(`# TYPE ${this.name} ${this.type}`);
    for (const s of this.#series.values()) this.renderSeries(s, out);
  }

  /** Forgets every series (for a registry reused across tests). */
  clear(): void {
    this.#series.clear();
    if (this.labelNames.length === 0) this.seriesFor(undefined);
  }
}

interface Cell {
  v: number;
}

export interface BoundCounter {
  inc(n?: number): void;
  get(): number;
}

export class Counter extends Family<Cell> {
  readonly type = 'counter';

  constructor(o: MetricOptions) {
    super(o);
    // An unlabelled counter exists from the start, at 0.
    if (this.labelNames.length === 0) this.seriesFor(undefined);
  }

  protected initial(): Cell {
    return { v: 0 };
  }

  /** Adds `n` (default 1, never negative) to the series of `labels`. */
  inc(labels?: Labels, n = 1): void {
    addTo(this.seriesFor(labels).state, n, this.name);
  }

  /**
   * Sets the series to `value`, for mirroring a count kept elsewhere (the core's stats). The
   * source must be monotonic; mixing `set` and `inc` on one series is a mistake.
   */
  set(labels: Labels | undefined, value: number): void {
    if (!(value >= 0)) throw invalid(`${this.name}: a counter is never negative (${value})`);
    this.seriesFor(labels).state.v = value;
  }

  get(labels?: Labels): number {
    return this.seriesFor(labels).state.v;
  }

  /** The series for `labels`, bound: created now (so it renders as 0), cheap to `inc` later. */
  labels(labels: Labels): BoundCounter {
    const cell = this.seriesFor(labels).state;
    const name = this.name;
    return { inc: (n = 1) => addTo(cell, n, name), get: () => cell.v };
  }

  protected renderSeries(s: Series<Cell>, out: string[]): void {
    out.push(`${this.name}${s.labelText} ${formatValue(s.state.v)}`);
  }
}

function addTo(cell: Cell, n: number, name: string): void {
  if (!(n >= 0)) throw invalid(`${name}: a counter only goes up (inc by ${n})`);
  cell.v += n;
}

export interface BoundGauge {
  set(v: number): void;
  inc(n?: number): void;
  dec(n?: number): void;
  get(): number;
}

export class Gauge extends Family<Cell> {
  readonly type = 'gauge';

  constructor(o: MetricOptions) {
    super(o);
    if (this.labelNames.length === 0) this.seriesFor(undefined);
  }

  protected initial(): Cell {
    return { v: 0 };
  }

  set(labels: Labels | undefined, v: number): void {
    this.seriesFor(labels).state.v = v;
  }

  inc(labels?: Labels, n = 1): void {
    this.seriesFor(labels).state.v += n;
  }

  dec(labels?: Labels, n = 1): void {
    this.seriesFor(labels).state.v -= n;
  }

  get(labels?: Labels): number {
    return this.seriesFor(labels).state.v;
  }

  labels(labels: Labels): BoundGauge {
    const cell = this.seriesFor(labels).state;
    return {
      set: (v) => {
        cell.v = v;
      },
      inc: (n = 1) => {
        cell.v += n;
      },
      dec: (n = 1) => {
        cell.v -= n;
      },
      get: () => cell.v,
    };
  }

  protected renderSeries(s: Series<Cell>, out: string[]): void {
    out.push(`${this.name}${s.labelText} ${formatValue(s.state.v)}`);
  }
}

interface HistogramState {
  /** Per-bucket (non-cumulative) counts; the last slot is the +Inf overflow. */
  readonly counts: number[];
  sum: number;
  count: number;
}

export interface HistogramOptions extends MetricOptions {
  /** Upper bounds, strictly increasing and finite; `+Inf` is added. */
  buckets: readonly number[];
}

export interface BoundHistogram {
  observe(v: number): void;
}

export class Histogram extends Family<HistogramState> {
  readonly type = 'histogram';
  readonly buckets: readonly number[];
  readonly #leText: readonly string[];

  constructor(o: HistogramOptions) {
    super(o, ['le']);
    if (o.buckets.length === 0) throw invalid(`${o.name}: a histogram needs buckets`);
    for (let i = 0; i < o.buckets.length; i++) {
      const b = o.buckets[i]!;
      if (!Number.isFinite(b) || (i > 0 && b <= o.buckets[i - 1]!)) {
        throw invalid(`${o.name}: buckets must be finite and strictly increasing`);
      }
    }
    this.buckets = [...o.buckets];
    this.#leText = [...this.buckets.map((b) => escapeLabelValue(formatValue(b))), '+Inf'];
    if (this.labelNames.length === 0) this.seriesFor(undefined);
  }

  protected initial(): HistogramState {
    return { counts: new Array<number>(this.buckets.length + 1).fill(0), sum: 0, count: 0 };
  }

  observe(labels: Labels | undefined, v: number): void {
    this.#observeInto(this.seriesFor(labels).state, v);
  }

  labels(labels: Labels): BoundHistogram {
    const st = this.seriesFor(labels).state;
    return { observe: (v) => this.#observeInto(st, v) };
  }

  /** Cumulative bucket counts (the +Inf bucket last), sum and count of one series. */
  snapshot(labels?: Labels): { buckets: number[]; sum: number; count: number } {
    const st = this.seriesFor(labels).state;
    let acc = 0;
    return { buckets: st.counts.map((c) => (acc += c)), sum: st.sum, count: st.count };
  }

  #observeInto(st: HistogramState, v: number): void {
    // NaN is not counted: it would poison the sum for good.
    if (Number.isNaN(v)) return;
    const b = this.buckets;
    let i = 0;
    while (i < b.length && v > b[i]!) i++;
    st.counts[i]!++;
    st.sum += v;
    st.count++;
  }

  protected renderSeries(s: Series<HistogramState>, out: string[]): void {
    // The series' labels first, then le: `{a="x",le="0.5"}`.
    const open = s.labelText === '' ? '{' : `${s.labelText.slice(0, -1)},`;
    let acc = 0;
    for (let i = 0; i < this.#leText.length; i++) {
      acc += s.state.counts[i]!;
      out.push(`${this.name}_bucket${open}le="${this.#leText[i]}"} ${acc}`);
    }
    out.push(`${this.name}_sum${s.labelText} ${formatValue(s.state.sum)}`);
    out.push(`${this.name}_count${s.labelText} ${s.state.count}`);
  }
}

export class Registry {
  readonly #families = new Map<string, Family<unknown>>();
  readonly #collectors: (() => void)[] = [];

  /** Runs `fn` at the start of every render, before any family's own `collect`. */
  onCollect(fn: () => void): void {
    this.#collectors.push(fn);
  }

  #add<F extends Family<unknown>>(f: F): F {
    // A histogram x also owns x_bucket, x_sum, x_count: no other family may take those names.
    const owned = (g: Family<unknown>): string[] =>
      g.type === 'histogram'
        ? [g.name, `${g.name}_bucket`, `${g.name}_sum`, `${g.name}_count`]
        : [g.name];
    const mine = owned(f);
    for (const g of this.#families.values()) {
      if (owned(g).some((n) => mine.includes(n))) {
        throw invalid(`metric ${f.name} clashes with ${g.name}, already registered`);
      }
    }
    this.#families.set(f.name, f);
    return f;
  }

  counter(o: MetricOptions): Counter {
    return this.#add(new Counter(o));
  }

  gauge(o: MetricOptions): Gauge {
    return this.#add(new Gauge(o));
  }

  histogram(o: HistogramOptions): Histogram {
    return this.#add(new Histogram(o));
  }

  /** The exposition text: every family, each line ending in a line feed. */
  render(): string {
    for (const c of this.#collectors) c();
    const out: string[] = [];
    for (const f of this.#families.values()) f.render(out);
    return out.length === 0 ? '' : `${out.join('\n')}\n`;
  }

  readonly contentType = PROMETHEUS_CONTENT_TYPE;
}

// --- roamlink's metrics ------------------------------------------------------------------------

/** RTT bucket bounds in seconds: 0.1 ms to 2 s, roughly 1-2.5-5 steps. */
export const RTT_BUCKETS_SECONDS: readonly number[] = [
  0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2,
];

/** Label values of `verdict`: the core's `Verdict` names in lower case. */
export const VERDICT_LABELS: Readonly<Record<Verdict, string>> = Object.fromEntries(
  Object.entries(Verdict).map(([k, v]) => [v, k.toLowerCase()]),
) as Record<Verdict, string>;

/** The causes of a handover: the core's `path-changed` reasons. */
export const HANDOVER_CAUSES = ['registration', 'upgrade', 'rebinding'] as const;

export interface RelayMetrics {
  readonly registry: Registry;
  /** roamlink_sessions: client sessions held (set it, or pass `sessions` for a collect hook). */
  readonly sessions: Gauge;
  readonly handshakes: Counter;
  readonly rekeys: Counter;
  /** UNKNOWN_SPI hints sent (docs/PROTOCOL.md §4.2): clients whose SA this relay no longer has. */
  readonly unknownSpiHints: Counter;
  /** {cause}: registration, upgrade, rebinding. */
  readonly handovers: Counter;
  /** {verdict}: none, address, address_and_port, port_only, protocol, unknown. */
  readonly verdicts: Counter;
  /** {encapsulation}: udp, tcp, websocket, http-stream, http-poll. */
  readonly registrations: Counter;
  readonly receivedBytes: Counter;
  readonly sentBytes: Counter;
  /** {reason}: the core's drop reasons plus whatever the adapters add (e.g. queue_full). */
  readonly packetsDropped: Counter;
  /** {protocol}: tcp (streams), udp (datagram flows). */
  readonly streamsOpened: Counter;
  /** {protocol, code}: why a stream was refused (policy, dns, limit, connect, …). */
  readonly streamsRefused: Counter;
  /** {protocol}: bytes the relay sent to destinations. */
  readonly streamSentBytes: Counter;
  /** {protocol}: bytes the relay received from destinations. */
  readonly streamReceivedBytes: Counter;
  /**
   * {direction}: stream bytes the sessions hold. from_clients: received and not yet taken by
   * the destinations' sockets; to_clients: read from destinations, not yet acknowledged.
   */
  readonly streamHeldBytes: Gauge;
  /** {encapsulation}: round-trip times in seconds. */
  readonly rtt: Histogram;
  /** Records one RTT given in milliseconds (stored in seconds). */
  observeRttMs(encapsulation: string, ms: number): void;
  /**
   * Mirrors the relay sessions' cumulative stats into handshakes, rekeys and packets dropped by
   * reason. Use it from a collect hook, and then do not `inc` those three yourself.
   */
  syncStats(stats: SessionStats): void;
}

export interface RelayMetricsOptions {
  /** Read at each render into roamlink_sessions. */
  sessions?: () => number;
  /** Read at each render and passed to `syncStats`. */
  stats?: () => SessionStats;
  /** Read at each render into roamlink_sessions_forgotten_total. */
  forgotten?: () => number;
  /** Read at each render into roamlink_stream_held_bytes. */
  held?: () => { fromClients: number; toClients: number };
}

/** Declares roamlink's metrics on `registry`, with the known label values pre-created at 0. */
export function relayMetrics(registry: Registry, o: RelayMetricsOptions = {}): RelayMetrics {
  const encs = Object.values(ENCAPSULATION_NAMES);
  const sessions = registry.gauge({
    name: 'roamlink_sessions',
    help: 'Client sessions the relay holds.',
  });
  const forgotten = registry.counter({
    name: 'roamlink_sessions_forgotten_total',
    help: 'Client sessions forgotten after --peer-idle-ms of silence.',
  });
  const handshakes = registry.counter({
    name: 'roamlink_handshakes_total',
    help: 'Handshakes completed, rekeys included.',
  });
  const rekeys = registry.counter({
    name: 'roamlink_rekeys_total',
    help: 'Handshakes that replaced the keys of an existing session.',
  });
  const unknownSpiHints = registry.counter({
    name: 'roamlink_unknown_spi_hints_total',
    help: 'UNKNOWN_SPI sent: ESP packets under an SPI this relay does not know (after a restart).',
  });
  const handovers = registry.counter({
    name: 'roamlink_handovers_total',
    help: 'Sessions moved to another path, by cause.',
    labelNames: ['cause'],
  });
  const verdicts = registry.counter({
    name: 'roamlink_verdicts_total',
    help: 'Translation verdicts on registered paths, by kind.',
    labelNames: ['verdict'],
  });
  const registrations = registry.counter({
    name: 'roamlink_registrations_total',
    help: 'Paths registered, by encapsulation.',
    labelNames: ['encapsulation'],
  });
  const receivedBytes = registry.counter({
    name: 'roamlink_received_bytes_total',
    help: 'Bytes of roamlink datagrams received from clients, by encapsulation.',
    labelNames: ['encapsulation'],
  });
  const sentBytes = registry.counter({
    name: 'roamlink_sent_bytes_total',
    help: 'Bytes of roamlink datagrams sent to clients, by encapsulation.',
    labelNames: ['encapsulation'],
  });
  const packetsDropped = registry.counter({
    name: 'roamlink_packets_dropped_total',
    help: 'Packets dropped, by reason.',
    labelNames: ['reason'],
  });
  const streamsOpened = registry.counter({
    name: 'roamlink_streams_opened_total',
    help: 'Streams (tcp) and datagram flows (udp) opened to destinations.',
    labelNames: ['protocol'],
  });
  const streamsRefused = registry.counter({
    name: 'roamlink_streams_refused_total',
    help: 'Streams and datagram flows refused, by code.',
    labelNames: ['protocol', 'code'],
  });
  const streamSentBytes = registry.counter({
    name: 'roamlink_stream_sent_bytes_total',
    help: 'Bytes the relay sent to destinations.',
    labelNames: ['protocol'],
  });
  const streamReceivedBytes = registry.counter({
    name: 'roamlink_stream_received_bytes_total',
    help: 'Bytes the relay received from destinations.',
    labelNames: ['protocol'],
  });
  const streamHeldBytes = registry.gauge({
    name: 'roamlink_stream_held_bytes',
    help: "Stream bytes held in the relay's sessions: from_clients, received and not yet taken by destination sockets; to_clients, read from destinations and not yet acknowledged.",
    labelNames: ['direction'],
  });
  const rtt = registry.histogram({
    name: 'roamlink_rtt_seconds',
    help: "Round-trip times between relay and clients, by encapsulation: each session's smoothed RTT, every 10 s while it has traffic.",
    labelNames: ['encapsulation'],
    buckets: RTT_BUCKETS_SECONDS,
  });

  for (const e of encs) {
    registrations.labels({ encapsulation: e });
    receivedBytes.labels({ encapsulation: e });
    sentBytes.labels({ encapsulation: e });
  }
  for (const c of HANDOVER_CAUSES) handovers.labels({ cause: c });
  for (const v of Object.values(VERDICT_LABELS)) verdicts.labels({ verdict: v });
  for (const p of ['tcp', 'udp']) {
    streamsOpened.labels({ protocol: p });
    streamSentBytes.labels({ protocol: p });
    streamReceivedBytes.labels({ protocol: p });
  }

  const m: RelayMetrics = {
    registry,
    sessions,
    handshakes,
    rekeys,
    unknownSpiHints,
    handovers,
    verdicts,
    registrations,
    receivedBytes,
    sentBytes,
    packetsDropped,
    streamsOpened,
    streamsRefused,
    streamSentBytes,
    streamReceivedBytes,
    streamHeldBytes,
    rtt,
    observeRttMs: (encapsulation, ms) => rtt.observe({ encapsulation }, ms / 1000),
    syncStats: (stats) => {
      handshakes.set(undefined, stats.handshakes);
      rekeys.set(undefined, stats.rekeys);
      unknownSpiHints.set(undefined, stats.unknownSpiHints);
      const drops: Record<string, number> = { ...stats.espDrops, ...stats.controlDrops };
      for (const [reason, n] of Object.entries(drops)) packetsDropped.set({ reason }, n);
    },
  };
  const sessionsFn = o.sessions;
  const statsFn = o.stats;
  const forgottenFn = o.forgotten;
  if (sessionsFn) registry.onCollect(() => sessions.set(undefined, sessionsFn()));
  if (forgottenFn) registry.onCollect(() => forgotten.set(undefined, forgottenFn()));
  if (statsFn) registry.onCollect(() => m.syncStats(statsFn()));
  const heldFn = o.held;
  streamHeldBytes.labels({ direction: 'from_clients' });
  streamHeldBytes.labels({ direction: 'to_clients' });
  if (heldFn) {
    registry.onCollect(() => {
      const h = heldFn();
      streamHeldBytes.set({ direction: 'from_clients' }, h.fromClients);
      streamHeldBytes.set({ direction: 'to_clients' }, h.toClients);
    });
  }
  return m;
}
