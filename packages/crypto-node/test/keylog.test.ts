/**
 * The key log proves itself the only way that matters: Wireshark's own dissector (tshark) reads
 * the lines we write and decrypts a capture of ESP in UDP (RFC 3948) that our SAs sealed.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { EspSender, nobleProvider, type SaKeyInfo, Suite } from '@roamlink/core';
import { keyLogWriter } from '../src/index.ts';

const hasTshark = spawnSync('tshark', ['--version']).status === 0;
const requireTools = process.env.CI !== undefined;

function checksum(b: Uint8Array): number {
  let s = 0;
  for (let i = 0; i < b.length; i += 2) s += (b[i]! << 8) | (b[i + 1] ?? 0);
  while (s >> 16) s = (s & 0xffff) + (s >> 16);
  return ~s & 0xffff;
}

function ipv4(src: number[], dst: number[], proto: number, payload: Uint8Array): Uint8Array {
  const p = new Uint8Array(20 + payload.length);
  const dv = new DataView(p.buffer);
  p[0] = 0x45;
  dv.setUint16(2, p.length);
  p[8] = 64;
  p[9] = proto;
  p.set(src, 12);
  p.set(dst, 16);
  dv.setUint16(10, checksum(p.subarray(0, 20)));
  p.set(payload, 20);
  return p;
}

function udp(sport: number, dport: number, payload: Uint8Array): Uint8Array {
  const u = new Uint8Array(8 + payload.length);
  const dv = new DataView(u.buffer);
  dv.setUint16(0, sport);
  dv.setUint16(2, dport);
  dv.setUint16(4, u.length);
  u.set(payload, 8);
  return u;
}

/** A classic pcap file of raw IPv4 packets (LINKTYPE_RAW = 101). */
function pcap(packets: Uint8Array[]): Buffer {
  const head = Buffer.alloc(24);
  head.writeUInt32LE(0xa1b2c3d4, 0);
  head.writeUInt16LE(2, 4);
  head.writeUInt16LE(4, 6);
  head.writeUInt32LE(65535, 16);
  head.writeUInt32LE(101, 20);
  const parts: Buffer[] = [head];
  packets.forEach((p, i) => {
    const rec = Buffer.alloc(16);
    rec.writeUInt32LE(1_700_000_000 + i, 0);
    rec.writeUInt32LE(p.length, 8);
    rec.writeUInt32LE(p.length, 12);
    parts.push(rec, Buffer.from(p));
  });
  return Buffer.concat(parts);
}

function capture(suite: Suite, dir: string): { info: SaKeyInfo; file: string } {
  const key = new Uint8Array(32).map((_, i) => i + 1);
  const salt = new Uint8Array([9, 8, 7, 6]);
  const info: SaKeyInfo = { direction: 'outbound', spi: 0x2bad_cafe, suite, keys: { key, salt } };
  const tx = new EspSender({ spi: info.spi, aead: nobleProvider.aead(suite, key), salt });
  const inner = ipv4(
    [10, 9, 0, 1],
    [10, 9, 0, 2],
    17,
    udp(40000, 33333, new TextEncoder().encode('roamlink-keylog')),
  );
  // RFC 3948: ESP straight after the UDP header; 4500 is the port Wireshark decodes as UDP-encapsulated ESP.
  const pkts = [1, 2, 3].map(() =>
    ipv4([198, 18, 0, 1], [198, 18, 0, 2], 17, udp(4500, 4500, tx.seal(inner, 4))),
  );
  const file = join(dir, `esp-${suite}.pcap`);
  writeFileSync(file, pcap(pkts));
  return { info, file };
}

function tshark(home: string, file: string): { stdout: string; stderr: string } {
  const r = spawnSync(
    'tshark',
    [
      '-r',
      file,
      '-o',
      'esp.enable_encryption_decode:TRUE',
      '-T',
      'fields',
      '-e',
      'esp.sequence',
      '-e',
      'udp.dstport',
      '-e',
      'data.data',
    ],
    {
      env: { ...process.env, HOME: home, XDG_CONFIG_HOME: join(home, '.config') },
      encoding: 'utf8',
    },
  );
  return { stdout: r.stdout, stderr: r.stderr };
}

test('ROAMLINK_KEYLOG lines decrypt a capture in Wireshark (tshark)', {
  skip: !hasTshark && !requireTools && 'tshark not installed',
}, () => {
  assert.ok(hasTshark, 'CI installs tshark; it must be here');
  const dir = mkdtempSync(join(tmpdir(), 'roamlink-keylog-'));
  const home = join(dir, 'home');
  mkdirSync(join(home, '.config', 'wireshark'), { recursive: true });
  const keylog = join(home, '.config', 'wireshark', 'esp_sa');
  const write = keyLogWriter(keylog)!;
  const { info, file } = capture(Suite.AES_256_GCM, dir);
  write(info);
  assert.equal(statSync(keylog).mode & 0o777, 0o600, 'key log is private');
  const lines = readFileSync(keylog, 'utf8').trim().split('\n');
  assert.equal(lines.length, 1);
  assert.match(
    lines[0]!,
    /^"IPv4","\*","\*","0x2badcafe","AES-GCM with 16 octet ICV \[RFC4106\]","0x0102[0-9a-f]{60}09080706","NULL",""$/,
  );
  const { stdout } = tshark(home, file);
  const rows = stdout
    .trim()
    .split('\n')
    .map((l) => l.split('\t'));
  assert.equal(rows.length, 3);
  rows.forEach((r, i) => {
    assert.equal(r[0], String(i + 1), 'sequence number');
    // Decrypted: Wireshark sees the inner UDP packet to port 33333 and its payload.
    assert.equal(r[1], '4500,33333');
    assert.equal(r[2], Buffer.from('roamlink-keylog').toString('hex'));
  });
  // Without the key log the same capture stays opaque.
  const bare = join(dir, 'bare');
  mkdirSync(join(bare, '.config', 'wireshark'), { recursive: true });
  assert.doesNotMatch(tshark(bare, file).stdout, /33333/);
});

test('ChaCha20-Poly1305 SAs log under Wireshark’s RFC 7634 name; no path, no log', () => {
  const dir = mkdtempSync(join(tmpdir(), 'roamlink-keylog-'));
  const f = join(dir, 'k');
  const key = new Uint8Array(32);
  keyLogWriter(f)!({
    direction: 'inbound',
    spi: 256,
    suite: Suite.CHACHA20_POLY1305,
    keys: { key, salt: new Uint8Array(4) },
  });
  assert.equal(
    readFileSync(f, 'utf8'),
    `"IPv4","*","*","0x00000100","ChaCha20 with Poly1305 [RFC7634]","0x${'00'.repeat(36)}","NULL",""\n`,
  );
  assert.equal(keyLogWriter(''), undefined);
});
