import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  encodeChunk,
  encodeRequest,
  encodeResponse,
  type HttpError,
  HttpParser,
  type HttpRequestHead,
  type HttpResponseHead,
  headerHasToken,
  headerValue,
  LAST_CHUNK,
  serializeResponseHead,
  setHeader,
  withoutHeaders,
} from '../src/index.ts';
import { ascii, concat, text } from './helpers.ts';

interface Msg {
  head: HttpRequestHead | HttpResponseHead;
  body: string;
}

function parseAll<K extends 'request' | 'response'>(
  kind: K,
  pieces: Uint8Array[],
  methods: string[] = [],
  end = false,
): { msgs: Msg[]; error?: HttpError; parser: HttpParser<K> } {
  const p = new HttpParser(kind);
  for (const m of methods) p.expect(m);
  const msgs: Msg[] = [];
  let cur: Msg | undefined;
  let error: HttpError | undefined;
  p.onHead = (h) => {
    cur = { head: h, body: '' };
  };
  p.onBody = (b) => {
    cur!.body += text(b);
  };
  p.onEnd = () => {
    msgs.push(cur!);
  };
  p.onError = (e) => {
    error = e;
  };
  for (const x of pieces) p.push(x);
  if (end) p.end();
  return error === undefined ? { msgs, parser: p } : { msgs, error, parser: p };
}

/** Every way of cutting `b` in two, plus byte by byte. */
function splits(b: Uint8Array): Uint8Array[][] {
  const out: Uint8Array[][] = [[b], Array.from(b, (x) => new Uint8Array([x]))];
  for (let i = 1; i < b.length; i++) out.push([b.subarray(0, i), b.subarray(i)]);
  return out;
}

const POST = ascii(
  'POST /tunnel?x=1 HTTP/1.1\r\nHost: relay.example\r\nContent-Length: 11\r\nX-A: 1\r\nx-a: 2\r\n\r\nhello world',
);

test('request with Content-Length: same result however the stream is cut', () => {
  for (const pieces of splits(POST)) {
    const { msgs, error } = parseAll('request', pieces);
    assert.equal(error, undefined);
    assert.equal(msgs.length, 1);
    const h = msgs[0]!.head as HttpRequestHead;
    assert.equal(h.method, 'POST');
    assert.equal(h.target, '/tunnel?x=1');
    assert.equal(h.version, 'HTTP/1.1');
    assert.deepEqual(h.headers[0], ['Host', 'relay.example']);
    assert.equal(headerValue(h.headers, 'X-A'), '1, 2');
    assert.equal(msgs[0]!.body, 'hello world');
  }
});

test('chunked request with extensions and trailers, then a pipelined GET', () => {
  const wire = ascii(
    'POST /up HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n' +
      '5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nTrailer-X: y\r\n\r\n' +
      'GET /next HTTP/1.1\r\nHost: h\r\n\r\n',
  );
  for (const pieces of splits(wire)) {
    const { msgs, error } = parseAll('request', pieces);
    assert.equal(error, undefined);
    assert.deepEqual(
      msgs.map((m) => [(m.head as HttpRequestHead).target, m.body]),
      [
        ['/up', 'hello world'],
        ['/next', ''],
      ],
    );
  }
});

test('response framing: HEAD, 204, 304, 100 Continue, chunked, close-delimited', () => {
  const wire = ascii(
    'HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n' + // answer to HEAD: no body
      'HTTP/1.1 204 No Content\r\n\r\n' +
      'HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n' +
      'HTTP/1.1 304 Not Modified\r\nContent-Length: 99\r\n\r\n' +
      'HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil the end',
  );
  const { msgs, error } = parseAll('response', [wire], ['HEAD', 'GET', 'POST', 'GET', 'GET'], true);
  assert.equal(error, undefined);
  assert.deepEqual(
    msgs.map((m) => [(m.head as HttpResponseHead).status, m.body]),
    [
      [200, ''],
      [204, ''],
      [200, 'abc'],
      [304, ''],
      [200, 'until the end'],
    ],
  );
});

test('101 and CONNECT 2xx switch the stream to raw bytes', () => {
  const p = new HttpParser('response');
  p.expect('GET');
  let tunnel = false;
  p.onTunnel = () => {
    tunnel = true;
  };
  p.push(ascii('HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n\x81\x05hello'));
  assert.ok(tunnel && p.tunnelled);
  assert.deepEqual(p.takeRaw(), ascii('\x81\x05hello'));

  const q = new HttpParser('response');
  q.expect('CONNECT');
  q.push(ascii('HTTP/1.1 200 Connection Established\r\n\r\nRAW'));
  assert.ok(q.tunnelled);
  assert.equal(text(q.takeRaw()), 'RAW');
});

test('pause() holds the next message until resume()', () => {
  const p = new HttpParser('request');
  const seen: string[] = [];
  p.onHead = (h) => {
    seen.push(h.target);
    p.pause();
  };
  p.push(ascii('GET /a HTTP/1.1\r\n\r\nGET /b HTTP/1.1\r\n\r\n'));
  assert.deepEqual(seen, ['/a']);
  p.resume();
  assert.deepEqual(seen, ['/a', '/b']);
});

test('malformed input, truncation and oversize headers are errors with codes', () => {
  const cases: [string, string][] = [
    ['GET / HTTP/2.0\r\n\r\n', 'HTTP_MALFORMED'],
    ['GET /\r\n\r\n', 'HTTP_MALFORMED'],
    ['GET / HTTP/1.1\r\nBad Header: x\r\n\r\n', 'HTTP_MALFORMED'],
    ['GET / HTTP/1.1\r\nA: b\r\n folded\r\n\r\n', 'HTTP_MALFORMED'],
    ['POST / HTTP/1.1\r\nContent-Length: 1, 2\r\n\r\n', 'HTTP_MALFORMED'],
    ['POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n', 'HTTP_MALFORMED'],
    ['POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n', 'HTTP_MALFORMED'],
  ];
  for (const [wire, code] of cases) {
    const { error } = parseAll('request', [ascii(wire)]);
    assert.equal(error?.code, code, wire);
  }
  const { error: t } = parseAll(
    'request',
    [ascii('POST / HTTP/1.1\r\nContent-Length: 10\r\n\r\nabc')],
    [],
    true,
  );
  assert.equal(t?.code, 'HTTP_TRUNCATED');
  const big = ascii(`GET / HTTP/1.1\r\nX: ${'a'.repeat(70_000)}\r\n\r\n`);
  assert.equal(parseAll('request', [big]).error?.code, 'HTTP_HEADERS_TOO_LARGE');
});

test('serializer round-trips through the parser; header helpers', () => {
  const req = encodeRequest(
    { method: 'POST', target: '/x', version: 'HTTP/1.1', headers: [['Host', 'h']] },
    ascii('body!'),
  );
  assert.equal(text(req), 'POST /x HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nbody!');
  const chunked = concat([
    serializeResponseHead({
      version: 'HTTP/1.1',
      status: 200,
      reason: 'OK',
      headers: [['Transfer-Encoding', 'chunked']],
    }),
    encodeChunk(ascii('ab')),
    encodeChunk(new Uint8Array(0)),
    encodeChunk(ascii('cde')),
    LAST_CHUNK,
    encodeResponse(
      { version: 'HTTP/1.1', status: 404, reason: 'Not Found', headers: [] },
      ascii('no'),
    ),
  ]);
  const { msgs } = parseAll('response', [chunked], ['GET', 'GET']);
  assert.deepEqual(
    msgs.map((m) => m.body),
    ['abcde', 'no'],
  );
  const hs: [string, string][] = [
    ['Connection', 'keep-alive, Upgrade'],
    ['Upgrade', 'websocket'],
    ['Host', 'a'],
  ];
  assert.ok(headerHasToken(hs, 'connection', 'upgrade'));
  assert.deepEqual(withoutHeaders(hs, ['connection', 'UPGRADE']), [['Host', 'a']]);
  assert.deepEqual(setHeader(hs, 'host', 'b')[2], ['Host', 'b']);
  assert.throws(() =>
    serializeResponseHead({
      version: 'HTTP/1.1',
      status: 200,
      reason: 'OK',
      headers: [['X', 'a\r\nb']],
    }),
  );
});
