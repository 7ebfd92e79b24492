/**
 * NAT behaviour against the RFC 4787 definitions: mapping (§4.1), filtering (§5), port
 * preservation (§4.2.1), mapping refresh (§4.3, REQ-6 outbound only), and rebinding.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { Endpoint, NatBehavior } from '../src/index.ts';
import { Link, Nat } from '../src/index.ts';
import { bytes, CLIENT_PRIV, NAT_PUB, OTHER, RELAY, world } from './helpers.ts';

const BEHAVIOURS: NatBehavior[] = [
  'endpoint-independent',
  'address-dependent',
  'address-and-port-dependent',
];

function natWorld(opts: Partial<ConstructorParameters<typeof Nat>[0]> = {}) {
  const nat = new Nat({ externalAddr: NAT_PUB, ...opts });
  const w = world({ chain: [new Link({ delay: 5 }), nat, new Link({ delay: 5 })] });
  // Servers: RELAY:4000, RELAY:4001, OTHER:4000, each recording who sent what.
  const seen: { at: string; from: Endpoint }[] = [];
  const servers = {
    a0: w.relay.bindUdp(4000),
    a1: w.relay.bindUdp(4001),
    b0: w.other.bindUdp(4000),
  };
  for (const [name, s] of Object.entries(servers)) {
    s.onMessage = (_d, from) => seen.push({ at: name, from });
  }
  const sock = w.client.bindUdp(5000);
  const got: { from: Endpoint }[] = [];
  sock.onMessage = (_d, from) => got.push({ from });
  return { ...w, nat, servers, sock, seen, got };
}

const A0 = { addr: RELAY, port: 4000 };
const A1 = { addr: RELAY, port: 4001 };
const B0 = { addr: OTHER, port: 4000 };

for (const mapping of BEHAVIOURS) {
  test(`mapping ${mapping}: external endpoint reuse per RFC 4787 §4.1`, () => {
    const w = natWorld({ mapping });
    w.sock.send(A0, bytes(1));
    w.sock.send(A1, bytes(2));
    w.sock.send(B0, bytes(3));
    w.net.run(1000);
    const [e1, e2, e3] = ['a0', 'a1', 'b0'].map((n) => w.seen.find((s) => s.at === n)!.from);
    for (const e of [e1!, e2!, e3!]) assert.equal(e.addr, NAT_PUB);
    const same = (x: Endpoint, y: Endpoint) => x.port === y.port;
    if (mapping === 'endpoint-independent') {
      assert.ok(same(e1!, e2!) && same(e1!, e3!), 'one mapping for every destination');
    } else if (mapping === 'address-dependent') {
      assert.ok(same(e1!, e2!), 'same address, other port: same mapping');
      assert.ok(!same(e1!, e3!), 'other address: new mapping');
    } else {
      assert.ok(!same(e1!, e2!) && !same(e1!, e3!) && !same(e2!, e3!), 'every destination new');
    }
    assert.equal(
      w.nat.counts.created,
      mapping === 'endpoint-independent' ? 1 : mapping === 'address-dependent' ? 2 : 3,
    );
  });
}

for (const mapping of BEHAVIOURS) {
  for (const filtering of BEHAVIOURS) {
    test(`filtering ${filtering} (mapping ${mapping}): who may send in after one outbound packet`, () => {
      const w = natWorld({ mapping, filtering });
      w.sock.send(A0, bytes(1));
      w.net.run(1000);
      const ext = w.seen[0]!.from;
      // Each outside endpoint now sends to the mapping the client opened towards A0.
      w.servers.a0.send(ext, bytes(10));
      w.servers.a1.send(ext, bytes(11));
      w.servers.b0.send(ext, bytes(12));
      w.net.run(1000);
      const from = w.got.map((g) => `${g.from.addr}:${g.from.port}`);
      // RFC 4787 §5: EIF lets anyone in, ADF only the addresses the client sent to, APDF only
      // the exact address and port.
      const expected =
        filtering === 'endpoint-independent'
          ? [`${RELAY}:4000`, `${RELAY}:4001`, `${OTHER}:4000`]
          : filtering === 'address-dependent'
            ? [`${RELAY}:4000`, `${RELAY}:4001`]
            : [`${RELAY}:4000`];
      assert.deepEqual(from, expected);
      assert.equal(w.nat.counts.filtered, 3 - expected.length);
    });
  }
}

test('no inbound packet passes without an outbound one first', () => {
  const w = natWorld({ filtering: 'endpoint-independent' });
  w.servers.a0.send({ addr: NAT_PUB, port: 5000 }, bytes(1));
  w.net.run(1000);
  assert.equal(w.got.length, 0);
  assert.equal(w.nat.stats.in.drops['nat-no-mapping'], 1);
});

test('port preservation keeps the inside port when it is free', () => {
  const on = natWorld({ portPreservation: true });
  on.sock.send(A0, bytes(1));
  on.net.run(100);
  assert.equal(on.seen[0]!.from.port, 5000);
  const off = natWorld({ portPreservation: false });
  off.sock.send(A0, bytes(1));
  off.net.run(100);
  assert.notEqual(off.seen[0]!.from.port, 5000);
  // Address-and-port-dependent mapping with preservation: the second mapping cannot reuse it.
  const apdm = natWorld({ portPreservation: true, mapping: 'address-and-port-dependent' });
  apdm.sock.send(A0, bytes(1));
  apdm.sock.send(A1, bytes(1));
  apdm.net.run(100);
  assert.deepEqual(
    apdm.seen.map((s) => s.from.port === 5000),
    [true, false],
  );
});

test('UDP binding timeout: the mapping dies after udpTimeout without outbound traffic', () => {
  const w = natWorld({ udpTimeout: 30_000, filtering: 'address-and-port-dependent' });
  w.sock.send(A0, bytes(1));
  w.net.run(100);
  const ext = w.seen[0]!.from;
  w.net.runUntil(29_000);
  w.servers.a0.send(ext, bytes(2)); // arrives at ~29 010: mapping alive
  w.net.runUntil(31_000);
  assert.equal(w.got.length, 1);
  assert.equal(w.nat.counts.expired, 1);
  w.servers.a0.send(ext, bytes(3));
  w.net.runUntil(32_000);
  assert.equal(w.got.length, 1, 'after expiry the reply is dropped');
  // The next outbound packet makes a new mapping (a new port: the server sees a new endpoint).
  w.sock.send(A0, bytes(4));
  w.net.runUntil(33_000);
  assert.equal(w.nat.counts.created, 2);
  assert.notEqual(w.seen[1]!.from.port, ext.port);
});

test('outbound packets refresh the binding; inbound ones do not (RFC 4787 REQ-6)', () => {
  const w = natWorld({ udpTimeout: 30_000 });
  w.sock.send(A0, bytes(1));
  w.net.run(100);
  const ext = w.seen[0]!.from;
  // The client keeps the mapping alive with a keepalive every 20 s.
  for (let t = 20_000; t <= 100_000; t += 20_000) w.net.at(t, () => w.sock.send(A0, bytes(0)));
  // The server sends every 10 s.
  for (let t = 10_000; t <= 100_000; t += 10_000)
    w.net.at(t, () => w.servers.a0.send(ext, bytes(9)));
  w.net.runUntil(101_000);
  assert.equal(w.got.length, 10);
  assert.equal(w.nat.counts.expired, 0);

  // Inbound-only traffic does not keep it alive...
  const v = natWorld({ udpTimeout: 30_000 });
  v.sock.send(A0, bytes(1));
  v.net.run(100);
  const e2 = v.seen[0]!.from;
  for (let t = 10_000; t <= 100_000; t += 10_000)
    v.net.at(t, () => v.servers.a0.send(e2, bytes(9)));
  v.net.runUntil(101_000);
  assert.equal(v.got.length, 2, 'only the packets before the 30 s timeout');
  assert.equal(v.nat.counts.expired, 1);

  // ...unless the NAT is configured to refresh on inbound traffic too.
  const u = natWorld({ udpTimeout: 30_000, inboundRefresh: true });
  u.sock.send(A0, bytes(1));
  u.net.run(100);
  const e3 = u.seen[0]!.from;
  for (let t = 10_000; t <= 100_000; t += 10_000)
    u.net.at(t, () => u.servers.a0.send(e3, bytes(9)));
  u.net.runUntil(101_000);
  assert.equal(u.got.length, 10);
});

test('rebind(): mappings forgotten, new external port, optionally a new address', () => {
  const w = natWorld();
  w.sock.send(A0, bytes(1));
  w.net.run(100);
  const before = w.seen[0]!.from;
  w.nat.rebind();
  assert.equal(w.nat.counts.flushed, 1);
  w.servers.a0.send(before, bytes(2));
  w.net.run(100);
  assert.equal(w.got.length, 0, 'the old mapping is gone');
  w.sock.send(A0, bytes(3));
  w.net.run(100);
  const after = w.seen[1]!.from;
  assert.equal(after.addr, NAT_PUB);
  assert.notEqual(after.port, before.port);
  // A new external address: the internet now routes the new one to this NAT.
  w.nat.rebind({ externalAddr: '198.18.1.9' });
  w.sock.send(A0, bytes(4));
  w.net.run(100);
  const moved = w.seen[2]!.from;
  assert.equal(moved.addr, '198.18.1.9');
  w.servers.a0.send(moved, bytes(5));
  w.net.run(100);
  assert.equal(w.got.length, 1);
  assert.equal(w.got[0]!.from.port, 4000);
});

test('double NAT: two translations, replies find their way back', () => {
  const inner = new Nat({ name: 'home', externalAddr: '198.19.100.2' });
  const cgn = new Nat({ name: 'cgn', externalAddr: NAT_PUB, mapping: 'address-dependent' });
  const w = world({
    chain: [new Link({ delay: 2 }), inner, new Link({ delay: 5 }), cgn, new Link({ delay: 10 })],
  });
  const srv = w.relay.bindUdp(4000);
  srv.onMessage = (d, from) => srv.send(from, d);
  const seen: Endpoint[] = [];
  const s0 = srv.onMessage;
  srv.onMessage = (d, from, to) => {
    seen.push(from);
    s0(d, from, to);
  };
  const sock = w.client.bindUdp(5000);
  const got: Uint8Array[] = [];
  sock.onMessage = (d) => got.push(d);
  sock.send(A0, bytes(42));
  w.net.run(1000);
  assert.equal(seen[0]!.addr, NAT_PUB);
  assert.deepEqual(got, [bytes(42)]);
  assert.equal(inner.counts.created, 1);
  assert.equal(cgn.counts.created, 1);
  assert.equal(inner.mappings()[0]!.internal.addr, CLIENT_PRIV);
  assert.equal(cgn.mappings()[0]!.internal.addr, '198.19.100.2');
  assert.equal(w.client.iface('wifi').path.publicAddress(), NAT_PUB);
});

test('TCP through a NAT: mapping on SYN, translated both ways, established then transitory', () => {
  const w = natWorld({ filtering: 'address-and-port-dependent', tcpTransitoryTimeout: 240_000 });
  const got: Uint8Array[] = [];
  let peer: Endpoint | undefined;
  w.relay.listen(443, (c) => {
    peer = c.remote;
    c.onData = (d) => {
      got.push(d);
      c.write(d);
    };
    c.onEnd = () => c.close();
  });
  const c = w.client.connect({ addr: RELAY, port: 443 });
  const echoed: Uint8Array[] = [];
  c.onOpen = () => c.write(bytes(1, 2, 3));
  c.onData = (d) => {
    echoed.push(d);
    c.close();
  };
  let closed = false;
  c.onClose = () => {
    closed = true;
  };
  w.net.run(2000);
  assert.equal(peer!.addr, NAT_PUB);
  assert.deepEqual(got, [bytes(1, 2, 3)]);
  assert.deepEqual(echoed, [bytes(1, 2, 3)]);
  assert.ok(closed);
  const m = w.nat.mappings().filter((x) => x.proto === 'tcp');
  assert.equal(m.length, 1);
  // After FIN the mapping only lives for the transitory timeout.
  assert.ok(m[0]!.expiresAt <= w.net.now + 240_000);
  w.net.run(241_000);
  assert.equal(w.nat.mappings().filter((x) => x.proto === 'tcp').length, 0);
  assert.equal(w.nat.counts.expired, 1);
});

test('TCP mapping idles out after tcpTimeout; later segments are dropped (no loose pickup)', () => {
  const w = natWorld({ tcpTimeout: 60_000 });
  let serverGot = 0;
  w.relay.listen(443, (c) => {
    c.onData = (d) => {
      serverGot += d.length;
    };
  });
  const c = w.client.connect({ addr: RELAY, port: 443 }, { userTimeout: 20_000 });
  c.onOpen = () => c.write(bytes(1));
  let err: string | undefined;
  c.onError = (e) => {
    err = e.code;
  };
  w.net.run(1000);
  assert.equal(serverGot, 1);
  w.net.run(61_000);
  assert.equal(w.nat.counts.expired, 1);
  c.write(bytes(2));
  w.net.run(30_000);
  assert.equal(serverGot, 1);
  assert.equal(err, 'ETIMEDOUT');
  assert.ok((w.nat.stats.out.drops['nat-no-mapping'] ?? 0) > 0);
});
