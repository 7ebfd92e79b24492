/**
 * The SOCKS5 client (RFC 1928, RFC 1929) as a proxy for the WebSocket and HTTP paths: the bytes
 * it sends, checked by a scripted server; reply codes and refusals as ProxyErrors; username and
 * password against roamlink's own SOCKS5 server; and a WebSocket path through `ssh -D`.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { type AddressInfo, createServer, type Socket, connect as tcpConnect } from 'node:net';
import { test } from 'node:test';
import { isProxyError, ProxyErrorCode, parseProxyUrl } from '../src/proxy.ts';
import { socks5Connect } from '../src/socks-client.ts';
import { startSocksServer } from '../src/socks5.ts';
import { byteReader } from './byte-reader.ts';
import { seeded } from './seeded.ts';

test('socks5:// and socks5h:// proxy URLs: port 1080 by default; h lets the proxy resolve names', () => {
  const p = parseProxyUrl('socks5h://u:p@gw.example');
  assert.deepEqual(
    { port: p.port, socks: p.socks, href: p.href, user: p.username, secure: p.secure },
    {
      port: 1080,
      socks: { remoteDns: true },
      href: 'socks5h://gw.example:1080',
      user: 'u',
      secure: false,
    },
  );
  assert.deepEqual(parseProxyUrl('socks5://[::1]:9050').socks, { remoteDns: false });
  assert.equal(parseProxyUrl('http://h:1').socks, undefined);
});

/** A SOCKS5 server that answers as `script` says, step by step, reading exact byte counts. */
async function scripted(
  script: (s: Socket, read: (n: number) => Promise<Buffer>) => Promise<void>,
) {
  const server = createServer((s) => {
    s.on('error', () => {});
    void script(s, byteReader(s)).catch(() => s.destroy());
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { port: (server.address() as AddressInfo).port, close: () => server.close() };
}

test('the bytes of a CONNECT: greeting, request by name (socks5h) or by address (socks5), reply', async () => {
  const seen: Buffer[] = [];
  const p = await scripted(async (s, read) => {
    seen.push(await read(3)); // VER, NMETHODS, no authentication
    s.write(Buffer.from([5, 0]));
    const head = await read(5); // VER CMD RSV ATYP, then a name's length or an address's first byte
    seen.push(head);
    const rest =
      head[3] === 3 ? await read(head[4]! + 2) : await read(head[3] === 1 ? 3 + 2 : 15 + 2);
    seen.push(rest);
    // Success, bound to 10.0.0.1:4660, and the target's first bytes in the same write.
    s.write(
      Buffer.concat([Buffer.from([5, 0, 0, 1, 10, 0, 0, 1, 0x12, 0x34]), Buffer.from('HELLO')]),
    );
    s.on('data', (b: Buffer) => s.write(b));
  });
  try {
    for (const [url, host] of [
      [`socks5h://127.0.0.1:${p.port}`, 'relay.example'],
      [`socks5://127.0.0.1:${p.port}`, 'localhost'],
      [`socks5://127.0.0.1:${p.port}`, '2001:db8::7'],
      [`socks5://127.0.0.1:${p.port}`, '::ffff:192.0.2.1'],
    ] as const) {
      seen.length = 0;
      const sock = await socks5Connect(parseProxyUrl(url), host, 443, { timeoutMs: 2000 });
      let got = '';
      sock.on('data', (b: Buffer) => {
        got += b.toString();
      });
      sock.write('-echo');
      const end = Date.now() + 2000;
      while (got !== 'HELLO-echo' && Date.now() < end) await new Promise((r) => setTimeout(r, 5));
      assert.equal(got, 'HELLO-echo', url);
      sock.destroy();
      assert.deepEqual([...seen[0]!], [5, 1, 0]);
      const req = Buffer.concat([seen[1]!, seen[2]!]);
      assert.deepEqual([...req.subarray(0, 3)], [5, 1, 0], 'CONNECT');
      assert.equal(req.readUInt16BE(req.length - 2), 443);
      if (host === 'relay.example') {
        // socks5h: the name itself, for the proxy to resolve.
        assert.equal(req[3], 3);
        assert.equal(req.subarray(5, 5 + req[4]!).toString(), 'relay.example');
      } else if (host === 'localhost') {
        // socks5: resolved here, an address goes.
        assert.ok(req[3] === 1 || req[3] === 4, `ATYP ${req[3]}`);
        if (req[3] === 1) assert.deepEqual([...req.subarray(4, 8)], [127, 0, 0, 1]);
      } else {
        assert.equal(req[3], 4);
        assert.equal(
          req.subarray(4, 20).toString('hex'),
          host === '2001:db8::7'
            ? '20010db8000000000000000000000007'
            : '00000000000000000000ffffc0000201',
        );
      }
    }
  } finally {
    p.close();
  }
});

test('refusals: no acceptable method, a reply code, not SOCKS5, nothing listening', async () => {
  const cases: [
    (s: Socket, read: (n: number) => Promise<Buffer>) => Promise<void>,
    string,
    RegExp,
  ][] = [
    [
      async (s, read) => {
        await read(3);
        s.write(Buffer.from([5, 0xff]));
      },
      ProxyErrorCode.AUTH_REQUIRED,
      /accepts none of our methods \(no credentials sent\)/,
    ],
    [
      async (s, read) => {
        await read(3);
        s.write(Buffer.from([5, 0]));
        await read(5);
        s.write(Buffer.from([5, 5, 0, 1, 0, 0, 0, 0, 0, 0]));
      },
      ProxyErrorCode.REFUSED,
      /refused: connection refused$/,
    ],
    [
      async (s, read) => {
        await read(3);
        s.write('HTTP/1.1 400 Bad Request\r\n\r\n');
      },
      ProxyErrorCode.BAD_RESPONSE,
      /not a SOCKS5 answer/,
    ],
  ];
  for (const [script, code, message] of cases) {
    const p = await scripted(script);
    try {
      await assert.rejects(
        socks5Connect(parseProxyUrl(`socks5h://127.0.0.1:${p.port}`), 'relay.example', 443, {
          timeoutMs: 2000,
        }),
        (e) => isProxyError(e, code as ProxyErrorCode) && message.test(e.message),
      );
    } finally {
      p.close();
    }
  }
  const free = createServer();
  await new Promise<void>((r) => free.listen(0, '127.0.0.1', r));
  const port = (free.address() as AddressInfo).port;
  free.close();
  await assert.rejects(
    socks5Connect(parseProxyUrl(`socks5h://127.0.0.1:${port}`), 'relay.example', 443, {
      timeoutMs: 2000,
    }),
    (e) => isProxyError(e, ProxyErrorCode.UNREACHABLE) && /ECONNREFUSED/.test(e.message),
  );
});

test("username and password (RFC 1929) against roamlink's own SOCKS5 server; wrong ones refused", async () => {
  // A target, and a SOCKS5 server that requires credentials and dials straight out.
  const target = createServer((s) => s.pipe(s));
  await new Promise<void>((r) => target.listen(0, '127.0.0.1', r));
  const tport = (target.address() as AddressInfo).port;
  const server = await startSocksServer({
    host: '127.0.0.1',
    port: 0,
    auth: { username: 'roam', password: 'sock pass' },
    dialer: {
      connect: async (t) => {
        const s = tcpConnect(t.port, t.host);
        await once(s, 'connect');
        return s;
      },
    },
  });
  try {
    const good = parseProxyUrl(
      `socks5://roam:${encodeURIComponent('sock pass')}@127.0.0.1:${server.address.port}`,
    );
    const s = await socks5Connect(good, '127.0.0.1', tport, { timeoutMs: 2000 });
    s.write('ping');
    const [echo] = (await once(s, 'data')) as [Buffer];
    assert.equal(echo.toString(), 'ping');
    s.destroy();
    const bad = parseProxyUrl(`socks5://roam:wrong@127.0.0.1:${server.address.port}`);
    await assert.rejects(
      socks5Connect(bad, '127.0.0.1', tport, { timeoutMs: 2000 }),
      (e) =>
        isProxyError(e, ProxyErrorCode.AUTH_REQUIRED) &&
        /credentials rejected/.test(e.message) &&
        !e.message.includes('wrong'),
    );
  } finally {
    await server.close();
    target.close();
  }
});

test('hostile replies: random bytes from a SOCKS server give a ProxyError or a tunnel, never a crash or a hang', async () => {
  const rand = seeded(0x50c5);
  let reply = Buffer.alloc(0);
  const p = await scripted(async (s, read) => {
    await read(3);
    s.end(reply);
  });
  try {
    for (let n = 0; n < 200; n++) {
      // Mostly well-formed openings, so that the later steps are reached too.
      const len = Math.floor(rand() * 24);
      reply = Buffer.from(Array.from({ length: len }, () => Math.floor(rand() * 256)));
      if (rand() < 0.7 && len >= 2) {
        reply[0] = 5;
        reply[1] = rand() < 0.5 ? 0 : 2;
      }
      if (rand() < 0.5 && len >= 4) {
        reply[2] = 5;
        reply[3] = 0;
      }
      const url = `socks5h://${rand() < 0.5 ? 'u:p@' : ''}127.0.0.1:${p.port}`;
      try {
        const s = await socks5Connect(parseProxyUrl(url), 'relay.example', 443, {
          timeoutMs: 1000,
        });
        s.destroy();
      } catch (e) {
        assert.ok(isProxyError(e), `${reply.toString('hex')}: ${String(e)}`);
        assert.ok(e.code !== ProxyErrorCode.TIMEOUT, `${reply.toString('hex')}: a hang`);
      }
    }
  } finally {
    p.close();
  }
});
