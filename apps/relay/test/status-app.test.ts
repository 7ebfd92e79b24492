/**
 * The status routes of createRelayApp, through the app's fetch (no sockets): the page and its
 * assets, the 503 that says how to build a missing page, the snapshot JSON, and the SSE stream
 * (a snapshot first, then each update; the subscription ends when the client goes).
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { createRelayApp, type StatusAssets } from '../src/app.ts';
import { StatusRecorder } from '../src/status.ts';

const T0 = 1_700_000_000_000;
const enc = new TextEncoder();

function appWith(
  assets: StatusAssets | undefined,
  recorder = new StatusRecorder({ now: () => T0 }),
) {
  return {
    recorder,
    app: createRelayApp({
      now: () => T0,
      startedAt: T0,
      sessions: () => 0,
      ...(assets ? { status: { recorder, assets } } : {}),
    }),
  };
}

const built: StatusAssets = {
  files: new Map([
    [
      'index.html',
      { type: 'text/html; charset=utf-8', body: enc.encode('<!doctype html><title>s</title>') },
    ],
    ['assets/index-abc.js', { type: 'text/javascript; charset=utf-8', body: enc.encode('1') }],
  ]),
};

test('GET /status serves the built page; assets are cached for good; others 404', async () => {
  const { app } = appWith(built);
  for (const path of ['/status', '/status/']) {
    const r = await app.request(path);
    assert.equal(r.status, 200);
    assert.equal(r.headers.get('content-type'), 'text/html; charset=utf-8');
    assert.equal(r.headers.get('cache-control'), 'no-store');
    assert.equal(await r.text(), '<!doctype html><title>s</title>');
  }
  const js = await app.request('/status/assets/index-abc.js');
  assert.equal(js.status, 200);
  assert.equal(js.headers.get('content-type'), 'text/javascript; charset=utf-8');
  assert.match(js.headers.get('cache-control') ?? '', /immutable/);
  assert.equal((await app.request('/status/assets/nope.js')).status, 404);
  assert.equal((await app.request('/status/../health')).status, 200); // normalised by the URL
  assert.equal((await app.request('/status/%2e%2e/x')).status, 404);
});

test('without a built page, /status says how to build it; the API still works', async () => {
  const { app } = appWith({ missing: 'No built page. Build it with `pnpm … build` <now>.' });
  const r = await app.request('/status');
  assert.equal(r.status, 503);
  const html = await r.text();
  assert.match(html, /The status page is not built/);
  assert.match(html, /Build it with `pnpm … build` &#60;now&#62;\./, 'escaped, not markup');
  assert.equal((await app.request('/status/api')).status, 200);
});

test('no status deps: no /status routes', async () => {
  const { app } = appWith(undefined);
  assert.equal((await app.request('/status')).status, 404);
  assert.equal((await app.request('/status/api')).status, 404);
});

test('GET /status/api is the snapshot', async () => {
  const { app, recorder } = appWith(built);
  recorder.setRelay({ publicKey: 'cd'.repeat(32) });
  recorder.observe({ type: 'goaway', code: 0, peer: 'ef'.repeat(32) });
  const r = await app.request('/status/api');
  assert.equal(r.status, 200);
  assert.equal(r.headers.get('cache-control'), 'no-store');
  const body = await r.json();
  assert.deepEqual(body, JSON.parse(JSON.stringify(recorder.snapshot())));
  assert.equal(body.relay.publicKey, 'cd'.repeat(32));
  assert.equal(body.sessions[0].state, 'left');
});

test('GET /status/events: a snapshot, then updates in order; unsubscribed when the client goes', async () => {
  const { app, recorder } = appWith(built);
  const r = await app.request('/status/events');
  assert.equal(r.status, 200);
  assert.equal(r.headers.get('content-type'), 'text/event-stream');
  const reader = r.body!.getReader();
  const dec = new TextDecoder();
  let buf = '';
  const nextEvent = async (): Promise<{ event: string; data: unknown }> => {
    for (;;) {
      const end = buf.indexOf('\n\n');
      if (end >= 0) {
        const block = buf.slice(0, end);
        buf = buf.slice(end + 2);
        if (block.startsWith(':')) continue;
        const event = /^event: (.*)$/m.exec(block)?.[1] ?? '';
        const data = block
          .split('\n')
          .filter((l) => l.startsWith('data: '))
          .map((l) => l.slice(6))
          .join('\n');
        return { event, data: JSON.parse(data) };
      }
      const { done, value } = await reader.read();
      if (done) throw new Error('stream ended');
      buf += dec.decode(value, { stream: true });
    }
  };
  const first = await nextEvent();
  assert.equal(first.event, 'snapshot');
  assert.deepEqual((first.data as { sessions: unknown[] }).sessions, []);
  assert.equal(recorder.subscribers, 1);

  recorder.observe({ type: 'goaway', code: 5, peer: 'ab'.repeat(32) });
  const u1 = await nextEvent();
  assert.equal(u1.event, 'update');
  assert.equal((u1.data as { type: string }).type, 'session');
  const u2 = await nextEvent();
  assert.deepEqual(u2.data, {
    type: 'timeline',
    entry: {
      seq: 1,
      t: T0,
      session: 'ab'.repeat(32),
      kind: 'goaway',
      title: 'Client said GOAWAY',
      reason: 'shutting down',
      from: null,
      to: null,
      value: 5,
      round: null,
    },
  });

  await reader.cancel();
  for (let i = 0; i < 50 && recorder.subscribers > 0; i++)
    await new Promise((r) => setTimeout(r, 10));
  assert.equal(recorder.subscribers, 0, 'the subscription ended with the client');
});
