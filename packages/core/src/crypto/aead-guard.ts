/**
 * Argument checks shared by every `CryptoProvider` (packages/core/src/crypto/aead.ts), so that all
 * backends reject the same misuse with the same error codes and no backend library ever sees an
 * out-of-range view (some would silently clamp a subarray, others would throw their own errors).
 *
 * Misuse (wrong key or nonce length, a range outside the buffer) is a programming error and throws
 * `ROAMLINK_ERR_INVALID_ARGUMENT`; a suite the provider lacks throws `ROAMLINK_ERR_UNSUPPORTED`.
 * A forged or corrupted packet is not misuse: `open` reports it by returning false.
 */
import { ErrorCode, RoamlinkError } from '../errors.ts';
import {
  AEAD_KEY_BYTES,
  AEAD_NONCE_BYTES,
  AEAD_TAG_BYTES,
  SUITE_NAMES,
  type Suite,
} from './aead.ts';

/** Throws ROAMLINK_ERR_UNSUPPORTED unless `suite` is one of `provider.suites`. */
export function requireSuite(
  provider: { readonly name: string; readonly suites: readonly Suite[] },
  suite: Suite,
): void {
  if (!provider.suites.includes(suite)) {
    const label = SUITE_NAMES[suite] ?? `suite ${String(suite)}`;
    throw new RoamlinkError(
      ErrorCode.UNSUPPORTED,
      `crypto provider "${provider.name}" does not implement ${label}`,
    );
  }
}

/**
 * Checks that `key` is a 32-byte key and returns a private copy of it: an `Aead` must not change
 * behaviour if the caller later reuses or wipes the array it passed in.
 */
export function copyAeadKey(key: Uint8Array): Uint8Array {
  if (!(key instanceof Uint8Array) || key.length !== AEAD_KEY_BYTES) {
    throw new RoamlinkError(
      ErrorCode.INVALID_ARGUMENT,
      `AEAD key must be ${AEAD_KEY_BYTES} bytes, got ${key instanceof Uint8Array ? key.length : typeof key}`,
    );
  }
  return key.slice();
}

/**
 * Checks the arguments of `Aead.seal` / `Aead.open`: a 12-byte nonce, and integer offsets with
 * `0 <= start <= end` and room for the tag at `buf[end, end + 16)`.
 */
export function checkAeadArgs(
  nonce: Uint8Array,
  aad: Uint8Array,
  buf: Uint8Array,
  start: number,
  end: number,
): void {
  if (nonce.length !== AEAD_NONCE_BYTES) {
    throw new RoamlinkError(
      ErrorCode.INVALID_ARGUMENT,
      `AEAD nonce must be ${AEAD_NONCE_BYTES} bytes, got ${nonce.length}`,
    );
  }
  if (!(aad instanceof Uint8Array)) {
    throw new RoamlinkError(ErrorCode.INVALID_ARGUMENT, 'AEAD aad must be a Uint8Array');
  }
  if (
    !Number.isSafeInteger(start) ||
    !Number.isSafeInteger(end) ||
    start < 0 ||
    end < start ||
    end + AEAD_TAG_BYTES > buf.length
  ) {
    throw new RoamlinkError(
      ErrorCode.INVALID_ARGUMENT,
      `AEAD range [${start}, ${end}) + ${AEAD_TAG_BYTES}-byte tag does not fit a ${buf.length}-byte buffer`,
    );
  }
}
