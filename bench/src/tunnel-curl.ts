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
  const ts = parseTransfers(out);
  if (ts.length !== requests + 1)
    throw new Error(`curl reported ${ts.length} transfers, expected ${requests + 1}`);
  for (const t of ts) {
    if (t.code !== 200) throw new Error(`small request answered HTTP ${t.code}`);
    if (t.bytes !== expectBody) throw new Error(`small body was ${t.bytes} bytes`);
  }
  const connects = ts.reduce((a, t) => a + t.connects, 0);
  if (connects !== 1)
    throw new Error(`the connection was not kept alive (${connects} connections for the series)`);
  // curl reports whole microseconds; keep them whole in milliseconds.
  const ms = ts.slice(1).map((t) => Math.round(t.seconds * 1e6) / 1e3);
  return { requests, p50ms: percentile(ms, 50), p99ms: percentile(ms, 99), connects };
}
