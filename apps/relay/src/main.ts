/**
 * The relay on UDP (RFC 3948), TCP (RFC 8229 framing), WebSocket (RFC 6455) and plain HTTP
 * (RLHTTP/1: streaming and long polling) at once. It answers handshakes from allowed clients and
 * echoes ECHO_REQUEST frames. Paths are strings: "addr:port" for UDP, "tcp:<n>" for a TCP
 * connection, "ws:<n>" for a WebSocket, "hs:<token>"/"hp:<token>" for an HTTP streaming/polling
 * session; a transmit goes to the transport its path's prefix names.
 *
 * The HTTP port is one Node HTTP server: requests under /rl/ go to the HTTP encapsulations
 * (streaming a response is plain Node there), WebSocket upgrades on /rl/ws to `ws`, everything
 * else to the hono app (createRelayApp: GET /health).
 *
 *   node apps/relay/src/main.ts [--listen 127.0.0.1:51820] [--tcp 127.0.0.1:<udp port>]
 *        [--http 127.0.0.1:<udp port + 1>] [--data-dir .roamlink/relay]
 *        [--allow <client public key hex>]... [--rekey-after-ms N]
 *
 * --tcp defaults to the UDP address and port number, on TCP; --http to the UDP address and the
 * next port number (any free port when the UDP port is 0). Logs are JSON lines on stdout.
 */
import { createServer } from 'node:http';
import { parseArgs } from 'node:util';
import { getRequestListener } from '@hono/node-server';
import type { OuterView, PathInfo, RelayEvent } from '@roamlink/core';
import {
  decodeEcho,
  Encapsulation,
  echoReplyInPlace,
  FrameType,
  NextHeader,
  RelaySessions,
  toHex,
} from '@roamlink/core';
import { keyLogWriter, selectProvider } from '@roamlink/crypto-node';
import type { WsPathView } from '@roamlink/node';
import {
  HttpRelayTransport,
  isHttpPath,
  isHttpStreamPath,
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
} from '@roamlink/node';
import { createRelayApp } from './app.ts';

const { values } = parseArgs({
  options: {
    listen: { type: 'string', default: '127.0.0.1:51820' },
    tcp: { type: 'string' },
    http: { type: 'string' },
    'data-dir': { type: 'string', default: '.roamlink/relay' },
    allow: { type: 'string', multiple: true, default: [] },
    'rekey-after-ms': { type: 'string' },
    help: { type: 'boolean', default: false },
  },
});
if (values.help) {
  process.stdout.write(
    'usage: relay [--listen host:port] [--tcp host:port] [--http host:port] [--data-dir dir] [--allow pubkey-hex]... [--rekey-after-ms N]\n',
  );
  process.exit(0);
}

const log = (msg: string, fields: Record<string, unknown> = {}): void => {
  process.stdout.write(`${JSON.stringify({ t: new Date().toISOString(), msg, ...fields })}\n`);
};

const { keypair, created } = loadOrCreateKey(`${values['data-dir']}/relay.key`);
const allowed = new Set(values.allow.map((k) => toHex(parsePublicKey(k))));
const crypto = selectProvider();
const writeKey = keyLogWriter();
const rekeyAfterMs = values['rekey-after-ms'] ? Number(values['rekey-after-ms']) : undefined;

const relay = new RelaySessions<string>({
  staticKeypair: keypair,
  provider: crypto.provider,
  suites: crypto.suites,
  random: nodeRandom,
  authorize: (k) => ({ allowed: allowed.has(toHex(k)) }),
  keyLog: writeKey !== undefined,
  ...(rekeyAfterMs ? { limits: { rekeyAfterMs, rejectAfterMs: rekeyAfterMs * 1.5 } } : {}),
});

let udp: UdpTransport;
let tcp: TcpTransport;
let ws: WebSocketTransport;
let httpT: HttpRelayTransport;
const sendOn = (path: string, data: Uint8Array): void => {
  if (isTcpPath(path)) tcp.send(path, data);
  else if (isWsPath(path)) ws.send(path, data);
  else if (isHttpPath(path)) httpT.send(path, data);
  else udp.send(path, data);
};
const driver = new SessionDriver<string, RelayEvent<string>>(relay, sendOn, (e) => {
  if (e.type === 'sa-keys') writeKey?.(e.info);
  else
    log(e.type, {
      peer: e.peer.id.slice(0, 16),
      path: e.peer.path,
      ...('suite' in e ? { suite: e.suite } : {}),
    });
});

/** One datagram from either transport, with what the relay observed about its path. */
const deliver = (data: Uint8Array, path: string, info: PathInfo): void => {
  const now = driver.now();
  const got = relay.receive(data, path, now, info);
  if (got && got.nextHeader === NextHeader.ROAMLINK && got.payload[0] === FrameType.ECHO_REQUEST) {
    try {
      decodeEcho(got.payload);
      const pkt = relay.send(got.peer, echoReplyInPlace(got.payload), NextHeader.ROAMLINK, now);
      if (pkt && got.peer.path !== undefined) sendOn(got.peer.path, pkt);
    } catch {
      // A malformed frame inside an authentic packet: the peer's bug; drop it.
    }
  }
  driver.pump();
};

udp = await UdpTransport.bind(parseEndpoint(values.listen, true), (data, path, from) => {
  // What the relay observed on this path: registration compares it with the client's copy.
  const local = udp.local;
  deliver(data, path, {
    encapsulation: Encapsulation.UDP,
    view: {
      srcAddr: from.address,
      srcPort: from.port,
      dstAddr: local.address,
      dstPort: local.port,
    },
  });
});

tcp = new TcpTransport({
  onDatagram: (data, path) => {
    const ends = tcp.endpoints(path);
    if (!ends) return;
    // The connection's two ends as the relay's socket sees them (a NAT in between shows here).
    deliver(data, path, {
      encapsulation: Encapsulation.TCP,
      view: {
        srcAddr: ends.remote.address,
        srcPort: ends.remote.port,
        dstAddr: ends.local.address,
        dstPort: ends.local.port,
      },
    });
  },
  // The core learns of a dead path by itself (silence, then the client's new round); the log
  // says why it went.
  onPathClose: (path, reason) => log('tcp-closed', { path, reason }),
});
const tcpBind = parseEndpoint(values.tcp ?? `${udp.local.address}:${udp.local.port}`, true);
const tcpLocal = await tcp.listen(tcpBind.address, tcpBind.port);

/**
 * What the relay observed on a WebSocket or HTTP path: the socket's two ends and the request as
 * it arrived (a proxy shows in its headers).
 */
function requestView(v: WsPathView): OuterView {
  return {
    srcAddr: v.remote.address,
    srcPort: v.remote.port,
    dstAddr: v.local.address,
    dstPort: v.local.port,
    url: v.url,
    ...(v.host === undefined ? {} : { host: v.host }),
    headers: v.headers,
  };
}

ws = new WebSocketTransport({
  onDatagram: (data, path) => {
    const v = ws.view(path);
    if (!v) return;
    // The socket's two ends and the upgrade request as it arrived: a proxy shows in its headers.
    deliver(data, path, {
      encapsulation: Encapsulation.WEBSOCKET,
      view: requestView(v),
    });
  },
  onPathClose: (path, reason) => log('ws-closed', { path, reason }),
});
httpT = new HttpRelayTransport({
  onDatagram: (data, path, v) => {
    // The request that carried the datagram, as it arrived: a proxy shows in its headers.
    deliver(data, path, {
      encapsulation: isHttpStreamPath(path) ? Encapsulation.HTTP_STREAM : Encapsulation.HTTP_POLL,
      view: requestView(v),
    });
  },
  onPathClose: (path, reason) => log('http-closed', { path, reason }),
});
const startedAt = Date.now();
const app = createRelayApp({ now: Date.now, startedAt, sessions: () => relay.peers.size });
const honoListener = getRequestListener(app.fetch);
const http = createServer((req, res) => {
  if (!httpT.handle(req, res)) void honoListener(req, res);
});
ws.attach(http);
// Default: the next port after UDP's, unless UDP asked for any port (then any port here too).
const udpAsked = parseEndpoint(values.listen, true).port;
const httpBind = parseEndpoint(
  values.http ?? `${udp.local.address}:${udpAsked === 0 ? 0 : Math.min(udp.local.port + 1, 65535)}`,
  true,
);
await new Promise<void>((resolve, reject) => {
  http.once('error', reject);
  http.listen(httpBind.port, httpBind.address, () => {
    http.off('error', reject);
    resolve();
  });
});
const httpAddr = http.address();
const httpLocal =
  httpAddr && typeof httpAddr === 'object'
    ? `${httpAddr.family === 'IPv6' ? `[${httpAddr.address}]` : httpAddr.address}:${httpAddr.port}`
    : '';

log('listening', {
  udp: `${udp.local.address}:${udp.local.port}`,
  tcp: `${tcpLocal.address}:${tcpLocal.port}`,
  http: httpLocal,
  publicKey: toHex(keypair.publicKey),
  keyCreated: created,
  crypto: crypto.provider.name,
  suites: crypto.suites,
  allowed: allowed.size,
});

const shutdown = (): void => {
  log('shutdown', { stats: relay.stats });
  driver.close();
  // WebSocket clients hear 4000 (relay shutting down) and move; the HTTP server then stops.
  // HTTP streams and held polls end, so their clients see the path go and move.
  httpT.close();
  void Promise.all([udp.close(), tcp.close(), ws.close()])
    .then(() => {
      http.closeAllConnections();
      return new Promise<void>((resolve) => http.close(() => resolve()));
    })
    .then(() => process.exit(0));
};
process.on('SIGINT', shutdown);
process.on('SIGTERM', shutdown);
