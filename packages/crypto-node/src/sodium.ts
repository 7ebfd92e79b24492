/**
 * `CryptoProvider` over libsodium (sodium-native's prebuilt binding). libsodium implements the
 * IETF ChaCha20-Poly1305 of RFC 8439 §2.8, the AEAD that RFC 7634 uses for ESP. Its AES-256-GCM
 * is not exposed by sodium-native, so this provider offers ChaCha20-Poly1305 only.
 */
import {
  AEAD_TAG_BYTES,
  type Aead,
  type CryptoProvider,
  checkAeadArgs,
  copyAeadKey,
  requireSuite,
  Suite,
} from '@roamlink/core';
import sodium from 'sodium-native';

function chachaAead(key: Uint8Array): Aead {
  return {
    suite: Suite.CHACHA20_POLY1305,
    seal(nonce, aad, buf, start, end) {
      checkAeadArgs(nonce, aad, buf, start, end);
      // libsodium encrypts in place when the output and input start at the same byte.
      sodium.crypto_aead_chacha20poly1305_ietf_encrypt(
        buf.subarray(start, end + AEAD_TAG_BYTES),
        buf.subarray(start, end),
        aad,
        null,
        nonce,
        key,
      );
    },
    open(nonce, aad, buf, start, end) {
      checkAeadArgs(nonce, aad, buf, start, end);
      try {
        // libsodium checks the tag before decrypting; on failure it zeroes the output (here the
        // ciphertext itself), which the contract allows: the range is unspecified after a failure.
        sodium.crypto_aead_chacha20poly1305_ietf_decrypt(
          buf.subarray(start, end),
          null,
          buf.subarray(start, end + AEAD_TAG_BYTES),
          aad,
          nonce,
          key,
        );
        return true;
      } catch {
        return false;
      }
    },
  };
}

export const sodiumProvider: CryptoProvider = {
  name: 'sodium',
  suites: [Suite.CHACHA20_POLY1305],
  aead(suite: Suite, key: Uint8Array): Aead {
    requireSuite(sodiumProvider, suite);
    return chachaAead(copyAeadKey(key));
  },
};
