/**
 * node:crypto's X25519 (nodeX25519) against RFC 7748 §6.1, against noble for random keys, on
 * low-order keys, and in the Noise IK handshake through the published (cacophony) vectors; plus
 * the selection that puts it in the composite provider.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  fromHex,
  keypairFromSecret,
  NoiseIK,
  type NoiseOptions,
  nobleX25519,
  toHex,
} from '@roamlink/core';
import fc from 'fast-check';
import { loadNoiseVectors } from '../../core/test/noise-vectors.ts';
import { nodeX25519, selectProvider, selectX25519 } from '../src/index.ts';

test('RFC 7748 §6.1: public keys and the shared secret', () => {
  const alice = fromHex('77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a');
  const bob = fromHex('5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb');
  assert.equal(
    toHex(nodeX25519.publicKey(alice)),
    '8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a',
  );
  const bobPub = nodeX25519.publicKey(bob);
  assert.equal(toHex(bobPub), 'de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f');
  const shared = '4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742';
  assert.equal(toHex(nodeX25519.sharedSecret(alice, bobPub)), shared);
  assert.equal(toHex(nodeX25519.sharedSecret(bob, nodeX25519.publicKey(alice))), shared);
});

test('the same bytes as noble for any keys', () => {
  fc.assert(
    fc.property(
      fc.uint8Array({ minLength: 32, maxLength: 32 }),
      fc.uint8Array({ minLength: 32, maxLength: 32 }),
      (a, b) => {
        const pa = nodeX25519.publicKey(a);
        assert.deepEqual(pa, nobleX25519.publicKey(a));
        const pb = nobleX25519.publicKey(b);
        assert.deepEqual(nodeX25519.sharedSecret(a, pb), nobleX25519.sharedSecret(a, pb));
      },
    ),
    { numRuns: 50 },
  );
});

test('a low-order public key is refused (RFC 7748 §6.1: the all-zero result)', () => {
  const sk = fromHex('77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a');
  for (const bad of [new Uint8Array(32), Uint8Array.of(1, ...new Uint8Array(31))]) {
    assert.throws(() => nodeX25519.sharedSecret(sk, bad));
  }
  assert.throws(() => nodeX25519.sharedSecret(sk, new Uint8Array(31)), RangeError);
});

test('Noise IK and IKpsk2 published vectors, with node:crypto doing every DH on both sides', () => {
  const file = loadNoiseVectors();
  const kp = (hex: string) => keypairFromSecret(fromHex(hex), nodeX25519);
  const noRandom = (): Uint8Array => {
    throw new Error('vectors fix every key');
  };
  assert.ok(file.vectors.length >= 2);
  for (const v of file.vectors) {
    const psk = v.init_psk ?? v.init_psks?.[0];
    const rPsk = v.resp_psk ?? v.resp_psks?.[0];
    const iOpts: NoiseOptions = {
      prologue: fromHex(v.init_prologue),
      staticKeypair: kp(v.init_static),
      remoteStaticKey: fromHex(v.init_remote_static),
      ephemeralKeypair: kp(v.init_ephemeral),
      random: noRandom,
      x25519: nodeX25519,
      ...(psk ? { psk: fromHex(psk) } : {}),
    };
    const rOpts: NoiseOptions = {
      prologue: fromHex(v.resp_prologue),
      staticKeypair: kp(v.resp_static),
      ephemeralKeypair: kp(v.resp_ephemeral),
      random: noRandom,
      x25519: nodeX25519,
      ...(rPsk ? { psk: fromHex(rPsk) } : {}),
    };
    const initiator = new NoiseIK('initiator', iOpts);
    const responder = new NoiseIK('responder', rOpts);
    const [m1, m2] = v.messages;
    const c1 = initiator.writeMessage(fromHex(m1!.payload));
    assert.equal(toHex(c1), m1!.ciphertext, v.name ?? v.protocol_name);
    assert.equal(toHex(responder.readMessage(c1)), m1!.payload);
    const c2 = responder.writeMessage(fromHex(m2!.payload));
    assert.equal(toHex(c2), m2!.ciphertext);
    assert.equal(toHex(initiator.readMessage(c2)), m2!.payload);
    if (v.handshake_hash) assert.equal(toHex(initiator.handshakeHash), v.handshake_hash);
  }
});

test('selection: the composite provider does its handshakes with the fastest X25519 (here OpenSSL)', () => {
  const { provider } = selectProvider({ budgetMs: 10 });
  assert.match(provider.name, /x25519=node\)$/);
  assert.equal(provider.x25519, nodeX25519);
  // A backend that gets the RFC 7748 vector wrong is never chosen, however fast.
  const wrong = {
    name: 'wrong',
    suites: [],
    aead: () => {
      throw new Error('no AEAD');
    },
    x25519: { publicKey: () => new Uint8Array(32), sharedSecret: () => new Uint8Array(32) },
  };
  assert.equal(selectX25519([wrong]).name, 'noble');
});
