/**
 * The `roamlink connect` command line that reaches this relay, for the operator to hand on: the
 * relay knows its ports and key, not the name clients know it by, so a wildcard listen address
 * stays a placeholder (RELAY-HOST). Only what differs from the client's defaults is spelled out
 * (TCP on the UDP port, WebSocket and HTTP on the next one); with TLS the HTTP face is given as
 * an https:// URL, UDP and TCP added by flag, since a URL relay races only WebSocket and HTTP.
 */
import type { Endpoint } from './config.ts';

export const HOST_PLACEHOLDER = 'RELAY-HOST';

export interface ClientCommandInput {
  udp: Endpoint | undefined;
  tcp: Endpoint | undefined;
  http: Endpoint | undefined;
  publicKey: string;
  tls: boolean;
}

function host(e: Endpoint): string {
  const a = e.address;
  if (a === '0.0.0.0' || a === '::' || a === '') return HOST_PLACEHOLDER;
  return a.includes(':') ? `[${a}]` : a;
}

const at = (e: Endpoint): string => `${host(e)}:${e.port}`;

export function clientCommand(r: ClientCommandInput): string {
  const args = ['roamlink', 'connect'];
  if (r.tls && r.http) {
    args.push(`https://${r.http.port === 443 ? host(r.http) : at(r.http)}`);
    args.push('--relay-key', r.publicKey);
    if (r.udp) args.push('--relay-udp', at(r.udp));
    if (r.tcp) args.push('--relay-tcp', at(r.tcp));
    return args.join(' ');
  }
  const base = r.udp ?? r.tcp;
  if (!base) {
    // WebSocket and HTTP only, in the clear.
    args.push(`http://${r.http ? at(r.http) : HOST_PLACEHOLDER}`, '--relay-key', r.publicKey);
    return args.join(' ');
  }
  args.push(at(base), '--relay-key', r.publicKey);
  if (!r.udp) args.push('--no-udp');
  if (!r.tcp) args.push('--no-tcp');
  else if (r.udp && at(r.tcp) !== at(r.udp)) args.push('--relay-tcp', at(r.tcp));
  if (!r.http) args.push('--no-ws', '--no-http');
  else if (host(r.http) !== host(base) || r.http.port !== Math.min(base.port + 1, 65535)) {
    args.push('--relay-http', at(r.http));
  }
  return args.join(' ');
}
