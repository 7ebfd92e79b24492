/**
 * TLS on the client's WebSocket and HTTP paths (`wss://`, `https://`): what a relay on an edge
 * platform, or behind a TLS front on port 443, needs, and what a firewall that lets only TLS out
 * sees. Every dial of those paths goes through here: a direct connection (`tls.connect`), or TLS
 * inside a proxy's CONNECT tunnel (`tlsOver`), so that the proxy sees only CONNECT and the TLS
 * handshake.
 *
 * TLS does not carry the tunnel's security: the SA inside authenticates the relay by its static
 * key (Noise IK) and encrypts every packet whatever carries it. The certificate is still checked
 * by default, as any client does; `verify: false` turns the check off for a relay with a
 * self-signed certificate or behind an intercepting middlebox, and costs no confidentiality.
 */
import { isIP, type Socket } from 'node:net';
import {
  type ConnectionOptions,
  createSecureContext,
  getCACertificates,
  type SecureContext,
  type TLSSocket,
  connect as tlsConnect,
} from 'node:tls';

export interface RelayTls {
  /**
   * PEM certificates of CAs to trust for the relay, in addition to the ones Node trusts by
   * default (its bundled roots, NODE_EXTRA_CA_CERTS, the system's with --use-system-ca): a
   * private CA, or a self-signed relay certificate.
   */
  ca?: readonly (string | Buffer)[];
  /** false: the relay's certificate is not checked (the SA still authenticates the relay). Default true. */
  verify?: boolean;
  /** The name sent in SNI and checked against the certificate; default the URL's host name. */
  servername?: string;
}

/**
 * One secure context per set of extra CAs: building one parses every trusted certificate (about
 * 25 ms for Node's default set here), far too much for each of a session's connections.
 */
const contexts = new WeakMap<readonly (string | Buffer)[], SecureContext>();

function contextWith(ca: readonly (string | Buffer)[]): SecureContext {
  let c = contexts.get(ca);
  if (!c) {
    // Node's `ca` replaces the default set: the extra CAs go beside it, not instead of it.
    c = createSecureContext({ ca: [...getCACertificates('default'), ...ca] });
    contexts.set(ca, c);
  }
  return c;
}

/**
 * The options of `tls.connect` for a relay at `host`: SNI only for a name (RFC 6066 §3 forbids
 * literal addresses there), the extra CAs beside the default ones, ALPN http/1.1 (both paths
 * speak HTTP/1.1; a front that offers h2 must not pick it).
 */
export function relayTlsOptions(host: string, t: RelayTls): ConnectionOptions {
  const name = t.servername ?? host;
  return {
    ...(isIP(name) === 0 ? { servername: name } : {}),
    ...(t.ca !== undefined && t.ca.length > 0 ? { secureContext: contextWith(t.ca) } : {}),
    rejectUnauthorized: t.verify !== false,
    ALPNProtocols: ['http/1.1'],
  };
}

/** A TLS connection straight to the relay; writes before the handshake ends wait for it. */
export function dialRelayTls(host: string, port: number, t: RelayTls): TLSSocket {
  return tlsConnect({ host, port, ...relayTlsOptions(host, t) });
}

/** TLS to the relay at `host` over an open connection (a proxy's CONNECT tunnel). */
export function tlsOver(socket: Socket, host: string, t: RelayTls): TLSSocket {
  return tlsConnect({ socket, ...relayTlsOptions(host, t) });
}

/**
 * Codes of a TLS dial that failed because the relay's certificate is not trusted (OpenSSL's
 * verify results as Node reports them, and Node's own name check): the fix is the user's
 * (`--tls-ca`, or `--tls-insecure`), not a retry.
 */
export const TLS_TRUST_ERROR_CODES: ReadonlySet<string> = new Set([
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'CERT_HAS_EXPIRED',
  'CERT_NOT_YET_VALID',
  'CERT_UNTRUSTED',
  'CERT_REVOKED',
  'ERR_TLS_CERT_ALTNAME_INVALID',
]);

/**
 * Codes of a TLS handshake with a port that does not speak TLS (a plain HTTP server or proxy
 * answers the ClientHello in plain text): the fix is an http:// URL, not a retry.
 */
export const NOT_TLS_ERROR_CODES: ReadonlySet<string> = new Set([
  'EPROTO',
  'ERR_SSL_WRONG_VERSION_NUMBER',
]);

/** The trust error code a failure's text names, if any. */
export function tlsTrustErrorIn(text: string): string | undefined {
  return codeIn(text, TLS_TRUST_ERROR_CODES);
}

/** The not-TLS error code (NOT_TLS_ERROR_CODES) a failure's text names, if any. */
export function notTlsErrorIn(text: string): string | undefined {
  return codeIn(text, NOT_TLS_ERROR_CODES);
}

function codeIn(text: string, codes: ReadonlySet<string>): string | undefined {
  for (const m of text.matchAll(/\b[A-Z][A-Z0-9_]{5,}\b/g)) {
    if (codes.has(m[0])) return m[0];
  }
  return undefined;
}
