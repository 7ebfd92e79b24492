import assert from 'node:assert/strict';
import { test } from 'node:test';
import { formatEvent, Link, type LinkOptions } from '../src/index.ts';
import { bytes, collectTrace, RELAY, world } from './helpers.ts';

/** Client -> relay over one link with `opts` (relay side has no delay). */
function oneLink(opts: LinkOptions, seed = 1) {
  const link = new Link(opts);
  const w = world({ chain: [link], serverDelay: 0, seed });
  const arrivals: { t: number; seq: number }[] = [];
  const srv = w.relay.bindUdp(4000);
  srv.onMessage = (d) => arrivals.push({ t: w.net.now, seq: d[0]! | (d[1]! << 8) });
  const sock = w.client.bindUdp(5000);
  const send = (i: number, size = 2) => {
    const b = new Uint8Array(Math.max(2, size));
    b[0] = i & 255;
    b[1] = i >> 8;
    return sock.send({ addr: RELAY, port: 4000 }, b);
  };
  return { ...w, link, arrivals, send, sock, srv };
}

test('delay: each packet arrives exactly one-way delay later', () => {
  const w = oneLink({ delay: 25 });
  w.net.at(100, () => w.send(1));
  w.net.run(1000);
  assert.deepEqual(w.arrivals, [{ t: 125, seq: 1 }]);
});

test('jitter keeps order by default; with reorder it may overtake', () => {
  const fifo = oneLink({ delay: 20, jitter: 30 });
  for (let i = 0; i < 200; i++) fifo.net.at(i, () => fifo.send(i));
  fifo.net.run(2000);
  assert.equal(fifo.arrivals.length, 200);
  assert.deepEqual(
    fifo.arrivals.map((a) => a.seq),
    [...Array(200).keys()],
  );
  assert.ok(
    fifo.arrivals.some((a, i) => a.t - i > 21),
    'jitter adds delay',
  );
  for (const a of fifo.arrivals) assert.ok(a.t - a.seq >= 20 && a.t - a.seq <= 20 + 30 + 1);

  const re = oneLink({ delay: 20, jitter: 30, reorder: true });
  for (let i = 0; i < 200; i++) re.net.at(i, () => re.send(i));
  re.net.run(2000);
  const order = re.arrivals.map((a) => a.seq);
  assert.equal(order.length, 200);
  assert.notDeepEqual(order, [...Array(200).keys()]);
  for (const a of re.arrivals) assert.ok(a.t - a.seq >= 20 && a.t - a.seq <= 50);
});

test('loss: about the configured fraction, per direction', () => {
  const w = oneLink({ loss: { out: 0.1, in: 0 } });
  for (let i = 0; i < 5000; i++) w.net.at(i, () => w.send(i));
  w.net.run(10_000);
  const lost = 5000 - w.arrivals.length;
  assert.ok(lost > 400 && lost < 600, `lost ${lost}`);
  assert.equal(w.link.stats.out.drops.loss, lost);
  assert.equal(w.link.stats.out.packets, 5000);
});

test('MTU: drop silently, send ICMP "fragmentation needed", or count', () => {
  const drop = oneLink({ mtu: 576 });
  drop.send(1, 600); // 628 bytes at the IP layer
  drop.send(2, 500);
  drop.net.run(100);
  assert.deepEqual(
    drop.arrivals.map((a) => a.seq),
    [2],
  );
  assert.equal(drop.link.stats.out.drops.mtu, 1);

  const icmp = oneLink({ mtu: 576, mtuPolicy: 'icmp' });
  const errs: string[] = [];
  icmp.sock.onError = (e) => errs.push(e.code);
  icmp.send(1, 600);
  icmp.net.run(100);
  assert.deepEqual(errs, ['EMSGSIZE']);

  const count = oneLink({ mtu: 576, mtuPolicy: 'count' });
  count.send(1, 600);
  count.net.run(100);
  assert.equal(count.arrivals.length, 1);
  assert.equal(count.link.oversize, 1);
});

test('bandwidth: serialisation delay and a drop-tail queue', () => {
  // 1 Mbit/s: a 1250-byte IP packet takes 10 ms to serialise.
  const w = oneLink({ bandwidth: 1_000_000, delay: 5, queueBytes: 5000 });
  for (let i = 0; i < 10; i++) w.send(i, 1250 - 28);
  w.net.run(1000);
  // Four fit in the queue behind the one on the wire... the rest are tail-dropped.
  assert.deepEqual(
    w.arrivals.map((a) => a.t),
    [15, 25, 35, 45],
  );
  assert.equal(w.link.stats.out.drops.queue, 6);
});

test('up/down: a down link drops, and loses what was in flight', () => {
  const w = oneLink({ delay: 50 });
  w.send(1);
  w.net.run(10);
  w.link.setUp(false);
  w.send(2);
  w.net.run(100);
  w.link.setUp(true);
  w.send(3);
  w.net.run(100);
  assert.deepEqual(
    w.arrivals.map((a) => a.seq),
    [3],
  );
  assert.equal(w.link.stats.out.drops['link-down'], 2);
});

test('accounting: per element per direction, per flow, and the trace hook', () => {
  const w = oneLink({ delay: 5 });
  const trace = collectTrace(w.net);
  w.srv.onMessage = (d, from) => w.srv.send(from, d);
  for (let i = 0; i < 3; i++) w.send(i, 100);
  w.net.run(100);
  assert.equal(w.link.stats.out.packets, 3);
  assert.equal(w.link.stats.out.bytes, 3 * 128);
  assert.equal(w.link.stats.in.packets, 3);
  assert.equal(w.link.stats.in.bytes, 3 * 128);
  const key = `client udp 198.19.0.2:5000>${RELAY}:4000`;
  assert.deepEqual(w.net.flows.sent.get(key), { packets: 3, bytes: 384 });
  assert.deepEqual(w.net.flows.received.get(key), { packets: 3, bytes: 384 });
  assert.equal(w.sock.stats.sentBytes, 300);
  const kinds = trace.map((e) => e.kind);
  assert.equal(kinds.filter((k) => k === 'send').length, 6);
  assert.equal(kinds.filter((k) => k === 'deliver').length, 6);
  assert.match(
    formatEvent(trace[0]!),
    /^0\.000 send client\/wifi udp 198\.19\.0\.2:5000>198\.18\.0\.1:4000 len=100$/,
  );
});

test('speed: an hour of light traffic through a NAT runs in well under a second', async () => {
  const { Nat } = await import('../src/index.ts');
  const nat = new Nat({ externalAddr: '198.18.1.1', udpTimeout: 30_000 });
  const w = world({
    chain: [new Link({ delay: 10, jitter: 5, loss: 0.01 }), nat, new Link({ delay: 20 })],
  });
  const srv = w.relay.bindUdp(4000);
  let echoed = 0;
  srv.onMessage = (d, from) => srv.send(from, d);
  const sock = w.client.bindUdp();
  sock.onMessage = () => echoed++;
  for (let t = 0; t < 3_600_000; t += 200)
    w.net.at(t, () => sock.send({ addr: RELAY, port: 4000 }, bytes(1, 2, 3)));
  const t0 = performance.now();
  w.net.runUntil(3_600_000);
  const realMs = performance.now() - t0;
  assert.ok(echoed > 17_000);
  assert.ok(realMs < 1000, `took ${realMs} ms for 3600 simulated seconds`);
});
