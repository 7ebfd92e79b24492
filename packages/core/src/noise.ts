/**
 * The Noise IK handshake: `Noise_IK_25519_ChaChaPoly_BLAKE2s` and
 * `Noise_IKpsk2_25519_ChaChaPoly_BLAKE2s` (The Noise Protocol Framework, revision 34).
 *
 * Sections followed:
 * - §3 message format: no Noise message exceeds 65535 bytes.
 * - §4.3 HKDF over HMAC-HASH, with HASHLEN 32 and BLOCKLEN 64 for BLAKE2s (§12.8); noble's hmac
 *   takes BLOCKLEN from the hash.
 * - §5.1 CipherState, §5.2 SymmetricState, §5.3 HandshakeState processing rules.
 * - §7.5 the IK pattern:  <- s  ...  -> e, es, s, ss  <- e, ee, se
 * - §9 the psk modifier: IKpsk2 appends `psk` to message 2, and in a psk handshake the `e` token
 *   also calls MixKey(e.public_key) (§9.2).
 * - §12.1 X25519, §12.3 ChaChaPoly (nonce = 4 zero bytes || 64-bit little-endian counter).
 *
 * Message sizes (payload length P, 16 = Poly1305 tag):
 * - message 1 (initiator -> responder) = 32 (e) + 48 (encrypted s: 32 + 16) + P + 16
 * - message 2 (responder -> initiator) = 32 (e) + P + 16
 *
 * Sans-I/O: the caller moves bytes and supplies randomness. Every readMessage works on copies of
 * the handshake state and commits only when the whole message verified, so a forged or corrupted
 * message (for instance a spoofed message 2 racing the real one) is rejected without disturbing the
 * handshake, and the genuine message can still be processed afterwards.
 */
import { chacha20poly1305 } from '@noble/ciphers/chacha.js';
import { x25519 } from '@noble/curves/ed25519.js';
import { blake2s } from '@noble/hashes/blake2.js';
import { hmac } from '@noble/hashes/hmac.js';
import { concatBytes, utf8 } from './bytes.ts';
import type { X25519 } from './crypto/aead.ts';
import { ErrorCode, RoamlinkError } from './errors.ts';

export const NOISE_IK_PROTOCOL = 'Noise_IK_25519_ChaChaPoly_BLAKE2s';
export const NOISE_IKPSK2_PROTOCOL = 'Noise_IKpsk2_25519_ChaChaPoly_BLAKE2s';

/** §3: the largest Noise message, handshake or transport. */
export const NOISE_MAX_MESSAGE = 65535;
/** X25519 public keys and DH outputs (DHLEN, §12.1). */
export const NOISE_DH_LEN = 32;
/** BLAKE2s output (HASHLEN, §12.8). */
export const NOISE_HASH_LEN = 32;
/** Poly1305 tag appended by every encryption under a key. */
export const NOISE_TAG_LEN = 16;
/** Bytes message 1 adds to its payload: e (32) + encrypted s (48) + payload tag (16). */
export const NOISE_IK_MSG1_OVERHEAD = NOISE_DH_LEN + NOISE_DH_LEN + NOISE_TAG_LEN + NOISE_TAG_LEN;
/** Bytes message 2 adds to its payload: e (32) + payload tag (16). */
export const NOISE_IK_MSG2_OVERHEAD = NOISE_DH_LEN + NOISE_TAG_LEN;
/** The psk modifier's key length (§9.1). */
export const NOISE_PSK_LEN = 32;

const EMPTY = new Uint8Array(0);
/** §5.1: nonce 2^64-1 is reserved; a JS number counter is capped earlier, at 2^53-1. */
const MAX_NONCE = Number.MAX_SAFE_INTEGER;

export interface Keypair {
  readonly publicKey: Uint8Array;
  readonly secretKey: Uint8Array;
}

/** Returns `n` cryptographically random bytes. */
export type RandomBytes = (n: number) => Uint8Array;

export function keypairFromSecret(secretKey: Uint8Array, impl: X25519 = nobleX25519): Keypair {
  if (secretKey.length !== NOISE_DH_LEN) {
    throw new RoamlinkError(ErrorCode.INVALID_ARGUMENT, 'X25519 secret key must be 32 bytes');
  }
  const sk = secretKey.slice();
  return { publicKey: impl.publicKey(sk), secretKey: sk };
}

export function generateKeypair(random: RandomBytes, impl: X25519 = nobleX25519): Keypair {
  const sk = random(NOISE_DH_LEN);
  if (sk.length !== NOISE_DH_LEN) {
    throw new RoamlinkError(ErrorCode.INVALID_ARGUMENT, 'random() returned the wrong length');
  }
  const kp = keypairFromSecret(sk, impl);
  sk.fill(0);
  return kp;
}

// ---------------------------------------------------------------------------------------------
// Crypto functions (§4, §12)

/** The core's own X25519 (noble, pure JS): what runs where no provider offers a faster one. */
export const nobleX25519: X25519 = {
  publicKey: (sk) => x25519.getPublicKey(sk),
  sharedSecret: (sk, pk) => x25519.getSharedSecret(sk, pk),
};

/** §12.1 DH(); low-order points are rejected so a peer cannot force a known shared secret. */
function dh(impl: X25519, secretKey: Uint8Array, publicKey: Uint8Array): Uint8Array {
  let out: Uint8Array;
  try {
    out = impl.sharedSecret(secretKey, publicKey);
  } catch (cause) {
    // noble refuses low-order inputs before running the ladder; OpenSSL refuses a zero result.
    throw new RoamlinkError(ErrorCode.AUTH_FAILED, 'X25519 with a low-order public key', { cause });
  }
  let acc = 0;
  for (let i = 0; i < out.length; i++) acc |= out[i]!;
  if (acc === 0) {
    throw new RoamlinkError(ErrorCode.AUTH_FAILED, 'X25519 produced an all-zero shared secret');
  }
  return out;
}

/** §12.3: 96-bit nonce = 32 bits of zeros || little-endian 64-bit n. */
function chachaNonce(n: number): Uint8Array {
  const nonce = new Uint8Array(12);
  let lo = n >>> 0;
  let hi = Math.floor(n / 0x1_0000_0000);
  for (let i = 4; i < 8; i++) {
    nonce[i] = lo & 0xff;
    lo >>>= 8;
  }
  for (let i = 8; i < 12; i++) {
    nonce[i] = hi & 0xff;
    hi >>>= 8;
  }
  return nonce;
}

function aeadEncrypt(k: Uint8Array, n: number, ad: Uint8Array, plaintext: Uint8Array): Uint8Array {
  return chacha20poly1305(k, chachaNonce(n), ad).encrypt(plaintext);
}

function aeadDecrypt(k: Uint8Array, n: number, ad: Uint8Array, ciphertext: Uint8Array): Uint8Array {
  if (ciphertext.length < NOISE_TAG_LEN) {
    throw new RoamlinkError(ErrorCode.MALFORMED, 'ciphertext shorter than its tag');
  }
  try {
    return chacha20poly1305(k, chachaNonce(n), ad).decrypt(ciphertext);
  } catch (cause) {
    throw new RoamlinkError(ErrorCode.AUTH_FAILED, 'ChaChaPoly authentication failed', { cause });
  }
}

/** §4.3 HKDF(chaining_key, input_key_material, num_outputs) with HMAC-BLAKE2s. */
function hkdf(ck: Uint8Array, ikm: Uint8Array, outputs: 2 | 3): Uint8Array[] {
  const tempKey = hmac(blake2s, ck, ikm);
  const o1 = hmac(blake2s, tempKey, Uint8Array.of(1));
  const o2 = hmac(blake2s, tempKey, concatBytes(o1, Uint8Array.of(2)));
  const out = [o1, o2];
  if (outputs === 3) out.push(hmac(blake2s, tempKey, concatBytes(o2, Uint8Array.of(3))));
  tempKey.fill(0);
  return out;
}

// ---------------------------------------------------------------------------------------------
// SymmetricState (§5.2), kept as plain data so that readMessage can work on a copy.

interface Symmetric {
  ck: Uint8Array;
  h: Uint8Array;
  /** The CipherState key, absent until the first MixKey (§5.1 "empty"). */
  k: Uint8Array | undefined;
  n: number;
}

function initializeSymmetric(protocolName: string): Symmetric {
  const name = utf8(protocolName);
  let h: Uint8Array;
  if (name.length <= NOISE_HASH_LEN) {
    h = new Uint8Array(NOISE_HASH_LEN);
    h.set(name);
  } else {
    h = blake2s(name);
  }
  return { ck: h.slice(), h, k: undefined, n: 0 };
}

function cloneSymmetric(s: Symmetric): Symmetric {
  return { ck: s.ck.slice(), h: s.h.slice(), k: s.k?.slice(), n: s.n };
}

function wipeSymmetric(s: Symmetric): void {
  s.ck.fill(0);
  s.k?.fill(0);
}

function mixHash(s: Symmetric, data: Uint8Array): void {
  s.h = blake2s(concatBytes(s.h, data));
}

function mixKey(s: Symmetric, ikm: Uint8Array): void {
  const [ck, k] = hkdf(s.ck, ikm, 2);
  s.ck.fill(0);
  s.k?.fill(0);
  s.ck = ck!;
  s.k = k!; // HASHLEN is 32, so no truncation is needed
  s.n = 0;
}

function mixKeyAndHash(s: Symmetric, ikm: Uint8Array): void {
  const [ck, tempH, k] = hkdf(s.ck, ikm, 3);
  s.ck.fill(0);
  s.k?.fill(0);
  s.ck = ck!;
  mixHash(s, tempH!);
  s.k = k!;
  s.n = 0;
}

/** DH then MixKey, wiping the shared secret once it has been absorbed. */
function mixDh(impl: X25519, s: Symmetric, secretKey: Uint8Array, publicKey: Uint8Array): void {
  const shared = dh(impl, secretKey, publicKey);
  mixKey(s, shared);
  shared.fill(0);
}

function encryptAndHash(s: Symmetric, plaintext: Uint8Array): Uint8Array {
  let out: Uint8Array;
  if (s.k === undefined) {
    out = plaintext.slice();
  } else {
    if (s.n >= MAX_NONCE) throw new RoamlinkError(ErrorCode.SA_EXPIRED, 'Noise nonce exhausted');
    out = aeadEncrypt(s.k, s.n, s.h, plaintext);
    s.n++;
  }
  mixHash(s, out);
  return out;
}

function decryptAndHash(s: Symmetric, ciphertext: Uint8Array): Uint8Array {
  let out: Uint8Array;
  if (s.k === undefined) {
    out = ciphertext.slice();
  } else {
    if (s.n >= MAX_NONCE) throw new RoamlinkError(ErrorCode.SA_EXPIRED, 'Noise nonce exhausted');
    out = aeadDecrypt(s.k, s.n, s.h, ciphertext);
    s.n++;
  }
  mixHash(s, ciphertext);
  return out;
}

// ---------------------------------------------------------------------------------------------
// Transport CipherState (§5.1)

/**
 * A CipherState for transport messages after Split(). Nonces count up from 0; a failed decrypt
 * throws ROAMLINK_ERR_AUTH_FAILED and leaves the nonce unchanged, so it can be retried with the
 * genuine message. Ordering and replay policy belong to the caller.
 */
export class NoiseCipherState {
  /** The next nonce to use. */
  nonce = 0;
  readonly #key: Uint8Array;

  constructor(key: Uint8Array) {
    if (key.length !== 32) {
      throw new RoamlinkError(ErrorCode.INVALID_ARGUMENT, 'ChaChaPoly key must be 32 bytes');
    }
    this.#key = key.slice();
  }

  encryptWithAd(ad: Uint8Array, plaintext: Uint8Array): Uint8Array {
    this.#checkNonce();
    const out = aeadEncrypt(this.#key, this.nonce, ad, plaintext);
    this.nonce++;
    return out;
  }

  decryptWithAd(ad: Uint8Array, ciphertext: Uint8Array): Uint8Array {
    this.#checkNonce();
    const out = aeadDecrypt(this.#key, this.nonce, ad, ciphertext);
    this.nonce++;
    return out;
  }

  /** Zeroes the key; the state cannot be used afterwards. */
  destroy(): void {
    this.#key.fill(0);
    this.nonce = MAX_NONCE;
  }

  #checkNonce(): void {
    if (!Number.isSafeInteger(this.nonce) || this.nonce < 0 || this.nonce >= MAX_NONCE) {
      throw new RoamlinkError(ErrorCode.SA_EXPIRED, 'Noise nonce exhausted or invalid');
    }
  }
}

// ---------------------------------------------------------------------------------------------
// HandshakeState (§5.3) for IK / IKpsk2

export interface NoiseOptions {
  /** Bound into h before the first message; both sides must use the same bytes. Default empty. */
  prologue?: Uint8Array;
  /** Our static keypair, s. */
  staticKeypair: Keypair;
  /** rs: the responder's static public key. Required for the initiator; the responder learns it. */
  remoteStaticKey?: Uint8Array;
  /** 32 bytes; its presence selects IKpsk2. The responder may instead call setPsk() later. */
  psk?: Uint8Array;
  /** True selects IKpsk2 even though the psk is supplied later with setPsk(). */
  usePsk?: boolean;
  /** A fixed e, for test vectors only. */
  ephemeralKeypair?: Keypair;
  /** Source of e when ephemeralKeypair is absent. */
  random: RandomBytes;
  /** X25519 backend (a provider's native one); default the core's own (noble). */
  x25519?: X25519;
}

export type NoiseRole = 'initiator' | 'responder';

/** Where the handshake is: message 1 pending, message 2 pending, done, or split (keys taken). */
type Step = 0 | 1 | 2 | 3;

function stateError(message: string): RoamlinkError {
  return new RoamlinkError(ErrorCode.HANDSHAKE_STATE, message);
}

function copyKeypair(kp: Keypair, what: string): Keypair {
  if (kp.publicKey.length !== NOISE_DH_LEN || kp.secretKey.length !== NOISE_DH_LEN) {
    throw new RoamlinkError(ErrorCode.INVALID_ARGUMENT, `${what} keys must be 32 bytes`);
  }
  return { publicKey: kp.publicKey.slice(), secretKey: kp.secretKey.slice() };
}

function checkPsk(psk: Uint8Array): Uint8Array {
  if (psk.length !== NOISE_PSK_LEN) {
    throw new RoamlinkError(ErrorCode.INVALID_ARGUMENT, 'psk must be 32 bytes');
  }
  return psk.slice();
}

/**
 * One side of an IK or IKpsk2 handshake. The initiator calls writeMessage then readMessage; the
 * responder readMessage then writeMessage. Then both call split() for the transport keys.
 */
export class NoiseIK {
  readonly role: NoiseRole;
  readonly protocolName: string;
  readonly usesPsk: boolean;

  #step: Step = 0;
  #sym: Symmetric;
  readonly #s: Keypair;
  #e: Keypair | undefined;
  #fixedE: Keypair | undefined;
  #rs: Uint8Array | undefined;
  #re: Uint8Array | undefined;
  #psk: Uint8Array | undefined;
  readonly #random: RandomBytes;
  readonly #x25519: X25519;

  constructor(role: NoiseRole, opts: NoiseOptions) {
    if (role !== 'initiator' && role !== 'responder') {
      throw new RoamlinkError(ErrorCode.INVALID_ARGUMENT, `unknown role ${String(role)}`);
    }
    this.role = role;
    this.#s = copyKeypair(opts.staticKeypair, 'static');
    this.#random = opts.random;
    this.#x25519 = opts.x25519 ?? nobleX25519;
    if (opts.ephemeralKeypair !== undefined) {
      this.#fixedE = copyKeypair(opts.ephemeralKeypair, 'ephemeral');
    }
    if (opts.psk !== undefined) this.#psk = checkPsk(opts.psk);
    this.usesPsk = opts.psk !== undefined || opts.usePsk === true;
    this.protocolName = this.usesPsk ? NOISE_IKPSK2_PROTOCOL : NOISE_IK_PROTOCOL;

    if (role === 'initiator') {
      if (opts.remoteStaticKey === undefined) {
        throw new RoamlinkError(ErrorCode.INVALID_ARGUMENT, 'IK initiator needs remoteStaticKey');
      }
      if (opts.remoteStaticKey.length !== NOISE_DH_LEN) {
        throw new RoamlinkError(ErrorCode.INVALID_ARGUMENT, 'remoteStaticKey must be 32 bytes');
      }
      this.#rs = opts.remoteStaticKey.slice();
    } else if (opts.remoteStaticKey !== undefined) {
      // The responder learns rs from message 1; a configured one would silently be ignored.
      throw new RoamlinkError(
        ErrorCode.INVALID_ARGUMENT,
        'IK responder learns remoteStaticKey from message 1; check it after readMessage',
      );
    }

    // §5.3 Initialize(): protocol name, prologue, then the pre-message "<- s".
    this.#sym = initializeSymmetric(this.protocolName);
    mixHash(this.#sym, opts.prologue ?? EMPTY);
    mixHash(this.#sym, role === 'initiator' ? this.#rs! : this.#s.publicKey);
  }

  /** Supplies the psk for IKpsk2; the responder typically does so after reading message 1. */
  setPsk(psk: Uint8Array): void {
    if (!this.usesPsk) throw stateError('setPsk on a handshake without the psk modifier');
    if (this.#step >= 2) throw stateError('setPsk after the psk was used');
    const copy = checkPsk(psk);
    this.#psk?.fill(0);
    this.#psk = copy;
  }

  get remoteStaticKey(): Uint8Array | undefined {
    return this.#rs?.slice();
  }

  get remoteEphemeralKey(): Uint8Array | undefined {
    return this.#re?.slice();
  }

  get isComplete(): boolean {
    return this.#step >= 2;
  }

  /** h: the transcript hash; final once the handshake is complete (§11.2 channel binding). */
  get handshakeHash(): Uint8Array {
    return this.#sym.h.slice();
  }

  writeMessage(payload: Uint8Array): Uint8Array {
    const mine = this.role === 'initiator' ? 0 : 1;
    if (this.#step !== mine) throw stateError(`${this.role} cannot write now`);
    const overhead = mine === 0 ? NOISE_IK_MSG1_OVERHEAD : NOISE_IK_MSG2_OVERHEAD;
    if (payload.length + overhead > NOISE_MAX_MESSAGE) {
      throw new RoamlinkError(ErrorCode.INVALID_ARGUMENT, 'payload too large for a Noise message');
    }
    if (mine === 1 && this.usesPsk && this.#psk === undefined) {
      throw stateError('IKpsk2 message 2 needs the psk: call setPsk() first');
    }

    const sym = cloneSymmetric(this.#sym);
    const e = this.#fixedE !== undefined ? copyKeypair(this.#fixedE, 'ephemeral') : undefined;
    const eph = e ?? generateKeypair(this.#random, this.#x25519);
    try {
      // Token "e" (§5.3), plus MixKey(e.public_key) in a psk handshake (§9.2).
      const parts: Uint8Array[] = [eph.publicKey];
      mixHash(sym, eph.publicKey);
      if (this.usesPsk) mixKey(sym, eph.publicKey);
      if (mine === 0) {
        // -> e, es, s, ss
        mixDh(this.#x25519, sym, eph.secretKey, this.#rs!);
        parts.push(encryptAndHash(sym, this.#s.publicKey));
        mixDh(this.#x25519, sym, this.#s.secretKey, this.#rs!);
      } else {
        // <- e, ee, se [, psk]
        mixDh(this.#x25519, sym, eph.secretKey, this.#re!);
        mixDh(this.#x25519, sym, eph.secretKey, this.#rs!);
        if (this.usesPsk) mixKeyAndHash(sym, this.#psk!);
      }
      parts.push(encryptAndHash(sym, payload));
      const message = concatBytes(...parts);

      // Commit.
      wipeSymmetric(this.#sym);
      this.#sym = sym;
      this.#e = eph;
      this.#step = mine === 0 ? 1 : 2;
      if (this.#step === 2) this.#wipeHandshakeSecrets();
      return message;
    } catch (err) {
      wipeSymmetric(sym);
      eph.secretKey.fill(0);
      throw err;
    }
  }

  readMessage(message: Uint8Array): Uint8Array {
    const theirs = this.role === 'initiator' ? 1 : 0;
    if (this.#step !== theirs) throw stateError(`${this.role} cannot read now`);
    const overhead = theirs === 0 ? NOISE_IK_MSG1_OVERHEAD : NOISE_IK_MSG2_OVERHEAD;
    if (message.length < overhead || message.length > NOISE_MAX_MESSAGE) {
      throw new RoamlinkError(
        ErrorCode.MALFORMED,
        `IK message ${theirs + 1} must be ${overhead}..${NOISE_MAX_MESSAGE} bytes, got ${message.length}`,
      );
    }
    if (theirs === 1 && this.usesPsk && this.#psk === undefined) {
      throw stateError('IKpsk2 message 2 needs the psk: call setPsk() first');
    }

    // Everything below works on copies; nothing is committed unless the payload authenticates.
    const sym = cloneSymmetric(this.#sym);
    try {
      let off = 0;
      const re = message.slice(off, off + NOISE_DH_LEN);
      off += NOISE_DH_LEN;
      mixHash(sym, re);
      if (this.usesPsk) mixKey(sym, re);
      let rs = this.#rs;
      if (theirs === 0) {
        // -> e, es, s, ss  (responder side: DH(s, re), decrypt s, DH(s, rs))
        mixDh(this.#x25519, sym, this.#s.secretKey, re);
        const encS = message.subarray(off, off + NOISE_DH_LEN + NOISE_TAG_LEN);
        off += NOISE_DH_LEN + NOISE_TAG_LEN;
        rs = decryptAndHash(sym, encS);
        mixDh(this.#x25519, sym, this.#s.secretKey, rs);
      } else {
        // <- e, ee, se [, psk]  (initiator side: DH(e, re), DH(s, re))
        mixDh(this.#x25519, sym, this.#e!.secretKey, re);
        mixDh(this.#x25519, sym, this.#s.secretKey, re);
        if (this.usesPsk) mixKeyAndHash(sym, this.#psk!);
      }
      const payload = decryptAndHash(sym, message.subarray(off));

      // Commit.
      wipeSymmetric(this.#sym);
      this.#sym = sym;
      this.#re = re;
      this.#rs = rs;
      this.#step = theirs === 0 ? 1 : 2;
      if (this.#step === 2) this.#wipeHandshakeSecrets();
      return payload;
    } catch (err) {
      wipeSymmetric(sym);
      throw err;
    }
  }

  /**
   * §5.2 Split(): the two transport keys. The initiator sends with the first (k1) and the
   * responder with the second (k2). One-shot: the chaining key is wiped afterwards, so a second
   * call throws ROAMLINK_ERR_HANDSHAKE_STATE. The handshake hash stays readable.
   */
  split(): { sendKey: Uint8Array; receiveKey: Uint8Array } {
    if (this.#step === 3) throw stateError('split() was already called');
    if (this.#step !== 2) throw stateError('split() before the handshake completed');
    const [k1, k2] = hkdf(this.#sym.ck, EMPTY, 2);
    wipeSymmetric(this.#sym);
    this.#step = 3;
    return this.role === 'initiator'
      ? { sendKey: k1!, receiveKey: k2! }
      : { sendKey: k2!, receiveKey: k1! };
  }

  /** After the last DH and psk use, nothing but ck and h is needed. */
  #wipeHandshakeSecrets(): void {
    this.#e?.secretKey.fill(0);
    this.#fixedE?.secretKey.fill(0);
    this.#s.secretKey.fill(0);
    this.#psk?.fill(0);
    this.#psk = undefined;
    this.#sym.k?.fill(0);
    this.#sym.k = undefined;
  }
}
