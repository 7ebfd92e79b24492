/**
 * TLS on the WebSocket and HTTP paths, with the real processes: `roamlink relay --tls-cert
 * --tls-key` serves https:// and wss:// on its HTTP port, and `roamlink connect https://...`
 * reaches it given only that URL, as a user reaches a relay behind port 443 or on an edge
 * platform. The certificate comes from a test CA (packages/node/test/fixtures/tls); the client
 * trusts it with --tls-ca, or skips the check with --tls-insecure, or says what is wrong.
 */
import assert from 'node:assert/strict';
import { createHash, randomBytes, X509Certificate } from 'node:crypto';
import { once } from 'node:events';
import { copyFileSync, readFileSync } from 'node:fs';
import { connect as tcpConnect } from 'node:net';
import { join } from 'node:path';
import { test } from 'node:test';
import { connect as tlsConnect } from 'node:tls';
import { fileURLToPath } from 'node:url';
import { hasDigestAndNtlmAuth, hasNcsaAuth, hasSquid } from '../../../packages/node/test/squid.ts';
import {
  clientStatus,
  keygen,
  type Line,
  moveToHttp,
  type Proc,
  relayArgs,
  run,
  sleep,
  stop,
  tcpEcho,
  tempDir,
  withSquidRelay,
} from './cli-process.ts';

const TLS = fileURLToPath(new URL('../../../packages/node/test/fixtures/tls/', import.meta.url));
const CERT = join(TLS, 'relay.pem');
const KEY = join(TLS, 'relay.key');
const CA = join(TLS, 'ca.pem');

/** `n` random bytes through the forward at `address` and back; returns whether all came back. */
async function echoBytes(address: string, n: number): Promise<void> {
  const i = address.lastIndexOf(':');
  const s = tcpConnect(Number(address.slice(i + 1)), address.slice(0, i));
  await once(s, 'connect');
  const data = randomBytes(n);
  const chunks: Buffer[] = [];
  let got = 0;
  const done = new Promise<void>((resolve, reject) => {
    s.on('data', (d: Buffer) => {
      chunks.push(d);
      got += d.length;
      if (got >= n) resolve();
    });
    s.once('close', () => reject(new Error(`closed after ${got} of ${n} bytes`)));
  });
  s.write(data);
  await done;
  s.destroy();
  const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');
  assert.equal(sha(Buffer.concat(chunks)), sha(data), 'every byte back, in order');
}

/** The relay's flags for TLS on its HTTP port (and egress to the echo). */
const TLS_RELAY_FLAGS = ['--tls-cert', CERT, '--tls-key', KEY, '--egress-allow', '127.0.0.1/32'];
/** The URL a client is given for such a relay (localhost: the certificate's name). */
const tlsUrl = (listening: Line): string =>
  `https://localhost:${String(listening.http).split(':').pop()}`;

/** A relay with TLS on its HTTP port, and its URL. */
async function tlsRelay(
  dir: string,
  pub: string,
): Promise<{ relay: Proc; listening: Line; url: string }> {
  const relay = run(relayArgs(dir, pub, TLS_RELAY_FLAGS));
  const listening = await relay.until((l) => l.msg === 'listening', 'relay listening');
  return { relay, listening, url: tlsUrl(listening) };
}

const clientArgs = (url: string, listening: Line, dir: string, extra: string[]): string[] => [
  'connect',
  url,
  '--relay-key',
  String(listening.publicKey),
  '--data-dir',
  join(dir, 'client'),
  '--json-log',
  '--control',
  ...extra,
];

/**
 * A TCP echo, a TLS relay, and a client given its https:// URL and the test CA with a forward
 * to the echo; `body` gets them once the client has registered; everything is stopped after.
 */
async function withTlsForward(
  body: (p: { client: Proc; listening: Line; reg: Line; fwd: string }) => Promise<void>,
): Promise<void> {
  const echo = await tcpEcho();
  const dir = tempDir();
  const pub = await keygen(dir);
  const { relay, listening, url } = await tlsRelay(dir, pub);
  let client: Proc | undefined;
  try {
    const c = run(
      clientArgs(url, listening, dir, ['--tls-ca', CA, '-L', `127.0.0.1:0:127.0.0.1:${echo.port}`]),
    );
    client = c;
    const reg = await c.until((l) => l.msg === 'registered', 'registration over TLS');
    const fwd = String((await c.until((l) => l.msg === 'forward-listening', 'forward')).address);
    await body({ client: c, listening, reg, fwd });
  } finally {
    await stop(relay);
    await stop(client);
    echo.server.close();
  }
}

test('roamlink connect https://...: wss:// and https:// to a relay with --tls-cert, streams survive a move between them', () =>
  withTlsForward(async ({ client, listening, reg, fwd }) => {
    assert.equal(listening.tls, true);
    // A URL relay races WebSocket and HTTP only; WebSocket is the relay's choice.
    assert.equal(reg.encapsulation, 'websocket');
    assert.equal(reg.verdict, 'none', 'nothing between client and relay changed the request');
    await echoBytes(fwd, 4 << 20);
    // A stream opened on wss:// goes on over https:// (HTTP streaming) once WebSocket is gone.
    const i = fwd.lastIndexOf(':');
    const s = tcpConnect(Number(fwd.slice(i + 1)), fwd.slice(0, i));
    await once(s, 'connect');
    s.write('before');
    assert.equal(String((await once(s, 'data'))[0]), 'before');
    await moveToHttp(client, 'over TLS');
    s.write('after');
    assert.equal(String((await once(s, 'data'))[0]), 'after', 'the stream continues over https');
    s.destroy();
    await echoBytes(fwd, 1 << 20);
    // The up-stream (one chunked POST left open) passes TLS too, and then carries the uplink.
    let up: unknown;
    for (let k = 0; k < 50 && up !== 'live'; k++) {
      up = (await clientStatus(client)).httpUpstream;
      if (up !== 'live') await sleep(100);
    }
    assert.equal(up, 'live');
    assert.equal((await clientStatus(client)).tls, true, 'the summary says the path is in TLS');
    await echoBytes(fwd, 1 << 20);
    assert.equal(
      client.lines.filter((l) => l.msg === 'established').length,
      1,
      'the move needed no new handshake',
    );
  }));

test('over TLS, a 32 MiB echo survives its connections being killed again and again, every byte once, one handshake', () =>
  withTlsForward(async ({ client, fwd }) => {
    // Kill the live TLS connections every 300 ms, WebSocket and HTTP in turn, while it runs.
    let kills = 0;
    const killer = setInterval(() => {
      client.send(kills % 2 === 0 ? 'drop ws' : 'drop http');
      kills++;
    }, 300);
    try {
      await echoBytes(fwd, 32 << 20);
    } finally {
      clearInterval(killer);
    }
    assert.ok(kills >= 2, `only ${kills} kills during the transfer`);
    assert.equal(client.lines.filter((l) => l.msg === 'established').length, 1, 'no new handshake');
    const lost = client.lines.filter((l) => l.msg === 'transport-lost').length;
    assert.ok(lost >= 2, `transports lost: ${lost}`);
  }));

test('an untrusted relay certificate: the client says so at once and how to fix it; --tls-insecure connects', async () => {
  const dir = tempDir();
  const pub = await keygen(dir);
  const { relay, listening, url } = await tlsRelay(dir, pub);
  let client: Proc | undefined;
  try {
    client = run(clientArgs(url, listening, dir, []));
    const warned = await client.until((l) => l.msg === 'tls-untrusted', 'the TLS warning', 5000);
    assert.equal(warned.code, 'UNABLE_TO_VERIFY_LEAF_SIGNATURE');
    assert.equal(client.lines.filter((l) => l.msg === 'registered').length, 0);
    await stop(client);
    client = run(clientArgs(url, listening, dir, ['--tls-insecure']));
    const reg = await client.until((l) => l.msg === 'registered', 'registration, unchecked');
    assert.equal(reg.encapsulation, 'websocket');
    // Without --json-log the warning is on stderr, with the fix.
    await stop(client);
    client = run(clientArgs(url, listening, dir, []).filter((a) => a !== '--json-log'));
    for (let i = 0; i < 200 && !client.stderr().includes('not trusted'); i++) await sleep(25);
    assert.match(
      client.stderr(),
      /the relay's TLS certificate is not trusted \(UNABLE_TO_VERIFY_LEAF_SIGNATURE\)\. Trust its CA with --tls-ca FILE, or skip the check with --tls-insecure/,
    );
  } finally {
    await stop(relay);
    await stop(client);
  }
});

test('the relay prints the connect line a client needs; run as printed, it races all four', async () => {
  const dir = tempDir();
  const pub = await keygen(dir);
  const { relay, listening } = await tlsRelay(dir, pub);
  let client: Proc | undefined;
  try {
    const line = String(listening.connect);
    assert.equal(
      line,
      `roamlink connect https://${listening.http} --relay-key ${listening.publicKey} --relay-udp ${listening.udp} --relay-tcp ${listening.tcp}`,
    );
    const [, ...args] = line.split(' ');
    client = run([
      ...args,
      '--tls-ca',
      CA,
      '--data-dir',
      join(dir, 'client'),
      '--json-log',
      '--control',
    ]);
    const reg = await client.until((l) => l.msg === 'registered', 'registration as printed');
    // UDP, named by --relay-udp, is raced too, and the relay prefers it.
    assert.equal(reg.encapsulation, 'udp');
    const st = await clientStatus(client);
    for (const kind of ['udp', 'tcp', 'websocket', 'http-stream']) {
      assert.ok((st.candidates as string[]).includes(kind), `${kind} raced: ${st.candidates}`);
    }
  } finally {
    await stop(relay);
    await stop(client);
  }
});

test('the wrong scheme for the relay: https:// to plain HTTP is said at once; http:// to TLS is hinted in the 10 s notice', async () => {
  const dir = tempDir();
  const pub = await keygen(dir);
  const { relay: tlsR, listening: tlsL } = await tlsRelay(dir, pub);
  const plainDir = tempDir();
  const plainPub = await keygen(plainDir);
  const plainR = run(relayArgs(plainDir, plainPub));
  let a: Proc | undefined;
  let b: Proc | undefined;
  try {
    const plainL = await plainR.until((l) => l.msg === 'listening', 'plain relay listening');
    const plainUrl = `https://${plainL.http}`;
    a = run(clientArgs(plainUrl, plainL, plainDir, []).filter((x) => x !== '--json-log'));
    b = run(clientArgs(`http://${tlsL.http}`, tlsL, dir, []).filter((x) => x !== '--json-log'));
    for (let i = 0; i < 200 && !a.stderr().includes('does not answer in TLS'); i++) await sleep(25);
    assert.match(
      a.stderr(),
      new RegExp(
        `the relay's HTTP port does not answer in TLS \\((EPROTO|ERR_SSL_WRONG_VERSION_NUMBER)\\): if it serves plain HTTP, give it as http://${plainL.http}\\.`,
      ),
    );
    for (let i = 0; i < 600 && !b.stderr().includes('no session'); i++) await sleep(25);
    assert.match(b.stderr(), new RegExp(`give it as https://${tlsL.http}\\.`));
    assert.doesNotMatch(a.stderr(), /serves TLS on that port/);
  } finally {
    await stop(a);
    await stop(b);
    await stop(tlsR);
    await stop(plainR);
  }
});

/** The SHA-256 fingerprint of the certificate a TLS server at 127.0.0.1:port presents now. */
async function presented(port: number): Promise<string> {
  const s = tlsConnect({
    host: '127.0.0.1',
    port,
    servername: 'localhost',
    rejectUnauthorized: false,
  });
  await once(s, 'secureConnect');
  const fp = s.getPeerCertificate().fingerprint256;
  s.destroy();
  return fp;
}

const fingerprintOf = (file: string): string =>
  new X509Certificate(readFileSync(file)).fingerprint256;

test('a renewed certificate is taken up on SIGHUP without a restart; a bad pair is refused and the old one kept', async () => {
  const dir = tempDir();
  const pub = await keygen(dir);
  // The relay's files, replaced in place as a renewal would.
  const cert = join(dir, 'cert.pem');
  const key = join(dir, 'key.pem');
  copyFileSync(CERT, cert);
  copyFileSync(KEY, key);
  const relay = run(relayArgs(dir, pub, ['--tls-cert', cert, '--tls-key', key]));
  let client: Proc | undefined;
  try {
    const listening = await relay.until((l) => l.msg === 'listening', 'relay listening');
    assert.match(String(listening.tlsNotAfter), /^2126-/);
    const port = Number(String(listening.http).split(':').pop());
    assert.equal(await presented(port), fingerprintOf(CERT));
    client = run(clientArgs(`https://localhost:${port}`, listening, dir, ['--tls-ca', CA]));
    await client.until((l) => l.msg === 'registered', 'registration');

    copyFileSync(join(TLS, 'other.pem'), cert);
    copyFileSync(join(TLS, 'other.key'), key);
    relay.child.kill('SIGHUP');
    const reloaded = await relay.until((l) => l.msg === 'tls-reloaded', 'the reload');
    assert.equal(reloaded.why, 'SIGHUP');
    assert.equal(await presented(port), fingerprintOf(join(TLS, 'other.pem')));
    // The session's open connection kept its TLS: the client noticed nothing.
    const st = await clientStatus(client);
    assert.equal(st.encapsulation, 'websocket');
    assert.equal(st.handovers, 0);

    // Half a renewal: the new certificate beside the old key. Refused; the relay keeps serving.
    copyFileSync(CERT, cert);
    relay.child.kill('SIGHUP');
    const failed = await relay.until((l) => l.msg === 'tls-reload-failed', 'the refused reload');
    assert.match(String(failed.error), /not a PEM certificate and its key/);
    assert.equal(await presented(port), fingerprintOf(join(TLS, 'other.pem')));
    assert.equal(relay.child.exitCode, null, 'the relay still runs');
  } finally {
    await stop(relay);
    await stop(client);
  }
});

test('roamlink relay: --tls-cert without --tls-key, or a key that is not the certificate’s, is a usage error', async () => {
  const dir = tempDir();
  const alone = run(relayArgs(dir, 'any', ['--tls-cert', CERT]));
  assert.equal(await alone.exited, 2);
  assert.match(alone.stderr(), /tls-cert is set without tls-key/);
  // The CA's certificate with the relay's key: a pair that does not match.
  const wrong = run(relayArgs(dir, 'any', ['--tls-cert', CA, '--tls-key', KEY]));
  assert.equal(await wrong.exited, 2);
  assert.match(wrong.stderr(), /are not a PEM certificate and its key/);
});

test('roamlink connect: a bad relay URL, --tls-ca or --proxy-ca file is a usage error before anything starts', async () => {
  const dir = tempDir();
  const key = '00'.repeat(32);
  for (const [args, message] of [
    [['ftp://relay.example'], /scheme ftp: is not http\(s\) or ws\(s\)/],
    [['https://u:p@relay.example'], /takes no credentials/],
    [['https://relay.example/?x=1'], /takes no query or fragment/],
    [['https://relay.example', '--tls-ca', join(dir, 'missing.pem')], /--tls-ca: cannot read/],
    [['https://relay.example', '--tls-ca', KEY], /--tls-ca: .* holds no PEM certificate/],
    [['https://relay.example', '--proxy-ca', KEY], /--proxy-ca: .* holds no PEM certificate/],
    [['https://relay.example', '--proxy', 'socks4://p:1080'], /--proxy: .*scheme socks4:/],
    [['https://relay.example', '--no-ws', '--no-http'], /every encapsulation is turned off/],
  ] as const) {
    const c = run(['connect', ...args, '--relay-key', key, '--data-dir', join(dir, 'client')]);
    assert.equal(await c.exited, 2, args.join(' '));
    assert.match(c.stderr(), message);
  }
});

test('roamlink connect: TLS flags that nothing uses are said to do nothing', async () => {
  const dir = tempDir();
  for (const [flags, message] of [
    // The relay is not an https:// URL.
    [
      ['--tls-insecure'],
      /--tls-ca\/--tls-insecure have no effect: the relay is not an https:\/\/ URL/,
    ],
    // No https:// proxy (--proxy http://, so the environment's proxies do not count).
    [
      ['--proxy', 'http://127.0.0.1:9', '--proxy-insecure'],
      /--proxy-ca\/--proxy-insecure have no effect: no https:\/\/ proxy is configured/,
    ],
  ] as const) {
    const c = run([
      'connect',
      '127.0.0.1:9',
      '--relay-key',
      '00'.repeat(32),
      '--data-dir',
      join(dir, 'client'),
      ...flags,
      '--duration-s',
      '1',
    ]);
    await c.exited;
    assert.match(c.stderr(), message);
  }
});

/**
 * A client started through a proxy (`squid`) registers over WebSocket, echoes 1 MiB through its
 * forward, moves to HTTP (`disable ws`) and echoes 1 MiB more, with one handshake; it is stopped,
 * and squid's access log, once it shows the CONNECT to the relay, is returned.
 */
async function wsThenHttp(
  client: Proc,
  listening: Line,
  squid: { accessLog(): string },
  via: string,
): Promise<string> {
  const reg = await client.until((l) => l.msg === 'registered', `registration via ${via}`);
  assert.equal(reg.encapsulation, 'websocket');
  const fwd = String((await client.until((l) => l.msg === 'forward-listening', 'forward')).address);
  await echoBytes(fwd, 1 << 20);
  await moveToHttp(client, `via ${via}`);
  await echoBytes(fwd, 1 << 20);
  assert.equal(client.lines.filter((l) => l.msg === 'established').length, 1, 'one handshake');
  await stop(client);
  const port = String(listening.http).split(':').pop();
  for (let i = 0; i < 40 && !squid.accessLog().includes('CONNECT'); i++) await sleep(50);
  const log = squid.accessLog();
  assert.match(log, new RegExp(`CONNECT localhost:${port}`));
  return log;
}

const noSquid =
  (!hasSquid || !hasNcsaAuth) && !process.env.CI && 'needs squid (scripts/system-deps.sh)';

/** squid and a TLS relay (withSquidRelay), with the URL a client is given. */
function withSquidAndTlsRelay(
  opts: Parameters<typeof withSquidRelay>[0],
  body: (p: Parameters<Parameters<typeof withSquidRelay>[2]>[0] & { url: string }) => Promise<void>,
): Promise<void> {
  return withSquidRelay(opts, TLS_RELAY_FLAGS, (p) => body({ ...p, url: tlsUrl(p.listening) }));
}

test(
  'https:// through squid: WebSocket and HTTP each in a CONNECT tunnel, TLS inside; the proxy sees no request of ours',
  {
    skip: noSquid,
  },
  () =>
    withSquidAndTlsRelay(
      { auth: { user: 'roam', password: 'tls pass' } },
      async ({ squid, url, listening, dir, forward, track }) => {
        const proxy = `http://roam:${encodeURIComponent('tls pass')}@127.0.0.1:${squid.port}`;
        const client = track(
          run(clientArgs(url, listening, dir, ['--tls-ca', CA, '--proxy', proxy, ...forward])),
        );
        const log = await wsThenHttp(client, listening, squid, 'squid');
        // Plain http paths go to squid as forward requests (POST http://...); https ones cannot.
        assert.doesNotMatch(log, /POST|GET http/);
      },
    ),
);

test(
  "https:// relay through an https:// proxy: TLS inside TLS; an untrusted proxy certificate is named as the proxy's",
  {
    skip: noSquid,
  },
  () =>
    withSquidAndTlsRelay(
      // The proxy's certificate comes from the same test CA (and names 127.0.0.1).
      { auth: { user: 'roam', password: 'tls pass' }, tls: { cert: CERT, key: KEY } },
      async ({ squid, url, listening, dir, forward, track }) => {
        const proxy = `https://roam:${encodeURIComponent('tls pass')}@127.0.0.1:${squid.port}`;
        const args = clientArgs(url, listening, dir, [
          '--tls-ca',
          CA,
          '--proxy',
          proxy,
          ...forward,
        ]);
        // The relay's CA is given, not the proxy's: the warning is the proxy's, with its flags.
        let client = track(run(args));
        const warned = await client.until(
          (l) => l.msg === 'proxy-tls-failed',
          'the proxy TLS warning',
          5000,
        );
        assert.equal(warned.code, 'UNABLE_TO_VERIFY_LEAF_SIGNATURE');
        assert.equal(client.lines.filter((l) => l.msg === 'tls-untrusted').length, 0);
        await stop(client);
        client = track(run(args.filter((a) => a !== '--json-log')));
        for (let i = 0; i < 200 && !client.stderr().includes('proxy'); i++) await sleep(25);
        assert.match(
          client.stderr(),
          /the https:\/\/ proxy: its certificate is not trusted \(UNABLE_TO_VERIFY_LEAF_SIGNATURE\)\. Trust its CA with --proxy-ca FILE, or skip the check with --proxy-insecure\./,
        );
        await stop(client);
        client = track(run([...args, '--proxy-ca', CA]));
        await wsThenHttp(client, listening, squid, 'the https proxy');
      },
    ),
);

test(
  'through an NTLM proxy, a 64 MiB echo survives its tunnels being killed again and again, every byte once, one handshake',
  {
    skip: (!hasSquid || !hasDigestAndNtlmAuth) && !process.env.CI && 'needs squid',
  },
  () =>
    withSquidAndTlsRelay(
      { auth: { user: 'x', password: 'x', scheme: 'ntlm' } },
      async ({ squid, url, listening, dir, forward, track }) => {
        const proxy = `http://CORP%5Croam:secret@127.0.0.1:${squid.port}`;
        const client = track(
          run(clientArgs(url, listening, dir, ['--tls-ca', CA, '--proxy', proxy, ...forward])),
        );
        await client.until((l) => l.msg === 'registered', 'registration through the NTLM proxy');
        const fwd = String(
          (await client.until((l) => l.msg === 'forward-listening', 'forward')).address,
        );
        // Every new tunnel goes through NTLM's handshake again (the proxy remembered as NTLM).
        let kills = 0;
        const kill = (): void => {
          client.send(kills % 2 === 0 ? 'drop ws' : 'drop http');
          kills++;
        };
        // The first as the transfer starts, then every 200 ms.
        const killer = setInterval(kill, 200);
        setTimeout(kill, 20);
        try {
          await echoBytes(fwd, 64 << 20);
        } finally {
          clearInterval(killer);
        }
        assert.ok(kills >= 2, `only ${kills} kills during the transfer`);
        assert.equal(
          client.lines.filter((l) => l.msg === 'established').length,
          1,
          'no new handshake',
        );
        assert.deepEqual((await clientStatus(client)).proxy, {
          href: `http://127.0.0.1:${squid.port}`,
          mode: 'connect',
          auth: 'ntlm',
        });
      },
    ),
);
