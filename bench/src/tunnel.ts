/**
 * `pnpm bench tunnel [--size 1G] [--requests 1000] [--warmup 15000] [--runs 3] [--only udp,tcp] [--json]`:
 * a download through roamlink's SOCKS5 port over each encapsulation, beside the same download
 * direct (the ceiling) and through OpenSSH's `ssh -D` with aes128-gcm to a local sshd (what a
 * user would pick instead), all in the same run; plus p50/p99 of small requests on one
 * kept-alive connection for each.
 *
 * Method: the origin (tunnel-origin.ts) serves from memory in a worker thread; curl is the one
 * client for every row (tunnel-curl.ts), to /dev/null. MB/s = bytes / total transfer time, 1 MB =
 * 10^6 bytes. Every tool is started first and stays up; then `--runs N` rounds (default 3) each
 * download once direct, then once through each roamlink row, each right before or right after (by
 * turns) a download through `ssh -D` and one through the node pipe: its references. A row's MB/s is
 * the median of its rounds (ssh's and the pipe's, of all their downloads); `vsSsh` and `vsNodePipe`
 * are medians of the ratios to a row's own references (`vsSshRounds`, `vsNodePipeRounds`),
 * `vsDirect` to direct's download of the round. This machine's speed drifts by a third within
 * minutes, so a tool measured minutes after another was once ahead or behind by that alone; a round
 * of seven rows takes minutes too. Before the rounds, each tunnel downloads up to 256 MiB that does
 * not count: warm, as a long-lived tunnel is. Latency: `--requests` sequential GETs of a 100-byte
 * body on one kept-alive connection per tool after the downloads, through SOCKS and through `-L`,
 * after `--warmup` requests per tool and way that do not count (default 15 000, the same for every
 * tool; every warm-up before any counted series): right after a bulk download every tool's first
 * series is slower for a while, ssh's too, and V8 optimises a function fully only after
 * thousands of calls (`--invocation-count-for-turbofan`, 3000), which a function called once per
 * request reaches only then. A long-lived tunnel is in that state. Node processes take ~10 000
 * requests to get there, the node pipe too (its p50 ~0.44 ms over its first 2000, 0.14-0.17 from
 * 8000 on); with 5000 per series the first counted one still came out ~0.1 ms slower than the
 * second for roamlink, while ssh's figures did not move. Nearest-rank p50 and p99 of curl's
 * per-transfer time; the same again through a `-L` forward to the origin (ssh's `-L`, roamlink's
 * `-L`), which leaves SOCKS and curl's proxy code out of what the tunnel adds (`fwdP50ms`,
 * `addedFwdP50ms`). A third reference, the node
 * pipe (tunnel-node-pipe.ts): two Node processes in the client's and relay's places that only pipe
 * the bytes, the most a Node client and relay could do on this machine (`nodePipeMBps`,
 * `vsNodePipe`). Direct, ssh and the node pipe are repeated in every row. The counted requests
 * take turns (interleavedLatency): in each row's series, one request through the row, one through
 * `ssh -D`, one through the node pipe and one direct, then again with the order rotated, each on
 * its own kept-alive connection (and the same through the `-L` forwards). What a tool adds
 * (`addedP50ms`, `addedFwdP50ms`, `sshAddedP50ms`, `nodePipeAddedP50ms`, ...) is its p50 less
 * direct's p50 in the same series (the row's `directP50ms`, `directFwdP50ms`), and the row's
 * ssh and node pipe columns are theirs in its series: the machine's own latency drifts within
 * seconds (a direct p50 of 0.2 ms in one series and 0.5 ms in the next, a tunnel's own work
 * slowing with it), more than the target's margin. A roamlink row or ssh that fails records its
 * error in the row and the run goes on (a row's series that fails is tried with the row alone,
 * then with each reference alone, to tell whose failure it was); only a failing direct
 * measurement aborts the benchmark.
 */

import { treeCpuSeconds } from './proc-cpu.ts';
import type { Row } from './table.ts';
import { flag, median, printRows } from './table.ts';
import { download, interleavedLatency, type Latency, latency, type Way } from './tunnel-curl.ts';
import { startNodePipe } from './tunnel-node-pipe.ts';
import { type Origin, SMALL_BODY_BYTES, startOrigin } from './tunnel-origin.ts';
import { startRoamlinkTunnel } from './tunnel-roamlink.ts';
import { type SocksTunnel, startSshSocks } from './tunnel-ssh.ts';

/** `udp-1400`: UDP with the payload held at 1360 bytes (no path-MTU search): packets of 1400. */
/** wss and https: the WebSocket and HTTP rows again with TLS on the relay's HTTP port. */
export type Encapsulation = 'udp' | 'udp-1400' | 'tcp' | 'ws' | 'http' | 'wss' | 'https';
export const ENCAPSULATIONS: readonly Encapsulation[] = [
  'udp',
  'udp-1400',
  'tcp',
  'ws',
  'http',
  'wss',
  'https',
];
/** What each tunnel downloads before the counted rounds (at most the download size). */
const WARM_DOWNLOAD_BYTES = 256 * 2 ** 20;
/** Stream bytes in one 1400-byte packet of the `udp-1400` row (ESP and mux framing take the rest). */
const STREAM_BYTES_PER_1400 = 1340;

export interface Measured {
  /** Bytes of one download (checked against the requested size and the origin's count). */
  bytes: number;
  /** Seconds of the counted (median) download. */
  seconds: number;
  MBps: number;
  requests: number;
  p50ms: number;
  p99ms: number;
  /** The same small requests through the tunnel's `-L` forward (no SOCKS), when it has one. */
  fwdP50ms: number | null;
  fwdP99ms: number | null;
  /** CPU seconds the tunnel's own processes spent on the counted download (null: unknown). */
  cpuSeconds: number | null;
  /**
   * Through a tunnel: the small requests sent direct that took turns with its series (null for
   * direct itself), so that what the tunnel adds is taken against the machine of the same seconds.
   * For ssh and the node pipe, which take part in every row's series, each figure here is the
   * median over those series.
   */
  nearDirectP50ms: number | null;
  nearDirectP99ms: number | null;
  /** The same for the series through `-L`. */
  nearDirectFwdP50ms: number | null;
}

export interface TunnelRow {
  encapsulation: Encapsulation;
  /** The cipher suite roamlink's handshake agreed (the relay's measurement picks it). */
  suite: string | null;
  MBps: number | null;
  directMBps: number;
  sshMBps: number | null;
  /** The median over the rounds of MBps / the MBps of ssh's download next to this row's. */
  vsSsh: number | null;
  /** The median over the rounds of MBps / direct's MBps in the same round. */
  vsDirect: number | null;
  p50ms: number | null;
  p99ms: number | null;
  /**
   * The direct small requests that took turns with this row's series through SOCKS (the run's
   * own direct series when the row has none): the baseline of addedP50ms.
   */
  directP50ms: number;
  directP99ms: number;
  /** The same beside the row's series through `-L`: the baseline of addedFwdP50ms. */
  directFwdP50ms: number | null;
  /**
   * ssh's p50/p99 in this row's series (it takes turns with the row and direct), or its medians
   * over the run when the row has no series.
   */
  sshP50ms: number | null;
  sshP99ms: number | null;
  /** p50ms - directP50ms: what the tunnel adds to a small request. */
  addedP50ms: number | null;
  /** p50 of the small requests through the tunnel's `-L` forward, and ssh's `-L`. */
  fwdP50ms: number | null;
  sshFwdP50ms: number | null;
  /** fwdP50ms - directFwdP50ms: what the tunnel itself adds, without SOCKS. */
  addedFwdP50ms: number | null;
  /** What ssh adds through SOCKS and through `-L`, against the same direct requests as the row's. */
  sshAddedP50ms: number | null;
  sshAddedFwdP50ms: number | null;
  /** CPU seconds per GiB downloaded, of the tunnel's processes (client and relay; ssh and sshd). */
  cpuPerGiB: number | null;
  sshCpuPerGiB: number | null;
  /**
   * The same download and requests through two Node processes that only pipe the bytes (no
   * crypto, no framing; tunnel-node-pipe.ts): as fast as any tunnel made of a Node client and a
   * Node relay can go on this machine, measured in the same run.
   */
  nodePipeMBps: number | null;
  /** The median over the rounds of MBps / the MBps of the node pipe's download next to this row's. */
  vsNodePipe: number | null;
  /** The node pipe's figures in this row's series, as ssh's. */
  nodePipeP50ms: number | null;
  nodePipeFwdP50ms: number | null;
  /** What the node pipe adds through SOCKS and through `-L`, against the same direct requests. */
  nodePipeAddedP50ms: number | null;
  nodePipeAddedFwdP50ms: number | null;
  nodePipeCpuPerGiB: number | null;
  /** udp-1400 only: packets per second (of 1400 bytes on the wire) the download took. */
  pps: number | null;
  /**
   * This row's MB/s over that of the `ssh -D` download next to it, in each round (vsSsh is their
   * median); empty without both figures.
   */
  vsSshRounds: number[];
  /** The same against the node pipe's download next to it (vsNodePipe is their median). */
  vsNodePipeRounds: number[];
  bytes: number;
  requests: number;
  /** Requests before each counted series, not counted. */
  warmup: number;
  runs: number;
  /** Why this row has no roamlink figures (null when it has them). */
  error: string | null;
  /** Why the ssh columns are null (null when ssh was measured). */
  sshError: string | null;
  /** Why the node pipe columns are null (null when it was measured). */
  nodePipeError: string | null;
  info: Record<string, unknown> | null;
}

export interface TunnelBenchOptions {
  size: number;
  requests: number;
  /** Requests before each counted series, not counted (default `requests`). */
  warmup?: number;
  encapsulations: readonly Encapsulation[];
  /**
   * Rounds of downloads (every tunnel stays up for the run): direct once, then each roamlink row
   * next to an `ssh -D` and a node pipe download of its own; medians count, and a row's ratios are
   * to its own references. Default 1.
   */
  runs?: number;
  /** Measure `ssh -D` (default true). */
  ssh?: boolean;
  /** Measure the node pipe floor (default true). */
  nodePipe?: boolean;
  /** Starts a roamlink tunnel (with a `-L` forward to `originPort`); default `startRoamlinkTunnel`. */
  start?: (encapsulation: Encapsulation, originPort: number) => Promise<SocksTunnel>;
  /** Progress lines (default: none). */
  log?: (line: string) => void;
  /** Live progress within a download, overwritten in place (default: none). */
  status?: (line: string) => void;
}

export interface TunnelBenchResult {
  direct: Measured;
  ssh: { measured: Measured | null; error: string | null; info: Record<string, unknown> | null };
  nodePipe: { measured: Measured | null; error: string | null };
  rows: TunnelRow[];
}

const UNITS: Record<string, number> = { '': 1, k: 2 ** 10, m: 2 ** 20, g: 2 ** 30, t: 2 ** 40 };

/** Parses a byte count: `1073741824`, `64M`, `64MiB`, `1G`, `1GiB`, `512k` (binary units). */
export function parseSize(s: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?$/i.exec(s.trim());
  if (!m) throw new Error(`cannot read size "${s}" (e.g. 64M, 1G, 1048576)`);
  const n = Math.round(Number(m[1]) * UNITS[m[2]!.toLowerCase()]!);
  if (!Number.isSafeInteger(n) || n < 1) throw new Error(`size "${s}" is out of range`);
  return n;
}

function fmtSize(n: number): string {
  for (const [u, f] of [
    ['GiB', 2 ** 30],
    ['MiB', 2 ** 20],
    ['KiB', 2 ** 10],
  ] as const)
    if (n >= f && n % (f / 16) === 0) return `${n / f} ${u}`;
  return `${n} B`;
}

function message(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

/** One download through one contender. */
interface Speed {
  MBps: number;
  seconds: number;
  /** CPU seconds of the tunnel's own processes (null: unknown, or direct). */
  cpu: number | null;
}

/** One tool of the run: direct (no tunnel), ssh -D, the node pipe, or a roamlink encapsulation. */
interface Contender {
  label: string;
  /** null for direct. */
  tunnel: SocksTunnel | null;
  /** Why it has no (more) figures: it did not start, or a download or series failed. */
  error: string | null;
  /** Every download it made, in order, with its round. */
  speeds: (Speed & { round: number })[];
  /**
   * A roamlink row's references: in each round, the `ssh -D` and node pipe downloads made right
   * before or after its own.
   */
  refs: Map<number, Map<Contender, Speed>>;
  /**
   * The small-request series it took part in: a roamlink row's own (with its references and
   * direct), and for ssh and the node pipe one per row.
   */
  latRuns: LatencyRun[];
  measured: Measured | null;
}

/**
 * One turn-taking series of small requests (interleavedLatency): a roamlink row, its references
 * and direct, through SOCKS and again through `-L` (direct is keyed by its own contender).
 */
interface LatencyRun {
  socks: Map<Contender, Latency>;
  fwd: Map<Contender, Latency>;
}

async function downloadOnce(
  origin: Origin,
  c: Contender,
  o: TunnelBenchOptions,
  round: number,
): Promise<Speed> {
  const runs = o.runs ?? 1;
  const downloadTimeout = 60_000 + o.size / 2e3; // a floor of 2 MB/s
  const pids = c.tunnel?.pids;
  const before = origin.bytesSent();
  const cpu0 = pids ? treeCpuSeconds(pids) : undefined;
  const t0 = performance.now();
  const tick = o.status
    ? setInterval(() => {
        const sent = origin.bytesSent() - before;
        const s = (performance.now() - t0) / 1000;
        o.status!(
          `  ${c.label}: ${(sent / 2 ** 20).toFixed(0)} / ${(o.size / 2 ** 20).toFixed(0)} MiB, ${(sent / s / 1e6).toFixed(0)} MB/s`,
        );
      }, 250)
    : null;
  let speed: Speed;
  try {
    const d = await download(origin.port, o.size, c.tunnel?.socksPort ?? null, downloadTimeout);
    const sent = origin.bytesSent() - before;
    if (sent !== o.size) throw new Error(`the origin sent ${sent} bytes, expected ${o.size}`);
    const cpu1 = pids ? treeCpuSeconds(pids) : undefined;
    speed = {
      MBps: d.MBps,
      seconds: d.seconds,
      cpu: cpu0 === undefined || cpu1 === undefined ? null : cpu1 - cpu0,
    };
  } finally {
    if (tick) clearInterval(tick);
    o.status?.('');
  }
  c.speeds.push({ ...speed, round });
  o.log?.(
    `  ${c.label}: ${fmtSize(o.size)} in ${speed.seconds.toFixed(2)} s, ${speed.MBps.toFixed(1)} MB/s${runs > 1 ? ` (round ${round + 1}/${runs})` : ''}`,
  );
  return speed;
}

/**
 * Warm-up requests through `c`, not counted, through SOCKS and then through `-L`: right after a
 * bulk download every tool's first series is slower for a while (ssh's too), and a fresh
 * process's code is not optimised yet. Every tool warms up before any series counts.
 */
async function warmLatency(origin: Origin, c: Contender, o: TunnelBenchOptions): Promise<void> {
  const warmup = o.warmup ?? o.requests;
  const warm = async (port: number, proxy: number | null, what: string): Promise<void> => {
    o.status?.(`  ${c.label}: ${warmup} small requests${what} to warm up...`);
    try {
      await latency(port, warmup, SMALL_BODY_BYTES, proxy, 60_000 + warmup * 100);
    } finally {
      o.status?.('');
    }
  };
  await warm(origin.port, c.tunnel!.socksPort, '');
  // The forward leads to the origin: curl talks to it as to the origin itself.
  const fwd = c.tunnel!.forwardPort;
  if (fwd !== undefined) await warm(fwd, null, ' through -L');
}

/**
 * `o.requests` small requests through each of `tools` and direct, taking turns request by
 * request (interleavedLatency), through SOCKS; then the same through the `-L` forwards of those
 * that have one. What a tool adds is its p50 less direct's p50 of the same series.
 */
async function latencyRun(
  origin: Origin,
  tools: Contender[],
  direct: Contender,
  o: TunnelBenchOptions,
): Promise<LatencyRun> {
  const take = async (
    ts: Contender[],
    way: (t: Contender) => Way,
    what: string,
  ): Promise<Map<Contender, Latency>> => {
    const all = [...ts, direct];
    o.status?.(
      `  ${o.requests} small requests${what} on each of ${all.map((t) => t.label).join(', ')}, taking turns...`,
    );
    let ls: Latency[];
    try {
      ls = await interleavedLatency(
        [
          ...ts.map((t) => ({ ...way(t), name: t.label })),
          { port: origin.port, socksPort: null, name: 'direct' },
        ],
        o.requests,
        SMALL_BODY_BYTES,
        60_000 + o.requests * all.length * 100,
      );
    } finally {
      o.status?.('');
    }
    const m = new Map<Contender, Latency>();
    all.forEach((t, i) => {
      const l = ls[i]!;
      m.set(t, l);
      // Direct's requests go to the origin itself, beside the series through -L.
      const how = t === direct && what ? ` beside those${what}` : what;
      o.log?.(
        `  ${t.label}: ${o.requests} small requests${how}, p50 ${l.p50ms.toFixed(3)} ms, p99 ${l.p99ms.toFixed(3)} ms`,
      );
    });
    return m;
  };
  const socks = await take(
    tools,
    (t) => ({ port: origin.port, socksPort: t.tunnel!.socksPort }),
    '',
  );
  const withFwd = tools.filter((t) => t.tunnel!.forwardPort !== undefined);
  const fwd =
    withFwd.length === 0
      ? new Map<Contender, Latency>()
      : await take(
          withFwd,
          (t) => ({ port: t.tunnel!.forwardPort!, socksPort: null }),
          ' through -L',
        );
  return { socks, fwd };
}

function contender(label: string, error: string | null = null): Contender {
  return { label, tunnel: null, error, speeds: [], refs: new Map(), latRuns: [], measured: null };
}

/** Records why `c` has no (more) figures. */
function fail(c: Contender, e: unknown, o: TunnelBenchOptions): void {
  o.log?.(`${c.label}: failed: ${message(e)}`);
  c.error = message(e);
}

/** Starts a tunnel for the run; a failure is the contender's error. */
async function startContender(
  label: string,
  start: () => Promise<SocksTunnel>,
  o: TunnelBenchOptions,
): Promise<Contender> {
  const c = contender(label);
  try {
    o.log?.(`${label}: starting`);
    c.tunnel = await start();
  } catch (e) {
    o.log?.(`${label}: cannot start: ${message(e)}`);
    c.error = `cannot start: ${message(e)}`;
  }
  return c;
}

/**
 * `a`'s speed over `ref`'s in each round both took part in, in round order: against a reference
 * download made right before or after `a`'s where there is one (`ssh -D`, the node pipe), else
 * against `ref`'s download of the same round (direct).
 */
function roundRatios(a: Contender, ref: Contender): number[] {
  const out: number[] = [];
  for (const s of a.speeds) {
    const t = a.refs.get(s.round)?.get(ref) ?? ref.speeds.find((x) => x.round === s.round);
    if (t) out.push(s.MBps / t.MBps);
  }
  return out;
}

export async function runTunnelBench(o: TunnelBenchOptions): Promise<TunnelBenchResult> {
  if (!Number.isSafeInteger(o.size) || o.size < 1) throw new Error('size must be a byte count');
  if (!Number.isSafeInteger(o.requests) || o.requests < 1)
    throw new Error('requests must be a positive integer');
  if (!Number.isSafeInteger(o.warmup ?? 1) || (o.warmup ?? 1) < 1)
    throw new Error('warmup must be a positive integer');
  if (!Number.isSafeInteger(o.runs ?? 1) || (o.runs ?? 1) < 1)
    throw new Error('runs must be a positive integer');
  const runs = o.runs ?? 1;
  const origin = await startOrigin();
  const direct = contender('direct');
  const all: Contender[] = [direct];
  try {
    // Every tool is started first and stays up: the downloads then go in rounds, each row next to
    // its own references, so that each ratio compares downloads made seconds apart. This
    // machine's speed drifts by a third within minutes; one tool measured minutes after another
    // measured that.
    const ssh =
      o.ssh === false
        ? contender('ssh -D', 'not measured')
        : await startContender('ssh -D', () => startSshSocks(10_000, origin.port), o);
    const nodePipe =
      o.nodePipe === false
        ? contender('node pipe', 'not measured')
        : await startContender('node pipe', () => startNodePipe(origin.port), o);
    const start = o.start ?? startRoamlinkTunnel;
    const encs: Contender[] = [];
    for (const enc of o.encapsulations) {
      encs.push(await startContender(`roamlink ${enc}`, () => start(enc, origin.port), o));
    }
    all.push(ssh, nodePipe, ...encs);

    // One download through each tunnel first, not counted: a fresh Node process runs its first
    // transfer with code V8 has not optimised yet; a long-lived tunnel does not.
    const warmBytes = Math.min(o.size, WARM_DOWNLOAD_BYTES);
    for (const c of all) {
      if (c === direct || c.error !== null) continue;
      try {
        o.status?.(`  ${c.label}: ${fmtSize(warmBytes)} to warm up...`);
        await download(origin.port, warmBytes, c.tunnel!.socksPort, 60_000 + warmBytes / 2e3);
      } catch (e) {
        fail(c, e, o);
      } finally {
        o.status?.('');
      }
    }
    o.log?.(
      `${fmtSize(o.size)} downloads: ${runs} round${runs > 1 ? 's' : ''} (direct once, then each roamlink row next to its own ssh -D and node pipe downloads), after ${fmtSize(warmBytes)} through each tunnel not counted`,
    );
    const attempt = async (c: Contender, round: number): Promise<Speed | undefined> => {
      if (c.error !== null) return undefined;
      try {
        return await downloadOnce(origin, c, o, round);
      } catch (e) {
        // Direct failing means the machine cannot measure anything.
        if (c === direct) throw e;
        fail(c, e, o);
        return undefined;
      }
    };
    for (let round = 0; round < runs; round++) {
      await attempt(direct, round);
      // A different row goes first in each round; each row's references are downloaded right
      // before it or right after it, by turns, so that its ratios compare downloads seconds apart
      // even when a round of seven rows takes minutes.
      const rows = encs.filter((c) => c.error === null);
      for (let i = 0; i < rows.length; i++) {
        const c = rows[(i + round) % rows.length]!;
        const refsFirst = (round + i) % 2 === 0;
        const got = new Map<Contender, Speed>();
        const refs = async (): Promise<void> => {
          for (const r of [ssh, nodePipe]) {
            const speed = await attempt(r, round);
            if (speed) got.set(r, speed);
          }
        };
        if (refsFirst) await refs();
        const own = await attempt(c, round);
        if (!refsFirst && own) await refs();
        if (own) c.refs.set(round, got);
      }
      // No roamlink row (none started): the references still get one download each.
      if (rows.length === 0) for (const r of [ssh, nodePipe]) await attempt(r, round);
    }

    o.log?.(
      `small requests: ${o.requests} per series after ${o.warmup ?? o.requests} not counted; each roamlink row takes turns, request by request, with ssh -D, the node pipe and direct`,
    );
    for (const c of all) {
      if (c === direct || c.error !== null) continue;
      try {
        await warmLatency(origin, c, o);
      } catch (e) {
        fail(c, e, o);
      }
    }
    // Direct alone, once: the baseline of a row that has no series of its own. Direct failing
    // means the machine cannot measure anything.
    const directAlone = await latency(
      origin.port,
      o.requests,
      SMALL_BODY_BYTES,
      null,
      60_000 + o.requests * 100,
    );
    o.log?.(
      `  direct: ${o.requests} small requests, p50 ${directAlone.p50ms.toFixed(3)} ms, p99 ${directAlone.p99ms.toFixed(3)} ms`,
    );
    const refsUp = (): Contender[] => [ssh, nodePipe].filter((r) => r.error === null);
    /** One series of `tools` (and direct), recorded with each of them; throws if it fails. */
    const measure = async (tools: Contender[]): Promise<void> => {
      const run = await latencyRun(origin, tools, direct, o);
      for (const t of tools) t.latRuns.push(run);
    };
    /** `measure`; false with `c` failed if the series cannot be measured. */
    const runFor = async (c: Contender, tools: Contender[]): Promise<boolean> => {
      try {
        await measure(tools);
        return true;
      } catch (e) {
        fail(c, e, o);
        return false;
      }
    };
    for (const c of encs) {
      if (c.error !== null) continue;
      const refs = refsUp();
      o.log?.(`  ${c.label}'s series: ${[c, ...refs, direct].map((t) => t.label).join(', ')}`);
      try {
        await measure([c, ...refs]);
      } catch (e) {
        // Whose failure: the row's alone tells. If the row passes alone, each reference is tried.
        o.log?.(`  ${c.label}'s series failed (${message(e)}); the row alone, then each reference`);
        if (!(await runFor(c, [c]))) continue;
        for (const r of refs) await runFor(r, [r]);
      }
    }
    // No roamlink row was measured: the references still get a series each.
    if (!encs.some((c) => c.latRuns.length > 0)) for (const r of refsUp()) await runFor(r, [r]);

    for (const c of all) {
      if (c.error !== null) continue;
      if (c !== direct && c.latRuns.length === 0) {
        fail(c, new Error('no small requests measured'), o);
        continue;
      }
      // Medians over every series it took part in (ssh and the pipe, one per row), and over
      // every download it made (ssh and the pipe make one per row per round).
      const runs = c.latRuns;
      const med = (get: (r: LatencyRun) => number | undefined): number | null => {
        const xs = runs.map(get).filter((x): x is number => x !== undefined);
        return xs.length > 0 ? median(xs) : null;
      };
      const speeds = c.speeds;
      c.measured = {
        bytes: o.size,
        seconds: median(speeds.map((s) => s.seconds)),
        MBps: median(speeds.map((s) => s.MBps)),
        requests: o.requests,
        p50ms: c === direct ? directAlone.p50ms : med((r) => r.socks.get(c)?.p50ms)!,
        p99ms: c === direct ? directAlone.p99ms : med((r) => r.socks.get(c)?.p99ms)!,
        fwdP50ms: med((r) => r.fwd.get(c)?.p50ms),
        fwdP99ms: med((r) => r.fwd.get(c)?.p99ms),
        nearDirectP50ms: c === direct ? null : med((r) => r.socks.get(direct)?.p50ms),
        nearDirectP99ms: c === direct ? null : med((r) => r.socks.get(direct)?.p99ms),
        nearDirectFwdP50ms: med((r) => (r.fwd.has(c) ? r.fwd.get(direct)?.p50ms : undefined)),
        cpuSeconds: speeds.every((s) => s.cpu !== null)
          ? median(speeds.map((s) => s.cpu as number))
          : null,
      };
    }

    const d = direct.measured!;
    const s = ssh.measured;
    const np = nodePipe.measured;
    /** The difference of two p50s, when both were measured. */
    const less = (a: number | null | undefined, b: number | null | undefined): number | null =>
      a == null || b == null ? null : a - b;
    // CPU comes in 10 ms ticks: three decimals say all there is (and keep float noise out of JSON).
    const perGiB = (t: Measured | null): number | null =>
      t?.cpuSeconds != null ? Math.round((t.cpuSeconds * 2 ** 30 * 1000) / o.size) / 1000 : null;
    /** `c`'s per-round ratios to `ref`, when both were measured. */
    const ratios = (c: Contender, ref: Contender): number[] =>
      c.measured && ref.measured ? roundRatios(c, ref) : [];
    const medianOf = (xs: number[]): number | null => (xs.length > 0 ? median(xs) : null);
    const rows: TunnelRow[] = o.encapsulations.map((enc, i) => {
      const c = encs[i]!;
      const m = c.measured;
      const info = c.tunnel?.info ?? null;
      const vsSshRounds = ratios(c, ssh);
      const vsNodePipeRounds = ratios(c, nodePipe);
      // The row's own series of small requests, in which its references and direct took turns.
      const run = m ? c.latRuns[0] : undefined;
      const inRun = (t: Contender, fwd: boolean): Latency | undefined =>
        run && (fwd ? run.fwd : run.socks).get(t);
      /** What `t` adds in this row's series: its p50 less direct's (null if it took no part). */
      const addedInRun = (t: Contender, fwd: boolean): number | null =>
        less(inRun(t, fwd)?.p50ms, inRun(direct, fwd)?.p50ms);
      /** A reference's figures in this row's series, or its medians when it took no part. */
      const ref = (t: Contender) => {
        const tm = t.measured;
        if (!tm) return { p50: null, p99: null, fwd: null, added: null, addedFwd: null };
        const a = inRun(t, false);
        const f = inRun(t, true);
        return {
          p50: a?.p50ms ?? tm.p50ms,
          p99: a?.p99ms ?? tm.p99ms,
          fwd: f?.p50ms ?? tm.fwdP50ms,
          added: a ? addedInRun(t, false) : less(tm.p50ms, tm.nearDirectP50ms),
          addedFwd: f ? addedInRun(t, true) : less(tm.fwdP50ms, tm.nearDirectFwdP50ms),
        };
      };
      const sr = ref(ssh);
      const pr = ref(nodePipe);
      return {
        encapsulation: enc,
        suite: typeof info?.suite === 'string' ? info.suite : null,
        MBps: m?.MBps ?? null,
        directMBps: d.MBps,
        sshMBps: s?.MBps ?? null,
        vsSsh: medianOf(vsSshRounds),
        vsDirect: medianOf(ratios(c, direct)),
        p50ms: m?.p50ms ?? null,
        p99ms: m?.p99ms ?? null,
        directP50ms: inRun(direct, false)?.p50ms ?? d.p50ms,
        directP99ms: inRun(direct, false)?.p99ms ?? d.p99ms,
        directFwdP50ms: inRun(direct, true)?.p50ms ?? null,
        sshP50ms: sr.p50,
        sshP99ms: sr.p99,
        addedP50ms: addedInRun(c, false),
        fwdP50ms: m?.fwdP50ms ?? null,
        sshFwdP50ms: sr.fwd,
        addedFwdP50ms: addedInRun(c, true),
        sshAddedP50ms: sr.added,
        sshAddedFwdP50ms: sr.addedFwd,
        cpuPerGiB: perGiB(m),
        sshCpuPerGiB: perGiB(s),
        nodePipeMBps: np?.MBps ?? null,
        vsNodePipe: medianOf(vsNodePipeRounds),
        nodePipeP50ms: pr.p50,
        nodePipeFwdP50ms: pr.fwd,
        nodePipeAddedP50ms: pr.added,
        nodePipeAddedFwdP50ms: pr.addedFwd,
        nodePipeCpuPerGiB: perGiB(np),
        pps: m && enc === 'udp-1400' ? Math.round((m.MBps * 1e6) / STREAM_BYTES_PER_1400) : null,
        vsSshRounds,
        vsNodePipeRounds,
        bytes: o.size,
        requests: o.requests,
        warmup: o.warmup ?? o.requests,
        runs,
        error: c.error,
        sshError: ssh.error,
        nodePipeError: nodePipe.error,
        info,
      };
    });
    return {
      direct: d,
      ssh: { measured: s, error: ssh.error, info: ssh.tunnel?.info ?? null },
      nodePipe: { measured: np, error: nodePipe.error },
      rows,
    };
  } finally {
    for (const c of all) {
      await c.tunnel
        ?.stop()
        .catch((e: unknown) => o.log?.(`${c.label}: stop failed: ${message(e)}`));
    }
    await origin.stop();
  }
}

function arg(args: string[], name: string): string | undefined {
  const eq = args.find((a) => a.startsWith(`--${name}=`));
  if (eq) return eq.slice(name.length + 3);
  const i = args.indexOf(`--${name}`);
  if (i < 0) return undefined;
  const v = args[i + 1];
  if (v === undefined || v.startsWith('--')) throw new Error(`--${name} needs a value`);
  return v;
}

function positiveInt(args: string[], name: string, fallback: number): number {
  const s = arg(args, name);
  if (s === undefined) return fallback;
  const n = Number(s);
  if (!Number.isSafeInteger(n) || n < 1) throw new Error(`--${name} needs a positive integer`);
  return n;
}

export function parseOnly(s: string | undefined): Encapsulation[] {
  if (s === undefined) return [...ENCAPSULATIONS];
  const names = s
    .split(',')
    .map((x) => x.trim())
    .filter((x) => x.length > 0);
  for (const n of names)
    if (!(ENCAPSULATIONS as readonly string[]).includes(n))
      throw new Error(`--only: unknown encapsulation "${n}" (${ENCAPSULATIONS.join(', ')})`);
  if (names.length === 0) throw new Error('--only needs at least one encapsulation');
  return [...new Set(names)] as Encapsulation[];
}

const VALUE_FLAGS = ['size', 'requests', 'warmup', 'runs', 'only'];

/** The first argument that is neither a known flag nor a known flag's value, if any. */
export function unknownArg(args: string[]): string | undefined {
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    if (a === '--json' || a === '--quick') continue;
    const name = a.startsWith('--') ? a.slice(2).split('=')[0]! : '';
    if (!VALUE_FLAGS.includes(name)) return a;
    if (!a.includes('=')) i++;
  }
  return undefined;
}

export async function run(args: string[]): Promise<void> {
  const json = flag(args, 'json');
  // --quick: a smoke run (128 MiB, 200 requests after 3000), for `pnpm bench all --quick`.
  const quick = flag(args, 'quick');
  const usage = `usage: pnpm bench tunnel [--quick] [--size 1G] [--requests 1000] [--warmup 15000] [--runs 3] [--only ${ENCAPSULATIONS.join(',')}] [--json]\n`;
  if (args.includes('--help') || args.includes('-h')) {
    process.stdout.write(usage);
    return;
  }
  let o: TunnelBenchOptions;
  try {
    const bad = unknownArg(args);
    if (bad !== undefined) throw new Error(`unknown argument "${bad}"`);
    o = {
      size: parseSize(arg(args, 'size') ?? (quick ? '128M' : '1G')),
      requests: positiveInt(args, 'requests', quick ? 200 : 1000),
      warmup: positiveInt(args, 'warmup', quick ? 3000 : 15_000),
      runs: positiveInt(args, 'runs', quick ? 1 : 3),
      encapsulations: parseOnly(arg(args, 'only')),
    };
  } catch (e) {
    process.stderr.write(`${message(e)}\n${usage}`);
    process.exitCode = 2;
    return;
  }
  const tty = process.stderr.isTTY === true;
  let statusShown = false;
  const clearStatus = (): void => {
    if (statusShown) process.stderr.write('\r\x1b[K');
    statusShown = false;
  };
  o.log = (line) => {
    clearStatus();
    process.stderr.write(`${line}\n`);
  };
  if (tty)
    o.status = (line) => {
      clearStatus();
      if (line) {
        process.stderr.write(line);
        statusShown = true;
      }
    };
  // Ctrl-C: exit through 'exit' so the ssh module's hook ends sshd and ssh and removes its files.
  const onSignal = (): void => process.exit(130);
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  try {
    const { rows, ssh, nodePipe } = await runTunnelBench(o);
    if (json) {
      process.stdout.write(`${JSON.stringify(rows, null, 2)}\n`);
      return;
    }
    const table: Row[] = rows.map((r) => {
      const {
        error: _e,
        sshError: _s,
        nodePipeError: _n,
        info: _i,
        bytes: _b,
        requests: _q,
        warmup: _w,
        runs: _r,
        vsSshRounds: _vs,
        vsNodePipeRounds: _vn,
        ...cols
      } = r;
      return Object.fromEntries(Object.entries(cols).map(([k, v]) => [k, v ?? '-']));
    });
    printRows(
      table,
      false,
      `Tunnel: ${fmtSize(o.size)} download (MB/s, 1 MB = 10^6 B) and ${o.requests} small requests on one kept-alive connection (ms, after ${o.warmup ?? o.requests} not counted), through SOCKS5; direct, ssh -D (${ssh.info?.cipher ?? 'aes128-gcm'}) and a node pipe (two Node processes that only pipe the bytes) in the same run`,
    );
    const byRound = (xs: number[]): string => xs.map((x) => x.toFixed(2)).join(' ');
    const rounds = rows
      .filter((r) => r.vsSshRounds.length > 1 || r.vsNodePipeRounds.length > 1)
      .map(
        (r) =>
          `  ${r.encapsulation}: vsSsh ${byRound(r.vsSshRounds) || '-'}; vsNodePipe ${byRound(r.vsNodePipeRounds) || '-'}`,
      );
    if (rounds.length) process.stdout.write(`\nBy round:\n${rounds.join('\n')}\n`);
    const notes = [
      ...(ssh.error ? [`ssh -D: ${ssh.error}`] : []),
      ...(nodePipe.error ? [`node pipe: ${nodePipe.error}`] : []),
      ...rows.filter((r) => r.error).map((r) => `${r.encapsulation}: ${r.error}`),
    ];
    if (notes.length) process.stdout.write(`\n${notes.map((n) => `  ${n}`).join('\n')}\n`);
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}
