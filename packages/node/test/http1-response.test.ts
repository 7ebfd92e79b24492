/**
 * Http1ResponseReader: every framing RFC 9112 §6.3 gives a response, read whole and byte by byte,
 * and each malformed input refused with its code (and the reader failed for good).
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  Http1Error,
  Http1ErrorCode,
  type Http1Response,
  Http1ResponseReader,
} from '../src/http1-response.ts';

const enc = (s: string): Uint8Array => new TextEncoder().encode(s);
const text = (b: Uint8Array): string => new TextDecoder().decode(b);

/** The responses in `wire`, pushed whole, then again one byte at a time: both must agree. */
function readAll(wire: string, end = false): Http1Response[] {
  const whole = new Http1ResponseReader();
  const a = whole.push(enc(wire));
  const ea = end ? whole.end() : undefined;
  if (ea) a.push(ea);
  const bytes = new Http1ResponseReader();
  const b: Http1Response[] = [];
  for (const x of enc(wire)) b.push(...bytes.push(Uint8Array.of(x)));
  const eb = end ? bytes.end() : undefined;
  if (eb) b.push(eb);
  const view = (r: Http1Response) => ({ ...r, headers: [...r.headers], body: text(r.body) });
  assert.deepEqual(a.map(view), b.map(view));
  return a;
}

function refused(wire: string, code: Http1ErrorCode, o = {}): void {
  const r = new Http1ResponseReader(o);
  assert.throws(
    () => r.push(enc(wire)),
    (e: unknown) => e instanceof Http1Error && e.code === code,
  );
  // Failed for good: later bytes are not read as a new response.
  assert.throws(() => r.push(enc('HTTP/1.1 204 No Content\r\n\r\n')), Http1Error);
}

test('204 and 304 have no body; Content-Length bodies; two answers in one read', () => {
  const rs = readAll(
    'HTTP/1.1 204 No Content\r\nCache-Control: no-store\r\n\r\n' +
      'HTTP/1.1 304 Not Modified\r\nContent-Length: 99\r\n\r\n' +
      'HTTP/1.1 200 OK\r\nContent-Length: 5\r\nRoamlink-Seq: 7\r\n\r\nhello',
  );
  assert.deepEqual(
    rs.map((r) => [r.status, r.reason, text(r.body), r.keepAlive]),
    [
      [204, 'No Content', '', true],
      [304, 'Not Modified', '', true],
      [200, 'OK', 'hello', true],
    ],
  );
  assert.equal(rs[2]!.headers.get('roamlink-seq'), '7');
  assert.equal(rs[0]!.headers.get('cache-control'), 'no-store');
});

test('chunked: extensions and trailer fields skipped, chunked wins over Content-Length', () => {
  const [r, next] = readAll(
    'HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\nContent-Length: 3\r\n\r\n' +
      '5;name=value\r\nhello\r\n1\r\n,\r\n6\r\n world\r\n0\r\nX-Trailer: 1\r\n\r\n' +
      'HTTP/1.1 204 No Content\r\n\r\n',
  );
  assert.equal(text(r!.body), 'hello, world');
  assert.equal(r!.keepAlive, true);
  assert.equal(next!.status, 204);
});

test('interim 1xx answers are skipped; repeated fields are joined', () => {
  const rs = readAll(
    'HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n' +
      'HTTP/1.1 200 OK\r\nVia: 1.1 a\r\nvia: 1.1 b\r\nContent-Length: 0\r\n\r\n',
  );
  assert.equal(rs.length, 1);
  assert.equal(rs[0]!.status, 200);
  assert.equal(rs[0]!.headers.get('via'), '1.1 a, 1.1 b');
});

test('a body without a length runs to the close; the connection is not kept', () => {
  const [r] = readAll('HTTP/1.0 200 OK\r\n\r\nall of it', true);
  assert.equal(text(r!.body), 'all of it');
  assert.equal(r!.keepAlive, false);
  assert.equal(r!.minor, 0);
  // Transfer-Encoding without chunked last: also to the close.
  const [t] = readAll('HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nzz', true);
  assert.equal(text(t!.body), 'zz');
  assert.equal(t!.keepAlive, false);
});

test('keep-alive: HTTP/1.1 unless close, HTTP/1.0 only if asked', () => {
  const ka = (wire: string) => readAll(wire)[0]!.keepAlive;
  assert.equal(ka('HTTP/1.1 204 No Content\r\nConnection: Close\r\n\r\n'), false);
  assert.equal(ka('HTTP/1.1 204 No Content\r\nConnection: upgrade, close\r\n\r\n'), false);
  assert.equal(ka('HTTP/1.0 204 No Content\r\n\r\n'), false);
  assert.equal(ka('HTTP/1.0 204 No Content\r\nConnection: keep-alive\r\n\r\n'), true);
});

test('between responses the reader is idle; inside one it is not', () => {
  const r = new Http1ResponseReader();
  assert.equal(r.idle, true);
  assert.deepEqual(r.push(enc('HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nab')), []);
  assert.equal(r.idle, false);
  assert.equal(r.push(enc('cd')).length, 1);
  assert.equal(r.idle, true);
  assert.equal(r.end(), undefined);
});

test('malformed answers are refused with their codes', () => {
  refused('HTTP/2 200 OK\r\n\r\n', Http1ErrorCode.BAD_STATUS_LINE);
  refused('HTTP/1.1 20 OK\r\n\r\n', Http1ErrorCode.BAD_STATUS_LINE);
  refused('HTTP/1.1 200 OK\r\nno colon here\r\n\r\n', Http1ErrorCode.BAD_HEADER);
  refused('HTTP/1.1 200 OK\r\nbad name: x\r\n\r\n', Http1ErrorCode.BAD_HEADER);
  refused('HTTP/1.1 200 OK\r\nContent-Length: 3, 4\r\n\r\n', Http1ErrorCode.BAD_LENGTH);
  refused('HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n', Http1ErrorCode.BAD_LENGTH);
  refused('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n', Http1ErrorCode.BAD_CHUNK);
  refused(
    'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabXY',
    Http1ErrorCode.BAD_CHUNK,
  );
  refused(`HTTP/1.1 200 OK\r\nX: ${'a'.repeat(200)}\r\n\r\n`, Http1ErrorCode.HEAD_TOO_LARGE, {
    maxHeadBytes: 100,
  });
  refused(`HTTP/1.1 200 OK\r\nX: ${'a'.repeat(200)}`, Http1ErrorCode.HEAD_TOO_LARGE, {
    maxHeadBytes: 100,
  });
  refused('HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\n', Http1ErrorCode.BODY_TOO_LARGE, {
    maxBodyBytes: 10,
  });
  refused(
    'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n8\r\n12345678\r\n8\r\n',
    Http1ErrorCode.BODY_TOO_LARGE,
    { maxBodyBytes: 10 },
  );
  // Equal repeated lengths are one length (RFC 9112 §6.3 rule 5).
  assert.equal(readAll('HTTP/1.1 200 OK\r\nContent-Length: 2, 2\r\n\r\nok')[0]!.body.length, 2);
});

test('a close inside a response is an error; the reader stays failed', () => {
  for (const wire of [
    'HTTP/1.1 200 OK\r\nContent-Len',
    'HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nabc',
    'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n',
  ]) {
    const r = new Http1ResponseReader();
    r.push(enc(wire));
    assert.throws(
      () => r.end(),
      (e: unknown) => e instanceof Http1Error && e.code === Http1ErrorCode.TRUNCATED,
    );
    assert.throws(() => r.push(enc('x')), Http1Error);
  }
});
