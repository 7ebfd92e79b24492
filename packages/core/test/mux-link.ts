/**
 * Two Mux instances over a seeded virtual-time link: delay, jitter, random loss, reordering,
 * duplication, an optional bottleneck (rate and queue), and a switch to black-hole a direction.
 * Everything is deterministic for a given seed.
 */
import assert from 'node:assert/strict';
import type { MuxEvent, MuxOptions } from '../src/index.ts';
import { Mux } from '../src/index.ts';

/** mulberry32: a small seeded PRNG (not for cryptography). */
export class Rng {
  #s: number;
  constructor(seed: number) {
    this.#s = seed >>> 0;
  }
  next(): number {
    this.#s = (this.#s + 0x6d2b79f5) >>> 0;
    let t = this.#s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
}

export interface LinkOptions {
  delayMs: number;
  jitterMs?: number;
  loss?: number;
  /** Probability that a packet is held back an extra `reorderMs`, so later ones overtake it. */
  reorder?: number;
  reorderMs?: number;
  dup?: number;
  /** Bottleneck rate in bytes per ms (unlimited if absent) and its queue in ms. */
  rate?: number;
  queueMs?: number;
  /** Packets longer than this are dropped (a path MTU), if set. */
  mtu?: number;
}

export type Side = 'client' | 'relay';

interface Flight {
  at: number;
  seq: number;
  to: Side;
  data: Uint8Array;
}

export class Link {
  o: LinkOptions;
  /** While true, everything sent this way is lost. */
  blackhole = false;
  #freeAt = 0;
  readonly #rng: Rng;
  sent = 0;
  dropped = 0;
  /** Of `dropped`: packets over `mtu`. */
  tooBig = 0;
  constructor(o: LinkOptions, rng: Rng) {
    this.o = o;
    this.#rng = rng;
  }
  /** Arrival times for one packet sent at `now` (empty: lost; two: duplicated). */
  schedule(now: number, size: number): number[] {
    this.sent++;
    const r = this.#rng;
    if (this.o.mtu !== undefined && size > this.o.mtu) {
      this.dropped++;
      this.tooBig++;
      return [];
    }
    if (this.blackhole || r.next() < (this.o.loss ?? 0)) {
      this.dropped++;
      return [];
    }
    let depart = now;
    if (this.o.rate !== undefined) {
      const start = Math.max(now, this.#freeAt);
      if (start - now > (this.o.queueMs ?? 50)) {
        this.dropped++;
        return [];
      }
      this.#freeAt = start + size / this.o.rate;
      depart = this.#freeAt;
    }
    const one = (): number => {
      let t = depart + this.o.delayMs + (this.o.jitterMs ?? 0) * r.next();
      if (r.next() < (this.o.reorder ?? 0)) t += this.o.reorderMs ?? 2 * this.o.delayMs;
      return t;
    };
    const out = [one()];
    if (r.next() < (this.o.dup ?? 0)) out.push(one());
    return out;
  }
}

export interface PairOptions {
  seed?: number;
  link?: LinkOptions;
  client?: Partial<MuxOptions>;
  relay?: Partial<MuxOptions>;
  start?: number;
}

/** Min-heap of packets on the wire by (arrival time, send order). */
class FlightHeap {
  #a: Flight[] = [];
  get size(): number {
    return this.#a.length;
  }
  clear(): void {
    this.#a = [];
  }
  peek(): Flight | undefined {
    return this.#a[0];
  }
  #less(x: Flight, y: Flight): boolean {
    return x.at < y.at || (x.at === y.at && x.seq < y.seq);
  }
  push(f: Flight): void {
    const a = this.#a;
    a.push(f);
    let i = a.length - 1;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (!this.#less(a[i]!, a[p]!)) break;
      [a[i], a[p]] = [a[p]!, a[i]!];
      i = p;
    }
  }
  pop(): Flight | undefined {
    const a = this.#a;
    const top = a[0];
    const last = a.pop();
    if (a.length > 0 && last) {
      a[0] = last;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        if (l < a.length && this.#less(a[l]!, a[m]!)) m = l;
        if (r < a.length && this.#less(a[r]!, a[m]!)) m = r;
        if (m === i) break;
        [a[i], a[m]] = [a[m]!, a[i]!];
        i = m;
      }
    }
    return top;
  }
}

/** Two muxes, a link each way, a clock, and an event handler per side. */
export class Pair {
  now: number;
  readonly client: Mux;
  readonly relay: Mux;
  readonly c2r: Link;
  readonly r2c: Link;
  onEvent: (side: Side, e: MuxEvent) => void = () => {};
  readonly events: { side: Side; at: number; e: MuxEvent }[] = [];
  /** Record events (off for bulk tests: data events are many). */
  record = true;
  readonly #flights = new FlightHeap();
  #seq = 0;

  constructor(o: PairOptions = {}) {
    this.now = o.start ?? 1_000_000;
    const rng = new Rng(o.seed ?? 1);
    const link = o.link ?? { delayMs: 10 };
    this.c2r = new Link({ ...link }, rng);
    this.r2c = new Link({ ...link }, rng);
    this.client = new Mux({ role: 'client', now: this.now, ...o.client });
    this.relay = new Mux({ role: 'relay', now: this.now, ...o.relay });
  }

  mux(side: Side): Mux {
    return side === 'client' ? this.client : this.relay;
  }

  #flush(): void {
    for (const side of ['client', 'relay'] as const) {
      const m = this.mux(side);
      const link = side === 'client' ? this.c2r : this.r2c;
      const to: Side = side === 'client' ? 'relay' : 'client';
      for (let p = m.pollPacket(this.now); p; p = m.pollPacket(this.now)) {
        for (const at of link.schedule(this.now, p.length)) {
          this.#flights.push({ at, seq: this.#seq++, to, data: p });
        }
      }
    }
  }

  #drainEvents(): boolean {
    let any = false;
    for (const side of ['client', 'relay'] as const) {
      const m = this.mux(side);
      for (let e = m.pollEvent(); e; e = m.pollEvent()) {
        any = true;
        if (this.record) this.events.push({ side, at: this.now, e });
        this.onEvent(side, e);
      }
    }
    return any;
  }

  /** Lets everything settle at the current time: events handled, packets sent. */
  settle(): void {
    for (let i = 0; i < 1000; i++) {
      this.#drainEvents();
      this.#flush();
      if (!this.#drainEvents()) return;
    }
    assert.fail('settle: no quiescence');
  }

  /** The next moment something happens, or undefined if nothing will. */
  nextAt(): number | undefined {
    let t: number | undefined;
    const top = this.#flights.peek();
    if (top) t = top.at;
    for (const m of [this.client, this.relay]) {
      const x = m.nextTimeout();
      if (x !== undefined && (t === undefined || x < t)) t = x;
    }
    return t;
  }

  /** Advances to `t` (delivering and firing timers on the way). */
  runUntil(t: number, stop?: () => boolean): void {
    this.settle();
    for (let guard = 0; guard < 5_000_000; guard++) {
      if (stop?.()) return;
      const next = this.nextAt();
      if (next === undefined || next > t) {
        this.now = Math.max(this.now, t);
        this.settle();
        return;
      }
      this.now = Math.max(this.now, next);
      this.#step();
    }
    assert.fail('runUntil: too many steps');
  }

  /** Runs until `done()` or until `limitMs` of virtual time pass (then fails). */
  runUntilDone(done: () => boolean, limitMs: number): void {
    const end = this.now + limitMs;
    this.runUntil(end, done);
    assert.ok(done(), `not done after ${limitMs} ms of virtual time`);
  }

  #step(): void {
    for (let f = this.#flights.peek(); f && f.at <= this.now; f = this.#flights.peek()) {
      this.#flights.pop();
      this.mux(f.to).receive(f.data, this.now);
    }
    for (const m of [this.client, this.relay]) {
      const x = m.nextTimeout();
      if (x !== undefined && x <= this.now) m.handleTimeout(this.now);
    }
    this.settle();
  }

  /** Packets currently on the wire. */
  get inFlight(): number {
    return this.#flights.size;
  }

  /** Drops everything on the wire (a path that vanished). */
  dropWire(): void {
    this.#flights.clear();
  }
}

/** Deterministic content: the byte at `offset` of stream `tag`. */
export function patternByte(tag: number, offset: number): number {
  return (offset * 7 + (offset >>> 9) + tag * 13) & 0xff;
}

export function pattern(tag: number, offset: number, length: number): Uint8Array {
  const out = new Uint8Array(length);
  for (let i = 0; i < length; i++) out[i] = patternByte(tag, offset + i);
  return out;
}

/** Checks that `data` is the pattern at `offset`; returns the first bad index or -1. */
export function checkPattern(tag: number, offset: number, data: Uint8Array): number {
  for (let i = 0; i < data.length; i++) if (data[i] !== patternByte(tag, offset + i)) return i;
  return -1;
}
