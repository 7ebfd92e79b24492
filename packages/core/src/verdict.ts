/**
 * The translation verdict (docs/PROTOCOL.md §6.9): what happened to the outer headers of one path
 * between the client and the relay, found by comparing the client's own copy of the fields it sent
 * with what the relay observed (WO 03/063444 claims 2, 5 and 8). The relay computes it from the
 * RREQ; the client computes it again from the RREP, and where the two differ the safer one wins.
 *
 * Rules, in order; the first that applies decides:
 *
 * 1. HTTP encapsulations only (WebSocket, HTTP stream, HTTP poll) → PROTOCOL when an HTTP proxy
 *    or CDN terminated and re-originated the request, seen as any of:
 *    a. the relay observed a proxy/CDN header the client did not set itself: via, forwarded,
 *       x-forwarded-for, x-forwarded-host, x-forwarded-proto, x-forwarded-port, x-real-ip,
 *       cf-connecting-ip, true-client-ip, cdn-loop;
 *    b. the Host differs: compared case-insensitively, a port equal to the default port of the
 *       client's URL scheme (80 for http/ws, 443 for https/wss) ignored;
 *    c. the request target differs: the path and query of the client's URL against the relay's
 *       target, which may be origin-form (`/x?y`) or absolute-form (`http://h/x?y`);
 *    d. a header the client set is missing or changed at the relay, hop-by-hop headers excepted
 *       (connection, keep-alive, proxy-authorization, proxy-connection, te, trailer,
 *       transfer-encoding, upgrade; RFC 9110 §7.6.1) and Host, which (b) compares.
 *    A field either side does not know is not compared (b, c); an absent header list is an empty
 *    one (a, d).
 * 2. Either side's source address unknown → UNKNOWN.
 * 3. Compare source address and port. Addresses are normalised first: lower-case, `[]` stripped,
 *    IPv6 written out in full and IPv4-mapped IPv6 (`::ffff:a.b.c.d`) as the IPv4 address.
 *    Both equal → NONE; address equal, port differs → PORT_ONLY; address differs, port equal →
 *    ADDRESS; both differ → ADDRESS_AND_PORT. A port either side does not know: address differs →
 *    ADDRESS_AND_PORT, address equal → UNKNOWN.
 *
 * Destination fields take no part: a relay behind a port-forward is not a NAT on the client's
 * side, and keepalives are only for the client's NAT.
 */
import { Encapsulation } from './encapsulation.ts';
import { type OuterView, Verdict } from './path.ts';

/** The encapsulations that carry HTTP, where a proxy or CDN can sit in the path. */
export const HTTP_ENCAPSULATIONS: ReadonlySet<Encapsulation> = new Set<Encapsulation>([
  Encapsulation.WEBSOCKET,
  Encapsulation.HTTP_STREAM,
  Encapsulation.HTTP_POLL,
]);

/** Headers that proxies and CDNs add (RFC 9110 §7.6.3, RFC 7239, RFC 8586 and de-facto ones). */
export const PROXY_HEADERS: ReadonlySet<string> = new Set([
  'via',
  'forwarded',
  'x-forwarded-for',
  'x-forwarded-host',
  'x-forwarded-proto',
  'x-forwarded-port',
  'x-real-ip',
  'cf-connecting-ip',
  'true-client-ip',
  'cdn-loop',
]);

/** Headers that any hop may drop or rewrite, so their loss says nothing about a proxy. */
const HOP_BY_HOP: ReadonlySet<string> = new Set([
  'connection',
  'keep-alive',
  'proxy-authorization',
  'proxy-connection',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
]);

/** How much translation a verdict assumes; the safer verdict is the one that assumes more. */
const RANK: Record<Verdict, number> = {
  [Verdict.NONE]: 0,
  [Verdict.PORT_ONLY]: 1,
  [Verdict.ADDRESS]: 2,
  [Verdict.ADDRESS_AND_PORT]: 3,
  [Verdict.UNKNOWN]: 4,
  [Verdict.PROTOCOL]: 5,
};

/** Ranks verdicts by how much translation they assume: NONE < PORT_ONLY < ADDRESS < ADDRESS_AND_PORT < UNKNOWN < PROTOCOL. */
export function saferVerdict(a: Verdict, b: Verdict): Verdict {
  return RANK[b] > RANK[a] ? b : a;
}

/** True where NAT keepalives may be needed: everything but NONE. */
export function translationDetected(v: Verdict): boolean {
  return v !== Verdict.NONE;
}

export function computeVerdict(
  client: OuterView,
  relay: OuterView,
  encapsulation: Encapsulation,
): Verdict {
  if (HTTP_ENCAPSULATIONS.has(encapsulation) && protocolTranslated(client, relay)) {
    return Verdict.PROTOCOL;
  }
  const ca = normaliseAddress(client.srcAddr);
  const ra = normaliseAddress(relay.srcAddr);
  if (ca === undefined || ra === undefined) return Verdict.UNKNOWN;
  const sameAddress = ca === ra;
  if (client.srcPort === undefined || relay.srcPort === undefined) {
    return sameAddress ? Verdict.UNKNOWN : Verdict.ADDRESS_AND_PORT;
  }
  const samePort = client.srcPort === relay.srcPort;
  if (sameAddress) return samePort ? Verdict.NONE : Verdict.PORT_ONLY;
  return samePort ? Verdict.ADDRESS : Verdict.ADDRESS_AND_PORT;
}

// --- Rule 1: protocol translation ---------------------------------------------------------------

function protocolTranslated(client: OuterView, relay: OuterView): boolean {
  const sent = combineHeaders(client.headers);
  const seen = combineHeaders(relay.headers);

  for (const name of seen.keys()) {
    if (PROXY_HEADERS.has(name) && !sent.has(name)) return true;
  }

  const scheme = schemeOf(client.url) ?? schemeOf(relay.url);
  const sentHost = effectiveHost(client, sent);
  const seenHost = effectiveHost(relay, seen);
  if (
    sentHost !== undefined &&
    seenHost !== undefined &&
    normaliseHost(sentHost, scheme) !== normaliseHost(seenHost, scheme)
  ) {
    return true;
  }

  if (
    client.url !== undefined &&
    relay.url !== undefined &&
    pathAndQuery(client.url) !== pathAndQuery(relay.url)
  ) {
    return true;
  }

  for (const [name, value] of sent) {
    if (name === 'host' || HOP_BY_HOP.has(name)) continue;
    if (seen.get(name) !== value) return true;
  }
  return false;
}

/**
 * Header lines by lower-cased name, values without surrounding whitespace (RFC 9110 §5.5) and
 * repeated lines joined with ", " (§5.3), so that a hop merging two lines changes nothing.
 */
function combineHeaders(headers: readonly [string, string][] | undefined): Map<string, string> {
  const m = new Map<string, string>();
  for (const [rawName, rawValue] of headers ?? []) {
    const name = rawName.toLowerCase();
    const value = rawValue.replace(/^[ \t]+|[ \t]+$/g, '');
    const prev = m.get(name);
    m.set(name, prev === undefined ? value : `${prev}, ${value}`);
  }
  return m;
}

const ABSOLUTE = /^([A-Za-z][A-Za-z0-9+.-]*):\/\//;

function schemeOf(url: string | undefined): string | undefined {
  const m = url === undefined ? null : ABSOLUTE.exec(url);
  return m?.[1]?.toLowerCase();
}

/** The authority of an absolute URL, without user info; undefined for other forms. */
function authorityOf(url: string | undefined): string | undefined {
  const m = url === undefined ? null : ABSOLUTE.exec(url);
  if (!m) return undefined;
  const rest = url!.slice(m[0].length);
  const end = rest.search(/[/?#]/);
  const authority = end < 0 ? rest : rest.slice(0, end);
  return authority.slice(authority.lastIndexOf('@') + 1);
}

/**
 * The Host a view stands for: its Host field, else a Host header, else the authority of its URL
 * (a browser cannot set Host; it sends the URL's authority).
 */
function effectiveHost(v: OuterView, headers: Map<string, string>): string | undefined {
  return v.host ?? headers.get('host') ?? authorityOf(v.url);
}

const DEFAULT_PORT: Readonly<Record<string, string>> = {
  http: '80',
  ws: '80',
  https: '443',
  wss: '443',
};

function normaliseHost(host: string, scheme: string | undefined): string {
  const h = host.trim().toLowerCase();
  const port = scheme === undefined ? undefined : DEFAULT_PORT[scheme];
  if (port === undefined || !h.endsWith(`:${port}`)) return h;
  const name = h.slice(0, -(port.length + 1));
  // Only a real port separator: "[v6]:443" or "name:443", never the last group of bare IPv6.
  return name.startsWith('[') ? (name.endsWith(']') ? name : h) : name.includes(':') ? h : name;
}

/**
 * The path and query of a request target (RFC 9112 §3.2): origin-form as it is, absolute-form
 * from the first "/" or "?" after the authority ("/" when the path is empty). A fragment is never
 * sent, so it is dropped. Authority- and asterisk-form are compared as they are.
 */
function pathAndQuery(url: string): string {
  const hash = url.indexOf('#');
  const u = hash < 0 ? url : url.slice(0, hash);
  const m = ABSOLUTE.exec(u);
  if (!m) return u;
  const rest = u.slice(m[0].length);
  const start = rest.search(/[/?]/);
  if (start < 0) return '/';
  const pq = rest.slice(start);
  return pq.startsWith('?') ? `/${pq}` : pq;
}

// --- Rule 3: addresses --------------------------------------------------------------------------

/** Lower-cased, unbracketed, IPv6 written in full, IPv4-mapped IPv6 as IPv4; "" is unknown. */
function normaliseAddress(addr: string | undefined): string | undefined {
  if (addr === undefined) return undefined;
  let a = addr.trim().toLowerCase();
  if (a.startsWith('[') && a.endsWith(']')) a = a.slice(1, -1);
  if (a === '') return undefined;
  const groups = parseIpv6(a);
  if (groups === undefined) return a;
  if (groups.slice(0, 5).every((g) => g === 0) && groups[5] === 0xffff) {
    const hi = groups[6]!;
    const lo = groups[7]!;
    return `${hi >> 8}.${hi & 255}.${lo >> 8}.${lo & 255}`;
  }
  return groups.map((g) => g.toString(16)).join(':');
}

const IPV4 = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/;
const HEX_GROUP = /^[0-9a-f]{1,4}$/;

/** RFC 4291 §2.2 text forms, including "::" and a dotted IPv4 tail; undefined if not IPv6. */
function parseIpv6(s: string): number[] | undefined {
  // A zone (fe80::1%eth0) is part of the address: such text is compared as it is.
  if (!s.includes(':') || s.includes('%')) return undefined;
  const halves = s.split('::');
  if (halves.length > 2) return undefined;
  const parse = (part: string): number[] | undefined => {
    if (part === '') return [];
    const out: number[] = [];
    const pieces = part.split(':');
    for (let i = 0; i < pieces.length; i++) {
      const p = pieces[i]!;
      const v4 = i === pieces.length - 1 ? IPV4.exec(p) : null;
      if (v4) {
        const o = v4.slice(1, 5).map(Number);
        if (o.some((x) => x > 255)) return undefined;
        out.push((o[0]! << 8) | o[1]!, (o[2]! << 8) | o[3]!);
      } else if (HEX_GROUP.test(p)) {
        out.push(Number.parseInt(p, 16));
      } else {
        return undefined;
      }
    }
    return out;
  };
  const head = parse(halves[0]!);
  const tail = halves.length === 2 ? parse(halves[1]!) : [];
  if (head === undefined || tail === undefined) return undefined;
  if (halves.length === 1) return head.length === 8 ? head : undefined;
  const missing = 8 - head.length - tail.length;
  if (missing < 1) return undefined;
  return [...head, ...new Array<number>(missing).fill(0), ...tail];
}
