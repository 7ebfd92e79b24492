/**
 * The echo demo (tests use it): a relay and an echo client on this machine with generated keys and built-in defaults,
 * showing the live session. Keys live in .roamlink/demo/. Rekeys every 20 s so that a person
 * watching sees one happen (the default is 120 s). The relay listens on UDP --port, TCP
 * --tcp-port (default: the same number) and HTTP --http-port (default: --port + 1, or any free
 * port when --port is 0), which serves /health, WebSocket and HTTP streaming/polling; the client
 * connects on all five.
 * SIGUSR2 is passed on to the client (it closes its UDP socket and moves), SIGUSR1 too (it closes
 * its TCP connection), SIGINT too.
 *
 *   node apps/client/src/demo.ts [--duration-s N] [--rekey-after-ms N] [--port N] [--tcp-port N]
 *        [--http-port N] [--log-events] [--no-udp] [--no-tcp] [--no-ws] [--no-http] (leave candidates out)
 *        [--suite aes-256-gcm] (offer one suite only, e.g. for a capture with Wireshark 4.0)
 */
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { toHex } from '@roamlink/core';
import { loadOrCreateKey } from '@roamlink/node';

const { values } = parseArgs({
  options: {
    'duration-s': { type: 'string', default: '0' },
    'rekey-after-ms': { type: 'string', default: '20000' },
    port: { type: 'string', default: '51820' },
    'tcp-port': { type: 'string' },
    'http-port': { type: 'string' },
    'log-events': { type: 'boolean', default: false },
    'no-tcp': { type: 'boolean', default: false },
    'no-ws': { type: 'boolean', default: false },
    'no-http': { type: 'boolean', default: false },
    'no-udp': { type: 'boolean', default: false },
    suite: { type: 'string' },
    dir: { type: 'string', default: '.roamlink/demo' },
  },
});
const here = (p: string): string => fileURLToPath(new URL(p, import.meta.url));
const client = loadOrCreateKey(`${values.dir}/client/client.key`).keypair;
const listen = `127.0.0.1:${values.port}`;
const tcpListen = `127.0.0.1:${values['tcp-port'] ?? values.port}`;
const port = Number(values.port);
const httpListen = `127.0.0.1:${values['http-port'] ?? (port === 0 ? 0 : port + 1)}`;
// Until the client runs, a SIGUSR1/2 is ignored rather than fatal.
let child: ReturnType<typeof spawn> | undefined;
process.on('SIGUSR1', () => child?.kill('SIGUSR1'));
process.on('SIGUSR2', () => child?.kill('SIGUSR2'));

const relay = spawn(
  process.execPath,
  [
    here('../../relay/src/main.ts'),
    '--listen',
    listen,
    '--tcp',
    tcpListen,
    '--http',
    httpListen,
    '--data-dir',
    `${values.dir}/relay`,
    '--allow',
    toHex(client.publicKey),
    '--rekey-after-ms',
    values['rekey-after-ms'],
  ],
  { stdio: ['ignore', 'pipe', 'inherit'] },
);
// The relay reports its real address (the port may have been 0) and key on its first log line.
const { relayKey, relayAddr, relayTcp, relayHttp } = await new Promise<{
  relayKey: string;
  relayAddr: string;
  relayTcp: string;
  relayHttp: string;
}>((resolve, reject) => {
  relay.once('exit', (code) => reject(new Error(`relay exited (${code})`)));
  createInterface({ input: relay.stdout! }).on('line', (line) => {
    const m = JSON.parse(line) as {
      msg: string;
      publicKey?: string;
      udp?: string;
      tcp?: string;
      http?: string;
    };
    if (m.msg === 'listening' && m.publicKey && m.udp && m.tcp && m.http) {
      process.stderr.write(
        `relay  listening on udp ${m.udp}, tcp ${m.tcp} and http ${m.http} (WebSocket, HTTP, /health), public key ${m.publicKey}\n`,
      );
      resolve({ relayKey: m.publicKey, relayAddr: m.udp, relayTcp: m.tcp, relayHttp: m.http });
    }
  });
});
process.stderr.write(`client public key ${toHex(client.publicKey)}\n`);

const c = spawn(
  process.execPath,
  [
    here('./main.ts'),
    '--relay',
    relayAddr,
    '--relay-tcp',
    relayTcp,
    '--relay-http',
    relayHttp,
    '--relay-key',
    relayKey,
    '--data-dir',
    `${values.dir}/client`,
    '--duration-s',
    values['duration-s'],
    '--rekey-after-ms',
    values['rekey-after-ms'],
    ...(values['log-events'] ? ['--log-events'] : []),
    ...(values['no-tcp'] ? ['--no-tcp'] : []),
    ...(values['no-ws'] ? ['--no-ws'] : []),
    ...(values['no-http'] ? ['--no-http'] : []),
    ...(values.suite ? ['--suite', values.suite] : []),
    ...(values['no-udp'] ? ['--no-udp'] : []),
  ],
  { stdio: 'inherit' },
);
child = c;
process.on('SIGINT', () => c.kill('SIGINT'));
const code = await new Promise<number>((resolve) => c.once('exit', (n) => resolve(n ?? 1)));
relay.kill('SIGTERM');
process.exit(code);
