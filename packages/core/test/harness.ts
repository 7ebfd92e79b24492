/**
 * A tiny deterministic in-memory network for session tests: two endpoints, named paths, a fixed
 * one-way delay per path, virtual time. (The full simulator with NATs and firewalls lives in
 * packages/netsim; these tests need only delay and ordering.)
 */
import { randomBytes } from 'node:crypto';
import type {
  Authorization,
  Candidate,
  CryptoProvider,
  Encapsulation,
  Keypair,
  OuterView,
} from '../src/index.ts';
import { ClientSession, generateKeypair, nobleProvider, RelaySessions } from '../src/index.ts';

export const random = (n: number): Uint8Array => new Uint8Array(randomBytes(n));

export interface PathSpec {
  encapsulation: Encapsulation;
  client: OuterView;
  relay: OuterView;
  clientMax?: number;
  relayMax?: number;
}

interface InFlight {
  at: number;
  order: number;
  to: 'client' | 'relay';
  path: string;
  data: Uint8Array;
}

export interface Received {
  at: number;
  payload: Uint8Array;
  nextHeader: number;
}

export class Net {
  now = 1_700_000_000_000;
  client: ClientSession<string>;
  relay: RelaySessions<string>;
  readonly clientKeys: Keypair;
  readonly relayKeys: Keypair;
  readonly atClient: Received[] = [];
  readonly atRelay: Received[] = [];
  /** One-way delay per path in ms. */
  delay: Record<string, number> = { a: 10, b: 25 };
  /**
   * Per path: its encapsulation, what the client sent and what the relay observes, and the
   * largest datagram each side's transport takes there (absent: announced by neither).
   */
  paths: Record<string, PathSpec> = {};
  /** Called on every datagram in flight; return false to drop it. */
  filter: (d: InFlight) => boolean = () => true;
  #flight: InFlight[] = [];
  #order = 0;
  readonly #newClient: () => ClientSession<string>;
  readonly #newRelay: () => RelaySessions<string>;

  /**
   * The relay starts over (a restart, a crash): a new RelaySessions with the same static key and
   * no peers. What was in flight to the old one reaches the new one.
   */
  restartRelay(): void {
    this.relay = this.#newRelay();
  }

  /**
   * The client starts over (a restart, a page reload): a new ClientSession with the same static
   * key. What was in flight to the old one reaches the new one (and finds no SA).
   */
  restartClient(): void {
    this.client = this.#newClient();
  }

  constructor(
    o: {
      clientProvider?: CryptoProvider;
      relayProvider?: CryptoProvider;
      authorize?: (k: Uint8Array) => Authorization;
      clientPsk?: Uint8Array;
      client?: Partial<ConstructorParameters<typeof ClientSession<string>>[0]>;
      relay?: Partial<ConstructorParameters<typeof RelaySessions<string>>[0]>;
    } = {},
  ) {
    this.clientKeys = generateKeypair(random);
    this.relayKeys = generateKeypair(random);
    const clientPub = this.clientKeys.publicKey;
    this.#newClient = () =>
      new ClientSession<string>({
        staticKeypair: this.clientKeys,
        relayStaticKey: this.relayKeys.publicKey,
        provider: o.clientProvider ?? nobleProvider,
        random,
        ...(o.clientPsk ? { psk: o.clientPsk } : {}),
        ...o.client,
      });
    this.client = this.#newClient();
    this.#newRelay = () =>
      new RelaySessions<string>({
        staticKeypair: this.relayKeys,
        provider: o.relayProvider ?? nobleProvider,
        random,
        authorize:
          o.authorize ?? ((k) => ({ allowed: Buffer.from(k).equals(Buffer.from(clientPub)) })),
        ...o.relay,
      });
    this.relay = this.#newRelay();
  }

  /** Puts a datagram on the wire. */
  wire(to: 'client' | 'relay', path: string, data: Uint8Array): void {
    const d: InFlight = {
      at: this.now + (this.delay[path] ?? 10),
      order: this.#order++,
      to,
      path,
      data,
    };
    if (this.filter(d)) this.#flight.push(d);
  }

  /** Moves every queued transmit of both sides onto the wire. */
  drain(): void {
    for (let t = this.client.pollTransmit(); t; t = this.client.pollTransmit())
      this.wire('relay', t.path, t.data);
    for (let t = this.relay.pollTransmit(); t; t = this.relay.pollTransmit())
      this.wire('client', t.path, t.data);
  }

  /** A path's description, by default plain UDP with nothing translated. */
  pathOf(name: string): PathSpec {
    const p = this.paths[name];
    if (p) return p;
    const port = 40_000 + name.charCodeAt(0);
    const view: OuterView = {
      srcAddr: '198.18.0.2',
      srcPort: port,
      dstAddr: '198.18.1.1',
      dstPort: 4500,
    };
    return { encapsulation: 1, client: view, relay: view };
  }

  candidates(names: string[]): Candidate<string>[] {
    return names.map((n) => {
      const p = this.pathOf(n);
      return {
        path: n,
        info: {
          encapsulation: p.encapsulation,
          view: p.client,
          ...(p.clientMax !== undefined ? { maxDatagram: p.clientMax } : {}),
        },
      };
    });
  }

  clientSend(payload: Uint8Array, nh = 253): void {
    const pkt = this.client.send(payload, nh, this.now);
    if (pkt) for (const p of this.client.dataPaths) this.wire('relay', p, pkt);
    this.drain();
  }

  relaySend(payload: Uint8Array, nh = 253): void {
    const peer = [...this.relay.peers.values()][0];
    if (!peer) throw new Error('no peer');
    const pkt = this.relay.send(peer, payload, nh, this.now);
    if (pkt && peer.path !== undefined) this.wire('client', peer.path, pkt);
    this.drain();
  }

  /** Advances virtual time to `t`, delivering datagrams and firing timers in order. */
  runUntil(t: number): void {
    for (;;) {
      this.drain();
      this.#flight.sort((x, y) => x.at - y.at || x.order - y.order);
      const nextPkt = this.#flight[0]?.at ?? Number.POSITIVE_INFINITY;
      const nextTimer = Math.min(
        this.client.nextTimeout() ?? Number.POSITIVE_INFINITY,
        this.relay.nextTimeout() ?? Number.POSITIVE_INFINITY,
      );
      const next = Math.min(nextPkt, nextTimer);
      if (next > t) break;
      this.now = Math.max(this.now, next);
      if (nextPkt <= nextTimer) {
        const d = this.#flight.shift()!;
        if (d.to === 'relay') {
          const p = this.pathOf(d.path);
          const got = this.relay.receive(d.data, d.path, this.now, {
            encapsulation: p.encapsulation,
            view: p.relay,
            ...(p.relayMax !== undefined ? { maxDatagram: p.relayMax } : {}),
          });
          if (got)
            this.atRelay.push({
              at: this.now,
              payload: got.payload.slice(),
              nextHeader: got.nextHeader,
            });
        } else {
          const got = this.client.receive(d.data, d.path, this.now);
          if (got)
            this.atClient.push({
              at: this.now,
              payload: got.payload.slice(),
              nextHeader: got.nextHeader,
            });
        }
      } else {
        this.client.handleTimeout(this.now);
        this.relay.handleTimeout(this.now);
      }
    }
    this.now = Math.max(this.now, t);
  }

  connect(paths = ['a']): void {
    this.client.connect(this.candidates(paths), this.now);
    this.drain();
  }
}

/** A payload that names its own index, to check order and exactly-once delivery. */
export function numbered(i: number, size = 64): Uint8Array {
  const b = new Uint8Array(size);
  new DataView(b.buffer).setUint32(0, i);
  return b;
}

export function indexOf(b: Uint8Array): number {
  return new DataView(b.buffer, b.byteOffset, b.byteLength).getUint32(0);
}
