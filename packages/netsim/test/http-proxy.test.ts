import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  firewallPresets,
  type HttpHandler,
  HttpParser,
  HttpProxy,
  type HttpProxyOptions,
  type HttpRequestHead,
  type HttpResponseHead,
  headerValue,
  Link,
  Nat,
  serveHttp,
  type TcpConnection,
} from '../src/index.ts';
import { ascii, NAT_PUB, RELAY, text, world } from './helpers.ts';

const PROXY = '198.18.0.10';

interface Resp {
  head: HttpResponseHead;
  body: string;
  tHead: number;
  tBody?: number;
  tEnd?: number;
}

/**
 * Client (behind a NAT and a firewall that only lets it reach the proxy) -> proxy on the
 * internet -> origin at RELAY:80 (HTTP) and RELAY:443 (raw echo). Each hop 5-10 ms.
 */
function proxyWorld(opts: HttpProxyOptions, handler: HttpHandler) {
  const nat = new Nat({ externalAddr: NAT_PUB });
  const fw = firewallPresets.onlyTo([{ addr: PROXY, port: 3128 }]);
  const w = world({ chain: [new Link({ delay: 5 }), fw, nat, new Link({ delay: 5 })] });
  const proxyHost = w.net.addHost('proxy');
  proxyHost.addInterface('eth0', { addr: PROXY, chain: [new Link({ delay: 5 })] });
  const proxy = new HttpProxy(proxyHost, { name: 'px', ...opts });
  const originConns: TcpConnection[] = [];
  const seen: HttpRequestHead[] = [];
  serveHttp(w.relay, 80, (req, res) => {
    seen.push(req.head);
    if (!originConns.includes(req.conn)) originConns.push(req.conn);
    handler(req, res);
  });
  w.relay.listen(443, (c) => {
    c.onData = (d) => c.write(d);
  });
  w.net.setName('origin.example', RELAY);

  const conn = w.client.connect({ addr: PROXY, port: 3128 });
  const parser = new HttpParser('response');
  const responses: Resp[] = [];
  const raw: string[] = [];
  let cur: Resp | undefined;
  parser.onHead = (h) => {
    cur = { head: h, body: '', tHead: w.net.now };
    if (h.status < 200 && h.status !== 101) responses.push(cur);
  };
  parser.onBody = (b) => {
    cur!.tBody ??= w.net.now;
    cur!.body += text(b);
  };
  parser.onEnd = () => {
    cur!.tEnd = w.net.now;
    responses.push(cur!);
  };
  parser.onTunnel = () => {
    responses.push(cur!);
    const early = parser.takeRaw();
    if (early.length > 0) raw.push(text(early));
  };
  let closed = false;
  conn.onData = (d) => {
    if (parser.tunnelled) raw.push(text(d));
    else parser.push(d);
  };
  conn.onEnd = () => {
    parser.end();
    closed = true;
  };
  const send = (method: string, wire: string) => {
    parser.expect(method);
    conn.write(ascii(wire));
  };
  return { ...w, proxy, seen, originConns, conn, responses, raw, send, isClosed: () => closed };
}

const ok: HttpHandler = (_req, res) => {
  res.writeHead(200, [
    ['Content-Type', 'text/plain'],
    ['Connection', 'keep-alive'],
    ['Keep-Alive', 'timeout=5'],
  ]);
  res.end(ascii('hi'));
};

test('forwarding rewrites headers as a real proxy does', () => {
  const w = proxyWorld({}, ok);
  w.send(
    'GET',
    'GET http://origin.example/x?y=1 HTTP/1.1\r\n' +
      'Host: origin.example\r\n' +
      'Connection: keep-alive, X-Hop\r\n' +
      'X-Hop: secret\r\n' +
      'Keep-Alive: timeout=5\r\n' +
      'Proxy-Authorization: Basic Zm9vOmJhcg==\r\n' +
      'X-Forwarded-For: 198.18.5.5\r\n' +
      'Via: 1.1 first\r\n' +
      'X-End: kept\r\n\r\n',
  );
  w.net.run(1000);
  const h = w.seen[0]!;
  assert.equal(h.target, '/x?y=1', 'absolute-form becomes origin-form');
  const names = h.headers.map(([k]) => k.toLowerCase());
  for (const gone of ['connection', 'x-hop', 'keep-alive', 'proxy-authorization']) {
    assert.ok(!names.includes(gone), `${gone} dropped`);
  }
  assert.equal(headerValue(h.headers, 'host'), 'origin.example');
  assert.equal(headerValue(h.headers, 'via'), '1.1 first, 1.1 px');
  assert.equal(headerValue(h.headers, 'x-forwarded-for'), `198.18.5.5, ${NAT_PUB}`);
  assert.equal(headerValue(h.headers, 'x-end'), 'kept');
  const r = w.responses[0]!;
  assert.equal(r.head.status, 200);
  assert.equal(r.body, 'hi');
  assert.equal(headerValue(r.head.headers, 'via'), '1.1 px');
  assert.equal(headerValue(r.head.headers, 'keep-alive'), undefined);
  assert.equal(headerValue(r.head.headers, 'connection'), undefined);
});

test('lowercaseHeaders changes the case of every forwarded name, Host included', () => {
  const w = proxyWorld({ lowercaseHeaders: true }, ok);
  w.send('GET', 'GET http://198.18.0.1/ HTTP/1.1\r\nHost: 198.18.0.1\r\nX-Mixed-Case: 1\r\n\r\n');
  w.net.run(1000);
  const names = w.seen[0]!.headers.map(([k]) => k);
  assert.ok(names.includes('host') && names.includes('x-mixed-case'));
  assert.ok(!names.includes('Host'));
});

test('keep-alive: sequential requests share one origin connection; bodies are streamed upstream', () => {
  const bodies: string[] = [];
  const w = proxyWorld({}, (req, res) => {
    bodies.push(text(req.body));
    res.end(ascii(`got ${req.body.length}`));
  });
  w.send('POST', 'POST http://198.18.0.1/a HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc');
  w.send(
    'POST',
    'POST http://198.18.0.1/b HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nde\r\n0\r\n\r\n',
  );
  w.net.run(2000);
  assert.deepEqual(bodies, ['abc', 'de']);
  assert.deepEqual(
    w.responses.map((r) => r.body),
    ['got 3', 'got 2'],
  );
  assert.equal(w.originConns.length, 1);
});

test('CONNECT: allowed opens a raw tunnel; refused answers 403 and closes', () => {
  const yes = proxyWorld({ allowConnect: true }, ok);
  yes.send('CONNECT', 'CONNECT 198.18.0.1:443 HTTP/1.1\r\nHost: 198.18.0.1:443\r\n\r\n');
  yes.net.run(500);
  assert.equal(yes.responses[0]?.head.status, 200);
  yes.conn.write(ascii('ping through tunnel'));
  yes.net.run(500);
  assert.deepEqual(yes.raw, ['ping through tunnel']);

  const no = proxyWorld({ allowConnect: false }, ok);
  no.send('CONNECT', 'CONNECT 198.18.0.1:443 HTTP/1.1\r\nHost: 198.18.0.1:443\r\n\r\n');
  no.net.run(500);
  assert.equal(no.responses[0]?.head.status, 403);
  assert.ok(no.isClosed());
  assert.equal(no.proxy.counts.refused, 1);

  const port = proxyWorld({ connectPorts: [443] }, ok);
  port.send('CONNECT', 'CONNECT 198.18.0.1:22 HTTP/1.1\r\nHost: 198.18.0.1:22\r\n\r\n');
  port.net.run(500);
  assert.equal(port.responses[0]?.head.status, 403);
});

const WS_REQ =
  'GET http://198.18.0.1/ws HTTP/1.1\r\nHost: 198.18.0.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n' +
  'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n';

const wsOrigin: HttpHandler = (req, res) => {
  if (headerValue(req.head.headers, 'upgrade') === 'websocket') {
    const raw = res.upgrade([
      ['Upgrade', 'websocket'],
      ['Connection', 'Upgrade'],
    ]);
    raw.onData = (d) => raw.write(d);
  } else {
    res.writeHead(426, [['Content-Length', '0']]);
    res.end();
  }
};

test('WebSocket Upgrade allowed: 101 through the proxy, then raw bytes both ways', () => {
  const w = proxyWorld({ websocket: 'allow' }, wsOrigin);
  w.send('GET', WS_REQ);
  w.net.run(500);
  assert.equal(w.responses[0]?.head.status, 101);
  assert.equal(headerValue(w.seen[0]!.headers, 'upgrade'), 'websocket');
  w.conn.write(ascii('frame-1'));
  w.net.run(500);
  assert.deepEqual(w.raw, ['frame-1']);
});

test('WebSocket Upgrade refused (403 or 501) or stripped', () => {
  for (const [mode, status] of [
    ['refuse-403', 403],
    ['refuse-501', 501],
  ] as const) {
    const w = proxyWorld({ websocket: mode }, wsOrigin);
    w.send('GET', WS_REQ);
    w.net.run(500);
    assert.equal(w.responses[0]?.head.status, status);
    assert.equal(w.seen.length, 0, 'the origin never saw it');
  }
  const s = proxyWorld({ websocket: 'strip' }, wsOrigin);
  s.send('GET', WS_REQ);
  s.net.run(500);
  assert.equal(headerValue(s.seen[0]!.headers, 'upgrade'), undefined);
  assert.equal(s.responses[0]?.head.status, 426);
});

/** An origin that streams: a chunk now, one after 1 s, the end after 2 s. */
const streaming: HttpHandler = (req, res) => {
  const net = req.conn.host.net;
  res.writeHead(200, [['Content-Type', 'application/octet-stream']]);
  res.write(ascii('A'));
  net.after(1000, () => res.write(ascii('B')));
  net.after(2000, () => res.end(ascii('C')));
};

test('streaming proxy passes chunks as they come; a buffering one holds the response to the end', () => {
  const s = proxyWorld({ bufferResponses: false }, streaming);
  s.net.run(100);
  const t0 = s.net.now;
  s.send('GET', 'GET http://198.18.0.1/stream HTTP/1.1\r\nHost: x\r\n\r\n');
  s.net.run(5000);
  const rs = s.responses[0]!;
  assert.equal(rs.body, 'ABC');
  assert.ok(rs.tBody! - t0 < 200, 'first chunk within a round trip or two');
  assert.ok(rs.tEnd! - t0 >= 2000);
  assert.equal(headerValue(rs.head.headers, 'transfer-encoding'), 'chunked');

  const b = proxyWorld({ bufferResponses: true }, streaming);
  b.net.run(100);
  const t1 = b.net.now;
  b.send('GET', 'GET http://198.18.0.1/stream HTTP/1.1\r\nHost: x\r\n\r\n');
  b.net.run(5000);
  const rb = b.responses[0]!;
  assert.equal(rb.body, 'ABC');
  assert.ok(rb.tHead - t1 >= 2000, 'nothing reaches the client before the origin finishes');
  assert.equal(headerValue(rb.head.headers, 'content-length'), '3');
  assert.equal(headerValue(rb.head.headers, 'transfer-encoding'), undefined);
});

test('response timeout: 504 when the origin does not answer in time', () => {
  const w = proxyWorld({ responseTimeout: 3000 }, () => {});
  w.net.run(100);
  const t0 = w.net.now;
  w.send('GET', 'GET http://198.18.0.1/slow HTTP/1.1\r\nHost: x\r\n\r\n');
  w.net.run(10_000);
  const r = w.responses[0]!;
  assert.equal(r.head.status, 504);
  assert.ok(r.tHead - t0 >= 3000 && r.tHead - t0 < 3100);
  assert.equal(w.proxy.counts.timeouts, 1);
  assert.ok(w.isClosed());
});

test('a buffering proxy with a timeout kills a long-lived streaming response', () => {
  const w = proxyWorld({ bufferResponses: true, responseTimeout: 1500 }, streaming);
  w.send('GET', 'GET http://198.18.0.1/stream HTTP/1.1\r\nHost: x\r\n\r\n');
  w.net.run(5000);
  assert.equal(w.responses[0]?.head.status, 504);
  assert.equal(w.responses[0]?.body, '');
});

test('unknown origin: 502; origin-form without a configured origin: 400', () => {
  const w = proxyWorld({}, ok);
  w.send('GET', 'GET http://nowhere.example/ HTTP/1.1\r\nHost: nowhere.example\r\n\r\n');
  w.net.run(1000);
  assert.equal(w.responses[0]?.head.status, 502);
  const v = proxyWorld({}, ok);
  v.send('GET', 'GET / HTTP/1.1\r\nHost: x\r\n\r\n');
  v.net.run(1000);
  assert.equal(v.responses[0]?.head.status, 400);
  const r = proxyWorld({ origin: { addr: RELAY, port: 80 } }, ok);
  r.send('GET', 'GET /rev HTTP/1.1\r\nHost: relay.example\r\n\r\n');
  r.net.run(1000);
  assert.equal(r.responses[0]?.head.status, 200);
  assert.equal(headerValue(r.seen[0]!.headers, 'host'), 'relay.example');
});

test('idle timeout: a tunnel with no traffic is cut by the proxy', () => {
  const w = proxyWorld({ idleTimeout: 2000 }, ok);
  let err = '';
  let at = 0;
  w.conn.onError = (e) => {
    err = e.code;
    at = w.net.now;
  };
  w.send('CONNECT', 'CONNECT 198.18.0.1:443 HTTP/1.1\r\nHost: 198.18.0.1:443\r\n\r\n');
  w.net.run(500);
  w.conn.write(ascii('x'));
  w.net.run(500);
  assert.deepEqual(w.raw, ['x']);
  const last = w.net.now - 500 + 30; // the echo passed the proxy about 30 ms after the write
  w.net.run(5000);
  assert.equal(err, 'ECONNRESET');
  assert.ok(at > last + 2000 && at < last + 2100, `cut at ${at}`);
});
