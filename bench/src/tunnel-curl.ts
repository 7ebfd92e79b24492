/**
 * The one HTTP client of the tunnel benchmark: curl, the same binary and flags for every row
 * (direct, `ssh -D`, each roamlink encapsulation); only `--socks5-hostname` differs.
 *
 * - `download`: one GET of `/bytes?n=N` to /dev/null; MB/s = bytes / curl's time_total (so it
 *   includes the proxy handshake and connection set-up, as a user would see; 1 MB = 10^6 bytes).
 * - `latency`: one curl invocation with requests + 1 URLs for `/small`, which curl sends one
 *   after another on one kept-alive connection; the first transfer (connect and proxy handshake)
 *   is dropped, the rest give p50 and p99 of time_total. A transfer that opened a new connection
 *   after the first fails the measurement: it would not be a kept-alive series.
 * - `interleavedLatency`: the same on several ways into the origin at once (direct, and through
 *   each tunnel), one kept-alive connection each, taking turns request by request, so that every
 *   way is measured on the machine of the same seconds.
 */
import { spawn } from 'node:child_process';

export interface Download {
  bytes: number;
  seconds: number;
  MBps: number;
}

export interface Latency {
  requests: number;
  p50ms: number;
  p99ms: number;
  /** Connections curl opened for the whole series (1 when the connection was kept alive). */
  connects: number;
}

const WRITE_OUT = '%{http_code} %{size_download} %{time_total} %{num_connects}\\n';

/** The environment for curl without any proxy variables (direct must be direct). */
function curlEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (!/^(all|http|https|no|ftp|socks)_proxy$/i.test(k)) env[k] = v;
  }
  return env;
}

function curl(args: string[], stdin: string | null, timeoutMs: number): Promise<string> {
  return new Promise((resolve, reject) => {
    // -q first: ignore any .curlrc.
    const child = spawn('curl', ['-q', '-sS', ...args], {
      env: curlEnv(),
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let out = '';
    let err = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => {
      out += d;
    });
    child.stderr.setEncoding('utf8').on('data', (d: string) => {
      err += d;
    });
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.once('error', (e) => {
      clearTimeout(timer);
      reject(new Error(`cannot run curl: ${e.message}`));
    });
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      if (code === 0) resolve(out);
      else
        reject(
          new Error(
            `curl failed (${signal ?? `exit ${code}`}): ${err.trim().split('\n').pop() || 'no message'}`,
          ),
        );
    });
    child.stdin.on('error', () => {});
    child.stdin.end(stdin ?? '');
  });
}

interface Transfer {
  code: number;
  bytes: number;
  seconds: number;
  connects: number;
}

function parseTransfers(out: string): Transfer[] {
  return out
    .trim()
    .split('\n')
    .filter((l) => l.length > 0)
    .map((l) => {
      const [code, bytes, seconds, connects] = l.trim().split(/\s+/).map(Number);
      if (
        !Number.isFinite(code) ||
        !Number.isFinite(bytes) ||
        !Number.isFinite(seconds) ||
        !Number.isFinite(connects)
      )
        throw new Error(`unexpected curl output: ${l}`);
      return { code: code!, bytes: bytes!, seconds: seconds!, connects: connects! };
    });
}

function proxyArgs(socksPort: number | null): string[] {
  return socksPort === null ? ['--noproxy', '*'] : ['--socks5-hostname', `127.0.0.1:${socksPort}`];
}

/** Downloads `n` bytes from the origin through `socksPort` (null: direct). */
export async function download(
  originPort: number,
  n: number,
  socksPort: number | null,
  timeoutMs: number,
): Promise<Download> {
  const out = await curl(
    [
      ...proxyArgs(socksPort),
      '-o',
      '/dev/null',
      '-w',
      WRITE_OUT,
      `http://127.0.0.1:${originPort}/bytes?n=${n}`,
    ],
    null,
    timeoutMs,
  );
  const [t] = parseTransfers(out);
  if (!t) throw new Error('curl printed no transfer');
  if (t.code !== 200) throw new Error(`download answered HTTP ${t.code}`);
  if (t.bytes !== n) throw new Error(`downloaded ${t.bytes} bytes, expected ${n}`);
  if (!(t.seconds > 0)) throw new Error(`download took ${t.seconds} s`);
  return { bytes: t.bytes, seconds: t.seconds, MBps: t.bytes / t.seconds / 1e6 };
}

/**
 * Uploads the file at `path` (`n` bytes) to the origin's `/sink` through `socksPort` (null:
 * direct), to `port` (the origin's, or a proxy in front of it). The origin must count n.
 */
export async function upload(
  port: number,
  path: string,
  n: number,
  socksPort: number | null,
  timeoutMs: number,
): Promise<Download> {
  const out = await curl(
    [
      ...proxyArgs(socksPort),
      // No "Expect: 100-continue" round trip before the body.
      '-H',
      'Expect:',
      '--data-binary',
      `@${path}`,
      '-w',
      ' %{http_code} %{size_upload} %{time_total}',
      `http://127.0.0.1:${port}/sink`,
    ],
    null,
    timeoutMs,
  );
  const [counted, code, sent, seconds] = out.trim().split(/\s+/).map(Number);
  if (code !== 200) throw new Error(`upload answered HTTP ${code}`);
  if (counted !== n || sent !== n)
    throw new Error(`uploaded ${sent}, origin counted ${counted}, expected ${n}`);
  if (!(seconds! > 0)) throw new Error(`upload took ${seconds} s`);
  return { bytes: n, seconds: seconds!, MBps: n / seconds! / 1e6 };
}

/** Nearest-rank percentile (p in 0..100) of a non-empty list. */
export function percentile(xs: number[], p: number): number {
  if (xs.length === 0) throw new Error('percentile of an empty list');
  const s = [...xs].sort((a, b) => a - b);
  const rank = Math.max(1, Math.ceil((p / 100) * s.length));
  return s[rank - 1]!;
}

/**
 * Checks a series' answers and its one connection, and takes p50/p99 (the first is dropped);
 * `what` prefixes the errors.
 */
function seriesOf(ts: Transfer[], requests: number, expectBody: number, what: string): Latency {
  if (ts.length !== requests + 1)
    throw new Error(`${what}curl reported ${ts.length} transfers, expected ${requests + 1}`);
  for (const t of ts) {
    if (t.code === 0) throw new Error(`${what}a small request got no answer`);
    if (t.code !== 200) throw new Error(`${what}small request answered HTTP ${t.code}`);
    if (t.bytes !== expectBody) throw new Error(`${what}small body was ${t.bytes} bytes`);
  }
  const connects = ts.reduce((a, t) => a + t.connects, 0);
  if (connects !== 1)
    throw new Error(
      `${what}the connection was not kept alive (${connects} connections for the series)`,
    );
  // curl reports whole microseconds; keep them whole in milliseconds.
  const ms = ts.slice(1).map((t) => Math.round(t.seconds * 1e6) / 1e3);
  return { requests, p50ms: percentile(ms, 50), p99ms: percentile(ms, 99), connects };
}

/** `requests` sequential GETs of `/small` on one kept-alive connection (after one warm-up). */
export async function latency(
  originPort: number,
  requests: number,
  expectBody: number,
  socksPort: number | null,
  timeoutMs: number,
): Promise<Latency> {
  const url = `http://127.0.0.1:${originPort}/small`;
  // A config on stdin keeps argv short; each URL needs its own output.
  const config = `url = "${url}"\noutput = "/dev/null"\n`.repeat(requests + 1);
  const out = await curl([...proxyArgs(socksPort), '-w', WRITE_OUT, '-K', '-'], config, timeoutMs);
  return seriesOf(parseTransfers(out), requests, expectBody, '');
}

/** One of the ways into the origin that `interleavedLatency` takes turns on. */
export interface Way {
  /** The port curl asks for (the origin's, or a `-L` forward's that leads to it). */
  port: number;
  /** Through this SOCKS5 port; null: straight to `port`. */
  socksPort: number | null;
  /** What errors call it (default: its index). */
  name?: string;
}

/**
 * `requests` GETs of `/small` on each of `ways`, in one curl run on one kept-alive connection per
 * way (curl's `next` groups share its connection cache), taking turns: one request on each way per
 * cycle, the order rotated by one each cycle, so that every way goes first, second, ... equally
 * often. This machine's speed drifts within seconds: a direct p50 of 0.2 ms in one series and
 * 0.5 ms in the next, and a tunnel's own work slows with it. Taking turns, every way sees the same
 * machine. The first request on each way (its connection and proxy handshake) is dropped, as in
 * `latency`. Returns one Latency per way, in order.
 */
export async function interleavedLatency(
  ways: readonly Way[],
  requests: number,
  expectBody: number,
  timeoutMs: number,
): Promise<Latency[]> {
  if (ways.length === 0) throw new Error('no way to measure');
  // Options after `next` start afresh: every group names its URL, output, proxy and write-out,
  // and tags its line with the way's index.
  const group = (w: Way, i: number): string => {
    const via =
      w.socksPort === null ? 'noproxy = "*"' : `socks5-hostname = "127.0.0.1:${w.socksPort}"`;
    return `url = "http://127.0.0.1:${w.port}/small"\noutput = "/dev/null"\n${via}\nwrite-out = "${i} ${WRITE_OUT}"\n`;
  };
  const groups: string[] = [];
  for (let cycle = 0; cycle <= requests; cycle++) {
    for (let k = 0; k < ways.length; k++) {
      const i = (cycle + k) % ways.length;
      groups.push(group(ways[i]!, i));
    }
  }
  const out = await curl(['-K', '-'], groups.join('next\n'), timeoutMs);
  const byWay: string[][] = ways.map(() => []);
  for (const line of out.trim().split('\n')) {
    const sp = line.indexOf(' ');
    const i = Number(line.slice(0, sp));
    const to = byWay[i];
    if (sp < 1 || !Number.isInteger(i) || !to) throw new Error(`unexpected curl output: ${line}`);
    to.push(line.slice(sp + 1));
  }
  return byWay.map((lines, i) =>
    seriesOf(
      parseTransfers(lines.join('\n')),
      requests,
      expectBody,
      `${ways[i]!.name ?? `way ${i}`}: `,
    ),
  );
}
