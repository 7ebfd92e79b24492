/**
 * The ways an ESP packet can travel between client and relay, with their wire codes (carried in
 * handshake payloads and, later, in registration messages). The default preference order is the
 * relay's: lightest first.
 */
export const Encapsulation = {
  /** RFC 3948: ESP in UDP, non-ESP marker before control messages. */
  UDP: 1,
  /** RFC 8229-style length-prefixed frames in TCP. */
  TCP: 2,
  /** One binary WebSocket message per packet (RFC 6455). */
  WEBSOCKET: 3,
  /** Batched POSTs upstream, one streaming response downstream. */
  HTTP_STREAM: 4,
  /** Batched POSTs upstream, long polling downstream (for proxies that buffer). */
  HTTP_POLL: 5,
} as const;
export type Encapsulation = (typeof Encapsulation)[keyof typeof Encapsulation];

export const ENCAPSULATION_NAMES: Record<Encapsulation, string> = {
  [Encapsulation.UDP]: 'udp',
  [Encapsulation.TCP]: 'tcp',
  [Encapsulation.WEBSOCKET]: 'websocket',
  [Encapsulation.HTTP_STREAM]: 'http-stream',
  [Encapsulation.HTTP_POLL]: 'http-poll',
};

export const DEFAULT_ENCAPSULATION_PREFERENCE: readonly Encapsulation[] = [
  Encapsulation.UDP,
  Encapsulation.TCP,
  Encapsulation.WEBSOCKET,
  Encapsulation.HTTP_STREAM,
  Encapsulation.HTTP_POLL,
];

export function isEncapsulation(v: number): v is Encapsulation {
  return v >= Encapsulation.UDP && v <= Encapsulation.HTTP_POLL;
}
