/**
 * The relay on Deno: `Deno.serve` for HTTP and WebSocket (`Deno.upgradeWebSocket`), egress with
 * `Deno.connect`. One process holds every session (serve.ts). Run the bundle (README):
 *
 *   ROAMLINK_RELAY_KEY=… ROAMLINK_ALLOW_CLIENTS=… deno run --allow-net --allow-env relay-deno.mjs
 */
import type { OuterView } from '@roamlink/core';
import { createServeRelay, listenAddress, type ServeEnv } from './serve.ts';

interface DenoConn {
  readable: ReadableStream<Uint8Array>;
  writable: WritableStream<Uint8Array>;
  close(): void;
}
interface DenoWebSocket {
  binaryType: string;
  onopen: (() => void) | null;
  onmessage: ((e: { data: ArrayBuffer | string }) => void) | null;
  onclose: (() => void) | null;
  onerror: (() => void) | null;
  send(data: Uint8Array): void;
  close(code: number, reason: string): void;
}
interface DenoNetAddr {
  hostname: string;
  port: number;
}
declare const Deno: {
  env: { toObject(): Record<string, string> };
  connect(o: { hostname: string; port: number }): Promise<DenoConn>;
  upgradeWebSocket(req: Request): { socket: DenoWebSocket; response: Response };
  serve(
    o: { hostname: string; port: number; onListen?: (a: DenoNetAddr) => void },
    handler: (req: Request, info: { remoteAddr: DenoNetAddr }) => Response | Promise<Response>,
  ): { finished: Promise<void> };
};

const env = Deno.env.toObject() as ServeEnv;
const remotes = new WeakMap<Request, { address: string; port: number }>();
const serve = createServeRelay(env, {
  connect: (hostname, port) => Deno.connect({ hostname, port }),
  remote: (req) => remotes.get(req),
  upgrade: (req: Request, path: string, view: OuterView) => {
    const { socket, response } = Deno.upgradeWebSocket(req);
    socket.binaryType = 'arraybuffer';
    socket.onopen = () => serve.ws.open(path, socket);
    socket.onmessage = (e) => serve.ws.message(path, view, e.data);
    socket.onclose = () => serve.ws.close(path);
    socket.onerror = () => serve.ws.close(path);
    return response;
  },
});
const { hostname, port } = listenAddress(env);
Deno.serve(
  {
    hostname,
    port,
    onListen: (a) =>
      console.log(`roamlink relay (deno) listening on http://${a.hostname}:${a.port}`),
  },
  (req, info) => {
    remotes.set(req, { address: info.remoteAddr.hostname, port: info.remoteAddr.port });
    return serve.fetch(req);
  },
);
