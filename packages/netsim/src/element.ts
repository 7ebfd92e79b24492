/**
 * The contract between a path and the things on it (links, NATs, firewalls). A path is a chain:
 * a packet leaving a host visits elements 0, 1, ... n-1 ("out") and then the internet; a packet
 * for the host arrives from the internet and visits n-1 ... 0 ("in"). Each element sees the packet,
 * and calls exactly one of forward (now or later), bounce (answer towards the sender) or drop.
 */
import { ElementStats } from './accounting.ts';
import type { Packet } from './packet.ts';
import type { Prng } from './prng.ts';
import type { Scheduler } from './scheduler.ts';
import type { TraceEvent } from './trace.ts';

export type Direction = 'out' | 'in';

/** What an element may use of the simulation: the clock, seeded randomness and the trace. */
export interface SimContext {
  readonly scheduler: Scheduler;
  /** An independent random stream for `label` (stable across runs with the same seed). */
  rng(label: string): Prng;
  /** True when someone listens to trace events (build records only then). */
  readonly tracing: boolean;
  trace(e: Omit<TraceEvent, 't'>): void;
  /** Tells the internet that public addresses may have moved (a NAT changed address). */
  topologyChanged(): void;
  /** A unique name for an element of `kind` ("nat1", "link3"). */
  autoName(kind: string): string;
}

/** The element's view of where the packet goes next. */
export interface Hop {
  readonly dir: Direction;
  /** Hands the packet to the next element in the same direction. */
  forward(pkt: Packet): void;
  /** Sends a packet back towards the sender of the current one (an RST or an ICMP error). */
  bounce(pkt: Packet): void;
  /** Discards the packet, counted under `reason`. */
  drop(pkt: Packet, reason: string): void;
}

export interface Element {
  readonly kind: string;
  readonly name: string;
  readonly stats: ElementStats;
  /** Called when the element is installed on a path; an element belongs to one network. */
  attach(ctx: SimContext): void;
  process(pkt: Packet, hop: Hop): void;
  /** The address the element shows the outside (a NAT's external address), or undefined. */
  externalAddress?(): string | undefined;
  /** Fixed one-way delay the element adds in direction d (no jitter, no queueing), ms. */
  baseDelay?(dir: Direction): number;
}

/** Shared plumbing: naming, the context, a private random stream. */
export abstract class BaseElement implements Element {
  abstract readonly kind: string;
  readonly stats = new ElementStats();
  #name: string | undefined;
  #ctx: SimContext | undefined;
  #rng: Prng | undefined;

  constructor(name?: string) {
    this.#name = name;
  }

  get name(): string {
    return this.#name ?? this.kind;
  }

  get attached(): boolean {
    return this.#ctx !== undefined;
  }

  protected get ctx(): SimContext {
    if (this.#ctx === undefined) throw new TypeError(`${this.name}: not installed on a path`);
    return this.#ctx;
  }

  protected get rng(): Prng {
    if (this.#rng === undefined) this.#rng = this.ctx.rng(`element/${this.name}`);
    return this.#rng;
  }

  attach(ctx: SimContext): void {
    if (this.#ctx === ctx) return;
    if (this.#ctx !== undefined) throw new TypeError(`${this.name}: already in another network`);
    this.#ctx = ctx;
    if (this.#name === undefined) this.#name = ctx.autoName(this.kind);
  }

  protected trace(e: Omit<TraceEvent, 't' | 'where'>): void {
    const c = this.#ctx;
    if (c?.tracing) c.trace({ ...e, where: this.name });
  }

  abstract process(pkt: Packet, hop: Hop): void;
}
