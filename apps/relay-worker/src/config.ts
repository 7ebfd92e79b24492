/**
 * The Worker's settings, from its environment (vars and secrets), and the egress check it can
 * make without DNS.
 *
 *   ROAMLINK_RELAY_KEY       secret: the relay's X25519 secret key, 64 hex characters
 *   ROAMLINK_ALLOW_CLIENTS   client public keys (64 hex each, separated by spaces, commas or ";"),
 *                            or "any"
 *   ROAMLINK_PSK             optional secret: 64 hex characters (Noise IKpsk2)
 *   ROAMLINK_EGRESS_ALLOW    egress rules (apps/relay/src/egress.ts syntax), separated by spaces
 *   ROAMLINK_EGRESS_DENY     idem; deny beats allow
 *   ROAMLINK_EGRESS_DEFAULT  allow (default) or deny
 *   ROAMLINK_DEBUG           "1": GET /rl/state?sid=... answers the session object's state
 *
 * Workers cannot resolve names themselves: `connect()` takes a name and the platform resolves it
 * out of sight. So an IP literal is checked by the address rules, as on Node; a name only by the
 * name rules: deny rules first, then a name allow rule or an any-host rule lets it out; without
 * one, `deny` by default refuses it (address rules cannot be applied to an address never seen)
 * and `allow` by default lets it out, except `localhost` and names under it (RFC 6761 §6.3). What
 * Node refuses after resolving (a public name pointing at a private address) cannot be refused
 * here; the platform itself does not reach private networks.
 */
import {
  type Authorization,
  ErrorCode,
  fromHex,
  type Keypair,
  keypairFromSecret,
  RoamlinkError,
} from '@roamlink/core';
import {
  type EgressDecision,
  EgressPolicy,
  normaliseName,
  parseIp,
} from '../../relay/src/egress.ts';

export interface RelayEnvVars {
  ROAMLINK_RELAY_KEY?: string;
  ROAMLINK_ALLOW_CLIENTS?: string;
  ROAMLINK_PSK?: string;
  ROAMLINK_EGRESS_ALLOW?: string;
  ROAMLINK_EGRESS_DENY?: string;
  ROAMLINK_EGRESS_DEFAULT?: string;
  ROAMLINK_DEBUG?: string;
}

export interface WorkerRelayConfig {
  keypair: Keypair;
  authorize: (key: Uint8Array) => Authorization;
  policy: EgressPolicy;
  debug: boolean;
}

const invalid = (msg: string): RoamlinkError => new RoamlinkError(ErrorCode.INVALID_ARGUMENT, msg);

function hex32(value: string | undefined, name: string): Uint8Array {
  const v = value?.trim() ?? '';
  if (!/^[0-9a-f]{64}$/i.test(v)) throw invalid(`${name}: 64 hex characters expected`);
  return fromHex(v.toLowerCase());
}

const list = (v: string | undefined): string[] =>
  (v ?? '')
    .split(/[\s,;]+/)
    .map((x) => x.trim())
    .filter((x) => x.length > 0);

/** Parses the environment; throws ROAMLINK_ERR_INVALID_ARGUMENT naming the bad variable. */
export function parseConfig(env: RelayEnvVars): WorkerRelayConfig {
  const keypair = keypairFromSecret(hex32(env.ROAMLINK_RELAY_KEY, 'ROAMLINK_RELAY_KEY'));
  const psk = env.ROAMLINK_PSK ? hex32(env.ROAMLINK_PSK, 'ROAMLINK_PSK') : undefined;
  const clients = list(env.ROAMLINK_ALLOW_CLIENTS).map((k) => k.toLowerCase());
  if (clients.length === 0) throw invalid('ROAMLINK_ALLOW_CLIENTS: client keys or "any" expected');
  const any = clients.includes('any');
  if (any && clients.length > 1) throw invalid('ROAMLINK_ALLOW_CLIENTS: "any" cannot be combined');
  const allowed = new Set(clients.map((k) => (any ? k : hexKey(k))));
  const def = env.ROAMLINK_EGRESS_DEFAULT?.trim() || 'allow';
  if (def !== 'allow' && def !== 'deny') throw invalid('ROAMLINK_EGRESS_DEFAULT: allow or deny');
  const policy = new EgressPolicy({
    allow: list(env.ROAMLINK_EGRESS_ALLOW),
    deny: list(env.ROAMLINK_EGRESS_DENY),
    defaultAction: def,
  });
  const grant: Authorization = psk ? { allowed: true, psk } : { allowed: true };
  return {
    keypair,
    policy,
    debug: env.ROAMLINK_DEBUG === '1',
    authorize: (key) => {
      if (any) return grant;
      let h = '';
      for (const b of key) h += b.toString(16).padStart(2, '0');
      return allowed.has(h) ? grant : { allowed: false };
    },
  };
}

function hexKey(k: string): string {
  if (!/^[0-9a-f]{64}$/.test(k)) throw invalid(`ROAMLINK_ALLOW_CLIENTS: "${k}" is not a key`);
  return k;
}

function portMatches(
  ports: readonly (readonly [number, number])[] | undefined,
  p: number,
): boolean {
  return !ports || ports.some(([lo, hi]) => p >= lo && p <= hi);
}

/** The egress decision for `host:port` without resolving `host` (see the module comment). */
export function checkEgressWithoutDns(
  policy: EgressPolicy,
  host: string,
  port: number,
): EgressDecision {
  if (parseIp(host)) return policy.checkAddress(host, port);
  const pre = policy.checkName(host, port);
  if (!pre.ok) return pre;
  const name = normaliseName(host)!;
  for (const r of policy.allow) {
    const t = r.target;
    const hit =
      t.kind === 'any' ||
      (t.kind === 'name' && t.name === name) ||
      (t.kind === 'suffix' && name.length > t.suffix.length && name.endsWith(t.suffix));
    if (hit && portMatches(r.ports, port)) return { ok: true, reason: `allowed by rule ${r.text}` };
  }
  if (policy.defaultAction === 'deny') {
    return {
      ok: false,
      code: 'policy',
      reason: `no name rule allows ${name}:${port}, and names are not resolved here (default deny)`,
    };
  }
  if (name === 'localhost' || name.endsWith('.localhost')) {
    return { ok: false, code: 'policy', reason: `${name} is a loopback name (RFC 6761 §6.3)` };
  }
  return { ok: true, reason: 'name allowed by default (its address is not checked: no DNS here)' };
}
