/**
 * HttpUplink against real servers on loopback: POSTs share one kept-alive connection and their
 * bodies and answers arrive whole; an answer that says close moves the next POST to a new
 * connection; an idle connection the server closed under a POST is retried once on a new one,
 * while a fresh connection that fails is an error; bad header fields are refused before sending.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer as createHttpServer } from 'node:http';
import { type AddressInfo, createServer, type Server, type Socket } from 'node:net';
import { test } from 'node:test';
import { HttpUplink } from '../src/http-uplink.ts';
import type { Http1Response } from '../src/http1-response.ts';

function post(
  u: HttpUplink,
  body: string,
  fields: [string, string][] = [],
): Promise<Http1Response> {
  return new Promise((resolve, reject) =>
    u.post('/rl/up?s=t', fields, new TextEncoder().encode(body), (err, res) =>
      err ? reject(err) : resolve(res!),
    ),
  );
}

async function listen(s: Server | ReturnType<typeof createHttpServer>): Promise<number> {
  s.listen(0, '127.0.0.1');
  await once(s, 'listening');
  return (s.address() as AddressInfo).port;
}

test('POSTs share one kept-alive connection; bodies, fields and answers arrive whole', async () => {
  const seen: {
    port: number;
    body: string;
    host: string | undefined;
    type: string | undefined;
    len: string | undefined;
  }[] = [];
  const server = createHttpServer((req, res) => {
    const parts: Buffer[] = [];
    req.on('data', (c: Buffer) => parts.push(c));
    req.on('end', () => {
      const body = Buffer.concat(parts).toString();
      seen.push({
        port: req.socket.remotePort!,
        body,
        host: req.headers.host,
        type: req.headers['content-type'],
        len: req.headers['content-length'],
      });
      if (body.startsWith('echo')) {
        res.writeHead(200, { 'Roamlink-Seq': '3' });
        // Chunked (no length given): the reader must take that framing too.
        res.write(body.slice(0, 3));
        res.end(body.slice(3));
      } else {
        res.writeHead(204);
        res.end();
      }
    });
  });
  const port = await listen(server);
  const u = new HttpUplink({ hostname: '127.0.0.1', port, host: `example.test:${port}` });
  try {
    const a = await post(u, 'one', [['Content-Type', 'application/octet-stream']]);
    assert.equal(a.status, 204);
    const b = await post(u, 'echo this');
    assert.equal(b.status, 200);
    assert.equal(new TextDecoder().decode(b.body), 'echo this');
    assert.equal(b.headers.get('roamlink-seq'), '3');
    // A caller's Content-Length is not written: the body's own is.
    await post(u, '', [['Content-Length', '99']]);
    assert.deepEqual(
      seen.map((s) => [s.body, s.host, s.len]),
      [
        ['one', `example.test:${port}`, '3'],
        ['echo this', `example.test:${port}`, '9'],
        ['', `example.test:${port}`, '0'],
      ],
    );
    assert.equal(seen[0]!.type, 'application/octet-stream');
    assert.equal(new Set(seen.map((s) => s.port)).size, 1, 'one connection for all');
    assert.equal(u.socket?.localPort, seen[0]!.port);
  } finally {
    u.close();
    server.close();
    server.closeAllConnections();
  }
});

/**
 * A raw server: to the `req`-th request on its `conn`-th connection it writes `answer(conn, req)`,
 * or closes that connection without answering when that is null.
 */
interface RawServer {
  port: number;
  /** Connections accepted so far. */
  conns: () => number;
  /** Every request's body, in arrival order. */
  requests: string[];
  close(): void;
}

async function rawServer(answer: (conn: number, req: number) => string | null): Promise<RawServer> {
  let conns = 0;
  const requests: string[] = [];
  const sockets = new Set<Socket>();
  const server = createServer((s) => {
    const conn = conns++;
    sockets.add(s);
    let buf = '';
    let n = 0;
    s.on('error', () => {});
    s.on('data', (b: Buffer) => {
      buf += b.toString('latin1');
      for (;;) {
        const end = buf.indexOf('\r\n\r\n');
        if (end < 0) return;
        const len = Number(/content-length: (\d+)/i.exec(buf.slice(0, end))?.[1] ?? 0);
        if (buf.length < end + 4 + len) return;
        requests.push(buf.slice(end + 4, end + 4 + len));
        buf = buf.slice(end + 4 + len);
        const a = answer(conn, n++);
        if (a === null) {
          s.destroy();
          return;
        }
        s.write(a);
      }
    });
  });
  const port = await listen(server);
  return {
    port,
    conns: () => conns,
    requests,
    close: () => {
      for (const s of sockets) s.destroy();
      server.close();
    },
  };
}

const NO_CONTENT = 'HTTP/1.1 204 No Content\r\n\r\n';

/** `body` with an uplink to a raw server (rawServer) that answers with `answer`; both closed after. */
async function withRaw(
  answer: (conn: number, req: number) => string | null,
  body: (u: HttpUplink, srv: RawServer) => Promise<void>,
): Promise<void> {
  const srv = await rawServer(answer);
  const u = new HttpUplink({ hostname: '127.0.0.1', port: srv.port, host: 'h' });
  try {
    await body(u, srv);
  } finally {
    u.close();
    srv.close();
  }
}

test('an answer that says close: the next POST goes on a new connection', async () => {
  await withRaw(
    () => 'HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n',
    async (u, srv) => {
      for (const body of ['a', 'b', 'c']) assert.equal((await post(u, body)).status, 204);
      assert.deepEqual(srv.requests, ['a', 'b', 'c']);
      assert.equal(srv.conns(), 3);
    },
  );
});

test('a kept connection closed under a POST: sent once more on a new one', async () => {
  // The first connection answers its first POST and drops the second unanswered (as a server
  // whose keep-alive timer fired just as the POST left); the second connection answers.
  await withRaw(
    (conn, req) => (conn === 0 && req === 1 ? null : NO_CONTENT),
    async (u, srv) => {
      assert.equal((await post(u, 'first')).status, 204);
      assert.equal((await post(u, 'second')).status, 204);
      assert.deepEqual(srv.requests, ['first', 'second', 'second']);
      assert.equal(srv.conns(), 2);
    },
  );
});

test('a fresh connection that fails, or a retry that fails too, is an error', async () => {
  await withRaw(
    (_conn, req) => (req === 0 ? null : NO_CONTENT),
    async (u, srv) => {
      await assert.rejects(post(u, 'x'), /closed|ECONNRESET/);
      assert.equal(srv.conns(), 1, 'a fresh connection is not retried');
    },
  );
  await withRaw(
    (conn, req) => (conn === 0 && req === 0 ? NO_CONTENT : null),
    async (u, srv) => {
      assert.equal((await post(u, 'a')).status, 204);
      await assert.rejects(post(u, 'b'), /closed|ECONNRESET/);
      assert.equal(srv.conns(), 2, 'one retry, no more');
    },
  );
  // Nobody listening.
  const dead = await rawServer(() => NO_CONTENT);
  dead.close();
  const u = new HttpUplink({ hostname: '127.0.0.1', port: dead.port, host: 'h' });
  await assert.rejects(post(u, 'x'), (e: NodeJS.ErrnoException) => e.code === 'ECONNREFUSED');
  u.close();
});

test('a malformed answer fails the POST; the next one opens a new connection', async () => {
  await withRaw(
    (conn) => (conn === 0 ? 'HTTP/9 nonsense\r\n\r\n' : NO_CONTENT),
    async (u, srv) => {
      await assert.rejects(post(u, 'x'), /bad-status-line/);
      assert.equal((await post(u, 'y')).status, 204);
      assert.equal(srv.conns(), 2);
    },
  );
});

test('a header field with CR or LF is refused; nothing is sent', async () => {
  await withRaw(
    () => NO_CONTENT,
    async (u, srv) => {
      await assert.rejects(post(u, 'x', [['X-Evil', 'a\r\nInjected: 1']]), /bad header field/);
      await assert.rejects(post(u, 'x', [['Bad Name', 'v']]), /bad header field/);
      assert.equal((await post(u, 'ok')).status, 204);
      assert.deepEqual(srv.requests, ['ok']);
    },
  );
});

test('two answers to one POST: the first is its answer, the connection is not used again', async () => {
  await withRaw(
    (conn) => (conn === 0 ? NO_CONTENT + NO_CONTENT : NO_CONTENT),
    async (u, srv) => {
      assert.equal((await post(u, 'a')).status, 204);
      // The stray second answer is not taken for this one's: it goes on a new connection.
      assert.equal((await post(u, 'b')).status, 204);
      assert.equal(srv.conns(), 2);
      assert.deepEqual(srv.requests, ['a', 'b']);
    },
  );
});
