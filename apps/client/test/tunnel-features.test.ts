/**
 * The tunnel's features with the real `roamlink relay` and `roamlink connect` processes on
 * loopback: SOCKS5 UDP ASSOCIATE (RFC 1928 §7) to a UDP echo server, a `-L` forward carrying
 * 8 MiB, the relay's egress policy as SOCKS replies (§6), Prometheus metrics, graceful shutdown
 * (GOAWAY), the CLI's usage and exit codes, and a 5 s UDP outage that a stream rides out.
 */
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { createSocket, type Socket as UdpSocket } from 'node:dgram';
import { once } from 'node:events';
import { existsSync, readdirSync, writeFileSync } from 'node:fs';
import { type Server, type Socket, connect as tcpConnect } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { byteReader } from '../../../packages/node/test/byte-reader.ts';
import {
  hasDigestAndNtlmAuth,
  hasNcsaAuth,
  hasSquid,
  type Squid,
} from '../../../packages/node/test/squid.ts';
import {
  clientStatus,
  connectArgs,
  hostPort,
  keygen,
  type Line,
  moveToHttp,
  type Proc,
  relayArgs,
  roundTrip,
  run,
  sleep,
  stop,
  tcpEcho,
  tempDir,
  withRelay,
  withSquidRelay,
} from './cli-process.ts';

// --- Local servers ------------------------------------------------------------------------------

/** A UDP echo server on 127.0.0.1. */
async function udpEcho(): Promise<{ socket: UdpSocket; port: number }> {
  const socket = createSocket('udp4');
  socket.on('message', (msg, from) => socket.send(msg, from.port, from.address));
  socket.bind(0, '127.0.0.1');
  await once(socket, 'listening');
  return { socket, port: socket.address().port };
}

// --- Processes ----------------------------------------------------------------------------------

interface Pair {
  relay: Proc;
  client: Proc;
  listening: Line;
}

/** A relay and a client connected to it, the client registered. */
async function startPair(relayExtra: string[], clientExtra: string[]): Promise<Pair> {
  const dir = tempDir();
  const pub = await keygen(dir);
  const relay = run(relayArgs(dir, pub, relayExtra));
  const listening = await relay.until((l) => l.msg === 'listening', 'relay listening');
  const client = run(connectArgs(listening, dir, clientExtra));
  await client.until((l) => l.msg === 'registered', 'registration');
  return { relay, client, listening };
}

/**
 * The relay first: its graceful shutdown waits for open streams, and a stream whose last ACK the
 * client never sent (it exited first) would hold it for the whole grace period.
 */
async function stopPair(p: Pair | undefined): Promise<void> {
  await stop(p?.relay);
  await stop(p?.client);
}

/**
 * One round trip through a forward to the echo server: connects to `address` (host:port),
 * sends `text` and asserts it comes back. Returns the connection, still open.
 */
async function echoThrough(address: string, text: string, what?: string): Promise<Socket> {
  const { reply, socket } = await roundTrip(address, text);
  assert.equal(reply, text, what);
  return socket;
}

// --- A hand-built SOCKS5 client (RFC 1928) -------------------------------------------------------

function socksAddress(host: string, port: number): Buffer {
  const p = Buffer.alloc(2);
  p.writeUInt16BE(port);
  if (/^\d+\.\d+\.\d+\.\d+$/.test(host)) {
    return Buffer.concat([Buffer.from([0x01]), Buffer.from(host.split('.').map(Number)), p]);
  }
  const name = Buffer.from(host);
  return Buffer.concat([Buffer.from([0x03, name.length]), name, p]);
}

/**
 * Greets (no authentication), sends one request (`cmd` 0x01 CONNECT or 0x03 UDP ASSOCIATE) and
 * reads the reply; the control socket stays open for the caller.
 */
async function socksRequest(
  socks: string,
  cmd: number,
  host: string,
  port: number,
): Promise<{ rep: number; bound: { host: string; port: number }; socket: Socket }> {
  const { host: sh, port: sp } = hostPort(socks);
  const socket = tcpConnect(sp, sh);
  socket.on('error', () => {});
  const read = byteReader(socket);
  await once(socket, 'connect');
  socket.write(Buffer.from([0x05, 0x01, 0x00]));
  assert.deepEqual([...(await read(2))], [0x05, 0x00], 'method: no authentication');
  socket.write(Buffer.concat([Buffer.from([0x05, cmd, 0x00]), socksAddress(host, port)]));
  const head = await read(4);
  assert.equal(head[0], 0x05, 'reply version');
  assert.equal(head[3], 0x01, 'bound address is IPv4');
  const rest = await read(6);
  return {
    rep: head[1]!,
    bound: { host: [...rest.subarray(0, 4)].join('.'), port: rest.readUInt16BE(4) },
    socket,
  };
}

// --- Features through one relay and client --------------------------------------------------------

describe('one relay and client: SOCKS5 UDP ASSOCIATE, -L forward, metrics', () => {
  let pair: Pair | undefined;
  let tcp: { server: Server; port: number };
  let udp: { socket: UdpSocket; port: number };
  let socks: string;
  let forward: string;

  before(async () => {
    tcp = await tcpEcho();
    udp = await udpEcho();
    pair = await startPair(
      ['--egress-allow', '127.0.0.1/32', '--metrics'],
      ['--socks', '127.0.0.1:0', '-L', `127.0.0.1:0:127.0.0.1:${tcp.port}`],
    );
    socks = String((await pair.client.until((l) => l.msg === 'socks-listening', 'SOCKS')).address);
    const fwd = await pair.client.until((l) => l.msg === 'forward-listening', 'forward');
    assert.equal(fwd.spec, `127.0.0.1:0:127.0.0.1:${tcp.port}`);
    assert.match(String(fwd.address), /^127\.0\.0\.1:[1-9]\d*$/, 'the bound port is logged');
    forward = String(fwd.address);
  });

  after(async () => {
    await stopPair(pair);
    tcp?.server.close();
    udp?.socket.close();
  });

  test('UDP ASSOCIATE: datagrams reach a UDP echo server through the relay and come back', async () => {
    const { rep, bound, socket } = await socksRequest(socks, 0x03, '0.0.0.0', 0);
    assert.equal(rep, 0x00, 'UDP ASSOCIATE succeeded');
    assert.equal(bound.host, '127.0.0.1');
    assert.ok(bound.port > 0, 'a relay port for the datagrams');
    const u = createSocket('udp4');
    u.bind(0, '127.0.0.1');
    await once(u, 'listening');
    const replies: Buffer[] = [];
    u.on('message', (m) => replies.push(m));
    try {
      const header = Buffer.concat([Buffer.from([0, 0, 0]), socksAddress('127.0.0.1', udp.port)]);
      const sizes = [1, 64, 300, 512, 1000, 1200];
      for (let i = 0; i < sizes.length; i++) {
        const payload = randomBytes(sizes[i]!);
        let got: Buffer | undefined;
        // Datagrams are unreliable: up to three tries, each waiting 1.5 s for the echo.
        for (let attempt = 0; attempt < 3 && !got; attempt++) {
          const before = replies.length;
          u.send(Buffer.concat([header, payload]), bound.port, bound.host);
          const until = Date.now() + 1500;
          while (!got && Date.now() < until) {
            await sleep(10);
            got = replies.slice(before).find((r) => r.subarray(10).equals(payload));
          }
        }
        assert.ok(got, `echo of the ${sizes[i]}-byte datagram came back`);
        // RSV 0, FRAG 0, then the sender: the echo server's address and port.
        assert.deepEqual(got.subarray(0, 10), header, 'reply header names the echo server');
      }
    } finally {
      u.close();
      socket.destroy();
    }
  });

  test('-L forward carries 8 MiB to a TCP echo server and back, sha256 intact', async () => {
    const TOTAL = 8 * 1024 * 1024;
    const data = randomBytes(TOTAL);
    const { host, port } = hostPort(forward);
    const s = tcpConnect(port, host);
    const h = createHash('sha256');
    let got = 0;
    s.on('data', (d: Buffer) => {
      got += d.length;
      h.update(d);
    });
    const ended = once(s, 'end');
    await once(s, 'connect');
    const started = performance.now();
    s.end(data);
    await ended;
    const ms = performance.now() - started;
    s.destroy();
    assert.equal(got, TOTAL, 'every byte came back');
    assert.equal(
      h.digest('hex'),
      createHash('sha256').update(data).digest('hex'),
      'sha256 of the echo matches what was sent',
    );
    console.log(`# 8 MiB each way through -L in ${ms.toFixed(0)} ms`);
  });

  test('GET /metrics: Prometheus text with one session and counted TCP streams', async () => {
    const url = `http://${String(pair!.listening.http)}/metrics`;
    const scrape = async (): Promise<string> => {
      const r = await fetch(url);
      assert.equal(r.status, 200);
      assert.match(r.headers.get('content-type') ?? '', /^text\/plain; version=0\.0\.4/);
      return r.text();
    };
    const opened = (text: string): number => {
      const m = /^roamlink_streams_opened_total\{protocol="tcp"\} (\d+)$/m.exec(text);
      return m ? Number(m[1]) : 0;
    };
    const first = await scrape();
    assert.match(first, /^# TYPE roamlink_sessions gauge$/m);
    assert.match(first, /^roamlink_sessions 1$/m, 'the one client is a session');
    const before = opened(first);

    // One more stream: a round trip through the forward.
    (await echoThrough(forward, 'ping')).destroy();

    const second = await scrape();
    assert.equal(opened(second), before + 1, `one more TCP stream counted:\n${second}`);
    assert.match(second, /^roamlink_sessions 1$/m);
    // Bytes by encapsulation: the client's traffic shows on the one it registered on.
    const bytes = (text: string, dir: string): number =>
      [
        ...text.matchAll(
          new RegExp(`^roamlink_${dir}_bytes_total\\{encapsulation="[a-z-]+"\\} (\\d+)$`, 'gm'),
        ),
      ]
        .map((m) => Number(m[1]))
        .reduce((a, b) => a + b, 0);
    assert.ok(bytes(second, 'received') > bytes(first, 'received'), 'bytes received counted');
    assert.ok(bytes(second, 'sent') > bytes(first, 'sent'), 'bytes sent counted');
    // The client registered its paths: counted by encapsulation and verdict (on loopback
    // nothing translates). These stayed at 0 while the relay listened for the client's event.
    const count = (text: string, re: RegExp): number => Number(re.exec(text)?.[1] ?? 0);
    assert.ok(count(second, /^roamlink_registrations_total\{encapsulation="udp"\} (\d+)$/m) >= 1);
    assert.ok(count(second, /^roamlink_verdicts_total\{verdict="none"\} (\d+)$/m) >= 1);
  });

  test('GET /metrics: the RTT histogram fills from sessions with traffic (one look every 10 s)', {
    timeout: 30_000,
  }, async () => {
    const url = `http://${String(pair!.listening.http)}/metrics`;
    const deadline = Date.now() + 15_000;
    let text = '';
    for (;;) {
      // Traffic, so that the stream layer has fresh RTT samples when the relay looks.
      (await echoThrough(forward, 'rtt')).destroy();
      text = await (await fetch(url)).text();
      if (/^roamlink_rtt_seconds_count\{encapsulation="udp"\} [1-9]/m.test(text)) break;
      assert.ok(Date.now() < deadline, `no RTT sample in 15 s:\n${text}`);
      await new Promise((r) => setTimeout(r, 500));
    }
    const sum = Number(/^roamlink_rtt_seconds_sum\{encapsulation="udp"\} (\S+)$/m.exec(text)?.[1]);
    // A loopback round trip: more than nothing, far under a second.
    assert.ok(sum > 0 && sum < 1, `rtt sum ${sum}`);
  });
});

// --- Egress policy --------------------------------------------------------------------------------

test('egress: private ranges are refused by default (0x02), unresolvable names get 0x04', async () => {
  const tcp = await tcpEcho();
  let pair: Pair | undefined;
  try {
    // No --egress-allow: 127.0.0.1 is in a special-purpose range, denied by default.
    pair = await startPair([], ['--socks', '127.0.0.1:0']);
    const { client, relay } = pair;
    const socks = String((await client.until((l) => l.msg === 'socks-listening', 'SOCKS')).address);
    // The relay's log names the suite (and verdicts) as the client's does, not by wire code.
    const established = await relay.until((l) => l.msg === 'established', 'established');
    const clientEstablished = await client.until((l) => l.msg === 'established', 'established');
    assert.equal(established.suite, clientEstablished.suite);
    assert.match(String(established.suite), /^(aes-256-gcm|chacha20-poly1305)$/);

    const denied = await socksRequest(socks, 0x01, '127.0.0.1', tcp.port);
    assert.equal(denied.rep, 0x02, 'connection not allowed by ruleset');
    denied.socket.destroy();
    const refused = await relay.until(
      (l) => l.msg === 'stream-refused' && l.target === `127.0.0.1:${tcp.port}`,
      'stream-refused for 127.0.0.1',
    );
    assert.equal(refused.code, 1, 'StreamError.POLICY');
    assert.ok(typeof refused.reason === 'string' && refused.reason.length > 0, 'with a reason');

    const unknown = await socksRequest(socks, 0x01, 'no-such-host.invalid', 80);
    assert.equal(unknown.rep, 0x04, 'host unreachable');
    unknown.socket.destroy();
    const dns = await relay.until(
      (l) => l.msg === 'stream-refused' && l.target === 'no-such-host.invalid:80',
      'stream-refused for the unresolvable name',
    );
    assert.equal(dns.code, 8, 'StreamError.DNS');
    assert.ok(typeof dns.reason === 'string' && dns.reason.length > 0, 'with a reason');

    // The client lives on and still answers.
    assert.equal(client.child.exitCode, null, 'client still running');
    assert.equal((await clientStatus(client)).state, 'established');
  } finally {
    await stopPair(pair);
    tcp.server.close();
  }
});

// --- Graceful shutdown ----------------------------------------------------------------------------

test('SOCKS5 on IPv6 loopback: its address is logged as [::1]:port, and it answers there', async () => {
  let pair: Pair | undefined;
  try {
    pair = await startPair([], ['--socks', '[::1]:0']);
    const at = String(
      (await pair.client.until((l) => l.msg === 'socks-listening', 'SOCKS')).address,
    );
    const m = /^\[::1\]:(\d+)$/.exec(at);
    assert.ok(m, `in brackets, as curl --socks5-hostname takes it: ${at}`);
    // RFC 1928 §3: a greeting offering "no authentication" gets version 5, method 0.
    const s = tcpConnect(Number(m[1]), '::1');
    await once(s, 'connect');
    s.write(Uint8Array.of(5, 1, 0));
    const [hello] = (await once(s, 'data')) as [Buffer];
    assert.deepEqual([...hello], [5, 0]);
    s.destroy();
  } finally {
    await stopPair(pair);
  }
});

test('SIGTERM: the relay sends GOAWAY (the client logs it) and exits 0 within its grace period', async () => {
  const GRACE = 1500;
  const tcp = await tcpEcho();
  let pair: Pair | undefined;
  let s: Socket | undefined;
  try {
    pair = await startPair(
      ['--egress-allow', '127.0.0.1/32', '--shutdown-grace-ms', String(GRACE)],
      ['-L', `127.0.0.1:0:127.0.0.1:${tcp.port}`],
    );
    const { client, relay } = pair;
    const fwd = await client.until((l) => l.msg === 'forward-listening', 'forward');
    const { host, port } = hostPort(String(fwd.address));
    s = tcpConnect(port, host);
    s.on('error', () => {});
    await once(s, 'connect');
    s.write('open');
    await once(s, 'data'); // the stream is open end to end

    const started = performance.now();
    relay.child.kill('SIGTERM');
    const goaway = await client.until((l) => l.msg === 'goaway', 'goaway', GRACE + 2000);
    assert.equal(goaway.level, 'warn');
    // Within the grace period the open stream still carries data.
    s.write('still');
    const [late] = (await once(s, 'data')) as [Buffer];
    assert.equal(late.toString(), 'still', 'the open stream works after GOAWAY');
    const code = await Promise.race([relay.exited, sleep(GRACE + 3000).then(() => 'timeout')]);
    const ms = performance.now() - started;
    assert.equal(code, 0, `relay exit: ${relay.stderr()}`);
    assert.ok(ms < GRACE + 3000, `relay exited after ${ms.toFixed(0)} ms`);
    assert.ok(
      relay.lines.some((l) => l.msg === 'shutdown' && l.graceMs === GRACE),
      'relay logged its shutdown',
    );
    console.log(`# relay exited ${ms.toFixed(0)} ms after SIGTERM (grace ${GRACE} ms)`);
  } finally {
    s?.destroy();
    await stopPair(pair);
    tcp.server.close();
  }
});

// --- CLI ------------------------------------------------------------------------------------------

test('CLI: --help, usage errors and a relay that does not answer', async () => {
  const help = run(['--help']);
  assert.equal(await help.exited, 0);
  assert.match(help.lines.map((l) => l.raw).join('\n'), /^usage:/);
  assert.ok(help.lines.some((l) => String(l.raw).includes('roamlink connect')));

  const noArgs = run(['connect']);
  assert.equal(await noArgs.exited, 2, 'connect without a relay is a usage error');
  assert.match(noArgs.stderr(), /expected one relay address/);

  const badKey = run(['connect', '127.0.0.1:1', '--relay-key', 'zz', '--data-dir', tempDir()]);
  assert.equal(await badKey.exited, 2, 'a malformed relay key is a usage error');
  assert.match(badKey.stderr(), /--relay-key: a public key is 64 hex characters/);

  // Addresses are checked before anything starts: usage errors, named by their flag.
  const key = ['--relay-key', 'ab'.repeat(32), '--data-dir', tempDir()];
  for (const [args, said] of [
    [['-L', '1:2'], /invalid forward "1:2"/],
    [['--socks', 'nohost'], /--socks: expected host:port/],
    [['--relay-http', '127.0.0.1:0'], /--relay-http: bad port/],
    [['--relay-tcp', 'x'], /--relay-tcp: expected host:port/],
  ] as const) {
    const p = run(['connect', '127.0.0.1:1', ...key, ...args]);
    assert.equal(await p.exited, 2, `${args.join(' ')} is a usage error`);
    assert.match(p.stderr(), said);
  }

  // A relay that allows nobody says so (clients only ever see silence).
  const lonely = run([
    'relay',
    '--udp',
    '127.0.0.1:0',
    '--http',
    '127.0.0.1:0',
    '--data-dir',
    tempDir(),
    '--log-format',
    'json',
  ]);
  const warned = await lonely.until((l) => l.msg === 'no-client-allowed', 'the warning');
  assert.equal(warned.level, 'warn');
  assert.match(String(warned.hint), /--allow-client/);
  // A client knocking gets silence; the operator gets its key, once (not once per retry).
  const knockDir = tempDir();
  const knockPub = await keygen(knockDir);
  const lonelyAt = await lonely.until((l) => l.msg === 'listening', 'listening');
  const knocker = run([
    'connect',
    String(lonelyAt.udp),
    '--relay-key',
    String(lonelyAt.publicKey),
    '--no-tcp',
    '--no-ws',
    '--no-http',
    '--duration-s',
    '3',
    '--data-dir',
    join(knockDir, 'client'),
    '--json-log',
  ]);
  const refusedLine = await lonely.until((l) => l.msg === 'client-refused', 'the refusal');
  assert.equal(refusedLine.publicKey, knockPub);
  assert.equal(refusedLine.reason, 'not on the allow-list');
  assert.equal(await knocker.exited, 3, 'never answered');
  assert.equal(lonely.lines.filter((l) => l.msg === 'client-refused').length, 1);
  await stop(lonely);

  const bogus = run(['relay', '--bogus']);
  assert.equal(await bogus.exited, 2, 'an unknown relay flag is a usage error');
  assert.match(bogus.stderr(), /--bogus/);

  // UDP only, nothing listening: the socket opens (UDP has no connection to fail), the handshake
  // never completes, and --duration-s ends the client: exit 3, "relay unreachable" (nothing ever
  // answered: a dead port and a wrong key look the same), with the summary saying it was still
  // handshaking. Exit 1 is for a session that was up and then failed.
  const dir = tempDir();
  const started = performance.now();
  const dead = run([
    'connect',
    '127.0.0.1:1',
    '--relay-key',
    'ab'.repeat(32),
    '--no-tcp',
    '--no-ws',
    '--no-http',
    '--duration-s',
    '2',
    '--data-dir',
    dir,
    '--json-log',
  ]);
  assert.equal(await dead.exited, 3, dead.stderr());
  const ms = performance.now() - started;
  const summary = dead.lines.find((l) => l.summary !== undefined)?.summary as Line | undefined;
  assert.equal(summary?.state, 'handshaking', JSON.stringify(summary));
  assert.equal(summary?.handshakes, 0);
  assert.ok(ms >= 2000 && ms < 8000, `stopped after --duration-s (${ms.toFixed(0)} ms)`);
});

/**
 * A relay's key and ports without the relay: started once to learn them (its `listening` line),
 * then stopped, so that a client can start while it is gone.
 */
async function relayGone(): Promise<{ dir: string; pub: string; listening: Line }> {
  const dir = tempDir();
  const pub = await keygen(dir);
  const relay = run(relayArgs(dir, pub));
  const listening = await relay.until((l) => l.msg === 'listening', 'relay listening');
  await stop(relay);
  return { dir, pub, listening };
}

/** The relay of `relayGone` again: same key, same ports. */
async function relayBack(
  g: { dir: string; pub: string; listening: Line },
  extra: string[] = [],
): Promise<Proc> {
  const ports = [g.listening.udp, g.listening.tcp, g.listening.http].map(String);
  const relay = run(
    relayArgs(g.dir, g.pub, extra).map((a) => (a === '127.0.0.1:0' ? ports.shift()! : a)),
  );
  await relay.until((l) => l.msg === 'listening', 'relay listening again');
  return relay;
}

test('a relay not there yet: every transport backs off, no moves are counted, a notice after 10 s names what each saw, and the session comes up with the relay', {
  timeout: 60_000,
}, async () => {
  const gone = await relayGone();
  const client = run(connectArgs(gone.listening, gone.dir));
  let relay: Proc | undefined;
  try {
    const notice = await client.until((l) => l.msg === 'relay-unanswered', 'the notice', 20_000);
    assert.deepEqual(notice.transports, [
      'udp: no answer',
      'tcp: ECONNREFUSED',
      'ws: ECONNREFUSED',
      'http: ECONNREFUSED',
    ]);
    // Redials wait 250 ms, doubling up to 8 s: about 6 tries per transport in 10 s. An HTTP path
    // used to count as dialled (its "dial" opens no socket), so HTTP went again every 250 ms.
    const tries = (kind: string): number =>
      client.lines.filter(
        (l) => l.kind === kind && (l.msg === 'transport-lost' || l.msg === 'dial-failed'),
      ).length;
    // Two HTTP paths (streaming and polling) fail per try.
    assert.ok(tries('http') >= 4 && tries('http') <= 16, `http tried ${tries('http')} times`);
    assert.ok(tries('tcp') >= 3 && tries('tcp') <= 8, `tcp tried ${tries('tcp')} times`);
    const before = await clientStatus(client);
    assert.equal(before.handshakes, 0);
    assert.equal(before.moves, 0, 'no moves without a session');

    // The relay again, same key and ports: the client finds it by itself.
    relay = await relayBack(gone);
    const answered = await client.until((l) => l.msg === 'relay-answered', 'the session', 15_000);
    assert.ok(Number(answered.afterS) >= 10, JSON.stringify(answered));
    const after = await clientStatus(client);
    assert.equal(after.state, 'established');
    assert.equal(after.handshakes, 1);
  } finally {
    await stop(client);
    await stop(relay);
  }
});

test('a network change cuts the backoff short: a relay back after long failures is dialled at once', {
  timeout: 60_000,
}, async () => {
  const gone = await relayGone();
  // No UDP: its handshake retries would find the relay by themselves.
  const client = run(connectArgs(gone.listening, gone.dir, ['--no-udp']));
  let relay: Proc | undefined;
  try {
    // TCP's fifth failure, about 7.75 s in: its next try waits 8 s, as do WebSocket's and HTTP's.
    const fifth = (): boolean =>
      client.lines.filter((l) => l.msg === 'dial-failed' && l.kind === 'tcp').length >= 5;
    await client.until(fifth, 'five TCP dials failed', 20_000);
    const t0 = performance.now();
    relay = await relayBack(gone);
    client.send('network-changed');
    await client.until((l) => l.msg === 'established', 'the session', 15_000);
    const ms = performance.now() - t0;
    assert.ok(ms < 6000, `established ${ms.toFixed(0)} ms after the relay started (backoff: 8 s)`);
  } finally {
    await stop(client);
    await stop(relay);
  }
});

test('the relay crashes and comes back: the client knows within a second (UNKNOWN_SPI), its old streams end, new ones work', {
  timeout: 60_000,
}, async () => {
  const tcp = await tcpEcho();
  const dir = tempDir();
  const pub = await keygen(dir);
  let relay = run(relayArgs(dir, pub, ['--egress-allow', '127.0.0.1/32']));
  const listening = await relay.until((l) => l.msg === 'listening', 'relay listening');
  const client = run(
    connectArgs(listening, dir, [
      '-L',
      `127.0.0.1:0:127.0.0.1:${tcp.port}`,
      '--socks',
      '127.0.0.1:0',
    ]),
  );
  try {
    await client.until((l) => l.msg === 'registered', 'registration');
    const fwd = await client.until((l) => l.msg === 'forward-listening', 'forward');
    // A UDP association through SOCKS too: its flow dies with the relay's stream layer.
    const socks = String((await client.until((l) => l.msg === 'socks-listening', 'SOCKS')).address);
    const assoc = await socksRequest(socks, 0x03, '0.0.0.0', 0);
    assert.equal(assoc.rep, 0x00);
    const assocClosed = new Promise((r) => assoc.socket.once('close', r));
    const { host, port } = hostPort(String(fwd.address));
    const echoOnce = async (): Promise<{ sock: Socket; back: string }> => {
      const sock = tcpConnect(port, host);
      sock.on('error', () => {});
      await once(sock, 'connect');
      sock.write('ping');
      const [d] = (await once(sock, 'data')) as [Buffer];
      return { sock, back: d.toString() };
    };
    const old = await echoOnce();
    assert.equal(old.back, 'ping');
    // Closed or reset: either way it ends ('close' comes after an 'error' too).
    const oldClosed = new Promise((r) => old.sock.once('close', r));

    // SIGKILL: no GOAWAY, every SA and stream gone with the process. Back on the same ports.
    relay.child.kill('SIGKILL');
    await relay.exited;
    relay = await relayBack({ dir, pub, listening }, ['--egress-allow', '127.0.0.1/32']);
    const t0 = performance.now();
    // The old stream's next packet meets a relay without its SA: UNKNOWN_SPI, a rekey, FRESH.
    old.sock.write('are you there');
    await client.until((l) => l.msg === 'relay-restarted', 'the client noticing', 10_000);
    const noticedMs = performance.now() - t0;
    assert.ok(noticedMs < 3000, `noticed after ${noticedMs.toFixed(0)} ms`);
    // The old stream cannot go on (the relay's socket to the echo server died with it): it ends.
    await oldClosed;
    // And the association ends as RFC 1928 §7 ends one, with its TCP connection: the
    // application associates again instead of sending into a flow nobody reads.
    await assocClosed;
    const fresh = await echoOnce();
    assert.equal(fresh.back, 'ping');
    fresh.sock.destroy();
    const st = await clientStatus(client);
    assert.equal(st.state, 'established');
    assert.equal(st.relayRestarts, 1);
  } finally {
    await stop(client);
    await stop(relay);
    tcp.server.close();
  }
  const summary = client.lines.find((l) => l.summary !== undefined)?.summary as Line | undefined;
  assert.equal(summary?.relayRestarts, 1, JSON.stringify(summary));
  assert.equal(summary?.handshakes, 2, 'the first, and the rekey that found the new relay');
});

test('a client that slept past --peer-idle-ms (SIGSTOP): on waking, its first new connection works (opened again on the new stream layer)', {
  timeout: 60_000,
}, async () => {
  const tcp = await tcpEcho();
  let pair: Pair | undefined;
  try {
    pair = await startPair(
      ['--egress-allow', '127.0.0.1/32', '--outage-ms', '1000', '--peer-idle-ms', '1500'],
      ['-L', `127.0.0.1:0:127.0.0.1:${tcp.port}`],
    );
    const { client, relay } = pair;
    const fwd = String(
      (await client.until((l) => l.msg === 'forward-listening', 'forward')).address,
    );
    (await echoThrough(fwd, 'before')).destroy();
    // A laptop lid closed: the process runs no code, its sockets stay open.
    client.child.kill('SIGSTOP');
    await relay.until((l) => l.msg === 'peer-forgotten', 'the relay forgetting the client', 10_000);
    client.child.kill('SIGCONT');
    const t0 = performance.now();
    // The forward's first packet meets a relay without its SA: UNKNOWN_SPI, a rekey, FRESH; the
    // stream it opened is the new stream layer's (or goes again once that exists).
    (await echoThrough(fwd, 'after')).destroy();
    const ms = performance.now() - t0;
    assert.ok(ms < 3000, `working again ${ms.toFixed(0)} ms after waking`);
    const st = await clientStatus(client);
    assert.equal(st.state, 'established');
    assert.equal(st.relayRestarts, 1, 'the relay started over with this client');
  } finally {
    await stopPair(pair);
    tcp.server.close();
  }
});

// --- An outage --------------------------------------------------------------------------------------

test('a 5 s UDP outage: a UDP-only stream resumes, every byte once and in order, one handshake', async () => {
  const tcp = await tcpEcho();
  let pair: Pair | undefined;
  let s: Socket | undefined;
  let pacer: NodeJS.Timeout | undefined;
  try {
    pair = await startPair(
      ['--egress-allow', '127.0.0.1/32'],
      ['--no-tcp', '--no-ws', '--no-http', '-L', `127.0.0.1:0:127.0.0.1:${tcp.port}`],
    );
    const { client, relay } = pair;
    const fwd = await client.until((l) => l.msg === 'forward-listening', 'forward');
    const { host, port } = hostPort(String(fwd.address));
    const sock = tcpConnect(port, host);
    s = sock;
    await once(sock, 'connect');

    // 1 KiB every 50 ms (20 KiB/s) before, during and after the outage; the echo is timed.
    const CHUNK = 1024;
    const sent: Buffer[] = [];
    const received: Buffer[] = [];
    const arrivals: { at: number; bytes: number }[] = [];
    let receivedBytes = 0;
    sock.on('data', (d: Buffer) => {
      received.push(d);
      receivedBytes += d.length;
      arrivals.push({ at: performance.now(), bytes: d.length });
    });
    const closed = once(sock, 'close');
    let seq = 0;
    pacer = setInterval(() => {
      const c = Buffer.alloc(CHUNK);
      for (let o = 0; o < CHUNK; o += 4) c.writeUInt32BE(seq * (CHUNK / 4) + o / 4, o);
      seq++;
      sent.push(c);
      sock.write(c);
    }, 50);

    await sleep(1500);
    assert.ok(receivedBytes > 0, 'data flows before the outage');
    relay.send('udp off');
    await relay.until((l) => l.msg === 'udp-closed', 'udp-closed');
    const offAt = performance.now();
    await sleep(5000);
    relay.send('udp on');
    await relay.until((l) => l.msg === 'udp-opened', 'udp-opened');
    const onAt = performance.now();
    await sleep(2000);
    clearInterval(pacer);
    pacer = undefined;
    const total = sent.length * CHUNK;

    // Everything sent comes back: wait (bounded) for the stream to catch up.
    const deadline = performance.now() + 15_000;
    while (receivedBytes < total && performance.now() < deadline) await sleep(50);
    const during = arrivals
      .filter((a) => a.at > offAt + 500 && a.at < onAt)
      .reduce((n, a) => n + a.bytes, 0);
    const resumedMs = (arrivals.find((a) => a.at > onAt)?.at ?? Number.NaN) - onAt;
    const status = await clientStatus(client);
    const detail = JSON.stringify({ total, receivedBytes, during, status });

    assert.equal(receivedBytes, total, `every byte arrived, none twice: ${detail}`);
    assert.ok(Buffer.concat(received).equals(Buffer.concat(sent)), 'in order, intact');
    assert.equal(during, 0, `nothing got through while UDP was off: ${detail}`);
    assert.equal(status.handshakes, 1, `no new key exchange: ${detail}`);
    assert.equal(status.state, 'established', detail);
    assert.equal(status.encapsulation, 'udp', detail);
    assert.deepEqual(status.candidates, ['udp'], `UDP only: ${detail}`);
    assert.equal(sock.destroyed, false, 'the stream was never reset');
    const events = client.lines
      .filter((l) => typeof l.msg === 'string' && l.msg !== 'control')
      .map((l) => l.msg);
    console.log(
      `# stream resumed ${resumedMs.toFixed(0)} ms after UDP came back (${total} bytes); client: ${events.join(', ')}`,
    );
    sock.end();
    await closed;
  } finally {
    if (pacer) clearInterval(pacer);
    s?.destroy();
    await stopPair(pair);
    tcp.server.close();
  }
});

// --- A client that starts over ----------------------------------------------------------------------

test('UDP associations that end: the relay keeps at most its stream limit of their sockets and closes them once idle (--flow-idle-ms); a live one keeps its socket', {
  timeout: 60_000,
}, async () => {
  const udp = await udpEcho();
  // The echo server's view of each association: the relay socket's port it answers.
  const seen = new Map<string, number>();
  udp.socket.on('message', (m, from) => seen.set(m.toString(), from.port));
  let pair: Pair | undefined;
  const live = { stop: false };
  const open: { u: UdpSocket; control: Socket }[] = [];
  try {
    pair = await startPair(
      [
        '--egress-allow',
        '127.0.0.1/32',
        // Longer than the 150 associations take, so that the limit, not the sweep, bounds them.
        '--flow-idle-ms',
        '6000',
        '--max-streams-per-session',
        '100',
      ],
      ['--socks', '127.0.0.1:0'],
    );
    const socks = String(
      (await pair.client.until((l) => l.msg === 'socks-listening', 'SOCKS')).address,
    );
    const pid = pair.relay.child.pid!;
    const fds = (): number => readdirSync(`/proc/${pid}/fd`).length;
    const header = Buffer.concat([Buffer.from([0, 0, 0]), socksAddress('127.0.0.1', udp.port)]);
    /** One association: a datagram and its echo (three tries); the caller closes it. */
    const associate = async (
      text: string,
    ): Promise<{ u: UdpSocket; control: Socket; send: () => Promise<boolean> }> => {
      const { rep, bound, socket: control } = await socksRequest(socks, 0x03, '0.0.0.0', 0);
      assert.equal(rep, 0x00);
      const u = createSocket('udp4');
      u.bind(0, '127.0.0.1');
      await once(u, 'listening');
      open.push({ u, control });
      let got = false;
      u.on('message', (m) => {
        if (m.subarray(10).toString() === text) got = true;
      });
      const send = async (): Promise<boolean> => {
        got = false;
        for (let attempt = 0; attempt < 3 && !got; attempt++) {
          u.send(Buffer.concat([header, Buffer.from(text)]), bound.port, bound.host);
          for (let i = 0; i < 100 && !got; i++) await sleep(10);
        }
        return got;
      };
      return { u, control, send };
    };
    const base = fds();

    // One association that stays: a datagram every 300 ms, through the sweeps.
    const a = await associate('live');
    assert.ok(await a.send(), 'the live association is answered');
    const livePort = seen.get('live');
    const liveLoop = (async () => {
      while (!live.stop) {
        await sleep(300);
        if (!live.stop) assert.ok(await a.send(), 'the live association still answered');
      }
    })();

    // 150 that end at once: at most 100 flows (with the live one) stay open, then none.
    for (let i = 0; i < 150; i++) {
      const x = await associate(`a${i}`);
      assert.ok(await x.send(), `association ${i} answered`);
      x.u.close();
      x.control.destroy();
      open.pop();
    }
    // Besides the flows, the process may hold a few descriptors of its own for a moment; without
    // the bound this would be +151.
    const atMost = fds() - base;
    assert.ok(atMost <= 100 + 10, `flows bounded by the stream limit: +${atMost} descriptors`);
    await sleep(8000);
    // Left: the live one's socket (and what else the process may have opened meanwhile).
    const after = fds() - base;
    assert.ok(after <= 10, `idle flows closed: +${after} descriptors (+${atMost} before)`);
    console.log(`# relay descriptors: +${atMost} after 150 associations, +${after} 8 s later`);
    live.stop = true;
    await liveLoop;
    assert.equal(seen.get('live'), livePort, 'the live association kept its relay socket');
  } finally {
    live.stop = true;
    for (const x of open) {
      x.u.close();
      x.control.destroy();
    }
    await stopPair(pair);
    udp.socket.close();
  }
});

test("more connections than the relay's stream limit: the client says how many wait and for what, and each goes once another closes", {
  timeout: 60_000,
}, async () => {
  await withRelay(
    ['--egress-allow', '127.0.0.1/32', '--max-streams-per-session', '100'],
    async (p) => {
      const client = p.track(run(connectArgs(p.listening, p.dir, p.forward)));
      await client.until((l) => l.msg === 'registered', 'registration');
      const fwd = String(
        (await client.until((l) => l.msg === 'forward-listening', 'forward')).address,
      );
      const { host, port } = hostPort(fwd);
      // 105 connections, each kept open after its first round trip.
      const socks: Socket[] = [];
      const echoed: Promise<string>[] = [];
      for (let i = 0; i < 105; i++) {
        const s = tcpConnect(port, host);
        s.on('error', () => {});
        socks.push(s);
        echoed.push(
          once(s, 'connect').then(async () => {
            s.write(`#${i}`);
            const [d] = (await once(s, 'data')) as [Buffer];
            return d.toString();
          }),
        );
      }
      const first = await Promise.all(echoed.slice(0, 100));
      assert.deepEqual(
        first,
        Array.from({ length: 100 }, (_, i) => `#${i}`),
      );
      const said = await client.until(
        (l) => l.msg === 'streams-waiting' && l.level === 'warn',
        'streams-waiting warning',
      );
      assert.equal(said.waiting, 5, JSON.stringify(said));
      assert.equal(said.limit, 100);
      const st = await clientStatus(client);
      assert.equal(st.streamsWaiting, 5);
      const late = Promise.all(echoed.slice(100));
      assert.equal(
        await Promise.race([late.then(() => 'echoed'), sleep(1000).then(() => 'waiting')]),
        'waiting',
        'the five beyond the limit wait',
      );
      // Five close: the five waiting go, and the client says none waits.
      for (const s of socks.slice(0, 5)) s.destroy();
      assert.deepEqual(await late, ['#100', '#101', '#102', '#103', '#104']);
      const cleared = await client.until(
        (l) => l.msg === 'streams-waiting' && l.waiting === 0,
        'streams-waiting cleared',
      );
      assert.equal(cleared.limit, 105, 'the relay raised its limit by the five freed, at once');
      for (const s of socks) s.destroy();
    },
  );
});

test('a client restarted with the same key gets a new session at once, and its streams work', async () => {
  const tcp = await tcpEcho();
  const dir = tempDir();
  const pub = await keygen(dir);
  const relay = run(relayArgs(dir, pub, ['--egress-allow', '127.0.0.1/32']));
  let client: Proc | undefined;
  try {
    const listening = await relay.until((l) => l.msg === 'listening', 'relay listening');
    const forward = ['-L', `127.0.0.1:0:127.0.0.1:${tcp.port}`];
    for (const round of [1, 2, 3]) {
      // Killed, not stopped: the relay hears no GOAWAY and still holds the old session.
      client = run(connectArgs(listening, dir, forward));
      await client.until((l) => l.msg === 'registered', `registration of start ${round}`, 5000);
      const fwd = await client.until((l) => l.msg === 'forward-listening', 'forward');
      const s = await echoThrough(
        String(fwd.address),
        `hello ${round}`,
        `a stream of start ${round} works`,
      );
      s.destroy();
      client.child.kill('SIGKILL');
      await client.exited;
    }
    // Each start was a new session (a handshake that is no rekey), not an error.
    const fresh = relay.lines.filter((l) => l.msg === 'established' && l.rekey === false);
    assert.ok(
      fresh.length >= 3,
      JSON.stringify(relay.lines.filter((l) => l.msg === 'established')),
    );
  } finally {
    await stop(relay);
    await stop(client);
    tcp.server.close();
  }
});

test('a client gone without a word is forgotten after --peer-idle-ms: its egress socket closes; a live idle one stays', async () => {
  // Two clients, each with a connection through a -L forward to a TCP echo server. One is killed
  // (no GOAWAY); the other stays, idle, its stream layer sending keepalives.
  const closed: number[] = [];
  const tcp = await tcpEcho();
  tcp.server.on('connection', (s) => s.on('close', () => closed.push(s.remotePort ?? 0)));
  const dir = tempDir();
  const pubLive = await keygen(dir);
  const dirGone = tempDir();
  const pubGone = await keygen(dirGone);
  const relay = run(
    relayArgs(dir, pubLive, [
      '--allow',
      pubGone,
      '--egress-allow',
      '127.0.0.1/32',
      '--outage-ms',
      '2000',
      '--peer-idle-ms',
      '3000',
      '--log-level',
      'debug',
      '--metrics',
    ]),
  );
  const clients: Proc[] = [];
  try {
    const listening = await relay.until((l) => l.msg === 'listening', 'relay listening');
    const open = async (d: string): Promise<{ c: Proc; s: Socket }> => {
      const c = run(
        connectArgs(listening, d, [
          '-L',
          `127.0.0.1:0:127.0.0.1:${tcp.port}`,
          '--keepalive-ms',
          '500',
        ]),
      );
      clients.push(c);
      const fwd = await c.until((l) => l.msg === 'forward-listening', 'forward');
      return { c, s: await echoThrough(String(fwd.address), 'ping') };
    };
    const live = await open(dir);
    const gone = await open(dirGone);
    // Everything acknowledged first: with data outstanding the relay's stream layer would give
    // up on its own after --outage-ms ('dead'); here nothing is owed, only silence.
    await sleep(300);
    gone.c.child.kill('SIGKILL');
    await gone.c.exited;
    const forgotten = await relay.until(
      (l) => l.msg === 'peer-forgotten',
      'the killed client forgotten',
      10_000,
    );
    assert.equal(forgotten.peer, pubGone.slice(0, 16));
    assert.equal(forgotten.streams, 1);
    await sleep(300);
    assert.equal(closed.length, 1, "the killed client's egress connection is closed");
    // The live client, idle all along, was not forgotten and its stream still works.
    await sleep(2000);
    assert.equal(relay.lines.filter((l) => l.msg === 'peer-forgotten').length, 1);
    const metrics = await (await fetch(`http://${String(listening.http)}/metrics`)).text();
    assert.match(metrics, /^roamlink_sessions_forgotten_total 1$/m);
    assert.match(metrics, /^roamlink_sessions 1$/m);
    live.s.write('still here');
    const [echo] = (await once(live.s, 'data')) as [Buffer];
    assert.equal(echo.toString(), 'still here');
    live.s.destroy();
  } finally {
    await stop(relay);
    for (const c of clients) await stop(c);
    tcp.server.close();
  }
});

// --- Through an HTTP proxy ----------------------------------------------------------------------------

const noSquid =
  (!hasSquid || !hasNcsaAuth) && !process.env.CI && 'needs squid (scripts/system-deps.sh)';

/**
 * A relay, and a client that may use only WebSocket and HTTP, through squid with basic
 * authentication and a forward to a TCP echo; `check` gets the client, the relay's listening line
 * and squid, and returns once it has seen what it needs. The client is stopped before squid's
 * log is read by the checks that follow (squid logs a tunnel when it ends).
 */
async function throughSquid(
  squidOpts: { connect?: boolean; scheme?: 'basic' | 'digest' | 'ntlm' | 'negotiate' },
  check: (client: Proc, relay: Line, squid: Squid, echo: () => Promise<void>) => Promise<void>,
): Promise<void> {
  const { scheme, ...rest } = squidOpts;
  const squidConfig = {
    auth: { user: 'roam', password: 'p@ss w0rd', ...(scheme ? { scheme } : {}) },
    ...rest,
  };
  await withSquidRelay(
    squidConfig,
    ['--egress-allow', '127.0.0.1/32'],
    async ({ squid, dir, listening, forward, track }) => {
      const proxy = `http://roam:${encodeURIComponent('p@ss w0rd')}@127.0.0.1:${squid.port}`;
      const c = track(
        run(connectArgs(listening, dir, ['--no-udp', '--no-tcp', '--proxy', proxy, ...forward])),
      );
      const echo = async (): Promise<void> => {
        const fwd = await c.until((l) => l.msg === 'forward-listening', 'forward');
        (await echoThrough(String(fwd.address), 'via squid')).destroy();
      };
      await check(c, listening, squid, echo);
      assert.ok(!squid.accessLog().includes('p@ss'), 'no credentials in the proxy log');
    },
  );
}

test('--proxy: with only WebSocket and HTTP allowed, the client goes through squid (CONNECT, basic auth) and streams work', {
  skip: noSquid,
}, async () => {
  await throughSquid({}, async (client, listening, squid, echo) => {
    const reg = await client.until((l) => l.msg === 'registered', 'registration through squid');
    assert.equal(reg.encapsulation, 'websocket', 'WebSocket through the proxy is the choice');
    await echo();
    // The tunnels really went through squid: its access log has the CONNECTs to the relay's
    // port (squid logs a tunnel when it ends).
    await stop(client);
    const httpPort = String(listening.http).split(':').pop();
    for (let i = 0; i < 40 && !squid.accessLog().includes('CONNECT'); i++) await sleep(50);
    assert.match(squid.accessLog(), new RegExp(`CONNECT 127\\.0\\.0\\.1:${httpPort}`));
  });
});

test('--proxy: through squid that refuses CONNECT (its default but to port 443), HTTP passes as plain proxied requests', {
  skip: noSquid,
}, async () => {
  await throughSquid({ connect: false }, async (client, listening, squid, echo) => {
    // WebSocket's CONNECT is refused; HTTP through the proxy is what is left. The relay takes the
    // first of HTTP streaming and polling to arrive and upgrades within 250 ms (PROTOCOL §7.2):
    // on a loaded machine squid can bring the poll first.
    const reg = await client.until((l) => l.msg === 'registered', 'registration through squid');
    assert.match(String(reg.encapsulation), /^http-(stream|poll)$/);
    // The relay saw what the proxy changed (its Via, the target made origin-form): the verdict
    // names an intermediary at the protocol level.
    assert.equal(reg.verdict, 'protocol');
    await echo();
    assert.deepEqual((await clientStatus(client)).proxy, {
      href: `http://127.0.0.1:${squid.port}`,
      mode: 'forward',
      auth: 'basic',
    });
    const httpPort = String(listening.http).split(':').pop();
    for (let i = 0; i < 40 && !squid.accessLog().includes('POST'); i++) await sleep(50);
    const log = squid.accessLog();
    assert.match(log, new RegExp(`POST http://127\\.0\\.0\\.1:${httpPort}/rl/up\\?`));
    assert.match(log, /TCP_DENIED\/403 .*CONNECT/);
  });
});

const SCHEME_NAMES = { digest: 'Digest', ntlm: 'NTLM', negotiate: 'Negotiate (NTLM inside)' };
for (const scheme of ['digest', 'ntlm', 'negotiate'] as const) {
  test(`--proxy: squid asking for ${SCHEME_NAMES[scheme]}: WebSocket and HTTP both by CONNECT, each tunnel's credentials checked by squid`, {
    skip: (!hasSquid || !hasDigestAndNtlmAuth) && !process.env.CI && 'needs squid',
  }, async () => {
    await throughSquid({ scheme }, async (client, listening, squid, echo) => {
      const reg = await client.until((l) => l.msg === 'registered', 'registration through squid');
      assert.equal(reg.encapsulation, 'websocket');
      await echo();
      await moveToHttp(client, 'through squid');
      await echo();
      // The status names the proxy (never its credentials), how the path uses it, and the scheme.
      assert.deepEqual((await clientStatus(client)).proxy, {
        href: `http://127.0.0.1:${squid.port}`,
        mode: 'connect',
        auth: scheme,
      });
      await stop(client);
      const httpPort = String(listening.http).split(':').pop();
      for (let i = 0; i < 40 && !squid.accessLog().includes('TCP_TUNNEL'); i++) await sleep(50);
      const log = squid.accessLog();
      // Squid checked each tunnel's credentials and logged whose they were.
      assert.match(
        log,
        new RegExp(`TCP_TUNNEL/200 \\d+ CONNECT 127\\.0\\.0\\.1:${httpPort} \\\\{0,2}roam `),
      );
      // HTTP went by CONNECT too: no forward request went through.
      assert.doesNotMatch(log, /TCP_MISS\/200 \d+ (POST|GET) http/);
    });
  });
}

test('--proxy: credentials missing or wrong are said at once, with what the proxy offers', {
  skip: (!hasSquid || !hasDigestAndNtlmAuth) && !process.env.CI && 'needs squid',
}, async () => {
  await withSquidRelay(
    { auth: { user: 'roam', password: 'right', scheme: 'digest' } },
    [],
    async ({ squid, dir, listening, track }) => {
      const via = (userinfo: string): string[] =>
        connectArgs(listening, dir, [
          '--no-udp',
          '--no-tcp',
          '--proxy',
          `http://${userinfo}127.0.0.1:${squid.port}`,
        ]);
      let client = track(run(via('roam:wrong@')));
      const warned = await client.until((l) => l.msg === 'proxy-auth-failed', 'the warning', 5000);
      assert.equal(warned.reason, 'credentials rejected');
      await stop(client);
      client = track(run(via('').filter((a) => a !== '--json-log')));
      for (let i = 0; i < 200 && !client.stderr().includes('credentials'); i++) await sleep(25);
      assert.match(
        client.stderr(),
        /the proxy asks for credentials \(it offers Digest realm="roamlink-test", [^)]*\): give them in its URL, http:\/\/user:password@host:port in --proxy or \$HTTPS_PROXY \(a domain user as DOMAIN%5Cuser\)\./,
      );
    },
  );
});

test('--proxy-pac: a PAC file chooses squid for the relay (credentials from --proxy-user); a bad script is a usage error', {
  skip: noSquid,
}, async () => {
  await withSquidRelay(
    { auth: { user: 'roam', password: 'pac pass' } },
    [],
    async ({ squid, dir, listening, track }) => {
      // The relay by its address in the proxy's network; anything else direct.
      const pac = join(dir, 'proxy.pac');
      writeFileSync(
        pac,
        `function FindProxyForURL(url, host) {
        if (isInNet(host, "127.0.0.0", "255.0.0.0") && shExpMatch(url, "http://*"))
          return "SOCKS 127.0.0.1:1; PROXY 127.0.0.1:${squid.port}; DIRECT";
        return "DIRECT";
      }`,
      );
      const client = track(
        run(
          connectArgs(listening, dir, [
            '--no-udp',
            '--no-tcp',
            '--proxy-pac',
            pac,
            '--proxy-user',
            'roam:pac pass',
          ]),
        ),
      );
      const reg = await client.until((l) => l.msg === 'registered', 'registration through squid');
      assert.equal(reg.encapsulation, 'websocket');
      assert.deepEqual((await clientStatus(client)).proxy, {
        href: `http://127.0.0.1:${squid.port}`,
        mode: 'connect',
        auth: 'basic',
      });
      await stop(client);
      const httpPort = String(listening.http).split(':').pop();
      for (let i = 0; i < 40 && !squid.accessLog().includes('CONNECT'); i++) await sleep(50);
      assert.match(squid.accessLog(), new RegExp(`CONNECT 127\\.0\\.0\\.1:${httpPort} roam `));

      writeFileSync(pac, 'function FindProxyForURL(url, host) { return "SOCKS 127.0.0.1:1"; }');
      const bad = track(run(connectArgs(listening, dir, ['--proxy-pac', pac])));
      assert.equal(await bad.exited, 2);
      assert.match(
        bad.stderr(),
        /--proxy-pac: PAC .*proxy\.pac: no entry roamlink speaks .*SOCKS 127\.0\.0\.1:1/,
      );
    },
  );
});

/**
 * The benchmark's `ssh -D` (a private sshd on loopback): a real, third-party SOCKS5 server. The
 * bench is another TypeScript project, so it is imported by URL, as Node runs it.
 */
const SSHD = '/usr/sbin/sshd';
async function startSshSocks(): Promise<{ socksPort: number; stop(): Promise<void> }> {
  const m = (await import(new URL('../../../bench/src/tunnel-ssh.ts', import.meta.url).href)) as {
    startSshSocks(): Promise<{ socksPort: number; stop(): Promise<void> }>;
  };
  return m.startSshSocks();
}

test("--proxy socks5h://: through OpenSSH's ssh -D, WebSocket then HTTP, both in SOCKS tunnels", {
  skip: !existsSync(SSHD) && !process.env.CI && 'needs openssh-server',
}, async () => {
  const ssh = await startSshSocks();
  try {
    await withRelay(
      ['--egress-allow', '127.0.0.1/32'],
      async ({ dir, listening, forward, track }) => {
        const proxy = `socks5h://127.0.0.1:${ssh.socksPort}`;
        const c = track(
          run(connectArgs(listening, dir, ['--no-udp', '--no-tcp', '--proxy', proxy, ...forward])),
        );
        const reg = await c.until((l) => l.msg === 'registered', 'registration through ssh -D');
        assert.equal(reg.encapsulation, 'websocket');
        const fwd = String(
          (await c.until((l) => l.msg === 'forward-listening', 'forward')).address,
        );
        (await echoThrough(fwd, 'via ssh -D')).destroy();
        assert.deepEqual((await clientStatus(c)).proxy, {
          href: proxy,
          mode: 'connect',
          auth: null,
        });
        await moveToHttp(c, 'through ssh -D');
        (await echoThrough(fwd, 'via ssh -D, HTTP')).destroy();
        assert.equal(c.lines.filter((l) => l.msg === 'established').length, 1, 'one handshake');
      },
    );
  } finally {
    await ssh.stop();
  }
});
