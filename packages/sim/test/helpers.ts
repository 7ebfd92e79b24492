import type { Encapsulation, PathInfo } from '@roamlink/core';
import {
  type Element,
  type Host,
  HttpProxy,
  type HttpProxyOptions,
  type Interface,
  Link,
  Network,
} from '@roamlink/netsim';
import {
  type ClientPathOptions,
  listenRelay,
  openClientPath,
  type RelayOptions,
  type SimClientPath,
  type SimRelayEndpoint,
} from '../src/index.ts';

export const RELAY = '198.18.0.1';
export const PROXY = '198.18.0.10';
export const CLIENT = '198.19.0.2';
export const NAT_PUB = '198.18.1.1';

export interface Arrival {
  data: Uint8Array;
  pathId: string;
  info: PathInfo;
  t: number;
}

export interface World {
  net: Network;
  relayHost: Host;
  client: Host;
  wifi: Interface;
  relay: SimRelayEndpoint;
  /** Everything the relay received, in order. */
  atRelay: Arrival[];
  proxy: HttpProxy | undefined;
  /** RTT client <-> relay from link delays (no proxy). */
  rtt: number;
}

/**
 * A relay (198.18.0.1, all five encapsulations on default ports) behind a `relayDelay` link, a
 * client whose interface reaches the internet through `chain` (default one `clientDelay` link),
 * and optionally an HTTP proxy (198.18.0.10:3128) behind its own `proxyDelay` link. With `echo`,
 * the relay sends every datagram back on the path it came on.
 */
export function world(
  o: {
    seed?: number;
    chain?: readonly Element[];
    clientDelay?: number;
    relayDelay?: number;
    proxy?: HttpProxyOptions;
    proxyDelay?: number;
    relay?: RelayOptions;
    echo?: boolean;
  } = {},
): World {
  const net = new Network({ seed: o.seed ?? 7 });
  const relayHost = net.addHost('relay');
  const relayIf = relayHost.addInterface('eth0', {
    addr: RELAY,
    chain: [new Link({ delay: o.relayDelay ?? 10 })],
  });
  const client = net.addHost('client');
  const wifi = client.addInterface('wifi', {
    addr: CLIENT,
    chain: o.chain ?? [new Link({ delay: o.clientDelay ?? 10 })],
  });
  let proxy: HttpProxy | undefined;
  if (o.proxy !== undefined) {
    const ph = net.addHost('proxy');
    ph.addInterface('eth0', { addr: PROXY, chain: [new Link({ delay: o.proxyDelay ?? 5 })] });
    proxy = new HttpProxy(ph, { name: 'px', ...o.proxy });
  }
  net.setName('relay.example', RELAY);
  const relay = listenRelay(relayHost, o.relay);
  const atRelay: Arrival[] = [];
  relay.onDatagram = (data, pathId, info) => {
    atRelay.push({ data, pathId, info, t: net.now });
    if (o.echo) relay.send(pathId, data);
  };
  return { net, relayHost, client, wifi, relay, atRelay, proxy, rtt: net.baseRtt(wifi, relayIf) };
}

export interface Observed {
  path: SimClientPath;
  got: { data: Uint8Array; t: number }[];
  errors: string[];
  openedAt: number | undefined;
}

/** Opens a client path and records what happens on it. */
export function open(
  w: World,
  kind: Encapsulation,
  extra: Partial<ClientPathOptions> = {},
): Observed {
  const path = openClientPath(kind, w.client, { relay: { addr: RELAY }, ...extra });
  const o: Observed = { path, got: [], errors: [], openedAt: undefined };
  path.onDatagram = (data) => o.got.push({ data, t: w.net.now });
  path.onError = (r) => o.errors.push(r);
  path.onOpen = () => {
    o.openedAt = w.net.now;
  };
  return o;
}

export const proxyOpts = (mode: 'forward' | 'connect' = 'forward'): Partial<ClientPathOptions> => ({
  proxy: { addr: PROXY, port: 3128, mode },
});

export function numbered(i: number, size = 32): Uint8Array {
  const b = new Uint8Array(size);
  for (let k = 0; k < size; k++) b[k] = (i * 31 + k * 7) & 255;
  b[0] = i >>> 8;
  b[1] = i & 255;
  return b;
}

export function header(info: PathInfo, name: string): string | undefined {
  return info.view.headers?.find(([k]) => k === name)?.[1];
}
