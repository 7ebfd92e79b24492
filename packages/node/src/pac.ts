/**
 * Proxy auto-config (PAC): the JavaScript file through which many organisations tell their
 * machines which proxy to use, `FindProxyForURL(url, host)` returning "PROXY host:port; DIRECT"
 * and the like. roamlink evaluates it for the relay's WebSocket and HTTP URLs, as a browser does
 * for a page, and takes the first proxy of the answer that it speaks.
 *
 * The script runs in a `node:vm` context with the standard helper functions and nothing else (no
 * require, no process, no code generation from strings), with a time limit per call. Every object
 * it can reach is the context's own (the helpers are source run inside it; only strings and
 * numbers cross in), so none leads back to Node's Function and `process`, the usual way out of a
 * vm context; a PAC file fetched over plain HTTP cannot become code running in the client. vm is
 * still no defence against a V8 bug, which a browser's PAC process would be.
 *
 * The helpers that need DNS are synchronous in PAC; Node has no synchronous resolver, so the
 * relay's host name is resolved before the script runs (`loadPac`'s `resolve`), and any other
 * name resolves to nothing (isResolvable false, dnsResolve null, isInNet false).
 */
import { lookup } from 'node:dns/promises';
import { readFile } from 'node:fs/promises';
import { isIP } from 'node:net';
import { networkInterfaces } from 'node:os';
import { createContext, runInContext } from 'node:vm';
import { unbracket } from './host.ts';

/** One entry of a FindProxyForURL answer, in order. */
export type PacChoice =
  | { type: 'direct' }
  | { type: 'proxy'; url: string }
  | { type: 'unsupported'; entry: string };

/** Longest a PAC script may run, loading or per call (ms). */
export const PAC_TIMEOUT_MS = 1_000;

export class PacError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'PacError';
  }
}

/** Parses a FindProxyForURL answer ("PROXY a:1; HTTPS b:2; SOCKS c:3; DIRECT"). */
export function parsePacResult(result: string): PacChoice[] {
  const out: PacChoice[] = [];
  for (const raw of result.split(';')) {
    const entry = raw.trim();
    if (entry === '') continue;
    const [kind = '', where = ''] = entry.split(/\s+/, 2);
    const k = kind.toUpperCase();
    if (k === 'DIRECT') out.push({ type: 'direct' });
    else if ((k === 'PROXY' || k === 'HTTP') && where !== '')
      out.push({ type: 'proxy', url: `http://${where}` });
    else if (k === 'HTTPS' && where !== '') out.push({ type: 'proxy', url: `https://${where}` });
    // SOCKS5 with the proxy resolving names, as browsers use it; plain "SOCKS" is SOCKS4.
    else if (k === 'SOCKS5' && where !== '') out.push({ type: 'proxy', url: `socks5h://${where}` });
    else out.push({ type: 'unsupported', entry });
  }
  return out;
}

/**
 * The standard helpers (Netscape's PAC functions), as source run inside the script's own context:
 * every function the script can reach is then of that context, whose Function constructor may
 * not compile strings. (A helper passed in from Node would hand the script Node's Function, and
 * with it `process`.) `__resolved` (names to IPv4) is defined before them from its JSON;
 * `__myIp` and `__now` (ms) are primitives set from outside.
 */
const HELPERS = String.raw`
function __ip4(a) {
  var p = String(a).split('.');
  if (p.length !== 4) return null;
  var n = 0;
  for (var i = 0; i < 4; i++) {
    if (!/^\d{1,3}$/.test(p[i]) || Number(p[i]) > 255) return null;
    n = n * 256 + Number(p[i]);
  }
  return n;
}
function __inRange(v, lo, hi) { return lo <= hi ? v >= lo && v <= hi : v >= lo || v <= hi; }
function __clock(args) {
  var utc = args.length > 0 && args[args.length - 1] === 'GMT';
  return { d: new Date(__now), utc: utc, rest: utc ? args.slice(0, -1) : args };
}
var __DAYS = ['SUN', 'MON', 'TUE', 'WED', 'THU', 'FRI', 'SAT'];
var __MONTHS = ['JAN', 'FEB', 'MAR', 'APR', 'MAY', 'JUN', 'JUL', 'AUG', 'SEP', 'OCT', 'NOV', 'DEC'];
function isPlainHostName(host) { return String(host).indexOf('.') < 0; }
function dnsDomainIs(host, domain) {
  var h = String(host).toLowerCase(), d = String(domain).toLowerCase();
  return h.length >= d.length && h.slice(h.length - d.length) === d;
}
function localHostOrDomainIs(host, hostdom) {
  var h = String(host).toLowerCase(), d = String(hostdom).toLowerCase();
  return h === d || (h.indexOf('.') < 0 && d.indexOf(h + '.') === 0);
}
function dnsResolve(host) {
  var h = String(host).toLowerCase();
  if (__ip4(h) !== null) return h;
  return Object.prototype.hasOwnProperty.call(__resolved, h) ? __resolved[h] : null;
}
function isResolvable(host) { return dnsResolve(host) !== null; }
function isInNet(host, pattern, mask) {
  var ip = dnsResolve(host), a = ip === null ? null : __ip4(ip), p = __ip4(pattern), m = __ip4(mask);
  if (a === null || p === null || m === null) return false;
  for (var i = 0; i < 4; i++) {
    var b = Math.pow(256, 3 - i);
    if ((Math.floor(a / b) % 256 & Math.floor(m / b) % 256) !== (Math.floor(p / b) % 256 & Math.floor(m / b) % 256)) return false;
  }
  return true;
}
function convert_addr(ip) { return __ip4(ip); }
function myIpAddress() { return __myIp; }
function dnsDomainLevels(host) { return String(host).split('.').length - 1; }
function shExpMatch(str, pattern) {
  var re = String(pattern).replace(/[.+^$\{}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*').replace(/\?/g, '.');
  return new RegExp('^' + re + '$').test(String(str));
}
function weekdayRange() {
  var c = __clock(Array.prototype.slice.call(arguments));
  var day = c.utc ? c.d.getUTCDay() : c.d.getDay();
  var a = __DAYS.indexOf(String(c.rest[0]).toUpperCase());
  var b = c.rest.length > 1 ? __DAYS.indexOf(String(c.rest[1]).toUpperCase()) : -1;
  if (a < 0) return false;
  return b < 0 ? day === a : __inRange(day, a, b);
}
function timeRange() {
  var c = __clock(Array.prototype.slice.call(arguments)), n = c.rest.map(Number), d = c.d;
  var h = c.utc ? d.getUTCHours() : d.getHours();
  var m = c.utc ? d.getUTCMinutes() : d.getMinutes();
  var s = c.utc ? d.getUTCSeconds() : d.getSeconds();
  if (n.length === 1) return h === n[0];
  if (n.length === 2) return __inRange(h, n[0], n[1]);
  if (n.length === 4) return __inRange(h * 60 + m, n[0] * 60 + n[1], n[2] * 60 + n[3]);
  if (n.length === 6) return __inRange(h * 3600 + m * 60 + s, n[0] * 3600 + n[1] * 60 + n[2], n[3] * 3600 + n[4] * 60 + n[5]);
  return false;
}
function dateRange() {
  // Each argument a day (1-31), a month name or a year (four digits); one value, or a range of
  // two of the same kind.
  var c = __clock(Array.prototype.slice.call(arguments)), d = c.d;
  function value(x) {
    if (__MONTHS.indexOf(String(x).toUpperCase()) >= 0) return c.utc ? d.getUTCMonth() : d.getMonth();
    if (Number(x) > 31) return c.utc ? d.getUTCFullYear() : d.getFullYear();
    return c.utc ? d.getUTCDate() : d.getDate();
  }
  function of(x) {
    var mi = __MONTHS.indexOf(String(x).toUpperCase());
    return mi >= 0 ? mi : Number(x);
  }
  if (c.rest.length === 1) return value(c.rest[0]) === of(c.rest[0]);
  if (c.rest.length === 2) return __inRange(value(c.rest[0]), of(c.rest[0]), of(c.rest[1]));
  return false;
}
function alert() {}
`;

/** This machine's first non-internal IPv4 address, what myIpAddress() answers. */
function myIp(): string {
  for (const list of Object.values(networkInterfaces())) {
    for (const a of list ?? []) if (a.family === 'IPv4' && !a.internal) return a.address;
  }
  return '127.0.0.1';
}

export interface PacScript {
  /** Where the script came from (a path or a URL), for messages. */
  readonly source: string;
  /** The answer's entries for `url` (ws:// and wss:// are asked as http:// and https://). */
  choices(url: string): PacChoice[];
}

/**
 * Compiles a PAC script. `resolved`: names already resolved (lower-case) for the DNS helpers;
 * `now` the clock of the time helpers. Throws PacError if the script does not load, runs too
 * long, or defines no FindProxyForURL.
 */
export function compilePac(
  text: string,
  source: string,
  resolved: ReadonlyMap<string, string> = new Map(),
  now: () => Date = () => new Date(),
): PacScript {
  // A global with no prototype of Node's (so `this.constructor` is the context's own Object), and
  // no code generation from strings inside.
  const context = createContext(Object.create(null), {
    codeGeneration: { strings: false, wasm: false },
  });
  // Only primitives cross in; the table is built inside from its JSON, so that it too is an
  // object of the context's.
  context.__myIp = myIp();
  context.__now = now().getTime();
  const table = `var __resolved = ${JSON.stringify(Object.fromEntries(resolved))};`;
  try {
    runInContext(table + HELPERS, context, { filename: 'pac-helpers.js', timeout: PAC_TIMEOUT_MS });
    runInContext(text, context, { filename: source, timeout: PAC_TIMEOUT_MS });
  } catch (e) {
    throw new PacError(`PAC ${source}: ${(e as Error).message}`, { cause: e });
  }
  const find = (context as { FindProxyForURL?: unknown }).FindProxyForURL;
  if (typeof find !== 'function') throw new PacError(`PAC ${source}: no FindProxyForURL function`);
  context.__find = find;
  return {
    source,
    choices(url: string): PacChoice[] {
      // Asked as a browser asks: WebSocket URLs as their HTTP twins, no path or query (what a
      // browser hands a PAC script for https, and all the script needs here).
      const u = new URL(url.replace(/^ws(s?):/, 'http$1:'));
      context.__url = `${u.protocol}//${u.host}/`;
      context.__now = now().getTime();
      context.__host = unbracket(u.hostname);
      let result: unknown;
      try {
        result = runInContext('__find(__url, __host)', context, { timeout: PAC_TIMEOUT_MS });
      } catch (e) {
        throw new PacError(`PAC ${source}: FindProxyForURL failed: ${(e as Error).message}`, {
          cause: e,
        });
      }
      if (typeof result !== 'string') {
        throw new PacError(
          `PAC ${source}: FindProxyForURL returned ${typeof result}, not a string`,
        );
      }
      return parsePacResult(result);
    },
  };
}

/**
 * Loads a PAC script from a file or an http(s) URL (fetched directly, as browsers fetch it, in
 * at most 10 s) and compiles it with `resolve`'s host names resolved (dns.lookup, IPv4).
 */
export async function loadPac(source: string, resolve: readonly string[] = []): Promise<PacScript> {
  let text: string;
  try {
    if (/^https?:\/\//i.test(source)) {
      const res = await fetch(source, { signal: AbortSignal.timeout(10_000) });
      if (!res.ok) throw new Error(`HTTP ${res.status}`);
      text = await res.text();
    } else {
      text = await readFile(source, 'utf8');
    }
  } catch (e) {
    const why = (e as NodeJS.ErrnoException).code ?? (e as Error).message;
    throw new PacError(`PAC ${source}: cannot load it (${why})`, { cause: e });
  }
  const resolved = new Map<string, string>();
  for (const host of resolve) {
    const h = host.toLowerCase();
    if (isIP(h) !== 0) continue;
    try {
      resolved.set(h, (await lookup(h, { family: 4 })).address);
    } catch {
      // Unresolvable: the script sees it as such.
    }
  }
  return compilePac(text, source, resolved);
}

/** The proxy the first usable entry names (a URL), false for DIRECT, or throws PacError. */
export function pacProxyFor(pac: PacScript, url: string): string | false {
  const choices = pac.choices(url);
  for (const c of choices) {
    if (c.type === 'direct') return false;
    if (c.type === 'proxy') return c.url;
  }
  if (choices.length === 0) return false;
  throw new PacError(
    `PAC ${pac.source}: no entry roamlink speaks for ${url} (${choices.map((c) => (c.type === 'unsupported' ? c.entry : c.type)).join('; ')}); SOCKS4 proxies are not supported`,
  );
}
