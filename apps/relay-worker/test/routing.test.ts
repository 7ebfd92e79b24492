/**
 * The Worker entry's routing without a runtime: the session routing id (query parameter, header,
 * both), CORS preflights and the CORS fields on answers (what a cross-origin page needs).
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  CORS_HEADERS,
  decideRoute,
  PREFLIGHT_HEADERS,
  sessionIdOf,
  withCors,
} from '../src/routing.ts';

const SID = '0123456789abcdef0123456789abcdef';
const url = (target: string): URL => new URL(`http://relay.example${target}`);
const headers = (h: Record<string, string> = {}): Headers => new Headers(h);

test('routing id: query parameter, header, both equal; absent, malformed or conflicting', () => {
  assert.equal(sessionIdOf(url(`/rl/poll?s=x&sid=${SID}`), headers()), SID);
  assert.equal(sessionIdOf(url('/rl/poll'), headers({ 'Roamlink-Session': SID })), SID);
  assert.equal(sessionIdOf(url(`/rl/poll?sid=${SID}`), headers({ 'Roamlink-Session': SID })), SID);
  assert.equal(sessionIdOf(url('/rl/poll'), headers()), undefined);
  assert.equal(sessionIdOf(url('/rl/poll?sid=short'), headers()), null);
  assert.equal(sessionIdOf(url(`/rl/poll?sid=${SID}&sid=${SID}`), headers()), null);
  assert.equal(sessionIdOf(url(`/rl/poll?sid=${'x'.repeat(129)}`), headers()), null);
  assert.equal(sessionIdOf(url(`/rl/poll?sid=${'A_-9'.repeat(4)}`), headers()), 'A_-9'.repeat(4));
  assert.equal(
    sessionIdOf(url(`/rl/poll?sid=${SID}`), headers({ 'Roamlink-Session': `${SID}ff` })),
    null,
  );
});

test('routes: the RLHTTP/1 routes with their extra fields route by the id; without one, 400', () => {
  const up = decideRoute('POST', url(`/rl/up?s=${'t'.repeat(32)}&sid=${SID}&m=stream`), headers());
  assert.deepEqual(up, { route: '/up', sid: SID });
  assert.deepEqual(decideRoute('GET', url(`/rl/down?s=${'t'.repeat(32)}`), headers()), {
    status: 400,
  });
  // A single-process relay takes requests without one.
  assert.deepEqual(decideRoute('GET', url('/rl/poll?s=x'), headers(), false), {
    route: '/poll',
    sid: '',
  });
  const ws = decideRoute('GET', url(`/rl/ws?sid=${SID}`), headers({ Upgrade: 'websocket' }));
  assert.deepEqual(ws, { route: '/ws', sid: SID });
});

test('CORS: a preflight for a known route is 204 without an id; unknown routes and /ws are not', () => {
  for (const r of ['/rl/up', '/rl/down', '/rl/poll']) {
    const d = decideRoute('OPTIONS', url(r), headers());
    assert.ok('status' in d);
    assert.equal(d.status, 204, r);
    assert.deepEqual(d.headers, PREFLIGHT_HEADERS);
  }
  assert.match(PREFLIGHT_HEADERS['Access-Control-Allow-Headers']!, /Roamlink-Session/);
  assert.match(PREFLIGHT_HEADERS['Access-Control-Allow-Headers']!, /Roamlink-Ack/);
  assert.match(PREFLIGHT_HEADERS['Access-Control-Allow-Headers']!, /Content-Type/);
  assert.deepEqual(decideRoute('OPTIONS', url('/rl/nope'), headers()), { status: 404 });
  const ws = decideRoute('OPTIONS', url('/rl/ws'), headers());
  assert.ok('status' in ws);
  assert.equal(ws.status, 405);
});

test('CORS: withCors adds the fields and keeps status, fields and body', async () => {
  const r = withCors(
    new Response(new Uint8Array([1, 2, 3]), {
      status: 200,
      headers: { 'Roamlink-Seq': '7', 'Cache-Control': 'no-store' },
    }),
  );
  assert.equal(r.status, 200);
  assert.equal(r.headers.get('roamlink-seq'), '7');
  assert.equal(r.headers.get('cache-control'), 'no-store');
  for (const [k, v] of Object.entries(CORS_HEADERS)) assert.equal(r.headers.get(k), v);
  assert.deepEqual(new Uint8Array(await r.arrayBuffer()), new Uint8Array([1, 2, 3]));
  const e = withCors(new Response(null, { status: 400 }));
  assert.equal(e.status, 400);
  assert.equal(e.headers.get('access-control-allow-origin'), '*');
});
