/**
 * The relay's configuration: defaults, precedence (flags > env > file > defaults) setting by
 * setting, every flag spelling, environment lists, the JSON file (egress rule objects included),
 * errors that name the flag/variable/key and the expected form, and the generated --help.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { Encapsulation, ErrorCode, isRoamlinkError, toHex } from '@roamlink/core';
import {
  ConfigError,
  egressPolicyOf,
  encapsulationCodes,
  formatEndpoint,
  helpText,
  type LoadConfigOptions,
  loadConfig,
  loadOrCreateIdentity,
  type RelayConfig,
  readPskFile,
  SETTINGS,
} from '../src/config.ts';

const KEY_A = 'a'.repeat(64);
const KEY_B = `${'0123456789ABCDEF'.repeat(4)}`;

function load(o: Partial<LoadConfigOptions> & { file?: unknown }): {
  config: RelayConfig;
  sources: Record<string, string>;
} {
  const { file, ...rest } = o;
  const files: Record<string, string> =
    file === undefined ? {} : { 'relay.json': JSON.stringify(file) };
  const r = loadConfig({
    argv: [],
    env: {},
    readFile: (p) => {
      const text = files[p];
      if (text === undefined) throw Object.assign(new Error(`ENOENT: ${p}`), { code: 'ENOENT' });
      return text;
    },
    ...rest,
    ...(file === undefined ? {} : { argv: ['--config', 'relay.json', ...(rest.argv ?? [])] }),
  });
  assert.equal(r.help, false);
  if (r.help) throw new Error('unreachable');
  return { config: r.config, sources: r.sources };
}

function fails(o: Partial<LoadConfigOptions> & { file?: unknown }, re: RegExp): void {
  assert.throws(
    () => load(o),
    (e: unknown) => {
      assert.ok(e instanceof ConfigError, String(e));
      assert.ok(isRoamlinkError(e, ErrorCode.INVALID_ARGUMENT));
      assert.equal(e.exitCode, 2);
      assert.match(e.message, re);
      return true;
    },
  );
}

test('defaults', () => {
  const { config: c, sources } = load({});
  assert.deepEqual(c.udpListen, { address: '0.0.0.0', port: 51820 });
  assert.deepEqual(c.tcpListen, { address: '0.0.0.0', port: 51820 });
  assert.deepEqual(c.httpListen, { address: '0.0.0.0', port: 51821 });
  assert.deepEqual(c.encapsulations, ['udp', 'tcp', 'ws', 'http-stream', 'http-poll']);
  assert.equal(c.dataDir, './.roamlink-relay');
  assert.deepEqual(c.allowClients, []);
  assert.equal(c.pskFile, undefined);
  assert.deepEqual(c.egressAllow, []);
  assert.deepEqual(c.egressDeny, []);
  assert.equal(c.egressDefault, 'allow');
  assert.equal(c.rekeyAfterMs, undefined);
  assert.equal(c.outageMs, 120_000);
  assert.equal(c.logLevel, 'info');
  assert.equal(c.logFormat, 'auto');
  assert.equal(c.metrics, false);
  assert.equal(c.statusPage, false);
  assert.equal(c.maxSessions, 10_000);
  assert.equal(c.maxStreamsPerSession, 256);
  assert.equal(c.shutdownGraceMs, 5_000);
  assert.equal(c.configFile, undefined);
  assert.ok(Object.values(sources).every((s) => s === 'default'));
  assert.deepEqual(encapsulationCodes(c), [
    Encapsulation.UDP,
    Encapsulation.TCP,
    Encapsulation.WEBSOCKET,
    Encapsulation.HTTP_STREAM,
    Encapsulation.HTTP_POLL,
  ]);
});

test('precedence: flags > env > file > defaults, setting by setting', () => {
  const file = {
    outageMs: 1000,
    maxSessions: 50,
    logLevel: 'debug',
    metrics: true,
    dataDir: 'from-file',
  };
  const env = { ROAMLINK_OUTAGE_MS: '2000', ROAMLINK_MAX_SESSIONS: '60', ROAMLINK_METRICS: 'no' };
  const argv = ['--outage-ms', '3000'];
  const { config: c, sources } = load({ file, env, argv });
  assert.equal(c.outageMs, 3000);
  assert.equal(sources.outageMs, 'flag');
  assert.equal(c.maxSessions, 60);
  assert.equal(sources.maxSessions, 'env');
  assert.equal(c.metrics, false);
  assert.equal(sources.metrics, 'env');
  assert.equal(c.logLevel, 'debug');
  assert.equal(sources.logLevel, 'file');
  assert.equal(c.dataDir, 'from-file');
  assert.equal(c.shutdownGraceMs, 5000);
  assert.equal(sources.shutdownGraceMs, 'default');
  assert.equal(c.configFile, 'relay.json');
  assert.equal(sources.configFile, 'flag');
  // Without the flag the env wins; without both the file.
  assert.equal(load({ file, env }).config.outageMs, 2000);
  assert.equal(load({ file }).config.outageMs, 1000);
  // An empty environment variable counts as unset.
  assert.equal(load({ file, env: { ROAMLINK_OUTAGE_MS: '' } }).config.outageMs, 1000);
});

test('lists come whole from the highest source that sets them', () => {
  const file = { egressAllow: ['127.0.0.1', { cidr: '10.0.0.0/8', ports: [22, '80-90'] }] };
  const fromFile = load({ file }).config;
  assert.deepEqual(
    fromFile.egressAllow.map((r) => r.text),
    ['127.0.0.1', '10.0.0.0/8:22,80-90'],
  );
  const env = { ROAMLINK_EGRESS_ALLOW: ' 192.168.1.0/24:443;[fd00::/8]:22  db.example ' };
  assert.deepEqual(
    load({ file, env }).config.egressAllow.map((r) => r.text),
    ['192.168.1.0/24:443', '[fd00::/8]:22', 'db.example'],
  );
  const argv = ['--egress-allow', '127.0.0.2', '--egress-allow=*.x.example:1-1024'];
  assert.deepEqual(
    load({ file, env, argv }).config.egressAllow.map((r) => r.text),
    ['127.0.0.2', '*.x.example:1-1024'],
  );
  // The egress policy built from the configuration behaves as the rules say.
  const c = load({ file, argv: ['--egress-deny', '10.0.0.9', '--egress-default', 'deny'] }).config;
  const p = egressPolicyOf(c);
  assert.equal(p.checkAddress('127.0.0.1', 80).ok, true);
  assert.equal(p.checkAddress('10.0.0.8', 22).ok, true);
  assert.equal(p.checkAddress('10.0.0.9', 22).ok, false);
  assert.equal(p.checkAddress('8.8.8.8', 443).ok, false, 'default deny');
});

test('client keys: repeatable, comma lists, env lists, any', () => {
  const argv = ['--allow-client', KEY_A, '--allow', `${KEY_B},${KEY_A}`];
  assert.deepEqual(load({ argv }).config.allowClients, [KEY_A, KEY_B.toLowerCase()]);
  const env = { ROAMLINK_ALLOW_CLIENTS: `${KEY_A}, ${KEY_B}` };
  assert.deepEqual(load({ env }).config.allowClients, [KEY_A, KEY_B.toLowerCase()]);
  assert.equal(load({ argv: ['--allow', 'ANY'] }).config.allowClients, 'any');
  assert.equal(load({ file: { allowClients: 'any' } }).config.allowClients, 'any');
  assert.deepEqual(load({ file: { allowClients: [KEY_A] } }).config.allowClients, [KEY_A]);
  fails(
    { argv: ['--allow', 'any', '--allow', KEY_A] },
    /--allow: "any" cannot be combined with keys/,
  );
  fails({ argv: ['--allow-client', 'abc'] }, /--allow-client: "abc" is not a public key \(64 hex/);
  fails({ env: { ROAMLINK_ALLOW_CLIENTS: `${KEY_A} zz` } }, /^ROAMLINK_ALLOW_CLIENTS: "zz"/);
});

test('flag spellings: = form, aliases, booleans and --no-, listen endpoints', () => {
  const { config: c, sources } = load({
    argv: [
      '--listen=127.0.0.1:0',
      '--http',
      '[::1]:8080',
      '--metrics',
      '--no-status-page',
      '--rekey-after-ms',
      '600',
      '--encapsulations',
      'WebSocket, udp',
      '--log-format=json',
      '--max-streams-per-session',
      '1_000',
    ],
  });
  assert.deepEqual(c.udpListen, { address: '127.0.0.1', port: 0 });
  // The TCP default follows UDP's; the HTTP one was given.
  assert.deepEqual(c.tcpListen, { address: '127.0.0.1', port: 0 });
  assert.equal(sources.tcpListen, 'default');
  assert.deepEqual(c.httpListen, { address: '::1', port: 8080 });
  assert.equal(formatEndpoint(c.httpListen), '[::1]:8080');
  assert.equal(c.metrics, true);
  assert.equal(c.statusPage, false);
  assert.equal(sources.statusPage, 'flag');
  assert.equal(c.rekeyAfterMs, 600);
  assert.deepEqual(c.encapsulations, ['ws', 'udp']);
  assert.equal(c.logFormat, 'json');
  assert.equal(c.maxStreamsPerSession, 1000);
  assert.equal(load({ argv: ['--metrics=off'] }).config.metrics, false);
  // HTTP defaults to the next port, and to any port when UDP asks for any.
  assert.deepEqual(load({ argv: ['--udp-listen', '10.1.2.3:7000'] }).config.httpListen, {
    address: '10.1.2.3',
    port: 7001,
  });
  assert.deepEqual(load({ env: { ROAMLINK_UDP_LISTEN: '[::]:0' } }).config.httpListen, {
    address: '::',
    port: 0,
  });
  // The flags the demo passes today still work.
  const demo = load({
    argv: ['--listen', '127.0.0.1:0', '--tcp', '127.0.0.1:0', '--http', '127.0.0.1:0'],
  }).config;
  assert.equal(demo.tcpListen.port, 0);
});

test('bad values and unknown flags: clear errors naming the flag and the expected form', () => {
  const cases: [string[], RegExp][] = [
    [['--outage-ms', 'abc'], /^--outage-ms: "abc" is not a whole number \(expected MS ≥ 0\)$/],
    [['--outage-ms=-1'], /^--outage-ms: "-1" is not a whole number/],
    [['--max-sessions', '0'], /^--max-sessions: 0 is below the minimum 1 \(expected N ≥ 1\)$/],
    [['--rekey-after-ms', '1.5'], /^--rekey-after-ms: "1.5" is not a whole number/],
    [['--rekey-after-ms', '99999999999999999999'], /not a whole number/],
    [['--metricz'], /^unknown flag --metricz \(did you mean --metrics\?\); see --help$/],
    [['--frobnicate'], /^unknown flag --frobnicate; see --help$/],
    [['--no-outage-ms'], /^unknown flag --no-outage-ms/],
    [['--no-metrics=1'], /^--no-metrics takes no value$/],
    [['--metrics=maybe'], /^--metrics: "maybe" is not a boolean/],
    [['--data-dir'], /^--data-dir needs a value: --data-dir DIR$/],
    [['--data-dir', '--metrics'], /^--data-dir needs a value/],
    [['--data-dir', ''], /^--data-dir: an empty value/],
    [['--listen', '::1:80'], /^--listen: "::1:80" is not HOST:PORT \(IPv6 in brackets/],
    [['--udp-listen', '1.2.3.4:65536'], /^--udp-listen: port 65536 is not 0–65535/],
    [['--udp-listen', '1.2.3.4'], /is not HOST:PORT/],
    [['--encapsulations', 'udp,quic'], /^--encapsulations: "quic" is not one of udp, tcp, ws/],
    [['--encapsulations', 'udp,udp'], /"udp" is listed twice/],
    [['--encapsulations', ','], /at least one encapsulation/],
    [
      ['--log-level', 'loud'],
      /^--log-level: "loud" is not one of debug, info, warn, error, silent/,
    ],
    [['--egress-default', 'maybe'], /^--egress-default: "maybe" is not one of allow, deny/],
    [
      ['--egress-allow', '10.1.0.0/8'],
      /^--egress-allow: "10.1.0.0\/8" has host bits set.*expected HOST\[:PORTS\]/,
    ],
    [['--egress-deny', 'fe80::/10:22'], /^--egress-deny: .*\[addr\/len\]:ports/],
    [['--outage-ms', '1', '--outage-ms', '2'], /^--outage-ms is given twice/],
    [['--config', 'a', '--config', 'b'], /^--config is given twice/],
    [['stray'], /^unexpected argument "stray"/],
    [['-v'], /^unexpected argument "-v"/],
  ];
  for (const [argv, re] of cases) fails({ argv }, re);
});

test('environment errors name the variable', () => {
  fails(
    { env: { ROAMLINK_OUTAGE_MS: 'soon' } },
    /^ROAMLINK_OUTAGE_MS: "soon" is not a whole number/,
  );
  fails({ env: { ROAMLINK_METRICS: 'yep' } }, /^ROAMLINK_METRICS: "yep" is not a boolean/);
  fails(
    { env: { ROAMLINK_EGRESS_DENY: 'ok.example x:0' } },
    /^ROAMLINK_EGRESS_DENY: "x:0": port "0"/,
  );
  // A flag overrides a bad environment variable without reading it.
  assert.equal(
    load({ env: { ROAMLINK_OUTAGE_MS: 'soon' }, argv: ['--outage-ms', '5'] }).config.outageMs,
    5,
  );
  // Unrelated ROAMLINK_* variables (the key log's) are not settings and are left alone.
  assert.equal(load({ env: { ROAMLINK_KEYLOG: '/x' } }).config.outageMs, 120_000);
});

test('config file: JSON object of settings; errors name the file and key', () => {
  const { config: c, sources } = load({
    file: {
      $schema: 'ignored',
      '//': 'a comment',
      udpListen: '127.0.0.1:9000',
      encapsulations: ['tcp', 'websocket'],
      egressDeny: [{ host: '*.corp.example' }, { ports: 25 }, '[2001:db8::/32]:443'],
      rekeyAfterMs: '2000',
      statusPage: 'yes',
    },
  });
  assert.deepEqual(c.udpListen, { address: '127.0.0.1', port: 9000 });
  assert.deepEqual(c.httpListen, { address: '127.0.0.1', port: 9001 });
  assert.deepEqual(c.encapsulations, ['tcp', 'ws']);
  assert.deepEqual(
    c.egressDeny.map((r) => r.text),
    ['*.corp.example', '*:25', '[2001:db8::/32]:443'],
  );
  assert.equal(c.rekeyAfterMs, 2000);
  assert.equal(c.statusPage, true);
  assert.equal(sources.udpListen, 'file');
  fails({ file: { outageMs: -5 } }, /^relay\.json: "outageMs": "-5" is not a whole number/);
  fails({ file: { metrics: 1 } }, /^relay\.json: "metrics": 1 is not true or false/);
  fails(
    { file: { udpListen: 51820 } },
    /^relay\.json: "udpListen": 51820 is not a string \(expected HOST:PORT\)/,
  );
  fails(
    { file: { egressAllow: [{ cidr: '10.0.0.1/8' }] } },
    /^relay\.json: "egressAllow": .*host bits set/,
  );
  fails({ file: { allowClients: [7] } }, /"allowClients": 7 is not a string/);
  fails(
    { file: { outageMS: 5 } },
    /^relay\.json: unknown key "outageMS" \(did you mean outageMs\?\)/,
  );
  fails({ file: { config: 'x' } }, /unknown key "config"/);
  fails({ file: [1, 2] }, /^relay\.json: expected a JSON object of settings$/);
  fails({ argv: ['--config', 'missing.json'] }, /^--config: cannot read missing\.json \(ENOENT\)$/);
  fails({ env: { ROAMLINK_CONFIG: 'gone.json' } }, /^ROAMLINK_CONFIG: cannot read gone\.json/);
  assert.throws(
    () =>
      loadConfig({ argv: ['--config', 'bad.json'], env: {}, readFile: () => '{"outageMs": 1,' }),
    (e: unknown) => e instanceof ConfigError && /^bad\.json: not valid JSON/.test(e.message),
  );
  // The file may come from the environment.
  const viaEnv = loadConfig({
    argv: [],
    env: { ROAMLINK_CONFIG: 'r.json' },
    readFile: () => '{"maxSessions": 3}',
  });
  assert.ok(!viaEnv.help && viaEnv.config.maxSessions === 3 && viaEnv.sources.configFile === 'env');
});

test('--help: generated from the schema, wins over everything else', () => {
  for (const argv of [['--help'], ['-h'], ['--metricz', '--help'], ['--outage-ms', 'x', '-h']]) {
    const r = loadConfig({ argv, env: { ROAMLINK_OUTAGE_MS: 'bad' } });
    assert.equal(r.help, true, argv.join(' '));
  }
  const text = helpText();
  assert.equal((loadConfig({ argv: ['-h'] }) as { text: string }).text, text);
  assert.match(text, /^usage: relay \[--config FILE\] \[options\]$/m);
  assert.match(text, /flags > environment > config file/);
  for (const s of SETTINGS) {
    const head = s.kind === 'bool' ? `  --${s.flag}, --no-${s.flag}` : `  --${s.flag} ${s.form}`;
    assert.ok(text.includes(`${head}\n      ${s.help}\n`), s.flag);
    assert.ok(text.includes(`env ${s.env}`), s.env);
    assert.ok(text.includes(`file "${s.key}"`), s.key);
    assert.ok(text.includes(`\n      default ${s.defaultText}`), s.key);
    assert.match(s.env, /^ROAMLINK_[A-Z_]+$/);
  }
  assert.match(text, /--outage-ms MS ≥ 0\n {6}How long a silent session is kept/);
  assert.match(text, /default 120000 · env ROAMLINK_OUTAGE_MS · file "outageMs"/);
  assert.match(
    text,
    /default the UDP address, next port .*\n {6}env ROAMLINK_HTTP_LISTEN · file "httpListen" · also --http\n/,
  );
  assert.match(text, /also --listen/);
  assert.match(text, /Egress rules \(RULE\)/);
  // Every line fits a terminal.
  for (const line of text.split('\n')) assert.ok(line.length <= 120, line);
  // Flags, env names and keys are unique.
  const all = SETTINGS.flatMap((s) => [s.flag, ...(s.aliases ?? [])]);
  assert.equal(new Set(all).size, all.length);
  assert.equal(new Set(SETTINGS.map((s) => s.env)).size, SETTINGS.length);
});

test('identity and psk files on disk', () => {
  const dir = mkdtempSync(join(tmpdir(), 'roamlink-config-'));
  try {
    const dataDir = join(dir, 'data');
    const first = loadOrCreateIdentity(dataDir);
    assert.equal(first.created, true);
    const file = join(dataDir, 'relay.key');
    assert.equal(statSync(file).mode & 0o777, 0o600);
    const again = loadOrCreateIdentity(dataDir);
    assert.equal(again.created, false);
    assert.equal(toHex(again.keypair.publicKey), toHex(first.keypair.publicKey));
    assert.equal(readFileSync(file, 'utf8').trim().length, 64);

    const psk = join(dir, 'psk');
    writeFileSync(psk, `  ${'0f'.repeat(32)}\n`);
    assert.equal(toHex(readPskFile(psk)), '0f'.repeat(32));
    writeFileSync(psk, 'short');
    assert.throws(() => readPskFile(psk), /--psk-file: .* does not hold a 32-byte key/);
    assert.throws(() => readPskFile(join(dir, 'none')), /--psk-file: cannot read .* \(ENOENT\)/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('peer-idle-ms: 10 min by default, twice the outage window if that is longer, never below it', () => {
  assert.equal(load({}).config.peerIdleMs, 600_000);
  assert.equal(load({ argv: ['--outage-ms', '400000'] }).config.peerIdleMs, 800_000);
  assert.equal(
    load({ env: { ROAMLINK_PEER_IDLE_MS: '5000' }, argv: ['--outage-ms', '5000'] }).config
      .peerIdleMs,
    5000,
  );
  assert.throws(
    () => load({ argv: ['--peer-idle-ms', '60000'] }),
    (e: Error) => e instanceof ConfigError && /at least outage-ms \(120000\)/.test(e.message),
  );
  assert.throws(() => load({ argv: ['--peer-idle-ms', '10'] }), ConfigError);
});

test('handshake-rate: 50 per second per source by default, 0 turns the limit off', () => {
  assert.equal(load({}).config.handshakeRate, 50);
  assert.equal(load({ argv: ['--handshake-rate', '0'] }).config.handshakeRate, 0);
  assert.equal(load({ env: { ROAMLINK_HANDSHAKE_RATE: '200' } }).config.handshakeRate, 200);
  assert.throws(() => load({ argv: ['--handshake-rate', '-1'] }), ConfigError);
});
