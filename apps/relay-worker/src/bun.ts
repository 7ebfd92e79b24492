/**
 * The relay on Bun: `Bun.serve` for HTTP and WebSocket, egress with `Bun.connect` (its callbacks
 * turned into web streams here). One process holds every session (serve.ts). Run the bundle:
 *
 *   ROAMLINK_RELAY_KEY=… ROAMLINK_ALLOW_CLIENTS=… bun relay-bun.mjs
 */
import type { OuterView } from '@roamlink/core';
import type { EgressSocket } from './edge-relay.ts';
import { observedView } from './edge-relay.ts';
import { decideRoute } from './routing.ts';
import { createServeRelay, listenAddress, type ServeEnv } from './serve.ts';

interface BunSocket {
  write(data: Uint8Array): number;
  end(): void;
  terminate(): void;
}
interface BunServerWs {
  data: { path: string; view: OuterView };
  send(data: Uint8Array): number;
  close(code: number, reason: string): void;
}
interface BunServer {
  port: number;
  hostname: string;
  upgrade(req: Request, o: { data: { path: string; view: OuterView } }): boolean;
  requestIP(req: Request): { address: string; port: number } | null;
}
declare const Bun: {
  env: Record<string, string | undefined>;
  connect(o: {
    hostname: string;
    port: number;
    socket: {
      data(s: BunSocket, d: Uint8Array): void;
      drain(s: BunSocket): void;
      close(s: BunSocket): void;
      error(s: BunSocket, e: Error): void;
    };
  }): Promise<BunSocket>;
  serve(o: {
    hostname: string;
    port: number;
    fetch(req: Request, server: BunServer): Response | Promise<Response> | undefined;
    websocket: {
      maxPayloadLength: number;
      open(ws: BunServerWs): void;
      message(ws: BunServerWs, m: string | Uint8Array): void;
      close(ws: BunServerWs): void;
    };
  }): BunServer;
};

/** A Bun socket as web streams: reads queue in a ReadableStream, writes wait for `drain`. */
async function connectStreams(hostname: string, port: number): Promise<EgressSocket> {
  let ctl: ReadableStreamDefaultController<Uint8Array> | undefined;
  let drained: (() => void) | undefined;
  const readable = new ReadableStream<Uint8Array>({
    start: (c) => {
      ctl = c;
    },
  });
  const sock = await Bun.connect({
    hostname,
    port,
    socket: {
      data: (_s, d) => ctl?.enqueue(new Uint8Array(d)),
      drain: () => drained?.(),
      close: () => {
        try {
          ctl?.close();
        } catch {
          // Already closed or errored.
        }
        drained?.();
      },
      error: (_s, e) => {
        try {
          ctl?.error(e);
        } catch {
          // Already closed.
        }
      },
    },
  });
  const writable = new WritableStream<Uint8Array>({
    write: async (chunk) => {
      let off = 0;
      while (off < chunk.length) {
        const n = sock.write(chunk.subarray(off));
        if (n < 0) throw new Error('socket closed');
        off += n;
        if (off < chunk.length) {
          await new Promise<void>((resolve) => {
            drained = resolve;
          });
        }
      }
    },
    close: () => sock.end(),
    abort: () => sock.terminate(),
  });
  return { readable, writable, close: () => sock.terminate() };
}

const env = Bun.env as ServeEnv;
let server: BunServer | undefined;
const serve = createServeRelay(env, {
  connect: connectStreams,
  remote: (req) => server?.requestIP(req) ?? undefined,
  upgrade: () => undefined,
});
const { hostname, port } = listenAddress(env);
server = Bun.serve({
  hostname,
  port,
  fetch(req, srv) {
    const url = new URL(req.url);
    if (url.pathname !== '/rl/ws') return serve.fetch(req);
    const d = decideRoute(req.method, url, req.headers, false);
    if ('status' in d) return new Response(null, { status: d.status, headers: d.headers ?? {} });
    const data = {
      path: serve.nextWsPath(),
      view: observedView(req, srv.requestIP(req) ?? undefined),
    };
    if (srv.upgrade(req, { data })) return undefined;
    return new Response(null, { status: 400 });
  },
  websocket: {
    maxPayloadLength: 65_535,
    open: (ws) => serve.ws.open(ws.data.path, ws),
    message: (ws, m) => serve.ws.message(ws.data.path, ws.data.view, m),
    close: (ws) => serve.ws.close(ws.data.path),
  },
});
console.log(`roamlink relay (bun) listening on http://${server.hostname}:${server.port}`);
