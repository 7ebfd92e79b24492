/**
 * Registration (WO 03/063444) through the in-memory network: parallel RREQs, the relay's choice
 * and upgrade, stale rounds, anti-amplification, verdicts, keepalives and dead-path detection.
 * Times are virtual; one-way delays are per path (Net.delay).
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { Encapsulation, Verdict } from '../src/index.ts';
import { indexOf, Net, numbered } from './harness.ts';

function established(paths: string[], setup?: (n: Net) => void): Net {
  const net = new Net();
  setup?.(net);
  net.connect(paths);
  net.runUntil(net.now + 500);
  assert.ok(net.client.registered, 'registered');
  return net;
}

const events = (net: Net) => {
  const out: { type: string; [k: string]: unknown }[] = [];
  for (let e = net.client.pollEvent(); e; e = net.client.pollEvent()) out.push(e);
  return out;
};

describe('registration', () => {
  test('a move registers on every candidate at once; the first RREQ moves the relay at once', () => {
    const net = established(['a'], (n) => {
      n.delay = { a: 10, b: 20, c: 40 };
      n.paths.b = { ...n.pathOf('b'), encapsulation: Encapsulation.TCP };
      n.paths.c = { ...n.pathOf('c'), encapsulation: Encapsulation.WEBSOCKET };
    });
    const peer = [...net.relay.peers.values()][0]!;
    net.filter = (d) => d.path !== 'a'; // path a is gone
    const t0 = net.now;
    net.client.move(net.candidates(['b', 'c']), t0, 'address change');
    // The client does not wait: data goes out at once, on both candidates.
    net.clientSend(numbered(100));
    assert.deepEqual([...net.client.dataPaths], ['b', 'c']);
    net.runUntil(t0 + 20);
    assert.equal(peer.path, 'b', 'relay moved on the first RREQ (path b, 20 ms)');
    assert.equal(
      net.atRelay.at(-1)!.at - t0,
      20,
      'client → relay data resumed after one one-way trip',
    );
    // Relay → client: the relay sends the moment it has moved; it arrives one trip later.
    net.relaySend(numbered(200));
    net.runUntil(t0 + 100);
    const back = net.atClient.find((r) => indexOf(r.payload) === 200)!;
    assert.equal(back.at - t0, 40, 'relay → client data resumed after one round trip of path b');
    assert.ok(net.client.registered);
    assert.equal(net.client.path, 'b');
    assert.equal(net.client.encapsulation, Encapsulation.TCP);
    assert.deepEqual([...net.client.dataPaths], ['b']);
    // The extra copies on path c were dropped as replays, never delivered twice.
    assert.equal(net.atRelay.filter((r) => indexOf(r.payload) === 100).length, 1);
    assert.ok(net.relay.stats.espDrops.replay >= 1);
    assert.equal(net.client.stats.handshakes, 1, 'no new key exchange');
  });

  test('a preferred encapsulation arriving within the grace window wins', () => {
    const net = established(['a'], (n) => {
      n.delay = { a: 10, t: 10, u: 30 };
      n.paths.t = { ...n.pathOf('t'), encapsulation: Encapsulation.TCP };
      n.paths.u = { ...n.pathOf('u'), encapsulation: Encapsulation.UDP };
    });
    const peer = [...net.relay.peers.values()][0]!;
    events(net);
    net.client.move(net.candidates(['t', 'u']), net.now, 'test');
    net.runUntil(net.now + 15);
    assert.equal(peer.path, 't');
    net.runUntil(net.now + 100);
    assert.equal(peer.path, 'u', 'UDP came 20 ms later, inside the grace window: upgraded');
    assert.equal(net.client.path, 'u');
    assert.equal(net.client.encapsulation, Encapsulation.UDP);
    const reg = events(net).filter((e) => e.type === 'registered');
    assert.deepEqual(
      reg.map((e) => e.decision),
      [1, 2],
    );
  });

  test('outside the grace window the first choice stays', () => {
    const net = established(['a'], (n) => {
      n.delay = { a: 10, t: 10, u: 400 };
      n.paths.t = { ...n.pathOf('t'), encapsulation: Encapsulation.TCP };
    });
    const peer = [...net.relay.peers.values()][0]!;
    net.client.move(net.candidates(['t', 'u']), net.now, 'test');
    net.runUntil(net.now + 1000);
    assert.equal(peer.path, 't');
    assert.equal(net.client.path, 't');
  });

  test('a stale round (overtaken by a newer one) moves nothing', () => {
    const net = established(['a'], (n) => {
      n.delay = { a: 10, slow: 300 };
    });
    const peer = [...net.relay.peers.values()][0]!;
    net.client.move(net.candidates(['slow']), net.now, 'first');
    net.runUntil(net.now + 5);
    net.client.move(net.candidates(['a']), net.now, 'second');
    net.runUntil(net.now + 1000);
    assert.equal(peer.round, 3);
    assert.equal(peer.path, 'a');
    assert.ok(net.relay.stats.controlDrops.stale_registration >= 1);
    assert.equal(net.client.path, 'a');
  });

  test('anti-amplification: an unvalidated path gets at most 3x what it sent', () => {
    const net = established(['a']);
    const peer = [...net.relay.peers.values()][0]!;
    // Path x: the RREQ gets through, then nothing more from the client on x (a spoofed source).
    let passed = 0;
    net.filter = (d) => !(d.to === 'relay' && d.path === 'x' && passed++ > 0);
    net.client.move(net.candidates(['x']), net.now, 'test');
    net.runUntil(net.now + 50);
    assert.equal(peer.path, 'x');
    for (let i = 0; i < 50; i++) net.relaySend(numbered(i, 1000));
    net.runUntil(net.now + 50);
    const ps = peer.paths.get('x')!;
    assert.equal(ps.validated, false);
    assert.ok(ps.bytesOut <= 3 * ps.bytesIn, `${ps.bytesOut} sent for ${ps.bytesIn} received`);
    assert.ok(net.relay.stats.controlDrops.amplification_limited > 0);
    // Nothing was lost: the rest waits for a validated path and goes when one comes.
    net.filter = () => true;
    net.client.move(net.candidates(['a']), net.now, 'back');
    net.runUntil(net.now + 200);
    const got = new Set(net.atClient.map((r) => indexOf(r.payload)));
    assert.equal(got.size, 50, 'every packet arrived once');
  });

  test('verdicts: a NAT is detected and keepalives follow the interval; none without a NAT', () => {
    const natted = established(['n'], (n) => {
      const v = n.pathOf('n');
      n.paths.n = { ...v, relay: { ...v.relay, srcAddr: '198.19.0.9', srcPort: 61000 } };
    });
    assert.equal(natted.client.verdict, Verdict.ADDRESS_AND_PORT);
    assert.equal(natted.client.keepaliveMs, 25_000);
    natted.runUntil(natted.now + 100_000);
    const k = natted.client.stats.natKeepalivesSent;
    assert.ok(k >= 3 && k <= 5, `${k} keepalives in 100 s idle at 25 s`);
    const plain = established(['a']);
    assert.equal(plain.client.verdict, Verdict.NONE);
    assert.equal(plain.client.keepaliveMs, 0);
    plain.runUntil(plain.now + 100_000);
    assert.equal(plain.client.stats.natKeepalivesSent, 0);
  });

  test('a path that dies silently while data flows is noticed within 3 s and left', () => {
    const net = established(['a', 'b'], (n) => {
      n.delay = { a: 10, b: 30 };
    });
    assert.equal(net.client.path, 'a');
    events(net);
    const t0 = net.now;
    net.filter = (d) => d.path !== 'a' || d.at < t0; // a blackholes, both ways
    let seen = 0;
    for (let i = 0; i < 100; i++) {
      net.runUntil(t0 + i * 50);
      net.clientSend(numbered(i));
      net.relaySend(numbered(1000 + i));
      const ev = events(net);
      if (!seen && ev.some((e) => e.type === 'path-dead')) seen = net.now;
    }
    net.runUntil(net.now + 500);
    assert.ok(seen > 0 && seen - t0 <= 3000, `noticed after ${seen - t0} ms`);
    assert.equal(net.client.path, 'b');
    // Every packet sent after the move resumed arrives; the stream continues on path b.
    const last = net.atRelay.at(-1)!;
    assert.equal(indexOf(last.payload), 99);
  });

  test('UDP silently dropped at the start: up in the time of the path that works', () => {
    const net = new Net();
    net.delay = { u: 10, t: 25 };
    net.paths.t = { ...net.pathOf('t'), encapsulation: Encapsulation.TCP };
    net.filter = (d) => d.path !== 'u';
    const t0 = net.now;
    net.connect(['u', 't']);
    while (!net.client.registered && net.now < t0 + 1000) net.runUntil(net.now + 1);
    // Round 1 rides on the handshake: registered one round trip of path t after connecting.
    assert.equal(net.now - t0, 50);
    assert.equal(net.client.path, 't');
    const reg = events(net).find((e) => e.type === 'registered')!;
    assert.equal(reg.rttMs, 50);
    assert.equal(net.client.stats.handshakes, 1);
  });
});

describe('probing lighter paths (claim 11)', () => {
  test('UDP blocked at first, then unblocked: back on UDP within 5 s, only after a probe', () => {
    const net = new Net();
    net.delay = { u: 10, t: 12 };
    net.paths.t = { ...net.pathOf('t'), encapsulation: Encapsulation.TCP };
    let udpBlocked = true;
    net.filter = (d) => !(udpBlocked && d.path === 'u');
    net.connect(['u', 't']);
    net.runUntil(net.now + 1000);
    assert.equal(net.client.path, 't');
    events(net);
    const t0 = net.now;
    udpBlocked = false;
    net.runUntil(t0 + 5000);
    assert.equal(net.client.path, 'u', 'back on UDP');
    const ev = events(net);
    const answered = ev.find(
      (e) => e.type === 'registration-sent' && e.reason === 'probe-answered',
    );
    assert.ok(answered, 'the move back followed a probe');
    const reg = ev.find((e) => e.type === 'registered' && e.encapsulation === Encapsulation.UDP)!;
    assert.ok(reg, JSON.stringify(ev));
    assert.equal(net.client.stats.handshakes, 1);
  });

  test('a path that passes small packets but drops data-sized ones is never chosen by a probe', () => {
    const net = new Net();
    net.delay = { u: 10, t: 12 };
    net.paths.t = { ...net.pathOf('t'), encapsulation: Encapsulation.TCP };
    let udpBlocked = true;
    // After the block lifts, UDP still drops anything large (a firewall that lets registration
    // through but not data).
    net.filter = (d) => !(d.path === 'u' && (udpBlocked || d.data.length > 600));
    net.connect(['u', 't']);
    net.runUntil(net.now + 1000);
    udpBlocked = false;
    net.runUntil(net.now + 20_000);
    assert.equal(net.client.path, 't', 'stayed on TCP: the data-sized probes never came back');
  });
});

describe('round 1 rides on the handshake', () => {
  test('message 1 carries every candidate view; round 1 needs no extra round trip', () => {
    const net = new Net();
    const t0 = net.now;
    net.connect(['a']);
    while (!net.client.registered && net.now < t0 + 1000) net.runUntil(net.now + 1);
    assert.equal(net.now - t0, 20, 'registered after one round trip of path a');
    assert.equal(net.relay.stats.registrations, 1);
  });

  test('views too large for message 1 are left out; round 1 then goes as RREQs', () => {
    const net = new Net();
    const big = { srcAddr: '198.18.0.2', srcPort: 1, url: `http://relay.test/${'x'.repeat(450)}` };
    net.paths.a = { encapsulation: Encapsulation.HTTP_STREAM, client: big, relay: big };
    net.paths.b = { encapsulation: Encapsulation.HTTP_POLL, client: big, relay: big };
    net.paths.c = { encapsulation: Encapsulation.WEBSOCKET, client: big, relay: big };
    const t0 = net.now;
    net.connect(['a', 'b', 'c']);
    while (!net.client.registered && net.now < t0 + 1000) net.runUntil(net.now + 1);
    assert.equal(net.now - t0, 40, 'handshake, then one round trip of RREQ/RREP');
    assert.equal(net.client.encapsulation, Encapsulation.WEBSOCKET);
  });
});
