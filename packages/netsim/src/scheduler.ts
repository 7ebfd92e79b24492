/**
 * Virtual time. Events sit in a binary min-heap keyed by (time, insertion order): two events for
 * the same instant run in the order they were scheduled, so a run never depends on heap layout.
 * Time is a float in milliseconds; nothing here reads a real clock.
 */

export interface Timer {
  /** The virtual time the callback runs at. */
  readonly at: number;
  /** Whether the timer is still waiting (not yet run and not cancelled). */
  readonly pending: boolean;
  cancel(): void;
}

/** A queued callback; it is its own cancel handle. */
class Entry implements Timer {
  readonly at: number;
  readonly seq: number;
  readonly fn: () => void;
  live = true;
  readonly #count: { live: number };
  constructor(at: number, seq: number, fn: () => void, count: { live: number }) {
    this.at = at;
    this.seq = seq;
    this.fn = fn;
    this.#count = count;
  }
  get pending(): boolean {
    return this.live;
  }
  cancel(): void {
    if (this.live) {
      this.live = false;
      this.#count.live--;
    }
  }
}

function before(x: Entry, y: Entry): boolean {
  return x.at < y.at || (x.at === y.at && x.seq < y.seq);
}

export class Scheduler {
  #now = 0;
  #seq = 0;
  #heap: Entry[] = [];
  readonly #count = { live: 0 };
  /** Events run so far (a cheap progress and cost measure). */
  executed = 0;

  get now(): number {
    return this.#now;
  }

  /** Number of events still waiting (cancelled ones excluded). */
  get pending(): number {
    return this.#count.live;
  }

  /** Runs `fn` at virtual time `t` (not in the past). */
  at(t: number, fn: () => void): Timer {
    if (!(t >= this.#now) || !Number.isFinite(t)) {
      throw new RangeError(`scheduler: time ${t} is before now (${this.#now}) or not finite`);
    }
    const e = new Entry(t, this.#seq++, fn, this.#count);
    this.#push(e);
    this.#count.live++;
    return e;
  }

  /** Runs `fn` after `dt` milliseconds of virtual time. */
  after(dt: number, fn: () => void): Timer {
    return this.at(this.#now + Math.max(0, dt), fn);
  }

  /** Time of the next live event, or undefined when idle. */
  nextAt(): number | undefined {
    this.#skipDead();
    return this.#heap[0]?.at;
  }

  /** Runs every event due at or before `t`, then sets the clock to `t`. */
  runUntil(t: number): void {
    for (;;) {
      this.#skipDead();
      const top = this.#heap[0];
      if (top === undefined || top.at > t) break;
      this.#runTop();
    }
    if (t > this.#now) this.#now = t;
  }

  /** Runs for `dt` milliseconds of virtual time. */
  run(dt: number): void {
    this.runUntil(this.#now + dt);
  }

  /**
   * Runs events until none is left or the next one is after `maxT`. Returns true when the queue
   * emptied (the clock then stays at the last event), false when it stopped at `maxT`.
   */
  runUntilIdle(maxT = Number.POSITIVE_INFINITY): boolean {
    for (;;) {
      this.#skipDead();
      const top = this.#heap[0];
      if (top === undefined) return true;
      if (top.at > maxT) {
        if (maxT > this.#now) this.#now = maxT;
        return false;
      }
      this.#runTop();
    }
  }

  #runTop(): void {
    const e = this.#pop();
    this.#now = e.at;
    e.live = false;
    this.#count.live--;
    this.executed++;
    e.fn();
  }

  #skipDead(): void {
    while (this.#heap.length > 0 && !this.#heap[0]!.live) this.#pop();
  }

  #push(e: Entry): void {
    const h = this.#heap;
    h.push(e);
    let i = h.length - 1;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (!before(e, h[p]!)) break;
      h[i] = h[p]!;
      i = p;
    }
    h[i] = e;
  }

  #pop(): Entry {
    const h = this.#heap;
    const top = h[0]!;
    const last = h.pop()!;
    if (h.length > 0) {
      let i = 0;
      const n = h.length;
      for (;;) {
        const l = 2 * i + 1;
        if (l >= n) break;
        const r = l + 1;
        const c = r < n && before(h[r]!, h[l]!) ? r : l;
        if (!before(h[c]!, last)) break;
        h[i] = h[c]!;
        i = c;
      }
      h[i] = last;
    }
    return top;
  }
}
