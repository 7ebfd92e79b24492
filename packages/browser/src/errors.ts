/**
 * Errors the browser client raises, typed with stable codes in the core's style (the core's
 * RoamlinkError codes are the protocol's; these are the browser API's). Callers match on `code`,
 * never on `message`.
 */

export const BrowserErrorCode = {
  /** `connect` was given something it cannot use (a bad URL, key or option). */
  INVALID_ARGUMENT: 'ROAMLINK_ERR_INVALID_ARGUMENT',
  /** No encapsulation reached the relay, or the session was not registered in time. */
  CONNECT_FAILED: 'ROAMLINK_ERR_CONNECT_FAILED',
  /** The handshake gave up (no answer, or the relay refused this client's key). */
  HANDSHAKE_FAILED: 'ROAMLINK_ERR_HANDSHAKE_FAILED',
  /** The session is closed (by `close()`, an outage longer than `outageMs`, or the relay). */
  SESSION_CLOSED: 'ROAMLINK_ERR_SESSION_CLOSED',
  /** The relay refused to open the stream (policy, connection refused, DNS, ...): see `stream`. */
  STREAM_REFUSED: 'ROAMLINK_ERR_STREAM_REFUSED',
  /** The stream was reset by the relay (the destination closed abruptly, a limit, ...). */
  STREAM_RESET: 'ROAMLINK_ERR_STREAM_RESET',
} as const;
export type BrowserErrorCode = (typeof BrowserErrorCode)[keyof typeof BrowserErrorCode];

/** Why the relay refused or reset a stream, by the stream layer's error code (StreamError). */
export type StreamErrorName =
  | 'policy'
  | 'refused'
  | 'unreachable'
  | 'timeout'
  | 'shutdown'
  | 'reset'
  | 'internal'
  | 'dns'
  | 'limit'
  | 'unknown';

const STREAM_ERROR_NAMES: readonly StreamErrorName[] = [
  'unknown',
  'policy',
  'refused',
  'unreachable',
  'timeout',
  'shutdown',
  'reset',
  'internal',
  'dns',
  'limit',
];

/** The name of a StreamError code (PROTOCOL.md §8); unknown codes are "unknown". */
export function streamErrorName(code: number): StreamErrorName {
  return STREAM_ERROR_NAMES[code] ?? 'unknown';
}

export class RoamlinkBrowserError extends Error {
  readonly code: BrowserErrorCode;
  /** For STREAM_REFUSED and STREAM_RESET: why, as the relay said it. */
  readonly stream: StreamErrorName | undefined;
  constructor(
    code: BrowserErrorCode,
    message: string,
    options?: { cause?: unknown; stream?: StreamErrorName },
  ) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'RoamlinkBrowserError';
    this.code = code;
    this.stream = options?.stream;
  }
}

export function isRoamlinkBrowserError(
  e: unknown,
  code?: BrowserErrorCode,
): e is RoamlinkBrowserError {
  return e instanceof RoamlinkBrowserError && (code === undefined || e.code === code);
}
