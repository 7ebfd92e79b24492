/** One entry point for all five client halves: the encapsulation picks the adapter. */
import { Encapsulation } from '@roamlink/core';
import type { Host } from '@roamlink/netsim';
import { HttpPollClientPath } from './http-poll.ts';
import { HttpStreamClientPath } from './http-stream.ts';
import { TcpClientPath } from './tcp.ts';
import type { ClientPathOptions, SimClientPath } from './types.ts';
import { UdpClientPath } from './udp.ts';
import { WebSocketClientPath } from './websocket.ts';

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
