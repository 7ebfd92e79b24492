/**
 * One roamlink session on Cloudflare Workers: a Durable Object that every request of the session
 * reaches (routing.ts), whatever the encapsulation and the edge location, holding an EdgeRelay
 * (edge-relay.ts): the client's SAs and registration, its stream layer and the stream's TCP
 * connections made with `connect()` from `cloudflare:sockets`.
 *
 * WebSocket paths use the hibernation API (`acceptWebSocket`): the path id and the relay's view
 * of the upgrade request live in the socket's attachment, so a new instance knows its sockets.
 *
 * Memory may go at any time: the runtime evicts an object that sits idle (its hibernatable
 * WebSockets stay connected and wake a new instance), and a deploy or a crash restarts it. So
 * after every event (a message, a request, bytes from a target, a timer) the object writes the
 * session's state to its storage, in the same turn: the handshakes of the SA pairs it holds, each
 * pair's counters, the registration and the stream layer's resume numbers (relay-state.ts,
 * mux-resume.ts). The platform holds outgoing messages until such a write is durable (output
 * gates), so no client ever sees a packet whose sequence number or stream offset the storage
 * does not know. A new instance reads it back before it takes any event: the same SAs (no new
 * handshake), the same registration, the stream layer resumed; streams whose TCP connection was
 * lost with the memory are reset (StreamError.INTERNAL), all others go on.
 *
 * The object stays in memory while anything that cannot be saved is live: an egress socket (a
 * pending read), a held HTTP request, or a stream-layer timer (something in flight). Idle, with
 * only WebSockets, it may hibernate. Timers due later than a few seconds (SA expiry) use the
 * storage alarm, which does not keep it in memory. Once no SA is usable and no path is open, the
 * state is deleted.
 */
import { connect } from 'cloudflare:sockets';
import { DurableObject } from 'cloudflare:workers';
import type { OuterView } from '@roamlink/core';
import type { Hono } from 'hono';
import { parseConfig, type RelayEnvVars, type WorkerRelayConfig } from './config.ts';
import { EdgeRelay, observedView, type SavedState, WS_MAX_PAYLOAD } from './edge-relay.ts';
import { edgeRecorder, sampleWhileWatched, statusApp } from './status-edge.ts';

const STATE_KEY = 'state';

export interface SessionEnv extends RelayEnvVars {
  SESSIONS: DurableObjectNamespace;
}

interface WsAttachment {
  path: string;
  view: OuterView;
}

const random = (n: number): Uint8Array => crypto.getRandomValues(new Uint8Array(n));

function hex(b: Uint8Array): string {
  let s = '';
  for (const x of b) s += x.toString(16).padStart(2, '0');
  return s;
}

export class RoamlinkSession extends DurableObject<SessionEnv> {
  readonly #cfg: WorkerRelayConfig;
  readonly #relay: EdgeRelay;
  readonly #ws = new Map<string, WebSocket>();
  readonly #bornAt = Date.now();
  /** What the status page shows of this session (status-edge.ts); memory only. */
  readonly #statusApp: Hono;
  readonly #sampling: { check(): void };

  constructor(ctx: DurableObjectState, env: SessionEnv) {
    super(ctx, env);
    this.#cfg = parseConfig(env);
    const recorder = edgeRecorder(this.#cfg.keypair);
    this.#statusApp = statusApp(recorder);
    this.#relay = new EdgeRelay({
      config: this.#cfg,
      random,
      connect: (t) => {
        const socket = connect({ hostname: t.host, port: t.port });
        return socket.opened.then(() => socket);
      },
      sendWs: (path, data) => {
        const ws = this.#ws.get(path);
        if (!ws) return false;
        try {
          ws.send(data);
          return true;
        } catch {
          this.#ws.delete(path);
          return false;
        }
      },
      longTimer: (at) => void ctx.storage.setAlarm(at),
      onEvent: () => this.#save(),
      observe: (e) => recorder.observe(e),
    });
    this.#sampling = sampleWhileWatched(recorder, () => this.#relay.tunnels());
    // WebSockets that outlived the last instance (hibernation): their paths, as they were.
    for (const ws of ctx.getWebSockets()) {
      const a = ws.deserializeAttachment() as WsAttachment | null;
      if (a) this.#ws.set(a.path, ws);
    }
    void ctx.blockConcurrencyWhile(async () => {
      const s = await ctx.storage.get<SavedState>(STATE_KEY);
      if (!s) return;
      this.#relay.importState(s);
      // Resuming may have sent (the stream layer's RESETs): the counters are saved at once.
      this.#save();
    });
  }

  override async fetch(req: Request): Promise<Response> {
    const url = new URL(req.url);
    if (url.pathname === '/status/api' || url.pathname === '/status/events') {
      const res = await this.#statusApp.fetch(req);
      this.#sampling.check();
      return res;
    }
    const route = url.pathname.slice('/rl'.length);
    if (route === '/ws') return this.#upgrade(req);
    if (route === '/state') {
      if (!this.#cfg.debug) return new Response(null, { status: 404 });
      return Response.json({
        bornAt: this.#bornAt,
        ws: this.#ws.size,
        ...(this.#relay.debugState() as object),
      });
    }
    return this.#relay.handleHttp(req, route);
  }

  override webSocketMessage(ws: WebSocket, message: ArrayBuffer | string): void {
    const a = ws.deserializeAttachment() as WsAttachment | null;
    if (!a) return;
    if (typeof message === 'string' || message.byteLength > WS_MAX_PAYLOAD) {
      // One binary message per datagram: text breaks the encapsulation (4002); too big, 1009.
      this.#ws.delete(a.path);
      if (typeof message === 'string') ws.close(4002, 'text not allowed');
      else ws.close(1009, 'message too big');
      this.#relay.touched();
      return;
    }
    this.#ws.set(a.path, ws);
    this.#relay.deliverWs(new Uint8Array(message), a.path, a.view);
  }

  override webSocketClose(ws: WebSocket, code: number, reason: string): void {
    const a = ws.deserializeAttachment() as WsAttachment | null;
    if (a) this.#ws.delete(a.path);
    try {
      ws.close(code === 1005 || code === 1006 ? 1000 : code, reason);
    } catch {
      // Already closed.
    }
    this.#relay.touched();
  }

  override webSocketError(ws: WebSocket): void {
    const a = ws.deserializeAttachment() as WsAttachment | null;
    if (a) this.#ws.delete(a.path);
    this.#relay.touched();
  }

  override alarm(): void {
    this.#relay.timeout();
  }

  #upgrade(req: Request): Response {
    const pair = new WebSocketPair();
    const server = pair[1];
    const path = `ws:${hex(random(6))}`;
    const a: WsAttachment = { path, view: observedView(req) };
    this.ctx.acceptWebSocket(server);
    server.serializeAttachment(a);
    this.#ws.set(path, server);
    return new Response(null, { status: 101, webSocket: pair[0] });
  }

  /** After every event: the session's state to storage, in this turn (see the module comment). */
  #save(): void {
    const s = this.#relay.exportState();
    if (s.peers.length > 0) {
      void this.ctx.storage.put(STATE_KEY, s);
    } else if (this.#ws.size === 0 && this.#relay.http.paths.length === 0) {
      // Nothing left of the session: nothing stays behind in storage either.
      void this.ctx.storage.deleteAll();
    } else {
      void this.ctx.storage.delete(STATE_KEY);
    }
  }
}
