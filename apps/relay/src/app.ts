/**
 * The relay's HTTP face as a hono app, runtime-neutral: no Node imports here, so that the same app
 * can later run where only the Fetch API exists. The Node entry (main.ts) serves it on the HTTP
 * port and attaches the WebSocket encapsulation to the same server; the datagram transports are
 * not the app's concern.
 *
 *   GET /health  → 200 {"ok": true, "uptime": <seconds>, "sessions": <peers with keys>}
 *   GET /metrics → 200 Prometheus text exposition, when the relay runs with metrics on
 *   ANY /rl/*    → `encapsulations`, when the runtime serves them through the app (Workers)
 */
import { Hono } from 'hono';

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
}

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
  return app;
}
