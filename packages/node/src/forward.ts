/**
 * `-L [bind:]port:host:port` local forwards: every connection accepted on bind:port is carried
 * through the tunnel to host:port (the host as written, resolved at the far end). IPv6 addresses
 * go in brackets; the bind address defaults to 127.0.0.1, and an empty one or "*" means every
 * interface. Bytes flow as through the SOCKS server: backpressure both ways, half-close passed
 * on, an error on either side destroys both (the client's socket with an RST, which is also how a
 * refused dial shows).
 */
import { isIPv4, isIPv6, type Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { ErrorCode, RoamlinkError } from '@roamlink/core';
import { LocalServer, safeLogger } from './local-server.ts';
import {
  type CarryLogEvent,
  carryStream,
  DEFAULT_MAX_LOCAL_CONNECTIONS,
  DEFAULT_TUNNEL_CONNECT_TIMEOUT_MS,
  dialTunnel,
  newConnectFailures,
  type TunnelDialer,
  TunnelError,
  type TunnelErrorCode,
  type TunnelTarget,
} from './socks5.ts';

export interface ForwardSpec {
  bindHost: string;
  bindPort: number;
  target: TunnelTarget;
}

export const DEFAULT_FORWARD_BIND = '127.0.0.1';

const invalid = (spec: string, why: string): RoamlinkError => {
  const shown = spec.length > 80 ? `${spec.slice(0, 80)}…` : spec;
  return new RoamlinkError(
    ErrorCode.INVALID_ARGUMENT,
    `invalid forward ${JSON.stringify(shown)}: ${why} (expected [bind:]port:host:port, IPv6 in [ ])`,
  );
};

interface Part {
  text: string;
  bracketed: boolean;
}

/** Splits on ':' outside brackets; a bracketed part must be an IPv6 literal. */
function splitSpec(spec: string): Part[] {
  const parts: Part[] = [];
  let i = 0;
  for (;;) {
    let text: string;
    let bracketed = false;
    if (spec[i] === '[') {
      const j = spec.indexOf(']', i);
      if (j < 0) throw invalid(spec, "'[' without ']'");
      text = spec.slice(i + 1, j);
      if (!isIPv6(text)) throw invalid(spec, `${JSON.stringify(text)} is not an IPv6 address`);
      bracketed = true;
      i = j + 1;
      if (i < spec.length && spec[i] !== ':') throw invalid(spec, "']' must be followed by ':'");
    } else {
      const j = spec.indexOf(':', i);
      const end = j < 0 ? spec.length : j;
      text = spec.slice(i, end);
      if (text.includes('[') || text.includes(']')) throw invalid(spec, 'misplaced bracket');
      i = end;
    }
    parts.push({ text, bracketed });
    if (i >= spec.length) return parts;
    i++; // the ':'
  }
}

function parsePort(spec: string, p: Part, what: string, min: number): number {
  if (p.bracketed || !/^\d{1,5}$/.test(p.text)) {
    throw invalid(spec, `${what} ${JSON.stringify(p.text)} is not a port number`);
  }
  const n = Number(p.text);
  if (n < min || n > 65535) throw invalid(spec, `${what} ${n} is out of range ${min}-65535`);
  return n;
}

// biome-ignore lint/suspicious/noControlCharactersInRegex: rejecting them is the point
const BAD_HOST_CHARS = /[\s\u0000-\u001f\u007f/@]/;

function parseHost(spec: string, p: Part, what: string): string {
  if (p.bracketed) return p.text;
  if (p.text === '') throw invalid(spec, `empty ${what}`);
  if (BAD_HOST_CHARS.test(p.text))
    throw invalid(spec, `${what} ${JSON.stringify(p.text)} has characters a host name cannot have`);
  if (new TextEncoder().encode(p.text).length > 255)
    throw invalid(spec, `${what} is longer than 255 bytes`);
  // An IPv4 literal or a name: either is passed on as written.
  if (/^[\d.]+$/.test(p.text) && !isIPv4(p.text)) {
    throw invalid(spec, `${what} ${JSON.stringify(p.text)} is not a valid IPv4 address`);
  }
  return p.text;
}

/**
 * Parses "[bind:]port:host:port". Throws RoamlinkError ROAMLINK_ERR_INVALID_ARGUMENT with a
 * message naming what is wrong. Bind port 0 asks for any free port.
 */
export function parseForward(spec: string): ForwardSpec {
  if (typeof spec !== 'string') throw invalid(String(spec), 'not a string');
  const parts = splitSpec(spec);
  if (parts.length !== 3 && parts.length !== 4) {
    throw invalid(spec, `${parts.length} fields where 3 or 4 were expected`);
  }
  let bindHost = DEFAULT_FORWARD_BIND;
  if (parts.length === 4) {
    const b = parts.shift()!;
    bindHost =
      !b.bracketed && (b.text === '' || b.text === '*')
        ? '0.0.0.0'
        : parseHost(spec, b, 'bind address');
  }
  const [bp, h, tp] = parts as [Part, Part, Part];
  return {
    bindHost,
    bindPort: parsePort(spec, bp, 'listen port', 0),
    target: {
      host: parseHost(spec, h, 'target host'),
      port: parsePort(spec, tp, 'target port', 1),
    },
  };
}

/** A forward's log line: its stream events (remote: the local client's address:port) and more. */
export interface ForwardLogEvent extends Omit<CarryLogEvent, 'event'> {
  event: 'accept' | 'connect' | 'connect-failed' | 'close' | 'reject';
}

export interface ForwardOptions {
  spec: string | ForwardSpec;
  dialer: TunnelDialer;
  onLog?: (e: ForwardLogEvent) => void;
  /** How long a connection waits for the dialer (default 30 000). */
  connectTimeoutMs?: number;
  /** Open connections beyond which new ones are closed at once (default 1024). */
  maxConnections?: number;
}

export interface ForwardStats {
  accepted: number;
  connects: number;
  connectFailures: Record<TunnelErrorCode, number>;
  /** Closed at once: over maxConnections. */
  overLimit: number;
}

export interface Forward {
  address: { host: string; port: number };
  target: TunnelTarget;
  readonly stats: ForwardStats;
  connections(): number;
  close(): Promise<void>;
}

/** Listens on the spec's bind address and carries each connection to its target. */
export async function startForward(o: ForwardOptions): Promise<Forward> {
  const spec = typeof o.spec === 'string' ? parseForward(o.spec) : o.spec;
  const target = spec.target;
  const connectMs = o.connectTimeoutMs ?? DEFAULT_TUNNEL_CONNECT_TIMEOUT_MS;
  const maxConns = o.maxConnections ?? DEFAULT_MAX_LOCAL_CONNECTIONS;
  const stats: ForwardStats = {
    accepted: 0,
    connects: 0,
    connectFailures: newConnectFailures(),
    overLimit: 0,
  };
  const log = safeLogger(o.onLog);

  const carry = async (s: Socket, remote: string): Promise<void> => {
    let stream: Duplex;
    try {
      stream = await dialTunnel(o.dialer, target, connectMs, s);
    } catch (e) {
      const code: TunnelErrorCode = e instanceof TunnelError ? e.code : 'internal';
      stats.connectFailures[code]++;
      log({
        event: 'connect-failed',
        remote,
        target,
        code,
        message: e instanceof Error ? e.message : String(e),
      });
      if (!s.destroyed) s.resetAndDestroy();
      return;
    }
    carryStream({ listener, stats, log, s, stream, remote, target });
  };

  const listener: LocalServer = new LocalServer({
    serverOptions: { allowHalfOpen: true, noDelay: true, pauseOnConnect: true },
    maxConnections: maxConns,
    onRefused: (remote) => {
      stats.overLimit++;
      log({ event: 'reject', remote, target, message: 'too many connections' });
    },
    onAccepted: (remote) => {
      stats.accepted++;
      log({ event: 'accept', remote, target });
    },
    handle: carry,
    onFailed: (remote, message) => log({ event: 'close', remote, target, message }),
  });
  const address = await listener.listen(spec.bindHost, spec.bindPort);
  return {
    address,
    target,
    stats,
    connections: () => listener.sockets.size,
    close: () => listener.close(),
  };
}
