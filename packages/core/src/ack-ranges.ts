/**
 * A set of non-negative integers kept as sorted, disjoint, non-adjacent half-open ranges
 * `[start, end)`. The stream layer uses it three ways: packet numbers received (what an ACK frame
 * reports, RFC 9000 §13.2.3), byte ranges a stream's peer has acknowledged, and byte ranges that
 * must be sent again.
 *
 * Ranges live in two parallel number arrays. Appending at the top (the common case: packet numbers
 * and offsets grow) is O(1); anything else is a binary search plus a splice, and callers bound the
 * number of ranges they keep.
 */
export class RangeSet {
  readonly #s: number[] = [];
  readonly #e: number[] = [];

  /** Number of disjoint ranges. */
  get count(): number {
    return this.#s.length;
  }

  get isEmpty(): boolean {
    return this.#s.length === 0;
  }

  /** Start of range `i` (0 = lowest). */
  start(i: number): number {
    return this.#s[i]!;
  }

  /** End (exclusive) of range `i`. */
  end(i: number): number {
    return this.#e[i]!;
  }

  /** Lowest member, or undefined when empty. */
  get min(): number | undefined {
    return this.#s[0];
  }

  /** Highest member, or undefined when empty. */
  get max(): number | undefined {
    const n = this.#e.length;
    return n === 0 ? undefined : this.#e[n - 1]! - 1;
  }

  /** Total number of members (sum of range lengths). */
  get size(): number {
    let n = 0;
    for (let i = 0; i < this.#s.length; i++) n += this.#e[i]! - this.#s[i]!;
    return n;
  }

  clear(): void {
    this.#s.length = 0;
    this.#e.length = 0;
  }

  /** Index of the first range whose end is ≥ v (so it contains v, touches it, or lies above). */
  #firstEndingAtOrAfter(v: number): number {
    let lo = 0;
    let hi = this.#e.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.#e[mid]! < v) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  has(v: number): boolean {
    const i = this.#firstEndingAtOrAfter(v + 1);
    return i < this.#s.length && this.#s[i]! <= v;
  }

  /** Whether every member of `[start, end)` is in the set (true for an empty range). */
  covers(start: number, end: number): boolean {
    if (end <= start) return true;
    const i = this.#firstEndingAtOrAfter(end);
    return i < this.#s.length && this.#s[i]! <= start;
  }

  /** Adds `[start, end)`; returns how many members were new. */
  add(start: number, end: number): number {
    if (end <= start) return 0;
    const n = this.#s.length;
    // Fast path: at or above the top range.
    if (n === 0 || start > this.#e[n - 1]!) {
      this.#s.push(start);
      this.#e.push(end);
      return end - start;
    }
    if (start >= this.#s[n - 1]!) {
      const top = this.#e[n - 1]!;
      if (end <= top) return 0;
      this.#e[n - 1] = end;
      return end - top;
    }
    const i = this.#firstEndingAtOrAfter(start);
    let j = i;
    let covered = 0;
    let s = start;
    let e = end;
    while (j < this.#s.length && this.#s[j]! <= end) {
      const rs = this.#s[j]!;
      const re = this.#e[j]!;
      covered += Math.min(re, end) - Math.max(rs, start);
      if (rs < s) s = rs;
      if (re > e) e = re;
      j++;
    }
    this.#s.splice(i, j - i, s);
    this.#e.splice(i, j - i, e);
    return end - start - Math.max(0, covered);
  }

  /** Removes `[start, end)`. */
  remove(start: number, end: number): void {
    if (end <= start || this.#s.length === 0) return;
    let i = this.#firstEndingAtOrAfter(start + 1);
    while (i < this.#s.length && this.#s[i]! < end) {
      const rs = this.#s[i]!;
      const re = this.#e[i]!;
      if (rs < start && re > end) {
        // Split in two.
        this.#e[i] = start;
        this.#s.splice(i + 1, 0, end);
        this.#e.splice(i + 1, 0, re);
        return;
      }
      if (rs < start) {
        this.#e[i] = start;
        i++;
      } else if (re > end) {
        this.#s[i] = end;
        return;
      } else {
        this.#s.splice(i, 1);
        this.#e.splice(i, 1);
      }
    }
  }

  /** Removes and forgets the lowest range. */
  shift(): void {
    this.#s.shift();
    this.#e.shift();
  }

  /**
   * Calls `fn(start, end)` for each maximal sub-range of `[start, end)` that is NOT in the set,
   * lowest first.
   */
  forEachGap(start: number, end: number, fn: (s: number, e: number) => void): void {
    let pos = start;
    let i = this.#firstEndingAtOrAfter(start + 1);
    while (pos < end && i < this.#s.length) {
      const rs = this.#s[i]!;
      if (rs >= end) break;
      if (rs > pos) fn(pos, rs);
      pos = Math.max(pos, this.#e[i]!);
      i++;
    }
    if (pos < end) fn(pos, end);
  }

  /** The ranges as `[start, end)` pairs, lowest first (for tests and diagnostics). */
  toArray(): [number, number][] {
    return this.#s.map((s, i) => [s, this.#e[i]!]);
  }
}
