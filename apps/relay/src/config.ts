/**
 * The relay's configuration, from four sources in this order of precedence:
 *
 *     flags  >  environment (ROAMLINK_*)  >  config file (--config FILE, JSON)  >  defaults
 *
 * One declarative table (`SETTINGS`) names every setting once: its JSON key, flag, environment
 * variable, expected form, default and help; the parser, the error messages and `--help` all come
 * from it. A repeatable setting takes its whole list from the highest source that has one (lists
 * are not merged across sources).
 *
 * Flags: `--name VALUE` or `--name=VALUE`; booleans `--name`, `--no-name` or `--name=true|false`;
 * repeatable flags may be given many times. Environment values are strings like flag values;
 * repeatable ones hold several values separated by whitespace (or `;`; client keys also `,`).
 * The config file is one JSON object whose keys are the settings' JSON keys; an egress rule there
 * may also be an object (see egress.ts). Unknown flags, unknown file keys and bad values throw a
 * `ConfigError` that names the flag, variable or key and the expected form; the CLI exits 2.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { createSecureContext } from 'node:tls';
import { Encapsulation, ErrorCode, fromHex, type Keypair, RoamlinkError } from '@roamlink/core';
import { loadOrCreateKey } from '@roamlink/node';
import { EgressPolicy, type EgressRule, type EgressRuleInput, parseEgressRule } from './egress.ts';
import { LOG_LEVELS, type LogFormat, type LogThreshold } from './log.ts';

// --- Types -------------------------------------------------------------------------------------

export interface Endpoint {
  /** An IPv4 address, an IPv6 address (no brackets) or a host name. */
  readonly address: string;
  /** 0 asks the OS for any free port. */
  readonly port: number;
}

export const ENCAPSULATION_CHOICES = ['udp', 'tcp', 'ws', 'http-stream', 'http-poll'] as const;
export type EncapsulationName = (typeof ENCAPSULATION_CHOICES)[number];
export const ENCAPSULATION_CODES: Readonly<Record<EncapsulationName, Encapsulation>> = {
  udp: Encapsulation.UDP,
  tcp: Encapsulation.TCP,
  ws: Encapsulation.WEBSOCKET,
  'http-stream': Encapsulation.HTTP_STREAM,
  'http-poll': Encapsulation.HTTP_POLL,
};

export interface RelayConfig {
  readonly udpListen: Endpoint;
  readonly tcpListen: Endpoint;
  readonly httpListen: Endpoint;
  /** Enabled encapsulations, most preferred first. */
  readonly encapsulations: readonly EncapsulationName[];
  readonly dataDir: string;
  /** Client public keys (64 lower-case hex characters) allowed in, or `any`. */
  readonly allowClients: 'any' | readonly string[];
  readonly pskFile: string | undefined;
  /** TLS on the HTTP port: the PEM certificate chain and its key (both or neither). */
  readonly tlsCert: string | undefined;
  readonly tlsKey: string | undefined;
  readonly egressAllow: readonly EgressRule[];
  readonly egressDeny: readonly EgressRule[];
  readonly egressDefault: 'allow' | 'deny';
  /** undefined: the core's default. */
  readonly rekeyAfterMs: number | undefined;
  readonly outageMs: number;
  /** A client not heard from for this long is forgotten (its streams and sockets closed). */
  readonly peerIdleMs: number;
  readonly flowIdleMs: number;
  /** Handshakes (message 1s) answered per second per source address; 0 = no limit. */
  readonly handshakeRate: number;
  readonly logLevel: LogThreshold;
  readonly logFormat: LogFormat;
  readonly metrics: boolean;
  readonly statusPage: boolean;
  readonly maxSessions: number;
  readonly maxStreamsPerSession: number;
  readonly shutdownGraceMs: number;
  /** The config file read, if any. */
  readonly configFile: string | undefined;
}

export type ConfigSource = 'default' | 'file' | 'env' | 'flag';

export class ConfigError extends RoamlinkError {
  /** The exit status a CLI uses for a usage error. */
  readonly exitCode = 2;
  constructor(message: string) {
    super(ErrorCode.INVALID_ARGUMENT, message);
    this.name = 'ConfigError';
  }
}

// --- Value parsers -----------------------------------------------------------------------------

/** A parser throws a plain Error whose message says what was wrong; the caller adds where. */
type Parse<T> = (raw: string) => T;

function fail(message: string): never {
  throw new Error(message);
}

export function parseListen(raw: string): Endpoint {
  const s = raw.trim();
  const m = /^(?:\[([0-9a-fA-F:.]+(?:%[\w.-]+)?)\]|([^:[\]\s]+)):(\d{1,5})$/.exec(s);
  if (!m) fail(`"${raw}" is not HOST:PORT (IPv6 in brackets: [::]:51820)`);
  const port = Number(m[3]);
  if (port > 65535) fail(`port ${port} is not 0–65535`);
  return { address: m[1] ?? m[2]!, port };
}

/** An endpoint as HOST:PORT, IPv6 in brackets. */
export function formatEndpoint(e: Endpoint): string {
  return e.address.includes(':') ? `[${e.address}]:${e.port}` : `${e.address}:${e.port}`;
}

function intParser(min: number, max = Number.MAX_SAFE_INTEGER): Parse<number> {
  return (raw) => {
    const s = raw.trim().replace(/_/g, '');
    if (!/^\d+$/.test(s) || !Number.isSafeInteger(Number(s)))
      fail(`"${raw}" is not a whole number`);
    const n = Number(s);
    if (n < min) fail(`${n} is below the minimum ${min}`);
    if (n > max) fail(`${n} is above the maximum ${max}`);
    return n;
  };
}

function enumParser<T extends string>(choices: readonly T[]): Parse<T> {
  return (raw) => {
    const s = raw.trim().toLowerCase();
    if (!(choices as readonly string[]).includes(s))
      fail(`"${raw}" is not one of ${choices.join(', ')}`);
    return s as T;
  };
}

export function parseBool(raw: string): boolean {
  const s = raw.trim().toLowerCase();
  if (['1', 'true', 'yes', 'on'].includes(s)) return true;
  if (['0', 'false', 'no', 'off'].includes(s)) return false;
  return fail(`"${raw}" is not a boolean (true/false, yes/no, on/off, 1/0)`);
}

function parseEncapsulations(raw: string): EncapsulationName[] {
  const names = raw
    .split(',')
    .map((s) => s.trim().toLowerCase())
    .filter((s) => s !== '');
  if (names.length === 0) fail('at least one encapsulation is needed');
  const out: EncapsulationName[] = [];
  for (const n of names) {
    const name = n === 'websocket' ? 'ws' : n;
    if (!(ENCAPSULATION_CHOICES as readonly string[]).includes(name)) {
      fail(`"${n}" is not one of ${ENCAPSULATION_CHOICES.join(', ')}`);
    }
    if (out.includes(name as EncapsulationName)) fail(`"${n}" is listed twice`);
    out.push(name as EncapsulationName);
  }
  return out;
}

function parseClientKey(raw: string): string {
  const s = raw.trim();
  if (!/^[0-9a-f]{64}$/i.test(s)) fail(`"${raw}" is not a public key (64 hex characters) or "any"`);
  return s.toLowerCase();
}

function parseRule(raw: EgressRuleInput): EgressRule {
  return parseEgressRule(raw);
}

function nonEmpty(raw: string): string {
  if (raw.trim() === '') fail('an empty value');
  return raw;
}

// --- The schema --------------------------------------------------------------------------------

type Kind = 'value' | 'bool' | 'list';

interface Setting<K extends keyof RelayConfig> {
  readonly key: K;
  readonly flag: string;
  readonly aliases?: readonly string[];
  readonly env: string;
  readonly kind: Kind;
  /** The expected form, shown in help and errors ("HOST:PORT", "N ≥ 0"). */
  readonly form: string;
  readonly help: string;
  /** What help shows as the default. */
  readonly defaultText: string;
  /** The default, possibly derived from settings resolved before this one. */
  readonly default: (resolved: Partial<RelayConfig>) => RelayConfig[K];
  /** One flag/env value → the value (list settings: one element). */
  readonly parse: Parse<unknown>;
  /** Separator of several values in one environment variable (list settings). */
  readonly envSplit?: RegExp;
  /** Builds the value from list elements (list settings). */
  readonly fromList?: (items: unknown[]) => RelayConfig[K];
  /** A value from the JSON file → the value; defaults to `parse` on strings. */
  readonly fromJson?: (v: unknown) => RelayConfig[K];
}

type AnySetting = { [K in keyof RelayConfig]: Setting<K> }[keyof RelayConfig];

const def = <K extends keyof RelayConfig>(s: Setting<K>): Setting<K> => s;

function clientList(items: unknown[]): 'any' | readonly string[] {
  const list = items as string[];
  if (list.includes('any')) {
    if (list.length > 1) fail('"any" cannot be combined with keys');
    return 'any';
  }
  return [...new Set(list)];
}

function jsonNumber(parse: Parse<number>): (v: unknown) => number {
  return (v) => {
    if (typeof v === 'number') return parse(String(v));
    if (typeof v === 'string') return parse(v);
    return fail(`${JSON.stringify(v)} is not a number`);
  };
}

const DEFAULT_PORT = 51820;

export const SETTINGS: readonly AnySetting[] = [
  def({
    key: 'udpListen',
    flag: 'udp-listen',
    aliases: ['listen', 'udp'],
    env: 'ROAMLINK_UDP_LISTEN',
    kind: 'value',
    form: 'HOST:PORT',
    help: 'Where the UDP encapsulation listens (port 0: any free port).',
    defaultText: `0.0.0.0:${DEFAULT_PORT}`,
    default: () => ({ address: '0.0.0.0', port: DEFAULT_PORT }),
    parse: parseListen,
  }),
  def({
    key: 'tcpListen',
    flag: 'tcp-listen',
    aliases: ['tcp'],
    env: 'ROAMLINK_TCP_LISTEN',
    kind: 'value',
    form: 'HOST:PORT',
    help: 'Where the TCP encapsulation listens.',
    defaultText: `the UDP address and port (0.0.0.0:${DEFAULT_PORT})`,
    default: (r) => r.udpListen!,
    parse: parseListen,
  }),
  def({
    key: 'httpListen',
    flag: 'http-listen',
    aliases: ['http'],
    env: 'ROAMLINK_HTTP_LISTEN',
    kind: 'value',
    form: 'HOST:PORT',
    help: 'Where the HTTP server (WebSocket, HTTP streaming and polling, /health, /metrics) listens.',
    defaultText: `the UDP address, next port (0.0.0.0:${DEFAULT_PORT + 1}; any port when UDP's is 0)`,
    default: (r) => ({
      address: r.udpListen!.address,
      port: r.udpListen!.port === 0 ? 0 : Math.min(r.udpListen!.port + 1, 65535),
    }),
    parse: parseListen,
  }),
  def({
    key: 'encapsulations',
    flag: 'encapsulations',
    env: 'ROAMLINK_ENCAPSULATIONS',
    kind: 'value',
    form: `LIST of ${ENCAPSULATION_CHOICES.join(',')}`,
    help: 'The encapsulations to serve, most preferred first (comma-separated).',
    defaultText: ENCAPSULATION_CHOICES.join(','),
    default: () => [...ENCAPSULATION_CHOICES],
    parse: parseEncapsulations,
    fromJson: (v) => {
      if (typeof v === 'string') return parseEncapsulations(v);
      if (Array.isArray(v) && v.every((x) => typeof x === 'string')) {
        return parseEncapsulations(v.join(','));
      }
      return fail('expected an array of encapsulation names');
    },
  }),
  def({
    key: 'dataDir',
    flag: 'data-dir',
    env: 'ROAMLINK_DATA_DIR',
    kind: 'value',
    form: 'DIR',
    help: 'Where the relay keeps its static key (relay.key, created on first run).',
    defaultText: './.roamlink-relay',
    default: () => './.roamlink-relay',
    parse: nonEmpty,
  }),
  def({
    key: 'allowClients',
    flag: 'allow-client',
    aliases: ['allow'],
    env: 'ROAMLINK_ALLOW_CLIENTS',
    kind: 'list',
    form: 'PUBKEY-HEX|any',
    help: 'A client public key allowed in (repeatable; commas also separate), or "any".',
    defaultText: 'none (no client gets in)',
    default: () => [],
    parse: (raw) => (raw.trim().toLowerCase() === 'any' ? 'any' : parseClientKey(raw)),
    envSplit: /[\s,;]+/,
    fromList: clientList,
  }),
  def({
    key: 'pskFile',
    flag: 'psk-file',
    env: 'ROAMLINK_PSK_FILE',
    kind: 'value',
    form: 'FILE',
    help: 'A 32-byte pre-shared key as 64 hex characters: clients must use it (Noise IKpsk2).',
    defaultText: 'none',
    default: () => undefined,
    parse: nonEmpty,
  }),
  def({
    key: 'tlsCert',
    flag: 'tls-cert',
    env: 'ROAMLINK_TLS_CERT',
    kind: 'value',
    form: 'FILE',
    help: 'PEM certificate chain: the HTTP port serves https:// and wss:// (with --tls-key); SIGHUP reloads it.',
    defaultText: 'none (plain http:// and ws://)',
    default: () => undefined,
    parse: nonEmpty,
  }),
  def({
    key: 'tlsKey',
    flag: 'tls-key',
    env: 'ROAMLINK_TLS_KEY',
    kind: 'value',
    form: 'FILE',
    help: "The PEM private key of --tls-cert's certificate.",
    defaultText: 'none',
    default: () => undefined,
    parse: nonEmpty,
  }),
  def({
    key: 'egressAllow',
    flag: 'egress-allow',
    env: 'ROAMLINK_EGRESS_ALLOW',
    kind: 'list',
    form: 'RULE',
    help: 'Destinations clients may reach even in private/special ranges (repeatable).',
    defaultText: 'none',
    default: () => [],
    parse: parseRule,
    envSplit: /[\s;]+/,
    fromList: (items) => items as EgressRule[],
  }),
  def({
    key: 'egressDeny',
    flag: 'egress-deny',
    env: 'ROAMLINK_EGRESS_DENY',
    kind: 'list',
    form: 'RULE',
    help: 'Destinations clients may never reach; beats every allow rule (repeatable).',
    defaultText: 'none (special-purpose ranges are denied anyway)',
    default: () => [],
    parse: parseRule,
    envSplit: /[\s;]+/,
    fromList: (items) => items as EgressRule[],
  }),
  def({
    key: 'egressDefault',
    flag: 'egress-default',
    env: 'ROAMLINK_EGRESS_DEFAULT',
    kind: 'value',
    form: 'allow|deny',
    help: 'What happens to a public destination no rule names.',
    defaultText: 'allow',
    default: () => 'allow' as const,
    parse: enumParser(['allow', 'deny'] as const),
  }),
  def({
    key: 'rekeyAfterMs',
    flag: 'rekey-after-ms',
    env: 'ROAMLINK_REKEY_AFTER_MS',
    kind: 'value',
    form: 'MS ≥ 1',
    help: 'Rekey a session after this long (keys are refused after 1.5 times as long).',
    defaultText: 'the protocol default (120000)',
    default: () => undefined,
    parse: intParser(1),
    fromJson: jsonNumber(intParser(1)),
  }),
  def({
    key: 'outageMs',
    flag: 'outage-ms',
    env: 'ROAMLINK_OUTAGE_MS',
    kind: 'value',
    form: 'MS ≥ 0',
    help: 'How long a silent session is kept before it is dropped.',
    defaultText: '120000',
    default: () => 120_000,
    parse: intParser(0),
    fromJson: jsonNumber(intParser(0)),
  }),
  def({
    key: 'peerIdleMs',
    flag: 'peer-idle-ms',
    env: 'ROAMLINK_PEER_IDLE_MS',
    kind: 'value',
    form: 'MS ≥ 1000',
    help: 'A client silent this long is forgotten, its streams closed (keepalives: 30 s). ≥ --outage-ms.',
    defaultText: 'max(600000, 2 × outage-ms)',
    default: (r) => Math.max(600_000, 2 * (r.outageMs ?? 120_000)),
    parse: intParser(1000),
    fromJson: jsonNumber(intParser(1000)),
  }),
  def({
    key: 'flowIdleMs',
    flag: 'flow-idle-ms',
    env: 'ROAMLINK_FLOW_IDLE_MS',
    kind: 'value',
    form: 'MS ≥ 1000',
    help: "A UDP flow's egress socket (SOCKS UDP ASSOCIATE) closes after this long without a datagram.",
    defaultText: '120000 (RFC 4787 REQ-5)',
    default: () => 120_000,
    parse: intParser(1000),
    fromJson: jsonNumber(intParser(1000)),
  }),
  def({
    key: 'handshakeRate',
    flag: 'handshake-rate',
    env: 'ROAMLINK_HANDSHAKE_RATE',
    kind: 'value',
    form: 'N ≥ 0',
    help: 'Handshakes answered per second per source address (as many in a burst); 0: no limit.',
    defaultText: '50',
    default: () => 50,
    parse: intParser(0),
    fromJson: jsonNumber(intParser(0)),
  }),
  def({
    key: 'logLevel',
    flag: 'log-level',
    env: 'ROAMLINK_LOG_LEVEL',
    kind: 'value',
    form: [...LOG_LEVELS, 'silent'].join('|'),
    help: 'The lowest level logged.',
    defaultText: 'info',
    default: (): LogThreshold => 'info',
    parse: enumParser<LogThreshold>([...LOG_LEVELS, 'silent']),
  }),
  def({
    key: 'logFormat',
    flag: 'log-format',
    env: 'ROAMLINK_LOG_FORMAT',
    kind: 'value',
    form: 'json|pretty|auto',
    help: 'JSON lines, one human line per event, or pretty on a terminal and JSON elsewhere.',
    defaultText: 'auto',
    default: (): LogFormat => 'auto',
    parse: enumParser<LogFormat>(['json', 'pretty', 'auto']),
  }),
  def({
    key: 'metrics',
    flag: 'metrics',
    env: 'ROAMLINK_METRICS',
    kind: 'bool',
    form: 'BOOL',
    help: 'Serve Prometheus metrics at GET /metrics on the HTTP port.',
    defaultText: 'off',
    default: () => false,
    parse: parseBool,
  }),
  def({
    key: 'statusPage',
    flag: 'status-page',
    env: 'ROAMLINK_STATUS_PAGE',
    kind: 'bool',
    form: 'BOOL',
    help: 'Serve a status page on the HTTP port (it shows client addresses: keep it private).',
    defaultText: 'off',
    default: () => false,
    parse: parseBool,
  }),
  def({
    key: 'maxSessions',
    flag: 'max-sessions',
    env: 'ROAMLINK_MAX_SESSIONS',
    kind: 'value',
    form: 'N ≥ 1',
    help: 'The most client sessions held at once.',
    defaultText: '10000',
    default: () => 10_000,
    parse: intParser(1),
    fromJson: jsonNumber(intParser(1)),
  }),
  def({
    key: 'maxStreamsPerSession',
    flag: 'max-streams-per-session',
    env: 'ROAMLINK_MAX_STREAMS_PER_SESSION',
    kind: 'value',
    form: 'N ≥ 1',
    help: 'Streams and datagram flows a session may have open; from 100 up further ones wait, below 100 they are refused.',
    defaultText: '256',
    default: () => 256,
    parse: intParser(1),
    fromJson: jsonNumber(intParser(1)),
  }),
  def({
    key: 'shutdownGraceMs',
    flag: 'shutdown-grace-ms',
    env: 'ROAMLINK_SHUTDOWN_GRACE_MS',
    kind: 'value',
    form: 'MS ≥ 0',
    help: 'On SIGTERM/SIGINT, how long open streams get to finish (that signal again 1 s on: exit now).',
    defaultText: '5000',
    default: () => 5_000,
    parse: intParser(0),
    fromJson: jsonNumber(intParser(0)),
  }),
];

const CONFIG_FLAG = 'config';
const CONFIG_ENV = 'ROAMLINK_CONFIG';

// --- Help --------------------------------------------------------------------------------------

/** `--help`, generated from the schema. */
export function helpText(program = 'relay'): string {
  const lines = [
    `usage: ${program} [--config FILE] [options]`,
    '',
    'Precedence: flags > environment > config file (JSON; keys as shown) > defaults.',
    'Booleans: --name, --no-name or --name=true|false. Repeatable settings take their whole list',
    'from the highest source that sets them; in the environment, separate values by spaces.',
    '',
    `  --${CONFIG_FLAG} FILE`,
    '      A JSON config file.',
    `      env ${CONFIG_ENV}`,
    '  -h, --help',
    '      This text.',
  ];
  for (const s of SETTINGS) {
    const head = s.kind === 'bool' ? `  --${s.flag}, --no-${s.flag}` : `  --${s.flag} ${s.form}`;
    lines.push(head, `      ${s.help}`);
    const meta = [`env ${s.env}`, `file "${s.key}"`];
    if (s.aliases?.length) meta.push(`also ${s.aliases.map((a) => `--${a}`).join(', ')}`);
    const oneLine = `      default ${s.defaultText} · ${meta.join(' · ')}`;
    if (oneLine.length <= 100) lines.push(oneLine);
    else lines.push(`      default ${s.defaultText}`, `      ${meta.join(' · ')}`);
  }
  lines.push(
    '',
    'Egress rules (RULE): HOST[:PORTS]',
    '  HOST is *, a name, *.suffix, an IPv4/IPv6 address or CIDR (IPv6 with ports in brackets);',
    '  PORTS is a list of ports and ranges (22,80-90); no PORTS means every port.',
    '  Examples: 127.0.0.1  10.0.0.0/8:22,80-90  *.corp.example:443  [fd00::/8]:22  :25',
    '  *.example.com matches names below example.com, not example.com itself.',
    '  Special-purpose ranges (RFC 6890: private, loopback, link-local, multicast, ...) are denied',
    '  unless an allow rule names them; a deny rule always wins. In the config file a rule may',
    '  also be an object: {"cidr": "10.0.0.0/8", "ports": [22, "80-90"]} or {"host": "*.x.example"}.',
    '',
  );
  return lines.join('\n');
}

// --- Loading -----------------------------------------------------------------------------------

export interface LoadConfigOptions {
  /** The arguments after the script name. */
  argv: readonly string[];
  /** process.env unless set. */
  env?: Readonly<Record<string, string | undefined>>;
  /** Reads the config file; readFileSync(path, 'utf8') unless set. */
  readFile?: (path: string) => string;
}

export type LoadConfigResult =
  | { readonly help: true; readonly text: string }
  | {
      readonly help: false;
      readonly config: RelayConfig;
      /** Where each setting's value came from. */
      readonly sources: Readonly<Record<keyof RelayConfig, ConfigSource>>;
    };

interface FlagValue {
  /** How the user spelled it, for errors: "--outage-ms". */
  readonly spelled: string;
  readonly values: string[];
}

function editDistance(a: string, b: string): number {
  const d = Array.from({ length: a.length + 1 }, (_, i) => [
    i,
    ...new Array<number>(b.length).fill(0),
  ]);
  for (let j = 1; j <= b.length; j++) d[0]![j] = j;
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      d[i]![j] = Math.min(
        d[i - 1]![j]! + 1,
        d[i]![j - 1]! + 1,
        d[i - 1]![j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1),
      );
    }
  }
  return d[a.length]![b.length]!;
}

function suggest(word: string, candidates: readonly string[], prefix: string): string {
  let best: string | undefined;
  let bestD = 3;
  for (const c of candidates) {
    const dist = editDistance(word, c);
    if (dist < bestD) {
      best = c;
      bestD = dist;
    }
  }
  return best === undefined ? '' : ` (did you mean ${prefix}${best}?)`;
}

const byFlag = new Map<string, AnySetting>();
for (const s of SETTINGS) {
  byFlag.set(s.flag, s);
  for (const a of s.aliases ?? []) byFlag.set(a, s);
}
const byKey = new Map<string, AnySetting>(SETTINGS.map((s) => [s.key, s]));

interface ParsedArgv {
  configFile: string | undefined;
  flags: Map<keyof RelayConfig, FlagValue>;
}

function parseArgv(argv: readonly string[]): ParsedArgv {
  const out: ParsedArgv = { configFile: undefined, flags: new Map() };
  const allFlags = [...byFlag.keys(), CONFIG_FLAG, 'help'];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (!arg.startsWith('--') || arg === '--') {
      throw new ConfigError(
        `unexpected argument "${arg}": the relay takes only --flags (see --help)`,
      );
    }
    const eq = arg.indexOf('=');
    let name = eq < 0 ? arg.slice(2) : arg.slice(2, eq);
    let inline: string | undefined = eq < 0 ? undefined : arg.slice(eq + 1);
    let negated = false;
    if (!byFlag.has(name) && name.startsWith('no-') && byFlag.get(name.slice(3))?.kind === 'bool') {
      name = name.slice(3);
      negated = true;
      if (inline !== undefined) throw new ConfigError(`--no-${name} takes no value`);
    }
    const takeValue = (form: string): string => {
      if (inline !== undefined) return inline;
      const next = argv[i + 1];
      if (next === undefined || next.startsWith('--')) {
        throw new ConfigError(`--${name} needs a value: --${name} ${form}`);
      }
      i++;
      return next;
    };
    if (name === CONFIG_FLAG) {
      if (out.configFile !== undefined) throw new ConfigError(`--${CONFIG_FLAG} is given twice`);
      out.configFile = takeValue('FILE');
      continue;
    }
    const s = byFlag.get(name);
    if (!s)
      throw new ConfigError(`unknown flag --${name}${suggest(name, allFlags, '--')}; see --help`);
    let value: string;
    if (s.kind === 'bool') {
      value = negated ? 'false' : (inline ?? 'true');
    } else {
      value = takeValue(s.form);
      inline = undefined;
    }
    const prev = out.flags.get(s.key);
    if (prev && s.kind !== 'list') {
      throw new ConfigError(`${prev.spelled} is given twice (${s.form}, once)`);
    }
    if (prev) prev.values.push(value);
    else out.flags.set(s.key, { spelled: negated ? `--no-${name}` : `--${name}`, values: [value] });
  }
  return out;
}

/** Runs `parse`, turning its complaint into a ConfigError that says where and what is expected. */
function at<T>(where: string, form: string, parse: () => T): T {
  try {
    return parse();
  } catch (e) {
    if (e instanceof ConfigError) throw e;
    const why = (e as Error).message;
    throw new ConfigError(
      `${where}: ${why}${why.includes('expected') ? '' : ` (expected ${form})`}`,
    );
  }
}

function readConfigFile(
  path: string,
  spelled: string,
  readFile: (p: string) => string,
): Record<string, unknown> {
  let text: string;
  try {
    text = readFile(path);
  } catch (e) {
    const code = (e as { code?: string }).code;
    throw new ConfigError(`${spelled}: cannot read ${path} (${code ?? (e as Error).message})`);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new ConfigError(`${path}: not valid JSON (${(e as Error).message})`);
  }
  if (json === null || typeof json !== 'object' || Array.isArray(json)) {
    throw new ConfigError(`${path}: expected a JSON object of settings`);
  }
  const obj = json as Record<string, unknown>;
  for (const k of Object.keys(obj)) {
    if (k.startsWith('$') || k.startsWith('//')) continue; // "$schema", "// comment"
    if (!byKey.has(k)) {
      throw new ConfigError(
        `${path}: unknown key "${k}"${suggest(k, [...byKey.keys()], '')}; see --help for the keys`,
      );
    }
  }
  return obj;
}

function fromFile(s: AnySetting, v: unknown, where: string): unknown {
  return at(where, s.form, () => {
    if (s.fromJson) return s.fromJson(v);
    if (s.kind === 'list') {
      const items = Array.isArray(v) ? v : [v];
      return s.fromList!(
        items.map((x: unknown) => {
          if (typeof x === 'string') return s.parse(x);
          if (s.key === 'egressAllow' || s.key === 'egressDeny') {
            return parseRule(x as EgressRuleInput);
          }
          return fail(`${JSON.stringify(x)} is not a string`);
        }),
      );
    }
    if (s.kind === 'bool') {
      if (typeof v === 'boolean') return v;
      if (typeof v === 'string') return parseBool(v);
      return fail(`${JSON.stringify(v)} is not true or false`);
    }
    if (typeof v !== 'string') return fail(`${JSON.stringify(v)} is not a string`);
    return s.parse(v);
  });
}

/**
 * Resolves the configuration. Returns `{ help: true, text }` when asked for help (help wins
 * over everything else). Throws `ConfigError` (exit code 2) on any bad input.
 */
export function loadConfig(o: LoadConfigOptions): LoadConfigResult {
  const env = o.env ?? process.env;
  // Help wins over everything, bad flags included: whoever asks for it is finding out the flags.
  if (o.argv.some((a) => a === '-h' || a === '--help')) return { help: true, text: helpText() };
  const parsed = parseArgv(o.argv);

  const envConfig = env[CONFIG_ENV];
  const configFile =
    parsed.configFile ?? (envConfig !== undefined && envConfig !== '' ? envConfig : undefined);
  const spelledConfig = parsed.configFile !== undefined ? `--${CONFIG_FLAG}` : CONFIG_ENV;
  const file =
    configFile === undefined
      ? {}
      : readConfigFile(configFile, spelledConfig, o.readFile ?? ((p) => readFileSync(p, 'utf8')));

  const resolved: Record<string, unknown> = {};
  const sources: Record<string, ConfigSource> = {};
  for (const s of SETTINGS) {
    const flag = parsed.flags.get(s.key);
    const envRaw = env[s.env];
    let value: unknown;
    let source: ConfigSource;
    if (flag) {
      source = 'flag';
      value = at(flag.spelled, s.form, () => {
        if (s.kind !== 'list') return s.parse(flag.values[0]!);
        const items = flag.values.flatMap((v) => (s.key === 'allowClients' ? v.split(',') : [v]));
        return s.fromList!(items.filter((v) => v.trim() !== '').map((v) => s.parse(v)));
      });
    } else if (envRaw !== undefined && envRaw.trim() !== '') {
      source = 'env';
      value = at(s.env, s.form, () => {
        if (s.kind !== 'list') return s.parse(envRaw);
        const items = envRaw.split(s.envSplit ?? /\s+/).filter((v) => v !== '');
        return s.fromList!(items.map((v) => s.parse(v)));
      });
    } else if (Object.hasOwn(file, s.key)) {
      source = 'file';
      value = fromFile(s, file[s.key], `${configFile}: "${s.key}"`);
    } else {
      source = 'default';
      value = s.default(resolved as Partial<RelayConfig>);
    }
    resolved[s.key] = value;
    sources[s.key] = source;
  }
  if ((resolved.peerIdleMs as number) < (resolved.outageMs as number)) {
    throw new ConfigError(
      `peer-idle-ms (${resolved.peerIdleMs}) must be at least outage-ms (${resolved.outageMs}): ` +
        'a client riding out an outage would be forgotten, and its streams with it',
    );
  }
  if ((resolved.tlsCert === undefined) !== (resolved.tlsKey === undefined)) {
    throw new ConfigError(
      `${resolved.tlsCert === undefined ? 'tls-key' : 'tls-cert'} is set without ${resolved.tlsCert === undefined ? 'tls-cert' : 'tls-key'}: TLS needs both the certificate and its key`,
    );
  }
  resolved.configFile = configFile;
  sources.configFile = configFile === undefined ? 'default' : parsed.configFile ? 'flag' : 'env';
  return {
    help: false,
    config: resolved as unknown as RelayConfig,
    sources: sources as Record<keyof RelayConfig, ConfigSource>,
  };
}

// --- Helpers for the entry point ---------------------------------------------------------------

/** The egress policy the configuration describes. */
export function egressPolicyOf(c: RelayConfig): EgressPolicy {
  return new EgressPolicy({
    allow: c.egressAllow,
    deny: c.egressDeny,
    defaultAction: c.egressDefault,
  });
}

/** The enabled encapsulations as the core's codes, in preference order. */
export function encapsulationCodes(c: RelayConfig): Encapsulation[] {
  return c.encapsulations.map((n) => ENCAPSULATION_CODES[n]);
}

/**
 * The TLS certificate and key the configuration names, read and checked together (a key that is
 * not the certificate's fails here, at start, not at the first client's handshake).
 */
export function readTlsFiles(
  c: Pick<RelayConfig, 'tlsCert' | 'tlsKey'>,
): { cert: Buffer; key: Buffer } | undefined {
  if (c.tlsCert === undefined || c.tlsKey === undefined) return undefined;
  const read = (flag: string, path: string): Buffer => {
    try {
      return readFileSync(path);
    } catch (e) {
      throw new ConfigError(
        `--${flag}: cannot read ${path} (${(e as { code?: string }).code ?? (e as Error).message})`,
      );
    }
  };
  const cert = read('tls-cert', c.tlsCert);
  const key = read('tls-key', c.tlsKey);
  try {
    createSecureContext({ cert, key });
  } catch (e) {
    throw new ConfigError(
      `--tls-cert/--tls-key: ${c.tlsCert} and ${c.tlsKey} are not a PEM certificate and its key (${(e as Error).message})`,
    );
  }
  return { cert, key };
}

/** The relay's static identity: `relay.key` in the data dir, created on first run (mode 0600). */
export function loadOrCreateIdentity(dataDir: string): { keypair: Keypair; created: boolean } {
  return loadOrCreateKey(join(dataDir, 'relay.key'));
}

/** Reads a pre-shared key file: 64 hex characters (whitespace around them ignored). */
export function readPskFile(
  path: string,
  readFile = (p: string) => readFileSync(p, 'utf8'),
): Uint8Array {
  let text: string;
  try {
    text = readFile(path);
  } catch (e) {
    throw new ConfigError(
      `--psk-file: cannot read ${path} (${(e as { code?: string }).code ?? (e as Error).message})`,
    );
  }
  const hex = text.trim();
  if (!/^[0-9a-f]{64}$/i.test(hex)) {
    throw new ConfigError(`--psk-file: ${path} does not hold a 32-byte key as 64 hex characters`);
  }
  return fromHex(hex);
}
