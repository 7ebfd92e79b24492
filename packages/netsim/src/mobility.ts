/**
 * Mobility events as scheduled calls: the ways a moving client's network changes under it.
 * - address: the interface's address changes (or goes away); sockets break as the OS makes them.
 * - move: the interface joins another network: a new chain (new NAT, new links) and usually a
 *   new address, as one change the host is told about.
 * - blackhole: the path silently stops carrying packets (for `duration` ms, or until undone);
 *   the host is told nothing, as when a NAT or router upstream loses state or power.
 * - down: the interface loses carrier for `duration` ms and comes back (with the same address, or
 *   `addrOnReturn`); the host is told both times.
 * - rebind: a NAT forgets its mappings, optionally taking a new external address.
 * - link: a link goes down (for `duration` ms, or until set up again).
 */
import type { Element } from './element.ts';
import type { Interface } from './host.ts';
import type { Link } from './link.ts';
import type { Nat } from './nat.ts';
import type { Network } from './network.ts';
import type { Timer } from './scheduler.ts';

export type MobilityEvent =
  | { readonly kind: 'address'; readonly iface: Interface; readonly addr: string | undefined }
  | {
      readonly kind: 'move';
      readonly iface: Interface;
      readonly chain: readonly Element[];
      readonly addr?: string;
    }
  | { readonly kind: 'blackhole'; readonly iface: Interface; readonly duration?: number }
  | {
      readonly kind: 'down';
      readonly iface: Interface;
      readonly duration: number;
      readonly addrOnReturn?: string;
    }
  | { readonly kind: 'rebind'; readonly nat: Nat; readonly externalAddr?: string }
  | { readonly kind: 'link'; readonly link: Link; readonly duration?: number };

/** Applies an event now. */
export function applyMobility(net: Network, ev: MobilityEvent): void {
  switch (ev.kind) {
    case 'address': {
      ev.iface.setAddress(ev.addr);
      return;
    }
    case 'move': {
      ev.iface.move(
        ev.addr === undefined ? { chain: ev.chain } : { chain: ev.chain, addr: ev.addr },
      );
      return;
    }
    case 'blackhole': {
      const path = ev.iface.path;
      path.setBlackhole(true);
      if (net.tracing) net.trace({ kind: 'iface', where: ev.iface.label, reason: 'blackhole' });
      if (ev.duration !== undefined) {
        net.after(ev.duration, () => {
          path.setBlackhole(false);
          if (net.tracing)
            net.trace({ kind: 'iface', where: ev.iface.label, reason: 'blackhole-end' });
        });
      }
      return;
    }
    case 'down': {
      const { iface, addrOnReturn } = ev;
      iface.setUp(false);
      net.after(ev.duration, () => {
        if (addrOnReturn !== undefined) iface.setAddress(addrOnReturn);
        iface.setUp(true);
      });
      return;
    }
    case 'rebind': {
      ev.nat.rebind(ev.externalAddr === undefined ? {} : { externalAddr: ev.externalAddr });
      return;
    }
    case 'link': {
      const link = ev.link;
      link.setUp(false);
      if (ev.duration !== undefined) net.after(ev.duration, () => link.setUp(true));
      return;
    }
  }
}

/** Schedules an event at virtual time `at`. */
export function scheduleMobility(net: Network, at: number, ev: MobilityEvent): Timer {
  return net.at(at, () => applyMobility(net, ev));
}

/** Schedules a whole plan of events. */
export function schedulePlan(
  net: Network,
  plan: readonly { readonly at: number; readonly event: MobilityEvent }[],
): Timer[] {
  return plan.map((p) => scheduleMobility(net, p.at, p.event));
}
