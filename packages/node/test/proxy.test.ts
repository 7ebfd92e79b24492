/**
 * proxy.ts on its own: proxy URL parsing, Basic credentials (RFC 7617's own examples), NO_PROXY
 * matching, selection from the environment, and every failure of a CONNECT against a small
 * scripted proxy on loopback (each failure's code, and the connection to the proxy closed
 * afterwards), plus the clients' error for a proxy that is not there. The happy paths through a
 * real proxy are in proxy-squid.test.ts.
 */
import assert from 'node:assert/strict';
import { request } from 'node:http';
import { type AddressInfo, createServer, type Socket } from 'node:net';
import { test } from 'node:test';
import { HttpPollClient, HttpStreamClient } from '../src/http.ts';
import {
  connectViaProxy,
  isProxyError,
  noProxyMatches,
  ProxyAgent,
  ProxyErrorCode,
  parseProxyUrl,
  proxyAuthorization,
  proxyFromEnv,
  selectProxy,
} from '../src/proxy.ts';
import { WebSocketTransport } from '../src/websocket.ts';
import { scripted } from './scripted-proxy.ts';

test('parseProxyUrl: host, port, percent-decoded credentials, redacted href', () => {
  const p = parseProxyUrl('http://us%20er:p%40ss%3Aw%C3%B6rd@proxy.example:3128');
  assert.deepEqual(p, {
    hostname: 'proxy.example',
    port: 3128,
    secure: false,
    username: 'us er',
    password: 'p@ss:wörd',
    memory: {},
    href: 'http://proxy.example:3128',
  });
  assert.deepEqual(parseProxyUrl('http://10.0.0.1/'), {
    hostname: '10.0.0.1',
    port: 80,
    secure: false,
    username: undefined,
    password: undefined,
    memory: {},
    href: 'http://10.0.0.1:80',
  });
  // No scheme: http, as the environment variables are often written.
  assert.equal(parseProxyUrl(' proxy:8080 ').port, 8080);
  const v6 = parseProxyUrl('http://u@[::1]:3128');
  assert.equal(v6.hostname, '::1');
  assert.equal(v6.href, 'http://[::1]:3128');
  assert.equal(v6.username, 'u');
  assert.equal(v6.password, '');
});

test('parseProxyUrl: https:// is a proxy reached over TLS, on port 443 by default', () => {
  assert.deepEqual(parseProxyUrl('https://u:p%40@proxy.example'), {
    hostname: 'proxy.example',
    port: 443,
    secure: true,
    username: 'u',
    password: 'p@',
    memory: {},
    href: 'https://proxy.example:443',
  });
  const v6 = parseProxyUrl('HTTPS://[fd00::1]:8443/');
  assert.equal(v6.secure, true);
  assert.equal(v6.href, 'https://[fd00::1]:8443');
  // No scheme stays plain http.
  assert.equal(parseProxyUrl('proxy.example:443').secure, false);
});

test('parseProxyUrl: unusable URLs throw INVALID_URL', () => {
  for (const bad of [
    '',
    'socks4://proxy:1080',
    'ftp://proxy:21',
    'https://proxy:443/path',
    'http://proxy:3128/path',
    'http://proxy:3128/?q=1',
    'http://proxy:0',
    'http://proxy:99999',
    'http://%zz:x@proxy:3128',
    'http://a%3Ab:x@proxy:3128',
    'http://u:a%0Ab@proxy:3128',
    'http://',
  ]) {
    assert.throws(
      () => parseProxyUrl(bad),
      (e) => isProxyError(e, ProxyErrorCode.INVALID_URL),
      bad,
    );
  }
});

test('Proxy-Authorization: RFC 7617 §2 and §2.1 examples', () => {
  const p = (u: string, pw: string) => ({
    ...parseProxyUrl('http://h:1'),
    username: u,
    password: pw,
  });
  assert.equal(
    proxyAuthorization(p('Aladdin', 'open sesame')),
    'Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==',
  );
  assert.equal(proxyAuthorization(p('test', '123\u00a3')), 'Basic dGVzdDoxMjPCow==');
  assert.equal(proxyAuthorization(parseProxyUrl('http://h:1')), undefined);
});

test('NO_PROXY: *, names and suffixes, host:port, IP literals, CIDR', () => {
  const table: [string, string, number, boolean][] = [
    ['', 'relay.example', 80, false],
    ['*', 'relay.example', 80, true],
    ['*', '10.1.2.3', 443, true],
    ['relay.example', 'relay.example', 80, true],
    ['relay.example', 'RELAY.example.', 80, true],
    ['example', 'relay.example', 80, true],
    ['.example', 'relay.example', 80, true],
    ['.example', 'example', 80, true],
    ['*.example', 'a.b.example', 80, true],
    ['example', 'badexample', 80, false],
    ['relay.example', 'example', 80, false],
    ['other, relay.example', 'relay.example', 80, true],
    ['other relay.example', 'relay.example', 80, true],
    [' ,, other ,', 'relay.example', 80, false],
    ['relay.example:8080', 'relay.example', 8080, true],
    ['relay.example:8080', 'relay.example', 80, false],
    ['.example:443', 'a.example', 443, true],
    ['10.1.2.3', '10.1.2.3', 80, true],
    ['10.1.2.3', '10.1.2.4', 80, false],
    // A name-like suffix never matches an address.
    ['2.3', '10.1.2.3', 80, false],
    ['1.2.3', '10.1.2.3', 80, false],
    ['10.1.2.3:51821', '10.1.2.3', 51821, true],
    ['10.1.2.3:51821', '10.1.2.3', 80, false],
    ['::1', '[::1]', 80, true],
    ['::1', '0:0:0:0:0:0:0:1', 80, true],
    ['[::1]', '::1', 80, true],
    ['[::1]:8080', '::1', 8080, true],
    ['[::1]:8080', '::1', 80, false],
    ['::1', '127.0.0.1', 80, false],
    ['10.0.0.0/8', '10.200.0.1', 80, true],
    ['10.0.0.0/8', '11.0.0.1', 80, false],
    ['10.0.0.0/8', 'ten.example', 80, false],
    ['fd00::/8', 'fd12::1', 80, true],
    ['fd00::/8', 'fe80::1', 80, false],
    ['10.0.0.0/99', '10.0.0.1', 80, false],
    ['127.0.0.1', 'localhost', 80, false],
  ];
  for (const [np, host, port, want] of table) {
    assert.equal(
      noProxyMatches(np, host, port),
      want,
      `NO_PROXY=${JSON.stringify(np)} ${host}:${port}`,
    );
  }
});

test('proxyFromEnv: HTTPS_PROXY, https_proxy, HTTP_PROXY, http_proxy in that order; NO_PROXY', () => {
  const t = 'ws://relay.example:51821/rl/ws';
  const from = (env: Record<string, string>) => proxyFromEnv(t, env)?.href;
  assert.equal(from({}), undefined);
  assert.equal(from({ http_proxy: 'http://d:4' }), 'http://d:4');
  assert.equal(from({ HTTP_PROXY: 'http://c:3', http_proxy: 'http://d:4' }), 'http://c:3');
  assert.equal(from({ https_proxy: 'b:2', HTTP_PROXY: 'http://c:3' }), 'http://b:2');
  assert.equal(from({ HTTPS_PROXY: 'http://a:1', https_proxy: 'b:2' }), 'http://a:1');
  // Empty counts as unset.
  assert.equal(from({ HTTPS_PROXY: ' ', http_proxy: 'http://d:4' }), 'http://d:4');
  // NO_PROXY before no_proxy; the target's port (default 80 for ws:/http:, 443 for wss:/https:).
  assert.equal(from({ HTTPS_PROXY: 'a:1', NO_PROXY: '.example' }), undefined);
  assert.equal(from({ HTTPS_PROXY: 'a:1', no_proxy: 'relay.example:51821' }), undefined);
  assert.equal(from({ HTTPS_PROXY: 'a:1', NO_PROXY: 'other', no_proxy: '*' }), 'http://a:1');
  assert.equal(from({ HTTPS_PROXY: 'a:1', NO_PROXY: '', no_proxy: '*' }), undefined);
  assert.equal(
    proxyFromEnv('http://relay.example/rl', { HTTP_PROXY: 'a:1', NO_PROXY: 'relay.example:80' }),
    undefined,
  );
  assert.equal(
    proxyFromEnv('wss://relay.example/rl/ws', { HTTP_PROXY: 'a:1', NO_PROXY: 'relay.example:443' }),
    undefined,
  );
  // Credentials come through decoded.
  assert.equal(proxyFromEnv(t, { HTTPS_PROXY: 'http://u:p%21@a:1' })?.password, 'p!');
  // A set but unusable value is an error that names the variable, not a silent direct path.
  assert.throws(
    () => proxyFromEnv(t, { https_proxy: 'socks4://a:1' }),
    (e) => isProxyError(e, ProxyErrorCode.INVALID_URL) && e.message.startsWith('https_proxy:'),
  );
  // Explicit wins; false means never.
  const env = { HTTPS_PROXY: 'http://a:1' };
  assert.equal(selectProxy(t, 'http://x:9', env)?.href, 'http://x:9');
  assert.equal(selectProxy(t, false, env), undefined);
  assert.equal(selectProxy(t, undefined, env)?.href, 'http://a:1');
});

// ---- CONNECT against a scripted proxy ----

const waitFor = async (pred: () => boolean, what: string, ms = 3000): Promise<void> => {
  const end = Date.now() + ms;
  while (!pred()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
};

/** An address with nothing listening: a port that was free a moment ago. */
async function deadPort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as AddressInfo).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

test('CONNECT: request form, credentials once asked for, and tunnel bytes that arrive with the answer', async () => {
  const p = await scripted((s, head) => {
    if (!head.includes('Proxy-Authorization:')) {
      // A plain proxy gets no password until it asks; its 407 has a body, skipped.
      s.write(
        'HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic realm="x"\r\nContent-Length: 5\r\n\r\nnope!',
      );
      return true;
    }
    // An interim answer, the final one, and the target's first bytes, all in one write.
    s.write('HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 Connection established\r\n\r\nHELLO');
    s.on('data', (b: Buffer) => s.write(b));
  });
  try {
    const proxy = parseProxyUrl(`http://Aladdin:open%20sesame@127.0.0.1:${p.port}`);
    const sock = await connectViaProxy(proxy, '::1', 51821, {
      headers: { 'User-Agent': 'roamlink-test' },
    });
    assert.equal(p.heads.length, 2, 'a probe, then the request with credentials');
    assert.ok(!p.heads[0]!.includes('Proxy-Authorization'));
    const lines = p.heads[1]!.split('\r\n');
    assert.equal(lines[0], 'CONNECT [::1]:51821 HTTP/1.1');
    assert.ok(lines.includes('Host: [::1]:51821'));
    assert.ok(lines.includes('Proxy-Authorization: Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ=='));
    assert.ok(lines.includes('User-Agent: roamlink-test'));
    assert.equal(p.open(), 1, 'both requests on one connection');
    // The proxy is now known to take Basic: the next tunnel sends it at once.
    const again = await connectViaProxy(proxy, '::1', 51821);
    assert.equal(p.heads.length, 3);
    assert.ok(p.heads[2]!.includes('Proxy-Authorization: Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ=='));
    again.destroy();
    let got = '';
    sock.on('data', (b: Buffer) => {
      got += b.toString();
    });
    sock.write('-echo');
    await waitFor(() => got === 'HELLO-echo', `tunnel bytes (got ${JSON.stringify(got)})`);
    sock.destroy();
  } finally {
    await p.close();
  }
});

test('CONNECT failures: each code, and the connection to the proxy is closed', async () => {
  const cases: [string, (s: Socket) => void, string, number | undefined][] = [
    [
      '407',
      (s) =>
        s.write(
          'HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic realm="x"\r\nContent-Length: 0\r\n\r\n',
        ),
      ProxyErrorCode.AUTH_REQUIRED,
      407,
    ],
    ['403', (s) => s.write('HTTP/1.1 403 Forbidden\r\n\r\n'), ProxyErrorCode.REFUSED, 403],
    ['502', (s) => s.write('HTTP/1.0 502 Bad Gateway\r\n\r\n'), ProxyErrorCode.REFUSED, 502],
    ['not HTTP', (s) => s.write('SSH-2.0-OpenSSH\r\n\r\n'), ProxyErrorCode.BAD_RESPONSE, undefined],
    ['closed', (s) => s.end(), ProxyErrorCode.BAD_RESPONSE, undefined],
    ['reset', (s) => s.resetAndDestroy(), ProxyErrorCode.BAD_RESPONSE, undefined],
    [
      'endless head',
      (s) => s.write(`HTTP/1.1 200 OK\r\nX: ${'a'.repeat(20_000)}`),
      ProxyErrorCode.BAD_RESPONSE,
      undefined,
    ],
    ['silent', () => {}, ProxyErrorCode.TIMEOUT, undefined],
  ];
  for (const [name, answer, code, status] of cases) {
    const p = await scripted(answer);
    try {
      await assert.rejects(connectViaProxy(p.url, '127.0.0.1', 9, { timeoutMs: 200 }), (e) => {
        assert.ok(isProxyError(e, code as ProxyErrorCode), `${name}: ${String(e)}`);
        assert.equal(e.status, status, name);
        return true;
      });
      await waitFor(() => p.open() === 0, `${name}: the proxy connection closed`);
    } finally {
      await p.close();
    }
  }
});

test('CONNECT: aborted by a signal, before and during', async () => {
  const p = await scripted(() => {});
  try {
    const ac = new AbortController();
    const pending = connectViaProxy(p.url, '127.0.0.1', 9, { signal: ac.signal });
    await waitFor(() => p.heads.length === 1, 'the CONNECT at the proxy');
    ac.abort();
    await assert.rejects(pending, (e) => isProxyError(e, ProxyErrorCode.ABORTED));
    await waitFor(() => p.open() === 0, 'the proxy connection closed');
    await assert.rejects(
      connectViaProxy(p.url, '127.0.0.1', 9, { signal: AbortSignal.abort() }),
      (e) => isProxyError(e, ProxyErrorCode.ABORTED),
    );
    assert.equal(p.heads.length, 1);
  } finally {
    await p.close();
  }
});

test('an unreachable proxy: UNREACHABLE from connectViaProxy, the WebSocket and HTTP clients', async () => {
  const port = await deadPort();
  const proxy = `http://127.0.0.1:${port}`;
  await assert.rejects(connectViaProxy(proxy, '127.0.0.1', 9), (e) => {
    assert.ok(isProxyError(e, ProxyErrorCode.UNREACHABLE), String(e));
    assert.match(e.message, /ECONNREFUSED/);
    assert.ok(e.message.includes(proxy));
    return true;
  });
  const ws = new WebSocketTransport({ onDatagram: () => {} });
  await assert.rejects(ws.connect('ws://127.0.0.1:9/rl/ws', {}, { proxy }), (e) =>
    isProxyError(e, ProxyErrorCode.UNREACHABLE),
  );
  await ws.close();
  for (const Client of [HttpStreamClient, HttpPollClient]) {
    const errors: string[] = [];
    const c = new Client({
      baseUrl: 'http://127.0.0.1:9/rl',
      proxy,
      onDatagram: () => {},
      onError: (_p, r) => errors.push(r),
    });
    // Before any connection the view names the proxy, not the relay.
    assert.deepEqual(c.view().remote, { address: '127.0.0.1', port });
    await waitFor(() => errors.length > 0, 'the client failing');
    assert.equal(errors.length, 1);
    assert.match(
      errors[0]!,
      new RegExp(`^http-error: ${ProxyErrorCode.UNREACHABLE}: proxy http://`),
    );
  }
});

test('ProxyAgent: node:http through a tunnel; destroy() ends a tunnel still opening', async () => {
  // A proxy that tunnels to a tiny HTTP responder of its own.
  const p = await scripted((s, head) => {
    assert.match(head, /^CONNECT 127\.0\.0\.1:7777 HTTP\/1\.1/);
    s.write('HTTP/1.1 200 OK\r\n\r\n');
    let req = '';
    s.on('data', (b: Buffer) => {
      req += b.toString();
      if (req.includes('\r\n\r\n')) {
        const line = req.split('\r\n')[0];
        const body = `inner: ${line}`;
        s.end(
          `HTTP/1.1 200 OK\r\nContent-Length: ${body.length}\r\nConnection: close\r\n\r\n${body}`,
        );
      }
    });
  });
  try {
    const agent = new ProxyAgent({ proxy: p.url });
    const body = await new Promise<string>((resolve, reject) => {
      const r = request({ agent, host: '127.0.0.1', port: 7777, path: '/rl/x' }, (res) => {
        let b = '';
        res.on('data', (c: Buffer) => {
          b += c.toString();
        });
        res.on('end', () => resolve(b));
      });
      r.on('error', reject);
      r.end();
    });
    // Origin-form inside the tunnel, never absolute-form.
    assert.equal(body, 'inner: GET /rl/x HTTP/1.1');
    agent.destroy();
  } finally {
    await p.close();
  }

  const silent = await scripted(() => {});
  try {
    const agent = new ProxyAgent({ proxy: silent.url });
    const err = new Promise<Error>((resolve) => {
      const r = request({ agent, host: '127.0.0.1', port: 7777, path: '/' });
      r.on('error', resolve);
      r.end();
    });
    await waitFor(() => silent.heads.length === 1, 'the CONNECT at the proxy');
    agent.destroy();
    assert.ok(isProxyError(await err, ProxyErrorCode.ABORTED));
    await waitFor(() => silent.open() === 0, 'the proxy connection closed');
  } finally {
    await silent.close();
  }
});
