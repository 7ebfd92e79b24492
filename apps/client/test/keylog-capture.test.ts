/**
 * The key log against a real capture: tshark records the loopback UDP traffic of a relay and a
 * client (AES-256-GCM, which Wireshark 4.0 decrypts) while ROAMLINK_KEYLOG collects their keys;
 * Wireshark's ESP dissector, given only the key log, must then decrypt every ESP packet of the
 * capture into roamlink's inner frames (docs/PROTOCOL.md §5).
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { createSocket } from 'node:dgram';
import { copyFileSync, mkdirSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { runDemo } from './demo-process.ts';

const hasTshark = spawnSync('tshark', ['--version']).status === 0;
const isRoot = process.getuid?.() === 0;

async function freeUdpPort(): Promise<number> {
  const s = createSocket('udp4');
  await new Promise<void>((r) => s.bind(0, '127.0.0.1', r));
  const { port } = s.address();
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

test('a capture of the UDP encapsulation decrypts in Wireshark with the key log', {
  skip: (!hasTshark || !isRoot) && !process.env.CI && 'needs tshark and root (CI has both)',
}, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'roamlink-capture-'));
  const port = await freeUdpPort();
  const pcap = join(dir, 'cap.pcapng');
  const keylog = join(dir, 'keys');
  const cap = spawn('tshark', ['-i', 'lo', '-f', `udp port ${port}`, '-w', pcap], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let capErr = '';
  await new Promise<void>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`tshark did not start: ${capErr}`)), 10_000);
    cap.stderr.on('data', (d) => {
      capErr += d;
      if (capErr.includes('Capturing on')) {
        clearTimeout(t);
        resolve();
      }
    });
  });
  try {
    const r = await runDemo(
      ['--port', String(port), '--suite', 'aes-256-gcm', '--no-tcp', '--no-ws', '--no-http'],
      async (d) => {
        await d.until((l) => l.event === 'registered', 'registration');
        await d.sleep(1500);
      },
      { env: { ROAMLINK_KEYLOG: keylog } },
    );
    assert.equal(r.summary.suite, 'aes-256-gcm', r.detail);
  } finally {
    cap.kill('SIGINT');
    await new Promise((res) => cap.once('exit', res));
  }
  // Wireshark reads ESP SAs from the profile's esp_sa file: the key log is one as it is.
  const home = join(dir, 'home');
  mkdirSync(join(home, '.config', 'wireshark'), { recursive: true });
  copyFileSync(keylog, join(home, '.config', 'wireshark', 'esp_sa'));
  const out = spawnSync(
    'tshark',
    [
      '-r',
      pcap,
      '-o',
      'esp.enable_encryption_decode:TRUE',
      '-d',
      `udp.port==${port},udpencap`,
      '-Y',
      'esp',
      '-T',
      'fields',
      '-e',
      'esp.spi',
      '-e',
      'esp.decrypted_data',
    ],
    {
      encoding: 'utf8',
      env: { ...process.env, HOME: home, XDG_CONFIG_HOME: join(home, '.config') },
    },
  );
  const rows = out.stdout
    .trim()
    .split('\n')
    .map((l) => l.split('\t'));
  assert.ok(rows.length >= 20, `${rows.length} ESP packets captured`);
  // Every ESP packet decrypted: its plaintext ends in a valid trailer with Next Header 253
  // (roamlink frames) or 59 (keepalive).
  for (const [spi, plain] of rows) {
    assert.ok(plain && /(fd|3b)$/.test(plain), `SPI ${spi} not decrypted: ${plain}`);
  }
  // Among them, the echoes the client sent and the relay answered (frame types 1 and 2).
  const requests = rows.filter(([, p]) => p!.startsWith('01')).length;
  const replies = rows.filter(([, p]) => p!.startsWith('02')).length;
  assert.ok(requests >= 10 && replies >= 10, `${requests} echo requests, ${replies} replies`);
});
