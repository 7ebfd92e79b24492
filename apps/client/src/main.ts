/**
 * The client: opens a UDP socket, a TCP connection, a WebSocket, an HTTP streaming and an HTTP
 * long-polling path to the relay and connects on all of them at once (the relay picks the
 * encapsulation: UDP > TCP > WebSocket > HTTP streaming > HTTP polling), then sends an
 * ECHO_REQUEST every --ping-interval-ms and
 * shows a live status line (state, encapsulation, suite, RTT, rekeys, drops). Prints a JSON
 * summary on exit (after --duration-s seconds, or on Ctrl-C).
 *
 * When a transport dies (the TCP connection or the WebSocket closes, the UDP socket fails, an HTTP
 * path fails: an error status, a broken connection, or "buffered" when a proxy holds the stream
 * back, which leaves polling as the fallback) the
 * client moves to the candidates that remain: a new registration round on the same SA, no new key
 * exchange. Test hooks exercise exactly that: SIGUSR2 closes the UDP socket, SIGUSR1 the TCP
 * connection. --log-events prints the notable
 * session events (registered, moved, path-dead) as JSON lines on stdout before the summary.
 *
 *   node apps/client/src/main.ts --relay 127.0.0.1:51820 --relay-key <hex>
 *        [--relay-tcp host:port (default: --relay's address, on TCP) | --no-tcp]
 *        [--relay-http host:port (default: --relay's host and port + 1)] [--no-ws] [--no-http]
 *        [--no-udp]
 *        [--data-dir .roamlink/client] [--ping-interval-ms 100] [--duration-s 0] [--rekey-after-ms N]
 *        [--log-events]
 */
import { parseArgs } from 'node:util';
import type { Candidate, SessionEvent, Suite } from '@roamlink/core';
import {
  ClientSession,
  decodeEcho,
  ENCAPSULATION_NAMES,
  Encapsulation,
  encodeEcho,
  FrameType,
  NextHeader,
  SUITE_NAMES,
  toHex,
} from '@roamlink/core';
import { keyLogWriter, selectProvider } from '@roamlink/crypto-node';
import {
  HTTP_BASE,
  HttpPollClient,
  HttpStreamClient,
  isHttpPath,
  isTcpPath,
  isWsPath,
  loadOrCreateKey,
  nodeRandom,
  parseEndpoint,
  parsePublicKey,
  SessionDriver,
  TcpTransport,
  UdpTransport,
  WebSocketTransport,
  WS_PATH,
  WsCloseCode,
} from '@roamlink/node';

const { values } = parseArgs({
  options: {
    relay: { type: 'string', default: '127.0.0.1:51820' },
    'relay-tcp': { type: 'string' },
    'no-tcp': { type: 'boolean', default: false },
    'relay-http': { type: 'string' },
    'no-ws': { type: 'boolean', default: false },
    'no-http': { type: 'boolean', default: false },
    'no-udp': { type: 'boolean', default: false },
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
    'usage: client --relay host:port --relay-key hex [--relay-tcp host:port | --no-tcp] [--relay-http host:port] [--no-ws] [--no-http] [--no-udp] [--data-dir dir] [--ping-interval-ms N] [--duration-s N] [--rekey-after-ms N] [--suite chacha20-poly1305|aes-256-gcm] [--log-events]\n',
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
const writeKey = keyLogWriter();
const rekeyAfterMs = values['rekey-after-ms'] ? Number(values['rekey-after-ms']) : undefined;
const session = new ClientSession<string>({
  staticKeypair: keypair,
  relayStaticKey: parsePublicKey(values['relay-key']),
  provider: crypto.provider,
  suites: onlySuite === undefined ? crypto.suites : [onlySuite],
  random: nodeRandom,
  keyLog: writeKey !== undefined,
  ...(rekeyAfterMs ? { limits: { rekeyAfterMs, rejectAfterMs: rekeyAfterMs * 1.5 } } : {}),
});

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
let moves = 0;
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

let udp: UdpTransport;
let udpOpen = false;
let tcp: TcpTransport;
let ws: WebSocketTransport;
/** The live HTTP paths by id ("hs:<token>", "hp:<token>"). */
const httpPaths = new Map<string, HttpStreamClient | HttpPollClient>();
/**
 * Routes a transmit by its path: "tcp:<n>" is a TCP connection, "ws:<n>" a WebSocket,
 * "hs:"/"hp:" an HTTP path, anything else a UDP endpoint.
 */
const sendOn = (path: string, data: Uint8Array): void => {
  if (isTcpPath(path)) tcp.send(path, data);
  else if (isWsPath(path)) ws.send(path, data);
  else if (isHttpPath(path)) httpPaths.get(path)?.send(data);
  else if (udpOpen) udp.send(path, data);
};
const driver = new SessionDriver<string, SessionEvent>(session, sendOn, (e) => {
  if (e.type === 'sa-keys') writeKey?.(e.info);
  else if (e.type === 'established') lastEvent = e.rekey ? 'rekeyed' : 'established';
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
});

const onDatagram = (data: Uint8Array, path: string): void => {
  const got = session.receive(data, path, driver.now());
  if (got && got.nextHeader === NextHeader.ROAMLINK && got.payload[0] === FrameType.ECHO_REPLY) {
    const f = decodeEcho(got.payload);
    const t0 = outstanding.get(f.id);
    if (t0 !== undefined) {
      outstanding.delete(f.id);
      pongs++;
      if (echoesAfterMove !== undefined) echoesAfterMove++;
      rtts.push(performance.now() - t0);
    }
  }
  driver.pump();
};

let candidates: Candidate<string>[] = [];
/** A transport is gone: register on what remains (same SA, a new round), if anything does. */
const lose = (path: string, reason: string): void => {
  const before = candidates.length;
  candidates = candidates.filter((c) => c.path !== path);
  if (candidates.length === before) return;
  lastEvent = reason;
  logEvent({ event: 'moved', reason, remaining: candidates.length });
  if (candidates.length === 0) return;
  moves++;
  echoesAfterMove = 0;
  session.move(candidates, driver.now(), reason);
  driver.pump();
};

const relayEndpoint = parseEndpoint(values.relay);
let relayPath = '';
const closeUdp = (reason: string): void => {
  if (!udpOpen) return;
  udpOpen = false;
  void udp.close();
  lose(relayPath, reason);
};
if (!values['no-udp']) {
  udp = await UdpTransport.bind({ address: '127.0.0.1', port: 0 }, onDatagram);
  udpOpen = true;
  relayPath = udp.addEndpoint(relayEndpoint);
  // The client's own copy of the outer header fields it sends on this path (the RREQ carries it).
  candidates.push({
    path: relayPath,
    info: {
      encapsulation: Encapsulation.UDP,
      view: {
        srcAddr: udp.local.address,
        srcPort: udp.local.port,
        dstAddr: relayEndpoint.address,
        dstPort: relayEndpoint.port,
      },
    },
  });
  udp.socket.on('error', (e: NodeJS.ErrnoException) =>
    closeUdp(`udp-error: ${e.code ?? e.message}`),
  );
}

tcp = new TcpTransport({ onDatagram, onPathClose: (path, reason) => lose(path, reason) });
if (!values['no-tcp']) await addTcpCandidate();
ws = new WebSocketTransport({ onDatagram, onPathClose: (path, reason) => lose(path, reason) });
if (!values['no-ws']) await addWsCandidate();
if (!values['no-http']) addHttpCandidates();
session.connect([...candidates], driver.now());
driver.pump();
onUsr2 = () => closeUdp('udp-closed');
onUsr1 = () => {
  // Closed quietly (closePath reports nothing), then handled as the loss it simulates.
  for (const path of tcp.paths) {
    tcp.closePath(path);
    lose(path, 'tcp-closed');
  }
};

/** The relay's HTTP port (WebSocket and both HTTP encapsulations). */
function relayHttpEndpoint(): { address: string; port: number; authority: string } {
  const e = parseEndpoint(
    values['relay-http'] ?? `${relayEndpoint.address}:${Math.min(relayEndpoint.port + 1, 65535)}`,
  );
  const host = e.address.includes(':') ? `[${e.address}]` : e.address;
  return { address: e.address, port: e.port, authority: `${host}:${e.port}` };
}

/**
 * HTTP streaming and HTTP polling: nothing to wait for (the first POST leaves with the
 * handshake), so the candidate's view is what the client will send: the POST's URL, Host and
 * headers and the relay's end; its own address and port are unknown (any of the agent's sockets).
 */
function addHttpCandidates(): void {
  const e = relayHttpEndpoint();
  const kinds = [
    [Encapsulation.HTTP_STREAM, HttpStreamClient],
    [Encapsulation.HTTP_POLL, HttpPollClient],
  ] as const;
  for (const [encapsulation, Kind] of kinds) {
    const c = new Kind({
      baseUrl: `http://${e.authority}${HTTP_BASE}`,
      headers: { 'User-Agent': 'roamlink-client/0.1' },
      onDatagram,
      // A failed HTTP path is lost like a closed connection: the client moves to what remains.
      onError: (path, reason) => {
        httpPaths.delete(path);
        lose(path, reason);
      },
    });
    httpPaths.set(c.pathId, c);
    const v = c.view();
    candidates.push({
      path: c.pathId,
      info: {
        encapsulation,
        view: {
          dstAddr: v.remote.address,
          dstPort: v.remote.port,
          url: v.url,
          ...(v.host === undefined ? {} : { host: v.host }),
          headers: v.headers,
        },
      },
    });
  }
}

/** Upgrades first: the candidate's view is the URL, Host and headers sent, and the socket's ends. */
async function addWsCandidate(): Promise<void> {
  const url = `ws://${relayHttpEndpoint().authority}${WS_PATH}`;
  try {
    const wsPath = await ws.connect(url, { 'User-Agent': 'roamlink-client/0.1' });
    const v = ws.view(wsPath)!;
    candidates.push({
      path: wsPath,
      info: {
        encapsulation: Encapsulation.WEBSOCKET,
        view: {
          srcAddr: v.local.address,
          srcPort: v.local.port,
          dstAddr: v.remote.address,
          dstPort: v.remote.port,
          url: v.url,
          ...(v.host === undefined ? {} : { host: v.host }),
          headers: v.headers,
        },
      },
    });
  } catch (e) {
    // No WebSocket (an old relay, no HTTP port): the other candidates still work.
    process.stderr.write(`client: no WebSocket path to ${url}: ${e}\n`);
  }
}

/** Connects first: the candidate's view is the connected socket's own two ends. */
async function addTcpCandidate(): Promise<void> {
  const relayTcp = parseEndpoint(values['relay-tcp'] ?? values.relay);
  try {
    const tcpPath = await tcp.connect(relayTcp.address, relayTcp.port);
    const ends = tcp.endpoints(tcpPath)!;
    candidates.push({
      path: tcpPath,
      info: {
        encapsulation: Encapsulation.TCP,
        view: {
          srcAddr: ends.local.address,
          srcPort: ends.local.port,
          dstAddr: ends.remote.address,
          dstPort: ends.remote.port,
        },
      },
    });
  } catch (e) {
    // No TCP (a firewall, an old relay): UDP alone still works.
    process.stderr.write(`client: no TCP path to ${values['relay-tcp'] ?? values.relay}: ${e}\n`);
  }
}

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
    moves,
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
  const now = performance.now();
  outstanding.set(id, now);
  const pkt = session.send(
    encodeEcho({ type: FrameType.ECHO_REQUEST, id, sentAt: Date.now(), data: new Uint8Array(32) }),
    NextHeader.ROAMLINK,
    driver.now(),
  );
  if (pkt) for (const p of session.dataPaths) sendOn(p, pkt);
  driver.pump();
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
  driver.close();
  if (tty) process.stderr.write('\n');
  process.stdout.write(`${JSON.stringify(summary())}\n`);
  const udpClosed = udpOpen ? udp.close() : Promise.resolve();
  udpOpen = false;
  for (const c of httpPaths.values()) c.close();
  httpPaths.clear();
  void Promise.all([
    udpClosed,
    tcp.close(),
    ws.close(WsCloseCode.CLIENT_CLOSING, 'client closing'),
  ]).then(() => process.exit(session.state === 'established' ? 0 : 1));
};
const duration = Number(values['duration-s']);
if (duration > 0) setTimeout(finish, duration * 1000);
process.on('SIGINT', finish);
process.on('SIGTERM', finish);
