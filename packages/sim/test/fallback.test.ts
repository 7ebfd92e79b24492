/**
 * HTTP streaming's fallback to long polling on the wire (README.md, "Buffering proxies"): the
 * relay numbers what it queues for a streaming session (`Roamlink-Seq`), keeps copies of what it
 * wrote to the stream while the client says it has seen none of it (`Roamlink-Ack`), answers
 * such a client's POSTs with the copies it lacks, and on a poll with `Roamlink-Ack` ends the
 * stream and queues again what the client lacks. Raw requests, no client path in between.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { Encapsulation } from '@roamlink/core';
import {
  encodeRequest,
  type HttpHeaders,
  HttpParser,
  type HttpResponseHead,
  headerValue,
} from '@roamlink/netsim';
import { decodeRecords, encodeRecords, RELAY_PORTS } from '../src/index.ts';
import { numbered, RELAY, type World, world } from './helpers.ts';

const TOKEN = '00112233445566778899aabbccddeeff';
const ID = `hs:${TOKEN}`;

interface Exchange {
  head: HttpResponseHead | undefined;
  body: Uint8Array[];
  ended: boolean;
}

/** One request on its own connection; the answer as it arrives. */
function exchange(
  w: World,
  method: string,
  target: string,
  headers: HttpHeaders = [],
  body?: Uint8Array,
): Exchange {
  const conn = w.client.connect({ addr: RELAY, port: RELAY_PORTS.http });
  const p = new HttpParser('response');
  const out: Exchange = { head: undefined, body: [], ended: false };
  p.expect(method);
  p.onHead = (h) => {
    out.head = h;
  };
  p.onBody = (b) => out.body.push(b);
  p.onEnd = () => {
    out.ended = true;
  };
  conn.onData = (d) => p.push(d);
  const hs: HttpHeaders = [['Host', RELAY], ...headers];
  if (body !== undefined) hs.push(['Content-Type', 'application/octet-stream']);
  conn.write(encodeRequest({ method, target, version: 'HTTP/1.1', headers: hs }, body));
  return out;
}

const ack = (n: number | string): HttpHeaders => [['Roamlink-Ack', String(n)]];
const post = (w: World, headers: HttpHeaders, mode = 'stream', datagrams: Uint8Array[] = []) =>
  exchange(w, 'POST', `/rl/up?s=${TOKEN}&m=${mode}`, headers, encodeRecords(datagrams));

function seq(e: Exchange): string | undefined {
  return e.head === undefined ? undefined : headerValue(e.head.headers, 'roamlink-seq');
}

function records(e: Exchange): Uint8Array[] {
  const all = new Uint8Array(e.body.reduce((n, b) => n + b.length, 0));
  let o = 0;
  for (const b of e.body) {
    all.set(b, o);
    o += b.length;
  }
  const ds = decodeRecords(all);
  assert.ok(ds !== undefined, 'well-formed records');
  return ds.filter((d) => d.length > 0);
}

describe('HTTP streaming, falling back to polling', () => {
  test('a POST with Roamlink-Ack gets the copies the client lacks, numbered; without, 204 and no more copies', () => {
    const w = world();
    const down = exchange(w, 'GET', `/rl/down?s=${TOKEN}`);
    w.net.run(100);
    assert.equal(down.head?.status, 200);
    assert.equal(seq(down), '0', 'the stream’s first record will be number 0');
    const [a, b, c] = [numbered(1), numbered(2), numbered(3)];
    assert.ok(w.relay.send(ID, a) && w.relay.send(ID, b));
    w.net.run(100);
    assert.deepEqual(records(down), [a, b], 'written to the stream as well');

    const p0 = post(w, ack(0));
    const p1 = post(w, ack(1), 'stream', [numbered(9)]);
    w.net.run(100);
    assert.equal(p0.head?.status, 200);
    assert.equal(seq(p0), '0');
    assert.deepEqual(records(p0), [a, b]);
    assert.equal(p1.head?.status, 200);
    assert.equal(seq(p1), '1');
    assert.deepEqual(records(p1), [b]);
    assert.equal(w.atRelay.length, 1);
    assert.equal(w.atRelay[0]!.info.encapsulation, Encapsulation.HTTP_STREAM);

    // The client saw its stream: no field, no copies from now on.
    const p2 = post(w, []);
    w.net.run(100);
    assert.equal(p2.head?.status, 204);
    assert.ok(w.relay.send(ID, c));
    const p3 = post(w, ack(2));
    w.net.run(100);
    assert.equal(p3.head?.status, 204, 'nothing kept to answer with');
    assert.deepEqual(records(down), [a, b, c]);
  });

  test('a poll with Roamlink-Ack ends the stream, brings what the client lacks and keeps the token polled', () => {
    const w = world();
    const down = exchange(w, 'GET', `/rl/down?s=${TOKEN}`);
    w.net.run(100);
    const sent = [numbered(1), numbered(2), numbered(3)];
    for (const d of sent) assert.ok(w.relay.send(ID, d));
    w.net.run(100);

    const plain = exchange(w, 'GET', `/rl/poll?s=${TOKEN}`);
    w.net.run(100);
    assert.equal(plain.head?.status, 409, 'a stream is not polled without the field');
    assert.equal(down.ended, false);

    const poll = exchange(w, 'GET', `/rl/poll?s=${TOKEN}`, ack(1));
    w.net.run(100);
    assert.ok(down.ended, 'the stream response ended');
    assert.equal(poll.head?.status, 200);
    assert.equal(seq(poll), '1');
    assert.deepEqual(records(poll), sent.slice(1), 'the copies from number 1 on, once');

    const again = exchange(w, 'GET', `/rl/down?s=${TOKEN}`);
    const next = exchange(w, 'GET', `/rl/poll?s=${TOKEN}`);
    w.net.run(100);
    assert.equal(again.head?.status, 409, 'never back to streaming');
    assert.equal(next.head?.status, undefined, 'held until there is something');
    const d = numbered(4);
    assert.ok(w.relay.send(ID, d));
    w.net.run(100);
    assert.equal(seq(next), '3');
    assert.deepEqual(records(next), [d]);

    // Its POSTs now arrive as polling, on the same path id.
    const up = post(w, ack(4), 'poll', [numbered(7)]);
    w.net.run(100);
    assert.equal(up.head?.status, 204);
    assert.equal(w.atRelay[0]!.pathId, ID);
    assert.equal(w.atRelay[0]!.info.encapsulation, Encapsulation.HTTP_POLL);
  });

  test('a POST in polling mode with Roamlink-Ack is a fallback too, and carries what is queued', () => {
    const w = world();
    exchange(w, 'GET', `/rl/down?s=${TOKEN}`);
    w.net.run(100);
    const [a, b] = [numbered(1), numbered(2)];
    assert.ok(w.relay.send(ID, a) && w.relay.send(ID, b));
    w.net.run(100);
    const up = post(w, ack(0), 'poll', [numbered(5)]);
    w.net.run(100);
    assert.equal(up.head?.status, 200);
    assert.equal(seq(up), '0');
    assert.deepEqual(records(up), [a, b]);
    assert.equal(w.atRelay[0]!.info.encapsulation, Encapsulation.HTTP_POLL);
  });

  test('a bad Roamlink-Ack is refused (400) and changes nothing', () => {
    const w = world();
    const down = exchange(w, 'GET', `/rl/down?s=${TOKEN}`);
    w.net.run(100);
    assert.ok(w.relay.send(ID, numbered(1)));
    w.net.run(100);
    const bad = [
      post(w, ack('x'), 'stream', [numbered(8)]),
      post(w, ack(-1)),
      post(w, ack(2), 'stream', [numbered(8)]),
      exchange(w, 'GET', `/rl/poll?s=${TOKEN}`, ack(5)),
    ];
    w.net.run(100);
    assert.deepEqual(
      bad.map((e) => e.head?.status),
      [400, 400, 400, 400],
    );
    assert.equal(w.atRelay.length, 0, 'no datagram handed up');
    assert.equal(down.ended, false, 'still streaming');
    const ok = post(w, ack(0));
    w.net.run(100);
    assert.deepEqual(records(ok), [numbered(1)], 'the copy is still there');
  });

  test('copies are dropped once the stream has been open streamTrustMs', () => {
    const w = world({ relay: { streamTrustMs: 1000 } });
    exchange(w, 'GET', `/rl/down?s=${TOKEN}`);
    w.net.run(100);
    assert.ok(w.relay.send(ID, numbered(1)));
    w.net.run(500);
    const early = post(w, ack(0));
    w.net.run(1000);
    const late = post(w, ack(0));
    w.net.run(100);
    assert.equal(early.head?.status, 200);
    assert.equal(late.head?.status, 204);
  });
});
