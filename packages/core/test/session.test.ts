import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import {
  chooseSuite,
  decodeInitPayload,
  decodeRespPayload,
  Encapsulation,
  encodeInitPayload,
  encodeRespPayload,
  InitiatorHandshake,
  isRoamlinkError,
  NextHeader,
  Suite,
  tai64n,
  UNKNOWN_SPI_PER_SECOND,
} from '../src/index.ts';
import { indexOf, Net, numbered, random } from './harness.ts';

const DATA = NextHeader.ROAMLINK;

describe('handshake', () => {
  test('one round trip establishes both sides; data flows both ways', () => {
    const net = new Net();
    net.connect();
    assert.equal(net.client.state, 'handshaking');
    net.runUntil(net.now + 10); // message 1 arrives
    net.runUntil(net.now + 10); // message 2 arrives; client confirms with a keepalive
    assert.equal(net.client.state, 'established');
    net.runUntil(net.now + 10); // the RREQ arrives: relay rotates next → current, registers
    const peer = [...net.relay.peers.values()][0]!;
    assert.ok(peer.keys.current, 'relay has current keys after confirmation');
    assert.equal(peer.round, 1, 'the first registration round rode on the handshake');
    net.runUntil(net.now + 10); // the RREP arrives
    assert.ok(net.client.registered);
    assert.equal(net.client.verdict, 0);
    net.clientSend(numbered(1));
    net.relaySend(numbered(2));
    net.runUntil(net.now + 20);
    assert.deepEqual(
      net.atRelay.map((r) => indexOf(r.payload)),
      [1],
    );
    assert.deepEqual(
      net.atClient.map((r) => indexOf(r.payload)),
      [2],
    );
    assert.equal(net.client.current!.suite, Suite.CHACHA20_POLY1305);
    // Both sides hold the same handshake hash.
    assert.deepEqual(net.client.current!.handshakeHash, peer.keys.current!.handshakeHash);
  });

  test('data sent before the handshake completes is held, then delivered in order', () => {
    const net = new Net();
    net.connect();
    for (let i = 0; i < 5; i++) net.clientSend(numbered(i));
    net.runUntil(net.now + 100);
    assert.deepEqual(
      net.atRelay.map((r) => indexOf(r.payload)),
      [0, 1, 2, 3, 4],
    );
    assert.equal(
      net.relay.stats.keepalivesReceived,
      0,
      'staged data confirms, no keepalive needed',
    );
  });

  test('message 1 on several paths is one handshake; the relay answers every path', () => {
    const net = new Net();
    net.connect(['a', 'b']);
    net.runUntil(net.now + 60); // path b's answer arrives after path a's has completed
    assert.equal(net.relay.peers.size, 1);
    assert.equal(net.client.stats.handshakes, 1);
    assert.equal(net.client.stats.controlDrops.handshake_unexpected, 1, 'second answer ignored');
    assert.equal(net.relay.stats.controlDrops.handshake_replay, 0);
  });

  test('a replayed message 1 is refused and changes nothing', () => {
    const net = new Net();
    let first: Uint8Array | undefined;
    net.filter = (d) => {
      if (d.to === 'relay' && !first && d.data[4] === 1) first = d.data.slice();
      return true;
    };
    net.connect();
    net.runUntil(net.now + 100);
    const peer = [...net.relay.peers.values()][0]!;
    const before = peer.keys.current;
    // The same message again is a duplicate of the last answered one: answered again, no new keys.
    net.wire('relay', 'a', first!);
    net.runUntil(net.now + 100);
    assert.equal(peer.keys.current, before);
    assert.equal(peer.keys.next, undefined);
    // After a rekey (a newer handshake), the old message 1 is a replay.
    net.client.handleTimeout(net.now + 121_000);
    net.now += 121_000;
    net.runUntil(net.now + 100);
    assert.equal(net.client.stats.rekeys, 1);
    const current = peer.keys.current;
    net.wire('relay', 'a', first!);
    net.runUntil(net.now + 100);
    assert.equal(net.relay.stats.controlDrops.handshake_replay, 1);
    assert.equal(peer.keys.current, current);
    assert.equal(peer.keys.next, undefined);
  });

  test('a key that is not allowed gets silence', () => {
    const net = new Net({ authorize: () => ({ allowed: false }) });
    net.connect();
    net.runUntil(net.now + 100);
    assert.equal(net.relay.stats.controlDrops.peer_not_allowed, 1);
    assert.equal(net.relay.peers.size, 0);
    assert.equal(net.client.state, 'handshaking');
  });

  test('a message 1 for another relay key fails authentication', () => {
    const net = new Net();
    const other = new Net();
    other.client.connect(other.candidates(['a']), other.now);
    const t = other.client.pollTransmit()!;
    net.relay.receive(t.data, 'a', net.now);
    assert.equal(net.relay.stats.controlDrops.handshake_auth, 1);
    assert.equal(net.relay.peers.size, 0);
  });

  test('psk: matching keys connect; a mismatch never establishes', () => {
    const psk = random(32);
    const ok = new Net({ clientPsk: psk });
    const pub = ok.clientKeys.publicKey;
    const okRelayAuth = (k: Uint8Array) => ({
      allowed: Buffer.from(k).equals(Buffer.from(pub)),
      psk,
    });
    const good = new Net({ clientPsk: psk, authorize: okRelayAuth });
    // (a fresh Net makes fresh keys; allow any key but demand the psk)
    const any = new Net({ clientPsk: psk, authorize: () => ({ allowed: true, psk }) });
    any.connect();
    any.runUntil(any.now + 100);
    assert.equal(any.client.state, 'established');
    void good;
    const bad = new Net({ clientPsk: psk, authorize: () => ({ allowed: true, psk: random(32) }) });
    bad.connect();
    bad.runUntil(bad.now + 100);
    assert.equal(bad.client.state, 'handshaking');
    assert.equal(bad.client.stats.controlDrops.handshake_auth, 1);
    const missing = new Net({ authorize: () => ({ allowed: true, psk }) });
    missing.connect();
    missing.runUntil(missing.now + 100);
    assert.equal(missing.client.state, 'handshaking');
    assert.equal(missing.relay.stats.controlDrops.peer_not_allowed, 1);
  });

  test('handshake retransmits with backoff and gives up', () => {
    const net = new Net();
    net.filter = () => false;
    net.connect();
    net.runUntil(net.now + 100_000);
    assert.equal(net.client.state, 'failed');
    const sent: number[] = [];
    const n2 = new Net();
    n2.filter = () => false;
    n2.connect();
    const t0 = n2.now;
    for (let e = n2.client.pollEvent(); e; e = n2.client.pollEvent())
      if (e.type === 'handshake-sent') sent.push(0);
    n2.runUntil(t0 + 16_000);
    let attempts = 0;
    for (let e = n2.client.pollEvent(); e; e = n2.client.pollEvent())
      if (e.type === 'handshake-sent') attempts = e.attempt;
    assert.equal(attempts, 5, 'retries at 1, 3, 7, 15 s');
  });
});

describe('data path', () => {
  test('forged, replayed, unknown-SPI and truncated packets are counted and dropped', () => {
    const net = new Net();
    net.connect();
    net.runUntil(net.now + 100);
    const pkt = net.client.send(numbered(7), DATA, net.now)!;
    const copy = pkt.slice();
    const forged = pkt.slice();
    forged[forged.length - 1]! ^= 1;
    const d0 = net.relay.receive(forged, 'a', net.now);
    assert.equal(d0, undefined);
    assert.equal(net.relay.stats.espDrops.bad_icv, 1);
    const d1 = net.relay.receive(pkt, 'a', net.now);
    assert.equal(indexOf(d1!.payload), 7);
    assert.equal(net.relay.receive(copy, 'a', net.now), undefined);
    assert.equal(net.relay.stats.espDrops.replay, 1);
    const unknown = copy.slice();
    unknown[0]! ^= 0x80;
    assert.equal(net.relay.receive(unknown, 'a', net.now), undefined);
    assert.equal(net.relay.stats.espDrops.bad_spi, 1);
    assert.equal(net.relay.receive(copy.subarray(0, 3), 'a', net.now), undefined);
    assert.equal(net.relay.stats.espDrops.too_short, 1);
  });

  test('random datagrams never throw and never deliver', () => {
    const net = new Net();
    net.connect();
    net.runUntil(net.now + 100);
    const peer = [...net.relay.peers.values()][0]!;
    const spi = peer.keys.current!.localSpi;
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), fc.integer({ min: 0, max: 2 }), (b, kind) => {
        const d = b.slice();
        if (kind === 1 && d.length >= 8) {
          d.fill(0, 0, 4); // control-shaped: a handshake init or response that is junk inside
          d[4] = 1 + (d[4]! % 2);
          d[5] = 1;
        }
        if (kind === 2 && d.length >= 4) new DataView(d.buffer).setUint32(0, spi); // our SPI
        const a = net.relay.receive(d, 'x', net.now);
        const c = net.client.receive(d.slice(), 'x', net.now);
        return a === undefined && c === undefined;
      }),
      { numRuns: 2000 },
    );
    assert.equal(peer.path, 'a', 'junk never moved the path');
  });

  test('a NAT rebinding (data from a new path, no registration) moves the path after a challenge', () => {
    const net = new Net();
    net.connect();
    net.runUntil(net.now + 100);
    const peer = [...net.relay.peers.values()][0]!;
    assert.equal(peer.path, 'a');
    net.runUntil(net.now + 3000); // past the hold after the last registration
    const pkt = net.client.send(numbered(1), DATA, net.now)!;
    net.wire('relay', 'b', pkt); // the NAT gave the client a new mapping: same packet, new path
    net.runUntil(net.now + 100);
    assert.equal(peer.path, 'b');
    assert.equal(indexOf(net.atRelay.at(-1)!.payload), 1);
    assert.equal(peer.paths.get('b')!.validated, true, 'the client answered the challenge');
  });
});

describe('rekeying', () => {
  test('streams across several rekeys: nothing lost, duplicated, reordered or delayed', () => {
    const net = new Net();
    net.connect();
    net.runUntil(net.now + 100);
    const start = net.now;
    const sentAt = new Map<number, number>();
    const n = 100_000;
    let i = 0;
    // One packet each way every 5 ms for 500 s (> 4 rekeys at 120 s).
    for (; i < n; i++) {
      const t = start + i * 5;
      net.runUntil(t);
      sentAt.set(i, net.now);
      net.clientSend(numbered(i));
      net.relaySend(numbered(i));
    }
    net.runUntil(net.now + 1000);
    assert.ok(net.client.stats.rekeys >= 4, `rekeys: ${net.client.stats.rekeys}`);
    assert.equal(net.relay.stats.rekeys, net.client.stats.rekeys);
    for (const [label, got] of [
      ['relay', net.atRelay],
      ['client', net.atClient],
    ] as const) {
      assert.equal(got.length, n, `${label} got every packet`);
      got.forEach((r, k) => {
        assert.equal(indexOf(r.payload), k, `${label}: packet ${k} in order, once`);
        // Not delayed: each arrives exactly one path delay after it was sent.
        assert.equal(r.at - sentAt.get(k)!, 10, `${label}: packet ${k} not delayed`);
      });
    }
    assert.equal(net.client.stats.controlDrops.no_keys + net.relay.stats.controlDrops.no_keys, 0);
    const drops = { ...net.client.stats.espDrops, ...{} };
    assert.deepEqual(
      Object.values(drops).filter((v) => v > 0),
      [],
    );
    assert.deepEqual(
      Object.values(net.relay.stats.espDrops).filter((v) => v > 0),
      [],
    );
  });

  test('rekeys by packet count', () => {
    const net = new Net({
      client: { limits: { rekeyAfterPackets: 1000, rejectAfterPackets: 1500 } },
    });
    net.connect();
    net.runUntil(net.now + 100);
    for (let i = 0; i < 3500; i++) {
      net.clientSend(numbered(i));
      net.runUntil(net.now + 1);
    }
    net.runUntil(net.now + 100);
    assert.ok(net.client.stats.rekeys >= 3, `rekeys: ${net.client.stats.rekeys}`);
    assert.equal(net.atRelay.length, 3500);
    assert.ok(net.client.current!.tx.seq < 1500);
  });

  test('keys past their reject age are never used; data waits for a new handshake', () => {
    const net = new Net();
    net.connect();
    net.runUntil(net.now + 100);
    const old = net.client.current!;
    net.now += 181_000; // the client was asleep: no timers ran
    net.clientSend(numbered(1));
    assert.notEqual(net.client.current, old);
    net.runUntil(net.now + 100);
    assert.deepEqual(
      net.atRelay.map((r) => indexOf(r.payload)),
      [1],
    );
    assert.equal(net.client.current!.tx.seq, 1);
  });
});

describe('payload codecs and suite choice', () => {
  test('round-trip and reject junk with MALFORMED only', () => {
    const init = {
      spi: 0x1234_5678,
      timestamp: tai64n(1_700_000_000_123),
      suites: [Suite.AES_256_GCM, Suite.CHACHA20_POLY1305],
      encapsulations: [1, 3, 5] as (1 | 3 | 5)[],
    };
    assert.deepEqual(decodeInitPayload(encodeInitPayload(init)), init);
    const withViews = {
      ...init,
      candidates: [
        { encapsulation: 1 as const, view: { srcAddr: '198.18.0.2', srcPort: 4000 } },
        {
          encapsulation: 3 as const,
          view: { url: 'http://r/x', headers: [['user-agent', 't']] as [string, string][] },
        },
      ],
    };
    assert.deepEqual(decodeInitPayload(encodeInitPayload(withViews)), withViews);
    const resp = {
      spi: 999,
      suite: Suite.AES_256_GCM,
      suites: [Suite.AES_256_GCM],
      encapsulations: [2] as 2[],
    };
    assert.deepEqual(decodeRespPayload(encodeRespPayload(resp)), resp);
    // FRESH (extension 2, empty), alone and after SMALL_SA; with a value it is malformed.
    const fresh = { ...resp, fresh: true };
    assert.deepEqual(decodeRespPayload(encodeRespPayload(fresh)), fresh);
    const both = { ...fresh, small: { spi: 1000, suite: Suite.CHACHA20_POLY1305 } };
    assert.deepEqual(decodeRespPayload(encodeRespPayload(both)), both);
    const bad = new Uint8Array([...encodeRespPayload(resp), 2, 0, 1, 0]);
    assert.throws(() => decodeRespPayload(bad), { code: 'ROAMLINK_ERR_MALFORMED' });
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 64 }), (b) => {
        for (const dec of [decodeInitPayload, decodeRespPayload]) {
          try {
            dec(b);
          } catch (e) {
            if (!isRoamlinkError(e, 'ROAMLINK_ERR_MALFORMED')) return false;
          }
        }
        return true;
      }),
    );
  });

  test('suite choice: smallest rank sum, ties to the relay', () => {
    const C = Suite.CHACHA20_POLY1305;
    const A = Suite.AES_256_GCM;
    const table: [Suite[], Suite[], Suite | 'none'][] = [
      [[C, A], [C, A], C],
      [[A, C], [A, C], A],
      [[A, C], [C, A], C], // tie: relay's order
      [[C], [A, C], C],
      [[A], [C], 'none'],
    ];
    for (const [client, relay, want] of table) {
      if (want === 'none')
        assert.throws(() => chooseSuite(client, relay), { code: 'ROAMLINK_ERR_NO_COMMON_SUITE' });
      else assert.equal(chooseSuite(client, relay), want, `${client} vs ${relay}`);
    }
  });
});

describe('forgetting silent peers', () => {
  test('a peer silent for idleMs is forgotten: its SPI is refused, a new handshake starts over', () => {
    const net = new Net();
    net.connect();
    net.runUntil(net.now + 100);
    assert.equal(net.client.state, 'established');
    const peer = [...net.relay.peers.values()][0]!;
    assert.equal(peer.lastSeen > 0, true);
    // Heard recently: kept.
    assert.deepEqual(net.relay.forgetIdle(net.now, 60_000), []);
    net.clientSend(numbered(1));
    net.runUntil(net.now + 20);
    const heard = peer.lastSeen;
    assert.equal(heard, net.now - 10, 'the data packet counts as hearing from the peer');
    // 60 s of silence: forgotten.
    const gone = net.relay.forgetIdle(heard + 60_000, 60_000);
    assert.deepEqual(gone, [peer]);
    assert.equal(net.relay.peers.size, 0);
    assert.equal(net.relay.peersForgotten, 1);
    // Its packets now find no SA; nothing is delivered.
    const badSpi = net.relay.stats.espDrops.bad_spi;
    const delivered = net.atRelay.length;
    net.clientSend(numbered(2));
    net.runUntil(net.now + 20);
    assert.equal(net.relay.stats.espDrops.bad_spi, badSpi + 1);
    assert.equal(net.atRelay.length, delivered);
    // The relay said so (UNKNOWN_SPI): the client rekeyed by itself, with a peer the relay made
    // anew (FRESH).
    assert.equal(net.relay.stats.unknownSpiHints, 1);
    net.runUntil(net.now + 100);
    assert.equal(net.client.stats.rekeys, 1);
    const again = [...net.relay.peers.values()][0]!;
    assert.notEqual(again, peer);
    // A client starting over (later: its message 1's timestamp must be newer) gets a fresh peer.
    net.runUntil(net.now + 1000);
    net.restartClient();
    net.connect();
    net.runUntil(net.now + 100);
    assert.equal(net.client.state, 'established');
    const fresh = [...net.relay.peers.values()][0]!;
    assert.notEqual(fresh, peer);
    net.clientSend(numbered(3));
    net.runUntil(net.now + 20);
    assert.equal(indexOf(net.atRelay.at(-1)!.payload), 3);
  });
});

describe('handshake rate per source', () => {
  test("message 1s beyond a source's budget are dropped unread and counted; the budget refills", () => {
    const net = new Net({ relay: { handshakeRate: { perSecond: 2, burst: 3 } } });
    const msg1 = (i: number): Uint8Array =>
      new InitiatorHandshake({
        staticKeypair: net.clientKeys,
        relayStaticKey: net.relayKeys.publicKey,
        spi: 0x1000 + i,
        timestamp: tai64n(net.now + i),
        suites: [Suite.CHACHA20_POLY1305],
        encapsulations: [Encapsulation.UDP],
        random,
      }).message;
    const from = (addr: string, port: number) => ({
      encapsulation: Encapsulation.UDP,
      view: { srcAddr: addr, srcPort: port, dstAddr: '198.18.1.1', dstPort: 4500 },
    });
    const drops = () => net.relay.stats.controlDrops;
    const answered = (): number => {
      let n = 0;
      while (net.relay.pollTransmit()) n++;
      return n;
    };
    // Five from one address at once: the burst of three is read and answered, two are dropped.
    for (let i = 0; i < 5; i++)
      net.relay.receive(msg1(i), `p${i}`, net.now, from('198.18.0.2', 40000 + i));
    assert.equal(drops().handshake_rate_limited, 2);
    assert.equal(answered(), 3);
    // Another address has its own budget.
    net.relay.receive(msg1(10), 'q', net.now, from('198.18.0.3', 40000));
    assert.equal(drops().handshake_rate_limited, 2);
    assert.equal(answered(), 1);
    // One second later two more tokens.
    net.now += 1000;
    for (let i = 20; i < 23; i++)
      net.relay.receive(msg1(i), `p${i}`, net.now, from('198.18.0.2', 40000 + i));
    assert.equal(drops().handshake_rate_limited, 3);
    assert.equal(answered(), 2);
    // Nothing else was touched by the dropped ones: no handshake counted for them.
    assert.equal(drops().handshake_malformed + drops().handshake_auth, 0);
  });
});

describe('a relay that restarts (UNKNOWN_SPI, FRESH)', () => {
  test('the relay hints at an SPI it does not know; the client rekeys at once and hears that the relay started over', () => {
    const net = new Net();
    net.connect();
    net.runUntil(net.now + 100);
    assert.equal(net.client.state, 'established');
    const events: string[] = [];
    let fresh: boolean | undefined;
    net.restartRelay();
    net.clientSend(numbered(1));
    // The packet finds no SA; the relay answers with a hint on the same path, within one RTT.
    net.runUntil(net.now + 10);
    assert.equal(net.relay.stats.espDrops.bad_spi, 1);
    assert.equal(net.relay.stats.unknownSpiHints, 1);
    net.runUntil(net.now + 10);
    assert.equal(net.client.stats.unknownSpiHints, 1, 'the hint started a rekey');
    for (let e = net.client.pollEvent(); e; e = net.client.pollEvent()) {
      events.push(e.type);
      if (e.type === 'established') fresh = e.relayFresh;
    }
    assert.ok(events.includes('handshake-sent'), events.join());
    // One more round trip: the new keys, and the relay says it held no session (FRESH).
    net.runUntil(net.now + 25);
    for (let e = net.client.pollEvent(); e; e = net.client.pollEvent()) {
      events.push(e.type);
      if (e.type === 'established') fresh = e.relayFresh;
    }
    assert.ok(events.includes('established'), events.join());
    assert.equal(fresh, true);
    assert.equal(net.client.stats.rekeys, 1);
    // Data flows again, on the new relay.
    net.clientSend(numbered(2));
    net.runUntil(net.now + 20);
    assert.equal(indexOf(net.atRelay.at(-1)!.payload), 2);
  });

  test("a hint's rekey goes by the hint's path too, and is confirmed on the path its answer came by", () => {
    const net = new Net();
    net.connect(['a']);
    net.runUntil(net.now + 100);
    assert.equal(net.client.path, 'a');
    net.restartRelay();
    // Path a died with the relay; the transport was dialled again as path b, which the session
    // has not chosen yet (no round can settle while the relay does not know the SPI).
    net.filter = (d) => d.path !== 'a';
    const pkt = net.client.send(numbered(1), DATA, net.now)!;
    net.wire('relay', 'b', pkt);
    // Five trips on b (25 ms each): the packet, the hint, message 1, message 2, the keepalive
    // that confirms the new keys.
    net.runUntil(net.now + 130);
    assert.equal(net.client.stats.unknownSpiHints, 1);
    assert.equal(net.client.stats.rekeys, 1, 'the rekey went by b as well, and was answered');
    const peer = [...net.relay.peers.values()][0]!;
    assert.ok(peer.keys.current, 'confirmed on b: the relay uses the new keys');
  });

  test('hints are limited: one per path per second at the relay; the client acts on its own SPI only, once per second', () => {
    const net = new Net();
    net.connect();
    net.runUntil(net.now + 100);
    const pkt = net.client.send(numbered(1), DATA, net.now)!;
    const unknown = pkt.slice();
    unknown[0]! ^= 0x80;
    const hints = (): number => net.relay.stats.unknownSpiHints;
    net.relay.receive(unknown, 'a', net.now);
    net.relay.receive(unknown, 'a', net.now + 500);
    assert.equal(hints(), 1, 'a second one on the same path within 1 s is not sent');
    assert.equal(net.relay.stats.controlDrops.unknown_spi_ignored, 1);
    net.relay.receive(unknown, 'b', net.now + 500);
    assert.equal(hints(), 2, 'another path gets its own');
    net.relay.receive(unknown, 'a', net.now + 1000);
    assert.equal(hints(), 3, 'and the first again a second later');
    const sent: Uint8Array[] = [];
    for (let t = net.relay.pollTransmit(); t; t = net.relay.pollTransmit()) sent.push(t.data);
    assert.equal(sent.length, 3);
    // Each names the SPI that was not known: not ours (the client sends under another), ignored.
    const client = net.client;
    client.receive(sent[0]!, 'a', net.now);
    assert.equal(client.stats.unknownSpiHints, 0);
    assert.equal(client.stats.controlDrops.unknown_spi_ignored, 1);
    // One that names the client's own outbound SPI starts a rekey; a second within 1 s does not
    // (a handshake is out anyway); malformed ones change nothing.
    const mine = sent[0]!.slice();
    mine.set(pkt.subarray(0, 4), 5);
    client.receive(mine, 'a', net.now);
    assert.equal(client.stats.unknownSpiHints, 1);
    client.receive(mine, 'a', net.now + 10);
    assert.equal(client.stats.unknownSpiHints, 1);
    assert.equal(client.stats.controlDrops.unknown_spi_ignored, 2);
    client.receive(mine.subarray(0, 8), 'a', net.now + 2000);
    client.receive(new Uint8Array([...mine, 0]), 'a', net.now + 2000);
    assert.equal(client.stats.unknownSpiHints, 1);
    assert.equal(client.stats.controlDrops.unknown_spi_ignored, 4);
    assert.equal(client.state, 'established', 'a hint never ends anything');
  });

  test('the global hint budget: a flood from many paths is cut at UNKNOWN_SPI_PER_SECOND', () => {
    const net = new Net();
    const junk = new Uint8Array(40).fill(0x77);
    for (let i = 0; i < 1000; i++) net.relay.receive(junk, `p${i}`, net.now);
    assert.equal(net.relay.stats.unknownSpiHints, UNKNOWN_SPI_PER_SECOND);
    assert.equal(net.relay.stats.controlDrops.unknown_spi_ignored, 1000 - UNKNOWN_SPI_PER_SECOND);
    // The budget refills with time.
    net.relay.receive(junk, 'later', net.now + 100);
    assert.equal(net.relay.stats.unknownSpiHints, UNKNOWN_SPI_PER_SECOND + 1);
  });
});
