/**
 * Host names as sockets take them. A URL writes an IPv6 literal in brackets (RFC 3986 §3.2.2,
 * "[::1]"); net.connect, tls.connect's SNI check, dns and the PAC helpers want it bare.
 */

/** `host` without the brackets of an IPv6 literal; any other host as it is. */
export function unbracket(host: string): string {
  return host.startsWith('[') && host.endsWith(']') ? host.slice(1, -1) : host;
}
