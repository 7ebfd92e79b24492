/**
 * StatusRecorder fed with a scripted session: a first round raced on TCP and UDP (UDP wins by
 * upgrade, behind a NAT), the handshake, streams, samples, a second round after UDP is lost
 * (a fallback to TCP, WebSocket through a proxy losing the race), a rekey, probes and GOAWAY.
 * The snapshot is checked field by field, and the live updates, applied to an empty state as the
 * page applies them, must give the same sessions and timeline.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { MuxEvent, OuterView, PathInfo, RelayEvent, SaPair } from '@roamlink/core';
import { Encapsulation, RelayPeer, Suite, Verdict } from '@roamlink/core';
import {
  compareViews,
  type SessionSummary,
  StatusRecorder,
  type StatusUpdate,
  type TimelineEntry,
} from '../src/status.ts';

const T0 = 1_700_000_000_000;

function pathState(info: PathInfo, round: number, at: number, view: OuterView) {
  return {
    info,
    bytesIn: 0,
    bytesOut: 0,
    validated: true,
    challenge: undefined,
    rreq: { round, at, view },
  };
}

const UDP = '203.0.113.9:61000';
const udpRelayView: OuterView = {
  srcAddr: '203.0.113.9',
  srcPort: 61000,
  dstAddr: '192.0.2.1',
  dstPort: 51820,
};
const udpClientView: OuterView = {
  srcAddr: '10.0.0.2',
  srcPort: 40000,
  dstAddr: '192.0.2.1',
  dstPort: 51820,
};
const tcp1Relay: OuterView = {
  srcAddr: '10.0.0.2',
  srcPort: 40001,
  dstAddr: '192.0.2.1',
  dstPort: 51820,
};
const tcp1Client: OuterView = { ...tcp1Relay };
const tcp2Relay: OuterView = {
  srcAddr: '203.0.113.9',
  srcPort: 61002,
  dstAddr: '192.0.2.1',
  dstPort: 51820,
};
const tcp2Client: OuterView = {
  srcAddr: '10.0.0.2',
  srcPort: 40002,
  dstAddr: '192.0.2.1',
  dstPort: 51820,
};
const wsRelay: OuterView = {
  srcAddr: '198.51.100.4',
  srcPort: 50000,
  dstAddr: '192.0.2.1',
  dstPort: 51821,
  url: '/rl/ws',
  host: 'relay.example:51821',
  headers: [
    ['host', 'relay.example:51821'],
    ['via', '1.1 proxy'],
    ['user-agent', 'roamlink'],
  ],
};
const wsClient: OuterView = {
  url: 'ws://relay.example:51821/rl/ws',
  host: 'relay.example:51821',
  headers: [['user-agent', 'roamlink']],
};

/** Applies live updates as the page does. */
function reduce(updates: StatusUpdate[]): {
  sessions: Map<string, SessionSummary>;
  timeline: TimelineEntry[];
  samples: number;
} {
  const sessions = new Map<string, SessionSummary>();
  const timeline: TimelineEntry[] = [];
  let samples = 0;
  for (const u of updates) {
    if (u.type === 'session') sessions.set(u.session.id, u.session);
    else if (u.type === 'forget') sessions.delete(u.id);
    else if (u.type === 'timeline') timeline.push(u.entry);
    else if (u.type === 'sample') {
      samples++;
      for (const p of u.points) {
        const s = sessions.get(p.id)!;
        Object.assign(s, { rttMs: p.rttMs, txBps: p.txBps, rxBps: p.rxBps });
      }
    }
  }
  return { sessions, timeline, samples };
}

test('StatusRecorder: a scripted session gives the exact snapshot, and updates replay to it', () => {
  let now = T0;
  const rec = new StatusRecorder({ now: () => now, historyMs: 4000, sampleMs: 1000 });
  rec.setRelay({ publicKey: 'ab'.repeat(32) });
  const updates: StatusUpdate[] = [];
  rec.subscribe((u) => updates.push(u));

  const peer = new RelayPeer<string>(new Uint8Array(32).fill(7));
  const id = '07'.repeat(32);
  const ev = (e: Record<string, unknown>): void =>
    rec.observe({ ...e, peer } as unknown as RelayEvent<string>);
  const mux = (e: Record<string, unknown>): void =>
    rec.observe({ ...e, peer: id } as MuxEvent & { peer: string });

  // Round 1 (rides on message 1): TCP's copy arrives first and wins at once...
  peer.round = 1;
  peer.roundStartedAt = T0;
  peer.paths.set(
    'tcp:1',
    pathState({ encapsulation: Encapsulation.TCP, view: tcp1Relay }, 1, T0, tcp1Client),
  );
  peer.path = 'tcp:1';
  peer.chosenEncapsulation = Encapsulation.TCP;
  peer.decision = 1;
  ev({ type: 'path-changed', reason: 'registration' });
  ev({
    type: 'registration-answered',
    round: 1,
    encapsulation: Encapsulation.TCP,
    chosen: true,
    verdict: Verdict.NONE,
    decision: 1,
  });
  // ...and UDP's, 3 ms later, upgrades (UDP is preferred) through a NAT.
  now = T0 + 3;
  peer.paths.set(
    UDP,
    pathState({ encapsulation: Encapsulation.UDP, view: udpRelayView }, 1, T0 + 3, udpClientView),
  );
  peer.path = UDP;
  peer.chosenEncapsulation = Encapsulation.UDP;
  peer.decision = 2;
  ev({ type: 'path-changed', reason: 'upgrade' });
  ev({
    type: 'registration-answered',
    round: 1,
    encapsulation: Encapsulation.UDP,
    chosen: true,
    verdict: Verdict.ADDRESS_AND_PORT,
    decision: 2,
  });
  now = T0 + 5;
  peer.keys.current = {} as SaPair;
  ev({
    type: 'established',
    suite: Suite.CHACHA20_POLY1305,
    localSpi: 1,
    remoteSpi: 2,
    rekey: false,
  });
  now = T0 + 6;
  mux({ type: 'stream-open', id: 4, target: { host: 'example.com', port: 80 } });
  mux({ type: 'stream-refused', id: 8, code: 1 });
  // Events it has no use for change nothing.
  mux({ type: 'stream-data', id: 4, data: new Uint8Array(3) });
  ev({ type: 'keys-expired', localSpi: 9 });

  // Samples: the first has no rate yet and no RTT sample; a missing tunnel is a gap of zeros; a
  // new tunnel (counters from 0) starts again.
  const stats = (sent: number, received: number, rttMs: number, minRttMs: number) => ({
    bytesSent: sent,
    bytesReceived: received,
    rttMs,
    minRttMs,
    streamsActive: 1,
  });
  now = T0 + 1000;
  rec.sample([{ peer: id, stats: stats(1000, 500, 333, 0) }]);
  now = T0 + 2000;
  rec.sample([{ peer: id, stats: stats(51_000, 10_500, 12.5, 10) }]);
  now = T0 + 3000;
  rec.sample([]);
  now = T0 + 4000;
  // On loopback a sample may be 0 ms: min 0 with a real RTT is a sample, not "none yet".
  rec.sample([{ peer: id, stats: stats(100, 100, 0.5, 0) }]);
  now = T0 + 5000;
  rec.sample([{ peer: id, stats: stats(20_100, 2_100, 9, 8) }]);

  // Round 2: UDP is gone; TCP arrives first, WebSocket (through a proxy) 40 ms later loses.
  now = T0 + 6000;
  peer.round = 2;
  peer.roundStartedAt = T0 + 6000;
  peer.decision = 1;
  peer.paths.set(
    'tcp:2',
    pathState({ encapsulation: Encapsulation.TCP, view: tcp2Relay }, 2, T0 + 6000, tcp2Client),
  );
  peer.path = 'tcp:2';
  peer.chosenEncapsulation = Encapsulation.TCP;
  ev({ type: 'path-changed', reason: 'registration' });
  ev({
    type: 'registration-answered',
    round: 2,
    encapsulation: Encapsulation.TCP,
    chosen: true,
    verdict: Verdict.ADDRESS_AND_PORT,
    decision: 1,
  });
  now = T0 + 6040;
  peer.paths.set(
    'ws:1',
    pathState({ encapsulation: Encapsulation.WEBSOCKET, view: wsRelay }, 2, T0 + 6040, wsClient),
  );
  ev({
    type: 'registration-answered',
    round: 2,
    encapsulation: Encapsulation.WEBSOCKET,
    chosen: false,
    verdict: Verdict.PROTOCOL,
    decision: 1,
  });
  // A repeated RREQ of the same round keeps its first arrival time.
  now = T0 + 6500;
  peer.paths.get('ws:1')!.rreq!.at = T0 + 6500;
  ev({
    type: 'registration-answered',
    round: 2,
    encapsulation: Encapsulation.WEBSOCKET,
    chosen: false,
    verdict: Verdict.PROTOCOL,
    decision: 1,
  });
  now = T0 + 7000;
  ev({ type: 'established', suite: Suite.AES_256_GCM, localSpi: 3, remoteSpi: 4, rekey: true });
  now = T0 + 7100;
  ev({ type: 'path-validated', rttMs: 4.25 });
  now = T0 + 7200;
  mux({ type: 'max-payload', bytes: 1400 });
  now = T0 + 8000;
  mux({ type: 'goaway', code: 0 });
  // A session that left and has no tunnel gets no more points.
  now = T0 + 9000;
  rec.sample([]);

  now = T0 + 9500;
  const snap = rec.snapshot();
  assert.equal(snap.version, 1);
  assert.equal(snap.now, T0 + 9500);
  assert.deepEqual(snap.relay, {
    startedAt: T0,
    publicKey: 'ab'.repeat(32),
    encapsulations: ['udp', 'tcp', 'websocket', 'http-stream', 'http-poll'],
    udp: null,
    tcp: null,
    http: null,
  });
  assert.equal(snap.sessions.length, 1);
  const s = snap.sessions[0]!;
  assert.deepEqual(
    {
      id: s.id,
      state: s.state,
      since: s.since,
      lastEventAt: s.lastEventAt,
      path: s.path,
      encapsulation: s.encapsulation,
      suite: s.suite,
      handshakes: s.handshakes,
      rekeys: s.rekeys,
      moves: s.moves,
      fallbacks: s.fallbacks,
      streamsOpened: s.streamsOpened,
      streamsRefused: s.streamsRefused,
      streamsActive: s.streamsActive,
      rttMs: s.rttMs,
      txBps: s.txBps,
      rxBps: s.rxBps,
    },
    {
      id,
      state: 'left',
      since: T0,
      lastEventAt: T0 + 8000,
      path: 'tcp:2',
      encapsulation: 'tcp',
      suite: 'aes-256-gcm',
      handshakes: 2,
      rekeys: 1,
      // The upgrade that ended the first race is not a move.
      moves: 0,
      fallbacks: 1,
      streamsOpened: 1,
      streamsRefused: 1,
      streamsActive: 1,
      rttMs: 9,
      txBps: 20_000,
      rxBps: 2_000,
    },
  );
  assert.deepEqual(s.round, {
    round: 2,
    startedAt: T0 + 6000,
    decision: 1,
    chosen: 'tcp',
    raced: [
      { encapsulation: 'tcp', path: 'tcp:2', arrivedMs: 0, chosen: true, verdict: 'address+port' },
      {
        encapsulation: 'websocket',
        path: 'ws:1',
        arrivedMs: 40,
        chosen: false,
        verdict: 'protocol',
      },
    ],
  });
  assert.deepEqual(s.verdict, {
    verdict: 'address+port',
    code: Verdict.ADDRESS_AND_PORT,
    round: 2,
    encapsulation: 'tcp',
    path: 'tcp:2',
    clientView: tcp2Client,
    relayView: tcp2Relay,
    rows: [
      { field: 'srcAddr', client: '10.0.0.2', relay: '203.0.113.9', match: 'differs' },
      { field: 'srcPort', client: '40002', relay: '61002', match: 'differs' },
      { field: 'dstAddr', client: '192.0.2.1', relay: '192.0.2.1', match: 'same' },
      { field: 'dstPort', client: '51820', relay: '51820', match: 'same' },
    ],
  });
  // 10 min at 1 s in production; here 4 s: the point at T0+1000 fell out.
  assert.deepEqual(s.series, {
    t: [T0 + 2000, T0 + 3000, T0 + 4000, T0 + 5000],
    rttMs: [12.5, null, 0.5, 9],
    txBps: [50_000, 0, 0, 20_000],
    rxBps: [10_000, 0, 0, 2_000],
  });
  const row = (
    seq: number,
    t: number,
    kind: string,
    title: string,
    reason: string | null,
    from: string | null,
    to: string | null,
    value: number | null,
    round: number,
  ) => ({ seq, t, session: id, kind, title, reason, from, to, value, round });
  assert.deepEqual(snap.timeline, [
    row(1, T0, 'connect', 'Registered on tcp', 'registration', null, 'tcp', null, 1),
    row(2, T0 + 3, 'move', 'Upgraded tcp → udp', 'upgrade', 'tcp', 'udp', null, 1),
    row(3, T0 + 6000, 'fallback', 'Fell back udp → tcp', 'registration', 'udp', 'tcp', null, 2),
    row(4, T0 + 7000, 'rekey', 'Rekeyed (aes-256-gcm)', 'rekey', null, null, null, 2),
    row(
      5,
      T0 + 7100,
      'probe',
      'Path validated: PATH_CHALLENGE answered in 4.25 ms',
      'path validation',
      null,
      'tcp',
      4.25,
      2,
    ),
    row(
      6,
      T0 + 7200,
      'probe',
      'Path MTU probe acknowledged: 1400-byte packets',
      'path-MTU search (RFC 8899)',
      null,
      'tcp',
      1400,
      2,
    ),
    row(7, T0 + 8000, 'goaway', 'Client said GOAWAY', 'no error', 'tcp', null, 0, 2),
  ]);

  // The live updates: a session's summary comes before its first timeline entry; replayed, they
  // give what the snapshot says.
  assert.equal(updates[0]!.type, 'session');
  assert.deepEqual(updates[1], { type: 'timeline', entry: snap.timeline[0] });
  const replay = reduce(updates);
  assert.equal(replay.samples, 5);
  const { series: _series, ...summary } = s;
  assert.deepEqual(replay.sessions.get(id), summary);
  assert.deepEqual(replay.timeline, snap.timeline);

  // The snapshot is a copy: changing it changes nothing inside.
  s.round!.raced.length = 0;
  s.verdict!.clientView!.srcAddr = 'x';
  assert.equal(rec.snapshot().sessions[0]!.round!.raced.length, 2);
  assert.equal(rec.snapshot().sessions[0]!.verdict!.clientView!.srcAddr, '10.0.0.2');
});

test('StatusRecorder: a client restarted with the same key races anew; the old race is not extended', () => {
  let now = T0;
  const rec = new StatusRecorder({ now: () => now });
  const peer = new RelayPeer<string>(new Uint8Array(32).fill(9));
  const ev = (e: Record<string, unknown>): void =>
    rec.observe({ ...e, peer } as unknown as RelayEvent<string>);
  const answer = (path: string, info: PathInfo, view: OuterView, at: number): void => {
    now = at;
    peer.paths.set(path, pathState(info, 1, at, view));
    if (peer.path === undefined) {
      peer.path = path;
      peer.chosenEncapsulation = info.encapsulation;
      ev({ type: 'path-changed', reason: 'registration' });
    }
    ev({
      type: 'registration-answered',
      round: 1,
      encapsulation: info.encapsulation,
      chosen: peer.path === path,
      verdict: Verdict.NONE,
      decision: 1,
    });
  };
  const tcp = { encapsulation: Encapsulation.TCP, view: tcp1Relay };
  const udp = { encapsulation: Encapsulation.UDP, view: udpRelayView };
  // The first session's round 1: UDP and TCP.
  peer.round = 1;
  peer.roundStartedAt = T0;
  answer(UDP, udp, udpClientView, T0);
  answer('tcp:1', tcp, tcp1Client, T0 + 4);
  const raced = () => rec.snapshot().sessions[0]!.round!.raced.map((r) => [r.path, r.arrivedMs]);
  assert.deepEqual(raced(), [
    [UDP, 0],
    ['tcp:1', 4],
  ]);
  // The process restarts: a new handshake, and the relay counts its rounds from 1 again.
  peer.paths.clear();
  peer.path = undefined;
  peer.round = 1;
  peer.roundStartedAt = T0 + 60_000;
  answer('tcp:2', tcp, tcp1Client, T0 + 60_000);
  answer('203.0.113.9:61001', udp, udpClientView, T0 + 60_002);
  assert.deepEqual(raced(), [
    ['tcp:2', 0],
    ['203.0.113.9:61001', 2],
  ]);
});

test('StatusRecorder: bounded sessions and timeline; subscribers come and go safely', () => {
  let now = T0;
  const rec = new StatusRecorder({ now: () => now, maxSessions: 2, timelineMax: 3 });
  const seen: StatusUpdate[] = [];
  rec.subscribe(() => {
    throw new Error('a broken subscriber');
  });
  const stop = rec.subscribe((u) => seen.push(u));
  assert.equal(rec.subscribers, 2);
  for (let i = 1; i <= 3; i++) {
    now = T0 + i;
    rec.observe({ type: 'goaway', code: 5, peer: String(i).repeat(64) });
  }
  const snap = rec.snapshot();
  // The first session (left, heard of least recently) went.
  assert.deepEqual(
    snap.sessions.map((x) => x.id[0]),
    ['2', '3'],
  );
  assert.ok(seen.some((u) => u.type === 'forget' && u.id === '1'.repeat(64)));
  assert.equal(snap.timeline.length, 3);
  assert.deepEqual(
    snap.timeline.map((e) => [e.seq, e.reason]),
    [
      [1, 'shutting down'],
      [2, 'shutting down'],
      [3, 'shutting down'],
    ],
  );
  now = T0 + 10;
  rec.observe({ type: 'dead', silentMs: 120_000, peer: '3'.repeat(64) });
  assert.deepEqual(
    rec.snapshot().timeline.map((e) => [e.seq, e.kind, e.title]),
    [
      [2, 'goaway', 'Client said GOAWAY'],
      [3, 'goaway', 'Client said GOAWAY'],
      [4, 'dead', 'Silent for 120 s: tunnel dropped'],
    ],
  );
  stop();
  const before = seen.length;
  rec.observe({ type: 'goaway', code: 0, peer: '2'.repeat(64) });
  assert.equal(seen.length, before);
  assert.equal(rec.subscribers, 1);
});

test('compareViews: a proxy shows as headers only the relay saw; unknown fields stay unknown', () => {
  assert.deepEqual(compareViews(wsClient, wsRelay), [
    { field: 'srcAddr', client: null, relay: '198.51.100.4', match: 'unknown' },
    { field: 'srcPort', client: null, relay: '50000', match: 'unknown' },
    { field: 'dstAddr', client: null, relay: '192.0.2.1', match: 'unknown' },
    { field: 'dstPort', client: null, relay: '51821', match: 'unknown' },
    { field: 'url', client: 'ws://relay.example:51821/rl/ws', relay: '/rl/ws', match: 'same' },
    { field: 'host', client: 'relay.example:51821', relay: 'relay.example:51821', match: 'same' },
    { field: 'header:user-agent', client: 'roamlink', relay: 'roamlink', match: 'same' },
    { field: 'header:via', client: null, relay: '1.1 proxy', match: 'relay-only' },
  ]);
  // IPv4-mapped IPv6 is the IPv4 address.
  assert.equal(
    compareViews({ srcAddr: '127.0.0.1' }, { srcAddr: '::ffff:127.0.0.1' })[0]!.match,
    'same',
  );
  assert.deepEqual(compareViews(null, null), []);
});
