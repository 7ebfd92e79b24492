/**
 * The client fits its stream layer to the encapsulation the relay chose, also when the winning
 * path is the one its handshake went out on (the path does not change, only what it is known to
 * be). Over TCP that means stream-sized packets, unpaced, and an ACK per eight packets: a client
 * left at its pre-registration (UDP) settings paced its packets and acknowledged every second
 * one over TCP. Relay and client in this process, 4 MiB uploaded through a stream to a TCP sink.
 */
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { createServer as createHttpServer } from 'node:http';
import { type AddressInfo, createServer } from 'node:net';
import { test } from 'node:test';
import {
  DATAGRAM_PATH_PAYLOAD,
  generateKeypair,
  nobleProvider,
  STREAM_PATH_PAYLOAD,
  Suite,
} from '@roamlink/core';
import { nodeRandom } from '@roamlink/node';
import { WebSocket, WebSocketServer } from 'ws';
import type { RelayHandle } from '../../relay/src/relay.ts';
import { startLoopbackRelay } from '../../relay/test/loopback-relay.ts';
import { TunnelClient } from '../src/tunnel.ts';

const BYTES = 4 * 1024 * 1024;

/** A relay on loopback (UDP and TCP) and a client with TCP alone. */
async function tcpRig(): Promise<{ relay: RelayHandle; client: TunnelClient }> {
  const relayKeys = generateKeypair(nodeRandom);
  const relay = await startLoopbackRelay(
    { udp: { address: '127.0.0.1', port: 0 }, tcp: { address: '127.0.0.1', port: 0 } },
    relayKeys,
  );
  const client = await TunnelClient.start({
    relay: relay.udp!,
    relayTcp: relay.tcp!,
    relayKey: relayKeys.publicKey,
    keypair: generateKeypair(nodeRandom),
    provider: nobleProvider,
    suites: [Suite.CHACHA20_POLY1305],
    enabled: { udp: false, tcp: true, ws: false, http: false },
    proxy: false,
  });
  return { relay, client };
}

test('a TCP-only client fits its stream layer to TCP: unpaced, stream-sized packets', async () => {
  let got = 0;
  const hash = createHash('sha256');
  let arrived = (): void => {};
  const done = new Promise<void>((r) => (arrived = r));
  const sink = createServer((s) => {
    s.on('data', (d: Buffer) => {
      got += d.length;
      hash.update(d);
      if (got >= BYTES) arrived();
    });
    s.on('error', () => {});
  });
  sink.listen(0, '127.0.0.1');
  await once(sink, 'listening');
  const sinkPort = (sink.address() as AddressInfo).port;

  const { relay, client } = await tcpRig();
  try {
    const stream = await client.dialer.connect({ host: '127.0.0.1', port: sinkPort });
    let streamError: Error | undefined;
    stream.on('error', (e) => (streamError = e));
    const data = randomBytes(BYTES);
    const before = client.host.mux.stats;
    stream.end(data);
    await done;
    const after = client.host.mux.stats;
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(streamError, undefined);
    assert.equal(createHash('sha256').update(data).digest('hex'), hash.digest('hex'));
    const packets = after.packetsSent - before.packetsSent;
    const bytes = after.bytesSent - before.bytesSent;
    assert.equal(client.status().encapsulation, 'tcp');
    assert.equal(client.host.mux.pacing, false, 'packets over TCP are not paced');
    // At UDP settings every packet would be at most DATAGRAM_PATH_PAYLOAD bytes: > 3000 packets.
    assert.ok(
      bytes / packets > 4 * DATAGRAM_PATH_PAYLOAD,
      `${packets} packets for ${bytes} bytes: ${Math.round(bytes / packets)} bytes each`,
    );
  } finally {
    await client.close();
    await relay.close(0);
    sink.close();
  }
});

/** A TCP echo server on loopback. */
async function echoServer() {
  const echo = createServer((s) => {
    s.pipe(s);
    s.on('error', () => {});
  });
  echo.listen(0, '127.0.0.1');
  await once(echo, 'listening');
  return { echo, echoPort: (echo.address() as AddressInfo).port };
}

/** A TCP echo server and a relay on one HTTP port (WebSocket only), both on loopback. */
async function wsRig() {
  const { echo, echoPort } = await echoServer();
  const relayKeys = generateKeypair(nodeRandom);
  const relay = await startLoopbackRelay({ http: { address: '127.0.0.1', port: 0 } }, relayKeys);
  return { echo, echoPort, relayKeys, relay };
}

/** A client with WebSocket alone, to the relay's HTTP port at `at`. */
function wsClient(
  relayKey: Uint8Array,
  at: { address: string; port: number },
  onLog?: (msg: string) => void,
): Promise<TunnelClient> {
  return TunnelClient.start({
    relay: at,
    relayHttp: at,
    relayKey,
    keypair: generateKeypair(nodeRandom),
    provider: nobleProvider,
    suites: [Suite.CHACHA20_POLY1305],
    enabled: { udp: false, tcp: false, ws: true, http: false },
    proxy: false,
    ...(onLog ? { onLog } : {}),
  });
}

/** Writes `data` into `stream` and resolves with everything that came back, once it all has. */
async function echoed(stream: NodeJS.ReadWriteStream, data: Uint8Array): Promise<Buffer> {
  const back: Buffer[] = [];
  let got = 0;
  const done = new Promise<void>((resolve, reject) => {
    stream.on('data', (d: Buffer) => {
      back.push(d);
      got += d.length;
      if (got >= data.length) resolve();
    });
    stream.on('error', reject);
  });
  stream.write(data);
  await done;
  return Buffer.concat(back);
}

const sha = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');

/**
 * Echoes 8 MiB through `client` and checks it came back intact over `encapsulation`, with both
 * ends at 1 MiB packets (both announced it, PROTOCOL §6.4). How large packets get follows the
 * path's delivery rate (4 ms of it; a loaded machine moves less), but at 60 000 bytes a packet no
 * average could exceed 60 000.
 */
async function echoInLargePackets(
  client: TunnelClient,
  relay: RelayHandle,
  echoPort: number,
  encapsulation: string,
): Promise<void> {
  const stream = await client.dialer.connect({ host: '127.0.0.1', port: echoPort });
  const data = randomBytes(8 * 1024 * 1024);
  const up0 = client.host.mux.stats;
  const down0 = relay.tunnels()[0]!.stats;
  const back = await echoed(stream, data);
  const up1 = client.host.mux.stats;
  const down1 = relay.tunnels()[0]!.stats;
  stream.destroy();
  assert.equal(client.status().encapsulation, encapsulation);
  assert.equal(sha(back), sha(data));
  assert.equal(client.host.mux.maxPayload, (1 << 20) - 64);
  for (const [who, a, b] of [
    ['client → relay', up0, up1],
    ['relay → client', down0, down1],
  ] as const) {
    const packets = b.packetsSent - a.packetsSent;
    const bytes = b.bytesSent - a.bytesSent;
    assert.ok(
      bytes / packets > STREAM_PATH_PAYLOAD,
      `${who}: ${packets} packets for ${bytes} bytes: ${Math.round(bytes / packets)} each`,
    );
  }
}

test('two Node ends over WebSocket: packets of up to 1 MiB both ways, 8 MiB echoed intact', async () => {
  const { echo, echoPort, relayKeys, relay } = await wsRig();
  const client = await wsClient(relayKeys.publicKey, relay.http!);
  try {
    await echoInLargePackets(client, relay, echoPort, 'websocket');
  } finally {
    await client.close();
    await relay.close(0);
    echo.close();
  }
});

test('two Node ends over TCP: extended records carry packets of up to 1 MiB both ways, 8 MiB echoed intact', async () => {
  const { echo, echoPort } = await echoServer();
  const { relay, client } = await tcpRig();
  try {
    await echoInLargePackets(client, relay, echoPort, 'tcp');
  } finally {
    await client.close();
    await relay.close(0);
    echo.close();
  }
});

test('a WebSocket intermediary that takes only 64 KiB messages (1009): the client falls back to 60 000 and every byte arrives', async () => {
  const { echo, echoPort, relayKeys, relay } = await wsRig();
  // A transparent WebSocket relay in between: it passes the client's request target, Host and
  // headers on unchanged (so registration sees no proxy), and messages both ways, up to 64 KiB.
  const limit = 65_535;
  const front = createHttpServer();
  const wss = new WebSocketServer({ server: front, maxPayload: limit, perMessageDeflate: false });
  wss.on('connection', (down, req) => {
    const headers: Record<string, string> = {};
    for (const [k, v] of Object.entries(req.headers)) {
      if (typeof v === 'string' && !/^(connection|upgrade|sec-websocket-.*)$/.test(k))
        headers[k] = v;
    }
    const up = new WebSocket(`ws://${String(relay.http!.address)}:${relay.http!.port}${req.url}`, {
      headers,
      maxPayload: limit,
      perMessageDeflate: false,
    });
    const early: Buffer[] = [];
    up.on('open', () => {
      for (const m of early.splice(0)) up.send(m);
    });
    down.on('message', (m: Buffer) =>
      up.readyState === WebSocket.OPEN ? up.send(m) : early.push(m),
    );
    up.on('message', (m: Buffer) => down.send(m));
    const closeBoth = (code: number): void => {
      const c = code === 1005 || code === 1006 ? 1000 : code;
      if (down.readyState === WebSocket.OPEN) down.close(c);
      if (up.readyState === WebSocket.OPEN) up.close(c);
    };
    down.on('close', closeBoth);
    up.on('close', closeBoth);
    down.on('error', () => {});
    up.on('error', () => {});
  });
  front.listen(0, '127.0.0.1');
  await once(front, 'listening');
  const frontPort = (front.address() as AddressInfo).port;
  const logs: string[] = [];
  const client = await wsClient(
    relayKeys.publicKey,
    { address: '127.0.0.1', port: frontPort },
    (m) => logs.push(m),
  );
  try {
    const until = async (pred: () => boolean, what: string): Promise<void> => {
      for (let i = 0; i < 400 && !pred(); i++) await new Promise((r) => setTimeout(r, 25));
      assert.ok(pred(), what);
    };
    await until(() => client.status().encapsulation === 'websocket', 'registered on WebSocket');
    assert.equal(client.host.mux.maxPayload, (1 << 20) - 64, 'both ends announced 1 MiB');
    const stream = await client.dialer.connect({ host: '127.0.0.1', port: echoPort });
    const data = randomBytes(8 * 1024 * 1024);
    const back = await echoed(stream, data);
    stream.destroy();
    assert.equal(sha(back), sha(data), 'every byte back, once and in order');
    assert.ok(logs.includes('ws-large-messages-off'), `logs: ${logs.join(', ')}`);
    assert.equal(client.host.mux.maxPayload, STREAM_PATH_PAYLOAD);
  } finally {
    await client.close();
    await relay.close(0);
    wss.close();
    front.close();
    echo.close();
  }
});
