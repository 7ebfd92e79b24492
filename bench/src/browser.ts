/**
 * `pnpm bench browser [--size 16M] [--requests 200] [--quick] [--json]`: a stream from a page in
 * headless Chromium through the Node relay (a real `roamlink relay` process) to a TCP echo server,
 * over WebSocket, HTTP streaming and HTTP polling, beside a plain WebSocket echo in the same
 * browser (the ceiling: no roamlink, no crypto); plus the connect time with WebSocket blocked (a
 * proxy refusing upgrades: the page is connected over HTTP).
 *
 * Method: one page and one session per row, each with its own client key. MB/s = bytes / time of
 * an echo transfer (the page writes `--size` bytes and reads them all back, every byte checked;
 * each byte crosses twice), 1 MB = 10^6 bytes. Latency: `--requests` sequential round trips of 100
 * bytes on one stream (or the plain WebSocket) after one warm-up; nearest-rank p50 and p99.
 * Connect: from `connect()` to the first registration, as the page measures it.
 *
 * The e2e suite's harness (e2e/src/harness.ts) provides the relay, the servers and the browser.
 */
import {
  type Browsing,
  clientKey,
  ensureBundle,
  LOOPBACK,
  openPage,
  startEcho,
  startRelay,
  startStatic,
  startWsEcho,
} from '../../e2e/src/harness.ts';
import {
  pageConnect,
  pageFinish,
  pagePingPong,
  pageStartEcho,
  pageWsEcho,
} from '../../e2e/src/page.ts';
import { flag, printRows, type Row } from './table.ts';
import { parseSize } from './tunnel.ts';

export type BrowserPathName = 'websocket' | 'http-stream' | 'http-poll';
const PATHS: readonly BrowserPathName[] = ['websocket', 'http-stream', 'http-poll'];

export interface BrowserRow {
  /** "plain websocket" (the ceiling), a roamlink encapsulation, or "ws blocked → http". */
  path: string;
  MBps: number | null;
  /** MBps / the plain WebSocket's. */
  vsCeiling: number | null;
  p50ms: number | null;
  p99ms: number | null;
  connectMs: number | null;
  bytes: number;
  requests: number;
  error: string | null;
}

export interface BrowserBenchOptions {
  size: number;
  requests: number;
  log?: (line: string) => void;
}

/** Nearest-rank percentile of a non-empty list. */
export function percentile(xs: readonly number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))]!;
}

const message = (e: unknown): string => (e instanceof Error ? e.message : String(e));

export async function runBrowserBench(o: BrowserBenchOptions): Promise<BrowserRow[]> {
  if (!Number.isSafeInteger(o.size) || o.size < 1) throw new Error('size must be a byte count');
  if (!Number.isSafeInteger(o.requests) || o.requests < 1) {
    throw new Error('requests must be a positive integer');
  }
  ensureBundle();
  const keys = [...PATHS, 'blocked'].map(() => clientKey());
  const relay = await startRelay(keys);
  const echo = await startEcho();
  const wsEcho = await startWsEcho();
  const site = await startStatic();
  const proxy = await startStatic(relay);
  const rows: BrowserRow[] = [];
  const withPage = async <T>(url: string, fn: (b: Browsing) => Promise<T>): Promise<T> => {
    const b = await openPage(url);
    try {
      return await fn(b);
    } finally {
      await b.close();
    }
  };
  try {
    o.log?.(`plain websocket (the ceiling): ${o.size} bytes echoed, ${o.requests} round trips`);
    const ceiling = await withPage(site.url, (b) =>
      pageWsEcho(b.page, { url: wsEcho.url, total: o.size, count: o.requests }),
    );
    const ceilingMBps = o.size / 1e6 / (ceiling.ms / 1000);
    rows.push({
      path: 'plain websocket',
      MBps: ceilingMBps,
      vsCeiling: 1,
      p50ms: percentile(ceiling.times, 50),
      p99ms: percentile(ceiling.times, 99),
      connectMs: null,
      bytes: o.size,
      requests: o.requests,
      error: null,
    });
    for (const [i, path] of PATHS.entries()) {
      o.log?.(`roamlink over ${path}`);
      const enc = path === 'websocket' ? 'ws' : path;
      try {
        const r = await withPage(site.url, async (b) => {
          const c = await pageConnect(b.page, {
            relay: relay.url,
            relayKey: relay.publicKey,
            clientKey: keys[i]!.secretHex,
            encapsulations: [enc],
          });
          if (c.status.encapsulation !== path) {
            throw new Error(`registered on ${c.status.encapsulation}, not ${path}`);
          }
          await pageStartEcho(b.page, { host: LOOPBACK, port: echo.port, total: o.size });
          const p = await pageFinish(b.page);
          if (p.error !== undefined || p.received !== o.size) {
            throw new Error(`transfer: ${p.error ?? `${p.received} of ${o.size} bytes`}`);
          }
          const times = await pagePingPong(b.page, {
            host: LOOPBACK,
            port: echo.port,
            count: o.requests,
          });
          return { connectMs: c.ms, ms: p.ms, times };
        });
        const MBps = o.size / 1e6 / (r.ms / 1000);
        rows.push({
          path,
          MBps,
          vsCeiling: MBps / ceilingMBps,
          p50ms: percentile(r.times, 50),
          p99ms: percentile(r.times, 99),
          connectMs: r.connectMs,
          bytes: o.size,
          requests: o.requests,
          error: null,
        });
      } catch (e) {
        o.log?.(`  ${path}: failed: ${message(e)}`);
        rows.push({
          path,
          MBps: null,
          vsCeiling: null,
          p50ms: null,
          p99ms: null,
          connectMs: null,
          bytes: o.size,
          requests: o.requests,
          error: message(e),
        });
      }
    }
    o.log?.('connect with WebSocket blocked (a proxy refuses upgrades)');
    try {
      const c = await withPage(proxy.url, (b) =>
        pageConnect(b.page, {
          relay: proxy.url,
          relayKey: relay.publicKey,
          clientKey: keys[PATHS.length]!.secretHex,
        }),
      );
      rows.push({
        path: `ws blocked → ${c.status.encapsulation}`,
        MBps: null,
        vsCeiling: null,
        p50ms: null,
        p99ms: null,
        connectMs: c.ms,
        bytes: 0,
        requests: 0,
        error: null,
      });
    } catch (e) {
      rows.push({
        path: 'ws blocked',
        MBps: null,
        vsCeiling: null,
        p50ms: null,
        p99ms: null,
        connectMs: null,
        bytes: 0,
        requests: 0,
        error: message(e),
      });
    }
  } finally {
    await proxy.close();
    await site.close();
    await wsEcho.close();
    echo.server.close();
    await relay.stop();
  }
  return rows;
}

function sizeOption(args: string[], name: string, fallback: number): number {
  const i = args.indexOf(`--${name}`);
  return i < 0 ? fallback : parseSize(args[i + 1] ?? '');
}

export async function run(args: string[]): Promise<void> {
  const quick = flag(args, 'quick');
  const json = flag(args, 'json');
  const size = sizeOption(args, 'size', quick ? 2 * 2 ** 20 : 16 * 2 ** 20);
  const i = args.indexOf('--requests');
  const requests = i < 0 ? (quick ? 20 : 200) : Number(args[i + 1]);
  const rows = await runBrowserBench({
    size,
    requests,
    ...(json ? {} : { log: (l: string) => process.stderr.write(`${l}\n`) }),
  });
  const table: Row[] = rows.map((r) => ({
    path: r.path,
    'MB/s': r.MBps ?? '-',
    'x ceiling': r.vsCeiling ?? '-',
    'p50 ms': r.p50ms ?? '-',
    'p99 ms': r.p99ms ?? '-',
    'connect ms': r.connectMs ?? '-',
    error: r.error ?? '',
  }));
  if (json) process.stdout.write(`${JSON.stringify(rows, null, 2)}\n`);
  else printRows(table, false, `browser: ${size} bytes echoed, ${requests} round trips of 100 B`);
}
