/**
 * Proxy auto-config (PAC): the JavaScript file through which many organisations tell their
 * machines which proxy to use, `FindProxyForURL(url, host)` returning "PROXY host:port; DIRECT"
 * and the like. roamlink evaluates it for the relay's WebSocket and HTTP URLs, as a browser does
 * for a page, and takes the first proxy of the answer that it speaks.
 *
 * The script runs in a `node:vm` context with the standard helper functions and nothing else (no
 * require, no process, no code generation from strings), with a time limit per call. vm is not a
 * security boundary: a PAC file is configuration the user chose, as it is for a browser.
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
    else out.push({ type: 'unsupported', entry });
  }
  return out;
}

/** The PAC shell pattern: `*` any run, `?` one character, everything else literal. */
function shExpMatch(str: string, pattern: string): boolean {
  const re = pattern
    .replace(/[.+^${}()|[\]\\]/g, '\\$&')
    .replace(/\*/g, '.*')
    .replace(/\?/g, '.');
  return new RegExp(`^${re}$`).test(String(str));
}

const ipv4ToInt = (a: string): number =>
  a.split('.').reduce((n, o) => ((n << 8) | (Number(o) & 255)) >>> 0, 0);

const DAYS = ['SUN', 'MON', 'TUE', 'WED', 'THU', 'FRI', 'SAT'];
const MONTHS = ['JAN', 'FEB', 'MAR', 'APR', 'MAY', 'JUN', 'JUL', 'AUG', 'SEP', 'OCT', 'NOV', 'DEC'];

/** The standard helpers (Netscape's PAC functions) over a table of resolved names. */
function helpers(resolved: ReadonlyMap<string, string>, now: () => Date) {
  const dnsResolve = (host: string): string | null => {
    const h = String(host).toLowerCase();
    if (isIP(h) === 4) return h;
    return resolved.get(h) ?? null;
  };
  // A trailing "GMT" argument compares in UTC, as the PAC functions define it.
  const clock = (args: unknown[]): { d: Date; utc: boolean; rest: unknown[] } => {
    const utc = args.at(-1) === 'GMT';
    return { d: now(), utc, rest: utc ? args.slice(0, -1) : args };
  };
  const inRange = (v: number, lo: number, hi: number): boolean =>
    lo <= hi ? v >= lo && v <= hi : v >= lo || v <= hi;
  return {
    isPlainHostName: (host: string) => !String(host).includes('.'),
    dnsDomainIs: (host: string, domain: string) =>
      String(host).toLowerCase().endsWith(String(domain).toLowerCase()),
    localHostOrDomainIs: (host: string, hostdom: string) => {
      const h = String(host).toLowerCase();
      const d = String(hostdom).toLowerCase();
      return h === d || (!h.includes('.') && d.startsWith(`${h}.`));
    },
    isResolvable: (host: string) => dnsResolve(host) !== null,
    dnsResolve,
    isInNet: (host: string, pattern: string, mask: string) => {
      const ip = dnsResolve(host);
      if (ip === null || isIP(pattern) !== 4 || isIP(mask) !== 4) return false;
      const m = ipv4ToInt(mask);
      return (ipv4ToInt(ip) & m) >>> 0 === (ipv4ToInt(pattern) & m) >>> 0;
    },
    convert_addr: (ip: string) => ipv4ToInt(ip),
    myIpAddress: () => {
      for (const list of Object.values(networkInterfaces())) {
        for (const a of list ?? []) if (a.family === 'IPv4' && !a.internal) return a.address;
      }
      return '127.0.0.1';
    },
    dnsDomainLevels: (host: string) => String(host).split('.').length - 1,
    shExpMatch,
    weekdayRange: (...args: unknown[]) => {
      const { d, utc, rest } = clock(args);
      const day = utc ? d.getUTCDay() : d.getDay();
      const [a, b] = rest.map((x) => DAYS.indexOf(String(x).toUpperCase()));
      if (a === undefined || a < 0) return false;
      return b === undefined || b < 0 ? day === a : inRange(day, a, b);
    },
    timeRange: (...args: unknown[]) => {
      const { d, utc, rest } = clock(args);
      const n = rest.map(Number);
      const h = utc ? d.getUTCHours() : d.getHours();
      const m = utc ? d.getUTCMinutes() : d.getMinutes();
      const s = utc ? d.getUTCSeconds() : d.getSeconds();
      if (n.length === 1) return h === n[0];
      if (n.length === 2) return inRange(h, n[0]!, n[1]!);
      if (n.length === 4) return inRange(h * 60 + m, n[0]! * 60 + n[1]!, n[2]! * 60 + n[3]!);
      if (n.length === 6) {
        return inRange(
          h * 3600 + m * 60 + s,
          n[0]! * 3600 + n[1]! * 60 + n[2]!,
          n[3]! * 3600 + n[4]! * 60 + n[5]!,
        );
      }
      return false;
    },
    dateRange: (...args: unknown[]) => {
      const { d, utc, rest } = clock(args);
      // Each argument is a day (1–31), a month name or a year (four digits); one value or a
      // range of two of the same kind.
      const value = (x: unknown): number => {
        const mi = MONTHS.indexOf(String(x).toUpperCase());
        if (mi >= 0) return utc ? d.getUTCMonth() : d.getMonth();
        const n = Number(x);
        if (n > 31) return utc ? d.getUTCFullYear() : d.getFullYear();
        return utc ? d.getUTCDate() : d.getDate();
      };
      const of = (x: unknown): number => {
        const mi = MONTHS.indexOf(String(x).toUpperCase());
        return mi >= 0 ? mi : Number(x);
      };
      if (rest.length === 1) return value(rest[0]) === of(rest[0]);
      if (rest.length === 2) return inRange(value(rest[0]), of(rest[0]), of(rest[1]));
      return false;
    },
    alert: () => {},
  };
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
  const context = createContext(
    { ...helpers(resolved, now) },
    { codeGeneration: { strings: false, wasm: false } },
  );
  try {
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
    `PAC ${pac.source}: no entry roamlink speaks for ${url} (${choices.map((c) => (c.type === 'unsupported' ? c.entry : c.type)).join('; ')}); SOCKS proxies are not supported`,
  );
}
