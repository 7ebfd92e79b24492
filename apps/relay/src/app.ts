/**
 * The relay's HTTP face as a hono app, runtime-neutral: no Node imports here, so that the same app
 * can later run where only the Fetch API exists. The Node entry (main.ts) serves it on the HTTP
 * port and attaches the WebSocket encapsulation to the same server; the datagram transports are
 * not the app's concern.
 *
 *   GET /health  → 200 {"ok": true, "uptime": <seconds>, "sessions": <peers with keys>}
 *   GET /metrics → 200 Prometheus text exposition, when the relay runs with metrics on
 *   ANY /rl/*    → `encapsulations`, when the runtime serves them through the app (Workers)
 *
 * With `status` (the relay runs with --status-page):
 *   GET /status          → the status page (its built index.html), or 503 saying how to build it
 *   GET /status/assets/* → the page's scripts and styles (hashed names: cached for good)
 *   GET /status/api      → 200 the recorder's snapshot (status.ts: StatusSnapshot) as JSON
 *   GET /status/events   → Server-Sent Events: `snapshot` (the whole state) once, then `update`
 *                          (a StatusUpdate) per change; a comment every 15 s keeps proxies open.
 */
import { type Context, Hono } from 'hono';
import { streamSSE } from 'hono/streaming';
import type { StatusSnapshot, StatusUpdate } from './status.ts';

export interface RelayAppDeps {
  /** Milliseconds now; the app reads no clock of its own. */
  now: () => number;
  /** When the relay started, in the same clock as `now`. */
  startedAt: number;
  /** How many client sessions the relay holds. */
  sessions: () => number;
  /** Prometheus text exposition (0.0.4) of the relay's metrics; absent: no /metrics route. */
  metrics?: () => string;
  /**
   * Serves every request under /rl/ (the WebSocket and HTTP encapsulations) where the runtime
   * hands those to the app (Workers: `env` is the runtime's bindings); absent: not the app's.
   */
  encapsulations?: (request: Request, env: unknown) => Response | Promise<Response>;
  /** The status page and its data; absent: no /status routes. */
  status?: StatusPageDeps;
}

/** The built status page: its files by path under /status/ ("index.html", "assets/…"). */
export type StatusAssets =
  | { files: ReadonlyMap<string, { type: string; body: Uint8Array<ArrayBuffer> }> }
  /** Not built: says how to build it. */
  | { missing: string };

export interface StatusPageDeps {
  /** The state (a StatusRecorder). */
  recorder: {
    snapshot(): StatusSnapshot;
    subscribe(fn: (u: StatusUpdate) => void): () => void;
  };
  assets: StatusAssets;
}

/** Updates an SSE client may have waiting to be written before it is cut off (it reconnects). */
const SSE_MAX_PENDING = 1024;
const SSE_HEARTBEAT_MS = 15_000;

export interface Health {
  ok: true;
  /** Seconds since the relay started, to a tenth. */
  uptime: number;
  sessions: number;
}

export function createRelayApp(deps: RelayAppDeps): Hono {
  const app = new Hono();
  app.get('/health', (c) => {
    const health: Health = {
      ok: true,
      uptime: Math.round((deps.now() - deps.startedAt) / 100) / 10,
      sessions: deps.sessions(),
    };
    // A monitor polls this: never serve a cached answer.
    c.header('Cache-Control', 'no-store');
    return c.json(health);
  });
  const metrics = deps.metrics;
  if (metrics) {
    app.get('/metrics', (c) => {
      c.header('Content-Type', 'text/plain; version=0.0.4; charset=utf-8');
      c.header('Cache-Control', 'no-store');
      return c.body(metrics());
    });
  }
  const encapsulations = deps.encapsulations;
  if (encapsulations) app.all('/rl/*', (c) => encapsulations(c.req.raw, c.env));
  if (deps.status) statusRoutes(app, deps.status);
  return app;
}

function statusRoutes(app: Hono, status: StatusPageDeps): void {
  const { recorder, assets } = status;
  app.get('/status/api', (c) => {
    c.header('Cache-Control', 'no-store');
    return c.json(recorder.snapshot());
  });
  app.get('/status/events', (c) =>
    streamSSE(c, async (stream) => {
      // Written in order, one at a time; a client that stops reading is cut off, not buffered for.
      let chain: Promise<unknown> = Promise.resolve();
      let pending = 0;
      let stop = (): void => {};
      const ended = new Promise<void>((resolve) => {
        stop = resolve;
      });
      const send = (event: string, data: unknown): void => {
        if (++pending > SSE_MAX_PENDING) {
          stop();
          return;
        }
        chain = chain
          .then(() => stream.writeSSE({ event, data: JSON.stringify(data) }))
          .finally(() => pending--);
      };
      send('snapshot', recorder.snapshot());
      const unsubscribe = recorder.subscribe((u) => send('update', u));
      const heartbeat = setInterval(() => {
        chain = chain.then(() => stream.write(': keepalive\n\n'));
      }, SSE_HEARTBEAT_MS);
      stream.onAbort(stop);
      await ended;
      unsubscribe();
      clearInterval(heartbeat);
    }),
  );
  const page = (c: Context): Response | Promise<Response> => {
    c.header('Cache-Control', 'no-store');
    if ('missing' in assets) {
      c.status(503);
      return c.html(missingPage(assets.missing));
    }
    const index = assets.files.get('index.html');
    if (!index) return c.notFound();
    c.header('Content-Type', index.type);
    return c.body(index.body);
  };
  app.get('/status', page);
  app.get('/status/', page);
  app.get('/status/*', (c) => {
    if ('missing' in assets) return c.notFound();
    const file = assets.files.get(c.req.path.slice('/status/'.length));
    if (!file) return c.notFound();
    c.header('Content-Type', file.type);
    // Vite names built assets by their content hash: one name, one content, forever.
    c.header('Cache-Control', 'public, max-age=31536000, immutable');
    return c.body(file.body);
  });
}

const escapeHtml = (s: string): string => s.replace(/[&<>"']/g, (ch) => `&#${ch.charCodeAt(0)};`);

function missingPage(why: string): string {
  return `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>roamlink status</title>
<meta name="color-scheme" content="light dark"></head>
<body style="font:16px/1.5 system-ui,sans-serif;max-width:40rem;margin:4rem auto;padding:0 1rem">
<h1>The status page is not built</h1><p>${escapeHtml(why)}</p>
<p>The data behind it is served already: <a href="/status/api">/status/api</a>.</p>
</body></html>`;
}
