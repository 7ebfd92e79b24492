import type { Element, Endpoint, Host, Interface, TraceEvent } from '../src/index.ts';
import { Link, Network } from '../src/index.ts';

export const RELAY = '198.18.0.1';
export const OTHER = '198.18.0.2';
export const CLIENT_PRIV = '198.19.0.2';
export const NAT_PUB = '198.18.1.1';

export interface World {
  net: Network;
  relay: Host;
  other: Host;
  client: Host;
  wifi: Interface;
}

/**
 * Relay (198.18.0.1) and a second server (198.18.0.2) on the internet, each behind a link of
 * `serverDelay` ms; a client whose Wi-Fi interface has `chain` (default: one link of
 * `clientDelay` ms) and address `clientAddr`.
 */
export function world(
  o: {
    seed?: number | string;
    chain?: readonly Element[];
    clientAddr?: string;
    clientDelay?: number;
    serverDelay?: number;
    addressLoss?: 'abort' | 'keep';
  } = {},
): World {
  const net = new Network({ seed: o.seed ?? 1 });
  const relay = net.addHost('relay');
  relay.addInterface('eth0', { addr: RELAY, chain: [new Link({ delay: o.serverDelay ?? 10 })] });
  const other = net.addHost('other');
  other.addInterface('eth0', { addr: OTHER, chain: [new Link({ delay: o.serverDelay ?? 10 })] });
  const client = net.addHost(
    'client',
    o.addressLoss === undefined ? {} : { addressLoss: o.addressLoss },
  );
  const wifi = client.addInterface('wifi', {
    addr: o.clientAddr ?? CLIENT_PRIV,
    chain: o.chain ?? [new Link({ delay: o.clientDelay ?? 10 })],
  });
  return { net, relay, other, client, wifi };
}

export const bytes = (...v: number[]): Uint8Array => new Uint8Array(v);

export function pattern(n: number, salt = 0): Uint8Array {
  const b = new Uint8Array(n);
  for (let i = 0; i < n; i++) b[i] = (i * 131 + (i >>> 8) * 7 + salt) & 255;
  return b;
}

export function concat(parts: readonly Uint8Array[]): Uint8Array {
  let n = 0;
  for (const p of parts) n += p.length;
  const out = new Uint8Array(n);
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

export const ascii = (s: string): Uint8Array => new TextEncoder().encode(s);
export const text = (b: Uint8Array): string => new TextDecoder().decode(b);

/** Records every datagram a UDP socket on `host:port` receives. */
export function udpSink(
  host: Host,
  port: number,
): { got: { data: Uint8Array; from: Endpoint; t: number }[] } {
  const s = host.bindUdp(port);
  const sink = { got: [] as { data: Uint8Array; from: Endpoint; t: number }[] };
  s.onMessage = (data, from) => sink.got.push({ data, from, t: host.now });
  return sink;
}

export function collectTrace(net: Network): TraceEvent[] {
  const out: TraceEvent[] = [];
  net.onEvent = (e) => out.push(e);
  return out;
}
