/**
 * A link: one-way delay, jitter, random loss, an MTU, optional bandwidth with a drop-tail queue,
 * and an up/down switch. Each parameter may differ per direction ({ out, in }). Jitter keeps
 * packets in order unless `reorder` is set (a FIFO link adds jitter to whole bursts, it cannot
 * overtake); a packet still in flight when the link goes down is lost.
 */
import { BaseElement, type Direction, type Hop } from './element.ts';
import { IcmpCode, icmpError, type Packet, wireSize } from './packet.ts';

export type PerDirection = number | { readonly out: number; readonly in: number };

export interface LinkOptions {
  readonly name?: string;
  /** One-way propagation delay in ms (default 0). */
  readonly delay?: PerDirection;
  /** Extra delay drawn uniformly from [0, jitter] ms per packet (default 0). */
  readonly jitter?: PerDirection;
  /** Let jitter reorder packets (default false). */
  readonly reorder?: boolean;
  /** Probability that a packet is lost (default 0). */
  readonly loss?: PerDirection;
  /** Largest IP packet in bytes (default unlimited). */
  readonly mtu?: number;
  /**
   * What happens to larger packets: "drop" silently (a PMTU black hole, the default), "icmp" drop
   * and send "fragmentation needed" back (RFC 1191), or "count" them and let them through.
   */
  readonly mtuPolicy?: 'drop' | 'icmp' | 'count';
  /** Bits per second (default unlimited: no serialisation delay, no queue). */
  readonly bandwidth?: PerDirection;
  /** Queue limit in bytes when bandwidth is set (default 256 KiB); beyond it, tail drop. */
  readonly queueBytes?: number;
  readonly up?: boolean;
}

function pick(v: PerDirection | undefined, d: Direction, dflt: number): number {
  if (v === undefined) return dflt;
  return typeof v === 'number' ? v : v[d];
}

export class Link extends BaseElement {
  readonly kind = 'link';
  readonly opts: LinkOptions;
  /** Packets larger than the MTU that passed under mtuPolicy "count". */
  oversize = 0;
  #up: boolean;
  #generation = 0;
  readonly #busyUntil = { out: 0, in: 0 };
  readonly #lastArrival = { out: 0, in: 0 };

  constructor(opts: LinkOptions = {}) {
    super(opts.name);
    this.opts = opts;
    this.#up = opts.up ?? true;
  }

  get up(): boolean {
    return this.#up;
  }

  /** Switches the link; going down loses every packet in flight on it. */
  setUp(up: boolean): void {
    if (up === this.#up) return;
    this.#up = up;
    if (!up) this.#generation++;
    this.trace({ kind: 'link', reason: up ? 'up' : 'down' });
  }

  /** One-way base delay in direction d (no jitter, no queueing). */
  baseDelay(d: Direction): number {
    return pick(this.opts.delay, d, 0);
  }

  process(pkt: Packet, hop: Hop): void {
    const d = hop.dir;
    if (!this.#up) {
      hop.drop(pkt, 'link-down');
      return;
    }
    const size = wireSize(pkt);
    const mtu = this.opts.mtu ?? Number.POSITIVE_INFINITY;
    if (size > mtu) {
      const policy = this.opts.mtuPolicy ?? 'drop';
      if (policy === 'count') this.oversize++;
      else {
        hop.drop(pkt, 'mtu');
        if (policy === 'icmp' && pkt.proto !== 'icmp') {
          hop.bounce(icmpError(pkt.dst.addr, pkt, IcmpCode.FRAGMENTATION_NEEDED, mtu));
        }
        return;
      }
    }
    const loss = pick(this.opts.loss, d, 0);
    if (loss > 0 && this.rng.chance(loss)) {
      hop.drop(pkt, 'loss');
      return;
    }

    const now = this.ctx.scheduler.now;
    let t = now;
    const bw = pick(this.opts.bandwidth, d, Number.POSITIVE_INFINITY);
    if (Number.isFinite(bw)) {
      const start = Math.max(now, this.#busyUntil[d]);
      const backlogBytes = ((start - now) * bw) / 8000;
      if (backlogBytes + size > (this.opts.queueBytes ?? 262_144)) {
        hop.drop(pkt, 'queue');
        return;
      }
      this.#busyUntil[d] = start + (size * 8000) / bw;
      t = this.#busyUntil[d];
    }
    t += pick(this.opts.delay, d, 0);
    const jitter = pick(this.opts.jitter, d, 0);
    if (jitter > 0) t += jitter * this.rng.next();
    if (!this.opts.reorder) {
      t = Math.max(t, this.#lastArrival[d]);
      this.#lastArrival[d] = t;
    }
    const gen = this.#generation;
    this.ctx.scheduler.at(t, () => {
      if (gen !== this.#generation || !this.#up) hop.drop(pkt, 'link-down');
      else hop.forward(pkt);
    });
  }
}
