/**
 * `./dev run`: a relay and a client on this machine with generated keys and built-in defaults,
 * showing the live session. Keys live in .roamlink/demo/. Rekeys every 20 s so that a person
 * watching sees one happen (the default is 120 s).
 *
 *   node apps/client/src/demo.ts [--duration-s N] [--rekey-after-ms N] [--port N]
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
    dir: { type: 'string', default: '.roamlink/demo' },
  },
});
const here = (p: string): string => fileURLToPath(new URL(p, import.meta.url));
const client = loadOrCreateKey(`${values.dir}/client/client.key`).keypair;
const listen = `127.0.0.1:${values.port}`;

const relay = spawn(
  process.execPath,
  [
    here('../../relay/src/main.ts'),
    '--listen',
    listen,
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
const { relayKey, relayAddr } = await new Promise<{ relayKey: string; relayAddr: string }>(
  (resolve, reject) => {
    relay.once('exit', (code) => reject(new Error(`relay exited (${code})`)));
    createInterface({ input: relay.stdout! }).on('line', (line) => {
      const m = JSON.parse(line) as { msg: string; publicKey?: string; udp?: string };
      if (m.msg === 'listening' && m.publicKey && m.udp) {
        process.stderr.write(`relay  listening on udp ${m.udp}, public key ${m.publicKey}\n`);
        resolve({ relayKey: m.publicKey, relayAddr: m.udp });
      }
    });
  },
);
process.stderr.write(`client public key ${toHex(client.publicKey)}\n`);

const c = spawn(
  process.execPath,
  [
    here('./main.ts'),
    '--relay',
    relayAddr,
    '--relay-key',
    relayKey,
    '--data-dir',
    `${values.dir}/client`,
    '--duration-s',
    values['duration-s'],
    '--rekey-after-ms',
    values['rekey-after-ms'],
  ],
  { stdio: 'inherit' },
);
process.on('SIGINT', () => c.kill('SIGINT'));
const code = await new Promise<number>((resolve) => c.once('exit', (n) => resolve(n ?? 1)));
relay.kill('SIGTERM');
process.exit(code);
