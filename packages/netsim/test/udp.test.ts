import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Link, NetError } from '../src/index.ts';
import { bytes, CLIENT_PRIV, RELAY, world } from './helpers.ts';

const DST = { addr: RELAY, port: 4000 };

test('bind, send, receive with sender and local endpoint', () => {
  const w = world();
  const srv = w.relay.bindUdp(4000);
  const seen: string[] = [];
  srv.onMessage = (d, from, to) => {
    seen.push(`${d[0]} ${from.addr}:${from.port} -> ${to.addr}:${to.port}`);
    srv.send(from, bytes(d[0]! + 1));
  };
  const s = w.client.bindUdp(5000);
  let reply = 0;
  s.onMessage = (d) => {
    reply = d[0]!;
  };
  assert.equal(s.send(DST, bytes(1)), true);
  w.net.run(100);
  assert.deepEqual(seen, [`1 ${CLIENT_PRIV}:5000 -> ${RELAY}:4000`]);
  assert.equal(reply, 2);
  assert.deepEqual(s.localEndpoint(), { addr: CLIENT_PRIV, port: 5000 });
});

test('bind conflicts and unknown addresses throw OS-style errors', () => {
  const w = world();
  w.client.bindUdp(5000);
  assert.throws(
    () => w.client.bindUdp(5000),
    (e: unknown) => e instanceof NetError && e.code === 'EADDRINUSE',
  );
  assert.throws(() => w.client.bindUdp(5001, { addr: '198.19.9.9' }), { code: 'EADDRNOTAVAIL' });
  const eph = w.client.bindUdp();
  assert.ok(eph.port >= 32768 && eph.port <= 60999);
});

test('a socket bound to an address that disappeared fails with EADDRNOTAVAIL', () => {
  const w = world();
  const s = w.client.bindUdp(5000, { addr: CLIENT_PRIV });
  const errors: string[] = [];
  s.onError = (e) => errors.push(e.code);
  w.wifi.setAddress('198.19.0.3');
  assert.equal(s.send(DST, bytes(1)), false);
  w.net.run(10);
  assert.deepEqual(errors, ['EADDRNOTAVAIL']);
  assert.equal(s.stats.errors, 1);
});

test('no usable interface: ENETUNREACH; interface down: ENETDOWN (for a pinned socket)', () => {
  const w = world();
  const any = w.client.bindUdp();
  const pinned = w.client.bindUdp(undefined, { iface: 'wifi' });
  const errs: string[] = [];
  any.onError = (e) => errs.push(`any ${e.code}`);
  pinned.onError = (e) => errs.push(`pinned ${e.code}`);
  w.wifi.setUp(false);
  any.send(DST, bytes(1));
  pinned.send(DST, bytes(1));
  w.net.run(10);
  assert.deepEqual(errs, ['any ENETUNREACH', 'pinned ENETDOWN']);
});

test('datagrams larger than the interface MTU fail with EMSGSIZE', () => {
  const w = world();
  const s = w.client.bindUdp();
  let code = '';
  s.onError = (e) => {
    code = e.code;
  };
  assert.equal(s.send(DST, new Uint8Array(1472)), true);
  assert.equal(s.send(DST, new Uint8Array(1473)), false);
  w.net.run(10);
  assert.equal(code, 'EMSGSIZE');
});

test('two interfaces: unbound sockets use the lowest metric; pinned ones keep theirs', () => {
  const w = world();
  w.client.addInterface('cell', {
    addr: '198.19.200.2',
    chain: [new Link({ delay: 40 })],
    metric: 10,
  });
  const srv = w.relay.bindUdp(4000);
  const from: string[] = [];
  srv.onMessage = (_d, f) => from.push(f.addr);
  const any = w.client.bindUdp();
  const cell = w.client.bindUdp(undefined, { iface: 'cell' });
  any.send(DST, bytes(1));
  cell.send(DST, bytes(2));
  w.net.run(200);
  assert.deepEqual(from, [CLIENT_PRIV, '198.19.200.2']);
  // Wi-Fi goes down: the unbound socket fails over to cellular.
  w.wifi.setUp(false);
  any.send(DST, bytes(3));
  w.net.run(200);
  assert.deepEqual(from.at(-1), '198.19.200.2');
  assert.equal(w.client.defaultInterface()?.name, 'cell');
});

test('several clients, each behind its own NAT, reach one relay that tells them apart', async () => {
  const { Nat } = await import('../src/index.ts');
  const w = world();
  const srv = w.relay.bindUdp(4000);
  const from: string[] = [];
  srv.onMessage = (d, f) => {
    from.push(`${d[0]} ${f.addr}`);
    srv.send(f, d);
  };
  const echoes: number[] = [];
  for (let i = 1; i <= 3; i++) {
    const h = w.net.addHost(`c${i}`);
    // The same private address behind each NAT, as homes have.
    h.addInterface('wifi', {
      addr: '198.19.0.2',
      chain: [
        new Link({ delay: 5 * i }),
        new Nat({ externalAddr: `198.18.10.${i}` }),
        new Link({ delay: 10 }),
      ],
    });
    const s = h.bindUdp(5000);
    s.onMessage = (d) => echoes.push(d[0]!);
    s.send(DST, bytes(i));
  }
  w.net.run(200);
  assert.deepEqual(from, ['1 198.18.10.1', '2 198.18.10.2', '3 198.18.10.3']);
  assert.deepEqual(echoes, [1, 2, 3]);
  const c2 = w.net.host('c2').iface('wifi');
  // 10 + 10 (client 2's path) + 10 (relay link), each way.
  assert.equal(w.net.baseRtt(c2, w.relay.iface('eth0')), 60);
});
