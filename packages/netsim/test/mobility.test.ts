import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  applyMobility,
  Link,
  Nat,
  type NetworkChange,
  scheduleMobility,
  schedulePlan,
} from '../src/index.ts';
import { bytes, CLIENT_PRIV, concat, NAT_PUB, pattern, RELAY, world } from './helpers.ts';

const UDP_DST = { addr: RELAY, port: 4000 };
const TCP_DST = { addr: RELAY, port: 443 };

function echoRelay(w: ReturnType<typeof world>) {
  const srv = w.relay.bindUdp(4000);
  const seen: { t: number; from: string; d: number }[] = [];
  srv.onMessage = (d, from) => {
    seen.push({ t: w.net.now, from: `${from.addr}:${from.port}`, d: d[0]! });
    srv.send(from, d);
  };
  return seen;
}

test('address change: TCP aborted, bound UDP fails, unbound UDP follows, app told', () => {
  const w = world();
  const seen = echoRelay(w);
  const changes: NetworkChange[] = [];
  w.client.onNetworkChange = (c) => changes.push(c);
  w.relay.listen(443, () => {});
  const conn = w.client.connect(TCP_DST);
  let tcpErr = '';
  conn.onError = (e) => {
    tcpErr = e.code;
  };
  const bound = w.client.bindUdp(5000, { addr: CLIENT_PRIV });
  const unbound = w.client.bindUdp(6000);
  let boundErr = '';
  bound.onError = (e) => {
    boundErr = e.code;
  };
  w.net.run(100);
  scheduleMobility(w.net, 1000, { kind: 'address', iface: w.wifi, addr: '198.19.0.77' });
  w.net.runUntil(1000);
  bound.send(UDP_DST, bytes(1));
  unbound.send(UDP_DST, bytes(2));
  w.net.run(100);
  assert.equal(tcpErr, 'ECONNABORTED');
  assert.equal(boundErr, 'EADDRNOTAVAIL');
  assert.deepEqual(
    seen.map((s) => s.from),
    ['198.19.0.77:6000'],
  );
  assert.deepEqual(changes, [
    { iface: 'wifi', kind: 'address', addr: '198.19.0.77', previous: CLIENT_PRIV },
  ]);
});

test('addressLoss "keep": a TCP connection is not aborted but times out on the lost address', () => {
  const w = world({ addressLoss: 'keep' });
  w.relay.listen(443, () => {});
  const conn = w.client.connect(TCP_DST, { userTimeout: 3000 });
  let err = '';
  conn.onError = (e) => {
    err = e.code;
  };
  w.net.run(100);
  w.wifi.setAddress('198.19.0.77');
  conn.write(bytes(1));
  w.net.run(1000);
  assert.equal(err, '');
  w.net.run(5000);
  assert.equal(err, 'EHOSTUNREACH', 'sends from a missing address: the soft error is reported');
});

test('move to a new network (new NAT): the relay sees a new endpoint, in-flight packets are lost', () => {
  const natA = new Nat({ name: 'wifiA', externalAddr: NAT_PUB });
  const natB = new Nat({ name: 'wifiB', externalAddr: '198.18.2.1' });
  const w = world({ chain: [new Link({ delay: 5 }), natA, new Link({ delay: 50 })] });
  const seen = echoRelay(w);
  const changes: string[] = [];
  w.client.onNetworkChange = (c) => changes.push(`${c.kind} ${c.addr}`);
  const s = w.client.bindUdp(5000);
  const echoes: number[] = [];
  s.onMessage = (d) => echoes.push(d[0]!);
  s.send(UDP_DST, bytes(1));
  w.net.run(200);
  w.net.run(20);
  s.send(UDP_DST, bytes(2)); // will be on the old path's 50 ms link when we move
  w.net.run(20);
  applyMobility(w.net, {
    kind: 'move',
    iface: w.wifi,
    chain: [new Link({ delay: 5 }), natB, new Link({ delay: 20 })],
    addr: '198.19.50.2',
  });
  s.send(UDP_DST, bytes(3));
  w.net.run(500);
  assert.deepEqual(
    seen.map((x) => `${x.d} ${x.from.split(':')[0]}`),
    [`1 ${NAT_PUB}`, `3 198.18.2.1`],
  );
  assert.deepEqual(echoes, [1, 3]);
  assert.deepEqual(changes, ['address 198.19.50.2']);
  // The old NAT still holds its mapping until it times out, as a real one would.
  assert.equal(natA.mappings().length, 1);
});

test('blackhole: the path dies silently for a while; no error, no event, then it carries again', () => {
  const w = world();
  const seen = echoRelay(w);
  const changes: NetworkChange[] = [];
  w.client.onNetworkChange = (c) => changes.push(c);
  const s = w.client.bindUdp();
  const errors: string[] = [];
  s.onError = (e) => errors.push(e.code);
  for (let t = 0; t < 10_000; t += 1000) w.net.at(t, () => s.send(UDP_DST, bytes(t / 1000)));
  scheduleMobility(w.net, 2500, { kind: 'blackhole', iface: w.wifi, duration: 4000 });
  w.net.run(11_000);
  assert.deepEqual(
    seen.map((x) => x.d),
    [0, 1, 2, 7, 8, 9],
  );
  assert.deepEqual(errors, []);
  assert.deepEqual(changes, []);
});

test('network down for N seconds: sends fail, TCP survives and delivers everything once', () => {
  const w = world();
  const seen = echoRelay(w);
  const changes: string[] = [];
  w.client.onNetworkChange = (c) => changes.push(`${w.net.now} ${c.kind}`);
  const parts: Uint8Array[] = [];
  w.relay.listen(443, (c) => {
    c.onData = (d) => parts.push(d.slice());
  });
  const conn = w.client.connect(TCP_DST);
  const data = pattern(30_000);
  conn.onOpen = () => conn.write(data.subarray(0, 10_000));
  const s = w.client.bindUdp();
  const udpErr: string[] = [];
  s.onError = (e) => udpErr.push(e.code);
  schedulePlan(w.net, [{ at: 1000, event: { kind: 'down', iface: w.wifi, duration: 5000 } }]);
  w.net.at(2000, () => {
    s.send(UDP_DST, bytes(1));
    conn.write(data.subarray(10_000));
  });
  w.net.at(7000, () => s.send(UDP_DST, bytes(2)));
  w.net.run(30_000);
  assert.deepEqual(changes, ['1000 down', '6000 up']);
  assert.deepEqual(udpErr, ['ENETUNREACH']);
  assert.deepEqual(
    seen.map((x) => x.d),
    [2],
  );
  assert.ok(Buffer.from(concat(parts)).equals(Buffer.from(data)));
  assert.ok(conn.stats.timeouts > 0);
});

test('network down and back with a new address (DHCP gave another one)', () => {
  const w = world();
  const changes: string[] = [];
  w.client.onNetworkChange = (c) => changes.push(`${c.kind} ${c.addr}`);
  applyMobility(w.net, { kind: 'down', iface: w.wifi, duration: 3000, addrOnReturn: '198.19.0.9' });
  w.net.run(4000);
  assert.deepEqual(changes, [`down ${CLIENT_PRIV}`, 'address 198.19.0.9', 'up 198.19.0.9']);
  assert.equal(w.wifi.addr, '198.19.0.9');
});

test('NAT rebinding as a scheduled event: the relay sees the flow move to a new port', () => {
  const nat = new Nat({ externalAddr: NAT_PUB });
  const w = world({ chain: [new Link({ delay: 5 }), nat, new Link({ delay: 5 })] });
  const seen = echoRelay(w);
  const s = w.client.bindUdp(5000);
  for (let t = 0; t < 4000; t += 1000) w.net.at(t, () => s.send(UDP_DST, bytes(t / 1000)));
  scheduleMobility(w.net, 1500, { kind: 'rebind', nat });
  w.net.run(5000);
  const ports = seen.map((x) => x.from);
  assert.equal(ports[0], ports[1]);
  assert.equal(ports[2], ports[3]);
  assert.notEqual(ports[1], ports[2]);
});

test('a link going down for a while, as a scheduled event', () => {
  const link = new Link({ delay: 10 });
  const w = world({ chain: [link] });
  const seen = echoRelay(w);
  const s = w.client.bindUdp();
  for (let t = 0; t < 5000; t += 1000) w.net.at(t, () => s.send(UDP_DST, bytes(t / 1000)));
  scheduleMobility(w.net, 500, { kind: 'link', link, duration: 2000 });
  w.net.run(6000);
  assert.deepEqual(
    seen.map((x) => x.d),
    [0, 3, 4],
  );
});
