/**
 * The echo client (the echo demo and its tests use it): a TunnelClient racing UDP, TCP, WebSocket,
 * HTTP streaming and HTTP polling (the relay picks), sending an ECHO_REQUEST every
 * --ping-interval-ms, with a live status line (state, encapsulation, suite, RTT, rekeys, drops)
 * and a JSON summary on exit (after --duration-s seconds, or on Ctrl-C).
 *
 * A lost transport is not dialled again here (`redial: false`), so that a test sees exactly one
 * move: SIGUSR2 closes the UDP socket, SIGUSR1 the TCP connection, and the session moves to what
 * remains (a new registration round on the same SA, no new key exchange). --log-events prints the
 * notable session events (registered, moved, path-dead) as JSON lines on stdout before the summary.
 *
 *   node apps/client/src/main.ts --relay 127.0.0.1:51820 --relay-key <hex>
 *        [--relay-tcp host:port] [--relay-http host:port] [--no-udp] [--no-tcp] [--no-ws]
 *        [--no-http] [--data-dir .roamlink/client] [--ping-interval-ms 100] [--duration-s 0]
 *        [--rekey-after-ms N] [--suite name] [--print-public-key] [--log-events]
 */
import { parseArgs } from 'node:util';
import type { SessionEvent, Suite } from '@roamlink/core';
import {
  decodeEcho,
  ENCAPSULATION_NAMES,
  encodeEcho,
  FrameType,
  SUITE_NAMES,
  toHex,
} from '@roamlink/core';
import { keyLogWriter, selectProvider } from '@roamlink/crypto-node';
import { loadOrCreateKey, parseEndpoint, parsePublicKey } from '@roamlink/node';
import { TRANSPORT_KINDS, TunnelClient } from './tunnel.ts';

const { values } = parseArgs({
  options: {
    relay: { type: 'string', default: '127.0.0.1:51820' },
    'relay-tcp': { type: 'string' },
    'relay-http': { type: 'string' },
    'no-udp': { type: 'boolean', default: false },
    'no-tcp': { type: 'boolean', default: false },
    'no-ws': { type: 'boolean', default: false },
    'no-http': { type: 'boolean', default: false },
    'relay-key': { type: 'string' },
    'data-dir': { type: 'string', default: '.roamlink/client' },
    'ping-interval-ms': { type: 'string', default: '100' },
    'duration-s': { type: 'string', default: '0' },
    'rekey-after-ms': { type: 'string' },
    suite: { type: 'string' },
    'print-public-key': { type: 'boolean', default: false },
    'log-events': { type: 'boolean', default: false },
    help: { type: 'boolean', default: false },
  },
});
if (values.help) {
  process.stdout.write(
    'usage: client --relay host:port --relay-key hex [--relay-tcp host:port] [--relay-http host:port] [--no-udp] [--no-tcp] [--no-ws] [--no-http] [--data-dir dir] [--ping-interval-ms N] [--duration-s N] [--rekey-after-ms N] [--suite chacha20-poly1305|aes-256-gcm] [--log-events]\n',
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
// --suite offers one suite only: for example AES-256-GCM, which Wireshark 4.0 can decrypt from a
// key log (docs/PROTOCOL.md §5). By default every suite is offered, fastest first.
const suiteByName = new Map(
  Object.entries(SUITE_NAMES).map(([code, name]) => [name, Number(code) as Suite]),
);
const onlySuite = values.suite === undefined ? undefined : suiteByName.get(values.suite);
if (values.suite !== undefined && (onlySuite === undefined || !crypto.suites.includes(onlySuite))) {
  process.stderr.write(`client: unknown or unavailable suite "${values.suite}"\n`);
  process.exit(2);
}

// The test hooks are armed first: a SIGUSR1/2 that arrives while starting must not kill the process.
let onUsr1 = (): void => {};
let onUsr2 = (): void => {};
process.on('SIGUSR1', () => onUsr1());
process.on('SIGUSR2', () => onUsr2());

const tty = process.stderr.isTTY;
const rtts: number[] = [];
const outstanding = new Map<number, number>();
let pingsSent = 0;
let pongs = 0;
/** Echoes answered after the last move (undefined: no move yet). */
let echoesAfterMove: number | undefined;
let lastEvent = '';
const started = performance.now();
const logEvent = (fields: Record<string, unknown>): void => {
  if (values['log-events']) {
    const t = Number((performance.now() - started).toFixed(1));
    process.stdout.write(`${JSON.stringify({ t, ...fields })}\n`);
  }
};

const onSessionEvent = (e: SessionEvent): void => {
  if (e.type === 'established') lastEvent = e.rekey ? 'rekeyed' : 'established';
  else if (e.type === 'handshake-failed') lastEvent = `handshake failed: ${e.reason}`;
  else if (e.type === 'registered') {
    lastEvent = `registered on ${ENCAPSULATION_NAMES[e.encapsulation]}`;
    logEvent({
      event: 'registered',
      round: e.round,
      encapsulation: ENCAPSULATION_NAMES[e.encapsulation],
      rttMs: e.rttMs,
    });
  } else if (e.type === 'path-dead') {
    lastEvent = 'path dead';
    logEvent({ event: 'path-dead', silentMs: e.silentMs });
  }
};

const relay = parseEndpoint(values.relay);
const writeKey = keyLogWriter();
const rekeyAfterMs = values['rekey-after-ms'] ? Number(values['rekey-after-ms']) : undefined;
const tunnel = await TunnelClient.start({
  relay,
  ...(values['relay-tcp'] ? { relayTcp: parseEndpoint(values['relay-tcp']) } : {}),
  ...(values['relay-http'] ? { relayHttp: parseEndpoint(values['relay-http']) } : {}),
  relayKey: parsePublicKey(values['relay-key']),
  keypair,
  provider: crypto.provider,
  suites: onlySuite === undefined ? crypto.suites : [onlySuite],
  enabled: Object.fromEntries(TRANSPORT_KINDS.map((k) => [k, !values[`no-${k}`]])),
  redial: false,
  ...(rekeyAfterMs ? { rekeyAfterMs } : {}),
  ...(writeKey ? { keyLog: writeKey } : {}),
  onSessionEvent,
  onFrame: (payload) => {
    if (payload[0] !== FrameType.ECHO_REPLY) return;
    const f = decodeEcho(payload);
    const t0 = outstanding.get(f.id);
    if (t0 === undefined) return;
    outstanding.delete(f.id);
    pongs++;
    if (echoesAfterMove !== undefined) echoesAfterMove++;
    rtts.push(performance.now() - t0);
  },
  onLog: (msg, fields = {}) => {
    if (msg !== 'transport-lost') return;
    lastEvent = String(fields.reason);
    logEvent({ event: 'moved', reason: fields.reason, remaining: fields.remaining });
    echoesAfterMove = 0;
  },
}).catch((e: unknown) => {
  process.stderr.write(`client: ${e}\n`);
  process.exit(1);
});
const session = tunnel.session;
onUsr2 = () => tunnel.drop('udp', 'udp-closed');
onUsr1 = () => tunnel.drop('tcp', 'tcp-closed');

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
    encapsulation:
      session.encapsulation === undefined ? null : ENCAPSULATION_NAMES[session.encapsulation],
    suite: session.current ? SUITE_NAMES[session.current.suite] : null,
    crypto: session.current ? backend(session.current.suite) : null,
    pingsSent,
    pongs,
    outstanding: outstanding.size,
    rttP50Ms: Number(p50().toFixed(3)),
    handshakes: s.handshakes,
    registrations: s.registrations,
    rekeys: s.rekeys,
    moves: tunnel.moves,
    echoesAfterMove: echoesAfterMove ?? null,
    espDrops: Object.values(s.espDrops).reduce((a, b) => a + b, 0),
    espDropsByReason: s.espDrops,
    controlDrops: Object.values(s.controlDrops).reduce((a, b) => a + b, 0),
    controlDropsByReason: s.controlDrops,
    seconds: Number(((performance.now() - started) / 1000).toFixed(1)),
  };
}

const ping = setInterval(() => {
  const id = ++pingsSent;
  outstanding.set(id, performance.now());
  tunnel.sendFrame(
    encodeEcho({ type: FrameType.ECHO_REQUEST, id, sentAt: Date.now(), data: new Uint8Array(32) }),
  );
}, Number(values['ping-interval-ms']));

/**
 * Drops for the status line. Copies that the protocol sends on purpose — the same packet on two
 * paths during a move, the handshake answer on a second path — come back as replays or as an
 * unexpected answer: they are shown apart as "dup", so that "drops" means something went wrong.
 */
function dropSummary(): string {
  const st = session.stats;
  const dup = st.espDrops.replay + st.controlDrops.handshake_unexpected;
  const all =
    Object.values(st.espDrops).reduce((a, b) => a + b, 0) +
    Object.values(st.controlDrops).reduce((a, b) => a + b, 0);
  return `drops ${all - dup} (dup ${dup})`;
}

const status = setInterval(() => {
  const s = summary();
  const line =
    `${s.state} | ${s.encapsulation ?? '-'} | ${s.suite ?? '-'}/${s.crypto ?? '-'} | spi ${session.current ? `0x${session.current.localSpi.toString(16)}` : '-'}` +
    ` | rtt p50 ${Number.isNaN(s.rttP50Ms as number) ? '-' : `${s.rttP50Ms} ms`} | echo ${s.pongs}/${s.pingsSent}` +
    ` | rekeys ${s.rekeys} | ${dropSummary()} | ${lastEvent}`;
  // One terminal line, redrawn in place: cut to the width so it never wraps.
  if (tty) process.stderr.write(`\r\x1b[2K${line.slice(0, (process.stderr.columns || 120) - 1)}`);
}, 250);

let done = false;
const finish = (): void => {
  if (done) return;
  done = true;
  clearInterval(ping);
  clearInterval(status);
  if (tty) process.stderr.write('\n');
  process.stdout.write(`${JSON.stringify(summary())}\n`);
  const ok = session.state === 'established';
  void tunnel.close().then(() => process.exit(ok ? 0 : 1));
};
const duration = Number(values['duration-s']);
if (duration > 0) setTimeout(finish, duration * 1000);
process.on('SIGINT', finish);
process.on('SIGTERM', finish);
