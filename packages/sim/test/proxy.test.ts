import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { ENCAPSULATION_NAMES, Encapsulation } from '@roamlink/core';
import { firewallPresets, Link, Nat } from '@roamlink/netsim';
import { type HttpStreamClientPath, PathError } from '../src/index.ts';
import {
  header,
  NAT_PUB,
  numbered,
  open,
  PROXY,
  proxyOpts,
  RELAY,
  type World,
  world,
} from './helpers.ts';

/** A client that can reach nothing but the proxy, behind a NAT. */
function proxied(o: Parameters<typeof world>[0] = {}): World {
  const chain = [
    new Link({ delay: 5 }),
    firewallPresets.onlyTo([{ addr: PROXY, port: 3128 }]),
    new Nat({ externalAddr: NAT_PUB }),
    new Link({ delay: 5 }),
  ];
  return world({ chain, proxy: {}, echo: true, ...o });
}

const HTTPISH = [
  Encapsulation.WEBSOCKET,
  Encapsulation.HTTP_STREAM,
  Encapsulation.HTTP_POLL,
] as const;

function roundTrip(w: World, c: ReturnType<typeof open>, n = 5): void {
  const sent = Array.from({ length: n }, (_, i) => numbered(i, 100 + i));
  for (const d of sent) assert.ok(c.path.send(d));
  w.net.run(3000);
  assert.deepEqual(c.errors, []);
  assert.deepEqual(
    w.atRelay.map((a) => a.data),
    sent,
  );
  assert.deepEqual(
    c.got.map((g) => g.data),
    sent,
  );
}

describe('through an HTTP proxy', () => {
  for (const kind of HTTPISH) {
    test(`${ENCAPSULATION_NAMES[kind]}: works, and the relay sees the proxy (Via, X-Forwarded-For)`, () => {
      const w = proxied();
      const c = open(w, kind, proxyOpts());
      roundTrip(w, c);
      const seen = w.atRelay[0]!.info.view;
      const mine = c.path.info.view;
      assert.equal(mine.dstAddr, PROXY, 'the client’s socket goes to the proxy');
      assert.equal(seen.srcAddr, PROXY, 'the relay’s peer is the proxy');
      assert.equal(header(w.atRelay[0]!.info, 'via'), '1.1 px');
      assert.equal(header(w.atRelay[0]!.info, 'x-forwarded-for'), NAT_PUB);
      assert.equal(
        mine.headers?.find(([k]) => k === 'via'),
        undefined,
      );
      assert.equal(seen.host, mine.host);
    });
  }

  test('proxy credentials are sent to the proxy but kept out of the client’s view', () => {
    const w = proxied();
    const c = open(w, Encapsulation.HTTP_POLL, {
      proxy: { addr: PROXY, port: 3128, headers: [['Proxy-Authorization', 'Basic dTpw']] },
    });
    roundTrip(w, c, 1);
    assert.equal(header(c.path.info, 'proxy-authorization'), undefined);
    assert.equal(header(w.atRelay[0]!.info, 'proxy-authorization'), undefined, 'hop-by-hop');
  });

  for (const policy of ['refuse-403', 'refuse-501'] as const) {
    test(`a proxy that refuses Upgrade (${policy}) fails WebSocket clearly; HTTP streaming works`, () => {
      const w = proxied({ proxy: { websocket: policy } });
      const ws = open(w, Encapsulation.WEBSOCKET, proxyOpts());
      ws.path.send(numbered(0));
      w.net.run(1000);
      assert.equal(ws.errors.length, 1);
      const reason = ws.errors[0]!;
      assert.equal(reason.split(':')[0], PathError.UPGRADE_REFUSED);
      assert.match(reason, policy === 'refuse-403' ? /403 Forbidden/ : /501 Not Implemented/);
      assert.match(reason, /via 1\.1 px/);
      assert.equal(ws.openedAt, undefined);
      assert.equal(ws.path.send(numbered(1)), false);
      assert.equal(w.atRelay.length, 0);

      const hs = open(w, Encapsulation.HTTP_STREAM, proxyOpts());
      roundTrip(w, hs);
    });
  }

  test('a proxy that strips Upgrade: the relay answers 426, the path fails as stripped', () => {
    const w = proxied({ proxy: { websocket: 'strip' } });
    const ws = open(w, Encapsulation.WEBSOCKET, proxyOpts());
    w.net.run(1000);
    assert.equal(ws.errors.length, 1);
    assert.equal(ws.errors[0]!.split(':')[0], PathError.UPGRADE_STRIPPED);
    assert.match(ws.errors[0]!, /426/);
    assert.equal(w.relay.stats.httpRejected, 1);
  });

  test('WebSocket through CONNECT passes a proxy that refuses Upgrade (the proxy sees only bytes)', () => {
    const w = proxied({ proxy: { websocket: 'refuse-403' } });
    const c = open(w, Encapsulation.WEBSOCKET, proxyOpts('connect'));
    roundTrip(w, c);
    const seen = w.atRelay[0]!.info;
    assert.equal(seen.view.srcAddr, PROXY);
    assert.equal(header(seen, 'via'), undefined, 'a tunnel adds no header');
    assert.equal(w.proxy!.counts.connects, 1);
  });

  test('a proxy that refuses CONNECT fails the path with proxy-refused', () => {
    const w = proxied({ proxy: { allowConnect: false } });
    const c = open(w, Encapsulation.HTTP_STREAM, proxyOpts('connect'));
    c.path.send(numbered(0));
    w.net.run(1000);
    assert.ok(c.errors.length === 1 && c.errors[0]!.startsWith(`${PathError.PROXY_REFUSED}:`));
    assert.match(c.errors[0]!, /403/);
  });
});

describe('a proxy that buffers responses', () => {
  // client→proxy RTT 30 ms, proxy→relay RTT 30 ms. Both of the streaming path's requests leave
  // when their connections are up (30 ms); the POST is answered 30 + 30 (the proxy's own
  // handshake) + 30 = 90 ms later, at 120.
  test('HTTP streaming: the POST’s answer brings the reply at once; at 30 + 1.5 × 90 the path polls the same token, and nothing is lost or doubled', () => {
    const w = proxied({ proxy: { bufferResponses: true } });
    const hs = open(w, Encapsulation.HTTP_STREAM, proxyOpts());
    const path = hs.path as HttpStreamClientPath;
    const id = `hs:${path.token}`;
    let changes = 0;
    path.onInfoChange = () => changes++;
    const sent = [numbered(0)];
    path.send(sent[0]!);
    // Sent by the relay while the client has nothing in flight: it goes into the buffered stream.
    const unasked = numbered(500, 60);
    w.net.at(140, () => assert.ok(w.relay.send(id, unasked)));
    w.net.at(400, () => {
      for (let i = 1; i <= 20; i++) {
        sent.push(numbered(i, 100 + i));
        path.send(sent.at(-1)!);
      }
    });
    w.net.run(3000);

    assert.deepEqual(hs.errors, []);
    assert.equal(hs.openedAt, 120, 'open with the first POST’s answer');
    assert.equal(hs.got[0]!.t, 120, 'the echo rode the POST’s answer');
    assert.equal(path.fellBackAt, 165);
    assert.equal(changes, 1);
    assert.equal(path.info.encapsulation, Encapsulation.HTTP_POLL);
    assert.match(path.info.view.url!, /&m=poll$/);
    // The relay put what it had written to the stream back in the queue: the first poll (a new
    // connection at 165: +30, the proxy's handshake to the relay +30, then +60) brings it.
    assert.equal(hs.got[1]!.t, 285);
    assert.deepEqual(
      hs.got.map((g) => g.data),
      [sent[0]!, unasked, ...sent.slice(1)],
      'every datagram once, in order',
    );
    assert.deepEqual(
      w.atRelay.map((a) => a.data),
      sent,
    );
    assert.ok(
      w.atRelay.every((a) => a.pathId === id),
      'one path, one token',
    );
    assert.equal(w.atRelay[0]!.info.encapsulation, Encapsulation.HTTP_STREAM);
    assert.equal(w.atRelay.at(-1)!.info.encapsulation, Encapsulation.HTTP_POLL);
  });

  test('without any POST answered, the bound (maxMs) decides', () => {
    const w = proxied({ proxy: { bufferResponses: true } });
    const hs = open(w, Encapsulation.HTTP_STREAM, { ...proxyOpts(), bufferDetect: { maxMs: 700 } });
    w.net.run(5000);
    assert.deepEqual(hs.errors, []);
    const path = hs.path as HttpStreamClientPath;
    assert.equal(path.fellBackAt, 30 + 700, 'the bound runs from when the GET left');
    assert.equal(path.info.encapsulation, Encapsulation.HTTP_POLL);
  });

  test('a streaming proxy is not mistaken for a buffering one; copies stop once the stream shows', () => {
    const w = proxied();
    const hs = open(w, Encapsulation.HTTP_STREAM, proxyOpts());
    const path = hs.path as HttpStreamClientPath;
    path.send(numbered(0));
    w.net.run(60_000);
    assert.deepEqual(hs.errors, []);
    assert.equal(hs.got.length, 1, 'once, whether the POST’s answer or the stream brought it');
    const dropped = path.duplicatesDropped;
    assert.ok(dropped <= 1);
    assert.equal(path.fellBackAt, undefined);
    assert.equal(path.info.encapsulation, Encapsulation.HTTP_STREAM);
    const more = Array.from({ length: 5 }, (_, i) => numbered(i + 1));
    for (const d of more) path.send(d);
    w.net.run(1000);
    assert.deepEqual(
      hs.got.slice(1).map((g) => g.data),
      more,
    );
    assert.equal(path.duplicatesDropped, dropped, 'the stream alone carries them now');
  });
});

test('long polling: an idle poll is answered 204 after 25 s and asked again at once', () => {
  const w = world({ echo: true });
  const c = open(w, Encapsulation.HTTP_POLL);
  w.net.run(60_000);
  assert.deepEqual(c.errors, []);
  const polls = (c.path as unknown as { polls: number }).polls;
  assert.equal(polls, 2, 'two empty answers in 60 s');
  c.path.send(numbered(1));
  w.net.run(1000);
  assert.equal(c.got.length, 1);
  assert.equal(w.atRelay[0]!.info.view.dstAddr, RELAY);
});
