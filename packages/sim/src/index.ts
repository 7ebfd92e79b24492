/**
 * @roamlink/sim: the five roamlink encapsulations (UDP, TCP, WebSocket, HTTP streaming, HTTP long
 * polling) as adapters over the deterministic network simulator, each with a client half and a
 * relay half. The core stays sans-I/O: it sees datagrams, path ids and PathInfo, never a socket.
 * Wire formats: README.md.
 */
import { Encapsulation } from '@roamlink/core';
import type { Host } from '@roamlink/netsim';
import { HttpPollClientPath } from './http-poll.ts';
import { HttpStreamClientPath } from './http-stream.ts';
import { TcpClientPath } from './tcp.ts';
import type { ClientPathOptions, SimClientPath } from './types.ts';
import { UdpClientPath } from './udp.ts';
import { WebSocketClientPath } from './websocket.ts';

export * from './framing.ts';
export * from './http-client.ts';
export * from './http-poll.ts';
export * from './http-session.ts';
export * from './http-stream.ts';
export * from './relay.ts';
export * from './tcp.ts';
export * from './types.ts';
export * from './udp.ts';
export * from './websocket.ts';

/** Opens a client path of the given encapsulation from `host` to the relay. */
export function openClientPath(
  kind: Encapsulation,
  host: Host,
  opts: ClientPathOptions,
): SimClientPath {
  switch (kind) {
    case Encapsulation.UDP:
      return new UdpClientPath(host, opts);
    case Encapsulation.TCP:
      return new TcpClientPath(host, opts);
    case Encapsulation.WEBSOCKET:
      return new WebSocketClientPath(host, opts);
    case Encapsulation.HTTP_STREAM:
      return new HttpStreamClientPath(host, opts);
    case Encapsulation.HTTP_POLL:
      return new HttpPollClientPath(host, opts);
  }
}
export * from './scenario.ts';
