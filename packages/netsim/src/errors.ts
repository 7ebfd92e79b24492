/**
 * Socket errors as an operating system reports them (POSIX errno names), so that code driven by
 * the simulator meets the same failures it would meet on a real socket. They arrive as error
 * events (or, for bind, are thrown); API misuse throws TypeError or RangeError instead.
 */

export const NetErrorCode = {
  /** The socket's local address is no longer configured on any interface. */
  EADDRNOTAVAIL: 'EADDRNOTAVAIL',
  /** The port (and address) is already bound. */
  EADDRINUSE: 'EADDRINUSE',
  /** No interface is up with an address: nowhere to send. */
  ENETUNREACH: 'ENETUNREACH',
  /** The interface the socket is bound to is down. */
  ENETDOWN: 'ENETDOWN',
  /** The peer (or a middlebox on its behalf) refused: RST to a SYN, ICMP port unreachable. */
  ECONNREFUSED: 'ECONNREFUSED',
  /** The connection was reset by the peer or a middlebox. */
  ECONNRESET: 'ECONNRESET',
  /** The local system tore the connection down (its address went away). */
  ECONNABORTED: 'ECONNABORTED',
  /** No acknowledgement for too long (user timeout, connect timeout). */
  ETIMEDOUT: 'ETIMEDOUT',
  /** An ICMP error said the destination cannot be reached (or is administratively prohibited). */
  EHOSTUNREACH: 'EHOSTUNREACH',
  /** The datagram is larger than the interface or path MTU. */
  EMSGSIZE: 'EMSGSIZE',
  /** Writing to a connection that is closed for sending. */
  EPIPE: 'EPIPE',
} as const;
export type NetErrorCode = (typeof NetErrorCode)[keyof typeof NetErrorCode];

export class NetError extends Error {
  readonly code: NetErrorCode;
  constructor(code: NetErrorCode, message?: string) {
    super(message === undefined ? code : `${code}: ${message}`);
    this.name = 'NetError';
    this.code = code;
  }
}
