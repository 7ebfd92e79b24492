/**
 * The tunnel benchmark's harness at a small size: direct and `ssh -D` figures that make sense,
 * exact byte counts, a roamlink row computed from a stand-in tunnel (a minimal SOCKS5 forwarder,
 * RFC 1928, CONNECT only), a failing tunnel recorded in its row, and the `--json` contract of
 * `pnpm bench tunnel`. Speed targets are read from a full run, never asserted here.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createServer as createHttpServer } from 'node:http';
import { type AddressInfo, connect, createServer, type Socket } from 'node:net';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import type { Measured } from '../src/tunnel.ts';
import { parseOnly, parseSize, runTunnelBench, unknownArg } from '../src/tunnel.ts';
import { download, interleavedLatency, percentile } from '../src/tunnel-curl.ts';
import { SMALL_BODY_BYTES, startOrigin } from '../src/tunnel-origin.ts';
import { startRoamlinkTunnel } from '../src/tunnel-roamlink.ts';
import { SSHD } from '../src/tunnel-ssh.ts';

const SIZE = 8 * 2 ** 20;
const REQUESTS = 50;

/** Reads exactly `n` bytes from a paused socket. */
function readExactly(sock: Socket, n: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const tryRead = (): void => {
      const b = sock.read(n) as Buffer | null;
      if (b) {
        sock.off('readable', tryRead);
        sock.off('end', onEnd);
        resolve(b);
      }
    };
    const onEnd = (): void => reject(new Error('socket ended'));
    sock.on('readable', tryRead);
    sock.once('end', onEnd);
    tryRead();
  });
}

/**
 * A SOCKS5 server (no authentication, CONNECT only) that forwards to 127.0.0.1 targets; after
 * `limit` connections it drops every new one.
 */
async function startSocks5(limit = Infinity): Promise<{ port: number; close(): Promise<void> }> {
  const sockets = new Set<Socket>();
  let served = 0;
  const server = createServer(async (client) => {
    if (++served > limit) {
      client.destroy();
      return;
    }
    sockets.add(client);
    client.on('error', () => {});
    client.on('close', () => sockets.delete(client));
    try {
      const [ver, nMethods] = await readExactly(client, 2);
      assert.equal(ver, 5);
      const methods = await readExactly(client, nMethods!);
      assert.ok(methods.includes(0), 'client offers no-auth');
      client.write(Buffer.from([5, 0]));
      const [v, cmd, , atyp] = await readExactly(client, 4);
      assert.equal(v, 5);
      assert.equal(cmd, 1);
      let host: string;
      if (atyp === 1) host = [...(await readExactly(client, 4))].join('.');
      else if (atyp === 3) {
        const [len] = await readExactly(client, 1);
        host = (await readExactly(client, len!)).toString('ascii');
      } else throw new Error(`address type ${atyp}`);
      const port = (await readExactly(client, 2)).readUInt16BE(0);
      assert.ok(host === '127.0.0.1' || host === 'localhost', host);
      const upstream = connect(port, '127.0.0.1');
      sockets.add(upstream);
      upstream.on('error', () => client.destroy());
      upstream.on('close', () => sockets.delete(upstream));
      upstream.once('connect', () => {
        client.write(Buffer.from([5, 0, 0, 1, 127, 0, 0, 1, 0, 0]));
        client.pipe(upstream).pipe(client);
      });
    } catch {
      client.destroy();
    }
  });
  server.on('connection', (s) => s.pause());
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    port: (server.address() as AddressInfo).port,
    close: () =>
      new Promise((r) => {
        for (const s of sockets) s.destroy();
        server.close(() => r());
      }),
  };
}

function assertSane(m: Measured, what: string): void {
  assert.equal(m.bytes, SIZE, `${what}: bytes`);
  assert.ok(m.MBps > 0 && Number.isFinite(m.MBps), `${what}: MBps ${m.MBps}`);
  assert.ok(m.seconds > 0, `${what}: seconds`);
  assert.equal(m.requests, REQUESTS);
  assert.ok(m.p50ms > 0, `${what}: p50 ${m.p50ms}`);
  assert.ok(m.p50ms <= m.p99ms, `${what}: p50 ${m.p50ms} > p99 ${m.p99ms}`);
  assert.ok(m.p99ms < 1000, `${what}: p99 ${m.p99ms} ms on loopback`);
}

test('sizes, --only and the percentile', () => {
  assert.equal(parseSize('1G'), 2 ** 30);
  assert.equal(parseSize('1GiB'), 2 ** 30);
  assert.equal(parseSize('64M'), 64 * 2 ** 20);
  assert.equal(parseSize('512k'), 512 * 1024);
  assert.equal(parseSize('1000'), 1000);
  assert.throws(() => parseSize('lots'), /cannot read size/);
  assert.throws(() => parseSize('0'), /out of range/);
  assert.deepEqual(parseOnly('udp,tcp'), ['udp', 'tcp']);
  assert.deepEqual(parseOnly(undefined), ['udp', 'udp-1400', 'tcp', 'ws', 'http', 'wss', 'https']);
  assert.deepEqual(parseOnly('wss,https'), ['wss', 'https']);
  assert.deepEqual(parseOnly('udp-1400'), ['udp-1400']);
  assert.throws(() => parseOnly('udp,quic'), /unknown encapsulation "quic"/);
  assert.throws(() => parseOnly(','), /at least one/);
  assert.equal(
    unknownArg(['--size', '1G', '--json', '--only=udp', '--quick', '--runs', '2']),
    undefined,
  );
  assert.equal(unknownArg(['--size', '1G', '--verbose']), '--verbose');
  assert.equal(unknownArg(['1G']), '1G');
  const xs = Array.from({ length: 100 }, (_, i) => 100 - i);
  assert.equal(percentile(xs, 50), 50);
  assert.equal(percentile(xs, 99), 99);
  assert.equal(percentile([7], 99), 7);
});

test('interleavedLatency: ways take turns, the order rotated each cycle, one connection per way', async () => {
  // An origin that records, per request, which connection it came on.
  const seen: number[] = [];
  const conns = new Map<Socket, number>();
  const origin = createHttpServer((req, res) => {
    const s = req.socket;
    if (!conns.has(s)) conns.set(s, conns.size);
    seen.push(conns.get(s)!);
    assert.equal(req.url, '/small');
    res.end('x'.repeat(SMALL_BODY_BYTES));
  });
  await new Promise<void>((r) => origin.listen(0, '127.0.0.1', r));
  const port = (origin.address() as AddressInfo).port;
  const a = await startSocks5();
  const b = await startSocks5();
  try {
    const requests = 5;
    const ls = await interleavedLatency(
      [
        { port, socksPort: a.port },
        { port, socksPort: null },
        { port, socksPort: b.port },
      ],
      requests,
      SMALL_BODY_BYTES,
      30_000,
    );
    assert.equal(ls.length, 3);
    for (const l of ls) {
      assert.equal(l.requests, requests);
      assert.equal(l.connects, 1);
      assert.ok(l.p50ms > 0 && l.p50ms <= l.p99ms);
    }
    // Three connections at the origin, one per way, in the order of the first cycle; then each
    // cycle starts one way later: 0 1 2, 1 2 0, 2 0 1, ...
    assert.equal(conns.size, 3);
    assert.equal(seen.length, 3 * (requests + 1));
    const want: number[] = [];
    for (let cycle = 0; cycle <= requests; cycle++)
      for (let k = 0; k < 3; k++) want.push((cycle + k) % 3);
    assert.deepEqual(seen, want);
  } finally {
    await a.close();
    await b.close();
    origin.closeAllConnections();
    await new Promise((r) => origin.close(r));
  }
});

test('direct, ssh -D and a stand-in tunnel at 8 MiB, 50 requests', async (t) => {
  const socks = await startSocks5();
  // The ws stand-in carries its two downloads and its warm-up requests, then no more
  // connections: its turn-taking series fails, and so does its series alone.
  const breaking = await startSocks5(3);
  let stopped = 0;
  try {
    const { direct, ssh, nodePipe, rows } = await runTunnelBench({
      size: SIZE,
      requests: REQUESTS,
      encapsulations: ['tcp', 'udp', 'ws'],
      start: async (enc) => {
        if (enc === 'udp') throw new Error('stand-in refuses udp');
        return {
          socksPort: enc === 'ws' ? breaking.port : socks.port,
          stop: async () => {
            stopped++;
          },
          info: { standIn: true },
        };
      },
    });
    assertSane(direct, 'direct');
    if (ssh.measured) {
      assertSane(ssh.measured, 'ssh');
      assert.equal(ssh.error, null);
      // ssh also forwards -L to the origin: the same small requests without SOCKS.
      assert.ok(ssh.measured.fwdP50ms! > 0 && ssh.measured.fwdP50ms! <= ssh.measured.fwdP99ms!);
      assert.match(String(ssh.info?.version), /OpenSSH/);
    } else {
      // Without openssh-server the columns are null with a reason; CI installs it.
      assert.ok(!existsSync(SSHD), `sshd is installed but ssh -D failed: ${ssh.error}`);
      assert.match(String(ssh.error), /not found|cannot start/);
      t.diagnostic(`ssh -D not measured: ${ssh.error}`);
    }

    // The node pipe is two real Node processes (SOCKS5 and -L in one, the dialling in the other);
    // it carried the whole download (assertSane checks the byte count) and both series.
    assert.equal(nodePipe.error, null);
    assertSane(nodePipe.measured!, 'node pipe');
    assert.ok(nodePipe.measured!.fwdP50ms! > 0);
    assert.ok(nodePipe.measured!.fwdP50ms! <= nodePipe.measured!.fwdP99ms!);

    assert.equal(rows.length, 3);
    const [tcp, udp, ws] = rows;
    assert.equal(tcp!.encapsulation, 'tcp');
    assert.equal(tcp!.error, null);
    assert.ok(tcp!.MBps! > 0);
    assert.ok(tcp!.p50ms! <= tcp!.p99ms!);
    assert.equal(tcp!.directMBps, direct.MBps);
    assert.equal(tcp!.sshMBps, ssh.measured?.MBps ?? null);
    assert.equal(tcp!.vsDirect, tcp!.MBps! / direct.MBps);
    // One round: each ratio is to the reference's download next to the row's (the 'rounds' test
    // checks which); ssh's and the pipe's MB/s are medians over their downloads beside both rows.
    if (ssh.measured) {
      assert.equal(tcp!.vsSshRounds.length, 1);
      assert.equal(tcp!.vsSsh, tcp!.vsSshRounds[0]);
    }
    assert.equal(tcp!.nodePipeMBps, nodePipe.measured!.MBps);
    assert.equal(tcp!.vsNodePipeRounds.length, 1);
    assert.equal(tcp!.vsNodePipe, tcp!.vsNodePipeRounds[0]);
    assert.equal(tcp!.nodePipeP50ms, nodePipe.measured!.p50ms);
    assert.equal(tcp!.nodePipeFwdP50ms, nodePipe.measured!.fwdP50ms);
    assert.equal(tcp!.nodePipeError, null);
    // What the tunnel adds is taken against the direct requests that took turns with its own.
    assert.ok(tcp!.directP50ms > 0 && tcp!.directP50ms <= tcp!.directP99ms);
    assert.equal(tcp!.addedP50ms, tcp!.p50ms! - tcp!.directP50ms);
    assert.equal(direct.nearDirectP50ms, null, 'direct has no baseline of its own');
    // The references took turns in the tcp row's series (the only row measured), against the
    // same direct requests as the row through SOCKS; through -L, against the direct requests of
    // that series (the stand-in has no forward, so the -L series was ssh's, the pipe's and direct).
    for (const [m, p, a, f] of [
      [ssh.measured, tcp!.sshP50ms, tcp!.sshAddedP50ms, tcp!.sshAddedFwdP50ms],
      [nodePipe.measured, tcp!.nodePipeP50ms, tcp!.nodePipeAddedP50ms, tcp!.nodePipeAddedFwdP50ms],
    ] as const) {
      if (!m) continue;
      assert.equal(m.nearDirectP50ms, tcp!.directP50ms);
      assert.equal(p, m.p50ms);
      assert.equal(a, m.p50ms - tcp!.directP50ms);
      assert.ok(m.nearDirectFwdP50ms! > 0);
      assert.equal(f, m.fwdP50ms! - m.nearDirectFwdP50ms!);
    }
    assert.equal(tcp!.directFwdP50ms, nodePipe.measured!.nearDirectFwdP50ms);
    // The ws row's series failed, alone too: the failure is the row's, not its references'.
    assert.match(String(ws!.error), /^roamlink ws: a small request got no answer$/);
    assert.equal(ws!.p50ms, null);
    assert.equal(ws!.nodePipeError, null);
    assert.equal(nodePipe.error, null);
    // The stand-in has no -L forward: those columns are null, ssh's are filled.
    assert.equal(tcp!.fwdP50ms, null);
    assert.equal(tcp!.addedFwdP50ms, null);
    assert.equal(tcp!.sshFwdP50ms, ssh.measured?.fwdP50ms ?? null);
    assert.equal(tcp!.bytes, SIZE);
    assert.deepEqual(tcp!.info, { standIn: true });
    assert.equal(stopped, 2, 'both stand-in tunnels were stopped');

    assert.equal(udp!.encapsulation, 'udp');
    assert.match(String(udp!.error), /cannot start: stand-in refuses udp/);
    assert.equal(udp!.MBps, null);
    assert.equal(udp!.p50ms, null);
    assert.equal(udp!.directMBps, direct.MBps);
    // No series of its own: the run's direct series, and the references' medians.
    assert.equal(udp!.directP50ms, direct.p50ms);
    assert.equal(udp!.directFwdP50ms, null);
    assert.equal(udp!.addedP50ms, null);
    assert.equal(udp!.nodePipeP50ms, nodePipe.measured!.p50ms);
    assert.equal(
      udp!.nodePipeAddedP50ms,
      nodePipe.measured!.p50ms - nodePipe.measured!.nearDirectP50ms!,
    );
  } finally {
    await socks.close();
    await breaking.close();
  }
});

test('rounds: every tool up at once; each row next to its own references; ratios to those', async () => {
  const socks = await startSocks5();
  const lines: string[] = [];
  let started = 0;
  let stopped = 0;
  try {
    const { rows, nodePipe } = await runTunnelBench({
      size: SIZE,
      requests: REQUESTS,
      warmup: 10,
      runs: 3,
      ssh: false,
      encapsulations: ['tcp', 'ws'],
      start: async () => {
        started++;
        return {
          socksPort: socks.port,
          stop: async () => {
            stopped++;
          },
        };
      },
      log: (l) => lines.push(l),
    });
    // Both stand-ins were up before the first download and stopped once, after the last.
    assert.equal(started, 2);
    assert.equal(stopped, 2);
    const downloads = lines
      .map((l) => /^ {2}(.+): 8 MiB in .* ([\d.]+) MB\/s \(round (\d)\/3\)$/.exec(l))
      .filter((m) => m !== null)
      .map((m) => ({ tool: m[1]!, MBps: Number(m[2]), round: Number(m[3]) }));
    // Per round: direct, then each row with a node pipe download right before or after it.
    assert.equal(downloads.length, 3 * 5, lines.join('\n'));
    const expected: Record<string, number[]> = { 'roamlink tcp': [], 'roamlink ws': [] };
    for (let round = 1; round <= 3; round++) {
      const these = downloads.slice((round - 1) * 5, round * 5);
      assert.ok(
        these.every((d) => d.round === round),
        `round ${round}: ${JSON.stringify(these)}`,
      );
      assert.equal(these[0]!.tool, 'direct');
      const pairs = [these.slice(1, 3), these.slice(3, 5)];
      // A different row first in each round; the reference first in one pair, last in the other.
      assert.equal(
        pairs[0]!.find((d) => d.tool !== 'node pipe')!.tool,
        round === 2 ? 'roamlink ws' : 'roamlink tcp',
      );
      assert.notEqual(pairs[0]![0]!.tool === 'node pipe', pairs[1]![0]!.tool === 'node pipe');
      for (const pair of pairs) {
        const pipe = pair.find((d) => d.tool === 'node pipe');
        const row = pair.find((d) => d.tool.startsWith('roamlink'));
        assert.ok(pipe && row, JSON.stringify(pair));
        expected[row.tool]!.push(row.MBps / pipe.MBps);
      }
    }
    for (const row of rows) {
      assert.equal(row.error, null);
      assert.equal(row.runs, 3);
      // The ratios are to the row's own neighbours (to the logged precision), in round order.
      const want = expected[`roamlink ${row.encapsulation}`]!;
      assert.equal(row.vsNodePipeRounds.length, 3);
      row.vsNodePipeRounds.forEach((x, i) => {
        assert.ok(Math.abs(x - want[i]!) / want[i]! < 0.01, `${x} against ${want[i]}`);
      });
      // The median of the per-round ratios, not the ratio of the medians.
      assert.equal(row.vsNodePipe, [...row.vsNodePipeRounds].sort((a, b) => a - b)[1]);
      assert.equal(row.nodePipeMBps, nodePipe.measured!.MBps);
      // ssh was not measured: no ratio to it.
      assert.equal(row.vsSsh, null);
      assert.deepEqual(row.vsSshRounds, []);
      assert.equal(row.sshError, 'not measured');
    }
  } finally {
    await socks.close();
  }
});

test('pnpm bench tunnel --json: rows with the documented fields, errors in the row', () => {
  const main = fileURLToPath(new URL('../src/main.ts', import.meta.url));
  const r = spawnSync(
    process.execPath,
    [
      main,
      'tunnel',
      '--json',
      '--size',
      '8M',
      '--requests',
      String(REQUESTS),
      '--warmup',
      '20',
      '--only',
      'udp',
    ],
    { encoding: 'utf8', timeout: 60_000 },
  );
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stderr, /direct: 8 MiB in/, 'progress goes to stderr');
  const rows = JSON.parse(r.stdout) as Record<string, unknown>[];
  assert.equal(rows.length, 1);
  const row = rows[0]!;
  assert.equal(row.encapsulation, 'udp');
  // The real relay and client ran this row: the suite is what their handshake agreed.
  assert.match(String(row.suite), /^(aes-256-gcm|chacha20-poly1305)$/);
  for (const k of [
    'MBps',
    'directMBps',
    'sshMBps',
    'p50ms',
    'directP50ms',
    'sshP50ms',
    'fwdP50ms',
    'sshFwdP50ms',
    'addedFwdP50ms',
    'directFwdP50ms',
    'cpuPerGiB',
    'sshCpuPerGiB',
    'nodePipeMBps',
    'vsNodePipe',
    'nodePipeP50ms',
    'nodePipeFwdP50ms',
    'nodePipeCpuPerGiB',
    'vsSshRounds',
    'vsNodePipeRounds',
  ])
    assert.ok(k in row, k);
  // Three rounds by default: the node pipe's ratio is the median of three taken within a round.
  assert.equal(row.runs, 3);
  assert.ok((row.directMBps as number) > 0);
  assert.ok((row.directP50ms as number) <= (row.directP99ms as number));
  assert.equal(row.bytes, SIZE);
  assert.equal(row.requests, REQUESTS);
  assert.equal(row.warmup, 20);
  assert.equal(row.nodePipeError, null);
  assert.ok((row.nodePipeMBps as number) > 0);
  assert.ok((row.nodePipeP50ms as number) > 0 && (row.nodePipeFwdP50ms as number) > 0);
  if (existsSync(SSHD)) {
    assert.ok((row.sshMBps as number) > 0, String(row.sshError));
    // CPU from /proc in 10 ms ticks: 8 MiB may cost only a few, so only its presence is sure.
    assert.equal(typeof row.sshCpuPerGiB, 'number');
  }
  if (row.error === null) {
    // Once the roamlink tunnel is wired, its figures must make sense too.
    assert.ok((row.MBps as number) > 0);
    assert.ok((row.p50ms as number) <= (row.p99ms as number));
    assert.ok((row.fwdP50ms as number) > 0, 'the roamlink -L forward was measured');
    assert.ok((row.cpuPerGiB as number) >= 0, "the tunnel processes' CPU was measured");
    assert.equal(row.addedFwdP50ms, (row.fwdP50ms as number) - (row.directFwdP50ms as number));
    const rounds = row.vsNodePipeRounds as number[];
    assert.equal(rounds.length, 3);
    assert.equal(row.vsNodePipe, [...rounds].sort((a, b) => a - b)[1]);
  } else {
    assert.equal(typeof row.error, 'string');
    assert.equal(row.MBps, null);
  }
  const bad = spawnSync(process.execPath, [main, 'tunnel', '--only', 'quic'], { encoding: 'utf8' });
  assert.equal(bad.status, 2);
  assert.match(bad.stderr, /unknown encapsulation "quic"/);
  const noWarmup = spawnSync(process.execPath, [main, 'tunnel', '--warmup', '0'], {
    encoding: 'utf8',
  });
  assert.equal(noWarmup.status, 2);
  assert.match(noWarmup.stderr, /--warmup needs a positive integer/);
});

test('the wss and https rows: the real relay and client, TLS on the relay’s HTTP port, exact bytes', async () => {
  const origin = await startOrigin();
  try {
    for (const [row, encapsulation] of [
      ['wss', 'websocket'],
      ['https', 'http-stream'],
    ] as const) {
      const t = await startRoamlinkTunnel(row);
      try {
        assert.equal(t.info?.encapsulation, encapsulation, row);
        // The suite the handshake agreed, from the client's 'established' line.
        assert.match(String(t.info?.suite), /^(aes-256-gcm|chacha20-poly1305)$/, row);
        // download() checks the status and that every byte came.
        const d = await download(origin.port, SIZE, t.socksPort, 60_000);
        assert.equal(d.bytes, SIZE);
      } finally {
        await t.stop();
      }
    }
  } finally {
    await origin.stop();
  }
});
