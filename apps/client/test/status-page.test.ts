/**
 * The relay's status page data with real processes: `roamlink relay --status-page` and
 * `roamlink connect` on loopback. /status/api shows the session, the race of its first round,
 * the verdict with both sides' views, RTT samples; then the client's UDP socket is dropped
 * (`--control`: `drop udp`) and the move reaches an open /status/events stream live and the
 * timeline of /status/api, with the verdict of the path it moved to.
 */
import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import { cpuAesGcm } from '@roamlink/crypto-node';
import {
  connectArgs,
  keygen,
  type Line,
  type Proc,
  relayArgs,
  run,
  sleep,
  stop,
  tempDir,
} from './cli-process.ts';

interface Row {
  field: string;
  client: string | null;
  relay: string | null;
  match: string;
}
interface Session {
  id: string;
  state: string;
  encapsulation: string | null;
  path: string | null;
  round: {
    round: number;
    chosen: string | null;
    raced: { encapsulation: string; path: string; arrivedMs: number; chosen: boolean }[];
  } | null;
  verdict: {
    verdict: string;
    encapsulation: string;
    path: string;
    clientView: Record<string, unknown> | null;
    relayView: Record<string, unknown> | null;
    rows: Row[];
  } | null;
  series: { t: number[]; rttMs: (number | null)[] };
}
interface Entry {
  seq: number;
  kind: string;
  title: string;
  reason: string | null;
  from: string | null;
  to: string | null;
  session: string;
}
interface Snapshot {
  relay: { publicKey: string };
  sessions: Session[];
  timeline: Entry[];
}

let relay: Proc | undefined;
let client: Proc | undefined;
after(async () => {
  await stop(relay);
  await stop(client);
});

/** Polls /status/api until `pred` holds (at most `ms`). */
async function until(
  base: string,
  pred: (s: Snapshot) => boolean,
  what: string,
  ms = 10_000,
): Promise<Snapshot> {
  const end = Date.now() + ms;
  let last: Snapshot | undefined;
  while (Date.now() < end) {
    last = (await (await fetch(`${base}/status/api`)).json()) as Snapshot;
    if (pred(last)) return last;
    await sleep(100);
  }
  throw new Error(`no ${what} in ${ms} ms; last: ${JSON.stringify(last).slice(0, 3000)}`);
}

/** Reads `update` events off an open SSE response until one matches. */
async function sseUntil(
  reader: ReadableStreamDefaultReader<Uint8Array>,
  pred: (u: { type: string; entry?: Entry }) => boolean,
  ms: number,
): Promise<{ type: string; entry?: Entry }> {
  const dec = new TextDecoder();
  let buf = '';
  const deadline = Date.now() + ms;
  for (;;) {
    let end = buf.indexOf('\n\n');
    while (end >= 0) {
      const block = buf.slice(0, end);
      buf = buf.slice(end + 2);
      const data = /^data: (.*)$/m.exec(block)?.[1];
      if (/^event: update$/m.test(block) && data) {
        const u = JSON.parse(data) as { type: string; entry?: Entry };
        if (pred(u)) return u;
      }
      end = buf.indexOf('\n\n');
    }
    const left = deadline - Date.now();
    if (left <= 0) throw new Error('no such update on /status/events');
    let timer: ReturnType<typeof setTimeout> | undefined;
    const r = await Promise.race([
      reader.read(),
      new Promise<undefined>((resolve) => {
        timer = setTimeout(() => resolve(undefined), left);
      }),
    ]);
    clearTimeout(timer);
    if (!r || r.done) throw new Error('no such update on /status/events');
    buf += dec.decode(r.value, { stream: true });
  }
}

test('relay --status-page: /status/api shows the session, race, both views; a move arrives live', async (t) => {
  const started = performance.now();
  const dir = tempDir();
  const pub = await keygen(dir);
  relay = run(relayArgs(dir, pub, ['--status-page']));
  const listening: Line = await relay.until((l) => l.msg === 'listening', 'relay listening');
  const base = `http://${listening.http}`;
  assert.equal(listening.status, `${base}/status`, 'the listening line names the page');
  // It also says how the suites were ordered and what the crypto measurement saw.
  const measured = listening.cryptoMeasured as { suite: string; MBps: number; bytes: number }[];
  for (const suite of ['aes-256-gcm', 'chacha20-poly1305']) {
    assert.ok(
      measured.some((m) => m.suite === suite && m.MBps > 0 && m.bytes === 60_000),
      suite,
    );
  }
  const cpu = cpuAesGcm();
  assert.equal(listening.suitesOrderedBy, cpu === null ? 'measurement' : 'cpu');
  if (cpu !== null) assert.deepEqual(listening.suites, cpu ? [2, 1] : [1, 2]);
  client = run(connectArgs(listening, dir));
  await client.until((l) => l.msg === 'registered', 'registration');

  // The session, registered on UDP (the relay's first choice on loopback) after racing the rest.
  // A transport that came up late starts another round; its TCP copy may arrive a moment after
  // the UDP one, so the page is read until the round shows both.
  const snap = await until(
    base,
    (s) =>
      s.sessions[0]?.state === 'connected' &&
      s.sessions[0].encapsulation === 'udp' &&
      (s.sessions[0].series.rttMs.some((v) => v !== null) ?? false) &&
      (s.sessions[0].round?.raced.some((r) => r.encapsulation === 'tcp') ?? false),
    'a connected UDP session with an RTT sample, raced against TCP',
  );
  assert.equal(snap.relay.publicKey, listening.publicKey);
  assert.equal(snap.sessions.length, 1);
  const s = snap.sessions[0]!;
  assert.equal(s.id, pub, 'the session is the client key');
  assert.ok(s.round, 'a registration round');
  // Round 1, or a later one if a transport came up late and the client registered again with it.
  assert.ok(s.round.round >= 1, `round ${s.round.round}`);
  assert.equal(s.round.chosen, 'udp');
  const raced = s.round.raced.map((r) => r.encapsulation);
  assert.ok(raced.includes('udp') && raced.includes('tcp'), `raced: ${raced}`);
  assert.equal(s.round.raced.filter((r) => r.chosen).length, 1);
  assert.equal(s.round.raced[0]!.arrivedMs, 0, 'times are relative to the first RREQ');
  assert.ok(s.round.raced.every((r) => r.arrivedMs >= 0 && r.arrivedMs < 5000));

  // The verdict, with what each side saw: on loopback nothing translates.
  const v = s.verdict!;
  assert.equal(v.verdict, 'none');
  assert.equal(v.encapsulation, 'udp');
  assert.equal(v.path, s.path);
  assert.ok(v.clientView && v.relayView, 'both views');
  assert.equal(v.relayView.srcAddr, '127.0.0.1');
  assert.equal(v.clientView.srcPort, v.relayView.srcPort, 'the client’s own port, as it sent it');
  assert.equal(v.clientView.dstPort, Number(String(listening.udp).split(':')[1]));
  const src = v.rows.find((r) => r.field === 'srcPort')!;
  assert.equal(src.match, 'same');
  t.diagnostic(
    `race ${s.round.raced.map((r) => `${r.encapsulation}+${r.arrivedMs}ms${r.chosen ? '*' : ''}`).join(' ')}`,
  );

  // Live: an SSE stream open before the move hears it.
  const ac = new AbortController();
  const res = await fetch(`${base}/status/events`, { signal: ac.signal });
  assert.equal(res.headers.get('content-type'), 'text/event-stream');
  const reader = res.body!.getReader();
  const moveAt = performance.now();
  client.send('disable udp');
  const live = await sseUntil(
    reader,
    (u) => u.type === 'timeline' && u.entry?.from === 'udp' && u.entry.to !== 'udp',
    10_000,
  );
  const liveMs = performance.now() - moveAt;
  ac.abort();
  const e = live.entry!;
  assert.equal(e.kind, 'fallback', 'a move down the preference order is a fallback');
  assert.equal(e.session, pub);
  assert.equal(e.reason, 'registration');
  t.diagnostic(`move "${e.title}" on /status/events ${liveMs.toFixed(0)} ms after "disable udp"`);

  // And in the snapshot: the entry, and the verdict of the path the session moved to.
  const after = await until(
    base,
    (x) => x.timeline.some((y) => y.seq === e.seq) && x.sessions[0]?.verdict?.path !== v.path,
    'the move in the snapshot',
  );
  const moved = after.sessions[0]!;
  assert.ok(moved.round!.round >= 2);
  assert.equal(moved.encapsulation, e.to);
  assert.equal(moved.verdict!.encapsulation, e.to);
  assert.equal(moved.verdict!.path, moved.path);
  assert.ok(moved.verdict!.clientView && moved.verdict!.relayView);
  assert.equal(moved.verdict!.clientView.srcPort, moved.verdict!.relayView.srcPort);
  assert.equal(moved.verdict!.verdict, 'none');

  // UDP back: the session returns to it, a move up the preference order.
  client.send('enable udp');
  const back = await until(
    base,
    (x) =>
      x.sessions[0]?.encapsulation === 'udp' &&
      x.timeline.some((y) => y.seq > e.seq && y.kind === 'move' && y.to === 'udp'),
    'the move back to UDP',
  );
  const ret = back.timeline.find((y) => y.seq > e.seq && y.kind === 'move' && y.to === 'udp')!;
  assert.equal(ret.from, e.to);
  t.diagnostic(`then "${ret.title}" (${ret.reason})`);
  t.diagnostic(`total ${(performance.now() - started).toFixed(0)} ms`);
});
