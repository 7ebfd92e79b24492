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
import { startRelay } from '../../relay/src/relay.ts';
import { TunnelClient } from '../src/tunnel.ts';

const BYTES = 4 * 1024 * 1024;

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

  const relayKeys = generateKeypair(nodeRandom);
  const relay = await startRelay({
    keypair: relayKeys,
    provider: nobleProvider,
    suites: [Suite.CHACHA20_POLY1305],
    udp: { address: '127.0.0.1', port: 0 },
    tcp: { address: '127.0.0.1', port: 0 },
    authorize: () => ({ allowed: true }),
    egress: async () => ({ address: '127.0.0.1' }),
    log: () => {},
  });
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

test('two Node ends over WebSocket: packets of up to 1 MiB both ways, 8 MiB echoed intact', async () => {
  // A TCP echo server: what goes up comes down.
  const echo = createServer((s) => {
    s.pipe(s);
    s.on('error', () => {});
  });
  echo.listen(0, '127.0.0.1');
  await once(echo, 'listening');
  const echoPort = (echo.address() as AddressInfo).port;
  const relayKeys = generateKeypair(nodeRandom);
  const relay = await startRelay({
    keypair: relayKeys,
    provider: nobleProvider,
    suites: [Suite.CHACHA20_POLY1305],
    http: { address: '127.0.0.1', port: 0 },
    authorize: () => ({ allowed: true }),
    egress: async () => ({ address: '127.0.0.1' }),
    log: () => {},
  });
  const client = await TunnelClient.start({
    relay: relay.http!,
    relayHttp: relay.http!,
    relayKey: relayKeys.publicKey,
    keypair: generateKeypair(nodeRandom),
    provider: nobleProvider,
    suites: [Suite.CHACHA20_POLY1305],
    enabled: { udp: false, tcp: false, ws: true, http: false },
    proxy: false,
  });
  try {
    const stream = await client.dialer.connect({ host: '127.0.0.1', port: echoPort });
    const data = randomBytes(8 * 1024 * 1024);
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
    const up0 = client.host.mux.stats;
    const down0 = relay.tunnels()[0]!.stats;
    stream.write(data);
    await done;
    const up1 = client.host.mux.stats;
    const down1 = relay.tunnels()[0]!.stats;
    stream.destroy();
    assert.equal(client.status().encapsulation, 'websocket');
    assert.equal(
      createHash('sha256').update(Buffer.concat(back)).digest('hex'),
      createHash('sha256').update(data).digest('hex'),
    );
    // Both ends said they take 1 MiB: the client's stream layer may fill packets that large.
    assert.equal(client.host.mux.maxPayload, (1 << 20) - 64);
    // How large they get follows the path's delivery rate (4 ms of it; a loaded machine moves
    // less), but at 60 000 bytes a packet no average could exceed 60 000.
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
  } finally {
    await client.close();
    await relay.close(0);
    echo.close();
  }
});
