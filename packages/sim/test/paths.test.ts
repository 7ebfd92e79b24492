import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { ENCAPSULATION_NAMES, Encapsulation } from '@roamlink/core';
import { Link, Nat } from '@roamlink/netsim';
import { RELAY_PORTS, type UdpClientPath } from '../src/index.ts';
import { CLIENT, NAT_PUB, numbered, open, RELAY, world } from './helpers.ts';

const ALL = [
  Encapsulation.UDP,
  Encapsulation.TCP,
  Encapsulation.WEBSOCKET,
  Encapsulation.HTTP_STREAM,
  Encapsulation.HTTP_POLL,
] as const;

describe('every encapsulation on a plain path', () => {
  for (const kind of ALL) {
    test(`${ENCAPSULATION_NAMES[kind]}: datagrams both ways arrive intact and in order`, () => {
      const w = world({ echo: true });
      const c = open(w, kind);
      const sent = Array.from({ length: 20 }, (_, i) => numbered(i, 40 + i * 50));
      for (const d of sent.slice(0, 10)) assert.ok(c.path.send(d));
      // The rest later, once the path is up.
      w.net.at(500, () => {
        for (const d of sent.slice(10)) assert.ok(c.path.send(d));
      });
      w.net.run(2000);
      assert.deepEqual(c.errors, []);
      assert.deepEqual(
        w.atRelay.map((a) => a.data),
        sent,
      );
      assert.deepEqual(
        c.got.map((g) => g.data),
        sent,
      );
      const ids = new Set(w.atRelay.map((a) => a.pathId));
      assert.equal(ids.size, 1, 'one relay path id for the client path');
      assert.equal(w.atRelay[0]!.info.encapsulation, kind);
      assert.equal(c.path.info.encapsulation, kind);
      const bytes = sent.reduce((n, d) => n + d.length, 0);
      assert.deepEqual(
        { ...c.path.stats, setupMs: undefined },
        {
          datagramsSent: 20,
          datagramsReceived: 20,
          bytesSent: bytes,
          bytesReceived: bytes,
          setupMs: undefined,
        },
      );
      assert.equal(w.relay.stats.datagramsReceived, 20);
      assert.equal(w.relay.stats.datagramsSent, 20);
      c.path.close();
      assert.equal(c.path.send(sent[0]!), false, 'closed paths take nothing');
    });
  }

  test('path ids are unique per host and name the encapsulation', () => {
    const w = world();
    const ids = ALL.map((k) => open(w, k).path.id);
    assert.deepEqual(ids, ['udp#1', 'tcp#2', 'ws#3', 'hs#4', 'hp#5']);
  });

  test('empty and oversized datagrams are refused', () => {
    const w = world();
    for (const kind of ALL) {
      const c = open(w, kind);
      assert.equal(c.path.send(new Uint8Array(0)), false);
      assert.equal(c.path.send(new Uint8Array(65_534)), false);
    }
  });
});

describe('the client view and the relay view', () => {
  test('UDP and TCP without translation: the two views agree', () => {
    const w = world({ echo: true });
    const u = open(w, Encapsulation.UDP);
    const t = open(w, Encapsulation.TCP);
    u.path.send(numbered(1));
    t.path.send(numbered(2));
    w.net.run(500);
    for (const [c, port] of [
      [u, RELAY_PORTS.udp],
      [t, RELAY_PORTS.tcp],
    ] as const) {
      const seen = w.atRelay.find((a) => a.info.encapsulation === c.path.info.encapsulation)!;
      const mine = c.path.info.view;
      assert.equal(mine.srcAddr, CLIENT);
      assert.equal(mine.dstAddr, RELAY);
      assert.equal(mine.dstPort, port);
      assert.deepEqual(seen.info.view, mine);
    }
  });

  for (const kind of ALL) {
    test(`${ENCAPSULATION_NAMES[kind]} through a NAT: the relay sees exactly the NAT's mapping`, () => {
      const nat = new Nat({ externalAddr: NAT_PUB });
      const w = world({ chain: [new Link({ delay: 5 }), nat, new Link({ delay: 5 })] });
      const c = open(w, kind);
      c.path.send(numbered(1));
      w.net.run(1000);
      const seen = w.atRelay[0]!.info.view;
      const mine = c.path.info.view;
      assert.equal(mine.srcAddr, CLIENT);
      assert.equal(seen.srcAddr, NAT_PUB);
      const proto = kind === Encapsulation.UDP ? 'udp' : 'tcp';
      const m = nat.mappings().find((x) => x.proto === proto && x.internal.port === mine.srcPort);
      assert.ok(m, 'the NAT mapped the path’s source');
      assert.deepEqual(m.internal, { addr: mine.srcAddr, port: mine.srcPort });
      assert.deepEqual(m.external, { addr: seen.srcAddr, port: seen.srcPort });
      // Everything else the client sent arrived untouched.
      assert.equal(seen.dstAddr, mine.dstAddr);
      assert.equal(seen.dstPort, mine.dstPort);
      if (kind !== Encapsulation.UDP && kind !== Encapsulation.TCP) {
        assert.equal(seen.host, mine.host);
        assert.ok(mine.url?.endsWith(seen.url!), `${mine.url} ends with ${seen.url}`);
        for (const [k, v] of mine.headers!) {
          assert.equal(seen.headers?.find(([n]) => n === k)?.[1], v, `header ${k}`);
        }
      }
    });
  }

  test('HTTP views: URL, Host and headers as sent and as seen', () => {
    const w = world();
    const c = open(w, Encapsulation.HTTP_STREAM, {
      relay: { addr: RELAY, hostname: 'relay.example' },
      headers: [['User-Agent', 'roamlink-test']],
    });
    c.path.send(numbered(1));
    w.net.run(500);
    const mine = c.path.info.view;
    assert.match(mine.url!, /^http:\/\/relay\.example\/rl\/up\?s=[0-9a-f]{32}&m=stream$/);
    assert.equal(mine.host, 'relay.example');
    assert.deepEqual(mine.headers, [
      ['host', 'relay.example'],
      ['content-type', 'application/octet-stream'],
      ['user-agent', 'roamlink-test'],
    ]);
    const seen = w.atRelay[0]!.info.view;
    assert.equal(seen.url, mine.url!.slice('http://relay.example'.length));
    assert.equal(seen.host, 'relay.example');
    assert.ok(seen.headers!.every(([k]) => k === k.toLowerCase()));
    assert.equal(w.atRelay[0]!.pathId, `hs:${mine.url!.match(/s=([0-9a-f]+)/)![1]}`);
  });

  test('a base URL names the relay’s HTTP endpoints (host name, port, path prefix)', () => {
    const w = world({ relay: { httpPort: 8080, basePath: '/tunnel' }, echo: true });
    for (const kind of [
      Encapsulation.WEBSOCKET,
      Encapsulation.HTTP_STREAM,
      Encapsulation.HTTP_POLL,
    ]) {
      const c = open(w, kind, { url: 'http://relay.example:8080/tunnel/' });
      c.path.send(numbered(kind));
      w.net.run(500);
      assert.deepEqual(c.errors, [], ENCAPSULATION_NAMES[kind]);
      assert.equal(c.got.length, 1);
      assert.equal(c.path.info.view.host, 'relay.example:8080');
      const seen = w.atRelay.at(-1)!.info.view;
      assert.equal(seen.host, 'relay.example:8080');
      assert.ok(seen.url!.startsWith('/tunnel/'));
    }
  });

  test('UDP: the client’s view follows its default interface; keepalives never surface', () => {
    const w = world({ echo: true });
    const c = open(w, Encapsulation.UDP);
    const p = c.path as UdpClientPath;
    assert.equal(p.info.view.srcAddr, CLIENT);
    assert.ok(p.sendKeepalive());
    w.relay.send(`udp:${CLIENT}:${p.info.view.srcPort}`, new Uint8Array([0xff]));
    w.net.run(200);
    assert.equal(w.relay.stats.keepalivesReceived, 1);
    assert.equal(w.atRelay.length, 0);
    assert.equal(c.got.length, 0, 'a lone 0xFF from the relay is dropped too');
    w.wifi.setAddress('198.19.0.77');
    assert.equal(p.info.view.srcAddr, '198.19.0.77');
  });
});

describe('setup costs, on the virtual clock (RTT 40 ms)', () => {
  // First datagram sent the moment the path is opened.
  const expected: [Encapsulation, number, number][] = [
    [Encapsulation.UDP, 0.5, 0],
    [Encapsulation.TCP, 1.5, 1],
    [Encapsulation.WEBSOCKET, 2.5, 2],
    // No extra round trip for HTTP: the first POST rides the connection's handshake.
    [Encapsulation.HTTP_STREAM, 1.5, 2],
    [Encapsulation.HTTP_POLL, 1.5, 2],
  ];
  for (const [kind, firstRtt, setupRtt] of expected) {
    test(`${ENCAPSULATION_NAMES[kind]}: first datagram at ${firstRtt} RTT, setupMs ${setupRtt} RTT`, () => {
      const w = world({ clientDelay: 10, relayDelay: 10 });
      assert.equal(w.rtt, 40);
      const t0 = 1000;
      let c: ReturnType<typeof open> | undefined;
      w.net.at(t0, () => {
        c = open(w, kind);
        c.path.send(numbered(1));
      });
      w.net.run(3000);
      assert.deepEqual(c!.errors, []);
      assert.equal(w.atRelay[0]!.t - t0, firstRtt * w.rtt);
      assert.equal(c!.path.stats.setupMs, setupRtt * w.rtt);
      assert.equal(c!.openedAt! - t0, setupRtt * w.rtt);
    });
  }

  test('relay → client: a reply sent on arrival reaches the client half an RTT later', () => {
    for (const kind of ALL) {
      const w = world({ echo: true });
      const c = open(w, kind);
      c.path.send(numbered(1));
      w.net.run(2000);
      assert.equal(c.got[0]!.t - w.atRelay[0]!.t, w.rtt / 2, ENCAPSULATION_NAMES[kind]);
    }
  });
});
