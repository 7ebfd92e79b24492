/**
 * A path is the chain of elements between one host interface and the internet: links, NATs,
 * firewalls, in order from the host outwards. Swapping an interface's path is what a move is;
 * packets still on the old path when it is swapped out are lost, as they would be on a network
 * the device has left. A path may also be black-holed: everything that reaches its outer end is
 * silently discarded, while the host sees nothing wrong.
 */
import type { Direction, Element, Hop, SimContext } from './element.ts';
import { type Packet, wireSize } from './packet.ts';

/** The host side of a path (an interface). */
export interface PathEnd {
  readonly label: string;
  /** The interface's own address (what the outside sees when no NAT is on the path). */
  readonly addr: string | undefined;
  receive(pkt: Packet, from: Path): void;
}

/** Where packets go when they leave the outer end of a path. */
export interface Router {
  route(pkt: Packet, from: Path): void;
}

export class Path {
  readonly end: PathEnd;
  readonly elements: readonly Element[];
  #active = true;
  #blackholed = false;
  readonly #ctx: SimContext;
  readonly #router: Router;
  /** Hops per element, [out, in]: allocated once so that moving a packet allocates nothing. */
  readonly #hops: (readonly [Hop, Hop])[];

  constructor(ctx: SimContext, router: Router, end: PathEnd, elements: readonly Element[]) {
    this.#ctx = ctx;
    this.#router = router;
    this.end = end;
    this.elements = elements;
    for (const el of elements) el.attach(ctx);
    this.#hops = elements.map((_, i) => [this.#hop(i, 'out'), this.#hop(i, 'in')] as const);
  }

  get active(): boolean {
    return this.#active;
  }

  get blackholed(): boolean {
    return this.#blackholed;
  }

  /** A path that has been swapped out carries nothing any more. */
  deactivate(): void {
    this.#active = false;
  }

  setBlackhole(on: boolean): void {
    this.#blackholed = on;
  }

  /** The address the internet knows this path by: the outermost NAT's, else the interface's. */
  publicAddress(): string | undefined {
    for (let i = this.elements.length - 1; i >= 0; i--) {
      const a = this.elements[i]!.externalAddress?.();
      if (a !== undefined) return a;
    }
    return this.end.addr;
  }

  /** Sum of the elements' fixed one-way delays in direction d, ms (no jitter, no queues). */
  baseDelay(dir: Direction): number {
    let d = 0;
    for (const el of this.elements) d += el.baseDelay?.(dir) ?? 0;
    return d;
  }

  /** A packet from the host enters the innermost element. */
  sendOut(pkt: Packet): void {
    this.#enter(pkt, 'out', 0);
  }

  /** A packet from the internet enters the outermost element. */
  sendIn(pkt: Packet): void {
    if (this.#blackholed) {
      this.#lost(pkt, 'in', 'blackhole');
      return;
    }
    this.#enter(pkt, 'in', this.elements.length - 1);
  }

  #enter(pkt: Packet, dir: Direction, i: number): void {
    if (!this.#active) {
      this.#lost(pkt, dir, 'path-gone');
      return;
    }
    if (i >= this.elements.length) {
      if (this.#blackholed) {
        this.#lost(pkt, dir, 'blackhole');
        return;
      }
      this.#router.route(pkt, this);
      return;
    }
    if (i < 0) {
      this.end.receive(pkt, this);
      return;
    }
    const el = this.elements[i]!;
    el.stats.dir(dir).count(wireSize(pkt));
    el.process(pkt, this.#hops[i]![dir === 'out' ? 0 : 1]);
  }

  #lost(pkt: Packet, dir: Direction, reason: string): void {
    if (this.#ctx.tracing) {
      this.#ctx.trace({ kind: 'drop', where: `${this.end.label}/${dir}`, reason, pkt });
    }
  }

  #hop(i: number, dir: Direction): Hop {
    const step = dir === 'out' ? 1 : -1;
    const el = this.elements[i]!;
    const ctx = this.#ctx;
    return {
      dir,
      forward: (pkt) => this.#enter(pkt, dir, i + step),
      bounce: (pkt) => {
        if (ctx.tracing) ctx.trace({ kind: 'reply', where: el.name, pkt });
        this.#enter(pkt, dir === 'out' ? 'in' : 'out', i - step);
      },
      drop: (pkt, reason) => {
        el.stats.dir(dir).drop(wireSize(pkt), reason);
        if (ctx.tracing) ctx.trace({ kind: 'drop', where: el.name, reason, pkt });
      },
    };
  }
}
