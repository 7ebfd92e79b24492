import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { ENCAPSULATION_NAMES, Encapsulation } from '@roamlink/core';
import {
  encodeRequest,
  firewallPresets,
  fromLatin1,
  HttpParser,
  type HttpResponseHead,
  Link,
} from '@roamlink/netsim';
import {
  encodeFrame,
  encodeRecord,
  PathError,
  RELAY_PORTS,
  TCP_PREFACE,
  WsOpcode,
} from '../src/index.ts';
import { numbered, open, RELAY, type World, world } from './helpers.ts';

describe('a firewall that drops all UDP', () => {
  test('only the UDP path goes silent; the other four carry datagrams both ways', () => {
    const w = world({
      chain: [new Link({ delay: 10 }), firewallPresets.dropUdp()],
      echo: true,
    });
    const kinds = [
      Encapsulation.UDP,
      Encapsulation.TCP,
      Encapsulation.WEBSOCKET,
      Encapsulation.HTTP_STREAM,
      Encapsulation.HTTP_POLL,
    ];
    const paths = kinds.map((k) => open(w, k));
    for (const [i, p] of paths.entries())
      for (let j = 0; j < 3; j++) p.path.send(numbered(i * 10 + j));
    w.net.run(5000);
    const [udp, ...others] = paths;
    assert.deepEqual(udp!.errors, [], 'silent: a dropped datagram tells nothing');
    assert.equal(udp!.got.length, 0);
    assert.equal(udp!.openedAt, 0, 'UDP is "open" at once: only registration can tell');
    assert.ok(!w.atRelay.some((a) => a.info.encapsulation === Encapsulation.UDP));
    for (const p of others) {
      const name = ENCAPSULATION_NAMES[p.path.info.encapsulation];
      assert.deepEqual(p.errors, [], name);
      assert.equal(p.got.length, 3, name);
      assert.equal(
        w.atRelay.filter((a) => a.info.encapsulation === p.path.info.encapsulation).length,
        3,
        name,
      );
    }
  });

  test('a rejecting firewall (ICMP) fails the UDP path at once', () => {
    const w = world({
      chain: [new Link({ delay: 10 }), firewallPresets.dropUdp({ action: 'icmp' })],
    });
    const c = open(w, Encapsulation.UDP);
    c.path.send(numbered(1));
    w.net.run(100);
    assert.equal(c.errors.length, 1);
    assert.equal(c.errors[0]!.split(':')[0], PathError.UNREACHABLE);
  });
});

/** A raw TCP connection to the relay, recording what comes back. */
function raw(w: World, port: number) {
  const conn = w.client.connect({ addr: RELAY, port });
  const r = {
    conn,
    data: [] as Uint8Array[],
    ended: false,
    error: undefined as string | undefined,
  };
  conn.onData = (d) => r.data.push(d);
  conn.onEnd = () => {
    r.ended = true;
  };
  conn.onError = (e) => {
    r.error = e.code;
  };
  return r;
}

function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

test('a relay port nobody listens on refuses: the path fails at once', () => {
  const w = world({ relay: { tcpPort: null } });
  const c = open(w, Encapsulation.TCP);
  c.path.send(numbered(1));
  w.net.run(100);
  assert.equal(c.errors.length, 1);
  assert.equal(c.errors[0]!.split(':')[0], PathError.REFUSED);
  assert.equal(c.openedAt, undefined);
});

describe('the TCP relay', () => {
  test('rejects a connection with a wrong preface, delivering nothing', () => {
    const w = world();
    const closed: string[] = [];
    w.relay.onPathClose = (id) => closed.push(id);
    const r = raw(w, RELAY_PORTS.tcp);
    r.conn.write(concat([fromLatin1('IKETCP'), encodeRecord(numbered(1))]));
    w.net.run(500);
    assert.ok(r.ended, 'the relay closed the connection');
    assert.equal(r.data.length, 0);
    assert.equal(w.atRelay.length, 0);
    assert.equal(w.relay.stats.tcpRejected, 1);
    assert.deepEqual(closed, [], 'never a path');
  });

  test('takes the preface and records split at any byte; a bad length closes the path', () => {
    const w = world();
    const closed: string[] = [];
    w.relay.onPathClose = (id, reason) => closed.push(`${id} ${reason.split(':')[0]}`);
    const r = raw(w, RELAY_PORTS.tcp);
    const wire = concat([TCP_PREFACE, encodeRecord(numbered(1)), new Uint8Array([0, 2])]);
    wire.forEach((b, i) => {
      w.net.at(i * 3, () => r.conn.write(new Uint8Array([b])));
    });
    w.net.run(1000);
    assert.equal(w.atRelay.length, 1, 'one datagram; the empty record is a heartbeat');
    assert.deepEqual(w.atRelay[0]!.data, numbered(1));
    r.conn.write(new Uint8Array([0, 1]));
    w.net.run(1000);
    assert.ok(r.ended);
    assert.deepEqual(closed, [`${w.atRelay[0]!.pathId} ${PathError.PROTOCOL}`]);
    assert.equal(w.relay.stats.tcpRejected, 1);
  });
});

test('closing the relay fails every connection-oriented client path with "closed"', () => {
  const w = world({ echo: true });
  const kinds = [
    Encapsulation.TCP,
    Encapsulation.WEBSOCKET,
    Encapsulation.HTTP_STREAM,
    Encapsulation.HTTP_POLL,
  ];
  const paths = kinds.map((k) => open(w, k));
  for (const p of paths) p.path.send(numbered(1));
  w.net.run(500);
  assert.equal(w.atRelay.length, 4);
  w.relay.close();
  w.net.run(500);
  for (const p of paths) {
    assert.equal(p.errors.length, 1, ENCAPSULATION_NAMES[p.path.info.encapsulation]);
    assert.equal(p.errors[0]!.split(':')[0], PathError.CLOSED, p.errors[0]);
  }
  assert.match(paths[1]!.errors[0]!, /1001/, 'WebSocket: going away');
});

/** Sends one HTTP request on a raw connection and parses the answer. */
function httpRequest(w: World, wire: Uint8Array, method = 'GET') {
  const r = raw(w, RELAY_PORTS.http);
  const p = new HttpParser('response');
  const out = { r, head: undefined as HttpResponseHead | undefined, rawAfter: [] as Uint8Array[] };
  p.expect(method);
  p.onHead = (h) => {
    out.head = h;
  };
  p.onTunnel = () => out.rawAfter.push(p.takeRaw());
  r.conn.onData = (d) => {
    if (p.tunnelled) out.rawAfter.push(d);
    else p.push(d);
  };
  r.conn.write(wire);
  return out;
}

const get = (target: string, headers: [string, string][] = []) =>
  encodeRequest({
    method: 'GET',
    target,
    version: 'HTTP/1.1',
    headers: [['Host', RELAY], ...headers],
  });

describe('the HTTP relay', () => {
  test('refuses what is not its protocol', () => {
    const w = world();
    const cases: [Uint8Array, string, number][] = [
      [get('/nothing'), 'GET', 404],
      [get('/rl/nothing'), 'GET', 404],
      [get('/rl/up?s=0123456789abcdef0123456789abcdef&m=stream'), 'GET', 405],
      [get('/rl/down?s=short'), 'GET', 400],
      [get('/rl/poll'), 'GET', 400],
      [get('/rl/ws'), 'GET', 426],
      [
        get('/rl/ws', [
          ['Upgrade', 'websocket'],
          ['Connection', 'Upgrade'],
          ['Sec-WebSocket-Version', '13'],
          ['Sec-WebSocket-Key', 'not-a-key'],
        ]),
        'GET',
        400,
      ],
      [
        encodeRequest(
          {
            method: 'POST',
            target: '/rl/up?s=0123456789abcdef0123456789abcdef&m=poll',
            version: 'HTTP/1.1',
            headers: [['Host', RELAY]],
          },
          new Uint8Array([0, 9, 1]),
        ),
        'POST',
        400,
      ],
    ];
    const reqs = cases.map(([wire, method]) => httpRequest(w, wire, method));
    w.net.run(500);
    assert.deepEqual(
      reqs.map((q) => q.head?.status),
      cases.map(([, , s]) => s),
    );
    assert.equal(w.relay.stats.httpRejected, cases.length);
    assert.equal(w.atRelay.length, 0);
  });

  test('a newer poll answers the older one with 204; data goes to the newer', () => {
    const w = world();
    const token = 'fedcba9876543210fedcba9876543210';
    const a = httpRequest(w, get(`/rl/poll?s=${token}`));
    w.net.run(100);
    const b = httpRequest(w, get(`/rl/poll?s=${token}`));
    w.net.run(100);
    assert.equal(a.head?.status, 204);
    assert.equal(b.head?.status, undefined, 'held');
    assert.ok(w.relay.send(`hp:${token}`, numbered(3)));
    w.net.run(100);
    assert.equal(b.head?.status, 200);
    assert.equal(b.head?.headers.find(([k]) => k === 'Content-Length')?.[1], '34');
  });

  test('requests outside the base path go to the fallback handler', () => {
    const w = world({
      relay: {
        fallback: (_req, res) => {
          res.writeHead(200, [['Content-Length', '2']]);
          res.end(fromLatin1('ok'));
        },
      },
    });
    const a = httpRequest(w, get('/healthz'));
    const b = httpRequest(w, get('/rl/healthz'));
    w.net.run(100);
    assert.equal(a.head?.status, 200);
    assert.equal(b.head?.status, 404, 'the base path stays the relay’s');
  });

  test('one token cannot be both a stream and a poll session', () => {
    const w = world();
    const token = '0123456789abcdef0123456789abcdef';
    const a = httpRequest(w, get(`/rl/down?s=${token}`));
    w.net.run(100);
    const b = httpRequest(w, get(`/rl/poll?s=${token}`));
    w.net.run(100);
    assert.equal(a.head?.status, 200);
    assert.equal(b.head?.status, 409);
  });

  test('WebSocket: an unmasked client frame is a protocol error (1002), text is refused (1003)', () => {
    const w = world();
    const closed: string[] = [];
    w.relay.onPathClose = (id, reason) => closed.push(`${id} ${reason}`);
    const upgrade = get('/rl/ws', [
      ['Upgrade', 'websocket'],
      ['Connection', 'Upgrade'],
      ['Sec-WebSocket-Version', '13'],
      ['Sec-WebSocket-Key', 'dGhlIHNhbXBsZSBub25jZQ=='],
    ]);
    const a = httpRequest(w, upgrade);
    const b = httpRequest(w, upgrade);
    w.net.run(200);
    assert.equal(a.head?.status, 101);
    assert.equal(
      a.head?.headers.find(([k]) => k === 'Sec-WebSocket-Accept')?.[1],
      's3pPLMBiTxaQ9kYGzzhZRbK+xOo=',
      'RFC 6455 §1.3 example',
    );
    a.r.conn.write(encodeFrame(WsOpcode.BINARY, numbered(1)));
    b.r.conn.write(encodeFrame(WsOpcode.TEXT, fromLatin1('hi'), new Uint8Array([1, 2, 3, 4])));
    w.net.run(200);
    const closeCode = (q: typeof a) => {
      const bytes = concat(q.rawAfter);
      assert.equal(bytes[0], 0x80 | WsOpcode.CLOSE);
      assert.equal(bytes[1], 2, 'unmasked, two bytes of status');
      return (bytes[2]! << 8) | bytes[3]!;
    };
    assert.equal(closeCode(a), 1002);
    assert.equal(closeCode(b), 1003);
    assert.ok(a.r.ended && b.r.ended);
    assert.equal(w.atRelay.length, 0);
    assert.equal(w.relay.stats.wsProtocolErrors, 2);
    assert.equal(closed.length, 2);
  });

  test('WebSocket: pings are answered, a close frame is echoed and the path reported closed', () => {
    const w = world();
    const closed: string[] = [];
    w.relay.onPathClose = (id, reason) => closed.push(`${id} ${reason}`);
    const a = httpRequest(
      w,
      get('/rl/ws', [
        ['Upgrade', 'websocket'],
        ['Connection', 'Upgrade'],
        ['Sec-WebSocket-Version', '13'],
        ['Sec-WebSocket-Key', 'dGhlIHNhbXBsZSBub25jZQ=='],
      ]),
    );
    w.net.run(200);
    const mask = new Uint8Array([9, 8, 7, 6]);
    a.r.conn.write(encodeFrame(WsOpcode.PING, fromLatin1('p'), mask));
    a.r.conn.write(encodeFrame(WsOpcode.BINARY, numbered(5), mask));
    a.r.conn.write(encodeFrame(WsOpcode.CLOSE, new Uint8Array([0x03, 0xe8]), mask));
    w.net.run(200);
    const bytes = concat(a.rawAfter);
    assert.deepEqual([...bytes.subarray(0, 3)], [0x8a, 1, 0x70], 'pong "p"');
    assert.deepEqual([...bytes.subarray(3)], [0x88, 2, 0x03, 0xe8], 'close 1000 echoed');
    assert.deepEqual(w.atRelay[0]!.data, numbered(5));
    assert.deepEqual(closed, [`${w.atRelay[0]!.pathId} ${PathError.CLOSED}: 1000`]);
  });

  test('an HTTP session with nothing attached expires', () => {
    const w = world({ relay: { sessionIdleMs: 5000 } });
    const closed: string[] = [];
    w.relay.onPathClose = (id) => closed.push(id);
    const c = open(w, Encapsulation.HTTP_POLL);
    c.path.send(numbered(1));
    w.net.run(1000);
    const id = w.atRelay[0]!.pathId;
    c.path.close();
    w.net.run(10_000);
    assert.deepEqual(closed, [id]);
    assert.equal(w.relay.send(id, numbered(2)), false);
  });
});

test('relay.send on unknown paths is false', () => {
  const w = world();
  for (const id of ['tcp:9', 'ws:9', 'hs:0123456789abcdef', 'hp:x', 'nope', 'udp:bad']) {
    assert.equal(w.relay.send(id, numbered(1)), false, id);
  }
});
