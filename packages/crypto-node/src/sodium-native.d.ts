/**
 * Minimal typings for the parts of sodium-native (libsodium bindings, which ship no types) that
 * this package uses. Signatures follow sodium-native's API, which mirrors libsodium's C API with
 * output buffers first.
 */
declare module 'sodium-native' {
  interface SodiumNative {
    /**
     * ChaCha20-Poly1305 IETF (RFC 8439) combined mode: writes ciphertext || tag into `c`, which must
     * be `m.length + 16` bytes and may start at the same byte as `m`. Returns the bytes written.
     */
    crypto_aead_chacha20poly1305_ietf_encrypt(
      c: Uint8Array,
      m: Uint8Array,
      ad: Uint8Array | null,
      nsec: null,
      npub: Uint8Array,
      k: Uint8Array,
    ): number;
    /**
     * Verifies the tag at the end of `c` and decrypts into `m` (`c.length - 16` bytes, may start
     * at the same byte as `c`). Throws when the tag does not verify.
     */
    crypto_aead_chacha20poly1305_ietf_decrypt(
      m: Uint8Array,
      nsec: null,
      c: Uint8Array,
      ad: Uint8Array | null,
      npub: Uint8Array,
      k: Uint8Array,
    ): number;
  }
  const sodium: SodiumNative;
  export default sodium;
}
