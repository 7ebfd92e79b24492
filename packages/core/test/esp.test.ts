import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, test } from 'node:test';
import { gcm } from '@noble/ciphers/aes.js';
import fc from 'fast-check';
import type { Aead } from '../src/index.ts';
import {
  Drop,
  EspCipher,
  EspReceiver,
  EspSender,
  espPacketLength,
  fromHex,
  newEspOpened,
  nobleProvider,
  Suite,
  toHex,
} from '../src/index.ts';

interface EspVector {
  name: string;
  keyBits?: number;
  key: string;
  salt: string;
  spi: string;
  esn: boolean;
  seqHigh: string | null;
  seqLow: string;
  iv: string;
  payload: string;
  padLength: number;
  nextHeader: number;
  packet: string;
}

const load = (f: string): EspVector[] =>
  JSON.parse(readFileSync(new URL(`./vectors/${f}`, import.meta.url), 'utf8')).vectors;

/**
 * AES-GCM for any key size, straight from noble, so the ESP codec can be checked against every
 * case of draft-mcgrew-gcm-test-01 (most use AES-128, which roamlink does not offer as a suite).
 */
function anyGcm(key: Uint8Array): Aead {
  return {
    suite: Suite.AES_256_GCM,
    seal(nonce, aad, buf, start, end) {
      buf.set(gcm(key, nonce, aad).encrypt(buf.subarray(start, end)), start);
    },
    open(nonce, aad, buf, start, end) {
      try {
        buf.set(gcm(key, nonce, aad).decrypt(buf.subarray(start, end + 16)), start);
        return true;
      } catch {
        return false;
      }
    },
  };
}

function checkVector(v: EspVector, aead: Aead): void {
  const spi = Number.parseInt(v.spi, 16);
  const hi = v.seqHigh ? Number.parseInt(v.seqHigh, 16) : 0;
  const lo = Number.parseInt(v.seqLow, 16);
  const iv = fromHex(v.iv);
  const ivHi = new DataView(iv.buffer).getUint32(0);
  const ivLo = new DataView(iv.buffer).getUint32(4);
  const cipher = new EspCipher(spi, aead, fromHex(v.salt), v.esn);
  const payload = fromHex(v.payload);
  const out = new Uint8Array(espPacketLength(payload.length));
  const n = cipher.seal(out, 0, payload, v.nextHeader, hi, lo, ivHi, ivLo);
  assert.equal(n, out.length);
  assert.equal(toHex(out), v.packet, `${v.name}: sealed bytes`);
  const opened = newEspOpened();
  const pkt = fromHex(v.packet);
  assert.equal(cipher.open(pkt, hi, lo, opened), Drop.NONE, `${v.name}: opens`);
  assert.equal(toHex(opened.payload), v.payload);
  assert.equal(opened.nextHeader, v.nextHeader);
  // The same packet under a wrong high sequence half must fail: ESN is authenticated (RFC 4303 §2.2.1).
  if (v.esn) {
    assert.equal(cipher.open(fromHex(v.packet), (hi + 1) >>> 0, lo, opened), Drop.BAD_ICV);
  }
}

describe('ESP published vectors', () => {
  test('RFC 7634 Appendix A (ChaCha20-Poly1305)', () => {
    for (const v of load('rfc7634-esp.json')) {
      checkVector(v, nobleProvider.aead(Suite.CHACHA20_POLY1305, fromHex(v.key)));
    }
  });

  test('draft-mcgrew-gcm-test-01, every AES-GCM ESP case', () => {
    const vs = load('gcm-esp.json');
    assert.equal(vs.length, 16);
    for (const v of vs) checkVector(v, anyGcm(fromHex(v.key)));
  });

  test('draft-mcgrew-gcm-test-01, AES-256 cases through the provider', () => {
    const vs = load('gcm-esp.json').filter((v) => v.keyBits === 256);
    assert.equal(vs.length, 4);
    for (const v of vs) checkVector(v, nobleProvider.aead(Suite.AES_256_GCM, fromHex(v.key)));
  });
});

function pair(suite: Suite = Suite.CHACHA20_POLY1305, esn = true) {
  const key = fromHex('11'.repeat(32));
  const salt = fromHex('22334455');
  const tx = new EspSender({ spi: 0x1234, aead: nobleProvider.aead(suite, key), salt, esn });
  const rx = new EspReceiver({ spi: 0x1234, aead: nobleProvider.aead(suite, key), salt, esn });
  return { tx, rx, opened: newEspOpened() };
}

describe('EspSender / EspReceiver', () => {
  test('round trip for every length 0..300 and both suites; 4-byte alignment; IV = seq', () => {
    for (const suite of [Suite.CHACHA20_POLY1305, Suite.AES_256_GCM]) {
      const { tx, rx, opened } = pair(suite);
      for (let len = 0; len <= 300; len++) {
        const payload = new Uint8Array(len).map((_, i) => i * 7);
        const pkt = tx.seal(payload, 253);
        assert.equal((pkt.length - 16 - 16) % 4, 0);
        assert.equal(pkt.length, espPacketLength(len));
        assert.equal(toHex(pkt.subarray(8, 16)), (len + 1).toString(16).padStart(16, '0'));
        assert.equal(rx.open(pkt, opened), Drop.NONE);
        assert.deepEqual(opened.payload, payload);
        assert.equal(opened.seq, len + 1);
        assert.equal(opened.nextHeader, 253);
      }
    }
  });

  test('ESN: crosses the 2^32 boundary with only the low half on the wire', () => {
    const { tx, rx, opened } = pair();
    tx.seq = 2 ** 32 - 5;
    rx.replay.update(2 ** 32 - 50); // the receiver has seen traffic just below the boundary
    for (let i = 0; i < 10; i++) {
      const pkt = tx.seal(new Uint8Array([i]), 253);
      assert.equal(rx.open(pkt, opened), Drop.NONE);
      assert.equal(opened.seq, 2 ** 32 - 4 + i);
    }
    assert.equal(rx.replay.top, 2 ** 32 + 5);
  });

  test('32-bit sequence numbers refuse to cycle (RFC 4303 §3.3.3)', () => {
    const { tx } = pair(Suite.CHACHA20_POLY1305, false);
    tx.seq = 0xffff_fffe;
    tx.seal(new Uint8Array(1), 253);
    assert.throws(() => tx.seal(new Uint8Array(1), 253), { code: 'ROAMLINK_ERR_SA_EXPIRED' });
  });

  test('replays, forgeries and junk are counted by reason and change no state', () => {
    const { tx, rx, opened } = pair();
    const p1 = tx.seal(new Uint8Array(40), 253);
    const p1copy = p1.slice();
    assert.equal(rx.open(p1, opened), Drop.NONE);
    assert.equal(rx.open(p1copy, opened), Drop.REPLAY);
    const p2 = tx.seal(new Uint8Array(40), 253);
    for (const at of [9, 20, p2.length - 1]) {
      const f = p2.slice();
      f[at]! ^= 1;
      assert.equal(rx.open(f, opened), Drop.BAD_ICV, `flip at ${at}`);
    }
    const wrongSpi = p2.slice();
    wrongSpi[3]! ^= 1;
    assert.equal(rx.open(wrongSpi, opened), Drop.BAD_SPI);
    assert.equal(rx.open(p2.subarray(0, 30), opened), Drop.TOO_SHORT);
    assert.equal(rx.open(p2.subarray(0, p2.length - 1), opened), Drop.MALFORMED);
    assert.equal(rx.replay.top, 1, 'nothing moved the window');
    assert.equal(rx.open(p2, opened), Drop.NONE, 'the genuine packet still opens');
    assert.deepEqual(rx.drops, {
      too_short: 1,
      bad_spi: 1,
      replay: 1,
      bad_icv: 3,
      bad_padding: 0,
      malformed: 1,
    });
    assert.equal(rx.received, 2);
  });

  test('authentic but badly padded packets are dropped and do not move the window', () => {
    const { tx, rx, opened } = pair();
    const aead = tx.cipher.aead;
    // Build by hand: 2 payload bytes, padding [1, 3] (should be [1, 2]), pad length 2, NH 253.
    const pkt = new Uint8Array(16 + 8 + 16);
    new DataView(pkt.buffer).setUint32(0, 0x1234);
    new DataView(pkt.buffer).setUint32(4, 1);
    new DataView(pkt.buffer).setUint32(12, 1);
    pkt.set([0xaa, 0xbb, 1, 3, 0, 0, 2, 253], 16);
    const nonce = fromHex(`22334455${'0000000000000001'}`);
    const aad = fromHex(`00001234${'00000000'}${'00000001'}`);
    aead.seal(nonce, aad, pkt, 16, 24);
    assert.equal(rx.open(pkt, opened), Drop.BAD_PADDING);
    assert.equal(rx.replay.top, 0);
    // Pad length pointing before the payload start is bad padding too.
    const pkt2 = new Uint8Array(16 + 4 + 16);
    new DataView(pkt2.buffer).setUint32(0, 0x1234);
    new DataView(pkt2.buffer).setUint32(4, 1);
    new DataView(pkt2.buffer).setUint32(12, 1);
    pkt2.set([0, 0, 9, 253], 16);
    aead.seal(nonce, aad, pkt2, 16, 20);
    assert.equal(rx.open(pkt2, opened), Drop.BAD_PADDING);
    assert.equal(rx.drops.bad_padding, 2);
    tx.seq = 0;
    assert.equal(rx.open(tx.seal(new Uint8Array([1]), 59), opened), Drop.NONE);
  });

  test('random bytes never throw and never open', () => {
    const { rx, opened } = pair();
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 200 }), fc.boolean(), (b, ourSpi) => {
        const d = b.slice();
        if (ourSpi && d.length >= 4) new DataView(d.buffer).setUint32(0, 0x1234);
        return rx.open(d, opened) !== Drop.NONE;
      }),
      { numRuns: 3000 },
    );
    assert.equal(rx.replay.top, 0);
  });

  test('reordered delivery inside the window is accepted once each', () => {
    const { tx, rx, opened } = pair();
    const pkts = Array.from({ length: 200 }, (_, i) => tx.seal(new Uint8Array([i]), 253));
    const order = fc.sample(
      fc.shuffledSubarray([...pkts.keys()], { minLength: 200, maxLength: 200 }),
      1,
    )[0]!;
    const seen = new Set<number>();
    for (const i of order) {
      assert.equal(rx.open(pkts[i]!.slice(), opened), Drop.NONE);
      seen.add(opened.seq);
      assert.equal(rx.open(pkts[i]!.slice(), opened), Drop.REPLAY);
    }
    assert.equal(seen.size, 200);
  });
});

test('sealInPlace (zero copy) produces the same packet as seal', () => {
  const a = pair();
  const b = pair();
  for (const len of [0, 1, 13, 1400]) {
    const payload = new Uint8Array(len).map((_, i) => i ^ 0x5a);
    const viaCopy = a.tx.seal(payload, 253);
    const buf = new Uint8Array(espPacketLength(len) + 8);
    buf.set(payload, 8 + 16);
    const n = b.tx.sealInPlace(buf, 8, len, 253);
    assert.equal(n, viaCopy.length);
    assert.deepEqual(buf.subarray(8, 8 + n), viaCopy);
  }
});
