/**
 * What every browser spec needs: a relay — the Node relay as a real process (`roamlink relay`,
 * its first stdout line is `listening` with the HTTP port and public key) or the Workers relay
 * (apps/relay-worker) on workerd through miniflare — a TCP echo server, a static server for the
 * test page and the browser bundle (optionally also a reverse proxy to the relay that refuses
 * WebSocket upgrades), headless Debian Chromium through playwright-core, and screenshots under
 * e2e/artifacts/. Everything listens on 127.0.0.1 only.
 *
 * Which relays the specs run against: `E2E_RELAYS` (comma-separated `node`, `workerd`; default
 * both). Each spec runs its scenario once per relay, in a `describe` named after it.
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
} from 'node:fs';
import { createServer as createHttpServer, type Server as HttpServer, request } from 'node:http';
import { createServer as createTcpServer, type Server as TcpServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, extname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { fromHex, generateKeypair, keypairFromSecret, toHex } from '@roamlink/core';
import { type Browser, type BrowserContext, chromium, type Page } from 'playwright-core';
import { WebSocketServer } from 'ws';

export const LOOPBACK = '127.0.0.1';
const HERE = dirname(fileURLToPath(import.meta.url));
export const REPO = join(HERE, '..', '..');
const CLI = join(REPO, 'apps', 'client', 'src', 'cli.ts');
const BROWSER_PKG = join(REPO, 'packages', 'browser');
const BUNDLE_DIR = join(BROWSER_PKG, 'dist');
const PAGE_DIR = join(HERE, '..', 'page');
export const ARTIFACTS = join(HERE, '..', 'artifacts');

export const CHROMIUM = process.env.ROAMLINK_CHROMIUM ?? '/usr/bin/chromium';
export const CHROMIUM_ARGS = [
  '--no-sandbox',
  '--disable-gpu',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--disable-quic',
  '--no-first-run',
];

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** A client key the relay will allow: the page gets the secret, the relay the public half. */
export interface ClientKey {
  secretHex: string;
  publicHex: string;
}
export function clientKey(): ClientKey {
  const k = generateKeypair((n) => crypto.getRandomValues(new Uint8Array(n)));
  return { secretHex: toHex(k.secretKey), publicHex: toHex(k.publicKey) };
}

function newestMtime(dir: string): number {
  let t = 0;
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    t = Math.max(t, e.isDirectory() ? newestMtime(p) : statSync(p).mtimeMs);
  }
  return t;
}

/** Builds the bundle with vite unless dist/ is newer than every source of it. */
export function ensureBundle(): void {
  const out = join(BUNDLE_DIR, 'roamlink-browser.js');
  const sources = Math.max(
    newestMtime(join(BROWSER_PKG, 'src')),
    newestMtime(join(REPO, 'packages', 'core', 'src')),
  );
  if (existsSync(out) && statSync(out).mtimeMs >= sources) return;
  const vite = join(BROWSER_PKG, 'node_modules', 'vite', 'bin', 'vite.js');
  const r = spawnSync(process.execPath, [vite, 'build', '--logLevel', 'warn'], {
    cwd: BROWSER_PKG,
    encoding: 'utf8',
  });
  if (r.status !== 0) throw new Error(`vite build failed: ${r.stderr || r.stdout}`);
}

/** The relays the specs run against. */
export type RelayKind = 'node' | 'workerd';
const RELAY_KINDS: readonly RelayKind[] = ['node', 'workerd'];

/** `E2E_RELAYS` (comma-separated; default every kind), validated. */
export function relayKinds(env: string | undefined = process.env.E2E_RELAYS): RelayKind[] {
  if (env === undefined || env.trim() === '') return [...RELAY_KINDS];
  const kinds = env.split(',').map((k) => k.trim());
  for (const k of kinds) {
    if (!(RELAY_KINDS as readonly string[]).includes(k)) {
      throw new RangeError(`E2E_RELAYS: ${RELAY_KINDS.join(', ')}; not "${k}"`);
    }
  }
  return [...new Set(kinds)] as RelayKind[];
}

/** What a spec needs of a relay, whichever it is. */
export interface TestRelay {
  kind: RelayKind;
  /** `http://127.0.0.1:<port>`: the WebSocket and HTTP encapsulations under `/rl/`. */
  url: string;
  port: number;
  /** The relay's static public key (hex). */
  publicKey: string;
  stop(): Promise<void>;
}

/** A relay of `kind` on loopback, allowing `clients`, egress to 127.0.0.1 allowed. */
export function startRelayOf(kind: RelayKind, clients: readonly ClientKey[]): Promise<TestRelay> {
  return kind === 'node' ? startRelay(clients) : startWorkerRelay(clients);
}

let workerCode: Promise<string> | undefined;

/**
 * The Workers relay on workerd (miniflare), as apps/relay-worker's own tests run it: the Worker
 * bundled by esbuild (once per process), its Durable Object storage in a fresh directory, egress
 * to 127.0.0.1 allowed by its `ROAMLINK_EGRESS_ALLOW`. It allows one client key.
 */
export async function startWorkerRelay(clients: readonly ClientKey[]): Promise<TestRelay> {
  if (clients.length !== 1) throw new RangeError('the workerd relay allows one client key here');
  const w = await import('../../apps/relay-worker/test/worker-harness.ts');
  workerCode ??= w.buildWorker().then((b) => b.code);
  const code = await workerCode;
  const relayKeys = generateKeypair((n) => crypto.getRandomValues(new Uint8Array(n)));
  const persist = mkdtempSync(join(tmpdir(), 'roamlink-e2e-worker-'));
  const { mf, port } = await w.startWorker({
    code,
    keys: { relay: relayKeys, client: keypairFromSecret(fromHex(clients[0]!.secretHex)) },
    persist,
  });
  return {
    kind: 'workerd',
    url: `http://${LOOPBACK}:${port}`,
    port,
    publicKey: toHex(relayKeys.publicKey),
    stop: async () => {
      await Promise.race([mf.dispose(), sleep(5000)]);
      rmSync(persist, { recursive: true, force: true });
    },
  };
}

export interface Relay extends TestRelay {
  kind: 'node';
  proc: ChildProcess;
  /** `http://127.0.0.1:<port>` */
  url: string;
  port: number;
  publicKey: string;
  lines: Record<string, unknown>[];
  stop(): Promise<void>;
}

/** `roamlink relay` on ephemeral loopback ports, allowing `clients`, egress to 127.0.0.1 only. */
export async function startRelay(
  clients: readonly ClientKey[],
  extra: string[] = [],
): Promise<Relay> {
  const dataDir = mkdtempSync(join(tmpdir(), 'roamlink-e2e-relay-'));
  const args = [
    CLI,
    'relay',
    '--udp',
    `${LOOPBACK}:0`,
    '--tcp',
    `${LOOPBACK}:0`,
    '--http',
    `${LOOPBACK}:0`,
    '--data-dir',
    dataDir,
    ...clients.flatMap((c) => ['--allow', c.publicHex]),
    '--egress-allow',
    '127.0.0.1/32',
    '--log-format',
    'json',
    // Tests end with streams open: no need to wait for them.
    '--shutdown-grace-ms',
    '0',
    ...extra,
  ];
  const proc = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  proc.stderr!.on('data', (d) => {
    stderr += d;
  });
  const lines: Record<string, unknown>[] = [];
  const first = new Promise<Record<string, unknown>>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`relay did not start: ${stderr}`)), 15_000);
    proc.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`relay exited (${code}): ${stderr}`));
    });
    createInterface({ input: proc.stdout! }).on('line', (l) => {
      let line: Record<string, unknown>;
      try {
        line = JSON.parse(l) as Record<string, unknown>;
      } catch {
        line = { raw: l };
      }
      lines.push(line);
      if (line.msg === 'listening') {
        clearTimeout(timer);
        resolve(line);
      }
    });
  });
  const listening = await first;
  const http = String(listening.http);
  const port = Number(http.slice(http.lastIndexOf(':') + 1));
  return {
    kind: 'node',
    proc,
    url: `http://${LOOPBACK}:${port}`,
    port,
    publicKey: String(listening.publicKey),
    lines,
    stop: async () => {
      if (proc.exitCode === null) {
        const exited = new Promise((r) => proc.once('exit', r));
        proc.kill('SIGTERM');
        await Promise.race([exited, sleep(5000)]);
        if (proc.exitCode === null) proc.kill('SIGKILL');
      }
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

/** A TCP echo server (what a stream from the page reaches through the relay). */
export async function startEcho(): Promise<{ server: TcpServer; port: number }> {
  const server = createTcpServer((s) => {
    s.on('error', () => {});
    s.pipe(s);
  });
  await new Promise<void>((r) => server.listen(0, LOOPBACK, r));
  return { server, port: (server.address() as { port: number }).port };
}

/**
 * A plain WebSocket echo server (no roamlink): the ceiling a page's WebSocket reaches on this
 * machine. Every binary message goes back as it came.
 */
export async function startWsEcho(): Promise<{ url: string; close(): Promise<void> }> {
  const wss = new WebSocketServer({ host: LOOPBACK, port: 0, perMessageDeflate: false });
  wss.on('connection', (ws) => {
    ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
    ws.on('error', () => {});
  });
  await new Promise<void>((r) => wss.once('listening', () => r()));
  const port = (wss.address() as { port: number }).port;
  return {
    url: `ws://${LOOPBACK}:${port}/`,
    close: () =>
      new Promise<void>((r) => {
        for (const c of wss.clients) c.terminate();
        wss.close(() => r());
      }),
  };
}

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.map': 'application/json',
};

export interface StaticServer {
  server: HttpServer;
  url: string;
  /** WebSocket upgrades the proxy refused. */
  upgradesRefused: number;
  close(): Promise<void>;
}

/**
 * Serves the test page and the bundle. With `proxyTo`, it is also a reverse proxy for `/rl/*` to
 * the relay (adding Via, as proxies do) that refuses every WebSocket upgrade with 403: WebSocket
 * blocked, HTTP through.
 */
export async function startStatic(proxyTo?: Pick<TestRelay, 'port'>): Promise<StaticServer> {
  const s: StaticServer = {
    server: createHttpServer(),
    url: '',
    upgradesRefused: 0,
    close: () =>
      new Promise<void>((r) => {
        s.server.closeAllConnections();
        s.server.close(() => r());
      }),
  };
  s.server.on('request', (req, res) => {
    const path = (req.url ?? '/').split('?')[0]!;
    if (proxyTo && path.startsWith('/rl/')) {
      const up = request(
        {
          host: LOOPBACK,
          port: proxyTo.port,
          method: req.method,
          path: req.url,
          headers: { ...req.headers, via: '1.1 e2e-proxy' },
        },
        (ur) => {
          res.writeHead(ur.statusCode ?? 502, ur.headers);
          res.flushHeaders();
          ur.pipe(res);
        },
      );
      up.on('error', () => res.destroy());
      res.on('close', () => up.destroy());
      req.pipe(up);
      return;
    }
    const file =
      path === '/'
        ? join(PAGE_DIR, 'index.html')
        : path.startsWith('/roamlink-browser.js')
          ? join(BUNDLE_DIR, path.slice(1))
          : join(PAGE_DIR, path.slice(1));
    if (path.includes('..') || !existsSync(file)) {
      res.writeHead(404).end();
      return;
    }
    res.writeHead(200, {
      'content-type': TYPES[extname(file)] ?? 'application/octet-stream',
      'cache-control': 'no-store',
    });
    res.end(readFileSync(file));
  });
  s.server.on('upgrade', (_req, socket) => {
    s.upgradesRefused++;
    socket.end('HTTP/1.1 403 Forbidden\r\nConnection: close\r\nContent-Length: 0\r\n\r\n');
  });
  await new Promise<void>((r) => s.server.listen(0, LOOPBACK, r));
  s.url = `http://${LOOPBACK}:${(s.server.address() as { port: number }).port}`;
  return s;
}

export interface Browsing {
  browser: Browser;
  context: BrowserContext;
  page: Page;
  /** Page errors and console errors, for failure messages. */
  errors: string[];
  close(): Promise<void>;
}

/** Headless Debian Chromium with the test page open and its bundle loaded. */
export async function openPage(url: string): Promise<Browsing> {
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: CHROMIUM_ARGS,
    headless: true,
  });
  const context = await browser.newContext({ viewport: { width: 900, height: 700 } });
  const page = await context.newPage();
  const errors: string[] = [];
  page.on('pageerror', (e) => errors.push(`pageerror: ${e.message}`));
  page.on('console', (m) => {
    if (m.type() === 'error') errors.push(`console: ${m.text()}`);
  });
  await page.goto(url);
  await page.waitForFunction(() => (globalThis as { e2eReady?: boolean }).e2eReady === true, null, {
    timeout: 10_000,
  });
  return {
    browser,
    context,
    page,
    errors,
    close: async () => {
      await context.close().catch(() => {});
      await browser.close().catch(() => {});
    },
  };
}

/** Saves a screenshot as e2e/artifacts/<name>.png. */
export async function screenshot(page: Page, name: string): Promise<string> {
  mkdirSync(ARTIFACTS, { recursive: true });
  const file = join(ARTIFACTS, `${name}.png`);
  await page.screenshot({ path: file, fullPage: true });
  return file;
}

/**
 * What a page spec sets up before its tests: a relay of `kind` that allows one client key, a TCP
 * echo server, the static site serving the test page (with `proxied`, a reverse proxy to the relay
 * that refuses WebSocket upgrades, which the page then reaches the relay through) and a page open
 * on it. `stop` undoes all of it; a setup that fails halfway stops what it had started.
 */
export interface PageSetup {
  key: ClientKey;
  relay: TestRelay;
  echo: { server: TcpServer; port: number };
  site: StaticServer;
  b: Browsing;
  /** What `pageConnect` needs to reach the relay (through the site when proxied). */
  connect: { relay: string; relayKey: string; clientKey: string };
  stop(): Promise<void>;
}

export async function startPageSetup(
  kind: RelayKind,
  o: { proxied?: boolean } = {},
): Promise<PageSetup> {
  ensureBundle();
  const key = clientKey();
  const parts: {
    relay?: TestRelay;
    echo?: { server: TcpServer; port: number };
    site?: StaticServer;
    b?: Browsing;
  } = {};
  const stop = async (): Promise<void> => {
    await parts.b?.close();
    await parts.site?.close();
    parts.echo?.server.close();
    await parts.relay?.stop();
  };
  try {
    const [relay, echo] = await Promise.all([startRelayOf(kind, [key]), startEcho()]);
    parts.relay = relay;
    parts.echo = echo;
    const site = await startStatic(o.proxied ? relay : undefined);
    parts.site = site;
    const b = await openPage(site.url);
    parts.b = b;
    const connect = {
      relay: o.proxied ? site.url : relay.url,
      relayKey: relay.publicKey,
      clientKey: key.secretHex,
    };
    return { key, relay, echo, site, b, connect, stop };
  } catch (e) {
    await stop();
    throw e;
  }
}
