/**
 * The relay Worker on workerd (miniflare), driven by the Node client machinery: handshake and
 * registration over WebSocket, a stream to a local TCP echo server through `connect()`, a move
 * from WebSocket to HTTP on the same SA, and a session that outlives its Durable Object: evicted
 * while idle (its hibernated WebSocket wakes a new instance) and restarted with workerd.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { Encapsulation, Verdict } from '@roamlink/core';
import type { MuxDuplex } from '@roamlink/node';
import type { Miniflare } from 'miniflare';
import {
  buildWorker,
  echoServer,
  echoThrough,
  makeKeys,
  type RelayKeys,
  sha256,
  startWorker,
  TestClient,
  until,
} from './worker-harness.ts';

const timings: Record<string, number> = {};
let code = '';
let keys: RelayKeys;
let persist = '';
let mf: Miniflare;
let base = '';
let port = 0;
let echo: Awaited<ReturnType<typeof echoServer>>;
const clients: TestClient[] = [];

/** The session object's diagnostics (ROAMLINK_DEBUG). */
interface DebugState {
  bornAt: number;
  restored: number;
  peers: { encapsulation: number | null; epoch: number | null; staleStreams: number }[];
}
const state = async (sid: string): Promise<DebugState> =>
  (await fetch(`${base}/rl/state?sid=${sid}`)).json() as Promise<DebugState>;

before(async () => {
  const b = await buildWorker();
  code = b.code;
  timings.buildMs = Math.round(b.ms);
  timings.bundleKiB = Math.round(b.bytes / 1024);
  keys = makeKeys();
  persist = mkdtempSync(join(tmpdir(), 'roamlink-worker-'));
  const t0 = performance.now();
  ({ mf, port } = await startWorker({ code, keys, persist }));
  timings.workerdStartMs = Math.round(performance.now() - t0);
  base = `http://127.0.0.1:${port}`;
  echo = await echoServer();
});

after(async () => {
  for (const c of clients) await c.close();
  await mf?.dispose();
  echo?.server.close();
  rmSync(persist, { recursive: true, force: true });
  console.log(`# timings ${JSON.stringify(timings)}`);
});

test('health and routing: the hono app answers, a request without a session id does not route, an up-stream for no session is refused', async () => {
  const h = await fetch(`${base}/health`);
  assert.equal(h.status, 200);
  assert.equal(((await h.json()) as { ok: boolean }).ok, true);
  assert.equal((await fetch(`${base}/rl/poll`)).status, 400, 'no sid');
  assert.equal((await fetch(`${base}/rl/poll?sid=short`)).status, 400, 'bad sid');
  assert.equal((await fetch(`${base}/rl/up?sid=${'a'.repeat(32)}`)).status, 405);
  assert.equal((await fetch(`${base}/rl/ws?sid=${'a'.repeat(32)}`)).status, 426);
  assert.equal((await fetch(`${base}/rl/nope?sid=${'a'.repeat(32)}`)).status, 404);
  // An up-stream for a session the relay does not know: 409 (it never opens one).
  const up = await fetch(`${base}/rl/up?sid=${'a'.repeat(32)}&s=${'b'.repeat(32)}&m=stream`, {
    method: 'POST',
    headers: { 'Roamlink-Stream': 'up', 'Content-Type': 'application/octet-stream' },
    body: new Uint8Array([0, 2]),
  });
  assert.equal(up.status, 409);
});

test('handshake, registration on WebSocket, a stream to a TCP echo server, a move to HTTP', async () => {
  const c = new TestClient(keys);
  clients.push(c);
  const t0 = performance.now();
  const ws = await c.dialWs(base);
  const hs = c.openHttp(base, 'stream');
  c.connect([ws, hs]);
  await until(() => c.session.state === 'established', 10_000, 'handshake');
  timings.handshakeMs = Math.round(performance.now() - t0);
  await until(() => c.session.encapsulation === Encapsulation.WEBSOCKET, 5_000, 'registration');
  await until(() => c.rreps.some((r) => r.chosen), 5_000, 'a chosen RREP');
  timings.registeredMs = Math.round(performance.now() - t0);
  assert.equal(c.handshakes, 1);
  // No UDP and no TCP on Workers: the relay offers exactly what it can serve.
  for (const r of c.rreps) {
    assert.deepEqual(r.encapsulations, [
      Encapsulation.WEBSOCKET,
      Encapsulation.HTTP_STREAM,
      Encapsulation.HTTP_POLL,
    ]);
  }
  const chosen = c.rreps.find((r) => r.chosen)!;
  assert.equal(chosen.chosenEncapsulation, Encapsulation.WEBSOCKET);
  // At the edge the relay sees no socket: the client's address is what the edge says
  // (CF-Connecting-IP, which miniflare sets as the edge does), no port, and that header is a
  // proxy's (docs/PROTOCOL.md §6.9 rule 1a): the verdict says a proxy translated the path.
  assert.equal(chosen.observed.srcAddr, '127.0.0.1');
  assert.equal(chosen.observed.srcPort, undefined);
  assert.ok(chosen.observed.headers?.some(([k]) => k === 'cf-connecting-ip'));
  assert.equal(c.session.verdict, Verdict.PROTOCOL);

  // A stream through connect() to the echo server: 1 MiB there and back, intact.
  const t1 = performance.now();
  const s = (await c.host.open({ host: '127.0.0.1', port: echo.port })) as MuxDuplex;
  const data = new Uint8Array(randomBytes(1 << 20));
  const back = await echoThrough(s, data, 30_000);
  timings.echo1MiBWsMs = Math.round(performance.now() - t1);
  assert.equal(sha256(back), sha256(data));

  // Move: the WebSocket goes away; the session registers on HTTP, same SA; the stream goes on.
  const sa = c.session.current!.localSpi;
  c.ws.closePath(ws.path);
  const t2 = performance.now();
  c.move([hs], 'ws-closed');
  await until(() => c.session.encapsulation === Encapsulation.HTTP_STREAM, 10_000, 'move');
  timings.moveToHttpMs = Math.round(performance.now() - t2);
  const more = new Uint8Array(randomBytes(512 * 1024));
  const t3 = performance.now();
  const back2 = await echoThrough(s, more, 30_000);
  timings.echo512KiBHttpMs = Math.round(performance.now() - t3);
  assert.equal(sha256(back2), sha256(more));
  assert.equal(c.session.current!.localSpi, sa, 'same SA');
  assert.equal(c.handshakes, 1, 'no new handshake');
  s.end();
  const st = await state(c.sid);
  assert.equal(st.peers.length, 1);
  assert.equal(st.peers[0]!.encapsulation, Encapsulation.HTTP_STREAM);
});

test('egress policy: a target the policy refuses is refused with POLICY', async () => {
  const c = new TestClient(keys);
  clients.push(c);
  c.connect([await c.dialWs(base)]);
  await until(() => c.session.state === 'established', 10_000, 'handshake');
  await assert.rejects(c.host.open({ host: '127.0.0.2', port: echo.port }), (e: Error) => {
    assert.match(e.message, /policy/);
    return true;
  });
  await assert.rejects(c.host.open({ host: 'localhost', port: echo.port }), /policy/);
});

test('a session outlives its Durable Object: evicted while idle, woken by its hibernated WebSocket', async () => {
  const c = new TestClient(keys);
  clients.push(c);
  c.connect([await c.dialWs(base)]);
  await until(() => c.session.encapsulation === Encapsulation.WEBSOCKET, 10_000, 'registration');
  const sa = c.session.current!.localSpi;
  const s1 = (await c.host.open({ host: '127.0.0.1', port: echo.port })) as MuxDuplex;
  const d1 = new Uint8Array(randomBytes(64 * 1024));
  assert.equal(sha256(await echoThrough(s1, d1, 20_000)), sha256(d1));
  s1.end();
  await new Promise<void>((resolve) => s1.once('close', () => resolve()));
  const before = await state(c.sid);
  assert.equal(before.restored, 0);
  // Idle: no egress socket, no held request, no stream-layer timer. The runtime evicts an idle
  // object after 10 s; its WebSocket stays connected (hibernation).
  await new Promise((r) => setTimeout(r, 13_000));
  const t0 = performance.now();
  const s2 = (await c.host.open({ host: '127.0.0.1', port: echo.port })) as MuxDuplex;
  const d2 = new Uint8Array(randomBytes(256 * 1024));
  const back = await echoThrough(s2, d2, 20_000);
  timings.afterEvictionEcho256KiBMs = Math.round(performance.now() - t0);
  assert.equal(sha256(back), sha256(d2));
  const after = await state(c.sid);
  assert.ok(after.bornAt > before.bornAt, 'a new instance');
  assert.equal(after.restored, 1, 'its state read back from storage');
  assert.equal(after.peers[0]!.epoch, 1, 'the stream layer resumed');
  assert.equal(c.session.current!.localSpi, sa, 'same SA');
  assert.equal(c.handshakes, 1, 'no new handshake');
  assert.equal(c.pathErrors.length, 0, 'the WebSocket stayed up');
  s2.end();
});

test('a session outlives a restart of workerd: lost streams are reset, bytes sent meanwhile arrive', async () => {
  const c = new TestClient(keys);
  clients.push(c);
  c.connect([await c.dialWs(base)]);
  await until(() => c.session.encapsulation === Encapsulation.WEBSOCKET, 10_000, 'registration');
  const sa = c.session.current!.localSpi;
  const s1 = (await c.host.open({ host: '127.0.0.1', port: echo.port })) as MuxDuplex;
  const d1 = new Uint8Array(randomBytes(64 * 1024));
  assert.equal(sha256(await echoThrough(s1, d1, 20_000)), sha256(d1));
  const s1Error = new Promise<Error>((resolve) => s1.once('error', resolve));

  // workerd goes away (a deploy, a crash): every connection with it.
  const t0 = performance.now();
  await mf.dispose();
  await until(() => c.pathErrors.length > 0, 5_000, 'the WebSocket to close');
  // Meanwhile the client opens a stream and writes: nothing can be lost of this.
  const d2 = new Uint8Array(randomBytes(256 * 1024));
  const s2 = c.host.open({ host: '127.0.0.1', port: echo.port });
  ({ mf } = await startWorker({ code, keys, persist, port }));
  const ws2 = await c.dialWs(base);
  c.move([ws2], 'relay-restarted');
  const stream2 = (await s2) as MuxDuplex;
  const back = await echoThrough(stream2, d2, 30_000);
  timings.restartToEcho256KiBMs = Math.round(performance.now() - t0);
  assert.equal(sha256(back), sha256(d2), 'every byte written during the restart arrived');
  // The stream whose TCP connection died with workerd is reset, not silently cut.
  const e = await s1Error;
  assert.match(e.message, /internal/);
  assert.equal(c.session.current!.localSpi, sa, 'same SA');
  assert.equal(c.handshakes, 1, 'no new handshake');
  const st = await state(c.sid);
  assert.equal(st.restored, 1);
  assert.equal(st.peers[0]!.epoch, 1);
  assert.equal(st.peers[0]!.staleStreams, 0, 'the client acknowledged the reset');
  stream2.end();
});
