import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ENCAPSULATION_NAMES, Encapsulation } from '@roamlink/core';
import { type Element, Link, Prng } from '@roamlink/netsim';
import { open, type World, world } from './helpers.ts';

const N = 1000;

function datagrams(seed: string): Uint8Array[] {
  const rng = new Prng(seed);
  return Array.from({ length: N }, (_, i) => {
    const d = new Uint8Array(rng.int(1, 1400));
    for (let k = 0; k < d.length; k++) d[k] = rng.nextU32() & 255;
    // Never a lone 0xFF: that is a NAT keepalive on UDP, not a datagram.
    if (d.length === 1 && d[0] === 0xff) d[0] = 0;
    d[0] = i & 255;
    return d;
  });
}

/**
 * Sends `list` as fast as `send` takes it: what it refuses (back-pressure) is retried a
 * millisecond later, as a producer would.
 */
function pump(w: World, list: Uint8Array[], send: (d: Uint8Array) => boolean): void {
  let i = 0;
  const tick = () => {
    while (i < list.length && send(list[i]!)) i++;
    if (i < list.length) w.net.after(1, tick);
  };
  tick();
}

const cases: [Encapsulation, string, () => Element[]][] = [
  [Encapsulation.UDP, 'a clean link', () => [new Link({ delay: 10 })]],
  ...[
    Encapsulation.TCP,
    Encapsulation.WEBSOCKET,
    Encapsulation.HTTP_STREAM,
    Encapsulation.HTTP_POLL,
  ].map((k): [Encapsulation, string, () => Element[]] => [
    k,
    'a link with 2 % loss and jitter',
    () => [new Link({ delay: 10, jitter: 4, loss: 0.02 })],
  ]),
];

for (const [kind, what, chain] of cases) {
  test(`${ENCAPSULATION_NAMES[kind]}: ${N} datagrams of 1..1400 bytes each way over ${what}, exactly once, in order`, () => {
    const w = world({ chain: chain(), seed: 11 });
    const up = datagrams(`up/${kind}`);
    const down = datagrams(`down/${kind}`);
    const c = open(w, kind);
    w.relay.onDatagram = (data, pathId) => {
      if (w.atRelay.length === 0) pump(w, down, (d) => w.relay.send(pathId, d));
      w.atRelay.push({ data, pathId, info: c.path.info, t: w.net.now });
    };
    pump(w, up, (d) => c.path.send(d));
    w.net.run(60_000);
    assert.deepEqual(c.errors, []);
    assert.equal(w.atRelay.length, N);
    assert.ok(
      w.atRelay.every(
        (a, i) => a.data.length === up[i]!.length && a.data.every((b, k) => b === up[i]![k]),
      ),
      'up: every datagram once, in order, intact',
    );
    assert.equal(c.got.length, N);
    assert.ok(
      c.got.every(
        (g, i) => g.data.length === down[i]!.length && g.data.every((b, k) => b === down[i]![k]),
      ),
      'down: every datagram once, in order, intact',
    );
    assert.equal(new Set(w.atRelay.map((a) => a.pathId)).size, 1);
  });
}
