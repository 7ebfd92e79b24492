/**
 * The crypto provider contract: one small synchronous interface that every backend implements
 * (noble in the core; libsodium and node:crypto in @roamlink/crypto-node). One shared test suite
 * proves that every provider produces identical bytes.
 *
 * Both suites are 256-bit-key AEADs with a 96-bit nonce and a 128-bit tag, which is what ESP
 * needs: RFC 4106 (AES-GCM) and RFC 7634 (ChaCha20-Poly1305) build the nonce as salt(4) || IV(8).
 */

/** Suite identifiers, also the on-the-wire codes in handshake payloads (docs/PROTOCOL.md). */
export const Suite = {
  /** RFC 7634: ChaCha20-Poly1305 for ESP (RFC 8439 AEAD). */
  CHACHA20_POLY1305: 1,
  /** RFC 4106: AES-GCM for ESP, 256-bit key, 16-byte ICV. */
  AES_256_GCM: 2,
} as const;
export type Suite = (typeof Suite)[keyof typeof Suite];

export const SUITE_NAMES: Record<Suite, string> = {
  [Suite.CHACHA20_POLY1305]: 'chacha20-poly1305',
  [Suite.AES_256_GCM]: 'aes-256-gcm',
};

export const AEAD_KEY_BYTES = 32;
export const AEAD_NONCE_BYTES = 12;
export const AEAD_TAG_BYTES = 16;

/**
 * A keyed AEAD. Operations work in place on a caller-owned buffer so that the ESP hot path
 * allocates nothing but the output packet.
 */
export interface Aead {
  readonly suite: Suite;
  /**
   * Encrypts `buf[start, end)` in place and writes the 16-byte tag at `buf[end, end + 16)`.
   * `nonce` is 12 bytes; `aad` may be empty.
   */
  seal(nonce: Uint8Array, aad: Uint8Array, buf: Uint8Array, start: number, end: number): void;
  /**
   * Verifies the tag at `buf[end, end + 16)` over ciphertext `buf[start, end)` and `aad`, and on
   * success decrypts `buf[start, end)` in place. Returns false (never throws) on a bad tag; the
   * contents of `buf[start, end)` are then unspecified.
   */
  open(nonce: Uint8Array, aad: Uint8Array, buf: Uint8Array, start: number, end: number): boolean;
  /**
   * Optional, for backends whose decryption produces a new buffer anyway (node:crypto): like
   * `open`, but returns the plaintext (`end - start` bytes, wherever it lies) instead of copying it
   * back into `buf`, or undefined on a bad tag. `buf[start, end)` may or may not have been
   * decrypted in place (a backend may do that for some sizes and return a view of it).
   */
  openOut?(
    nonce: Uint8Array,
    aad: Uint8Array,
    buf: Uint8Array,
    start: number,
    end: number,
  ): Uint8Array | undefined;
}

/**
 * X25519 (RFC 7748 §5) for the Noise handshake (§12.1 DH), where a backend has a faster one than
 * the core's pure-JS default (noble: ~1 ms per scalar multiplication; node:crypto: ~0.07 ms).
 */
export interface X25519 {
  /** The public key of a 32-byte secret key (scalar multiplication by the base point). */
  publicKey(secretKey: Uint8Array): Uint8Array;
  /**
   * The 32-byte shared secret. Throws (any error) when the peer's key is one the backend refuses,
   * such as a low-order point; an all-zero result is refused by the caller.
   */
  sharedSecret(secretKey: Uint8Array, publicKey: Uint8Array): Uint8Array;
}

export interface CryptoProvider {
  /** Short stable name for logs and benchmarks, e.g. "noble", "sodium", "node". */
  readonly name: string;
  /** Suites this provider implements in this runtime. */
  readonly suites: readonly Suite[];
  /**
   * Suites ordered fastest first for small packets (under SMALL_PACKET_BYTES), where per-call
   * cost rules rather than speed per byte. Present only where it was measured; a session then
   * offers a second SA for small packets (docs/PROTOCOL.md §3.7).
   */
  readonly smallSuites?: readonly Suite[];
  /** Builds a keyed AEAD. Throws ROAMLINK_ERR_UNSUPPORTED for a suite not in `suites`. */
  aead(suite: Suite, key: Uint8Array): Aead;
  /** A faster X25519 for handshakes; absent: the core's own. Same bytes either way. */
  readonly x25519?: X25519;
  /**
   * Its AES-GCM runs on the CPU's AES instructions where the CPU has them (OpenSSL's does): then
   * the CPU, not a startup measurement, says whether AES-GCM beats ChaCha20 for bulk packets.
   */
  readonly cpuAes?: boolean;
}
