/**
 * The simulation root: the virtual clock, the seed, the hosts, and the internet between them. The
 * internet is a router with no delay of its own (delay lives in links): a packet leaving the outer
 * end of one path is handed to the path that owns its destination address, that is the path whose
 * outermost NAT has that external address, or whose interface has it when there is no NAT.
 */
import { FlowTable } from './accounting.ts';
import type { SimContext } from './element.ts';
import { Host, type HostOptions, type Interface } from './host.ts';
import type { Packet } from './packet.ts';
import type { Path, Router } from './path.ts';
import { Prng } from './prng.ts';
import { Scheduler, type Timer } from './scheduler.ts';
import type { TraceEvent } from './trace.ts';

export interface NetworkOptions {
  /** Everything random in the run derives from this (default 1). */
  readonly seed?: number | string;
}

export class Network implements SimContext, Router {
  readonly scheduler = new Scheduler();
  readonly seed: number | string;
  /** Per-flow packet and byte totals as the end hosts see them. */
  readonly flows = new FlowTable();
  /** Packets that reached the internet for an address no path owns. */
  unroutable = 0;
  /** Trace listener; set it to see every step of the run. */
  onEvent: ((e: TraceEvent) => void) | undefined;
  readonly #root: Prng;
  readonly #hosts = new Map<string, Host>();
  readonly #paths = new Set<Path>();
  readonly #names = new Map<string, string>();
  readonly #autoNames = new Map<string, number>();
  #routes: Map<string, Path> | undefined;

  constructor(opts: NetworkOptions = {}) {
    this.seed = opts.seed ?? 1;
    this.#root = new Prng(this.seed);
  }

  get now(): number {
    return this.scheduler.now;
  }

  get tracing(): boolean {
    return this.onEvent !== undefined;
  }

  trace(e: Omit<TraceEvent, 't'>): void {
    this.onEvent?.({ t: this.scheduler.now, ...e });
  }

  rng(label: string): Prng {
    return this.#root.fork(label);
  }

  autoName(kind: string): string {
    const n = (this.#autoNames.get(kind) ?? 0) + 1;
    this.#autoNames.set(kind, n);
    return `${kind}${n}`;
  }

  addHost(name: string, opts: HostOptions = {}): Host {
    if (this.#hosts.has(name)) throw new TypeError(`host ${name} exists`);
    const h = new Host(this, name, opts);
    this.#hosts.set(name, h);
    return h;
  }

  host(name: string): Host {
    const h = this.#hosts.get(name);
    if (h === undefined) throw new TypeError(`no host ${name}`);
    return h;
  }

  get hosts(): readonly Host[] {
    return [...this.#hosts.values()];
  }

  /** A tiny name service for the HTTP proxy and tests: name -> address. */
  setName(name: string, addr: string): void {
    this.#names.set(name.toLowerCase(), addr);
  }

  resolve(name: string): string | undefined {
    return this.#names.get(name.toLowerCase());
  }

  at(t: number, fn: () => void): Timer {
    return this.scheduler.at(t, fn);
  }

  after(dt: number, fn: () => void): Timer {
    return this.scheduler.after(dt, fn);
  }

  /** Runs for `dt` ms of virtual time. */
  run(dt: number): void {
    this.scheduler.run(dt);
  }

  runUntil(t: number): void {
    this.scheduler.runUntil(t);
  }

  runUntilIdle(maxT?: number): boolean {
    return this.scheduler.runUntilIdle(maxT);
  }

  /**
   * The round-trip time between two interfaces from fixed link delays alone (no jitter, queueing
   * or serialisation): the unit scenario results are measured in.
   */
  baseRtt(a: Interface, b: Interface): number {
    return (
      a.path.baseDelay('out') +
      b.path.baseDelay('in') +
      b.path.baseDelay('out') +
      a.path.baseDelay('in')
    );
  }

  /** @internal Interfaces register the paths they install. */
  addPath(p: Path): void {
    this.#paths.add(p);
    this.#routes = undefined;
  }

  /** @internal */
  removePath(p: Path): void {
    this.#paths.delete(p);
    this.#routes = undefined;
  }

  topologyChanged(): void {
    this.#routes = undefined;
  }

  /** The path that owns a public address now, if any. */
  pathFor(addr: string): Path | undefined {
    if (this.#routes === undefined) this.#routes = this.#buildRoutes();
    return this.#routes.get(addr);
  }

  route(pkt: Packet, _from: Path): void {
    const to = this.pathFor(pkt.dst.addr);
    if (to === undefined) {
      this.unroutable++;
      if (this.tracing) this.trace({ kind: 'drop', where: 'internet', reason: 'no-route', pkt });
      return;
    }
    to.sendIn(pkt);
  }

  #buildRoutes(): Map<string, Path> {
    const m = new Map<string, Path>();
    for (const p of this.#paths) {
      const a = p.publicAddress();
      if (a === undefined) continue;
      const other = m.get(a);
      if (other !== undefined) {
        throw new TypeError(
          `address ${a} is claimed by both ${other.end.label} and ${p.end.label}`,
        );
      }
      m.set(a, p);
    }
    return m;
  }
}
