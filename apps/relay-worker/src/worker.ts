/**
 * The relay on Cloudflare Workers: the same hono app as on Node (`createRelayApp`: /health), with
 * every request under /rl/ routed to the Durable Object of its session (routing.ts: the client's
 * session routing id, `idFromName`). The entry is stateless; everything a session holds lives in
 * its object (session-object.ts).
 */
import type { Keypair } from '@roamlink/core';
import { createRelayApp } from '../../relay/src/app.ts';
import { parseConfig } from './config.ts';
import { decideRoute, withCors } from './routing.ts';
import type { SessionEnv } from './session-object.ts';
import { STATUS_ASSETS } from './status-assets.ts';
import { edgeRecorder, statusSessionOf } from './status-edge.ts';

export { RoamlinkSession } from './session-object.ts';

const startedAt = Date.now();

async function route(request: Request, env: SessionEnv): Promise<Response> {
  const d = decideRoute(request.method, new URL(request.url), request.headers);
  if ('status' in d) {
    return withCors(
      new Response(null, {
        status: d.status,
        headers: { 'Cache-Control': 'no-store', ...d.headers },
      }),
    );
  }
  // Pages from any origin (CORS, as on Node): the object's answers get the fields here.
  return withCors(await env.SESSIONS.get(env.SESSIONS.idFromName(d.sid)).fetch(request));
}

type App = ReturnType<typeof createRelayApp>;
let app: App | undefined;

/**
 * The app, made at the first request (the relay's key, for the status page's header, is in the
 * bindings). The status page (status-edge.ts): its files from the bundle; /status/api and
 * /status/events without a session id answer the relay's facts and no session.
 */
function appFor(env: SessionEnv): App {
  if (app) return app;
  let keypair: Keypair | undefined;
  try {
    keypair = parseConfig(env).keypair;
  } catch {
    // No relay key yet: /health still answers; the page shows no key.
  }
  app = createRelayApp({
    now: Date.now,
    startedAt,
    // Sessions live in their own objects: the stateless entry does not see them.
    sessions: () => 0,
    encapsulations: (request, e) => route(request, e as SessionEnv),
    status: { recorder: edgeRecorder(keypair), assets: STATUS_ASSETS },
  });
  return app;
}

export default {
  async fetch(request: Request, env: SessionEnv, ctx: ExecutionContext): Promise<Response> {
    // One session's status: its object answers (a snapshot, or an event stream it keeps open).
    const sid = statusSessionOf(new URL(request.url));
    if (sid === null) return new Response('bad sid', { status: 400 });
    if (sid !== undefined) return env.SESSIONS.get(env.SESSIONS.idFromName(sid)).fetch(request);
    return appFor(env).fetch(request, env, ctx);
  },
};
