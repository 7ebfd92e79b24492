/**
 * Typed errors with stable codes. Codes never change meaning once published; callers and logs
 * match on `code`, never on `message`.
 */
export const ErrorCode = {
  /** A byte string had the wrong length or shape for the codec that read it. */
  MALFORMED: 'ROAMLINK_ERR_MALFORMED',
  /** An argument was outside its valid range (API misuse, not hostile input). */
  INVALID_ARGUMENT: 'ROAMLINK_ERR_INVALID_ARGUMENT',
  /** AEAD authentication failed (forged, corrupted or wrongly keyed). */
  AUTH_FAILED: 'ROAMLINK_ERR_AUTH_FAILED',
  /** A packet or handshake message was seen before, or is older than allowed. */
  REPLAYED: 'ROAMLINK_ERR_REPLAYED',
  /** No SA matches the packet's SPI. */
  UNKNOWN_SPI: 'ROAMLINK_ERR_UNKNOWN_SPI',
  /** ESP padding bytes were not 1, 2, 3, ... (RFC 4303 §2.4). */
  BAD_PADDING: 'ROAMLINK_ERR_BAD_PADDING',
  /** The handshake state machine was driven out of order. */
  HANDSHAKE_STATE: 'ROAMLINK_ERR_HANDSHAKE_STATE',
  /** The peer's static key is not on the allow-list. */
  PEER_NOT_ALLOWED: 'ROAMLINK_ERR_PEER_NOT_ALLOWED',
  /** No cipher suite is supported by both sides. */
  NO_COMMON_SUITE: 'ROAMLINK_ERR_NO_COMMON_SUITE',
  /** A key or counter reached its hard limit; the SA must not be used any more. */
  SA_EXPIRED: 'ROAMLINK_ERR_SA_EXPIRED',
  /** The requested suite or feature is not available in this provider or runtime. */
  UNSUPPORTED: 'ROAMLINK_ERR_UNSUPPORTED',
} as const;
export type ErrorCode = (typeof ErrorCode)[keyof typeof ErrorCode];

export class RoamlinkError extends Error {
  readonly code: ErrorCode;
  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'RoamlinkError';
    this.code = code;
  }
}

export function isRoamlinkError(e: unknown, code?: ErrorCode): e is RoamlinkError {
  return e instanceof RoamlinkError && (code === undefined || e.code === code);
}
