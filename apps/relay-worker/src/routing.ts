/**
 * Which Durable Object a request belongs to. A session spans several paths (a WebSocket now, HTTP
 * requests later, each with its own token), so the client names its session on every request of
 * every encapsulation with a routing id it chose at random when the session began: the `sid`
 * query parameter (where the client builds the URL: WebSocket, a browser's fetch) or the
 * `Roamlink-Session` header (where it cannot add to the URL: the RLHTTP/1 clients that build
 * their own targets). Both present must agree. The id has the syntax of an RLHTTP/1 token (16-128
 * characters of [A-Za-z0-9_-]; clients send 32 hex digits from 16 random bytes); it routes, it
 * does not authenticate: the handshake does.
 *
 * Pure: no runtime imports, so Node tests use it as it is.
 */
export const SID_PARAM = 'sid';
export const SID_HEADER = 'roamlink-session';
export const RL_BASE = '/rl';

export const isSessionId = (s: string): boolean => /^[A-Za-z0-9_-]{16,128}$/.test(s);

/**
 * CORS (the Fetch standard's), as the Node relay answers (packages/node/src/http.ts): a page from
 * any origin may use these routes without credentials (`*`) and read `Roamlink-Seq`. Every answer
 * under /rl/ carries these fields but a WebSocket upgrade's (no CORS there; the handshake, not the
 * origin, authenticates).
 */
export const CORS_HEADERS: Readonly<Record<string, string>> = {
  'Access-Control-Allow-Origin': '*',
  'Access-Control-Expose-Headers': 'Roamlink-Seq',
};
/**
 * An OPTIONS preflight for a known route is answered 204 at once, without a session id (a
 * preflight carries no request field's value): the methods, and the request fields a client sends
 * (Content-Type, Roamlink-Ack, the routing id's header), cached for 10 minutes.
 */
export const PREFLIGHT_HEADERS: Readonly<Record<string, string>> = {
  'Access-Control-Allow-Methods': 'GET, POST',
  'Access-Control-Allow-Headers': 'Content-Type, Roamlink-Ack, Roamlink-Session, Cache-Control',
  'Access-Control-Max-Age': '600',
};

/** `res` with CORS_HEADERS added (a WebSocket upgrade's 101 as it is). */
export function withCors(res: Response): Response {
  if (res.status === 101 || res.headers.get('access-control-allow-origin') !== null) return res;
  // A fetched Response's headers may be immutable: a new Response around the same body.
  const headers = new Headers(res.headers);
  for (const [k, v] of Object.entries(CORS_HEADERS)) headers.set(k, v);
  return new Response(res.body, { status: res.status, statusText: res.statusText, headers });
}

/** The request's session routing id; undefined when absent, null when malformed or conflicting. */
export function sessionIdOf(url: URL, headers: Headers): string | undefined | null {
  const q = url.searchParams.getAll(SID_PARAM);
  const h = headers.get(SID_HEADER);
  if (q.length > 1) return null;
  const a = q[0];
  if (a !== undefined && !isSessionId(a)) return null;
  if (h !== null && !isSessionId(h.trim())) return null;
  if (a !== undefined && h !== null && a !== h.trim()) return null;
  return a ?? h?.trim() ?? undefined;
}

/** What a request under `/rl/` is: a route the session object serves, or an answer right away. */
export type RouteDecision =
  | { route: '/ws' | '/up' | '/down' | '/poll' | '/state'; sid: string }
  | { status: number; headers?: Record<string, string> };

/**
 * Routes and methods as the Node relay answers them (an OPTIONS preflight: 204); then the session
 * id. `/state` is the session object's diagnostics, answered only where ROAMLINK_DEBUG is set (404
 * otherwise). Answers given here carry no CORS fields yet: pass every answer through `withCors`.
 */
export function decideRoute(
  method: string,
  url: URL,
  headers: Headers,
  /** Workers route by it; a single-process relay (Deno, Bun) takes requests without one. */
  requireSid = true,
): RouteDecision {
  const route = url.pathname.slice(RL_BASE.length);
  let want: string;
  if (route === '/ws') want = 'GET';
  else if (route === '/up') want = 'POST';
  else if (route === '/down' || route === '/poll' || route === '/state') want = 'GET';
  else return { status: 404 };
  if (method === 'OPTIONS' && route !== '/ws') {
    return { status: 204, headers: { ...PREFLIGHT_HEADERS } };
  }
  if (method !== want) return { status: 405, headers: { Allow: want } };
  if (route === '/ws' && headers.get('upgrade')?.toLowerCase() !== 'websocket') {
    return { status: 426, headers: { Upgrade: 'websocket' } };
  }
  const sid = sessionIdOf(url, headers);
  if (sid === null || (requireSid && sid === undefined)) return { status: 400 };
  return { route, sid: sid ?? '' };
}
