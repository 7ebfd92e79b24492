/**
 * IPv4-style addresses as dotted-quad strings and transport endpoints. Tests and docs use the
 * benchmarking range 198.18.0.0/15 (RFC 2544 §C.2.2, reserved by RFC 6890) so that no simulated
 * address is ever mistaken for a real one.
 */

export interface Endpoint {
  readonly addr: string;
  readonly port: number;
}

const QUAD = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/;

export function isIpv4(s: string): boolean {
  const m = QUAD.exec(s);
  if (m === null) return false;
  return m.slice(1).every((o) => Number(o) <= 255 && String(Number(o)) === o);
}

/** The address as an unsigned 32-bit integer. */
export function ipv4ToInt(s: string): number {
  if (!isIpv4(s)) throw new TypeError(`not an IPv4 address: ${s}`);
  const [a, b, c, d] = s.split('.').map(Number) as [number, number, number, number];
  return ((a << 24) | (b << 16) | (c << 8) | d) >>> 0;
}

export function intToIpv4(n: number): string {
  return `${n >>> 24}.${(n >>> 16) & 255}.${(n >>> 8) & 255}.${n & 255}`;
}

/** Whether `addr` lies in `cidr` ("198.18.0.0/15"). */
export function inSubnet(addr: string, cidr: string): boolean {
  const [net, bits] = cidr.split('/') as [string, string | undefined];
  const len = bits === undefined ? 32 : Number(bits);
  const mask = len === 0 ? 0 : (0xffffffff << (32 - len)) >>> 0;
  return (ipv4ToInt(addr) & mask) >>> 0 === (ipv4ToInt(net) & mask) >>> 0;
}

export function endpoint(addr: string, port: number): Endpoint {
  if (!isIpv4(addr)) throw new TypeError(`not an IPv4 address: ${addr}`);
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    throw new RangeError(`port out of range: ${port}`);
  }
  return { addr, port };
}

export function formatEndpoint(e: Endpoint): string {
  return `${e.addr}:${e.port}`;
}

export function sameEndpoint(a: Endpoint, b: Endpoint): boolean {
  return a.addr === b.addr && a.port === b.port;
}
