import assert from 'node:assert/strict';
import { test } from 'node:test';
import { type Firewall, firewallPresets as fw, Link, type NetError } from '../src/index.ts';
import { bytes, RELAY, world } from './helpers.ts';

/** Client -- 10 ms -- firewall -- 20 ms -- internet; relay has 10 ms more. RTT 80 ms. */
function fwWorld(f: Firewall) {
  const w = world({ chain: [new Link({ delay: 10 }), f, new Link({ delay: 20 })] });
  const udpGot: Uint8Array[] = [];
  const srv = w.relay.bindUdp(4000);
  srv.onMessage = (d) => udpGot.push(d);
  const sock = w.client.bindUdp(5000);
  const udpErrors: string[] = [];
  sock.onError = (e) => udpErrors.push(e.code);
  const tcpGot = new Map<number, number>();
  for (const port of [80, 443, 8443]) {
    w.relay.listen(port, (c) => {
      c.onData = (d) => tcpGot.set(port, (tcpGot.get(port) ?? 0) + d.length);
    });
  }
  const tcp = (port: number, data = bytes(1, 2, 3)) => {
    const c = w.client.connect({ addr: RELAY, port }, { connectTimeout: 3000 });
    const r: { open?: number; error?: NetError; at?: number } = {};
    c.onOpen = () => {
      r.open = w.net.now;
      c.write(data);
    };
    c.onError = (e) => {
      r.error = e;
      r.at = w.net.now;
    };
    return r;
  };
  const udp = (payload: Uint8Array) => sock.send({ addr: RELAY, port: 4000 }, payload);
  return { ...w, udpGot, udpErrors, tcpGot, tcp, udp, srv };
}

test('dropUdp: UDP vanishes silently, TCP passes', () => {
  const w = fwWorld(fw.dropUdp());
  w.udp(bytes(1));
  const t = w.tcp(443);
  w.net.run(5000);
  assert.equal(w.udpGot.length, 0);
  assert.deepEqual(w.udpErrors, []);
  assert.equal(w.tcpGot.get(443), 3);
  assert.ok(t.open !== undefined);
});

test('dropUdp with ICMP: the sender hears "administratively prohibited" within the round trip to the firewall', () => {
  const w = fwWorld(fw.dropUdp({ action: 'icmp' }));
  w.udp(bytes(1));
  w.net.run(5000);
  assert.deepEqual(w.udpErrors, ['EHOSTUNREACH']);
});

test('onlyTcpPorts(80, 443): those pass; another TCP port and UDP do not', () => {
  const w = fwWorld(fw.onlyTcpPorts([80, 443]));
  const a = w.tcp(80);
  const b = w.tcp(443);
  const c = w.tcp(8443);
  w.udp(bytes(1));
  w.net.run(5000);
  assert.equal(w.tcpGot.get(80), 3);
  assert.equal(w.tcpGot.get(443), 3);
  assert.ok(a.open !== undefined && b.open !== undefined);
  assert.equal(c.error?.code, 'ETIMEDOUT', 'silently dropped SYNs time out');
  assert.equal(c.at, 3000);
  assert.equal(w.udpGot.length, 0);
});

test('refusal styles: silent drop, TCP RST, ICMP unreachable', () => {
  const drop = fwWorld(fw.onlyTcpPorts([443], { action: 'drop' }));
  const d = drop.tcp(8443);
  drop.net.run(5000);
  assert.equal(d.error?.code, 'ETIMEDOUT');

  const rst = fwWorld(fw.onlyTcpPorts([443], { action: 'rst' }));
  const r = rst.tcp(8443);
  rst.net.run(5000);
  assert.equal(r.error?.code, 'ECONNREFUSED');
  assert.equal(r.at, 20, 'a reset forged at the firewall: 10 ms there and back');

  const icmp = fwWorld(fw.onlyTcpPorts([443], { action: 'icmp' }));
  const i = icmp.tcp(8443);
  icmp.net.run(5000);
  assert.equal(i.error?.code, 'EHOSTUNREACH');
  assert.equal(i.at, 20);
});

test('maxPacketSize: small packets pass, large ones are dropped', () => {
  const w = fwWorld(fw.maxPacketSize(200));
  w.udp(new Uint8Array(100)); // 128 bytes on the wire
  w.udp(new Uint8Array(172)); // exactly 200
  w.udp(new Uint8Array(173)); // 201
  w.udp(new Uint8Array(1000));
  w.net.run(1000);
  assert.deepEqual(
    w.udpGot.map((d) => d.length),
    [100, 172],
  );
});

test('passFirst: the first K packets of a flow pass, then its payload is stopped', () => {
  const w = fwWorld(fw.passFirst({ packets: 2 }));
  for (let i = 0; i < 5; i++) w.udp(bytes(i));
  w.net.run(1000);
  assert.deepEqual(w.udpGot, [bytes(0), bytes(1)]);

  // By bytes, on TCP: the handshake and ACKs still pass, data beyond 1000 bytes does not.
  const t = fwWorld(fw.passFirst({ bytes: 1000 }));
  const small = t.tcp(443, new Uint8Array(600));
  const big = t.tcp(80, new Uint8Array(1200));
  t.net.run(2000);
  assert.ok(small.open !== undefined && big.open !== undefined);
  assert.equal(t.tcpGot.get(443), 600);
  assert.equal(t.tcpGot.get(80), undefined, 'each flow has its own budget; 1200 > 1000');
});

test('payloadFilter: registration messages pass, data is dropped', () => {
  // Say a registration message starts with 0x01 and data with 0x02.
  const w = fwWorld(fw.payloadFilter((p) => p[0] === 0x01));
  w.udp(bytes(0x01, 9));
  w.udp(bytes(0x02, 9));
  w.udp(bytes(0x01, 8));
  w.net.run(1000);
  assert.deepEqual(w.udpGot, [bytes(0x01, 9), bytes(0x01, 8)]);
});

test('onlyTo: only the named endpoint (say, a proxy) is reachable', () => {
  const w = fwWorld(fw.onlyTo([{ addr: RELAY, port: 80 }]));
  const a = w.tcp(80);
  const b = w.tcp(443);
  w.net.run(5000);
  assert.ok(a.open !== undefined);
  assert.equal(b.error?.code, 'ETIMEDOUT');
});
