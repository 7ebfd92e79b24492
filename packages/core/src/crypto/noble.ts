/**
 * The portable `CryptoProvider`: pure JavaScript from @noble/ciphers, so it runs in every runtime
 * roamlink targets. Native providers (@roamlink/crypto-node) are faster where they exist; the
 * shared provider test suite proves they all produce the same bytes.
 *
 * - ChaCha20-Poly1305: RFC 8439 §2.8 (the AEAD that RFC 7634 uses for ESP).
 * - AES-256-GCM: NIST SP 800-38D with a 96-bit nonce and 16-byte tag (RFC 4106 for ESP).
 *
 * noble's cipher objects are single-use (one `encrypt` per key + nonce), so each call builds a
 * fresh one; that costs a few small allocations but no key schedule for ChaCha20. noble's GCM
 * expands the AES key on every call, which is inherent to its public API.
 */
import { gcm } from '@noble/ciphers/aes.js';
import { chacha20poly1305 } from '@noble/ciphers/chacha.js';
import { AEAD_TAG_BYTES, type Aead, type CryptoProvider, Suite } from './aead.ts';
import { checkAeadArgs, copyAeadKey, requireSuite } from './aead-guard.ts';

function chachaAead(key: Uint8Array): Aead {
  return {
    suite: Suite.CHACHA20_POLY1305,
    seal(nonce, aad, buf, start, end) {
      checkAeadArgs(nonce, aad, buf, start, end);
      // noble's ChaCha20-Poly1305 accepts an output view. It copies the input into the output and
      // then XORs in place, so the output may start at the same byte as the input: ciphertext and
      // tag land in `buf` without a temporary.
      chacha20poly1305(key, nonce, aad).encrypt(
        buf.subarray(start, end),
        buf.subarray(start, end + AEAD_TAG_BYTES),
      );
    },
    open(nonce, aad, buf, start, end) {
      checkAeadArgs(nonce, aad, buf, start, end);
      try {
        // The tag is checked before anything is written to the output view, so a forgery leaves
        // `buf` as it was.
        chacha20poly1305(key, nonce, aad).decrypt(
          buf.subarray(start, end + AEAD_TAG_BYTES),
          buf.subarray(start, end),
        );
        return true;
      } catch {
        return false;
      }
    },
  };
}

function gcmAead(key: Uint8Array): Aead {
  return {
    suite: Suite.AES_256_GCM,
    seal(nonce, aad, buf, start, end) {
      checkAeadArgs(nonce, aad, buf, start, end);
      // noble's GCM takes no output buffer: it returns a fresh ciphertext || tag to copy back.
      buf.set(gcm(key, nonce, aad).encrypt(buf.subarray(start, end)), start);
    },
    open(nonce, aad, buf, start, end) {
      checkAeadArgs(nonce, aad, buf, start, end);
      let plaintext: Uint8Array;
      try {
        plaintext = gcm(key, nonce, aad).decrypt(buf.subarray(start, end + AEAD_TAG_BYTES));
      } catch {
        return false;
      }
      buf.set(plaintext, start);
      return true;
    },
  };
}

export const nobleProvider: CryptoProvider = {
  name: 'noble',
  suites: [Suite.CHACHA20_POLY1305, Suite.AES_256_GCM],
  aead(suite: Suite, key: Uint8Array): Aead {
    requireSuite(nobleProvider, suite);
    const k = copyAeadKey(key);
    return suite === Suite.AES_256_GCM ? gcmAead(k) : chachaAead(k);
  },
};
