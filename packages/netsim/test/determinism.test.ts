import assert from 'node:assert/strict';
import { test } from 'node:test';
import { formatEvent, Link, Nat } from '../src/index.ts';
import { collectTrace, pattern, RELAY, world } from './helpers.ts';

/** A busy little scenario: jitter, loss, a NAT, UDP both ways and a TCP transfer. */
function run(seed: number | string): string[] {
  const nat = new Nat({ externalAddr: '198.18.1.1' });
  const w = world({
    seed,
    chain: [
      new Link({ delay: 10, jitter: 8, loss: 0.05 }),
      nat,
      new Link({ delay: 15, jitter: 3 }),
    ],
  });
  const trace = collectTrace(w.net);
  const srv = w.relay.bindUdp(4000);
  srv.onMessage = (d, from) => srv.send(from, d);
  const sock = w.client.bindUdp();
  for (let i = 0; i < 50; i++)
    w.net.at(i * 20, () => sock.send({ addr: RELAY, port: 4000 }, pattern(100, i)));
  w.relay.listen(443, (c) => {
    c.onData = (d) => c.write(d);
  });
  const c = w.client.connect({ addr: RELAY, port: 443 });
  c.onOpen = () => c.write(pattern(50_000));
  w.net.run(20_000);
  return trace.map(formatEvent);
}

test('same seed: identical trace, event for event', () => {
  const a = run(42);
  const b = run(42);
  assert.ok(a.length > 400, `only ${a.length} events`);
  assert.deepEqual(a, b);
});

test('different seed: different jitter, loss and ports', () => {
  const a = run(42);
  const b = run(43);
  assert.notDeepEqual(a, b);
  // The very first delivery already differs: its arrival time carries the seed's jitter.
  const firstDeliver = (t: string[]) => t.find((l) => l.includes(' deliver relay/'));
  assert.notEqual(firstDeliver(a), firstDeliver(b));
});
