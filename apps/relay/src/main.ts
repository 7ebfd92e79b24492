/**
 * The relay, UDP encapsulation only for now (the WebSocket/HTTP/TCP relay comes with the
 * encapsulations). It answers handshakes from allowed clients and echoes ECHO_REQUEST frames.
 *
 *   node apps/relay/src/main.ts [--listen 127.0.0.1:51820] [--data-dir .roamlink/relay]
 *        [--allow <client public key hex>]... [--rekey-after-ms N]
 *
 * Logs are JSON lines on stdout.
 */
import { parseArgs } from 'node:util';
import type { RelayEvent } from '@roamlink/core';
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
    listen: { type: 'string', default: '127.0.0.1:51820' },
    'data-dir': { type: 'string', default: '.roamlink/relay' },
    allow: { type: 'string', multiple: true, default: [] },
    'rekey-after-ms': { type: 'string' },
    help: { type: 'boolean', default: false },
  },
});
if (values.help) {
  process.stdout.write(
    'usage: relay [--listen host:port] [--data-dir dir] [--allow pubkey-hex]... [--rekey-after-ms N]\n',
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
const driver = new SessionDriver<string, RelayEvent<string>>(
  relay,
  (path, data) => udp.send(path, data),
  (e) => {
    if (e.type === 'sa-keys') writeKey?.(e.info);
    else
      log(e.type, {
        peer: e.peer.id.slice(0, 16),
        path: e.peer.path,
        ...('suite' in e ? { suite: e.suite } : {}),
      });
  },
);

udp = await UdpTransport.bind(parseEndpoint(values.listen, true), (data, path, from) => {
  const now = driver.now();
  // What the relay observed on this path: registration compares it with the client's copy.
  const local = udp.local;
  const info = {
    encapsulation: Encapsulation.UDP,
    view: {
      srcAddr: from.address,
      srcPort: from.port,
      dstAddr: local.address,
      dstPort: local.port,
    },
  };
  const got = relay.receive(data, path, now, info);
  if (got && got.nextHeader === NextHeader.ROAMLINK && got.payload[0] === FrameType.ECHO_REQUEST) {
    try {
      decodeEcho(got.payload);
      const pkt = relay.send(got.peer, echoReplyInPlace(got.payload), NextHeader.ROAMLINK, now);
      if (pkt && got.peer.path !== undefined) udp.send(got.peer.path, pkt);
    } catch {
      // A malformed frame inside an authentic packet: the peer's bug; drop it.
    }
  }
  driver.pump();
});

log('listening', {
  udp: `${udp.local.address}:${udp.local.port}`,
  publicKey: toHex(keypair.publicKey),
  keyCreated: created,
  crypto: crypto.provider.name,
  suites: crypto.suites,
  allowed: allowed.size,
});

const shutdown = (): void => {
  log('shutdown', { stats: relay.stats });
  driver.close();
  void udp.close().then(() => process.exit(0));
};
process.on('SIGINT', shutdown);
process.on('SIGTERM', shutdown);
