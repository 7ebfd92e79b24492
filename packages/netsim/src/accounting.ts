/**
 * Counters: packets and bytes per element and direction (with drops by reason), and per flow as
 * the end hosts see it. Bytes are IP-layer bytes (headers included), as a link carries them.
 */
import type { Direction } from './element.ts';

export class DirCounters {
  packets = 0;
  bytes = 0;
  dropped = 0;
  droppedBytes = 0;
  /** Drops by reason ("loss", "mtu", "filtered", ...). */
  readonly drops: Record<string, number> = {};

  count(size: number): void {
    this.packets++;
    this.bytes += size;
  }

  drop(size: number, reason: string): void {
    this.dropped++;
    this.droppedBytes += size;
    this.drops[reason] = (this.drops[reason] ?? 0) + 1;
  }
}

/** What entered an element, per direction ("out": towards the internet, "in": towards the host). */
export class ElementStats {
  readonly out = new DirCounters();
  readonly in = new DirCounters();
  dir(d: Direction): DirCounters {
    return d === 'out' ? this.out : this.in;
  }
}

export interface FlowCounters {
  packets: number;
  bytes: number;
}

/**
 * Per-flow totals keyed by "host proto local>remote" as each end host sees the flow (before NAT on
 * the way out, after NAT on the way in), so a client's flow keeps its key across a NAT.
 */
export class FlowTable {
  readonly sent = new Map<string, FlowCounters>();
  readonly received = new Map<string, FlowCounters>();

  record(table: 'sent' | 'received', key: string, size: number): void {
    const m = this[table];
    const c = m.get(key);
    if (c === undefined) m.set(key, { packets: 1, bytes: size });
    else {
      c.packets++;
      c.bytes += size;
    }
  }
}
