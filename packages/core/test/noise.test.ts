import assert from 'node:assert/strict';
import { createCipheriv, randomBytes } from 'node:crypto';
import { describe, test } from 'node:test';
import {
  fromHex,
  generateKeypair,
  type Keypair,
  keypairFromSecret,
  NOISE_IK_MSG1_OVERHEAD,
  NOISE_IK_MSG2_OVERHEAD,
  NOISE_IK_PROTOCOL,
  NOISE_IKPSK2_PROTOCOL,
  NoiseCipherState,
  NoiseIK,
  type NoiseOptions,
  toHex,
} from '../src/index.ts';
import { loadNoiseVectors, type NoiseVector } from './noise-vectors.ts';

const file = loadNoiseVectors();
type Vector = NoiseVector;

const WANTED = new Set([NOISE_IK_PROTOCOL, NOISE_IKPSK2_PROTOCOL]);
const vectors = file.vectors.filter((v) => WANTED.has(v.name ?? v.protocol_name ?? ''));

const random = (n: number): Uint8Array => new Uint8Array(randomBytes(n));
const noRandom = (): Uint8Array => {
  throw new Error('a vector run must not draw randomness');
};
const EMPTY = new Uint8Array(0);
const utf8 = (s: string): Uint8Array => new TextEncoder().encode(s);

function pskOf(single: string | undefined, list: string[] | undefined): Uint8Array | undefined {
  if (single !== undefined) return fromHex(single);
  if (list !== undefined && list.length > 0) {
    assert.equal(list.length, 1, 'IKpsk2 has exactly one psk');
    return fromHex(list[0]!);
  }
  return undefined;
}

function vectorParties(v: Vector, responderPskLater: boolean) {
  const iPsk = pskOf(v.init_psk, v.init_psks);
  const rPsk = pskOf(v.resp_psk, v.resp_psks);
  const iOpts: NoiseOptions = {
    prologue: fromHex(v.init_prologue),
    staticKeypair: keypairFromSecret(fromHex(v.init_static)),
    remoteStaticKey: fromHex(v.init_remote_static),
    ephemeralKeypair: keypairFromSecret(fromHex(v.init_ephemeral)),
    random: noRandom,
  };
  if (iPsk) iOpts.psk = iPsk;
  const rOpts: NoiseOptions = {
    prologue: fromHex(v.resp_prologue),
    staticKeypair: keypairFromSecret(fromHex(v.resp_static)),
    ephemeralKeypair: keypairFromSecret(fromHex(v.resp_ephemeral)),
    random: noRandom,
  };
  if (rPsk) {
    if (responderPskLater) rOpts.usePsk = true;
    else rOpts.psk = rPsk;
  }
  return {
    initiator: new NoiseIK('initiator', iOpts),
    responder: new NoiseIK('responder', rOpts),
    rPsk,
  };
}

function runVector(v: Vector, responderPskLater: boolean): void {
  const name = v.name ?? v.protocol_name;
  const { initiator, responder, rPsk } = vectorParties(v, responderPskLater);
  assert.equal(initiator.protocolName, name);
  assert.equal(responder.protocolName, name);
  const [m1, m2, ...transport] = v.messages;
  assert.ok(m1 && m2, 'vector has both handshake messages');

  const c1 = initiator.writeMessage(fromHex(m1.payload));
  assert.equal(toHex(c1), m1.ciphertext);
  assert.equal(c1.length, NOISE_IK_MSG1_OVERHEAD + m1.payload.length / 2);
  assert.equal(toHex(responder.readMessage(c1)), m1.payload);
  assert.equal(
    toHex(responder.remoteStaticKey!),
    toHex(keypairFromSecret(fromHex(v.init_static)).publicKey),
  );
  if (responderPskLater && rPsk) responder.setPsk(rPsk);

  const c2 = responder.writeMessage(fromHex(m2.payload));
  assert.equal(toHex(c2), m2.ciphertext);
  assert.equal(c2.length, NOISE_IK_MSG2_OVERHEAD + m2.payload.length / 2);
  assert.equal(toHex(initiator.readMessage(c2)), m2.payload);

  assert.ok(initiator.isComplete && responder.isComplete);
  assert.equal(toHex(initiator.handshakeHash), toHex(responder.handshakeHash));
  if (v.handshake_hash !== undefined) {
    assert.equal(toHex(initiator.handshakeHash), v.handshake_hash);
  }

  const ik = initiator.split();
  const rk = responder.split();
  assert.equal(toHex(ik.sendKey), toHex(rk.receiveKey));
  assert.equal(toHex(ik.receiveKey), toHex(rk.sendKey));
  assert.notEqual(toHex(ik.sendKey), toHex(ik.receiveKey));
  const iSend = new NoiseCipherState(ik.sendKey);
  const iRecv = new NoiseCipherState(ik.receiveKey);
  const rSend = new NoiseCipherState(rk.sendKey);
  const rRecv = new NoiseCipherState(rk.receiveKey);

  // After the handshake the vectors alternate initiator, responder, initiator, ...
  transport.forEach((m, i) => {
    const fromInitiator = i % 2 === 0;
    const send = fromInitiator ? iSend : rSend;
    const recv = fromInitiator ? rRecv : iRecv;
    const ct = send.encryptWithAd(EMPTY, fromHex(m.payload));
    assert.equal(toHex(ct), m.ciphertext, `transport message ${i + 2}`);
    assert.equal(toHex(recv.decryptWithAd(EMPTY, ct)), m.payload);
  });
  assert.ok(transport.length >= 2, 'vector covers both transport directions');
}

describe('Noise IK published vectors', () => {
  test('the vector file holds IK and IKpsk2 entries with this cipher suite', () => {
    assert.match(file.source, /cacophony/);
    const names = vectors.map((v) => v.name ?? v.protocol_name);
    assert.ok(names.includes(NOISE_IK_PROTOCOL));
    assert.ok(names.includes(NOISE_IKPSK2_PROTOCOL));
    assert.equal(vectors.length, file.vectors.length, 'no unrelated entries');
  });

  for (const [i, v] of vectors.entries()) {
    const name = v.name ?? v.protocol_name;
    test(`vector ${i}: ${name}`, () => runVector(v, false));
    if (name === NOISE_IKPSK2_PROTOCOL) {
      test(`vector ${i}: ${name} with the responder's psk set after message 1`, () =>
        runVector(v, true));
    }
  }
});

// ---------------------------------------------------------------------------------------------

interface Pair {
  initiator: NoiseIK;
  responder: NoiseIK;
  iStatic: Keypair;
  rStatic: Keypair;
}

function fixedKeys() {
  const k = (b: number) => keypairFromSecret(new Uint8Array(32).fill(b));
  return { iStatic: k(1), rStatic: k(2), iEph: k(3), rEph: k(4) };
}

/** Deterministic parties, so a control run tells whether a state was disturbed. */
function fixedPair(psk?: Uint8Array, prologue = utf8('roamlink test')): Pair {
  const { iStatic, rStatic, iEph, rEph } = fixedKeys();
  const iOpts: NoiseOptions = {
    prologue,
    staticKeypair: iStatic,
    remoteStaticKey: rStatic.publicKey,
    ephemeralKeypair: iEph,
    random: noRandom,
  };
  const rOpts: NoiseOptions = {
    prologue,
    staticKeypair: rStatic,
    ephemeralKeypair: rEph,
    random: noRandom,
  };
  if (psk) {
    iOpts.psk = psk;
    rOpts.psk = psk;
  }
  return {
    initiator: new NoiseIK('initiator', iOpts),
    responder: new NoiseIK('responder', rOpts),
    iStatic,
    rStatic,
  };
}

function finish(p: Pair, payload1 = utf8('hello'), payload2 = utf8('world')) {
  const m1 = p.initiator.writeMessage(payload1);
  assert.deepEqual(p.responder.readMessage(m1), payload1);
  const m2 = p.responder.writeMessage(payload2);
  assert.deepEqual(p.initiator.readMessage(m2), payload2);
  return {
    m1,
    m2,
    h: toHex(p.initiator.handshakeHash),
    i: p.initiator.split(),
    r: p.responder.split(),
  };
}

function flip(b: Uint8Array, at: number): Uint8Array {
  const c = b.slice();
  c[at]! ^= 0x01;
  return c;
}

const LOW_ORDER_POINTS = [
  '0000000000000000000000000000000000000000000000000000000000000000',
  '0100000000000000000000000000000000000000000000000000000000000000',
  'e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800',
  '5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157',
  'ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f',
];

describe('Noise IK behaviour', () => {
  test('keypairFromSecret matches RFC 7748 §6.1', () => {
    const alice = keypairFromSecret(
      fromHex('77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a'),
    );
    assert.equal(
      toHex(alice.publicKey),
      '8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a',
    );
    assert.throws(() => keypairFromSecret(new Uint8Array(31)), {
      code: 'ROAMLINK_ERR_INVALID_ARGUMENT',
    });
  });

  for (const withPsk of [false, true]) {
    test(`round trip with random keys (${withPsk ? 'IKpsk2' : 'IK'})`, () => {
      const iStatic = generateKeypair(random);
      const rStatic = generateKeypair(random);
      const iSecretBefore = toHex(iStatic.secretKey);
      const psk = withPsk ? random(32) : undefined;
      const iOpts: NoiseOptions = {
        staticKeypair: iStatic,
        remoteStaticKey: rStatic.publicKey,
        random,
      };
      const rOpts: NoiseOptions = { staticKeypair: rStatic, random };
      if (psk) {
        iOpts.psk = psk;
        rOpts.psk = psk;
      }
      const initiator = new NoiseIK('initiator', iOpts);
      const responder = new NoiseIK('responder', rOpts);
      assert.equal(initiator.protocolName, withPsk ? NOISE_IKPSK2_PROTOCOL : NOISE_IK_PROTOCOL);
      assert.equal(responder.remoteStaticKey, undefined);

      const p1 = random(100);
      const m1 = initiator.writeMessage(p1);
      assert.equal(m1.length, 32 + 48 + 100 + 16);
      assert.deepEqual(responder.readMessage(m1), p1);
      assert.deepEqual(responder.remoteStaticKey, iStatic.publicKey);
      assert.deepEqual(responder.remoteEphemeralKey, m1.subarray(0, 32));

      const m2 = responder.writeMessage(EMPTY);
      assert.equal(m2.length, 32 + 16);
      assert.deepEqual(initiator.readMessage(m2), EMPTY);
      assert.deepEqual(initiator.remoteEphemeralKey, m2.subarray(0, 32));
      assert.deepEqual(initiator.remoteStaticKey, rStatic.publicKey);
      assert.deepEqual(initiator.handshakeHash, responder.handshakeHash);
      assert.equal(initiator.handshakeHash.length, 32);

      const ik = initiator.split();
      const rk = responder.split();
      assert.deepEqual(ik.sendKey, rk.receiveKey);
      assert.deepEqual(ik.receiveKey, rk.sendKey);
      const a = new NoiseCipherState(ik.sendKey);
      const b = new NoiseCipherState(rk.receiveKey);
      const c = new NoiseCipherState(rk.sendKey);
      const d = new NoiseCipherState(ik.receiveKey);
      for (let i = 0; i < 3; i++) {
        const msg = random(i * 7);
        const ad = random(i);
        assert.deepEqual(b.decryptWithAd(ad, a.encryptWithAd(ad, msg)), msg);
        assert.deepEqual(d.decryptWithAd(ad, c.encryptWithAd(ad, msg)), msg);
      }
      assert.equal(a.nonce, 3);
      // The caller's key material is copied, never wiped in place.
      assert.equal(toHex(iStatic.secretKey), iSecretBefore);
    });
  }

  test('two handshakes with fresh ephemerals give different keys', () => {
    const rStatic = generateKeypair(random);
    const run = () => {
      const i = new NoiseIK('initiator', {
        staticKeypair: generateKeypair(random),
        remoteStaticKey: rStatic.publicKey,
        random,
      });
      const r = new NoiseIK('responder', { staticKeypair: rStatic, random });
      r.readMessage(i.writeMessage(EMPTY));
      i.readMessage(r.writeMessage(EMPTY));
      return toHex(i.split().sendKey);
    };
    assert.notEqual(run(), run());
  });

  for (const withPsk of [false, true]) {
    const label = withPsk ? 'IKpsk2' : 'IK';
    const psk = withPsk ? new Uint8Array(32).fill(9) : undefined;

    test(`${label}: corrupted message 1 → AUTH_FAILED, responder state unchanged`, () => {
      const control = finish(fixedPair(psk));
      const p = fixedPair(psk);
      const m1 = p.initiator.writeMessage(utf8('hello'));
      const hBefore = toHex(p.responder.handshakeHash);
      // e (0), encrypted s (40), s tag (70), payload (85), payload tag (last byte).
      for (const at of [0, 40, 70, 85, m1.length - 1]) {
        assert.throws(() => p.responder.readMessage(flip(m1, at)), {
          code: 'ROAMLINK_ERR_AUTH_FAILED',
        });
        assert.equal(toHex(p.responder.handshakeHash), hBefore);
        assert.equal(p.responder.remoteStaticKey, undefined);
        assert.equal(p.responder.remoteEphemeralKey, undefined);
        assert.equal(p.responder.isComplete, false);
      }
      // The responder must not be able to write yet either.
      assert.throws(() => p.responder.writeMessage(EMPTY), {
        code: 'ROAMLINK_ERR_HANDSHAKE_STATE',
      });
      // The genuine message still works, and the run matches an undisturbed one.
      assert.deepEqual(p.responder.readMessage(m1), utf8('hello'));
      const m2 = p.responder.writeMessage(utf8('world'));
      assert.deepEqual(m2, control.m2);
      p.initiator.readMessage(m2);
      assert.equal(toHex(p.initiator.handshakeHash), control.h);
      assert.deepEqual(p.initiator.split(), control.i);
      assert.deepEqual(p.responder.split(), control.r);
    });

    test(`${label}: forged message 2 before the real one does not kill the initiator`, () => {
      const control = finish(fixedPair(psk));
      const p = fixedPair(psk);
      const m1 = p.initiator.writeMessage(utf8('hello'));
      p.responder.readMessage(m1);
      const m2 = p.responder.writeMessage(utf8('world'));
      const hBefore = toHex(p.initiator.handshakeHash);
      const attacker = generateKeypair(random);
      const forgeries = [
        flip(m2, 3), // corrupted e
        flip(m2, 33), // corrupted ciphertext
        flip(m2, m2.length - 1), // corrupted tag
        new Uint8Array([...attacker.publicKey, ...random(m2.length - 32)]), // wholesale forgery
      ];
      for (const forged of forgeries) {
        assert.throws(() => p.initiator.readMessage(forged), { code: 'ROAMLINK_ERR_AUTH_FAILED' });
        assert.equal(toHex(p.initiator.handshakeHash), hBefore);
        assert.equal(p.initiator.isComplete, false);
        assert.equal(p.initiator.remoteEphemeralKey, undefined);
        assert.throws(() => p.initiator.split(), { code: 'ROAMLINK_ERR_HANDSHAKE_STATE' });
      }
      // Too short: MALFORMED, also without side effects.
      assert.throws(() => p.initiator.readMessage(m2.subarray(0, 47)), {
        code: 'ROAMLINK_ERR_MALFORMED',
      });
      assert.equal(toHex(p.initiator.handshakeHash), hBefore);

      assert.deepEqual(p.initiator.readMessage(m2), utf8('world'));
      assert.equal(toHex(p.initiator.handshakeHash), control.h);
      assert.deepEqual(p.initiator.split(), control.i);
    });
  }

  test('messages of the wrong length → MALFORMED', () => {
    const p = fixedPair();
    const m1 = p.initiator.writeMessage(EMPTY);
    assert.equal(m1.length, NOISE_IK_MSG1_OVERHEAD);
    assert.throws(() => p.responder.readMessage(m1.subarray(0, 95)), {
      code: 'ROAMLINK_ERR_MALFORMED',
    });
    assert.throws(() => p.responder.readMessage(EMPTY), { code: 'ROAMLINK_ERR_MALFORMED' });
    assert.throws(() => p.responder.readMessage(new Uint8Array(65536)), {
      code: 'ROAMLINK_ERR_MALFORMED',
    });
    assert.equal(p.responder.remoteStaticKey, undefined);
    assert.deepEqual(p.responder.readMessage(m1), EMPTY);
    const tooBig = new Uint8Array(65535 - NOISE_IK_MSG2_OVERHEAD + 1);
    assert.throws(() => p.responder.writeMessage(tooBig), {
      code: 'ROAMLINK_ERR_INVALID_ARGUMENT',
    });
    const m2 = p.responder.writeMessage(tooBig.subarray(1));
    assert.equal(m2.length, 65535);
    assert.equal(p.initiator.readMessage(m2).length, 65535 - NOISE_IK_MSG2_OVERHEAD);
  });

  test('initiator with the wrong responder static key → AUTH_FAILED at the responder', () => {
    const { iStatic, rStatic } = fixedKeys();
    const wrong = generateKeypair(random);
    const initiator = new NoiseIK('initiator', {
      staticKeypair: iStatic,
      remoteStaticKey: wrong.publicKey,
      random,
    });
    const responder = new NoiseIK('responder', { staticKeypair: rStatic, random });
    assert.throws(() => responder.readMessage(initiator.writeMessage(utf8('x'))), {
      code: 'ROAMLINK_ERR_AUTH_FAILED',
    });
    assert.equal(responder.remoteStaticKey, undefined);
  });

  test('prologue mismatch → AUTH_FAILED', () => {
    const a = fixedPair(undefined, utf8('one'));
    const b = fixedPair(undefined, utf8('two'));
    assert.throws(() => b.responder.readMessage(a.initiator.writeMessage(EMPTY)), {
      code: 'ROAMLINK_ERR_AUTH_FAILED',
    });
  });

  test('out-of-order calls → HANDSHAKE_STATE', () => {
    const p = fixedPair();
    const code = { code: 'ROAMLINK_ERR_HANDSHAKE_STATE' };
    assert.throws(() => p.initiator.readMessage(new Uint8Array(48)), code);
    assert.throws(() => p.responder.writeMessage(EMPTY), code);
    assert.throws(() => p.initiator.split(), code);
    assert.throws(() => p.responder.split(), code);
    const m1 = p.initiator.writeMessage(EMPTY);
    assert.throws(() => p.initiator.writeMessage(EMPTY), code);
    p.responder.readMessage(m1);
    assert.throws(() => p.responder.readMessage(m1), code);
    assert.throws(() => p.responder.split(), code);
    const m2 = p.responder.writeMessage(EMPTY);
    assert.throws(() => p.responder.writeMessage(EMPTY), code);
    p.initiator.readMessage(m2);
    assert.throws(() => p.initiator.readMessage(m2), code);
    assert.throws(() => p.initiator.writeMessage(EMPTY), code);
    assert.throws(() => p.responder.readMessage(m1), code);
    p.initiator.split();
    assert.throws(() => p.initiator.split(), code);
    assert.equal(p.initiator.handshakeHash.length, 32);
    assert.throws(() => p.initiator.setPsk(new Uint8Array(32)), code);
  });

  test('bad construction arguments → INVALID_ARGUMENT', () => {
    const { iStatic, rStatic } = fixedKeys();
    const code = { code: 'ROAMLINK_ERR_INVALID_ARGUMENT' };
    assert.throws(() => new NoiseIK('initiator', { staticKeypair: iStatic, random }), code);
    assert.throws(
      () =>
        new NoiseIK('initiator', {
          staticKeypair: iStatic,
          remoteStaticKey: new Uint8Array(31),
          random,
        }),
      code,
    );
    assert.throws(
      () =>
        new NoiseIK('responder', {
          staticKeypair: rStatic,
          remoteStaticKey: iStatic.publicKey,
          random,
        }),
      code,
    );
    assert.throws(
      () => new NoiseIK('responder', { staticKeypair: rStatic, psk: new Uint8Array(16), random }),
      code,
    );
    const r = new NoiseIK('responder', { staticKeypair: rStatic, usePsk: true, random });
    assert.throws(() => r.setPsk(new Uint8Array(33)), code);
  });

  test('psk via setPsk after message 1 equals psk up front', () => {
    const psk = new Uint8Array(32).fill(0x5a);
    const upFront = finish(fixedPair(psk));

    const { iStatic, rStatic, iEph, rEph } = fixedKeys();
    const initiator = new NoiseIK('initiator', {
      prologue: utf8('roamlink test'),
      staticKeypair: iStatic,
      remoteStaticKey: rStatic.publicKey,
      ephemeralKeypair: iEph,
      psk,
      random: noRandom,
    });
    const responder = new NoiseIK('responder', {
      prologue: utf8('roamlink test'),
      staticKeypair: rStatic,
      ephemeralKeypair: rEph,
      usePsk: true,
      random: noRandom,
    });
    assert.equal(responder.protocolName, NOISE_IKPSK2_PROTOCOL);
    responder.readMessage(initiator.writeMessage(utf8('hello')));
    // Until the psk is known the responder cannot answer.
    assert.throws(() => responder.writeMessage(utf8('world')), {
      code: 'ROAMLINK_ERR_HANDSHAKE_STATE',
    });
    // The responder looks the psk up by the initiator's static key.
    assert.deepEqual(responder.remoteStaticKey, iStatic.publicKey);
    responder.setPsk(psk);
    const m2 = responder.writeMessage(utf8('world'));
    assert.deepEqual(m2, upFront.m2);
    initiator.readMessage(m2);
    assert.equal(toHex(responder.handshakeHash), upFront.h);
    assert.deepEqual(initiator.split(), upFront.i);
    assert.deepEqual(responder.split(), upFront.r);
    // And the psk really matters: IK with the same keys gives other keys.
    assert.notDeepEqual(finish(fixedPair()).i, upFront.i);
  });

  test('psk mismatch → AUTH_FAILED at the initiator, which can still take the right message', () => {
    const good = fixedPair(new Uint8Array(32).fill(1));
    const { rStatic, rEph } = fixedKeys();
    const wrongResponder = new NoiseIK('responder', {
      prologue: utf8('roamlink test'),
      staticKeypair: rStatic,
      ephemeralKeypair: rEph,
      psk: new Uint8Array(32).fill(2),
      random: noRandom,
    });
    const m1 = good.initiator.writeMessage(utf8('hello'));
    // The psk only enters at message 2, so message 1 still reads.
    wrongResponder.readMessage(m1);
    const bad = wrongResponder.writeMessage(utf8('world'));
    assert.throws(() => good.initiator.readMessage(bad), { code: 'ROAMLINK_ERR_AUTH_FAILED' });
    good.responder.readMessage(m1);
    assert.deepEqual(
      good.initiator.readMessage(good.responder.writeMessage(utf8('ok'))),
      utf8('ok'),
    );
  });

  test('IK initiator against an IKpsk2 responder fails (protocol names differ)', () => {
    const ik = fixedPair();
    const psk = fixedPair(new Uint8Array(32).fill(1));
    assert.throws(() => psk.responder.readMessage(ik.initiator.writeMessage(EMPTY)), {
      code: 'ROAMLINK_ERR_AUTH_FAILED',
    });
  });

  test('setPsk on a plain IK handshake → HANDSHAKE_STATE', () => {
    assert.throws(() => fixedPair().responder.setPsk(new Uint8Array(32)), {
      code: 'ROAMLINK_ERR_HANDSHAKE_STATE',
    });
  });

  for (const point of LOW_ORDER_POINTS) {
    test(`low-order public key ${point.slice(0, 8)}… → AUTH_FAILED`, () => {
      const { iStatic } = fixedKeys();
      const low = fromHex(point);
      // As the initiator's configured rs.
      const initiator = new NoiseIK('initiator', {
        staticKeypair: iStatic,
        remoteStaticKey: low,
        random,
      });
      assert.throws(() => initiator.writeMessage(EMPTY), { code: 'ROAMLINK_ERR_AUTH_FAILED' });
      assert.equal(initiator.isComplete, false);
      // As the e in message 1, with the responder's state left intact.
      const p = fixedPair();
      const m1 = p.initiator.writeMessage(EMPTY);
      const evil = m1.slice();
      evil.set(low, 0);
      assert.throws(() => p.responder.readMessage(evil), { code: 'ROAMLINK_ERR_AUTH_FAILED' });
      assert.equal(p.responder.remoteEphemeralKey, undefined);
      p.responder.readMessage(m1);
      // As the e in message 2.
      const m2 = p.responder.writeMessage(EMPTY);
      const evil2 = m2.slice();
      evil2.set(low, 0);
      assert.throws(() => p.initiator.readMessage(evil2), { code: 'ROAMLINK_ERR_AUTH_FAILED' });
      p.initiator.readMessage(m2);
      assert.ok(p.initiator.isComplete);
    });
  }
});

describe('NoiseCipherState', () => {
  /** An independent ChaCha20-Poly1305 with the §12.3 nonce layout, from node:crypto. */
  function reference(key: Uint8Array, n: bigint, ad: Uint8Array, pt: Uint8Array): string {
    const nonce = Buffer.alloc(12);
    nonce.writeBigUInt64LE(n, 4);
    const c = createCipheriv('chacha20-poly1305', key, nonce, { authTagLength: 16 });
    c.setAAD(ad, { plaintextLength: pt.length });
    return Buffer.concat([c.update(pt), c.final(), c.getAuthTag()]).toString('hex');
  }

  test('nonce layout is 4 zero bytes || little-endian 64-bit counter', () => {
    const key = random(32);
    const cs = new NoiseCipherState(key);
    const ad = utf8('ad');
    const pt = utf8('transport');
    assert.equal(toHex(cs.encryptWithAd(ad, pt)), reference(key, 0n, ad, pt));
    assert.equal(toHex(cs.encryptWithAd(ad, pt)), reference(key, 1n, ad, pt));
    cs.nonce = 0x1_2345_6789_abcd;
    assert.equal(toHex(cs.encryptWithAd(ad, pt)), reference(key, 0x1_2345_6789_abcdn, ad, pt));
    assert.equal(cs.nonce, 0x1_2345_6789_abce);
  });

  test('a failed decrypt → AUTH_FAILED and leaves the nonce alone', () => {
    const key = random(32);
    const tx = new NoiseCipherState(key);
    const rx = new NoiseCipherState(key);
    const ct = tx.encryptWithAd(EMPTY, utf8('payload'));
    assert.throws(() => rx.decryptWithAd(EMPTY, flip(ct, 2)), { code: 'ROAMLINK_ERR_AUTH_FAILED' });
    assert.throws(() => rx.decryptWithAd(utf8('other ad'), ct), {
      code: 'ROAMLINK_ERR_AUTH_FAILED',
    });
    assert.throws(() => rx.decryptWithAd(EMPTY, ct.subarray(0, 15)), {
      code: 'ROAMLINK_ERR_MALFORMED',
    });
    assert.equal(rx.nonce, 0);
    assert.deepEqual(rx.decryptWithAd(EMPTY, ct), utf8('payload'));
    assert.equal(rx.nonce, 1);
  });

  test('exhausted or destroyed state refuses to work', () => {
    const cs = new NoiseCipherState(random(32));
    cs.nonce = Number.MAX_SAFE_INTEGER;
    assert.throws(() => cs.encryptWithAd(EMPTY, EMPTY), { code: 'ROAMLINK_ERR_SA_EXPIRED' });
    const d = new NoiseCipherState(random(32));
    d.destroy();
    assert.throws(() => d.encryptWithAd(EMPTY, EMPTY), { code: 'ROAMLINK_ERR_SA_EXPIRED' });
    assert.throws(() => new NoiseCipherState(new Uint8Array(16)), {
      code: 'ROAMLINK_ERR_INVALID_ARGUMENT',
    });
  });
});
