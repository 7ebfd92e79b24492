/**
 * The status page on the Worker (workerd through miniflare): the page's files bundled into the
 * Worker and served by the entry; /status/api and /status/events with a session routing id
 * answered by that session's Durable Object from its StatusRecorder (the verdict, then a move
 * from WebSocket to HTTP, live over Server-Sent Events); without an id, the relay's facts and no
 * session; a malformed id 400.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { Encapsulation, toHex } from '@roamlink/core';
import type { Miniflare } from 'miniflare';
import type { StatusSnapshot, StatusUpdate } from '../../relay/src/status.ts';
import { statusAssetsModule } from '../scripts/bundle.ts';
import {
  buildWorker,
  makeKeys,
  type RelayKeys,
  startWorker,
  TestClient,
  until,
} from './worker-harness.ts';

let keys: RelayKeys;
let persist = '';
let mf: Miniflare;
let base = '';
const clients: TestClient[] = [];

before(async () => {
  const { code } = await buildWorker();
  keys = makeKeys();
  persist = mkdtempSync(join(tmpdir(), 'roamlink-worker-status-'));
  ({ mf } = await startWorker({ code, keys, persist }).then((w) => {
    base = `http://127.0.0.1:${w.port}`;
    return w;
  }));
});

after(async () => {
  for (const c of clients) await c.close();
  await mf?.dispose();
  rmSync(persist, { recursive: true, force: true });
});

test('the page and its assets come from the bundle; without an id, no session', async (t) => {
  const page = await fetch(`${base}/status`);
  const html = await page.text();
  if (statusAssetsModule() === undefined) {
    t.diagnostic('no built status page: the Worker says how to build it');
    assert.equal(page.status, 503);
    assert.match(html, /status-page build/);
  } else {
    assert.equal(page.status, 200);
    assert.match(page.headers.get('content-type') ?? '', /text\/html/);
    const js = /src="\/status\/(assets\/[\w.-]+\.js)"/.exec(html)?.[1];
    assert.ok(js, html);
    const a = await fetch(`${base}/status/${js}`);
    assert.equal(a.status, 200);
    assert.match(a.headers.get('content-type') ?? '', /javascript/);
    assert.ok((await a.text()).length > 1000);
  }
  assert.equal((await fetch(`${base}/status/assets/nope.js`)).status, 404);
  const api = (await (await fetch(`${base}/status/api`)).json()) as StatusSnapshot;
  assert.equal(api.relay.sessionScoped, true);
  assert.equal(api.relay.publicKey, toHex(keys.relay.publicKey));
  assert.deepEqual(api.relay.encapsulations, ['websocket', 'http-stream', 'http-poll']);
  assert.deepEqual(api.sessions, []);
  assert.equal((await fetch(`${base}/status/api?sid=short`)).status, 400);
  assert.equal((await fetch(`${base}/status/events?sid=a&sid=b`)).status, 400);
});

test("one session's object: its verdict, then its move, live over SSE", async () => {
  const c = new TestClient(keys);
  clients.push(c);
  c.connect([await c.dialWs(base)]);
  await until(() => c.session.encapsulation === Encapsulation.WEBSOCKET, 10_000, 'registration');
  const snap = (await (await fetch(`${base}/status/api?sid=${c.sid}`)).json()) as StatusSnapshot;
  assert.equal(snap.sessions.length, 1);
  const s = snap.sessions[0]!;
  assert.equal(s.id, toHex(keys.client.publicKey));
  assert.equal(s.state, 'connected');
  assert.equal(s.encapsulation, 'websocket');
  assert.equal(s.verdict?.verdict, 'protocol');
  assert.ok(s.verdict?.rows.some((r) => r.field === 'header:cf-connecting-ip'));
  // Another id's object knows nothing of it.
  const other = (await (
    await fetch(`${base}/status/api?sid=${'b'.repeat(32)}`)
  ).json()) as StatusSnapshot;
  assert.deepEqual(other.sessions, []);

  // Live: the snapshot first, then the move as it happens.
  const ac = new AbortController();
  const res = await fetch(`${base}/status/events?sid=${c.sid}`, { signal: ac.signal });
  assert.equal(res.status, 200);
  assert.match(res.headers.get('content-type') ?? '', /text\/event-stream/);
  const reader = res.body!.pipeThrough(new TextDecoderStream()).getReader();
  let buf = '';
  const seen: { event: string; data: unknown }[] = [];
  const next = async (pred: (e: { event: string; data: unknown }) => boolean): Promise<void> => {
    const end = Date.now() + 10_000;
    while (!seen.some(pred)) {
      if (Date.now() > end)
        throw new Error(`no such event in ${JSON.stringify(seen).slice(0, 500)}`);
      const { value, done } = await reader.read();
      if (done) throw new Error('the stream ended');
      buf += value;
      for (let i = buf.indexOf('\n\n'); i >= 0; i = buf.indexOf('\n\n')) {
        const block = buf.slice(0, i);
        buf = buf.slice(i + 2);
        const event = /^event: (.*)$/m.exec(block)?.[1];
        const data = /^data: (.*)$/m.exec(block)?.[1];
        if (event && data) seen.push({ event, data: JSON.parse(data) });
      }
    }
  };
  await next((e) => e.event === 'snapshot');
  const t0 = performance.now();
  c.move([c.openHttp(base, 'stream')], 'e2e-move');
  await next(
    (e) =>
      e.event === 'update' &&
      (e.data as StatusUpdate).type === 'timeline' &&
      ['move', 'fallback'].includes(
        (e.data as Extract<StatusUpdate, { type: 'timeline' }>).entry.kind,
      ),
  );
  const moveMs = performance.now() - t0;
  const entry = seen
    .map((e) => e.data as StatusUpdate)
    .find(
      (u): u is Extract<StatusUpdate, { type: 'timeline' }> =>
        u.type === 'timeline' && u.entry.kind === 'fallback',
    );
  assert.ok(entry, 'websocket → http-stream is down the preference: a fallback');
  assert.equal(entry.entry.from, 'websocket');
  assert.equal(entry.entry.to, 'http-stream');
  // A sample a second while the page watches.
  await next((e) => e.event === 'update' && (e.data as StatusUpdate).type === 'sample');
  ac.abort();
  console.log(`# the move was on the event stream ${moveMs.toFixed(0)} ms after the client moved`);
});
