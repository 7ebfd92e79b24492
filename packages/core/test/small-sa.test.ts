/**
 * The small-packet SA (docs/PROTOCOL.md §3.7): a second SA pair from the same handshake, with its
 * own SPIs and keys, that carries payloads under SMALL_PACKET_BYTES.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  type CryptoProvider,
  decodeInitPayload,
  decodeRespPayload,
  Encapsulation,
  encodeInitPayload,
  encodeRespPayload,
  generateKeypair,
  InitiatorHandshake,
  type InitPayload,
  NextHeader,
  nobleProvider,
  ResponderHandshake,
  readSpi,
  SMALL_PACKET_BYTES,
  Suite,
  tai64n,
} from '../src/index.ts';
import { indexOf, Net, numbered, random } from './harness.ts';

const A = Suite.AES_256_GCM;
const C = Suite.CHACHA20_POLY1305;

/** noble, claiming AES-GCM is its fastest suite for bulk and ChaCha20 for small packets. */
const split: CryptoProvider = {
  name: 'split',
  suites: [A, C],
  smallSuites: [C, A],
  aead: (suite, key) => nobleProvider.aead(suite, key),
};

/** Records the SPI of every ESP datagram on the wire, per direction. */
function spiLog(net: Net): { toRelay: number[]; toClient: number[] } {
  const log = { toRelay: [] as number[], toClient: [] as number[] };
  net.filter = (d) => {
    const isEsp = !(d.data[0] === 0 && d.data[1] === 0 && d.data[2] === 0 && d.data[3] === 0);
    if (isEsp && d.data.length > 1) {
      (d.to === 'relay' ? log.toRelay : log.toClient).push(readSpi(d.data));
    }
    return true;
  };
  return log;
}

function connected(o: ConstructorParameters<typeof Net>[0]): Net {
  const net = new Net(o);
  net.connect();
  net.runUntil(net.now + 100);
  assert.equal(net.client.state, 'established');
  return net;
}

describe('small-packet SA: negotiation', () => {
  test('message 1 and 2 extensions round-trip; malformed ones are MALFORMED', () => {
    const init: InitPayload = {
      spi: 0x1234_5678,
      timestamp: tai64n(1_700_000_000_123),
      suites: [A, C],
      encapsulations: [1, 3],
      small: { spi: 0x1234_5679, suites: [C, A] },
    };
    assert.deepEqual(decodeInitPayload(encodeInitPayload(init)), init);
    const withViews: InitPayload = {
      ...init,
      candidates: [{ encapsulation: 1, view: { srcAddr: '198.18.0.2', srcPort: 4000 } }],
    };
    assert.deepEqual(decodeInitPayload(encodeInitPayload(withViews)), withViews);
    const resp = { spi: 999, suite: A, suites: [A, C], encapsulations: [2 as const] };
    const withSmall = { ...resp, small: { spi: 1000, suite: C } };
    assert.deepEqual(decodeRespPayload(encodeRespPayload(withSmall)), withSmall);
    assert.deepEqual(decodeRespPayload(encodeRespPayload(resp)), resp);

    const malformed = { code: 'ROAMLINK_ERR_MALFORMED' };
    // The small SPI equal to the bulk one.
    const same = encodeInitPayload(init);
    same.set(same.subarray(0, 4), same.length - 2 - 5 + 0);
    assert.throws(() => decodeInitPayload(same), malformed);
    // A suite count that disagrees with the extension's length.
    const count = encodeInitPayload(init);
    count[count.length - 3] = 3;
    assert.throws(() => decodeInitPayload(count), malformed);
    // Message 2: an unknown small suite, and a small SPI equal to the bulk one.
    const unknown = encodeRespPayload(withSmall);
    unknown[unknown.length - 1] = 77;
    assert.throws(() => decodeRespPayload(unknown), malformed);
    const sameResp = encodeRespPayload({ ...resp, small: { spi: 999, suite: C } });
    assert.throws(() => decodeRespPayload(sameResp), malformed);
    // An offer naming only suites this version does not know is no offer.
    const alien = encodeInitPayload(init);
    alien[alien.length - 2] = 200;
    alien[alien.length - 1] = 201;
    assert.equal(decodeInitPayload(alien).small, undefined);
  });

  test('both ends offer it and the small choice differs from the bulk suite: two SAs', () => {
    const net = connected({ clientProvider: split, relayProvider: split });
    const pair = net.client.current!;
    assert.equal(pair.suite, A);
    assert.equal(pair.smallSuite, C);
    assert.notEqual(pair.smallLocalSpi, pair.localSpi);
    const peer = [...net.relay.peers.values()][0]!;
    const relayPair = peer.keys.current!;
    assert.equal(relayPair.smallSuite, C);
    assert.equal(relayPair.txSmall!.spi, pair.smallLocalSpi);
    assert.equal(pair.txSmall!.spi, relayPair.smallLocalSpi);
    // Both ends say so when the keys are established.
    const events: unknown[] = [];
    for (let e = net.client.pollEvent(); e; e = net.client.pollEvent()) events.push(e);
    for (let e = net.relay.pollEvent(); e; e = net.relay.pollEvent()) events.push(e);
    const established = events.filter(
      (e): e is { type: 'established'; suite: number; smallSuite?: number } =>
        (e as { type: string }).type === 'established',
    );
    assert.equal(established.length, 2);
    for (const e of established) assert.deepEqual([e.suite, e.smallSuite], [A, C]);
    // Four SAs in the key log: the Wireshark ESP table needs each SPI.
    assert.equal(pair.keyInfo().length, 4);
    assert.deepEqual(new Set(pair.keyInfo().map((k) => k.spi)).size, 4);
  });

  test('no small SA when one side does not offer it, or when it would be the bulk suite', () => {
    const cases: [CryptoProvider, CryptoProvider][] = [
      [split, nobleProvider],
      [nobleProvider, split],
      // The relay's small order makes AES-GCM the choice: the bulk suite, so one SA is enough.
      [split, { ...split, smallSuites: [A, C] }],
    ];
    for (const [clientProvider, relayProvider] of cases) {
      const net = connected({ clientProvider, relayProvider });
      assert.equal(net.client.current!.txSmall, undefined);
      assert.equal([...net.relay.peers.values()][0]!.keys.current!.txSmall, undefined);
      net.clientSend(numbered(1, 40));
      net.runUntil(net.now + 20);
      assert.equal(indexOf(net.atRelay.at(-1)!.payload), 1);
    }
  });

  test('a forced suite (--suite) limits the small offer to it: one SA', () => {
    const net = connected({ clientProvider: split, relayProvider: split, client: { suites: [A] } });
    assert.equal(net.client.current!.suite, A);
    assert.equal(net.client.current!.txSmall, undefined);
  });
});

describe('small-packet SA: data', () => {
  test('small payloads go on the small SA, large ones on the bulk SA; all arrive once, in order', () => {
    const net = connected({ clientProvider: split, relayProvider: split });
    const pair = net.client.current!;
    const relayPair = [...net.relay.peers.values()][0]!.keys.current!;
    const log = spiLog(net);
    const sizes = [40, SMALL_PACKET_BYTES - 1, SMALL_PACKET_BYTES, 9000, 64, 20_000, 100];
    sizes.forEach((size, i) => {
      net.clientSend(numbered(i, size));
      net.relaySend(numbered(100 + i, size));
    });
    net.runUntil(net.now + 50);
    const want = sizes.map((s) => (s < SMALL_PACKET_BYTES ? 'small' : 'bulk'));
    assert.deepEqual(
      log.toRelay.map((spi) => (spi === relayPair.smallLocalSpi ? 'small' : 'bulk')),
      want,
    );
    assert.deepEqual(
      log.toClient.map((spi) => (spi === pair.smallLocalSpi ? 'small' : 'bulk')),
      want,
    );
    assert.deepEqual(
      net.atRelay.map((r) => indexOf(r.payload)),
      sizes.map((_, i) => i),
    );
    assert.deepEqual(
      net.atClient.map((r) => indexOf(r.payload)),
      sizes.map((_, i) => 100 + i),
    );
    assert.deepEqual(
      net.atRelay.map((r) => r.payload.length),
      sizes,
    );
  });

  test('each SA has its own replay window; forged and replayed small packets are dropped', () => {
    const net = connected({ clientProvider: split, relayProvider: split });
    const small = net.client.send(numbered(1, 40), NextHeader.ROAMLINK, net.now)!;
    const bulk = net.client.send(numbered(2, 9000), NextHeader.ROAMLINK, net.now)!;
    // Each SA numbers its own packets.
    const pair = net.client.current!;
    const seq = (p: Uint8Array) => new DataView(p.buffer, p.byteOffset).getUint32(4);
    assert.equal(seq(small), pair.txSmall!.seq);
    assert.equal(seq(bulk), pair.tx.seq);
    const copy = small.slice();
    const forged = small.slice();
    forged[forged.length - 1]! ^= 1;
    assert.equal(net.relay.receive(forged, 'a', net.now), undefined);
    assert.equal(net.relay.stats.espDrops.bad_icv, 1);
    assert.equal(indexOf(net.relay.receive(bulk, 'a', net.now)!.payload), 2);
    assert.equal(indexOf(net.relay.receive(small, 'a', net.now)!.payload), 1);
    assert.equal(net.relay.receive(copy, 'a', net.now), undefined);
    assert.equal(net.relay.stats.espDrops.replay, 1);
    // A bulk packet relabelled with the small SPI fails authentication (other key, AAD).
    const relabelled = bulk.slice();
    relabelled.set(small.subarray(0, 4), 0);
    assert.equal(net.relay.receive(relabelled, 'a', net.now), undefined);
    assert.ok(net.relay.stats.espDrops.bad_icv + net.relay.stats.espDrops.replay >= 2);
  });

  test('rekeys keep a small SA; a forgotten peer has both SPIs refused', () => {
    const net = connected({
      clientProvider: split,
      relayProvider: split,
      client: { limits: { rekeyAfterPackets: 20 } },
    });
    const first = net.client.current!;
    for (let i = 0; i < 60; i++) {
      net.clientSend(numbered(i, i % 2 === 0 ? 40 : 6000));
      net.runUntil(net.now + 5);
    }
    net.runUntil(net.now + 100);
    assert.ok(net.client.stats.rekeys >= 1, 'rekeyed');
    assert.notEqual(net.client.current, first);
    assert.equal(net.client.current!.smallSuite, C);
    assert.deepEqual(
      net.atRelay.map((r) => indexOf(r.payload)),
      Array.from({ length: 60 }, (_, i) => i),
    );
    const peer = [...net.relay.peers.values()][0]!;
    net.relay.forgetIdle(net.now + 60_000, 60_000);
    assert.equal(net.relay.peers.has(peer.id), false);
    const badSpi = net.relay.stats.espDrops.bad_spi;
    for (const size of [40, 6000]) {
      const pkt = net.client.send(numbered(99, size), NextHeader.ROAMLINK, net.now)!;
      assert.equal(net.relay.receive(pkt, 'a', net.now), undefined);
    }
    assert.equal(net.relay.stats.espDrops.bad_spi, badSpi + 2);
  });

  test('a response naming a small SA the client did not offer is refused (NO_COMMON_SUITE)', () => {
    const clientKeys = generateKeypair(random);
    const relayKeys = generateKeypair(random);
    const init = new InitiatorHandshake({
      staticKeypair: clientKeys,
      relayStaticKey: relayKeys.publicKey,
      spi: 0x1000,
      timestamp: tai64n(1_700_000_000_000),
      suites: [C, A],
      small: { spi: 0x1001, suites: [C] },
      encapsulations: [Encapsulation.UDP],
      random,
    });
    const hs = ResponderHandshake.read(init.message, { staticKeypair: relayKeys, random });
    assert.deepEqual(hs.payload.small, { spi: 0x1001, suites: [C] });
    // A confused relay (here: its view of the offer altered) picks AES-GCM for small packets.
    hs.payload.small = { spi: 0x1001, suites: [A] };
    const { message, result } = hs.respond({
      spi: 0x2000,
      suites: [C],
      encapsulations: [Encapsulation.UDP],
      small: { spi: 0x2001, suites: [A] },
    });
    assert.equal(result.small?.suite, A);
    assert.throws(() => init.consume(message), { code: 'ROAMLINK_ERR_NO_COMMON_SUITE' });
  });
});
