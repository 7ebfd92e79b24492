/**
 * The client, UDP encapsulation only for now: connects to a relay, then sends an ECHO_REQUEST
 * every --ping-interval-ms and shows a live status line (state, suite, RTT, rekeys, drops).
 * Prints a JSON summary on exit (after --duration-s seconds, or on Ctrl-C).
 *
 *   node apps/client/src/main.ts --relay 127.0.0.1:51820 --relay-key <hex>
 *        [--data-dir .roamlink/client] [--ping-interval-ms 100] [--duration-s 0] [--rekey-after-ms N]
 */
import { parseArgs } from 'node:util';
import type { SessionEvent } from '@roamlink/core';
import {
  ClientSession,
  decodeEcho,
  Encapsulation,
  encodeEcho,
  FrameType,
  NextHeader,
  SUITE_NAMES,
  toHex,
} from '@roamlink/core';
import { keyLogWriter, selectProvider } from '@roamlink/crypto-node';
import {
  loadOrCreateKey,
  nodeRandom,
  parseEndpoint,
  parsePublicKey,
  SessionDriver,
  UdpTransport,
} from '@roamlink/node';

const { values } = parseArgs({
  options: {
    relay: { type: 'string', default: '127.0.0.1:51820' },
    'relay-key': { type: 'string' },
    'data-dir': { type: 'string', default: '.roamlink/client' },
    'ping-interval-ms': { type: 'string', default: '100' },
    'duration-s': { type: 'string', default: '0' },
    'rekey-after-ms': { type: 'string' },
    'print-public-key': { type: 'boolean', default: false },
    help: { type: 'boolean', default: false },
  },
});
if (values.help) {
  process.stdout.write(
    'usage: client --relay host:port --relay-key hex [--data-dir dir] [--ping-interval-ms N] [--duration-s N] [--rekey-after-ms N]\n',
  );
  process.exit(0);
}
const { keypair } = loadOrCreateKey(`${values['data-dir']}/client.key`);
if (values['print-public-key']) {
  process.stdout.write(`${toHex(keypair.publicKey)}\n`);
  process.exit(0);
}
if (!values['relay-key']) {
  process.stderr.write('client: --relay-key is required\n');
  process.exit(2);
}

const crypto = selectProvider();
const writeKey = keyLogWriter();
const rekeyAfterMs = values['rekey-after-ms'] ? Number(values['rekey-after-ms']) : undefined;
const session = new ClientSession<string>({
  staticKeypair: keypair,
  relayStaticKey: parsePublicKey(values['relay-key']),
  provider: crypto.provider,
  suites: crypto.suites,
  random: nodeRandom,
  keyLog: writeKey !== undefined,
  ...(rekeyAfterMs ? { limits: { rekeyAfterMs, rejectAfterMs: rekeyAfterMs * 1.5 } } : {}),
});

const tty = process.stderr.isTTY;
const rtts: number[] = [];
const outstanding = new Map<number, number>();
let pingsSent = 0;
let pongs = 0;
let lastEvent = '';
const started = performance.now();

let udp: UdpTransport;
const driver = new SessionDriver<string, SessionEvent>(
  session,
  (path, data) => udp.send(path, data),
  (e) => {
    if (e.type === 'sa-keys') writeKey?.(e.info);
    else if (e.type === 'established') lastEvent = e.rekey ? 'rekeyed' : 'established';
    else if (e.type === 'handshake-failed') lastEvent = `handshake failed: ${e.reason}`;
  },
);
udp = await UdpTransport.bind({ address: '127.0.0.1', port: 0 }, (data, path) => {
  const got = session.receive(data, path, driver.now());
  if (got && got.nextHeader === NextHeader.ROAMLINK && got.payload[0] === FrameType.ECHO_REPLY) {
    const f = decodeEcho(got.payload);
    const t0 = outstanding.get(f.id);
    if (t0 !== undefined) {
      outstanding.delete(f.id);
      pongs++;
      rtts.push(performance.now() - t0);
    }
  }
  driver.pump();
});
const relayPath = udp.addEndpoint(parseEndpoint(values.relay));
const relayEndpoint = parseEndpoint(values.relay);
// The client's own copy of the outer header fields it sends on this path (the RREQ carries it).
const view = {
  srcAddr: udp.local.address,
  srcPort: udp.local.port,
  dstAddr: relayEndpoint.address,
  dstPort: relayEndpoint.port,
};
session.connect(
  [{ path: relayPath, info: { encapsulation: Encapsulation.UDP, view } }],
  driver.now(),
);
driver.pump();

function p50(): number {
  const recent = rtts.slice(-200).sort((a, b) => a - b);
  return recent.length ? recent[recent.length >> 1]! : Number.NaN;
}

/** The provider that measured fastest for a suite (the one the composite provider routes to). */
function backend(suite: number): string {
  const ms = crypto.measurements.filter((m) => m.suite === suite);
  return ms.sort((a, b) => b.mbPerSec - a.mbPerSec)[0]?.provider ?? '?';
}

function summary(): Record<string, unknown> {
  const s = session.stats;
  return {
    state: session.state,
    suite: session.current ? SUITE_NAMES[session.current.suite] : null,
    crypto: session.current ? backend(session.current.suite) : null,
    pingsSent,
    pongs,
    outstanding: outstanding.size,
    rttP50Ms: Number(p50().toFixed(3)),
    handshakes: s.handshakes,
    rekeys: s.rekeys,
    espDrops: Object.values(s.espDrops).reduce((a, b) => a + b, 0),
    controlDrops: Object.values(s.controlDrops).reduce((a, b) => a + b, 0),
    seconds: Number(((performance.now() - started) / 1000).toFixed(1)),
  };
}

const ping = setInterval(() => {
  const id = ++pingsSent;
  const now = performance.now();
  outstanding.set(id, now);
  const pkt = session.send(
    encodeEcho({ type: FrameType.ECHO_REQUEST, id, sentAt: Date.now(), data: new Uint8Array(32) }),
    NextHeader.ROAMLINK,
    driver.now(),
  );
  if (pkt) for (const p of session.dataPaths) udp.send(p, pkt);
  driver.pump();
}, Number(values['ping-interval-ms']));

const status = setInterval(() => {
  const s = summary();
  const line =
    `${s.state} | ${s.suite ?? '-'}/${s.crypto ?? '-'} | spi ${session.current ? `0x${session.current.localSpi.toString(16)}` : '-'}` +
    ` | rtt p50 ${Number.isNaN(s.rttP50Ms as number) ? '-' : `${s.rttP50Ms} ms`} | echo ${s.pongs}/${s.pingsSent}` +
    ` | rekeys ${s.rekeys} | drops ${(s.espDrops as number) + (s.controlDrops as number)} | ${lastEvent}`;
  // One terminal line, redrawn in place: cut to the width so it never wraps.
  if (tty) process.stderr.write(`\r\x1b[2K${line.slice(0, (process.stderr.columns || 120) - 1)}`);
}, 250);

let done = false;
const finish = (): void => {
  if (done) return;
  done = true;
  clearInterval(ping);
  clearInterval(status);
  driver.close();
  if (tty) process.stderr.write('\n');
  process.stdout.write(`${JSON.stringify(summary())}\n`);
  void udp.close().then(() => process.exit(session.state === 'established' ? 0 : 1));
};
const duration = Number(values['duration-s']);
if (duration > 0) setTimeout(finish, duration * 1000);
process.on('SIGINT', finish);
process.on('SIGTERM', finish);
