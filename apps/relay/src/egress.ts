/**
 * The relay's egress policy: which destinations a client's streams (TCP) and datagrams (UDP) may
 * reach. Pure logic: no sockets, no clock; DNS only through a lookup the caller injects.
 *
 * ## Decision order (first that applies wins)
 *
 * 1. A bad port (not 1–65535) or an address/name that does not parse → denied.
 * 2. An explicit deny rule that matches → denied. Deny rules also match the IPv4 address embedded
 *    in a NAT64 (64:ff9b::/96, RFC 6052) or 6to4 (2002::/16, RFC 3056) address.
 * 3. An explicit allow rule naming the destination (a CIDR containing the address, or a name
 *    pattern matching the name it was resolved from) → allowed, even inside a special range.
 * 4. An address in a special-purpose range (RFC 6890 registries, multicast, IPv6 outside
 *    2000::/3; the table is `SPECIAL_RANGES`) → denied. For NAT64/6to4 addresses the embedded
 *    IPv4 address is classified too.
 * 5. An allow rule for any host (`*:443`) whose ports match → allowed.
 * 6. The default action: `allow` (the default) or `deny` (then only allow rules let traffic out).
 *
 * IPv4-mapped IPv6 addresses (`::ffff:a.b.c.d`, RFC 4291 §2.5.5.2) are IPv4 addresses here, for
 * addresses and CIDRs alike (`::ffff:10.0.0.0/104` is `10.0.0.0/8`). Names are compared
 * case-insensitively without a trailing dot.
 *
 * ## Compact syntax (flags, environment, config file strings)
 *
 *     rule    = target [ ":" ports ] | ":" ports | "[" ipv6 [ "/" len ] "]" [ ":" ports ]
 *     target  = "*" | name | "*." suffix | ipv4 [ "/" len ] | ipv6 [ "/" len ]
 *     ports   = range *( "," range ),  range = port [ "-" port ],  port = 1..65535
 *
 * A rule without ports covers every port; `:25` and `*:25` cover every host on port 25.
 * `*.example.com` matches every name below example.com but not example.com itself. An IPv6
 * target with ports must be bracketed: `[fd00::/8]:22`; a bare IPv6 target (`fe80::/10`) has no
 * ports. Examples: `127.0.0.1`, `10.0.0.0/8:22,80-90`, `*.corp.example:443`, `[::1]:8080`.
 *
 * ## JSON form (config file)
 *
 * A rule is either a compact string or an object with at most one of `host` (a name, `*.suffix`
 * or `*`) and `cidr` (an address or CIDR), and optional `ports` (a number, a `"lo-hi"` string, or
 * an array of both):
 *
 *     { "egressAllow": ["127.0.0.1", { "cidr": "10.0.0.0/8", "ports": [22, "80-90"] }],
 *       "egressDeny":  [{ "host": "*.internal.example" }, { "ports": 25 }] }
 *
 * ## DNS rebinding
 *
 * `checkName` runs before resolution, `checkAddress` after. `resolveAndCheck` resolves once and
 * returns the first allowed address: the caller must connect to that address and never resolve
 * the name again, or a second answer could point somewhere the check never saw.
 */
import { ErrorCode, RoamlinkError } from '@roamlink/core';

// --- Addresses ---------------------------------------------------------------------------------

/** An IP address: IPv4 in the low 32 bits of `n` (family 4) or a 128-bit IPv6 address. */
export interface IpAddress {
  readonly family: 4 | 6;
  readonly n: bigint;
}

export interface Cidr {
  readonly family: 4 | 6;
  /** The network address (host bits zero). */
  readonly base: bigint;
  readonly bits: number;
}

const V4_MASK = 0xffffffffn;

function parseIpv4(s: string): bigint | undefined {
  const m = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(s);
  if (!m) return undefined;
  let n = 0n;
  for (let i = 1; i <= 4; i++) {
    const part = m[i]!;
    // Leading zeros are refused: inet_aton would read them as octal.
    if (part.length > 1 && part.startsWith('0')) return undefined;
    const v = Number(part);
    if (v > 255) return undefined;
    n = (n << 8n) | BigInt(v);
  }
  return n;
}

function parseGroups(list: readonly string[], allowV4Tail: boolean): bigint[] | undefined {
  const words: bigint[] = [];
  for (let i = 0; i < list.length; i++) {
    const g = list[i]!;
    if (allowV4Tail && i === list.length - 1 && g.includes('.')) {
      const v4 = parseIpv4(g);
      if (v4 === undefined) return undefined;
      words.push(v4 >> 16n, v4 & 0xffffn);
    } else if (/^[0-9a-f]{1,4}$/i.test(g)) {
      words.push(BigInt(`0x${g}`));
    } else {
      return undefined;
    }
  }
  return words;
}

function parseIpv6(s: string): bigint | undefined {
  const pct = s.indexOf('%');
  if (pct >= 0) {
    // A zone (RFC 4007 §11) names an interface, not a different address.
    if (pct === s.length - 1) return undefined;
    s = s.slice(0, pct);
  }
  const halves = s.split('::');
  if (halves.length > 2) return undefined;
  let words: bigint[];
  if (halves.length === 1) {
    const all = parseGroups(s.split(':'), true);
    if (all?.length !== 8) return undefined;
    words = all;
  } else {
    const head = halves[0] ? parseGroups(halves[0].split(':'), false) : [];
    const tail = halves[1] ? parseGroups(halves[1].split(':'), true) : [];
    if (!head || !tail || head.length + tail.length > 7) return undefined;
    words = [...head, ...new Array<bigint>(8 - head.length - tail.length).fill(0n), ...tail];
  }
  let n = 0n;
  for (const w of words) n = (n << 16n) | w;
  return n;
}

/**
 * Parses an IP address literal (IPv4 dotted quad, IPv6 with optional `[]` and zone). IPv4-mapped
 * IPv6 addresses come back as IPv4. Returns undefined for anything else.
 */
export function parseIp(s: string): IpAddress | undefined {
  s = s.trim();
  if (s.startsWith('[') && s.endsWith(']')) s = s.slice(1, -1);
  if (!s.includes(':')) {
    const v4 = parseIpv4(s);
    return v4 === undefined ? undefined : { family: 4, n: v4 };
  }
  const v6 = parseIpv6(s);
  if (v6 === undefined) return undefined;
  if (v6 >> 32n === 0xffffn) return { family: 4, n: v6 & V4_MASK };
  return { family: 6, n: v6 };
}

/** Formats an address: dotted quad, or IPv6 in the RFC 5952 canonical form. */
export function formatIp(a: IpAddress): string {
  if (a.family === 4) {
    return [24n, 16n, 8n, 0n].map((s) => String((a.n >> s) & 0xffn)).join('.');
  }
  const words: number[] = [];
  for (let i = 7; i >= 0; i--) words.push(Number((a.n >> BigInt(i * 16)) & 0xffffn));
  // RFC 5952 §4.2: the longest run of two or more zero words becomes "::" (the first if tied).
  let bestAt = -1;
  let bestLen = 1;
  for (let i = 0; i < 8; ) {
    if (words[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && words[j] === 0) j++;
    if (j - i > bestLen) {
      bestAt = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hex = words.map((w) => w.toString(16));
  if (bestAt < 0) return hex.join(':');
  return `${hex.slice(0, bestAt).join(':')}::${hex.slice(bestAt + bestLen).join(':')}`;
}

function width(family: 4 | 6): number {
  return family === 4 ? 32 : 128;
}

/** Parses `addr[/len]`; a missing length is the whole address. Throws with a clear reason. */
export function parseCidr(s: string): Cidr {
  const slash = s.indexOf('/');
  const addrText = slash < 0 ? s : s.slice(0, slash);
  const raw = addrText.includes(':')
    ? parseIpv6(addrText.startsWith('[') ? addrText.slice(1, -1) : addrText)
    : parseIpv4(addrText);
  if (raw === undefined) throw invalid(`"${addrText}" is not an IP address`);
  let family: 4 | 6 = addrText.includes(':') ? 6 : 4;
  let bits = width(family);
  if (slash >= 0) {
    const lenText = s.slice(slash + 1);
    if (!/^\d{1,3}$/.test(lenText) || Number(lenText) > bits) {
      throw invalid(`"${s}": prefix length must be 0–${bits}`);
    }
    bits = Number(lenText);
  }
  let base = raw;
  // An IPv4-mapped network (::ffff:0:0/96 or longer) is the IPv4 network it maps.
  if (family === 6 && bits >= 96 && raw >> 32n === 0xffffn) {
    family = 4;
    base = raw & V4_MASK;
    bits -= 96;
  }
  const hostBits = BigInt(width(family) - bits);
  if ((base >> hostBits) << hostBits !== base) {
    const net = formatIp({ family, n: (base >> hostBits) << hostBits });
    throw invalid(`"${s}" has host bits set (the network is ${net}/${bits})`);
  }
  return { family, base, bits };
}

export function cidrContains(c: Cidr, a: IpAddress): boolean {
  if (c.family !== a.family) return false;
  const shift = BigInt(width(c.family) - c.bits);
  return a.n >> shift === c.base >> shift;
}

export function formatCidr(c: Cidr): string {
  return `${formatIp({ family: c.family, n: c.base })}/${c.bits}`;
}

// --- Special-purpose ranges --------------------------------------------------------------------

export interface SpecialRange {
  readonly cidr: Cidr;
  /** What the range is and where it is defined, for denial reasons. */
  readonly name: string;
}

/**
 * Destinations denied unless an allow rule names them: the entries of the IANA IPv4 and IPv6
 * Special-Purpose Address Registries (RFC 6890 §2.2.2, §2.2.3) that are not globally reachable,
 * plus multicast and, for IPv6, everything outside the 2000::/3 global unicast space. Globally
 * reachable anycast entries (AS112, AMT) are left out: they are ordinary Internet destinations.
 * NAT64 and 6to4 addresses are judged by the IPv4 address they embed (see `embeddedIpv4`).
 */
export const SPECIAL_RANGES: readonly SpecialRange[] = (
  [
    ['0.0.0.0/8', '"this network", RFC 791 §3.2'],
    ['10.0.0.0/8', 'private-use, RFC 1918'],
    ['100.64.0.0/10', 'shared address space, RFC 6598'],
    ['127.0.0.0/8', 'loopback, RFC 1122 §3.2.1.3'],
    ['169.254.0.0/16', 'link-local, RFC 3927'],
    ['172.16.0.0/12', 'private-use, RFC 1918'],
    ['192.0.0.0/24', 'IETF protocol assignments, RFC 6890 §2.1'],
    ['192.0.2.0/24', 'documentation (TEST-NET-1), RFC 5737'],
    ['192.88.99.0/24', 'deprecated 6to4 relay anycast, RFC 7526'],
    ['192.168.0.0/16', 'private-use, RFC 1918'],
    ['198.18.0.0/15', 'benchmarking, RFC 2544'],
    ['198.51.100.0/24', 'documentation (TEST-NET-2), RFC 5737'],
    ['203.0.113.0/24', 'documentation (TEST-NET-3), RFC 5737'],
    ['224.0.0.0/4', 'multicast, RFC 5771'],
    ['240.0.0.0/4', 'reserved, RFC 1112 §4'],
    ['255.255.255.255/32', 'limited broadcast, RFC 919 §7'],
    ['::/128', 'unspecified, RFC 4291 §2.5.2'],
    ['::1/128', 'loopback, RFC 4291 §2.5.3'],
    ['::/96', 'deprecated IPv4-compatible, RFC 4291 §2.5.5.1'],
    ['::ffff:0:0:0/96', 'IPv4-translated, RFC 2765'],
    ['64:ff9b:1::/48', 'local-use IPv4/IPv6 translation, RFC 8215'],
    ['100::/64', 'discard-only, RFC 6666'],
    ['2001::/23', 'IETF protocol assignments (Teredo, benchmarking, ORCHID), RFC 2928'],
    ['2001:db8::/32', 'documentation, RFC 3849'],
    ['3fff::/20', 'documentation, RFC 9637'],
    ['5f00::/16', 'segment routing SIDs, RFC 9602'],
    ['fc00::/7', 'unique local, RFC 4193'],
    ['fe80::/10', 'link-local, RFC 4291 §2.5.6'],
    ['fec0::/10', 'deprecated site-local, RFC 3879'],
    ['ff00::/8', 'multicast, RFC 4291 §2.7'],
    ['8000::/1', 'outside global unicast 2000::/3, RFC 4291 §2.4'],
    ['4000::/2', 'outside global unicast 2000::/3, RFC 4291 §2.4'],
    ['0::/3', 'outside global unicast 2000::/3, RFC 4291 §2.4'],
  ] as const
).map(([c, name]) => ({ cidr: parseCidr(c), name }));

const NAT64_WKP = parseCidr('64:ff9b::/96');
const SIX_TO_FOUR = parseCidr('2002::/16');

/**
 * The IPv4 address an IPv6 address reaches through a translator: the low 32 bits of a NAT64
 * well-known-prefix address (RFC 6052 §2.2), bits 16–47 of a 6to4 address (RFC 3056 §2).
 */
export function embeddedIpv4(a: IpAddress): IpAddress | undefined {
  if (a.family !== 6) return undefined;
  if (cidrContains(NAT64_WKP, a)) return { family: 4, n: a.n & V4_MASK };
  if (cidrContains(SIX_TO_FOUR, a)) return { family: 4, n: (a.n >> 80n) & V4_MASK };
  return undefined;
}

/**
 * The most specific special-purpose range holding `a`, if any. NAT64 addresses are in none: the
 * IPv4 address they embed is what counts.
 */
export function specialRange(a: IpAddress): SpecialRange | undefined {
  if (cidrContains(NAT64_WKP, a)) return undefined;
  let best: SpecialRange | undefined;
  for (const r of SPECIAL_RANGES) {
    if (cidrContains(r.cidr, a) && (!best || r.cidr.bits > best.cidr.bits)) best = r;
  }
  return best;
}

// --- Rules -------------------------------------------------------------------------------------

export type EgressTarget =
  | { readonly kind: 'any' }
  | { readonly kind: 'name'; readonly name: string }
  /** `suffix` starts with a dot: `*.example.com` is `.example.com`. */
  | { readonly kind: 'suffix'; readonly suffix: string }
  | { readonly kind: 'cidr'; readonly cidr: Cidr };

export interface EgressRule {
  readonly target: EgressTarget;
  /** Inclusive port ranges; undefined means every port. */
  readonly ports: readonly (readonly [number, number])[] | undefined;
  /** The rule in compact syntax, canonical form: what denial reasons quote. */
  readonly text: string;
}

/** A rule in the config file's JSON form. */
export interface EgressRuleObject {
  host?: string;
  cidr?: string;
  ports?: number | string | readonly (number | string)[];
}
export type EgressRuleInput = string | EgressRuleObject;

function invalid(message: string): RoamlinkError {
  return new RoamlinkError(ErrorCode.INVALID_ARGUMENT, message);
}

/** The compact syntax, for error messages and help text. */
export const EGRESS_RULE_FORM =
  'HOST[:PORTS] where HOST is *, a name, *.suffix, an IPv4/IPv6 address or CIDR ' +
  '(IPv6 with ports in brackets: [fd00::/8]:22) and PORTS is e.g. 22,80-90';

function parsePort(s: string, whole: string): number {
  if (!/^\d{1,5}$/.test(s) || Number(s) < 1 || Number(s) > 65535) {
    throw invalid(`"${whole}": port "${s}" is not 1–65535`);
  }
  return Number(s);
}

function parsePorts(s: string, whole: string): [number, number][] {
  if (s.trim() === '') throw invalid(`"${whole}": empty port list after ":"`);
  return s.split(',').map((part) => {
    const p = part.trim();
    const dash = p.indexOf('-');
    if (dash < 0) {
      const n = parsePort(p, whole);
      return [n, n];
    }
    const lo = parsePort(p.slice(0, dash), whole);
    const hi = parsePort(p.slice(dash + 1), whole);
    if (lo > hi) throw invalid(`"${whole}": port range ${lo}-${hi} runs backwards`);
    return [lo, hi];
  });
}

/** Lower-cases, drops one trailing dot; undefined when not a plausible DNS host name. */
export function normaliseName(host: string): string | undefined {
  let h = host.trim().toLowerCase();
  if (h.endsWith('.')) h = h.slice(0, -1);
  if (h.length === 0 || h.length > 253) return undefined;
  const labels = h.split('.');
  for (const l of labels) {
    if (!/^[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?$/.test(l)) return undefined;
  }
  // An all-numeric last label is no name (RFC 3696 §2): resolvers would read "127.1" or
  // "2130706433" as an IPv4 address.
  if (/^(?:\d+|0x[0-9a-f]*)$/.test(labels[labels.length - 1]!)) return undefined;
  return h;
}

function parseTarget(t: string, whole: string): EgressTarget {
  if (t === '*' || t === '') return { kind: 'any' };
  if (t.startsWith('*.')) {
    const suffix = normaliseName(t.slice(2));
    if (!suffix) throw invalid(`"${whole}": "${t}" is not a valid *.suffix name pattern`);
    return { kind: 'suffix', suffix: `.${suffix}` };
  }
  if (t.includes('*')) throw invalid(`"${whole}": "*" is allowed only as "*" or a "*." prefix`);
  if (t.includes(':') || t.includes('/') || /^[\d.]+$/.test(t)) {
    return { kind: 'cidr', cidr: parseCidr(t) };
  }
  const name = normaliseName(t);
  if (!name) throw invalid(`"${whole}": "${t}" is not a valid host name, address or CIDR`);
  return { kind: 'name', name };
}

function targetText(t: EgressTarget, bracket: boolean): string {
  switch (t.kind) {
    case 'any':
      return '*';
    case 'name':
      return t.name;
    case 'suffix':
      return `*${t.suffix}`;
    case 'cidr': {
      const whole = t.cidr.bits === width(t.cidr.family);
      const s = whole ? formatIp({ family: t.cidr.family, n: t.cidr.base }) : formatCidr(t.cidr);
      return bracket && t.cidr.family === 6 ? `[${s}]` : s;
    }
  }
}

function makeRule(target: EgressTarget, ports: [number, number][] | undefined): EgressRule {
  const portText = ports?.map(([a, b]) => (a === b ? `${a}` : `${a}-${b}`)).join(',');
  const text =
    portText === undefined ? targetText(target, false) : `${targetText(target, true)}:${portText}`;
  return { target, ports, text };
}

function parseRuleString(input: string): EgressRule {
  const s = input.trim();
  if (s === '') throw invalid(`empty egress rule; expected ${EGRESS_RULE_FORM}`);
  try {
    if (s.startsWith('[')) {
      const close = s.indexOf(']');
      if (close < 0) throw invalid(`"${s}": "[" without "]"`);
      const inside = s.slice(1, close);
      if (!inside.includes(':')) throw invalid(`"${s}": brackets are for IPv6 addresses`);
      const rest = s.slice(close + 1);
      if (rest !== '' && !rest.startsWith(':')) {
        throw invalid(`"${s}": after "]" comes ":PORTS" or nothing`);
      }
      const target: EgressTarget = { kind: 'cidr', cidr: parseCidr(inside) };
      return makeRule(target, rest === '' ? undefined : parsePorts(rest.slice(1), s));
    }
    const colons = s.split(':').length - 1;
    if (colons === 0) return makeRule(parseTarget(s, s), undefined);
    if (colons === 1) {
      const at = s.indexOf(':');
      return makeRule(parseTarget(s.slice(0, at), s), parsePorts(s.slice(at + 1), s));
    }
    // Several colons: a bare IPv6 address or CIDR, without ports.
    try {
      return makeRule({ kind: 'cidr', cidr: parseCidr(s) }, undefined);
    } catch (e) {
      throw invalid(
        `"${s}": not an IPv6 address or CIDR (${(e as Error).message}); an IPv6 rule with ports is written [addr/len]:ports`,
      );
    }
  } catch (e) {
    throw invalid(`${(e as Error).message}; expected ${EGRESS_RULE_FORM}`);
  }
}

function parseRuleObject(o: EgressRuleObject): EgressRule {
  const shown = JSON.stringify(o);
  for (const k of Object.keys(o)) {
    if (k !== 'host' && k !== 'cidr' && k !== 'ports') {
      throw invalid(`egress rule ${shown}: unknown key "${k}" (expected host, cidr, ports)`);
    }
  }
  if (o.host !== undefined && o.cidr !== undefined) {
    throw invalid(`egress rule ${shown}: give "host" or "cidr", not both`);
  }
  let target: EgressTarget = { kind: 'any' };
  if (o.host !== undefined) {
    if (typeof o.host !== 'string') throw invalid(`egress rule ${shown}: "host" must be a string`);
    target = parseTarget(o.host.trim(), shown);
    if (target.kind === 'cidr') {
      throw invalid(`egress rule ${shown}: "host" is a name pattern; put addresses in "cidr"`);
    }
  } else if (o.cidr !== undefined) {
    if (typeof o.cidr !== 'string') throw invalid(`egress rule ${shown}: "cidr" must be a string`);
    target = { kind: 'cidr', cidr: parseCidr(o.cidr.trim()) };
  }
  let ports: [number, number][] | undefined;
  if (o.ports !== undefined) {
    const list = Array.isArray(o.ports) ? o.ports : [o.ports];
    if (list.length === 0) throw invalid(`egress rule ${shown}: "ports" is empty`);
    ports = list.flatMap((p: unknown) => {
      if (typeof p === 'number' || typeof p === 'string') return parsePorts(String(p), shown);
      throw invalid(`egress rule ${shown}: a port is a number or a "lo-hi" string`);
    });
  }
  return makeRule(target, ports);
}

/** Parses one rule in compact or JSON form. Throws `ROAMLINK_ERR_INVALID_ARGUMENT` with a reason. */
export function parseEgressRule(input: EgressRuleInput | EgressRule): EgressRule {
  if (typeof input === 'string') return parseRuleString(input);
  if (input === null || typeof input !== 'object' || Array.isArray(input)) {
    throw invalid(`an egress rule is a string or an object; expected ${EGRESS_RULE_FORM}`);
  }
  if ('text' in input && 'target' in input) return input as EgressRule;
  return parseRuleObject(input as EgressRuleObject);
}

function portMatches(rule: EgressRule, port: number): boolean {
  if (!rule.ports) return true;
  for (const [lo, hi] of rule.ports) if (port >= lo && port <= hi) return true;
  return false;
}

function nameMatches(t: EgressTarget, name: string | undefined): boolean {
  if (name === undefined) return false;
  if (t.kind === 'name') return t.name === name;
  if (t.kind === 'suffix') return name.length > t.suffix.length && name.endsWith(t.suffix);
  return false;
}

// --- The policy --------------------------------------------------------------------------------

export interface EgressDenial {
  readonly ok: false;
  /** `policy`: the rules refused; `dns`: the name did not resolve. */
  readonly code: 'policy' | 'dns';
  readonly reason: string;
}
export type EgressDecision = { readonly ok: true; readonly reason: string } | EgressDenial;
export type EgressResolution =
  | { readonly ok: true; readonly address: string; readonly family: 4 | 6; readonly reason: string }
  | EgressDenial;

/** One answer of a resolver: what `node:dns/promises` `lookup(name, { all: true })` returns. */
export interface LookupAnswer {
  address: string;
  family: number;
}
export type EgressLookup = (
  hostname: string,
  options: { all: true },
) => Promise<readonly LookupAnswer[]>;

export interface EgressPolicyOptions {
  allow?: readonly (EgressRuleInput | EgressRule)[];
  deny?: readonly (EgressRuleInput | EgressRule)[];
  /** What happens to a public destination no rule names; `allow` unless set. */
  defaultAction?: 'allow' | 'deny';
}

const deny = (reason: string): EgressDenial => ({ ok: false, code: 'policy', reason });

function validPort(port: number): boolean {
  return Number.isInteger(port) && port >= 1 && port <= 65535;
}

export class EgressPolicy {
  readonly allow: readonly EgressRule[];
  readonly deny: readonly EgressRule[];
  readonly defaultAction: 'allow' | 'deny';

  /** Throws `ROAMLINK_ERR_INVALID_ARGUMENT` naming the first rule that does not parse. */
  constructor(o: EgressPolicyOptions = {}) {
    const parseAll = (list: EgressPolicyOptions['allow'], which: string): EgressRule[] =>
      (list ?? []).map((r, i) => {
        try {
          return parseEgressRule(r);
        } catch (e) {
          throw invalid(`egress ${which} rule ${i + 1}: ${(e as Error).message}`);
        }
      });
    this.allow = parseAll(o.allow, 'allow');
    this.deny = parseAll(o.deny, 'deny');
    this.defaultAction = o.defaultAction ?? 'allow';
  }

  /**
   * The check before resolution: deny rules on names (and on every host). An IP literal is
   * checked as an address. An allowed name must still pass `checkAddress` once resolved.
   */
  checkName(host: string, port: number): EgressDecision {
    if (parseIp(host)) return this.checkAddress(host, port);
    if (!validPort(port)) return deny(`port ${port} is not 1–65535`);
    const name = normaliseName(host);
    if (!name) return deny(`"${host}" is not a valid host name`);
    for (const r of this.deny) {
      if ((r.target.kind === 'any' || nameMatches(r.target, name)) && portMatches(r, port)) {
        return deny(`${name}:${port} is denied by rule ${r.text}`);
      }
    }
    for (const r of this.allow) {
      if (nameMatches(r.target, name) && portMatches(r, port)) {
        return { ok: true, reason: `allowed by rule ${r.text}` };
      }
    }
    if (this.defaultAction === 'deny') {
      // Only an address rule can still let it out, once resolved.
      const maybe = this.allow.some(
        (r) => (r.target.kind === 'any' || r.target.kind === 'cidr') && portMatches(r, port),
      );
      if (!maybe) return deny(`no allow rule covers ${name}:${port} (default deny)`);
    }
    return { ok: true, reason: 'no rule denies the name; the address is checked next' };
  }

  /**
   * The check after resolution, on the address the relay will connect to. `name`, when given, is
   * the name the address was resolved from: allow and deny rules on names apply to it.
   */
  checkAddress(ip: string, port: number, name?: string): EgressDecision {
    const addr = parseIp(ip);
    if (!addr) return deny(`"${ip}" is not an IP address`);
    if (!validPort(port)) return deny(`port ${port} is not 1–65535`);
    const shown = addr.family === 6 ? `[${formatIp(addr)}]:${port}` : `${formatIp(addr)}:${port}`;
    const host = name === undefined ? undefined : normaliseName(name);
    const inner = embeddedIpv4(addr);
    for (const r of this.deny) {
      if (!portMatches(r, port)) continue;
      const t = r.target;
      if (
        t.kind === 'any' ||
        nameMatches(t, host) ||
        (t.kind === 'cidr' &&
          (cidrContains(t.cidr, addr) || (inner && cidrContains(t.cidr, inner))))
      ) {
        return deny(`${shown} is denied by rule ${r.text}`);
      }
    }
    for (const r of this.allow) {
      const t = r.target;
      if (
        (nameMatches(t, host) || (t.kind === 'cidr' && cidrContains(t.cidr, addr))) &&
        portMatches(r, port)
      ) {
        return { ok: true, reason: `allowed by rule ${r.text}` };
      }
    }
    const special = specialRange(addr);
    if (special) {
      return deny(
        `${shown} is in ${formatCidr(special.cidr)} (${special.name}), denied by default`,
      );
    }
    if (inner) {
      const innerSpecial = specialRange(inner);
      if (innerSpecial) {
        return deny(
          `${shown} embeds ${formatIp(inner)}, in ${formatCidr(innerSpecial.cidr)} (${innerSpecial.name}), denied by default`,
        );
      }
    }
    for (const r of this.allow) {
      if (r.target.kind === 'any' && portMatches(r, port)) {
        return { ok: true, reason: `allowed by rule ${r.text}` };
      }
    }
    if (this.defaultAction === 'deny') return deny(`no allow rule covers ${shown} (default deny)`);
    return { ok: true, reason: 'public address, allowed by default' };
  }

  /**
   * Checks the name, resolves it once with `lookup`, and returns the first answer the policy
   * allows, in the resolver's order. The caller connects to `address` and never re-resolves.
   * IP literals are checked without a lookup. Never throws: a failed lookup is a `dns` denial.
   */
  async resolveAndCheck(
    host: string,
    port: number,
    lookup: EgressLookup,
  ): Promise<EgressResolution> {
    const literal = parseIp(host);
    if (literal) {
      const d = this.checkAddress(host, port);
      if (!d.ok) return d;
      return { ok: true, address: formatIp(literal), family: literal.family, reason: d.reason };
    }
    const pre = this.checkName(host, port);
    if (!pre.ok) return pre;
    const name = normaliseName(host)!;
    let answers: readonly LookupAnswer[];
    try {
      answers = await lookup(name, { all: true });
    } catch (e) {
      const code = (e as { code?: unknown }).code;
      const why = typeof code === 'string' ? code : String((e as Error)?.message ?? e);
      return { ok: false, code: 'dns', reason: `resolving ${name} failed: ${why}` };
    }
    if (!Array.isArray(answers) || answers.length === 0) {
      return { ok: false, code: 'dns', reason: `${name} has no addresses` };
    }
    const refusals: string[] = [];
    for (const a of answers) {
      const parsed = typeof a?.address === 'string' ? parseIp(a.address) : undefined;
      if (!parsed) {
        refusals.push(`"${String(a?.address)}" is not an IP address`);
        continue;
      }
      const d = this.checkAddress(a.address, port, name);
      if (d.ok) {
        // A zone must reach connect(); otherwise the canonical form (a mapped answer as IPv4).
        const address = a.address.includes('%') ? a.address : formatIp(parsed);
        return { ok: true, address, family: parsed.family, reason: d.reason };
      }
      refusals.push(d.reason);
    }
    return deny(`${name} resolved only to denied addresses: ${refusals.join('; ')}`);
  }
}
