/**
 * A host: interfaces (each with an address and a path to the internet) and the socket layer on
 * top (UDP sockets, TCP connections and listeners). It behaves as an operating system does where
 * roamlink cares: an unbound socket's source address follows the default interface, a socket
 * bound to an address that disappeared fails with EADDRNOTAVAIL, and when an address goes away
 * its TCP connections are aborted (mobile systems destroy them; `addressLoss: 'keep'` leaves them
 * to time out instead, as a desktop Linux does).
 */
import { type Endpoint, formatEndpoint, isIpv4 } from './address.ts';
import type { Element } from './element.ts';
import { NetError, type NetErrorCode } from './errors.ts';
import type { Network } from './network.ts';
import { type Packet, resetFor, TcpFlag, type TcpPacket, wireSize } from './packet.ts';
import { Path, type PathEnd } from './path.ts';
import type { Prng } from './prng.ts';
import { TcpConnection, TcpListener, type TcpOptions } from './tcp.ts';
import { UdpSocket } from './udp.ts';

export interface HostOptions {
  /** What happens to TCP connections when their local address goes away (default "abort"). */
  readonly addressLoss?: 'abort' | 'keep';
  /** Defaults for this host's TCP connections. */
  readonly tcp?: TcpOptions;
}

export interface InterfaceOptions {
  /** The interface's address; omit for an interface that has none yet. */
  readonly addr?: string;
  /** Elements from this interface out to the internet (default none: directly on the internet). */
  readonly chain?: readonly Element[];
  /** Interface MTU in bytes (default 1500). */
  readonly mtu?: number;
  /** Route preference: the up interface with the lowest metric is the default (default 0). */
  readonly metric?: number;
}

/** What the host (as an operating system would) tells applications about its networks. */
export interface NetworkChange {
  readonly iface: string;
  readonly kind: 'address' | 'up' | 'down' | 'network';
  readonly addr: string | undefined;
  readonly previous?: string | undefined;
}

export class Interface implements PathEnd {
  readonly host: Host;
  readonly name: string;
  readonly mtu: number;
  readonly metric: number;
  #addr: string | undefined;
  #up = true;
  #path: Path;

  constructor(host: Host, name: string, opts: InterfaceOptions) {
    if (opts.addr !== undefined && !isIpv4(opts.addr)) {
      throw new TypeError(`bad address ${opts.addr}`);
    }
    this.host = host;
    this.name = name;
    this.mtu = opts.mtu ?? 1500;
    this.metric = opts.metric ?? 0;
    this.#addr = opts.addr;
    this.#path = new Path(host.net, host.net, this, opts.chain ?? []);
    host.net.addPath(this.#path);
  }

  get label(): string {
    return `${this.host.name}/${this.name}`;
  }

  get addr(): string | undefined {
    return this.#addr;
  }

  get up(): boolean {
    return this.#up;
  }

  get path(): Path {
    return this.#path;
  }

  /** Whether the interface can send now. */
  get usable(): boolean {
    return this.#up && this.#addr !== undefined;
  }

  /**
   * Changes (or removes, with undefined) the address. Sockets bound to the old one break as the
   * host's `addressLoss` policy says; applications get a NetworkChange.
   */
  setAddress(addr: string | undefined): void {
    if (addr !== undefined && !isIpv4(addr)) throw new TypeError(`bad address ${addr}`);
    const old = this.#addr;
    if (old === addr) return;
    this.#addr = addr;
    this.host.net.topologyChanged();
    this.#traceChange('address', `${old ?? '-'} -> ${addr ?? '-'}`);
    if (old !== undefined) this.host.addressLost(old);
    this.host.notify({ iface: this.name, kind: 'address', addr, previous: old });
  }

  /**
   * Replaces the path (a move to another network); packets on the old path are lost. With
   * `silent` the host is not told (the change happened beyond its own link).
   */
  setChain(chain: readonly Element[], opts: { silent?: boolean } = {}): void {
    const old = this.#path;
    old.deactivate();
    this.host.net.removePath(old);
    this.#path = new Path(this.host.net, this.host.net, this, chain);
    this.host.net.addPath(this.#path);
    this.#traceChange('network', chain.map((e) => e.name).join(',') || '(direct)');
    if (!opts.silent) this.host.notify({ iface: this.name, kind: 'network', addr: this.#addr });
  }

  /** Moves to another network: new path and, usually, a new address, as one change. */
  move(to: { chain: readonly Element[]; addr?: string }): void {
    this.setChain(to.chain, { silent: true });
    if (to.addr !== undefined && to.addr !== this.#addr) this.setAddress(to.addr);
    else this.host.notify({ iface: this.name, kind: 'network', addr: this.#addr });
  }

  /** Interface down (no carrier): sends fail, arriving packets are lost; sockets survive. */
  setUp(up: boolean): void {
    if (up === this.#up) return;
    this.#up = up;
    this.#traceChange(up ? 'up' : 'down', '');
    this.host.notify({ iface: this.name, kind: up ? 'up' : 'down', addr: this.#addr });
  }

  receive(pkt: Packet, _from: Path): void {
    const net = this.host.net;
    if (!this.#up || pkt.dst.addr !== this.#addr) {
      if (net.tracing) {
        net.trace({
          kind: 'drop',
          where: this.label,
          reason: this.#up ? 'not-local' : 'iface-down',
          pkt,
        });
      }
      return;
    }
    this.host.deliver(pkt, this);
  }

  #traceChange(reason: string, info: string): void {
    const net = this.host.net;
    if (net.tracing) net.trace({ kind: 'iface', where: this.label, reason, info });
  }
}

export class Host {
  readonly net: Network;
  readonly name: string;
  readonly opts: HostOptions;
  readonly rng: Prng;
  /** Told about address, up/down and network changes, as a runtime's network-change event. */
  onNetworkChange: ((c: NetworkChange) => void) | undefined;
  readonly #ifaces: Interface[] = [];
  readonly #udp = new Map<number, UdpSocket[]>();
  readonly #tcp = new Map<string, TcpConnection>();
  readonly #listeners = new Map<number, TcpListener[]>();
  readonly #usedPorts = { udp: new Set<number>(), tcp: new Set<number>() };

  constructor(net: Network, name: string, opts: HostOptions) {
    this.net = net;
    this.name = name;
    this.opts = opts;
    this.rng = net.rng(`host/${name}`);
  }

  get now(): number {
    return this.net.now;
  }

  get interfaces(): readonly Interface[] {
    return this.#ifaces;
  }

  addInterface(name: string, opts: InterfaceOptions = {}): Interface {
    if (this.#ifaces.some((i) => i.name === name)) throw new TypeError(`${name} exists`);
    const i = new Interface(this, name, opts);
    this.#ifaces.push(i);
    return i;
  }

  iface(name: string): Interface {
    const i = this.#ifaces.find((x) => x.name === name);
    if (i === undefined) throw new TypeError(`${this.name} has no interface ${name}`);
    return i;
  }

  /** The interface unbound sockets send through: the usable one with the lowest metric. */
  defaultInterface(): Interface | undefined {
    let best: Interface | undefined;
    for (const i of this.#ifaces)
      if (i.usable && (best === undefined || i.metric < best.metric)) best = i;
    return best;
  }

  /** The interface that has `addr` now, up or not. */
  interfaceWith(addr: string): Interface | undefined {
    return this.#ifaces.find((i) => i.addr === addr);
  }

  /** Opens a UDP socket on `port` (default: an ephemeral one), optionally pinned. */
  bindUdp(port?: number, opts: { addr?: string; iface?: string } = {}): UdpSocket {
    if (opts.addr !== undefined && this.interfaceWith(opts.addr) === undefined) {
      throw new NetError('EADDRNOTAVAIL', `${opts.addr} is not an address of ${this.name}`);
    }
    if (opts.iface !== undefined) this.iface(opts.iface);
    const p = port ?? this.ephemeralPort('udp');
    const list = this.#udp.get(p) ?? [];
    if (
      list.some(
        (s) => s.boundAddr === undefined || opts.addr === undefined || s.boundAddr === opts.addr,
      )
    ) {
      throw new NetError('EADDRINUSE', `udp port ${p} on ${this.name}`);
    }
    const s = new UdpSocket(this, p, opts.addr, opts.iface);
    list.push(s);
    this.#udp.set(p, list);
    this.#usedPorts.udp.add(p);
    return s;
  }

  /** Opens a TCP connection to `dst`; events arrive on the returned connection. */
  connect(
    dst: Endpoint,
    opts: TcpOptions & { addr?: string; iface?: string; port?: number } = {},
  ): TcpConnection {
    const o = { ...this.opts.tcp, ...opts };
    const via =
      opts.iface !== undefined
        ? this.iface(opts.iface)
        : opts.addr !== undefined
          ? this.interfaceWith(opts.addr)
          : this.defaultInterface();
    const laddr = opts.addr ?? via?.addr;
    const port = opts.port ?? this.ephemeralPort('tcp');
    const conn = new TcpConnection(
      this,
      { addr: laddr ?? '0.0.0.0', port },
      dst,
      o,
      via?.mtu ?? 1500,
    );
    if (via === undefined || laddr === undefined || !via.usable) {
      const code: NetErrorCode =
        opts.addr !== undefined && via === undefined ? 'EADDRNOTAVAIL' : 'ENETUNREACH';
      this.net.after(0, () => conn.fail(code));
      return conn;
    }
    this.#tcp.set(conn.key, conn);
    this.#usedPorts.tcp.add(port);
    conn.open();
    return conn;
  }

  /** Accepts TCP connections on `port`; `onConnection` runs when a handshake completes. */
  listen(
    port: number,
    onConnection: (c: TcpConnection) => void,
    opts: TcpOptions & { addr?: string } = {},
  ): TcpListener {
    const list = this.#listeners.get(port) ?? [];
    if (list.some((l) => l.addr === undefined || opts.addr === undefined || l.addr === opts.addr)) {
      throw new NetError('EADDRINUSE', `tcp port ${port} on ${this.name}`);
    }
    const { addr, ...tcp } = opts;
    const l = new TcpListener(this, port, addr, onConnection, { ...this.opts.tcp, ...tcp });
    list.push(l);
    this.#listeners.set(port, list);
    this.#usedPorts.tcp.add(port);
    return l;
  }

  /** TCP connections currently known to the host (any state but closed). */
  get connections(): readonly TcpConnection[] {
    return [...this.#tcp.values()];
  }

  /** @internal A random free port in Linux's default ephemeral range. */
  ephemeralPort(proto: 'udp' | 'tcp'): number {
    const used = this.#usedPorts[proto];
    for (;;) {
      const p = this.rng.int(32768, 60999);
      if (!used.has(p)) return p;
    }
  }

  /**
   * @internal Hands a packet to the interface that owns its source address (or `via`). Returns
   * the errno a real send would fail with, or undefined when the packet left.
   */
  transmit(pkt: Packet, via?: Interface): NetErrorCode | undefined {
    const iface = via ?? this.interfaceWith(pkt.src.addr);
    const size = wireSize(pkt);
    const err: NetErrorCode | undefined =
      iface === undefined || iface.addr !== pkt.src.addr
        ? 'EADDRNOTAVAIL'
        : !iface.up
          ? 'ENETDOWN'
          : size > iface.mtu
            ? 'EMSGSIZE'
            : undefined;
    if (err !== undefined || iface === undefined) {
      const reason = err ?? 'EADDRNOTAVAIL';
      if (this.net.tracing) this.net.trace({ kind: 'drop', where: this.name, reason, pkt });
      return reason;
    }
    this.net.flows.record('sent', `${this.name} ${flowOf(pkt)}`, size);
    if (this.net.tracing) this.net.trace({ kind: 'send', where: iface.label, pkt });
    const path = iface.path;
    // A NIC hands packets on asynchronously: nothing a send does runs inside the caller.
    this.net.after(0, () => path.sendOut(pkt));
    return undefined;
  }

  /** @internal A packet for one of this host's addresses arrived on `iface`. */
  deliver(pkt: Packet, iface: Interface): void {
    this.net.flows.record('received', `${this.name} ${flowOf(pkt, true)}`, wireSize(pkt));
    if (this.net.tracing) this.net.trace({ kind: 'deliver', where: iface.label, pkt });
    switch (pkt.proto) {
      case 'udp': {
        const list = this.#udp.get(pkt.dst.port);
        const s =
          list?.find((x) => x.boundAddr === pkt.dst.addr) ??
          list?.find(
            (x) => x.boundAddr === undefined && (x.iface === undefined || x.iface === iface.name),
          );
        if (s !== undefined) s.receive(pkt, iface);
        else if (this.net.tracing) {
          this.net.trace({ kind: 'drop', where: this.name, reason: 'no-socket', pkt });
        }
        return;
      }
      case 'tcp': {
        this.#deliverTcp(pkt, iface);
        return;
      }
      case 'icmp': {
        const o = pkt.icmp.original;
        if (o.proto === 'udp') {
          this.#udp
            .get(o.src.port)
            ?.find((x) => x.boundAddr === undefined || x.boundAddr === o.src.addr)
            ?.icmp(pkt);
        } else {
          this.#tcp.get(tcpKey(o.src, o.dst))?.icmp(pkt);
        }
        return;
      }
    }
  }

  #deliverTcp(pkt: TcpPacket, iface: Interface): void {
    const c = this.#tcp.get(tcpKey(pkt.dst, pkt.src));
    if (c !== undefined) {
      c.segment(pkt);
      return;
    }
    const f = pkt.tcp.flags;
    if ((f & (TcpFlag.SYN | TcpFlag.ACK | TcpFlag.RST)) === TcpFlag.SYN) {
      const l =
        this.#listeners.get(pkt.dst.port)?.find((x) => x.addr === pkt.dst.addr) ??
        this.#listeners.get(pkt.dst.port)?.find((x) => x.addr === undefined);
      if (l !== undefined && !l.closed) {
        const conn = new TcpConnection(this, pkt.dst, pkt.src, l.opts, iface.mtu, l);
        this.#tcp.set(conn.key, conn);
        conn.accept(pkt);
        return;
      }
    }
    // RFC 9293 §3.10.7.1: anything for no connection is answered with a reset (never a reset).
    if (!(f & TcpFlag.RST)) this.transmit(resetFor(pkt), iface);
  }

  /** @internal */
  forget(conn: TcpConnection): void {
    if (this.#tcp.get(conn.key) === conn) this.#tcp.delete(conn.key);
    if (
      ![...this.#tcp.values()].some((c) => c.local.port === conn.local.port) &&
      !this.#listeners.has(conn.local.port)
    ) {
      this.#usedPorts.tcp.delete(conn.local.port);
    }
  }

  /** @internal */
  closeUdp(s: UdpSocket): void {
    const list = (this.#udp.get(s.port) ?? []).filter((x) => x !== s);
    if (list.length === 0) {
      this.#udp.delete(s.port);
      this.#usedPorts.udp.delete(s.port);
    } else this.#udp.set(s.port, list);
  }

  /** @internal */
  closeListener(l: TcpListener): void {
    const list = (this.#listeners.get(l.port) ?? []).filter((x) => x !== l);
    if (list.length === 0) this.#listeners.delete(l.port);
    else this.#listeners.set(l.port, list);
  }

  /** @internal An address went away: break what was bound to it, as the OS would. */
  addressLost(addr: string): void {
    if ((this.opts.addressLoss ?? 'abort') === 'keep') return;
    for (const c of [...this.#tcp.values()]) if (c.local.addr === addr) c.fail('ECONNABORTED');
  }

  /** @internal */
  notify(c: NetworkChange): void {
    const cb = this.onNetworkChange;
    if (cb !== undefined) this.net.after(0, () => cb(c));
  }

  /** @internal */
  traceSocket(kind: 'tcp' | 'udp', where: string, reason: string, info?: string): void {
    if (this.net.tracing) {
      this.net.trace(info === undefined ? { kind, where, reason } : { kind, where, reason, info });
    }
  }
}

function tcpKey(local: Endpoint, remote: Endpoint): string {
  return `${formatEndpoint(local)}>${formatEndpoint(remote)}`;
}

/** "proto local>remote" from the host's side, the same key for both directions of a flow. */
function flowOf(pkt: Packet, inbound = false): string {
  if (pkt.proto === 'icmp') return `icmp ${pkt.dst.addr}<${pkt.src.addr}`;
  return inbound
    ? `${pkt.proto} ${formatEndpoint(pkt.dst)}>${formatEndpoint(pkt.src)}`
    : `${pkt.proto} ${formatEndpoint(pkt.src)}>${formatEndpoint(pkt.dst)}`;
}
