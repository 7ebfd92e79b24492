/**
 * A NAPT with the behaviours RFC 4787 names. Mapping (§4.1): endpoint-independent,
 * address-dependent or address-and-port-dependent reuse of an external port. Filtering (§5): which
 * outside endpoints may send through a mapping (anyone, addresses the inside host sent to, or
 * exact address:port pairs it sent to). Port assignment (§4.2.1): port preservation on or off,
 * never port overloading. UDP mappings time out (§4.3, REQ-5 is 2 min; real NATs use as little as
 * 30 s, the default here), refreshed by outbound packets only unless `inboundRefresh` (REQ-6).
 * TCP mappings (RFC 5382 §5) are made by an outbound SYN, live while the connection does, and
 * die after the established idle timeout (REQ-5, 2 h 4 min) or the transitory one (4 min) once
 * closing. ICMP errors are translated through the mapping of the packet they quote (RFC 5508).
 * `rebind()` is NAT rebinding: every mapping forgotten, optionally a new external address.
 */
import type { Endpoint } from './address.ts';
import { BaseElement, type Hop } from './element.ts';
import type { Packet, TransportPacket } from './packet.ts';
import { TcpFlag } from './packet.ts';
import type { Timer } from './scheduler.ts';

export const NatBehavior = {
  ENDPOINT_INDEPENDENT: 'endpoint-independent',
  ADDRESS_DEPENDENT: 'address-dependent',
  ADDRESS_AND_PORT_DEPENDENT: 'address-and-port-dependent',
} as const;
export type NatBehavior = (typeof NatBehavior)[keyof typeof NatBehavior];

export interface NatOptions {
  readonly name?: string;
  /** The address the NAT shows the outside. */
  readonly externalAddr: string;
  /** Mapping behaviour (default endpoint-independent, RFC 4787 REQ-1). */
  readonly mapping?: NatBehavior;
  /** Filtering behaviour (default address-and-port-dependent, the common home-router one). */
  readonly filtering?: NatBehavior;
  /** Keep the inside port on the outside when it is free (default false). */
  readonly portPreservation?: boolean;
  /** UDP mapping lifetime without outbound traffic, ms (default 30 000). */
  readonly udpTimeout?: number;
  /** Inbound packets also refresh UDP mappings (default false: outbound only, REQ-6). */
  readonly inboundRefresh?: boolean;
  /** Idle lifetime of an established TCP mapping, ms (default 7 440 000, RFC 5382 REQ-5). */
  readonly tcpTimeout?: number;
  /** Lifetime of a TCP mapping before establishment or after FIN/RST, ms (default 240 000). */
  readonly tcpTransitoryTimeout?: number;
  /**
   * Pick up TCP segments without a mapping (other than SYN) by making one, as Linux conntrack's
   * "loose" mode does (default false: such segments are dropped).
   */
  readonly tcpLoose?: boolean;
  /** External port range (default 1024–65535). */
  readonly portRange?: readonly [number, number];
}

export interface NatMapping {
  readonly proto: 'udp' | 'tcp';
  readonly internal: Endpoint;
  readonly external: Endpoint;
  readonly created: number;
  readonly lastRefresh: number;
  readonly expiresAt: number;
  /** Outside endpoints the inside host has sent to through this mapping ("addr:port"). */
  readonly peers: readonly string[];
}

interface Mapping {
  readonly proto: 'udp' | 'tcp';
  readonly key: string;
  readonly internal: Endpoint;
  readonly external: Endpoint;
  readonly created: number;
  lastRefresh: number;
  /** Addresses and "addr:port" pairs the inside sent to: the filter state. */
  readonly sentTo: Set<string>;
  tcp: 'opening' | 'established' | 'closing';
  timer: Timer | undefined;
}

export class Nat extends BaseElement {
  readonly kind = 'nat';
  readonly mapping: NatBehavior;
  readonly filtering: NatBehavior;
  readonly opts: NatOptions;
  /** Mappings made, expired by timeout, flushed by rebind; inbound packets refused by filtering. */
  readonly counts = { created: 0, expired: 0, flushed: 0, filtered: 0 };
  #addr: string;
  readonly #byKey = new Map<string, Mapping>();
  readonly #byPort = new Map<string, Mapping>();

  constructor(opts: NatOptions) {
    super(opts.name);
    this.opts = opts;
    this.#addr = opts.externalAddr;
    this.mapping = opts.mapping ?? NatBehavior.ENDPOINT_INDEPENDENT;
    this.filtering = opts.filtering ?? NatBehavior.ADDRESS_AND_PORT_DEPENDENT;
  }

  externalAddress(): string {
    return this.#addr;
  }

  /** Live mappings, oldest first. */
  mappings(): NatMapping[] {
    return [...this.#byKey.values()].map((m) => ({
      proto: m.proto,
      internal: m.internal,
      external: m.external,
      created: m.created,
      lastRefresh: m.lastRefresh,
      expiresAt: m.lastRefresh + this.#lifetime(m),
      peers: [...m.sentTo].filter((s) => s.includes(':')),
    }));
  }

  /**
   * NAT rebinding: forgets every mapping (the inside hosts' next packets get new external ports)
   * and, if given, moves to a new external address.
   */
  rebind(opts: { externalAddr?: string } = {}): void {
    for (const m of this.#byKey.values()) {
      m.timer?.cancel();
      this.counts.flushed++;
    }
    this.#byKey.clear();
    this.#byPort.clear();
    const moved = opts.externalAddr !== undefined && opts.externalAddr !== this.#addr;
    if (opts.externalAddr !== undefined) this.#addr = opts.externalAddr;
    this.trace({ kind: 'nat', reason: 'rebind', info: `external=${this.#addr}` });
    if (moved && this.attached) this.ctx.topologyChanged();
  }

  process(pkt: Packet, hop: Hop): void {
    if (hop.dir === 'out') this.#outbound(pkt, hop);
    else this.#inbound(pkt, hop);
  }

  #outbound(pkt: Packet, hop: Hop): void {
    // Inside hosts here never originate ICMP; anything else would need RFC 5508 handling.
    if (pkt.proto === 'icmp') {
      hop.drop(pkt, 'nat-icmp-out');
      return;
    }
    const key = this.#mappingKey(pkt);
    let m = this.#byKey.get(key);
    if (m === undefined) {
      const isSyn =
        pkt.proto === 'tcp' && (pkt.tcp.flags & (TcpFlag.SYN | TcpFlag.ACK)) === TcpFlag.SYN;
      if (pkt.proto === 'tcp' && !isSyn && !this.opts.tcpLoose) {
        hop.drop(pkt, 'nat-no-mapping');
        return;
      }
      const made = this.#create(pkt, key);
      if (made === undefined) {
        hop.drop(pkt, 'nat-ports-exhausted');
        return;
      }
      m = made;
    }
    m.sentTo.add(pkt.dst.addr);
    m.sentTo.add(`${pkt.dst.addr}:${pkt.dst.port}`);
    if (pkt.proto === 'tcp') this.#tcpState(m, pkt.tcp.flags);
    this.#refresh(m);
    hop.forward({ ...pkt, src: m.external });
  }

  #inbound(pkt: Packet, hop: Hop): void {
    if (pkt.proto === 'icmp') {
      const orig = pkt.icmp.original;
      const m = this.#byPort.get(`${orig.proto}|${orig.src.port}`);
      if (pkt.dst.addr !== this.#addr || m === undefined || orig.src.addr !== m.external.addr) {
        hop.drop(pkt, 'nat-no-mapping');
        return;
      }
      const original: TransportPacket = { ...orig, src: m.internal };
      hop.forward({
        ...pkt,
        dst: { addr: m.internal.addr, port: 0 },
        icmp: { ...pkt.icmp, original },
      });
      return;
    }
    if (pkt.dst.addr !== this.#addr) {
      hop.drop(pkt, 'nat-not-mine');
      return;
    }
    const m = this.#byPort.get(`${pkt.proto}|${pkt.dst.port}`);
    if (m === undefined) {
      hop.drop(pkt, 'nat-no-mapping');
      return;
    }
    if (!this.#filterPasses(m, pkt.src)) {
      this.counts.filtered++;
      hop.drop(pkt, 'nat-filtered');
      return;
    }
    if (pkt.proto === 'tcp') {
      this.#tcpState(m, pkt.tcp.flags);
      this.#refresh(m);
    } else if (this.opts.inboundRefresh) this.#refresh(m);
    hop.forward({ ...pkt, dst: m.internal });
  }

  /** RFC 4787 §4.1: what an outbound packet's mapping depends on. */
  #mappingKey(pkt: TransportPacket): string {
    const base = `${pkt.proto}|${pkt.src.addr}:${pkt.src.port}`;
    switch (this.mapping) {
      case 'endpoint-independent':
        return base;
      case 'address-dependent':
        return `${base}|${pkt.dst.addr}`;
      case 'address-and-port-dependent':
        return `${base}|${pkt.dst.addr}:${pkt.dst.port}`;
    }
  }

  /** RFC 4787 §5: whether `from` may send in through `m`. */
  #filterPasses(m: Mapping, from: Endpoint): boolean {
    switch (this.filtering) {
      case 'endpoint-independent':
        return true;
      case 'address-dependent':
        return m.sentTo.has(from.addr);
      case 'address-and-port-dependent':
        return m.sentTo.has(`${from.addr}:${from.port}`);
    }
  }

  #create(pkt: TransportPacket, key: string): Mapping | undefined {
    const port = this.#allocatePort(pkt.proto, pkt.src.port);
    if (port === undefined) return undefined;
    const now = this.ctx.scheduler.now;
    const m: Mapping = {
      proto: pkt.proto,
      key,
      internal: pkt.src,
      external: { addr: this.#addr, port },
      created: now,
      lastRefresh: now,
      sentTo: new Set(),
      tcp: 'opening',
      timer: undefined,
    };
    this.#byKey.set(key, m);
    this.#byPort.set(`${pkt.proto}|${port}`, m);
    this.counts.created++;
    this.trace({
      kind: 'nat',
      reason: 'map',
      info: `${pkt.proto} ${pkt.src.addr}:${pkt.src.port} -> ${this.#addr}:${port}`,
    });
    return m;
  }

  /** RFC 4787 §4.2.1: preserve the inside port if asked and free, else a random free port. */
  #allocatePort(proto: string, wanted: number): number | undefined {
    const [lo, hi] = this.opts.portRange ?? [1024, 65535];
    const free = (p: number) => !this.#byPort.has(`${proto}|${p}`);
    if (this.opts.portPreservation && wanted >= lo && wanted <= hi && free(wanted)) return wanted;
    for (let i = 0; i < 32; i++) {
      const p = this.rng.int(lo, hi);
      if (free(p)) return p;
    }
    for (let p = lo; p <= hi; p++) if (free(p)) return p;
    return undefined;
  }

  #tcpState(m: Mapping, flags: number): void {
    const before = m.tcp;
    if (flags & (TcpFlag.FIN | TcpFlag.RST)) m.tcp = 'closing';
    else if (m.tcp === 'opening' && flags & TcpFlag.ACK && !(flags & TcpFlag.SYN)) {
      // The handshake's final ACK (or any later segment) shows both sides synchronised.
      m.tcp = 'established';
    }
    if (m.tcp !== before) this.#arm(m);
  }

  #lifetime(m: Mapping): number {
    if (m.proto === 'udp') return this.opts.udpTimeout ?? 30_000;
    return m.tcp === 'established'
      ? (this.opts.tcpTimeout ?? 7_440_000)
      : (this.opts.tcpTransitoryTimeout ?? 240_000);
  }

  #refresh(m: Mapping): void {
    m.lastRefresh = this.ctx.scheduler.now;
    if (m.timer === undefined) this.#arm(m);
  }

  /** One timer per mapping; when it fires early (the mapping was refreshed) it re-arms. */
  #arm(m: Mapping): void {
    m.timer?.cancel();
    const due = m.lastRefresh + this.#lifetime(m);
    const s = this.ctx.scheduler;
    m.timer = s.at(Math.max(due, s.now), () => {
      m.timer = undefined;
      if (this.#byKey.get(m.key) !== m) return;
      if (s.now < m.lastRefresh + this.#lifetime(m)) return this.#arm(m);
      this.#byKey.delete(m.key);
      this.#byPort.delete(`${m.proto}|${m.external.port}`);
      this.counts.expired++;
      this.trace({
        kind: 'nat',
        reason: 'expire',
        info: `${m.proto} ${m.internal.addr}:${m.internal.port} -> ${m.external.addr}:${m.external.port}`,
      });
    });
  }
}
