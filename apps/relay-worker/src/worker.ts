/**
 * The relay on Cloudflare Workers: the same hono app as on Node (`createRelayApp`: /health), with
 * every request under /rl/ routed to the Durable Object of its session (routing.ts: the client's
 * session routing id, `idFromName`). The entry is stateless; everything a session holds lives in
 * its object (session-object.ts).
 */
import { createRelayApp } from '../../relay/src/app.ts';
import { decideRoute, withCors } from './routing.ts';
import type { SessionEnv } from './session-object.ts';

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

const app = createRelayApp({
  now: Date.now,
  startedAt,
  // Sessions live in their own objects: the stateless entry does not see them.
  sessions: () => 0,
  encapsulations: (request, env) => route(request, env as SessionEnv),
});

export default {
  fetch(request: Request, env: SessionEnv, ctx: ExecutionContext): Response | Promise<Response> {
    return app.fetch(request, env, ctx);
  },
};
