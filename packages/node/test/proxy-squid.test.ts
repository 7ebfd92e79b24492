/**
 * The WebSocket and both RLHTTP/1 clients through a real HTTP proxy (squid, CONNECT tunnels) to
 * real relay-side transports on loopback: once without authentication, once with basic
 * authentication (right credentials carry datagrams; wrong or missing ones give the 407 code;
 * a CONNECT the proxy's policy forbids gives REFUSED with 403); and the HTTP clients in forward
 * mode through a squid that refuses CONNECT, as its default configuration does to any port but
 * 443; and all of it through an https:// squid (TLS to the proxy, its certificate from a test CA),
 * with the errors of an untrusted proxy certificate and of a proxy that does not speak TLS. The
 * proof that traffic went through the proxy: the client's socket ends at the proxy, and squid's
 * access log has the CONNECT or the forwarded requests.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, test } from 'node:test';
import {
  type HttpClientOptions,
  type HttpPathView,
  HttpPollClient,
  HttpRelayTransport,
  HttpStreamClient,
} from '../src/http.ts';
import {
  connectViaProxy,
  isProxyError,
  type ProxyConfig,
  ProxyErrorCode,
  parseProxyUrl,
} from '../src/proxy.ts';
import { WebSocketTransport, WS_PATH, type WsPathView } from '../src/websocket.ts';
import { hasDigestAndNtlmAuth, hasNcsaAuth, hasSquid, type Squid, startSquid } from './squid.ts';

const skip =
  (!hasSquid || !hasNcsaAuth) && !process.env.CI && 'needs squid (scripts/system-deps.sh)';

/** One Node HTTP server with both relay-side transports, echoing every datagram. */
interface Relay {
  port: number;
  ws: WebSocketTransport;
  http: HttpRelayTransport;
  wsOpened: { path: string; view: WsPathView }[];
  wsGot: { d: Uint8Array; path: string }[];
  httpGot: { d: Uint8Array; path: string; view: HttpPathView }[];
  close(): Promise<void>;
}

async function startRelay(): Promise<Relay> {
  const wsOpened: Relay['wsOpened'] = [];
  const wsGot: Relay['wsGot'] = [];
  const httpGot: Relay['httpGot'] = [];
  const http: HttpRelayTransport = new HttpRelayTransport({
    onDatagram: (d, path, view) => {
      httpGot.push({ d, path, view });
      http.send(path, d);
    },
  });
  const ws: WebSocketTransport = new WebSocketTransport({
    onDatagram: (d, path) => {
      wsGot.push({ d, path });
      ws.send(path, d);
    },
    onPathOpen: (path, view) => wsOpened.push({ path, view }),
  });
  const server: Server = createServer((req, res) => {
    if (!http.handle(req, res)) res.writeHead(404, { 'Content-Length': '0' }).end();
  });
  ws.attach(server);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    port: (server.address() as AddressInfo).port,
    ws,
    http,
    wsOpened,
    wsGot,
    httpGot,
    close: async () => {
      http.close();
      await ws.close();
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}

const waitFor = async (pred: () => boolean, what: string, ms = 5000): Promise<void> => {
  const end = Date.now() + ms;
  while (!pred()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
};

const bytes = (...v: number[]): Uint8Array => new Uint8Array(v);

/** WebSocket through `proxy`: datagrams both ways; the views say what the proxy changed. */
async function wsThrough(relay: Relay, squid: Squid, proxy: string | ProxyConfig): Promise<void> {
  const got: Uint8Array[] = [];
  const client = new WebSocketTransport({ onDatagram: (d) => got.push(d) });
  const url = `ws://127.0.0.1:${relay.port}${WS_PATH}`;
  const before = relay.wsOpened.length;
  try {
    const cp = await client.connect(url, { 'User-Agent': 'roamlink-test/1' }, { proxy });
    for (let i = 0; i < 10; i++) assert.ok(client.send(cp, bytes(i, 42)));
    await waitFor(() => got.length === 10, 'ten WebSocket echoes through the proxy');
    assert.deepEqual(
      got.map((d) => d[0]),
      [...Array(10).keys()],
    );
    const rv = relay.wsOpened[before]!.view;
    const cv = client.view(cp)!;
    // The client's socket ends are its connection to the proxy, so the relay's peer is the
    // proxy's own outgoing connection. (Its port is not compared with the client's: Linux may give
    // two connections to different destinations the same ephemeral port, and did here.)
    assert.deepEqual(cv.remote, { address: '127.0.0.1', port: squid.port });
    // The inner request is untouched: the same URL/Host/headers on both sides, no proxy fields.
    assert.equal(cv.url, url);
    assert.equal(cv.host, `127.0.0.1:${relay.port}`);
    assert.equal(rv.host, cv.host);
    assert.equal(rv.url, WS_PATH);
    assert.deepEqual(cv.headers, [['user-agent', 'roamlink-test/1']]);
    assert.ok(rv.headers.some(([k, v]) => k === 'user-agent' && v === 'roamlink-test/1'));
    assert.ok(!rv.headers.some(([k]) => k === 'proxy-authorization' || k === 'via'));
  } finally {
    await client.close();
  }
}

function collector() {
  const got: Uint8Array[] = [];
  const errors: string[] = [];
  let opened = 0;
  const opts: Pick<HttpClientOptions, 'onDatagram' | 'onError' | 'onOpen'> = {
    onDatagram: (d) => got.push(d),
    onError: (_p, r) => errors.push(r),
    onOpen: () => {
      opened++;
    },
  };
  return { got, errors, opts, opened: () => opened };
}

/**
 * Both HTTP clients through `proxy` (CONNECT tunnels, or forward-proxy requests): datagrams both
 * ways, the stream not taken for buffered; then the streaming client's up-stream is tried, and
 * twenty more datagrams go whichever way it ended. Returns what became of the up-stream.
 */
async function httpThrough(
  relay: Relay,
  squid: Squid,
  proxy: string | ProxyConfig,
  proxyMode: 'connect' | 'forward' = 'connect',
): Promise<{ upstream: string; end: string | undefined }> {
  const baseUrl = `http://127.0.0.1:${relay.port}/rl`;
  const s = collector();
  const p = collector();
  const stream = new HttpStreamClient({
    baseUrl,
    proxy,
    proxyMode,
    headers: { 'User-Agent': 'rt' },
    ...s.opts,
  });
  const poll = new HttpPollClient({ baseUrl, proxy, proxyMode, ...p.opts });
  try {
    for (let i = 1; i <= 20; i++) {
      assert.ok(stream.send(bytes(i, 1)));
      assert.ok(poll.send(bytes(i, 2)));
    }
    await waitFor(
      () => (s.got.length === 20 && p.got.length === 20) || s.errors.length + p.errors.length > 0,
      'twenty echoes on each HTTP client through the proxy',
    );
    assert.deepEqual([...s.errors, ...p.errors], []);
    const order = Array.from({ length: 20 }, (_, i) => i + 1);
    assert.deepEqual(
      s.got.map((d) => d[0]),
      order,
    );
    assert.deepEqual(
      p.got.map((d) => d[0]),
      order,
    );
    // The stream-open marker came through the tunnel at once: not "buffered".
    assert.equal(s.opened(), 1);
    assert.equal(p.opened(), 1);
    for (const c of [stream, poll]) {
      const cv = c.view();
      assert.deepEqual(cv.remote, { address: '127.0.0.1', port: squid.port });
      const seen = relay.httpGot.filter((g) => g.path === c.pathId);
      assert.equal(seen.length, 20);
      const rv = seen.at(-1)!.view;
      assert.ok(cv.url.endsWith(rv.url));
      assert.equal(rv.host, cv.host);
      assert.ok(!rv.headers.some(([k]) => k === 'proxy-authorization'));
      // A forward proxy shows in what the relay saw: its Via, and the absolute-form target the
      // client sent made origin-form. Inside a CONNECT tunnel nothing changes.
      const via = rv.headers.some(([k]) => k === 'via');
      assert.equal(via, proxyMode === 'forward');
      if (proxyMode === 'forward') {
        assert.match(cv.url, /^http:\/\//);
        assert.match(rv.url, /^\/rl\/up\?/);
      }
    }
    await waitFor(
      () => stream.upstream === 'live' || stream.upstream === 'refused',
      'the up-stream answered or given up',
    );
    for (let i = 21; i <= 40; i++) assert.ok(stream.send(bytes(i, 1)));
    await waitFor(() => s.got.length === 40 || s.errors.length > 0, 'twenty more echoes');
    assert.deepEqual(s.errors, []);
    assert.deepEqual(
      s.got.map((d) => d[0]),
      Array.from({ length: 40 }, (_, i) => i + 1),
    );
    return { upstream: stream.upstream, end: stream.upstreamEnd };
  } finally {
    stream.close();
    poll.close();
  }
}

describe('through squid without authentication', { skip }, () => {
  let squid: Squid;
  let relay: Relay;
  before(async () => {
    squid = await startSquid();
    relay = await startRelay();
  });
  after(async () => {
    await relay?.close();
    await squid?.stop();
  });

  test('WebSocket carries datagrams through a CONNECT tunnel', async () => {
    await wsThrough(relay, squid, squid.url);
  });

  test('HTTP streaming and polling carry datagrams through CONNECT tunnels', async () => {
    const up = await httpThrough(relay, squid, squid.url);
    // A CONNECT tunnel carries whatever bytes: the up-stream opens and carries the rest.
    assert.deepEqual(up, { upstream: 'live', end: undefined });
    // Squid logs a tunnel when it ends: the clients are closed, so the lines come.
    await waitFor(
      () => squid.accessLog().includes(`CONNECT 127.0.0.1:${relay.port}`),
      'the CONNECT in the access log',
    );
  });

  test('a CONNECT that the proxy forbids: REFUSED with the status', async () => {
    // Only 127.0.0.1 is allowed; the proxy answers 403 without connecting anywhere.
    await assert.rejects(connectViaProxy(squid.url, '127.0.0.2', relay.port), (e) => {
      assert.ok(isProxyError(e, ProxyErrorCode.REFUSED), String(e));
      assert.equal(e.status, 403);
      return true;
    });
  });
});

describe('through squid that refuses CONNECT (as its default does but to port 443)', {
  skip,
}, () => {
  const user = 'roam';
  const password = 'p@ss w0rd';
  let squid: Squid;
  let relay: Relay;
  let good: string;
  before(async () => {
    squid = await startSquid({ auth: { user, password }, connect: false });
    relay = await startRelay();
    good = `http://${user}:${encodeURIComponent(password)}@127.0.0.1:${squid.port}`;
  });
  after(async () => {
    await relay?.close();
    await squid?.stop();
  });

  test('forward mode: no password until the proxy asks; then both HTTP clients carry datagrams with Basic', async () => {
    const proxy = parseProxyUrl(good);
    // The first request goes without credentials: the 407 says Basic, and the path fails.
    const c = collector();
    const first = new HttpPollClient({
      baseUrl: `http://127.0.0.1:${relay.port}/rl`,
      proxy,
      proxyMode: 'forward',
      ...c.opts,
    });
    first.send(bytes(1));
    await waitFor(() => c.errors.length > 0, 'the first client failing');
    assert.match(c.errors[0]!, / 407 /);
    assert.equal(proxy.memory.scheme, 'basic');
    first.close();
    // Dialled again (as the tunnel does), the paths carry Basic. Squid passes a chunked body
    // as it comes and the answer's head before the body ends: the up-stream opens through it.
    assert.deepEqual(await httpThrough(relay, squid, proxy, 'forward'), {
      upstream: 'live',
      end: undefined,
    });
    const log = squid.accessLog();
    assert.match(log, new RegExp(`POST http://127\\.0\\.0\\.1:${relay.port}/rl/up\\?`));
    assert.ok(!log.includes('CONNECT'), log);
  });

  test('CONNECT mode is refused (403); forward mode without credentials gets 407', async () => {
    const baseUrl = `http://127.0.0.1:${relay.port}/rl`;
    for (const [proxy, proxyMode, error] of [
      [
        good,
        'connect',
        new RegExp(`^http-error: ${ProxyErrorCode.REFUSED}: .*refused: 403 Forbidden$`),
      ],
      // The GET or the first POST, whichever the proxy answers first.
      [squid.url, 'forward', /^http-status: (GET|POST) 407 Proxy Authentication Required$/],
    ] as const) {
      const c = collector();
      const client = new HttpStreamClient({ baseUrl, proxy, proxyMode, ...c.opts });
      client.send(bytes(1));
      await waitFor(() => c.errors.length > 0, 'the client failing');
      assert.equal(c.errors.length, 1);
      assert.match(c.errors[0]!, error);
      assert.equal(client.isDone, true);
    }
  });
});

describe('through squid with basic authentication', { skip }, () => {
  // A space, "@", ":" and "/" need percent-encoding in the URL; "ä" checks UTF-8 (RFC 7617 §2.1).
  const user = 'roam user';
  const password = 'p@ss:wörd/ä';
  let squid: Squid;
  let relay: Relay;
  let good: string;
  let bad: string;
  before(async () => {
    squid = await startSquid({ auth: { user, password } });
    relay = await startRelay();
    const at = `127.0.0.1:${squid.port}`;
    good = `http://${encodeURIComponent(user)}:${encodeURIComponent(password)}@${at}`;
    bad = `http://${encodeURIComponent(user)}:wrong@${at}`;
  });
  after(async () => {
    await relay?.close();
    await squid?.stop();
  });

  test('right credentials: WebSocket carries datagrams', async () => {
    await wsThrough(relay, squid, good);
  });

  test('right credentials: both HTTP clients carry datagrams', async () => {
    assert.equal((await httpThrough(relay, squid, good)).upstream, 'live');
  });

  test('wrong or missing credentials: AUTH_REQUIRED (407) from every client', async () => {
    for (const [proxy, sent] of [
      [bad, 'credentials rejected'],
      [squid.url, 'no credentials sent'],
    ] as const) {
      await assert.rejects(connectViaProxy(proxy, '127.0.0.1', relay.port), (e) => {
        assert.ok(isProxyError(e, ProxyErrorCode.AUTH_REQUIRED), String(e));
        assert.equal(e.status, 407);
        assert.ok(e.message.includes(sent), e.message);
        assert.ok(e.message.includes('Basic'), e.message);
        // Credentials never appear in errors.
        assert.ok(!e.message.includes('wrong') && !e.message.includes(user), e.message);
        return true;
      });
    }
    const ws = new WebSocketTransport({ onDatagram: () => {} });
    await assert.rejects(
      ws.connect(`ws://127.0.0.1:${relay.port}${WS_PATH}`, {}, { proxy: bad }),
      (e) => isProxyError(e, ProxyErrorCode.AUTH_REQUIRED),
    );
    await ws.close();
    const baseUrl = `http://127.0.0.1:${relay.port}/rl`;
    for (const Client of [HttpStreamClient, HttpPollClient]) {
      const c = collector();
      const client = new Client({ baseUrl, proxy: bad, ...c.opts });
      client.send(bytes(1));
      await waitFor(() => c.errors.length > 0, 'the client failing');
      assert.equal(c.errors.length, 1);
      assert.match(
        c.errors[0]!,
        new RegExp(
          `^http-error: ${ProxyErrorCode.AUTH_REQUIRED}: .*\\(credentials rejected; proxy offers: Basic`,
        ),
      );
      assert.ok(!c.errors[0]!.includes('wrong'), 'no password in the error');
      assert.equal(client.isDone, true);
    }
  });
});

describe('through an https:// squid (TLS to the proxy)', { skip }, () => {
  const fixtures = new URL('./fixtures/tls/', import.meta.url);
  const ca = readFileSync(new URL('ca.pem', fixtures), 'utf8');
  const user = 'roam';
  const password = 'over tls';
  let squid: Squid;
  let relay: Relay;
  let url: string;
  let trusted: ProxyConfig;
  before(async () => {
    squid = await startSquid({
      auth: { user, password },
      tls: {
        cert: new URL('relay.pem', fixtures).pathname,
        key: new URL('relay.key', fixtures).pathname,
      },
    });
    relay = await startRelay();
    url = `https://${user}:${encodeURIComponent(password)}@127.0.0.1:${squid.port}`;
    trusted = { ...parseProxyUrl(url), tls: { ca: [ca] } };
  });
  after(async () => {
    await relay?.close();
    await squid?.stop();
  });

  test('WebSocket and both HTTP clients carry datagrams through CONNECT inside TLS', async () => {
    assert.equal(trusted.href, `https://127.0.0.1:${squid.port}`);
    await wsThrough(relay, squid, trusted);
    assert.equal((await httpThrough(relay, squid, trusted)).upstream, 'live');
    await waitFor(
      () => squid.accessLog().includes(`CONNECT 127.0.0.1:${relay.port}`),
      'the CONNECT in the access log',
    );
  });

  test('forward mode: the requests go to the proxy over TLS', async () => {
    assert.equal((await httpThrough(relay, squid, trusted, 'forward')).upstream, 'live');
    assert.match(
      squid.accessLog(),
      new RegExp(`POST http://127\\.0\\.0\\.1:${relay.port}/rl/up\\?`),
    );
  });

  test("an untrusted proxy certificate: TLS, with the verifier's code; no check: it works", async () => {
    await assert.rejects(connectViaProxy(url, '127.0.0.1', relay.port), (e) => {
      assert.ok(isProxyError(e, ProxyErrorCode.TLS), String(e));
      assert.match(
        e.message,
        /UNABLE_TO_VERIFY_LEAF_SIGNATURE \(the proxy's certificate is not trusted\)/,
      );
      assert.ok(!e.message.includes(password), e.message);
      return true;
    });
    const s = await connectViaProxy(
      { ...parseProxyUrl(url), tls: { verify: false } },
      '127.0.0.1',
      relay.port,
    );
    s.destroy();
    // The paths fail with the code, not with a certificate error taken for the relay's.
    const c = collector();
    const client = new HttpStreamClient({
      baseUrl: `http://127.0.0.1:${relay.port}/rl`,
      proxy: url,
      ...c.opts,
    });
    client.send(bytes(1));
    await waitFor(() => c.errors.length > 0, 'the client failing');
    assert.equal(c.errors.length, 1);
    assert.match(
      c.errors[0]!,
      new RegExp(`^http-error: ${ProxyErrorCode.TLS}: .*UNABLE_TO_VERIFY_LEAF_SIGNATURE`),
    );
  });

  test('https:// to a proxy port that does not speak TLS: TLS, saying so', async () => {
    // The relay's port answers plain HTTP, as a plain proxy would.
    await assert.rejects(
      connectViaProxy(`https://127.0.0.1:${relay.port}`, '127.0.0.1', relay.port),
      (e) => {
        assert.ok(isProxyError(e, ProxyErrorCode.TLS), String(e));
        assert.match(e.message, /\(the proxy does not speak TLS on that port\)$/);
        return true;
      },
    );
  });
});

const noDigestNtlm = (!hasSquid || !hasDigestAndNtlmAuth) && !process.env.CI && 'needs squid';

describe('through squid asking for Digest (RFC 7616)', { skip: noDigestNtlm }, () => {
  const user = 'roam';
  const password = 'digest pass';
  let squid: Squid;
  let relay: Relay;
  let good: ProxyConfig;
  before(async () => {
    squid = await startSquid({ auth: { user, password, scheme: 'digest' } });
    relay = await startRelay();
    good = parseProxyUrl(`http://${user}:${encodeURIComponent(password)}@127.0.0.1:${squid.port}`);
  });
  after(async () => {
    await relay?.close();
    await squid?.stop();
  });

  test('WebSocket and both HTTP clients carry datagrams; the password never goes as Basic', async () => {
    await wsThrough(relay, squid, good);
    assert.equal(good.memory.scheme, 'digest');
    assert.equal((await httpThrough(relay, squid, good)).upstream, 'live');
    // Squid verified every tunnel's Digest response and logged the user.
    await waitFor(
      () => squid.accessLog().includes(`CONNECT 127.0.0.1:${relay.port} ${user} `),
      'the CONNECT with the user in the access log',
    );
  });

  test('a wrong password: AUTH_REQUIRED, credentials rejected', async () => {
    const bad = `http://${user}:wrong@127.0.0.1:${squid.port}`;
    await assert.rejects(connectViaProxy(bad, '127.0.0.1', relay.port), (e) => {
      assert.ok(isProxyError(e, ProxyErrorCode.AUTH_REQUIRED), String(e));
      assert.match(e.message, /\(credentials rejected; proxy offers: Digest realm="roamlink-test"/);
      return true;
    });
  });
});

// NTLM as itself, and inside Negotiate (squid's wrapper hands NTLM tokens to the same helper).
for (const [scheme, title, what] of [
  [
    'ntlm',
    "through squid asking for NTLM (squid's test helper: any user)",
    'NEGOTIATE and AUTHENTICATE on one connection; squid reads the user from it',
  ],
  [
    'negotiate',
    'through squid asking for Negotiate only (its wrapper, NTLM inside)',
    "NTLM's messages in the Negotiate scheme; squid reads the user from them",
  ],
] as const) {
  describe(title, { skip: noDigestNtlm }, () => {
    let squid: Squid;
    let relay: Relay;
    before(async () => {
      squid = await startSquid({ auth: { user: 'x', password: 'x', scheme } });
      relay = await startRelay();
    });
    after(async () => {
      await relay?.close();
      await squid?.stop();
    });

    test(what, async () => {
      const proxy = parseProxyUrl(`http://CORP%5Croam:secret@127.0.0.1:${squid.port}`);
      await wsThrough(relay, squid, proxy);
      assert.equal(proxy.memory.scheme, scheme);
      assert.equal((await httpThrough(relay, squid, proxy)).upstream, 'live');
      // The fake helper takes the domain and user out of our AUTHENTICATE message (squid's log
      // escapes the backslash).
      await waitFor(
        () => /CONNECT 127\.0\.0\.1:\d+ CORP\\{1,2}roam /.test(squid.accessLog()),
        'the CONNECT with DOMAIN\\user in the access log',
      );
    });
  });
}
