/**
 * `./dev run`: the main job on one machine. Starts `roamlink relay` and `roamlink connect` with
 * generated keys (in .roamlink/demo/) and built-in defaults: the relay on UDP and TCP 51820 and
 * HTTP 51821 (WebSocket, RLHTTP, /health, /metrics), the client racing every encapsulation with a
 * SOCKS5 port on 127.0.0.1:1080 and its live status line. The relay may reach 127.0.0.1 (the
 * demo's own services) besides the public internet; private ranges stay denied otherwise.
 *
 *   node apps/client/src/demo.ts [--socks 127.0.0.1:1080] [--port 51820] [--duration-s N]
 *        [--rekey-after-ms 20000] [--suite name] [--no-udp] [--no-tcp] [--no-ws] [--no-http]
 *        [--dir .roamlink/demo] [-- <roamlink connect options>]
 *
 * Then, in another terminal: curl --socks5-hostname 127.0.0.1:1080 http://127.0.0.1:51821/health
 */
import { spawn } from 'node:child_process';
import { createWriteStream, mkdirSync } from 'node:fs';
import { type AddressInfo, createServer } from 'node:net';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { toHex } from '@roamlink/core';
import { loadOrCreateKey } from '@roamlink/node';

const USAGE = `usage: ./dev run [options] [-- <roamlink connect options>]

Starts a relay and a client on this machine, with generated keys, and shows the live session.

  --socks <host:port>      the client's SOCKS5 port (default 127.0.0.1:1080)
  --port <n>               the relay's UDP and TCP port; HTTP is n + 1 (default 51820; 0: any)
  --duration-s <n>         stop after n seconds (default 0: run until Ctrl-C)
  --rekey-after-ms <n>     rekey this often (default 20000, to show rekeys in a short demo)
  --suite <name>           offer one suite only (chacha20-poly1305 | aes-256-gcm)
  --no-udp, --no-tcp, --no-ws, --no-http
                           leave that encapsulation out of the client's race
  --dir <dir>              keys and the relay's log (default .roamlink/demo)
  -h, --help               this text

After --, options go to \`roamlink connect\` as they are (see \`roamlink connect --help\`).
`;

/** A usage error: said on one line, with a pointer to --help, exit 2 (as the CLI does). */
function usageError(message: string): never {
  process.stderr.write(`roamlink demo: ${message}\nTry ./dev run --help\n`);
  process.exit(2);
}

const dashes = process.argv.indexOf('--', 2);
const passThrough = dashes < 0 ? [] : process.argv.slice(dashes + 1);
let values: {
  socks: string;
  port: string;
  'duration-s': string;
  'rekey-after-ms': string;
  suite?: string | undefined;
  'no-udp': boolean;
  'no-tcp': boolean;
  'no-ws': boolean;
  'no-http': boolean;
  dir: string;
  help: boolean;
};
try {
  ({ values } = parseArgs({
    args: process.argv.slice(2, dashes < 0 ? undefined : dashes),
    options: {
      socks: { type: 'string', default: '127.0.0.1:1080' },
      port: { type: 'string', default: '51820' },
      'duration-s': { type: 'string', default: '0' },
      'rekey-after-ms': { type: 'string', default: '20000' },
      suite: { type: 'string' },
      'no-udp': { type: 'boolean', default: false },
      'no-tcp': { type: 'boolean', default: false },
      'no-ws': { type: 'boolean', default: false },
      'no-http': { type: 'boolean', default: false },
      dir: { type: 'string', default: '.roamlink/demo' },
      help: { type: 'boolean', short: 'h', default: false },
    },
  }));
} catch (e) {
  usageError((e as Error).message);
}
if (values.help) {
  process.stdout.write(USAGE);
  process.exit(0);
}
if (!/^\d+$/.test(values.port) || Number(values.port) > 65534) {
  usageError(`--port: a port number below 65535 (HTTP takes the next one), not ${values.port}`);
}
const cli = fileURLToPath(new URL('./cli.ts', import.meta.url));
const port = Number(values.port);
const client = loadOrCreateKey(`${values.dir}/client/client.key`).keypair;
// The status page's in-browser demo connects as a second client, with a key of its own (handed
// to the page in the URL's fragment, which never leaves the browser), to a local echo service.
const browser = loadOrCreateKey(`${values.dir}/browser/client.key`).keypair;
const echo = createServer((s) => {
  s.on('error', () => {});
  s.pipe(s);
});
await new Promise<void>((r) => echo.listen(0, '127.0.0.1', () => r()));
echo.unref();
const echoAddr = `127.0.0.1:${(echo.address() as AddressInfo).port}`;
mkdirSync(values.dir, { recursive: true });
const relayLog = `${values.dir}/relay.log`;
const logFile = createWriteStream(relayLog, { flags: 'a' });

const relay = spawn(
  process.execPath,
  [
    cli,
    'relay',
    '--udp',
    `127.0.0.1:${port}`,
    '--tcp',
    `127.0.0.1:${port}`,
    '--http',
    `127.0.0.1:${port === 0 ? 0 : port + 1}`,
    '--data-dir',
    `${values.dir}/relay`,
    '--allow',
    toHex(client.publicKey),
    '--allow',
    toHex(browser.publicKey),
    '--egress-allow',
    '127.0.0.1/32',
    '--rekey-after-ms',
    values['rekey-after-ms'],
    '--metrics',
    '--status-page',
    '--log-format',
    'json',
  ],
  { stdio: ['ignore', 'pipe', 'inherit'] },
);
/** The relay exited before it listened: it said why on stderr (shared); a stack adds nothing. */
const onEarlyExit = (code: number | null): void => {
  process.stderr.write(
    `roamlink demo: the relay did not start (exit ${code}); its log: ${relayLog}` +
      (port === 0 ? '\n' : `. If port ${port} or ${port + 1} is taken, try --port 0.\n`),
  );
  process.exit(code || 1);
};
relay.once('exit', onEarlyExit);
const listening = await new Promise<Record<string, string>>((resolve) => {
  createInterface({ input: relay.stdout! }).on('line', (line) => {
    logFile.write(`${line}\n`);
    try {
      const m = JSON.parse(line) as Record<string, string>;
      if (m.msg === 'listening') resolve(m);
    } catch {
      // Not JSON: kept in the log file only.
    }
  });
});
relay.off('exit', onEarlyExit);
process.stderr.write(
  `relay   udp ${listening.udp}  tcp ${listening.tcp}  http ${listening.http}  key ${listening.publicKey}\n` +
    `        status page http://${listening.http}/status#key=${toHex(browser.secretKey)}&echo=${echoAddr}\n` +
    `                    (its "Connect this browser" joins as a second client; the echo service is local)\n` +
    `        health http://${listening.http}/health  metrics http://${listening.http}/metrics  log ${relayLog}\n` +
    `client  SOCKS5 on ${values.socks}; try:\n` +
    `        curl --socks5-hostname ${values.socks} http://${listening.http}/health\n`,
);

const c = spawn(
  process.execPath,
  [
    cli,
    'connect',
    listening.udp!,
    '--relay-key',
    listening.publicKey!,
    '--relay-tcp',
    listening.tcp!,
    '--relay-http',
    listening.http!,
    '--data-dir',
    `${values.dir}/client`,
    '--socks',
    values.socks,
    '--duration-s',
    values['duration-s'],
    '--rekey-after-ms',
    values['rekey-after-ms'],
    ...(['udp', 'tcp', 'ws', 'http'] as const)
      .filter((k) => values[`no-${k}`])
      .map((k) => `--no-${k}`),
    ...(values.suite !== undefined ? ['--suite', values.suite] : []),
    ...passThrough,
  ],
  { stdio: 'inherit' },
);
process.on('SIGINT', () => c.kill('SIGINT'));
process.on('SIGTERM', () => c.kill('SIGTERM'));
const code = await new Promise<number>((resolve) => c.once('exit', (n) => resolve(n ?? 1)));
// A terminal's Ctrl-C reaches the relay too, and it may be gone already: its 'exit' is past.
if (relay.exitCode === null && relay.signalCode === null) {
  const relayExited = new Promise((r) => relay.once('exit', r));
  relay.kill('SIGTERM');
  await relayExited;
}
process.exit(code);
