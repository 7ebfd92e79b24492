/**
 * What the Deno and Bun entries share: one EdgeRelay for the whole process (no Durable Objects:
 * every session lives here, in memory, and a restart ends them: clients handshake again), the
 * hono app with the encapsulations, and the settings from the environment (config.ts), plus
 *
 *   ROAMLINK_LISTEN   host:port to serve on (default 127.0.0.1:8787; port 0: any free port)
 *
 * The session routing id is accepted and not needed: there is one relay.
 */
import type { OuterView } from '@roamlink/core';
import { createRelayApp } from '../../relay/src/app.ts';
import { parseConfig, type RelayEnvVars } from './config.ts';
import { EdgeRelay, type EgressSocket, observedView } from './edge-relay.ts';
import { decideRoute, withCors } from './routing.ts';

export interface ServeEnv extends RelayEnvVars {
  ROAMLINK_LISTEN?: string;
}

/** The runtime's WebSocket server side, as the shared code needs it. */
export interface RuntimeWs {
  send(data: Uint8Array): void;
  close(code: number, reason: string): void;
}

export interface RuntimeHooks {
  connect: (host: string, port: number) => Promise<EgressSocket>;
  /** Upgrades `req` to a WebSocket on `path`; returns the runtime's answer (Bun: undefined). */
  upgrade: (req: Request, path: string, view: OuterView) => Response | undefined;
  /** The request's socket ends, where the runtime says. */
  remote: (req: Request) => { address: string; port: number } | undefined;
}

export function listenAddress(env: ServeEnv): { hostname: string; port: number } {
  const v = env.ROAMLINK_LISTEN?.trim() || '127.0.0.1:8787';
  const m = /^\[?([^\]]*)\]?:(\d{1,5})$/.exec(v);
  if (!m || Number(m[2]) > 65535) throw new RangeError(`ROAMLINK_LISTEN: host:port, not "${v}"`);
  return { hostname: m[1]!, port: Number(m[2]) };
}

export function createServeRelay(
  env: ServeEnv,
  hooks: RuntimeHooks,
): {
  relay: EdgeRelay;
  fetch: (req: Request) => Response | Promise<Response>;
  /** A fresh WebSocket path id (for runtimes that upgrade outside the app: Bun). */
  nextWsPath: () => string;
  /** A WebSocket path's events, for the runtime to call. */
  ws: {
    open(path: string, ws: RuntimeWs): void;
    message(path: string, view: OuterView, data: ArrayBuffer | Uint8Array | string): void;
    close(path: string): void;
  };
} {
  const sockets = new Map<string, RuntimeWs>();
  let n = 0;
  const relay = new EdgeRelay({
    config: parseConfig(env),
    random: (k) => crypto.getRandomValues(new Uint8Array(k)),
    connect: (t) => hooks.connect(t.host, t.port),
    sendWs: (path, data) => {
      const ws = sockets.get(path);
      if (!ws) return false;
      try {
        ws.send(data);
        return true;
      } catch {
        sockets.delete(path);
        return false;
      }
    },
  });
  relay.remoteOf = hooks.remote;
  const nextWsPath = (): string => `ws:${++n}`;
  const app = createRelayApp({
    now: Date.now,
    startedAt: Date.now(),
    sessions: () => [...relay.relay.peers.values()].filter((p) => p.keys.current).length,
    encapsulations: async (req) => {
      const d = decideRoute(req.method, new URL(req.url), req.headers, false);
      if ('status' in d) {
        return withCors(
          new Response(null, {
            status: d.status,
            headers: { 'Cache-Control': 'no-store', ...d.headers },
          }),
        );
      }
      if (d.route === '/state') return withCors(new Response(null, { status: 404 }));
      if (d.route !== '/ws') return withCors(await relay.handleHttp(req, d.route));
      const path = nextWsPath();
      const r = hooks.upgrade(req, path, observedView(req, hooks.remote(req)));
      return r ?? new Response(null, { status: 500 });
    },
  });
  return {
    relay,
    fetch: (req) => app.fetch(req),
    nextWsPath,
    ws: {
      open: (path, ws) => {
        sockets.set(path, ws);
      },
      message: (path, view, data) => {
        const ws = sockets.get(path);
        if (!ws) return;
        if (typeof data === 'string') {
          sockets.delete(path);
          ws.close(4002, 'text not allowed');
          return;
        }
        const bytes = data instanceof Uint8Array ? data.slice() : new Uint8Array(data);
        if (bytes.length > 65_535) {
          sockets.delete(path);
          ws.close(1009, 'message too big');
          return;
        }
        relay.deliverWs(bytes, path, view);
      },
      close: (path) => {
        sockets.delete(path);
      },
    },
  };
}
