/**
 * The RLHTTP/1 session table the Node, Fetch and simulated relays share: tokens and modes,
 * numbering, the copies kept for a streaming client that has not seen its stream, its fallback
 * to polling, and the idle and trust timers (on a fake clock).
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { type HttpDown, HttpMode, type HttpSession, HttpSessions, seqField } from '../src/index.ts';

const TOKEN = 'abcdefghijklmnop0123';

function table(o: { maxQueuedBytes?: number; adoptDatagrams?: boolean } = {}) {
  let now = 0;
  const timers = new Map<number, { at: number; fn: () => void }>();
  let next = 0;
  const expired: string[] = [];
  const fallbacks: string[] = [];
  const t = new HttpSessions({
    maxQueuedBytes: o.maxQueuedBytes ?? 1000,
    maxBatchBytes: 100,
    sessionIdleMs: 60_000,
    streamTrustMs: 10_000,
    timers: {
      set: (fn, ms) => {
        timers.set(++next, { at: now + ms, fn });
        return next;
      },
      clear: (h) => timers.delete(h as number),
    },
    onExpired: (s) => expired.push(s.id),
    onFallback: (s) => fallbacks.push(s.id),
    ...(o.adoptDatagrams === undefined ? {} : { adoptDatagrams: o.adoptDatagrams }),
  });
  const advance = (ms: number): void => {
    now += ms;
    for (const [h, x] of [...timers].sort((a, b) => a[1].at - b[1].at)) {
      if (x.at <= now && timers.delete(h)) x.fn();
    }
  };
  return { t, advance, expired, fallbacks, timers };
}

const d = (n: number, size = 10): Uint8Array => new Uint8Array(size).fill(n);
const open = (t: HttpSessions, mode: HttpMode, ack?: number): HttpSession => {
  const s = t.open(TOKEN, ack, mode);
  assert.equal(typeof s, 'object');
  return s as HttpSession;
};
const down = (): HttpDown & { kicks: number; closed: boolean } => {
  const x = {
    kicks: 0,
    closed: false,
    kick: () => {
      x.kicks++;
    },
    close: () => {
      x.closed = true;
    },
  };
  return x;
};

test('seqField: counts, absent, malformed or repeated', () => {
  assert.equal(seqField(' 42 '), 42);
  assert.equal(seqField(undefined), undefined);
  assert.equal(seqField(null), undefined);
  for (const bad of ['', '-1', '1e3', '1234567890123456', 'x'])
    assert.ok(Number.isNaN(seqField(bad)));
  assert.ok(Number.isNaN(seqField(['1', '2'])));
});

test('tokens, acks and modes: 400 and 409 change nothing', () => {
  const { t } = table();
  assert.equal(t.open(null, undefined, HttpMode.STREAM), 400);
  assert.equal(t.open('short', undefined, HttpMode.STREAM), 400);
  // An ack above what was ever sent, or not a count.
  assert.equal(t.open(TOKEN, 1, HttpMode.STREAM), 400);
  assert.equal(t.open(TOKEN, Number.NaN, HttpMode.STREAM), 400);
  assert.deepEqual(t.paths, []);
  const s = open(t, HttpMode.STREAM);
  assert.equal(s.id, `hs:${TOKEN}`);
  // Polling the streaming token without an ack is another client's mistake: 409.
  assert.equal(t.open(TOKEN, undefined, HttpMode.POLL), 409);
  assert.equal(t.modeOf(s), HttpMode.STREAM);
});

test('a stream not yet seen: copies kept, acked, re-sent in POST answers; confirmed drops them', () => {
  const { t } = table();
  const s = open(t, HttpMode.STREAM);
  const dn = down();
  t.attach(s, dn);
  for (let i = 1; i <= 3; i++) assert.equal(t.queue(s.id, d(i)), 'queued');
  assert.equal(dn.kicks, 3);
  // The stream takes them (numbered 0, 1, 2); copies stay until the client says it has them.
  assert.deepEqual(
    t.take(s, Number.POSITIVE_INFINITY).map((x) => x[0]),
    [1, 2, 3],
  );
  assert.equal(s.headSeq, 3);
  assert.equal(s.kept.length, 3);
  // A POST with Roamlink-Ack: 1 (it holds datagram 0): the answer is the copies from 1 on.
  const again = t.open(TOKEN, 1, HttpMode.STREAM) as HttpSession;
  assert.equal(again, s);
  const answer = t.answerPost(s, 1)!;
  assert.equal(answer.first, 1);
  assert.deepEqual(
    answer.datagrams.map((x) => x[0]),
    [2, 3],
  );
  // A POST without the field: the stream flows; no copies from now on.
  assert.equal(t.answerPost(s, undefined), undefined);
  assert.equal(s.confirmed, true);
  assert.deepEqual(s.kept, []);
  t.queue(s.id, d(4));
  t.take(s);
  assert.deepEqual(s.kept, []);
});

test('fallback: the streaming token polled with an ack gets its copies back at the head', () => {
  const { t, fallbacks } = table();
  const s = open(t, HttpMode.STREAM);
  const stream = down();
  t.attach(s, stream);
  for (let i = 1; i <= 3; i++) t.queue(s.id, d(i));
  t.take(s, Number.POSITIVE_INFINITY);
  t.queue(s.id, d(4));
  // The client holds datagram 0 only and gives up on the stream.
  const polled = t.open(TOKEN, 1, HttpMode.POLL) as HttpSession;
  assert.equal(polled, s);
  assert.deepEqual(fallbacks, [s.id]);
  assert.equal(stream.closed, true, 'the stream is ended');
  assert.equal(t.modeOf(s), HttpMode.POLL);
  assert.equal(s.headSeq, 1);
  assert.deepEqual(
    t.take(s, Number.POSITIVE_INFINITY).map((x) => x[0]),
    [2, 3, 4],
  );
  // For good: the stream route stays refused by the adapters (s.polled), polls go on.
  assert.equal(s.polled, true);
  assert.equal(t.open(TOKEN, undefined, HttpMode.POLL), s);
});

test('queue bound and congestion; batches of at most maxBatchBytes (at least one datagram)', () => {
  const { t } = table({ maxQueuedBytes: 100 });
  const s = open(t, HttpMode.POLL);
  assert.equal(t.queue('hp:nobody-here-at-all', d(1)), 'no-session');
  for (let i = 0; i < 5; i++) assert.equal(t.queue(s.id, d(i, 20)), 'queued');
  assert.equal(t.queue(s.id, d(9, 20)), 'full');
  assert.equal(t.congested(s.id), true);
  // 100-byte batches of 22-byte records: four.
  assert.equal(t.take(s).length, 4);
  assert.equal(t.queue(s.id, d(9, 500)), 'full');
});

test('idle sessions expire unless a down request holds them; the trust timer confirms a stream', () => {
  const { t, advance, expired } = table();
  const s = open(t, HttpMode.STREAM);
  const dn = down();
  t.attach(s, dn);
  t.streamStarted(s);
  t.queue(s.id, d(1));
  t.take(s);
  assert.equal(s.kept.length, 1);
  advance(10_000);
  assert.equal(s.confirmed, true, 'trusted after streamTrustMs');
  assert.deepEqual(s.kept, []);
  advance(120_000);
  assert.deepEqual(expired, [], 'held by its stream');
  t.detach(s, dn);
  advance(59_999);
  assert.deepEqual(expired, []);
  advance(1);
  assert.deepEqual(expired, [s.id]);
  assert.equal(t.get(s.id), undefined);
  assert.equal(t.live(s), false);
  // The token starts a fresh session.
  const fresh = open(t, HttpMode.STREAM);
  assert.notEqual(fresh, s);
});

test('close ends held requests and forgets every session', () => {
  const { t, timers } = table();
  const s = open(t, HttpMode.POLL);
  const dn = down();
  t.attach(s, dn);
  t.close();
  assert.equal(dn.closed, true);
  assert.deepEqual(t.paths, []);
  assert.equal(t.holding, false);
  assert.equal(timers.size, 0, 'no timer left behind');
});

test('queue copies a datagram unless the caller adopts them (it never writes one again)', () => {
  for (const adopt of [false, true]) {
    const { t } = table({ adoptDatagrams: adopt });
    const s = open(t, HttpMode.POLL);
    const x = d(7);
    assert.equal(t.queue(s.id, x), 'queued');
    const [kept] = t.take(s);
    assert.deepEqual(kept, d(7));
    assert.equal(kept === x, adopt, adopt ? 'adopted: the same buffer' : 'a copy');
    // Without adopting, a caller that reuses its buffer does not change what was queued.
    x.fill(9);
    assert.deepEqual(kept, adopt ? d(9) : d(7));
  }
});
