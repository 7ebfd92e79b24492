/**
 * A firewall: an ordered list of rules, each a small predicate over a packet and its flow, with
 * the first matching rule's action applied (else the default). Refusals are a silent drop, a TCP
 * RST forged from the destination (RFC 9293 §3.10.7.1, as middleboxes that "reset" do), or an
 * ICMP destination-unreachable, administratively prohibited (RFC 1812 §5.2.7.1). Flow state
 * counts what already passed each conversation, both directions together, so a rule can let the
 * first K bytes or packets through and stop the rest.
 */
import type { Endpoint } from './address.ts';
import { BaseElement, type Direction, type Hop } from './element.ts';
import {
  biflowKey,
  IcmpCode,
  icmpError,
  type Packet,
  resetFor,
  TcpFlag,
  wireSize,
} from './packet.ts';

/** "reject" is RST for TCP and ICMP for anything else. */
export type FirewallAction = 'pass' | 'drop' | 'reject' | 'rst' | 'icmp';

/** What already passed this conversation (both directions), before the current packet. */
export interface FlowState {
  readonly packets: number;
  /** Payload bytes (not headers). */
  readonly bytes: number;
  /** Packets that carried payload. */
  readonly dataPackets: number;
  /** Whether the first packet seen was outbound (the inside started the flow). */
  readonly startedInside: boolean;
}

export interface RuleContext {
  readonly dir: Direction;
  readonly flow: FlowState;
}

export interface FirewallRule {
  readonly name: string;
  readonly action: FirewallAction;
  match(pkt: Packet, ctx: RuleContext): boolean;
}

export interface FirewallOptions {
  readonly name?: string;
  readonly rules: readonly FirewallRule[];
  /** Action when no rule matches (default "pass"). */
  readonly defaultAction?: FirewallAction;
}

interface MutableFlow {
  packets: number;
  bytes: number;
  dataPackets: number;
  startedInside: boolean;
}

export class Firewall extends BaseElement {
  readonly kind = 'firewall';
  readonly rules: readonly FirewallRule[];
  readonly defaultAction: FirewallAction;
  /** Decisions by rule name ("default" when none matched). */
  readonly hits: Record<string, number> = {};
  readonly counts = { passed: 0, dropped: 0, rejected: 0 };
  readonly #flows = new Map<string, MutableFlow>();

  constructor(opts: FirewallOptions) {
    super(opts.name);
    this.rules = opts.rules;
    this.defaultAction = opts.defaultAction ?? 'pass';
  }

  process(pkt: Packet, hop: Hop): void {
    const key = biflowKey(pkt.proto === 'icmp' ? pkt.icmp.original : pkt);
    let flow = this.#flows.get(key);
    if (flow === undefined) {
      flow = { packets: 0, bytes: 0, dataPackets: 0, startedInside: hop.dir === 'out' };
      this.#flows.set(key, flow);
    }
    const ctx: RuleContext = { dir: hop.dir, flow };
    let action = this.defaultAction;
    let ruleName = 'default';
    for (const r of this.rules) {
      if (r.match(pkt, ctx)) {
        action = r.action;
        ruleName = r.name;
        break;
      }
    }
    this.hits[ruleName] = (this.hits[ruleName] ?? 0) + 1;
    if (action === 'pass') {
      this.counts.passed++;
      flow.packets++;
      flow.bytes += pkt.payload.length;
      if (pkt.payload.length > 0) flow.dataPackets++;
      hop.forward(pkt);
      return;
    }
    hop.drop(pkt, `firewall:${ruleName}`);
    if (action === 'drop' || pkt.proto === 'icmp') {
      this.counts.dropped++;
      return;
    }
    this.counts.rejected++;
    if (pkt.proto === 'tcp' && (action === 'rst' || action === 'reject')) {
      // Never answer a reset with a reset.
      if (!(pkt.tcp.flags & TcpFlag.RST)) hop.bounce(resetFor(pkt));
    } else {
      hop.bounce(icmpError(pkt.dst.addr, pkt, IcmpCode.ADMIN_PROHIBITED));
    }
  }
}

export interface PresetOptions {
  readonly name?: string;
  /** What to do with what the preset forbids (default "drop"). */
  readonly action?: Exclude<FirewallAction, 'pass'>;
  /** Which direction the preset watches (default both). */
  readonly direction?: Direction | 'both';
}

function applies(o: PresetOptions, dir: Direction): boolean {
  return o.direction === undefined || o.direction === 'both' || o.direction === dir;
}

function rule(name: string, o: PresetOptions, match: FirewallRule['match']): FirewallRule {
  return { name, action: o.action ?? 'drop', match: (p, c) => applies(o, c.dir) && match(p, c) };
}

/** Ready-made firewalls for the scenarios roamlink must survive. */
export const firewallPresets = {
  /** Drops (or rejects) all UDP. */
  dropUdp(o: PresetOptions = {}): Firewall {
    return new Firewall({
      name: o.name ?? 'no-udp',
      rules: [rule('udp', o, (p) => p.proto === 'udp')],
    });
  },

  /** Lets only TCP to (outbound) and from (inbound) the given remote ports through. */
  onlyTcpPorts(ports: readonly number[] = [80, 443], o: PresetOptions = {}): Firewall {
    const allowed = new Set(ports);
    return new Firewall({
      name: o.name ?? `tcp-only-${ports.join('-')}`,
      rules: [
        {
          name: 'allowed-tcp',
          action: 'pass',
          match: (p, c) =>
            p.proto === 'tcp' && allowed.has(c.dir === 'out' ? p.dst.port : p.src.port),
        },
        rule('other', o, () => true),
      ],
    });
  },

  /** Lets only traffic with the given remote endpoints through (say, the only HTTP proxy). */
  onlyTo(remotes: readonly Endpoint[], o: PresetOptions = {}): Firewall {
    const allowed = new Set(remotes.map((e) => `${e.addr}:${e.port}`));
    return new Firewall({
      name: o.name ?? 'only-to',
      rules: [
        {
          name: 'allowed-remote',
          action: 'pass',
          match: (p, c) => {
            const q = p.proto === 'icmp' ? p.icmp.original : p;
            const remote = c.dir === 'out' ? q.dst : p.proto === 'icmp' ? q.dst : q.src;
            return allowed.has(`${remote.addr}:${remote.port}`);
          },
        },
        rule('other', o, () => true),
      ],
    });
  },

  /** Passes small packets and drops IP packets larger than `maxBytes`. */
  maxPacketSize(maxBytes: number, o: PresetOptions = {}): Firewall {
    return new Firewall({
      name: o.name ?? `max-${maxBytes}`,
      rules: [rule('too-large', o, (p) => wireSize(p) > maxBytes)],
    });
  },

  /**
   * Passes the first `packets` payload-carrying packets and/or `bytes` payload bytes of each
   * conversation, then stops the rest of its payload (empty TCP segments still pass, so the
   * connection itself stays up, as DPI boxes that throttle a flow after its start behave).
   */
  passFirst(limit: { packets?: number; bytes?: number }, o: PresetOptions = {}): Firewall {
    const maxP = limit.packets ?? Number.POSITIVE_INFINITY;
    const maxB = limit.bytes ?? Number.POSITIVE_INFINITY;
    return new Firewall({
      name: o.name ?? 'pass-first',
      rules: [
        rule(
          'over-limit',
          o,
          (p, c) =>
            p.payload.length > 0 &&
            (c.flow.dataPackets >= maxP || c.flow.bytes + p.payload.length > maxB),
        ),
      ],
    });
  },

  /**
   * Passes a payload-carrying packet only if `allow(payload, pkt)` says so: the predicate sees the
   * payload bytes, so a scenario can let registration messages through and stop data.
   */
  payloadFilter(
    allow: (payload: Uint8Array, pkt: Packet) => boolean,
    o: PresetOptions = {},
  ): Firewall {
    return new Firewall({
      name: o.name ?? 'payload-filter',
      rules: [rule('payload', o, (p) => p.payload.length > 0 && !allow(p.payload, p))],
    });
  },
};
