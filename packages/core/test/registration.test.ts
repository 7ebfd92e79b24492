/**
 * Registration (WO 03/063444) through the in-memory network: parallel RREQs, the relay's choice
 * and upgrade, stale rounds, anti-amplification, verdicts, keepalives and dead-path detection.
 * Times are virtual; one-way delays are per path (Net.delay).
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import {
  ENCAPSULATION_NAMES,
  Encapsulation,
  encodeBindingAck,
  encodeOuterView,
  fitOuterView,
  STREAM_PATH_PAYLOAD,
  streamPathPayload,
  Verdict,
} from '../src/index.ts';
import { indexOf, Net, numbered, type PathSpec } from './harness.ts';

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

  test('RREQs leave lighter first, whatever order the candidates come in: no detour through HTTP', () => {
    const net = established(['a'], (n) => {
      // Equal delays: the relay sees the RREQs in the order they were sent.
      n.delay = { a: 10, h: 10, w: 10, t: 10 };
      n.paths.h = { ...n.pathOf('h'), encapsulation: Encapsulation.HTTP_STREAM };
      n.paths.w = { ...n.pathOf('w'), encapsulation: Encapsulation.WEBSOCKET };
      n.paths.t = { ...n.pathOf('t'), encapsulation: Encapsulation.TCP };
    });
    const peer = [...net.relay.peers.values()][0]!;
    net.filter = (d) => d.path !== 'a';
    net.client.move(net.candidates(['h', 'w', 't']), net.now, 'test');
    net.runUntil(net.now + 50);
    assert.equal(peer.path, 't');
    assert.equal(peer.chosenEncapsulation, Encapsulation.TCP);
    assert.equal(peer.decision, 1, 'the first RREQ was the preferred one: no upgrade');
    assert.equal(net.client.encapsulation, Encapsulation.TCP);
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

  test('a client that starts over with the same key registers at once, in one round trip', () => {
    const net = established(['a', 'b']);
    const peer = [...net.relay.peers.values()][0]!;
    // Several rounds later (moves), the relay's round is well past 1.
    for (const paths of [['b'], ['a'], ['b']]) {
      net.client.move(net.candidates(paths), net.now, 'test');
      net.runUntil(net.now + 200);
    }
    assert.ok(peer.round >= 4, `relay round ${peer.round}`);
    assert.equal(peer.generation, 1);
    // The client restarts: a new session, rounds from 1 again, the same static key.
    net.restartClient();
    const t0 = net.now;
    net.connect(['a', 'b']);
    while (!net.client.registered && net.now < t0 + 2000) net.runUntil(net.now + 1);
    assert.ok(net.client.registered, 'registered again');
    assert.equal(net.now - t0, 20, 'in one round trip of path a: round 1 rode on the handshake');
    assert.equal(net.relay.peers.size, 1, 'the same peer');
    // Data both ways under the new keys; the relay counts a second session, not a rekey.
    net.clientSend(numbered(7));
    net.runUntil(net.now + 100);
    assert.equal(indexOf(net.atRelay.at(-1)!.payload), 7);
    assert.equal(peer.generation, 2, 'a new session');
    assert.equal(net.relay.stats.rekeys, 0, 'not counted as a rekey');
    net.relaySend(numbered(8));
    net.runUntil(net.now + 100);
    assert.equal(indexOf(net.atClient.at(-1)!.payload), 8);
  });

  test('a copy of message 1 that arrives after the keys were confirmed still registers its path', () => {
    // UDP's copy wins and the client confirms the keys on it at once; HTTP's copy comes 150 ms
    // later. It is round 1's RREQ for the HTTP path all the same (§3.2: every copy), so the relay
    // knows and answers every candidate, and the client's next move finds them validated.
    const net = new Net();
    net.delay = { u: 10, h: 150 };
    net.paths.u = { ...net.pathOf('u'), encapsulation: Encapsulation.UDP };
    net.paths.h = { ...net.pathOf('h'), encapsulation: Encapsulation.HTTP_STREAM };
    net.connect(['u', 'h']);
    net.runUntil(net.now + 100);
    const peer = [...net.relay.peers.values()][0]!;
    assert.ok(peer.keys.current, 'the keys are confirmed on UDP before the HTTP copy arrives');
    assert.equal(peer.paths.get('h'), undefined);
    net.runUntil(net.now + 300);
    assert.equal(peer.paths.get('h')?.rreq?.round, 1, 'HTTP registered in round 1');
    assert.equal(peer.paths.get('h')?.validated, true, 'and validated (it got the response)');
    const answered: string[] = [];
    for (let e = net.relay.pollEvent(); e; e = net.relay.pollEvent()) {
      if (e.type === 'registration-answered') answered.push(ENCAPSULATION_NAMES[e.encapsulation]);
    }
    assert.deepEqual(answered, ['udp', 'http-stream']);
    assert.equal(peer.path, 'u', 'the late copy moved nothing');
    assert.equal(net.client.path, 'u');
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

describe('MAX_DATAGRAM: each side learns what the other takes on the path (§6.4)', () => {
  const view = { srcAddr: '198.18.0.2', srcPort: 1, url: 'ws://relay.test/rl/ws' };
  const ws = (clientMax?: number, relayMax?: number): PathSpec => ({
    encapsulation: Encapsulation.WEBSOCKET,
    client: view,
    relay: view,
    ...(clientMax !== undefined ? { clientMax } : {}),
    ...(relayMax !== undefined ? { relayMax } : {}),
  });
  const learned = (net: Net, path: string) => {
    const peer = [...net.relay.peers.values()][0]!;
    return {
      atClient: net.client.peerMaxDatagram,
      atRelay: peer.paths.get(path)?.rreq?.maxDatagram,
      payloadAtClient: streamPathPayload(net.paths[path]!.clientMax, net.client.peerMaxDatagram),
      payloadAtRelay: streamPathPayload(
        net.paths[path]!.relayMax,
        peer.paths.get(path)?.rreq?.maxDatagram,
      ),
    };
  };

  test('round 1 on the handshake, then an RREQ after a move: both ends at 1 MiB', () => {
    const net = established(['a'], (n) => {
      n.paths.a = ws(1 << 20, 1 << 20);
      n.paths.b = ws(1 << 20, 1 << 20);
    });
    assert.equal(net.relay.stats.registrations, 1, 'round 1 rode on message 1');
    const big = (1 << 20) - 64;
    assert.deepEqual(learned(net, 'a'), {
      atClient: 1 << 20,
      atRelay: 1 << 20,
      payloadAtClient: big,
      payloadAtRelay: big,
    });
    net.client.move(net.candidates(['b']), net.now, 'test');
    net.runUntil(net.now + 200);
    assert.equal(net.client.path, 'b');
    assert.deepEqual(learned(net, 'b'), {
      atClient: 1 << 20,
      atRelay: 1 << 20,
      payloadAtClient: big,
      payloadAtRelay: big,
    });
  });

  test('through an HTTP proxy (verdict protocol) both stay at 60 000, whatever the ends take', () => {
    const net = established(['a'], (n) => {
      n.paths.a = { ...ws(1 << 20, 1 << 20), relay: { ...view, headers: [['via', '1.1 squid']] } };
    });
    assert.equal(net.client.verdict, Verdict.PROTOCOL);
    assert.deepEqual(learned(net, 'a'), {
      atClient: undefined,
      atRelay: undefined,
      payloadAtClient: STREAM_PATH_PAYLOAD,
      payloadAtRelay: STREAM_PATH_PAYLOAD,
    });
  });

  test('a side that announces nothing (a browser, an edge relay) keeps both at 60 000', () => {
    for (const [clientMax, relayMax] of [
      [1 << 20, undefined],
      [undefined, 1 << 20],
    ] as const) {
      const net = established(['a'], (n) => {
        n.paths.a = ws(clientMax, relayMax);
      });
      assert.deepEqual(learned(net, 'a'), {
        atClient: relayMax,
        atRelay: clientMax,
        payloadAtClient: STREAM_PATH_PAYLOAD,
        payloadAtRelay: STREAM_PATH_PAYLOAD,
      });
    }
  });
});

describe('learning the NAT binding timeout (RFC 5780 §4.6, RFC 4787 REQ-5/REQ-6)', () => {
  /**
   * A NAT on path a (the chosen path) and on path m (the measurement flow), both forgetting a
   * binding `timeoutMs` after the client last sent on it (outbound refresh only, RFC 4787 REQ-6).
   * The filter drops relay → client packets that reach a forgotten binding, and records the
   * longest outbound silence on path a, which must stay below the timeout.
   */
  function natted(timeoutMs: number) {
    const lastSent: Record<string, number> = {};
    const nat = { maxIdleA: 0, lostOnA: 0, sentOnM: 0, timeoutMs };
    const net = established(['a'], (n) => {
      const v = n.pathOf('a');
      n.paths.a = { ...v, relay: { ...v.relay, srcAddr: '198.19.0.9', srcPort: 61000 } };
      n.filter = (d) => {
        if (d.to === 'relay') {
          const prev = lastSent[d.path];
          if (d.path === 'a' && prev !== undefined) {
            nat.maxIdleA = Math.max(nat.maxIdleA, n.now - prev);
          }
          if (d.path === 'm') nat.sentOnM++;
          lastSent[d.path] = n.now;
          return true;
        }
        const since = lastSent[d.path];
        if (since !== undefined && d.at - since > nat.timeoutMs) {
          if (d.path === 'a') nat.lostOnA++;
          return false;
        }
        return true;
      };
    });
    return { net, nat };
  }

  const probePath = (net: Net) => {
    const view = { srcAddr: '198.18.0.2', srcPort: 50_000, dstAddr: '198.18.1.1', dstPort: 4500 };
    net.paths.m = { encapsulation: Encapsulation.UDP, client: view, relay: view };
    return { path: 'm', info: { encapsulation: Encapsulation.UDP, view } };
  };

  /** Answers `binding-probe-wanted` as an adapter would; returns every client event seen. */
  function adapt(net: Net) {
    const seen: { type: string; [k: string]: unknown }[] = [];
    const poll = () => {
      for (const e of events(net)) {
        seen.push(e);
        if (e.type === 'binding-probe-wanted') {
          net.client.setBindingProbePath(probePath(net), net.now);
          net.drain();
        }
      }
    };
    poll();
    return { seen, poll };
  }

  for (const timeoutMs of [20_000, 47_000, 120_000]) {
    test(`a ${timeoutMs / 1000} s binding: the search converges to ±15 % and the main binding survives`, () => {
      const { net, nat } = natted(timeoutMs);
      const peer = [...net.relay.peers.values()][0]!;
      const { seen, poll } = adapt(net);
      assert.equal(seen.filter((e) => e.type === 'binding-probe-wanted').length, 1);
      assert.equal(net.client.natKeepaliveMs, 15_000, 'conservative start while learning');
      const end = net.now + 20 * 60_000;
      while (net.now < end) {
        net.runUntil(net.now + 1000);
        poll();
        const b = net.client.bindingTimeout!;
        // The main interval never exceeds what is known to be safe.
        const k = net.client.natKeepaliveMs;
        if (b.lowerMs !== undefined) assert.ok(k <= Math.max(10_000, 0.8 * b.lowerMs) + 1, `${k}`);
        if (b.upperMs !== undefined) assert.ok(k <= Math.max(10_000, 0.8 * b.upperMs) + 1, `${k}`);
        assert.equal(peer.path, 'a', 'the measurement flow never moves the relay');
        assert.equal(net.client.path, 'a', 'nor the client');
      }
      const b = net.client.bindingTimeout!;
      assert.ok(b.done, JSON.stringify(b));
      assert.ok(b.lowerMs !== undefined && b.upperMs !== undefined, JSON.stringify(b));
      assert.ok(b.lowerMs < timeoutMs && timeoutMs <= b.upperMs + 100, JSON.stringify(b));
      assert.ok(b.upperMs <= 1.15 * b.lowerMs, `bracket ${JSON.stringify(b)}`);
      assert.equal(net.client.natKeepaliveMs, Math.round(Math.max(10_000, 0.8 * b.lowerMs)));
      assert.ok(seen.some((e) => e.type === 'binding-learned'));
      assert.equal(nat.lostOnA, 0);
      assert.ok(nat.maxIdleA < timeoutMs, `main binding idle ${nat.maxIdleA} ms`);
      // Once learned, the flow is quiet: nothing more is measured.
      const sent = nat.sentOnM;
      net.runUntil(net.now + 10 * 60_000);
      assert.equal(nat.sentOnM, sent);
      assert.ok(nat.maxIdleA < timeoutMs);
      assert.equal(net.client.stats.handshakes - net.client.stats.rekeys, 1, 'rekeys only');
    });
  }

  test('a generous NAT: keepalives go far less often than every 25 s', () => {
    const { net } = natted(300_000);
    const { poll } = adapt(net);
    const t0 = net.now;
    const k0 = net.client.stats.natKeepalivesSent;
    while (net.now < t0 + 30 * 60_000) {
      net.runUntil(net.now + 5000);
      poll();
    }
    assert.equal(net.client.bindingTimeout!.lowerMs, 150_000, 'capped at 150 s');
    assert.equal(net.client.natKeepaliveMs, 120_000);
    const k = net.client.stats.natKeepalivesSent - k0;
    assert.ok(k < (30 * 60) / 25 / 2, `${k} keepalives in 30 min`);
  });

  test('no NAT: nothing is wanted and nothing is measured', () => {
    const net = established(['a']);
    assert.equal(net.client.keepaliveMs, 0);
    let onM = 0;
    net.filter = (d) => {
      if (d.path === 'm') onM++;
      return true;
    };
    assert.ok(!events(net).some((e) => e.type === 'binding-probe-wanted'));
    // Even an adapter that hands over a flow unasked gets no test traffic on it.
    net.client.setBindingProbePath(probePath(net), net.now);
    net.runUntil(net.now + 10 * 60_000);
    assert.equal(onM, 0);
    assert.equal(net.client.stats.natKeepalivesSent, 0);
    assert.equal(net.client.natKeepaliveMs, 0);
  });

  test('without a measurement flow the relay interval stays in force', () => {
    const { net } = natted(60_000);
    assert.ok(events(net).some((e) => e.type === 'binding-probe-wanted'));
    assert.equal(net.client.bindingTimeout, undefined);
    assert.equal(net.client.natKeepaliveMs, 25_000);
  });

  test('a forged, early, misrouted or replayed BINDING_ACK changes nothing', () => {
    const { net } = natted(60_000);
    const peer = [...net.relay.peers.values()][0]!;
    let captured: Uint8Array | undefined;
    const inner = net.filter;
    net.filter = (d) => {
      const ok = inner(d);
      if (ok && d.to === 'client' && d.path === 'm' && !captured) captured = d.data;
      return ok;
    };
    const { poll } = adapt(net);
    net.runUntil(net.now + 16_000);
    poll();
    assert.ok(captured, 'the first ack came back');
    const before = net.client.bindingTimeout!;
    assert.deepEqual(before, { lowerMs: 15_000, upperMs: undefined, done: false });
    const seal = (id: number, delayMs: number) =>
      peer.keys.current!.tx.seal(encodeBindingAck({ id, delayMs }), 253);
    const replays = net.client.stats.espDrops.replay;
    // Replayed: ESP's window drops it.
    net.wire('client', 'm', captured);
    // Forged (authentic, but wrong): an unknown id; the right id (2) and delay, too early; the
    // right id on the chosen path instead of the measurement flow; a wrong delay.
    net.wire('client', 'm', seal(9999, 22_500));
    net.wire('client', 'm', seal(2, 22_500));
    net.wire('client', 'a', seal(2, 22_500));
    net.wire('client', 'm', seal(2, 15_000));
    net.runUntil(net.now + 100);
    assert.equal(net.client.stats.espDrops.replay, replays + 1);
    assert.deepEqual(net.client.bindingTimeout, before);
    assert.equal(net.client.natKeepaliveMs, 12_000);
    assert.equal(net.atClient.length, 0, 'nothing reached the application');
    assert.equal(net.client.path, 'a');
    // The real answers still count: the search goes on to the right bracket.
    for (let i = 0; i < 20 * 60; i++) {
      net.runUntil(net.now + 1000);
      poll();
    }
    const b = net.client.bindingTimeout!;
    assert.ok(b.done && b.lowerMs! < 60_000 && 60_000 <= b.upperMs! + 100, JSON.stringify(b));
  });

  test('the relay answers after the delay, on the test path, and never moves the peer', () => {
    const { net } = natted(60_000);
    const peer = [...net.relay.peers.values()][0]!;
    const relayEvents: string[] = [];
    while (net.relay.pollEvent()); // setup's own
    adapt(net);
    net.runUntil(net.now + 15); // the first test (15 s) has arrived
    assert.equal(peer.bindingAcks.length, 1);
    assert.equal(peer.bindingAcks[0]!.path, 'm');
    const due = peer.bindingAcks[0]!.at;
    assert.ok((net.relay.nextTimeout() ?? Number.POSITIVE_INFINITY) <= due);
    net.runUntil(net.now + 3000); // past roamHoldMs: a data packet on m would roam; a test must not
    for (let e = net.relay.pollEvent(); e; e = net.relay.pollEvent()) relayEvents.push(e.type);
    assert.ok(!relayEvents.includes('path-changed'));
    assert.equal(peer.path, 'a');
    net.runUntil(due + 50);
    // The first ack went; the next test (×1.5) followed it at once.
    assert.deepEqual(
      peer.bindingAcks.map((b) => b.delayMs),
      [22_500],
    );
    assert.equal(net.client.bindingTimeout!.lowerMs, 15_000);
    const ps = peer.paths.get('m')!;
    assert.ok(ps.bytesOut <= ps.bytesIn, 'no amplification on the measurement flow');
  });
});

describe('loss right after a move', () => {
  test('the first copy of the RREQ and of the first packets each way may be lost without delay', () => {
    const net = established(['a'], (n) => {
      n.delay = { a: 10, b: 20 };
    });
    const peer = [...net.relay.peers.values()][0]!;
    const seen = { relay: 0, client: 0 };
    // On path b, lose the first datagram in each direction (the first RREQ copy; the first data).
    net.filter = (d) => d.path !== 'a' && !(d.path === 'b' && seen[d.to]++ === 0);
    const t0 = net.now;
    net.client.move(net.candidates(['b']), t0, 'test');
    net.clientSend(numbered(100));
    net.runUntil(t0 + 20);
    assert.equal(peer.path, 'b', 'the second RREQ copy moved the relay on time');
    net.relaySend(numbered(200));
    net.runUntil(t0 + 100);
    assert.equal(net.atRelay.find((r) => indexOf(r.payload) === 100)!.at - t0, 20);
    assert.equal(net.atClient.find((r) => indexOf(r.payload) === 200)!.at - t0, 40);
  });
});

describe('views from the network never break encoding', () => {
  test('fitOuterView: any view fits its budget, keeps proxy headers first, cuts long strings', () => {
    const headers: [string, string][] = [];
    for (let i = 0; i < 60; i++) headers.push([`x-junk-${i}`, 'v'.repeat(300)]);
    headers.push(['via', '1.1 proxy'], ['X-Forwarded-For', '198.18.0.2'], ['bad name', 'x']);
    const view = {
      srcAddr: '198.18.0.9',
      srcPort: 4000,
      url: `/rl/${'u'.repeat(2000)}`,
      host: 'relay',
      headers,
    };
    const fit = fitOuterView(view, 1100);
    assert.ok(encodeOuterView(fit).length <= 1100);
    assert.deepEqual(fit.headers?.slice(0, 2), [
      ['via', '1.1 proxy'],
      ['x-forwarded-for', '198.18.0.2'],
    ]);
    assert.ok(!fit.headers?.some(([n]: [string, string]) => n === 'bad name'));
    assert.equal(fit.srcAddr, '198.18.0.9');
    fc.assert(
      fc.property(
        fc.record({
          srcAddr: fc.option(fc.string({ maxLength: 700 }), { nil: undefined }),
          url: fc.option(fc.string({ maxLength: 3000 }), { nil: undefined }),
          headers: fc.array(fc.tuple(fc.string({ maxLength: 40 }), fc.string({ maxLength: 800 })), {
            maxLength: 50,
          }),
        }),
        fc.integer({ min: 200, max: 1100 }),
        (v, budget) => {
          const clean = Object.fromEntries(Object.entries(v).filter(([, x]) => x !== undefined));
          return encodeOuterView(fitOuterView(clean, budget)).length <= budget;
        },
      ),
      { numRuns: 300 },
    );
  });

  test('a proxy that adds a mountain of headers: the relay still answers, the verdict is protocol', () => {
    const net = new Net();
    const headers: [string, string][] = [['user-agent', 'roamlink-test']];
    const relayHeaders: [string, string][] = [...headers, ['via', '1.1 proxy']];
    for (let i = 0; i < 80; i++) relayHeaders.push([`x-tracking-${i}`, 't'.repeat(400)]);
    const client = { url: 'http://relay.test/rl/ws', host: 'relay.test', headers };
    const relay = {
      srcAddr: '198.18.5.5',
      srcPort: 3128,
      url: '/rl/ws',
      host: 'relay.test',
      headers: relayHeaders,
    };
    net.paths.a = { encapsulation: Encapsulation.WEBSOCKET, client, relay };
    net.connect(['a']);
    net.runUntil(net.now + 200);
    assert.ok(net.client.registered);
    assert.equal(net.client.verdict, Verdict.PROTOCOL);
    assert.equal(net.relay.stats.controlDrops.frame_malformed, 0);
  });
});
