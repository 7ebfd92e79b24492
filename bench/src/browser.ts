/**
 * `pnpm bench browser [--size 16M] [--requests 200] [--relays node,workerd] [--quick] [--json]`:
 * a stream from a page in headless Chromium through a relay to a TCP echo server, over WebSocket,
 * HTTP streaming and HTTP polling, beside a plain WebSocket echo in the same browser (the ceiling:
 * no roamlink, no crypto); plus the connect time with WebSocket blocked (a proxy refusing
 * upgrades: the page is connected over HTTP). Every roamlink row once per relay (the `relay`
 * column): the Node relay (a real `roamlink relay` process) and the Workers relay
 * (apps/relay-worker) on workerd through miniflare; `--relays` picks (default both).
 *
 * Method: one page, one session, one relay and one client key per row. MB/s = bytes / time of an
 * echo transfer (the page writes `--size` bytes and reads them all back, every byte checked; each
 * byte crosses twice), 1 MB = 10^6 bytes. Latency: `--requests` sequential round trips of 100
 * bytes on one stream (or the plain WebSocket) after one warm-up; nearest-rank p50 and p99.
 * Connect: from `connect()` to the first registration, as the page measures it. The workerd relay
 * runs locally, a single process: these rows measure the Worker's code and workerd, not the edge.
 *
 * The e2e suite's harness (e2e/src/harness.ts) provides the relays, the servers and the browser.
 */
import {
  type Browsing,
  type ClientKey,
  clientKey,
  ensureBundle,
  LOOPBACK,
  openPage,
  type RelayKind,
  relayKinds,
  startEcho,
  startRelayOf,
  startStatic,
  startWsEcho,
  type TestRelay,
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

export type { RelayKind };
export type BrowserPathName = 'websocket' | 'http-stream' | 'http-poll';
const PATHS: readonly BrowserPathName[] = ['websocket', 'http-stream', 'http-poll'];

export interface BrowserRow {
  /** The relay the row went through; null for the plain WebSocket (no relay). */
  relay: RelayKind | null;
  /** "plain websocket" (the ceiling), a roamlink encapsulation, or "ws blocked → http-…". */
  path: string;
  MBps: number | null;
  /** MBps / the plain WebSocket's. */
  vsCeiling: number | null;
  p50ms: number | null;
  p99ms: number | null;
  connectMs: number | null;
  /** The transfer's size. */
  bytes: number;
  /** Bytes that came back through the relay, every one checked (roamlink rows; else null). */
  echoed: number | null;
  requests: number;
  error: string | null;
}

export interface BrowserBenchOptions {
  size: number;
  requests: number;
  /** The relays to measure, in this order (default: node, workerd). */
  relays?: readonly RelayKind[];
  log?: (line: string) => void;
}

/** Nearest-rank percentile of a non-empty list. */
export function percentile(xs: readonly number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))]!;
}

const message = (e: unknown): string => (e instanceof Error ? e.message : String(e));

const EMPTY = {
  MBps: null,
  vsCeiling: null,
  p50ms: null,
  p99ms: null,
  connectMs: null,
  echoed: null,
  error: null,
} as const;

async function withPage<T>(url: string, fn: (b: Browsing) => Promise<T>): Promise<T> {
  const b = await openPage(url);
  try {
    return await fn(b);
  } finally {
    await b.close();
  }
}

/** A relay of `kind` allowing one fresh client key, for `fn`; stopped after. */
async function withRelay<T>(
  kind: RelayKind,
  fn: (relay: TestRelay, key: ClientKey) => Promise<T>,
): Promise<T> {
  const key = clientKey();
  const relay = await startRelayOf(kind, [key]);
  try {
    return await fn(relay, key);
  } finally {
    await relay.stop();
  }
}

export async function runBrowserBench(o: BrowserBenchOptions): Promise<BrowserRow[]> {
  if (!Number.isSafeInteger(o.size) || o.size < 1) throw new Error('size must be a byte count');
  if (!Number.isSafeInteger(o.requests) || o.requests < 1) {
    throw new Error('requests must be a positive integer');
  }
  const relays = [...new Set(o.relays ?? relayKinds(''))];
  ensureBundle();
  const echo = await startEcho();
  const wsEcho = await startWsEcho();
  const site = await startStatic();
  const rows: BrowserRow[] = [];
  try {
    o.log?.(`plain websocket (the ceiling): ${o.size} bytes echoed, ${o.requests} round trips`);
    const ceiling = await withPage(site.url, (b) =>
      pageWsEcho(b.page, { url: wsEcho.url, total: o.size, count: o.requests }),
    );
    const ceilingMBps = o.size / 1e6 / (ceiling.ms / 1000);
    rows.push({
      ...EMPTY,
      relay: null,
      path: 'plain websocket',
      MBps: ceilingMBps,
      vsCeiling: 1,
      p50ms: percentile(ceiling.times, 50),
      p99ms: percentile(ceiling.times, 99),
      bytes: o.size,
      requests: o.requests,
    });
    for (const relay of relays) {
      for (const path of PATHS) {
        o.log?.(`roamlink over ${path}, ${relay} relay`);
        const enc = path === 'websocket' ? 'ws' : path;
        try {
          const r = await withRelay(relay, (rl, key) =>
            withPage(site.url, async (b) => {
              const c = await pageConnect(b.page, {
                relay: rl.url,
                relayKey: rl.publicKey,
                clientKey: key.secretHex,
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
              return { connectMs: c.ms, ms: p.ms, echoed: p.received, times };
            }),
          );
          const MBps = o.size / 1e6 / (r.ms / 1000);
          rows.push({
            relay,
            path,
            MBps,
            vsCeiling: MBps / ceilingMBps,
            p50ms: percentile(r.times, 50),
            p99ms: percentile(r.times, 99),
            connectMs: r.connectMs,
            bytes: o.size,
            echoed: r.echoed,
            requests: o.requests,
            error: null,
          });
        } catch (e) {
          o.log?.(`  ${path}, ${relay} relay: failed: ${message(e)}`);
          rows.push({
            ...EMPTY,
            relay,
            path,
            bytes: o.size,
            requests: o.requests,
            error: message(e),
          });
        }
      }
      o.log?.(`connect with WebSocket blocked (a proxy refuses upgrades), ${relay} relay`);
      try {
        const c = await withRelay(relay, async (rl, key) => {
          const proxy = await startStatic(rl);
          try {
            return await withPage(proxy.url, (b) =>
              pageConnect(b.page, {
                relay: proxy.url,
                relayKey: rl.publicKey,
                clientKey: key.secretHex,
              }),
            );
          } finally {
            await proxy.close();
          }
        });
        rows.push({
          ...EMPTY,
          relay,
          path: `ws blocked → ${c.status.encapsulation}`,
          connectMs: c.ms,
          bytes: 0,
          requests: 0,
        });
      } catch (e) {
        o.log?.(`  ws blocked, ${relay} relay: failed: ${message(e)}`);
        rows.push({
          ...EMPTY,
          relay,
          path: 'ws blocked',
          bytes: 0,
          requests: 0,
          error: message(e),
        });
      }
    }
  } finally {
    await site.close();
    await wsEcho.close();
    echo.server.close();
  }
  return rows;
}

function sizeOption(args: string[], name: string, fallback: number): number {
  const i = args.indexOf(`--${name}`);
  return i < 0 ? fallback : parseSize(args[i + 1] ?? '');
}

/** `--relays node,workerd` (default both), validated as the e2e harness validates its list. */
function relaysOption(args: string[]): RelayKind[] {
  const i = args.indexOf('--relays');
  if (i < 0) return relayKinds('');
  const v = args[i + 1] ?? '';
  if (v.trim() === '') throw new Error('--relays needs a list: node, workerd');
  try {
    return relayKinds(v);
  } catch (e) {
    throw new Error(`--relays: ${message(e).replace(/^E2E_RELAYS: /, '')}`);
  }
}

export async function run(args: string[]): Promise<void> {
  const quick = flag(args, 'quick');
  const json = flag(args, 'json');
  const size = sizeOption(args, 'size', quick ? 2 * 2 ** 20 : 16 * 2 ** 20);
  const i = args.indexOf('--requests');
  const requests = i < 0 ? (quick ? 20 : 200) : Number(args[i + 1]);
  const relays = relaysOption(args);
  const rows = await runBrowserBench({
    size,
    requests,
    relays,
    ...(json ? {} : { log: (l: string) => process.stderr.write(`${l}\n`) }),
  });
  const table: Row[] = rows.map((r) => ({
    relay: r.relay ?? '-',
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
