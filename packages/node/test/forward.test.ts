/**
 * `-L` forwards: the spec parser (IPv6 in brackets, default bind, bad specs refused with a typed
 * error), and forwards on loopback carrying an echo through a direct dialer, a refused dial shown
 * to the client as a reset, and close() ending what is open.
 */
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { test } from 'node:test';
import { type ForwardSpec, parseForward, startForward } from '../src/forward.ts';
import { TunnelError } from '../src/socks5.ts';
import { directDialer, failingDialer } from './direct-dialer.ts';

function until(cond: () => boolean, what: string, ms = 3000): Promise<void> {
  const t0 = Date.now();
  return new Promise((resolve, reject) => {
    const tick = (): void => {
      if (cond()) resolve();
      else if (Date.now() - t0 > ms) reject(new Error(`timed out waiting for ${what}`));
      else setTimeout(tick, 5);
    };
    tick();
  });
}

test('parseForward: good specs', () => {
  const t = (bindHost: string, bindPort: number, host: string, port: number): ForwardSpec => ({
    bindHost,
    bindPort,
    target: { host, port },
  });
  const cases: [string, ForwardSpec][] = [
    ['8080:example.com:80', t('127.0.0.1', 8080, 'example.com', 80)],
    ['0.0.0.0:8080:example.com:80', t('0.0.0.0', 8080, 'example.com', 80)],
    ['localhost:2222:10.0.0.1:22', t('localhost', 2222, '10.0.0.1', 22)],
    ['[::1]:8080:[2001:db8::1]:22', t('::1', 8080, '2001:db8::1', 22)],
    ['8080:[::1]:22', t('127.0.0.1', 8080, '::1', 22)],
    ['8443:[::ffff:192.0.2.1]:443', t('127.0.0.1', 8443, '::ffff:192.0.2.1', 443)],
    ['[::]:1:h:65535', t('::', 1, 'h', 65535)],
    ['*:8080:h:1', t('0.0.0.0', 8080, 'h', 1)],
    [':8080:h:1', t('0.0.0.0', 8080, 'h', 1)],
    ['0:db.internal:5432', t('127.0.0.1', 0, 'db.internal', 5432)],
    ['5353:bücher.example:53', t('127.0.0.1', 5353, 'bücher.example', 53)],
  ];
  for (const [spec, want] of cases) assert.deepEqual(parseForward(spec), want, spec);
});

test('parseForward: bad specs get ROAMLINK_ERR_INVALID_ARGUMENT naming the problem', () => {
  const cases: [string, RegExp][] = [
    ['', /1 fields/],
    ['8080', /1 fields/],
    ['8080:host', /2 fields/],
    ['a:1:b:2:c', /5 fields/],
    ['8080:host:0', /target port 0 is out of range 1-65535/],
    ['8080:host:65536', /target port 65536 is out of range/],
    ['65536:host:1', /listen port 65536 is out of range/],
    ['x:host:1', /listen port "x" is not a port number/],
    ['8080:host:+1', /target port "\+1" is not a port number/],
    ['8080:host:0x16', /not a port number/],
    ['8080:host:1e3', /not a port number/],
    ['8080::22', /empty target host/],
    ['8080:[::1:22', /'\[' without '\]'/],
    ['8080:[example.com]:22', /"example.com" is not an IPv6 address/],
    ['8080:[::1]x:22', /'\]' must be followed by ':'/],
    ['8080:host:22:', /bind address "8080" is not a valid IPv4 address/],
    ['8080:ho st:22', /characters a host name cannot have/],
    ['8080:ho\u0000st:22', /characters a host name cannot have/],
    ['8080:1.2.3:22', /"1.2.3" is not a valid IPv4 address/],
    ['8080:ho[st:22', /misplaced bracket/],
    ['[::1]:host:22', /listen port "::1" is not a port number/],
    ['8080:2001:db8::1:22', /fields/],
    [`8080:${'a'.repeat(256)}:22`, /longer than 255 bytes/],
  ];
  for (const [spec, why] of cases) {
    assert.throws(
      () => parseForward(spec),
      (e: unknown) => {
        assert.ok(e instanceof Error, spec);
        assert.equal((e as { code?: string }).code, 'ROAMLINK_ERR_INVALID_ARGUMENT', spec);
        assert.match(e.message, /^invalid forward /, spec);
        assert.match(e.message, why, spec);
        return true;
      },
    );
  }
});

async function echoServer(host = '127.0.0.1'): Promise<{ server: Server; port: number }> {
  const server = createServer({ allowHalfOpen: true }, (s) => {
    s.on('error', () => {});
    s.pipe(s);
  });
  server.listen(0, host);
  await once(server, 'listening');
  return { server, port: (server.address() as { port: number }).port };
}

/** Sends `data`, half-closes, and resolves with everything read until the far end closed. */
async function exchange(port: number, host: string, data: Buffer): Promise<Buffer> {
  const s: Socket = connect({ port, host, allowHalfOpen: true });
  const parts: Buffer[] = [];
  s.on('data', (d: Buffer) => parts.push(d));
  await once(s, 'connect');
  s.end(data);
  await once(s, 'end');
  s.destroy();
  return Buffer.concat(parts);
}

test('a forward carries an echo both ways, half-close included, and closes cleanly', async () => {
  const { server: echo, port: ep } = await echoServer();
  const dialer = directDialer();
  const fwd = await startForward({ spec: `127.0.0.1:0:127.0.0.1:${ep}`, dialer });
  try {
    assert.equal(fwd.address.host, '127.0.0.1');
    assert.ok(fwd.address.port > 0);
    const small = await exchange(fwd.address.port, '127.0.0.1', Buffer.from('hello, forward'));
    assert.equal(small.toString(), 'hello, forward');
    const big = randomBytes(4 << 20);
    const back = await exchange(fwd.address.port, '127.0.0.1', big);
    const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');
    assert.equal(sha(back), sha(big));
    assert.deepEqual(dialer.targets, [
      { host: '127.0.0.1', port: ep },
      { host: '127.0.0.1', port: ep },
    ]);
    assert.equal(fwd.stats.connects, 2);
    await until(() => fwd.connections() === 0, 'both connections to finish');

    // close() ends an open connection and the listener.
    const open = connect({ port: fwd.address.port, host: '127.0.0.1' });
    open.on('error', () => {});
    await until(() => fwd.stats.connects === 3, 'a third connection');
    await fwd.close();
    await until(() => open.destroyed, 'the open connection to close');
    assert.equal(fwd.connections(), 0);
  } finally {
    await fwd.close();
    echo.close();
  }
});

test('an IPv6 bind address and a name for the target, from a parsed spec', async (t) => {
  const echo = await echoServer();
  const dialer = directDialer();
  const spec = parseForward(`[::1]:0:localhost:${echo.port}`);
  let fwd: Awaited<ReturnType<typeof startForward>>;
  try {
    fwd = await startForward({ spec, dialer });
  } catch {
    echo.server.close();
    t.skip('no ::1 here');
    return;
  }
  try {
    assert.equal(fwd.address.host, '::1');
    const got = await exchange(fwd.address.port, '::1', Buffer.from('over six'));
    assert.equal(got.toString(), 'over six');
    assert.deepEqual(dialer.targets, [{ host: 'localhost', port: echo.port }]);
  } finally {
    await fwd.close();
    echo.server.close();
  }
});

test('a refused dial resets the client connection and is counted', async () => {
  const logs: string[] = [];
  const fwd = await startForward({
    spec: '127.0.0.1:0:db.internal:5432',
    dialer: failingDialer(new TunnelError('refused', 'no')),
    onLog: (e) => logs.push(`${e.event}${e.code ? `:${e.code}` : ''}`),
  });
  try {
    const s = connect({ port: fwd.address.port, host: '127.0.0.1' });
    let err: NodeJS.ErrnoException | undefined;
    s.on('error', (e) => {
      err = e;
    });
    s.write('anything');
    await new Promise((resolve) => s.once('close', resolve));
    assert.equal(err?.code, 'ECONNRESET');
    assert.equal(fwd.stats.connectFailures.refused, 1);
    assert.deepEqual(logs, ['accept', 'connect-failed:refused']);
  } finally {
    await fwd.close();
  }
  await assert.rejects(startForward({ spec: 'nonsense', dialer: directDialer() }), {
    code: 'ROAMLINK_ERR_INVALID_ARGUMENT',
  });
});
