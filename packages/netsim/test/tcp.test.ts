import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Link, Nat, type NetError, type TcpConnection } from '../src/index.ts';
import { bytes, concat, pattern, RELAY, world } from './helpers.ts';

const DST = { addr: RELAY, port: 443 };

test('handshake costs one round trip: first byte at 1.5 RTT, versus 0.5 RTT for UDP', () => {
  // One-way 20 ms (client link) + 30 ms (relay link): RTT 100 ms.
  const w = world({ clientDelay: 20, serverDelay: 30 });
  let serverFirstByte: number | undefined;
  w.relay.listen(443, (c) => {
    c.onData = () => {
      serverFirstByte ??= w.net.now;
    };
  });
  let udpFirst: number | undefined;
  const u = w.relay.bindUdp(4000);
  u.onMessage = () => {
    udpFirst ??= w.net.now;
  };
  w.net.runUntil(1000);
  const c = w.client.connect(DST);
  let opened: number | undefined;
  c.onOpen = () => {
    opened = w.net.now;
    c.write(bytes(1));
  };
  w.client.bindUdp().send({ addr: RELAY, port: 4000 }, bytes(1));
  w.net.run(1000);
  assert.equal(udpFirst, 1050);
  assert.equal(opened, 1100);
  assert.equal(serverFirstByte, 1150);
  assert.equal(c.srtt, 100, 'the SYN/SYN-ACK exchange gives the first RTT sample');
});

test('1 MB over a 5 %-loss link arrives exactly once and in order', () => {
  const w = world({
    chain: [new Link({ delay: 15, loss: 0.05 })],
    serverDelay: 15,
    seed: 'one-megabyte',
  });
  const data = pattern(1_000_000, 3);
  const parts: Uint8Array[] = [];
  let serverEnded = false;
  w.relay.listen(443, (c) => {
    c.onData = (d) => parts.push(d.slice());
    c.onEnd = () => {
      serverEnded = true;
      c.close();
    };
  });
  const c = w.client.connect(DST);
  c.onOpen = () => {
    // Written in uneven pieces so segments straddle write boundaries.
    for (let o = 0; o < data.length; o += 77_777) c.write(data.subarray(o, o + 77_777));
    c.close();
  };
  let closed = false;
  c.onClose = () => {
    closed = true;
  };
  w.net.run(300_000);
  const got = concat(parts);
  assert.equal(got.length, data.length);
  assert.ok(Buffer.from(got).equals(Buffer.from(data)), 'bytes identical, in order');
  assert.ok(serverEnded && closed);
  assert.ok(c.stats.retransmits > 10, `retransmits ${c.stats.retransmits}`);
  assert.ok(c.stats.bytesSent > data.length);
  assert.equal(c.stats.bytesAcked, data.length);
});

test('bidirectional transfer with jitter reordering and loss both ways', () => {
  const w = world({
    chain: [new Link({ delay: 20, jitter: 15, reorder: true, loss: 0.03 })],
    seed: 5,
  });
  const up = pattern(200_000, 1);
  const down = pattern(150_000, 2);
  const atServer: Uint8Array[] = [];
  const atClient: Uint8Array[] = [];
  w.relay.listen(443, (c) => {
    c.write(down);
    c.onData = (d) => atServer.push(d.slice());
  });
  const c = w.client.connect(DST);
  c.onOpen = () => c.write(up);
  c.onData = (d) => atClient.push(d.slice());
  w.net.run(120_000);
  assert.ok(Buffer.from(concat(atServer)).equals(Buffer.from(up)));
  assert.ok(Buffer.from(concat(atClient)).equals(Buffer.from(down)));
});

test('RTO follows RFC 6298: measured RTT, minimum, exponential backoff', () => {
  const link = new Link({ delay: 50 });
  const w = world({ chain: [link], serverDelay: 0 });
  w.relay.listen(443, () => {});
  const c = w.client.connect(DST, { minRto: 200, maxRto: 60_000, userTimeout: 1_000_000 });
  c.onOpen = () => c.write(bytes(1));
  w.net.run(1000);
  assert.equal(c.srtt, 100);
  // SRTT 100, RTTVAR ~ 50 -> RTO = 100 + 4 * 50 = 300 (then the data sample lowers RTTVAR).
  assert.ok(c.rto >= 200 && c.rto <= 300, `rto ${c.rto}`);
  link.setUp(false);
  const t0 = w.net.now;
  c.write(bytes(2));
  const rto0 = c.rto;
  w.net.run(10_000);
  // Retransmissions at t0 + rto, +2rto, +4rto, ...: after 10 s, several timeouts, doubling.
  assert.ok(c.stats.timeouts >= 4);
  assert.equal(c.rto, Math.min(rto0 * 2 ** c.stats.timeouts, 60_000));
  assert.ok(w.net.now - t0 >= 10_000);
});

test('a connection whose path is gone for userTimeout fails with ETIMEDOUT', () => {
  const link = new Link({ delay: 10 });
  const w = world({ chain: [link] });
  w.relay.listen(443, () => {});
  const c = w.client.connect(DST, { userTimeout: 5000 });
  let err: NetError | undefined;
  let at = 0;
  c.onError = (e) => {
    err = e;
    at = w.net.now;
  };
  c.onOpen = () => {
    link.setUp(false);
    c.write(bytes(1));
  };
  w.net.run(20_000);
  assert.equal(err?.code, 'ETIMEDOUT');
  assert.equal(at, 40 + 5000, 'exactly userTimeout after the unacknowledged write');
  assert.equal(c.state, 'CLOSED');
});

test('connect to a port nobody listens on: RST, ECONNREFUSED after one RTT', () => {
  const w = world({ clientDelay: 10, serverDelay: 10 });
  const c = w.client.connect({ addr: RELAY, port: 9 });
  let err: NetError | undefined;
  let at = 0;
  c.onError = (e) => {
    err = e;
    at = w.net.now;
  };
  w.net.run(1000);
  assert.equal(err?.code, 'ECONNREFUSED');
  assert.equal(at, 40);
});

test('SYNs into a black hole: retried with backoff, ETIMEDOUT at connectTimeout', () => {
  const link = new Link({ delay: 10, up: false });
  const w = world({ chain: [link] });
  w.relay.listen(443, () => {});
  const c = w.client.connect(DST, { connectTimeout: 20_000 });
  let at = 0;
  let code = '';
  c.onError = (e) => {
    at = w.net.now;
    code = e.code;
  };
  w.net.run(60_000);
  assert.equal(code, 'ETIMEDOUT');
  assert.equal(at, 20_000);
  // SYN at 0, then 1, 3, 7, 15 s: five SYNs.
  assert.equal(c.stats.segmentsSent, 5);
});

test('graceful close: FIN both ways, onEnd then onClose on each side, TIME_WAIT', () => {
  const w = world();
  const events: string[] = [];
  let server: TcpConnection | undefined;
  w.relay.listen(443, (s) => {
    server = s;
    s.onData = (d) => s.write(d);
    s.onEnd = () => {
      events.push('server end');
      s.close();
    };
    s.onClose = () => events.push('server close');
  });
  const c = w.client.connect(DST);
  c.onOpen = () => {
    c.write(bytes(7));
    c.close();
  };
  c.onData = (d) => events.push(`client data ${d[0]}`);
  c.onEnd = () => events.push('client end');
  c.onClose = () => events.push('client close');
  w.net.run(1000);
  assert.deepEqual(events, [
    'server end',
    'client data 7',
    'client end',
    'client close',
    'server close',
  ]);
  assert.equal(c.state, 'TIME_WAIT');
  assert.equal(server!.state, 'CLOSED');
  w.net.run(61_000);
  assert.equal(c.state, 'CLOSED');
  assert.equal(w.client.connections.length, 0);
});

test('abort sends RST: the peer gets ECONNRESET', () => {
  const w = world();
  let err = '';
  w.relay.listen(443, (s) => {
    s.onError = (e) => {
      err = e.code;
    };
  });
  const c = w.client.connect(DST);
  c.onOpen = () => c.write(bytes(1));
  w.net.run(200);
  c.abort();
  w.net.run(200);
  assert.equal(err, 'ECONNRESET');
});

test('MSS comes from the MTU; ICMP "fragmentation needed" lowers it (PMTUD) where a silent drop stalls', () => {
  const run = (policy: 'icmp' | 'drop') => {
    const w = world({ chain: [new Link({ delay: 10, mtu: 1280, mtuPolicy: policy })] });
    let got = 0;
    w.relay.listen(443, (s) => {
      s.onData = (d) => {
        got += d.length;
      };
    });
    const c = w.client.connect(DST, { userTimeout: 10_000 });
    let err = '';
    c.onError = (e) => {
      err = e.code;
    };
    c.onOpen = () => c.write(pattern(20_000));
    w.net.run(30_000);
    return { got, c, err };
  };
  const ok = run('icmp');
  assert.equal(ok.got, 20_000);
  assert.equal(ok.c.mss, 1280 - 40);
  const blackhole = run('drop');
  assert.equal(blackhole.got, 0);
  assert.equal(blackhole.c.mss, 1460);
  assert.equal(blackhole.err, 'ETIMEDOUT');
});

test('TCP through a NAT with address-and-port-dependent filtering, many connections', () => {
  const nat = new Nat({ externalAddr: '198.18.1.1', filtering: 'address-and-port-dependent' });
  const w = world({ chain: [new Link({ delay: 5 }), nat, new Link({ delay: 15 })] });
  const peers = new Set<string>();
  w.relay.listen(443, (s) => {
    peers.add(`${s.remote.addr}:${s.remote.port}`);
    s.onData = (d) => s.write(d);
  });
  let echoed = 0;
  for (let i = 0; i < 20; i++) {
    const c = w.client.connect(DST);
    c.onOpen = () => c.write(pattern(5000, i));
    c.onData = (d) => {
      echoed += d.length;
    };
  }
  w.net.run(5000);
  assert.equal(echoed, 100_000);
  assert.equal(peers.size, 20);
  for (const p of peers) assert.ok(p.startsWith('198.18.1.1:'));
  assert.equal(nat.counts.created, 20);
});
