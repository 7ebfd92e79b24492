/**
 * The README's run command (`./dev run` = apps/client/src/demo.ts) gives a working SOCKS5 tunnel:
 * the demo starts a relay and a client, prints the curl line, and that curl line, run as printed,
 * fetches the relay's /health through the tunnel.
 */
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, readdirSync, readFileSync } from 'node:fs';
import { connect, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

const DEMO = fileURLToPath(new URL('../src/demo.ts', import.meta.url));

function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address() as { port: number };
      s.close(() => resolve(port));
    });
  });
}

test('./dev run: the curl line it prints fetches /health through its SOCKS5 port', {
  timeout: 60_000,
}, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'roamlink-run-'));
  const socks = `127.0.0.1:${await freePort()}`;
  const demo = spawn(
    process.execPath,
    [DEMO, '--port', '0', '--socks', socks, '--dir', dir, '--duration-s', '20'],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let err = '';
  let out = '';
  demo.stdout.on('data', (d) => (out += d));
  const curlLine = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no curl line in 20 s: ${err}`)), 20_000);
    demo.stderr.on('data', (d) => {
      err += d;
      const m = /curl --socks5-hostname (\S+) (\S+)/.exec(err);
      // The client's own line (not the demo's banner): its SOCKS port is open.
      if (m && new RegExp(`^SOCKS5 on ${socks}$`, 'm').test(err)) {
        clearTimeout(timer);
        resolve(m[0]);
      }
    });
  });
  try {
    const [, proxy, url] = /curl --socks5-hostname (\S+) (\S+)/.exec(curlLine)!;
    assert.equal(proxy, socks);
    const body = await new Promise<string>((resolve, reject) =>
      execFile(
        'curl',
        ['-sS', '--fail', '--max-time', '10', '--socks5-hostname', proxy!, url!],
        (e, stdout, stderr) => (e ? reject(new Error(`${e.message}: ${stderr}`)) : resolve(stdout)),
      ),
    );
    const health = JSON.parse(body) as { ok: boolean; sessions: number };
    assert.equal(health.ok, true);
    assert.equal(health.sessions, 1, 'the demo client is the one session');
    // The status page's URL carries the in-browser demo's key and a live local echo service.
    const m = /status page (http:\/\/\S+\/status)#key=([0-9a-f]{64})&echo=(\S+):(\d+)/.exec(err);
    assert.ok(m, `status page line: ${err}`);
    const api = (await (await fetch(`${m[1]}/api`)).json()) as { sessions: unknown[] };
    assert.equal(api.sessions.length, 1, 'the status API shows the demo session');
    const echo = connect(Number(m[4]), m[3]!);
    await once(echo, 'connect');
    echo.write('ping');
    const [back] = (await once(echo, 'data')) as [Buffer];
    assert.equal(back.toString(), 'ping');
    echo.destroy();
  } finally {
    demo.kill('SIGINT');
  }
  const code = await new Promise<number | null>((r) => demo.once('exit', r));
  assert.equal(code, 0, err);
  const summary = JSON.parse(out.trim().split('\n').at(-1)!) as {
    summary: { state: string; handshakes: number };
  };
  assert.equal(summary.summary.state, 'established');
  assert.equal(summary.summary.handshakes, 1);
});

test('Ctrl-C in a terminal (SIGINT to the whole process group), twice: the summary, exit 0, nothing left running', {
  timeout: 60_000,
}, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'roamlink-run-'));
  const socks = `127.0.0.1:${await freePort()}`;
  // Its own process group, as a shell gives a foreground job; the demo's children join it.
  const demo = spawn(process.execPath, [DEMO, '--port', '0', '--socks', socks, '--dir', dir], {
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true,
  });
  let err = '';
  let out = '';
  demo.stdout.on('data', (d) => (out += d));
  demo.stderr.on('data', (d) => (err += d));
  const exited = new Promise<number | null>((r) => demo.once('exit', r));
  const deadline = Date.now() + 20_000;
  while (!new RegExp(`^SOCKS5 on ${socks}$`, 'm').test(err)) {
    assert.ok(Date.now() < deadline, `the client did not come up in 20 s: ${err}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  // Up and carrying traffic (its SOCKS port opens before the handshake ends): one fetch through it.
  const url = /curl --socks5-hostname \S+ (\S+)/.exec(err)![1]!;
  await new Promise<void>((resolve, reject) =>
    execFile('curl', ['-sS', '--fail', '--max-time', '10', '--socks5-hostname', socks, url], (e) =>
      e ? reject(e) : resolve(),
    ),
  );
  const pgid = demo.pid!;
  const members = (): number[] =>
    readdirSync('/proc')
      .filter((p) => /^\d+$/.test(p))
      .filter((p) => {
        try {
          // Field 5 of /proc/<pid>/stat is the process group (after the parenthesised name).
          return (
            Number(readFileSync(`/proc/${p}/stat`, 'utf8').split(') ')[1]!.split(' ')[2]) === pgid
          );
        } catch {
          return false;
        }
      })
      .map(Number);
  assert.equal(members().length, 3, 'the demo, its relay and its client share the group');
  process.kill(-pgid, 'SIGINT');
  // The demo forwards it to its client as well, and people press Ctrl-C twice: a second one a
  // moment later must not cut the graceful stop short (with process.once it killed the client).
  await new Promise((r) => setTimeout(r, 20));
  try {
    process.kill(-pgid, 'SIGINT');
  } catch (e) {
    // All of them gone already: a clean stop, as fast as it gets.
    if ((e as NodeJS.ErrnoException).code !== 'ESRCH') throw e;
  }
  assert.equal(await exited, 0, err);
  const summary = JSON.parse(out.trim().split('\n').at(-1)!) as {
    summary: { state: string; handshakes: number };
  };
  assert.equal(summary.summary.state, 'established');
  assert.equal(summary.summary.handshakes, 1);
  assert.deepEqual(members(), [], 'relay and client exited with the demo');
});

/** Runs the demo to its end; its exit code and both outputs. */
function runToEnd(args: string[]): Promise<{ code: number | null; out: string; err: string }> {
  return new Promise((resolve) => {
    const p = spawn(process.execPath, [DEMO, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    p.stdout.on('data', (d) => (out += d));
    p.stderr.on('data', (d) => (err += d));
    p.once('close', (code) => resolve({ code, out, err }));
  });
}

test('./dev run --help, a wrong option, a taken port: usage, a one-line error, no stack trace', {
  timeout: 60_000,
}, async () => {
  const help = await runToEnd(['--help']);
  assert.equal(help.code, 0, help.err);
  assert.match(help.out, /^usage: \.\/dev run/);
  assert.match(help.out, /--suite <name>/);

  const bogus = await runToEnd(['--bogus']);
  assert.equal(bogus.code, 2);
  assert.equal(bogus.err, "roamlink demo: Unknown option '--bogus'\nTry ./dev run --help\n");

  const badPort = await runToEnd(['--port', '70000']);
  assert.equal(badPort.code, 2);
  assert.match(badPort.err, /^roamlink demo: --port: /);

  // Something else holds the relay's TCP port: the relay says why, the demo what to do.
  const holder = createServer();
  await new Promise<void>((r) => holder.listen(0, '127.0.0.1', r));
  const taken = (holder.address() as { port: number }).port;
  try {
    const dir = mkdtempSync(join(tmpdir(), 'roamlink-run-'));
    const r = await runToEnd(['--port', String(taken), '--dir', dir, '--socks', '127.0.0.1:0']);
    assert.equal(r.code, 1, r.err);
    assert.match(r.err, /EADDRINUSE/);
    assert.match(r.err, new RegExp(`If port ${taken} or ${taken + 1} is taken, try --port 0`));
    assert.doesNotMatch(r.err, /^\s+at /m, 'no stack trace');
  } finally {
    holder.close();
  }
});

test('./dev run --suite and options after -- reach the client', { timeout: 60_000 }, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'roamlink-run-'));
  const socks = `127.0.0.1:${await freePort()}`;
  // --no-udp after -- is the client's own flag: the session must come up on another transport.
  const r = await runToEnd([
    '--port',
    '0',
    '--socks',
    socks,
    '--dir',
    dir,
    '--duration-s',
    '3',
    '--suite',
    'aes-256-gcm',
    '--',
    '--no-udp',
  ]);
  assert.equal(r.code, 0, r.err);
  const { summary } = JSON.parse(r.out.trim().split('\n').at(-1)!) as {
    summary: { state: string; suite: string; encapsulation: string };
  };
  assert.equal(summary.state, 'established', r.err);
  assert.equal(summary.suite, 'aes-256-gcm');
  assert.notEqual(summary.encapsulation, 'udp');
});
