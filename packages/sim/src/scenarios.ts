/**
 * The scenario table of issue 3: every network the client must cross and every way it moves.
 * Expectations follow from the network alone (the verdict its translations imply, the most
 * preferred encapsulation it lets through), never from what the implementation happens to do.
 */
import { Encapsulation, Verdict } from '@roamlink/core';
import { NatBehavior } from '@roamlink/netsim';
import type { NetworkSpec, ScenarioSpec } from './scenario.ts';

const EI = NatBehavior.ENDPOINT_INDEPENDENT;
const AD = NatBehavior.ADDRESS_DEPENDENT;
const APD = NatBehavior.ADDRESS_AND_PORT_DEPENDENT;

/** A public address with nothing in between. */
const open: NetworkSpec = { name: 'open', addr: '198.19.0.2', delay: 15 };
/** A home Wi-Fi: one common NAT (EIM, APDF). */
const wifi: NetworkSpec = {
  name: 'wifi',
  addr: '192.168.1.20',
  delay: 15,
  nats: [{ mapping: EI, filtering: APD }],
  publicAddr: '198.18.2.1',
};
/** A cellular network: longer link, carrier-grade NAT with address-dependent mapping. */
const cellular: NetworkSpec = {
  name: 'cellular',
  addr: '10.20.30.40',
  delay: 35,
  nats: [{ mapping: AD, filtering: APD }],
  publicAddr: '198.18.3.1',
};
/** A corporate network: nothing out but through the HTTP proxy, which rewrites headers. */
const corporate = (proxy: NetworkSpec['proxy'] = {}): NetworkSpec => ({
  name: 'corporate',
  addr: '10.1.2.3',
  delay: 10,
  firewalls: [{ kind: 'proxy-only' }],
  nats: [{}],
  publicAddr: '198.18.4.1',
  proxy: { lowercaseHeaders: true, ...proxy },
});

const natted = (name: string, nat: NetworkSpec['nats']): NetworkSpec => ({
  ...wifi,
  name,
  nats: nat ?? [],
});

const withLoss = (n: NetworkSpec, loss: number): NetworkSpec => ({ ...n, loss });

/** Alternating moves between two networks, every `every` ms from `from`, `count` times. */
function moves(a: NetworkSpec, b: NetworkSpec, from: number, every: number, count: number) {
  return Array.from({ length: count }, (_, i) => ({
    at: from + i * every,
    kind: 'move' as const,
    to: i % 2 === 0 ? b : a,
  }));
}

export const SCENARIOS: readonly ScenarioSpec[] = [
  {
    name: 'no-nat',
    description: 'public address, nothing translated',
    network: open,
    expectedVerdict: Verdict.NONE,
    expectedEncapsulation: Encapsulation.UDP,
  },
  {
    name: 'nat-eim-eif',
    description: 'one NAT, endpoint-independent mapping and filtering (full cone)',
    network: natted('eim-eif', [{ mapping: EI, filtering: EI }]),
    expectedVerdict: Verdict.ADDRESS_AND_PORT,
    expectedEncapsulation: Encapsulation.UDP,
  },
  {
    name: 'nat-eim-adf',
    description: 'one NAT, endpoint-independent mapping, address-dependent filtering',
    network: natted('eim-adf', [{ mapping: EI, filtering: AD }]),
    expectedVerdict: Verdict.ADDRESS_AND_PORT,
    expectedEncapsulation: Encapsulation.UDP,
  },
  {
    name: 'nat-eim-apdf',
    description: 'one NAT, endpoint-independent mapping, address-and-port-dependent filtering',
    network: natted('eim-apdf', [{ mapping: EI, filtering: APD }]),
    expectedVerdict: Verdict.ADDRESS_AND_PORT,
    expectedEncapsulation: Encapsulation.UDP,
  },
  {
    name: 'nat-adm-apdf',
    description: 'one NAT, address-dependent mapping',
    network: natted('adm-apdf', [{ mapping: AD, filtering: APD }]),
    expectedVerdict: Verdict.ADDRESS_AND_PORT,
    expectedEncapsulation: Encapsulation.UDP,
  },
  {
    name: 'nat-symmetric',
    description: 'one NAT, address-and-port-dependent mapping and filtering',
    network: natted('symmetric', [{ mapping: APD, filtering: APD }]),
    expectedVerdict: Verdict.ADDRESS_AND_PORT,
    expectedEncapsulation: Encapsulation.UDP,
  },
  {
    name: 'nat-port-preserving',
    description: 'one NAT that keeps the inside port',
    network: natted('port-preserving', [{ portPreservation: true }]),
    expectedVerdict: Verdict.ADDRESS,
    expectedEncapsulation: Encapsulation.UDP,
  },
  {
    name: 'double-nat',
    description: 'home NAT behind a carrier-grade NAT',
    network: natted('double', [{}, { mapping: AD }]),
    expectedVerdict: Verdict.ADDRESS_AND_PORT,
    expectedEncapsulation: Encapsulation.UDP,
  },
  {
    name: 'udp-dropped',
    description: 'a firewall silently drops all UDP (behind a NAT)',
    network: { ...wifi, name: 'no-udp', firewalls: [{ kind: 'drop-udp' }] },
    expectedVerdict: Verdict.ADDRESS_AND_PORT,
    expectedEncapsulation: Encapsulation.TCP,
  },
  {
    name: 'tcp-80-443-only',
    description: 'only TCP to ports 80 and 443 passes (behind a NAT)',
    network: { ...wifi, name: 'tcp-only', firewalls: [{ kind: 'only-tcp', ports: [80, 443] }] },
    expectedVerdict: Verdict.ADDRESS_AND_PORT,
    expectedEncapsulation: Encapsulation.TCP,
  },
  {
    name: 'proxy-websocket',
    description: 'only HTTP through a header-rewriting proxy that allows WebSocket',
    network: corporate(),
    expectedVerdict: Verdict.PROTOCOL,
    expectedEncapsulation: Encapsulation.WEBSOCKET,
  },
  {
    name: 'proxy-refuses-upgrade',
    description: 'only HTTP through a proxy that refuses Upgrade (403)',
    network: corporate({ websocket: 'refuse-403' }),
    expectedVerdict: Verdict.PROTOCOL,
    expectedEncapsulation: Encapsulation.HTTP_STREAM,
  },
  {
    name: 'proxy-buffering',
    description: 'only HTTP through a proxy that refuses Upgrade and buffers responses',
    network: corporate({ websocket: 'refuse-403', bufferResponses: true }),
    expectedVerdict: Verdict.PROTOCOL,
    expectedEncapsulation: Encapsulation.HTTP_POLL,
  },
  {
    name: 'udp-small-only',
    description: 'UDP packets up to 1000 bytes pass, larger ones are dropped (a PMTU black hole)',
    network: { ...open, name: 'udp-small', firewalls: [{ kind: 'udp-max-size', bytes: 1000 }] },
    messageBytes: 1200,
    dataBlocked: true,
    expectedVerdict: Verdict.NONE,
    expectedEncapsulation: Encapsulation.TCP,
  },
  {
    name: 'registration-only',
    description:
      'a DPI box passes the first 64 packets of a UDP flow (handshake, registration, a little data), then stops it',
    network: {
      ...open,
      name: 'udp-pass-first-64',
      firewalls: [{ kind: 'udp-pass-first', packets: 64 }],
    },
    dataBlocked: true,
    expectedVerdict: Verdict.NONE,
    expectedEncapsulation: Encapsulation.TCP,
  },
  {
    name: 'udp-pass-first-4',
    description:
      'a DPI box passes only the first 4 packets of a UDP flow (the handshake and registration, if they fit), then stops it',
    network: {
      ...open,
      name: 'udp-pass-first-4',
      firewalls: [{ kind: 'udp-pass-first', packets: 4 }],
    },
    dataBlocked: true,
    expectedVerdict: Verdict.NONE,
    expectedEncapsulation: Encapsulation.TCP,
  },
  {
    name: 'wifi-to-cellular',
    description: 'a move from home Wi-Fi to a cellular network (new address, new NAT)',
    network: wifi,
    events: [{ at: 4000, kind: 'move', to: cellular }],
    expectedVerdict: Verdict.ADDRESS_AND_PORT,
    expectedEncapsulation: Encapsulation.UDP,
  },
  {
    name: 'nat-rebinding',
    description: 'the NAT forgets its mappings and takes a new external address (unnoticed)',
    network: wifi,
    events: [{ at: 4000, kind: 'rebind', externalAddr: '198.18.2.9' }],
    expectedVerdict: Verdict.ADDRESS_AND_PORT,
    expectedEncapsulation: Encapsulation.UDP,
  },
  {
    name: 'silent-udp-death',
    description: 'UDP silently stops at 4 s while data flows; TCP still works',
    network: { ...wifi, name: 'udp-dies', firewalls: [{ kind: 'udp-dies', at: 4000 }] },
    faultAt: 4000,
    expectedVerdict: Verdict.ADDRESS_AND_PORT,
    expectedEncapsulation: Encapsulation.TCP,
  },
  {
    name: 'udp-blocked-then-back',
    description: 'UDP silently blocked from 3 s to 7 s; UDP must be back in use within 5 s',
    network: {
      ...wifi,
      name: 'udp-flaps',
      firewalls: [{ kind: 'udp-dies', at: 3000, until: 7000 }],
    },
    faultAt: 3000,
    lighterBackAt: 7000,
    durationMs: 16_000,
    expectedVerdict: Verdict.ADDRESS_AND_PORT,
    expectedEncapsulation: Encapsulation.UDP,
  },
  {
    name: 'blackhole-4s',
    description: 'the whole access path silently carries nothing for 4 s',
    network: wifi,
    events: [{ at: 4000, kind: 'blackhole', duration: 4000 }],
    faultAt: 4000,
    durationMs: 16_000,
    expectedVerdict: Verdict.ADDRESS_AND_PORT,
    expectedEncapsulation: Encapsulation.UDP,
  },
  {
    name: 'network-down-5s',
    description: 'the interface loses carrier for 5 s and comes back',
    network: wifi,
    events: [{ at: 4000, kind: 'down', duration: 5000 }],
    durationMs: 16_000,
    expectedVerdict: Verdict.ADDRESS_AND_PORT,
    expectedEncapsulation: Encapsulation.UDP,
  },
  {
    name: 'moves-every-3s',
    description: 'Wi-Fi and cellular alternate every 3 s, six moves',
    network: wifi,
    events: moves(wifi, cellular, 3000, 3000, 6),
    durationMs: 25_000,
    expectedVerdict: Verdict.ADDRESS_AND_PORT,
    expectedEncapsulation: Encapsulation.UDP,
  },
  {
    name: 'lossy-moves',
    description: '3 % loss each way on both networks, moves every 3 s',
    network: withLoss(wifi, 0.03),
    events: moves(withLoss(wifi, 0.03), withLoss(cellular, 0.03), 3000, 3000, 4),
    durationMs: 20_000,
    expectedVerdict: Verdict.ADDRESS_AND_PORT,
    expectedEncapsulation: Encapsulation.UDP,
  },
  {
    name: 'nat-20s-idle',
    description: 'a NAT with a 20 s UDP binding timeout, then 70 s without application data',
    network: natted('nat-20s', [{ udpTimeout: 20_000 }]),
    idle: { from: 3000, to: 73_000 },
    durationMs: 80_000,
    expectedVerdict: Verdict.ADDRESS_AND_PORT,
    expectedEncapsulation: Encapsulation.UDP,
  },
  {
    name: 'nat-120s-idle',
    description:
      'a NAT that keeps idle UDP bindings 120 s (RFC 4787 REQ-5), then 20 min without application data: the learned keepalive interval grows well past 25 s',
    network: natted('nat-120s', [{ udpTimeout: 120_000 }]),
    idle: { from: 3000, to: 1_196_000 },
    durationMs: 1_200_000,
    expectedVerdict: Verdict.ADDRESS_AND_PORT,
    expectedEncapsulation: Encapsulation.UDP,
  },
  {
    name: 'no-nat-idle',
    description: 'public address, 70 s without application data: no keepalives at all',
    network: open,
    idle: { from: 3000, to: 73_000 },
    durationMs: 80_000,
    expectedVerdict: Verdict.NONE,
    expectedEncapsulation: Encapsulation.UDP,
  },
  {
    name: 'proxy-to-open',
    description: 'a move from a proxy-only network to an open one',
    network: corporate(),
    events: [{ at: 4000, kind: 'move', to: open }],
    expectedVerdict: Verdict.NONE,
    expectedEncapsulation: Encapsulation.UDP,
  },
];
