/**
 * `CryptoProvider` over node:crypto (OpenSSL): AES-256-GCM (NIST SP 800-38D; RFC 4106 for ESP)
 * and ChaCha20-Poly1305 (RFC 8439 §2.8; RFC 7634 for ESP), each with a 16-byte tag. Only the
 * suites this Node build's OpenSSL offers are listed.
 *
 * node:crypto has no one-shot AEAD and no output-buffer API: every call builds a cipher object
 * and `update` returns a fresh buffer. `seal` copies it back into the caller's buffer; `openOut`
 * hands it over instead (the receive path takes it), `open` copies it back.
 */
import {
  type CipherKey,
  createCipheriv,
  createDecipheriv,
  createPrivateKey,
  createPublicKey,
  createSecretKey,
  diffieHellman,
  getCiphers,
  type KeyObject,
} from 'node:crypto';
import {
  AEAD_TAG_BYTES,
  type Aead,
  type CryptoProvider,
  checkAeadArgs,
  copyAeadKey,
  requireSuite,
  Suite,
  type X25519,
} from '@roamlink/core';

type Algorithm = 'aes-256-gcm' | 'chacha20-poly1305';

const ALGORITHMS: Record<Suite, Algorithm> = {
  [Suite.CHACHA20_POLY1305]: 'chacha20-poly1305',
  [Suite.AES_256_GCM]: 'aes-256-gcm',
};

const OPTIONS = { authTagLength: AEAD_TAG_BYTES } as const;

function nodeAead(suite: Suite, key: CipherKey): Aead {
  const algorithm = ALGORITHMS[suite];
  return {
    suite,
    seal(nonce, aad, buf, start, end) {
      checkAeadArgs(nonce, aad, buf, start, end);
      const cipher =
        algorithm === 'aes-256-gcm'
          ? createCipheriv(algorithm, key, nonce, OPTIONS)
          : createCipheriv(algorithm, key, nonce, OPTIONS);
      if (aad.length > 0) cipher.setAAD(aad);
      const ciphertext = cipher.update(buf.subarray(start, end));
      cipher.final(); // stream ciphers: nothing is buffered, `final` only computes the tag
      buf.set(ciphertext, start);
      buf.set(cipher.getAuthTag(), end);
    },
    open(nonce, aad, buf, start, end) {
      const plaintext = decrypt(nonce, aad, buf, start, end);
      if (!plaintext) return false;
      buf.set(plaintext, start);
      return true;
    },
    openOut(nonce, aad, buf, start, end) {
      const plaintext = decrypt(nonce, aad, buf, start, end);
      // A plain Uint8Array view: a Buffer's slice() would not copy, unlike every other payload's.
      return plaintext && new Uint8Array(plaintext.buffer, plaintext.byteOffset, plaintext.length);
    },
  };

  /** The plaintext in OpenSSL's own output buffer, or undefined if the tag does not verify. */
  function decrypt(
    nonce: Uint8Array,
    aad: Uint8Array,
    buf: Uint8Array,
    start: number,
    end: number,
  ): Buffer | undefined {
    checkAeadArgs(nonce, aad, buf, start, end);
    const decipher =
      algorithm === 'aes-256-gcm'
        ? createDecipheriv(algorithm, key, nonce, OPTIONS)
        : createDecipheriv(algorithm, key, nonce, OPTIONS);
    decipher.setAuthTag(buf.subarray(end, end + AEAD_TAG_BYTES));
    if (aad.length > 0) decipher.setAAD(aad);
    // OpenSSL releases plaintext from `update` before `final` has checked the tag, so it stays in
    // its own buffer, which nobody sees (and which is wiped) unless the tag verifies.
    const plaintext = decipher.update(buf.subarray(start, end));
    try {
      decipher.final();
    } catch {
      plaintext.fill(0);
      return undefined;
    }
    return plaintext;
  }
}

// RFC 8410 DER wrappings of raw X25519 keys: node:crypto takes keys only as KeyObjects.
const PKCS8_X25519 = Buffer.from('302e020100300506032b656e04220420', 'hex');
const SPKI_X25519 = Buffer.from('302a300506032b656e032100', 'hex');

function privateKeyOf(secretKey: Uint8Array): KeyObject {
  if (secretKey.length !== 32) throw new RangeError('X25519 secret key must be 32 bytes');
  return createPrivateKey({
    key: Buffer.concat([PKCS8_X25519, secretKey]),
    format: 'der',
    type: 'pkcs8',
  });
}

/**
 * X25519 through OpenSSL (RFC 7748; the scalar is clamped as §5 says, like noble), ~15x faster
 * than pure JS. OpenSSL refuses a low-order peer key (its all-zero result) by throwing.
 */
export const nodeX25519: X25519 = {
  publicKey(secretKey) {
    const spki = createPublicKey(privateKeyOf(secretKey)).export({ format: 'der', type: 'spki' });
    return new Uint8Array(spki.subarray(SPKI_X25519.length));
  },
  sharedSecret(secretKey, publicKey) {
    if (publicKey.length !== 32) throw new RangeError('X25519 public key must be 32 bytes');
    const pub = createPublicKey({
      key: Buffer.concat([SPKI_X25519, publicKey]),
      format: 'der',
      type: 'spki',
    });
    return new Uint8Array(diffieHellman({ privateKey: privateKeyOf(secretKey), publicKey: pub }));
  },
};

const available = new Set(getCiphers());

export const nodeCryptoProvider: CryptoProvider = {
  name: 'node',
  suites: [Suite.CHACHA20_POLY1305, Suite.AES_256_GCM].filter((s) => available.has(ALGORITHMS[s])),
  x25519: nodeX25519,
  // OpenSSL picks its AES-NI/ARMv8 code at load time when the CPU has the instructions.
  cpuAes: true,
  aead(suite: Suite, key: Uint8Array): Aead {
    requireSuite(nodeCryptoProvider, suite);
    // Passing a KeyObject instead of raw bytes makes each createCipheriv several times cheaper
    // (measured: about 4x for 1400-byte packets), since the key is not re-imported per packet.
    return nodeAead(suite, createSecretKey(copyAeadKey(key)));
  },
};
