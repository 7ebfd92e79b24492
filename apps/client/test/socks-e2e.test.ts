/**
 * End to end with the real processes: `roamlink relay` and `roamlink connect --socks`, `curl
 * --socks5-hostname` downloading 256 MiB from a local HTTP server through the tunnel, and
 * uploading 128 MiB to it, while the test forces moves: the active transport's socket is killed,
 * the relay's UDP listener closes (UDP blocked), the client goes HTTP-only, and everything comes
 * back. The sha256 of what arrived must match what was sent, and the session must never handshake
 * again for a move.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { test } from 'node:test';
import {
  clientStatus,
  connectArgs,
  keygen,
  type Line,
  type Proc,
  relayArgs,
  run,
  sleep,
  tempDir,
} from './cli-process.ts';

const TOTAL = 256 * 1024 * 1024;
/** The server paces itself so that the download spans the moves (≈ 16 s at 16 MiB/s). */
const RATE = 16 * 1024 * 1024;
const CHUNK = 256 * 1024;

/** Deterministic bytes: chunk i is a xorshift stream seeded with i, so no two chunks repeat. */
function chunkBytes(i: number): Buffer {
  const b = Buffer.allocUnsafe(CHUNK);
  let x = (i * 2654435761 + 1) >>> 0 || 1;
  for (let o = 0; o < CHUNK; o += 4) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    b.writeUInt32LE(x >>> 0, o);
  }
  return b;
}

function origin(): Promise<{ server: Server; port: number; sha256: Promise<string> }> {
  let resolveSha: (h: string) => void = () => {};
  const sha256 = new Promise<string>((r) => (resolveSha = r));
  const server = createServer((req, res) => {
    if (req.url !== '/data') {
      res.writeHead(404).end();
      return;
    }
    res.writeHead(200, { 'content-length': TOTAL, 'content-type': 'application/octet-stream' });
    const h = createHash('sha256');
    let i = 0;
    const started = performance.now();
    const next = (): void => {
      while (i * CHUNK < TOTAL) {
        // Pace: no further ahead than RATE allows.
        const due = started + ((i * CHUNK) / RATE) * 1000;
        if (performance.now() < due) {
          setTimeout(next, Math.max(1, due - performance.now()));
          return;
        }
        const c = chunkBytes(i++);
        h.update(c);
        if (!res.write(c)) {
          res.once('drain', next);
          return;
        }
      }
      res.end();
      resolveSha(h.digest('hex'));
    };
    next();
  });
  return new Promise((resolve) =>
    server.listen(0, '127.0.0.1', () =>
      resolve({ server, port: (server.address() as AddressInfo).port, sha256 }),
    ),
  );
}

/** The active transport, as the control input names it. */
async function activeOf(client: Proc): Promise<string> {
  const enc = String((await clientStatus(client)).encapsulation);
  return enc.startsWith('http') ? 'http' : enc === 'websocket' ? 'ws' : enc;
}

/** Six moves, about 2 s apart, while a transfer runs; `httpOnly` runs during the HTTP-only one. */
async function forceMoves(
  client: Proc,
  relay: Proc,
  httpOnly?: () => Promise<void>,
): Promise<void> {
  await sleep(1500);
  client.send(`drop ${await activeOf(client)}`); // 1: kill the active transport's socket
  await sleep(2000);
  relay.send('udp off'); // 2: UDP blocked: the relay's UDP listener is gone
  client.send(`drop ${await activeOf(client)}`);
  await sleep(2000);
  client.send('only http'); // 3: HTTP only
  const t = performance.now();
  await sleep(500);
  await httpOnly?.();
  await sleep(2500 - (performance.now() - t));
  client.send('all'); // 4: everything back (UDP still blocked at the relay)
  await sleep(2000);
  relay.send('udp on'); // 5: UDP back: the session may return to it
  client.send(`drop ${await activeOf(client)}`);
  await sleep(2000);
  client.send(`drop ${await activeOf(client)}`); // 6: once more for good measure
}

/**
 * After the transfer: the client exits cleanly, the moves caused at least five handovers through
 * several encapsulations, HTTP among them, and the session never handshook again.
 */
async function checkMoves(client: Proc): Promise<void> {
  const s = await clientStatus(client);
  client.child.kill('SIGINT');
  assert.equal(await client.exited, 0, client.stderr());
  const summary = client.lines.find((l) => l.summary !== undefined)?.summary as Line;
  // Handovers the moves caused: after the first control line (start-up races do not count).
  const firstMove = client.lines.findIndex((l) => l.msg === 'control');
  const handovers = client.lines.slice(firstMove).filter((l) => l.msg === 'handover');
  const visited = new Set(handovers.map((h) => h.encapsulation));
  const detail = JSON.stringify({ s, summary, handovers });
  assert.ok(handovers.length >= 5, `at least five handovers: ${detail}`);
  assert.ok(
    [...visited].some((e) => String(e).startsWith('http')),
    `went HTTP-only: ${detail}`,
  );
  assert.ok(visited.size >= 3, `several encapsulations: ${detail}`);
  assert.equal(summary.handshakes, 1, `no new key exchange for any move: ${detail}`);
  assert.equal(summary.state, 'established', detail);
  assert.equal(summary.wsMasking, 'native', detail);
  console.log(`# handovers: ${handovers.map((h) => h.encapsulation).join(' -> ')}`);
}

/** A relay and a SOCKS client on it, registered; `body` runs with them, then both are stopped. */
async function withTunnel(
  body: (relay: Proc, client: Proc, socks: string) => Promise<void>,
): Promise<void> {
  const dir = tempDir();
  const clientPub = await keygen(dir);
  assert.match(clientPub, /^[0-9a-f]{64}$/);
  const relay = run(relayArgs(dir, clientPub, ['--egress-allow', '127.0.0.1/32']));
  let client: Proc | undefined;
  try {
    const listening = await relay.until((l) => l.msg === 'listening', 'relay listening');
    // Both ends mask WebSocket frames natively (bufferutil): the relay says so as it starts.
    assert.equal(listening.wsMasking, 'native');
    client = run(connectArgs(listening, dir, ['--socks', '127.0.0.1:0']));
    const socks = await client.until((l) => l.msg === 'socks-listening', 'SOCKS port');
    await client.until((l) => l.msg === 'registered', 'registration');
    await body(relay, client, socks.address as string);
  } finally {
    client?.child.kill('SIGINT');
    relay.child.kill('SIGINT');
    await relay.exited;
  }
}

/**
 * curl through the SOCKS port with `args`; stdout and stderr collected. `exit` settles on 'close',
 * once curl has exited and its output has all been read ('exit' can come before the last of it).
 */
function curlVia(
  socks: string,
  args: string[],
  stdin: 'ignore' | 'pipe',
  onOut: (d: Buffer) => void,
): { child: ChildProcess; exit: Promise<{ code: number | null; stderr: string }> } {
  const child = spawn(
    'curl',
    ['--silent', '--show-error', '--fail', '--socks5-hostname', socks, ...args],
    { stdio: [stdin, 'pipe', 'pipe'] },
  );
  child.stdout!.on('data', onOut);
  let stderr = '';
  child.stderr!.on('data', (d) => (stderr += d));
  const exit = new Promise<{ code: number | null; stderr: string }>((r) =>
    child.once('close', (code) => r({ code, stderr })),
  );
  return { child, exit };
}

test('curl downloads 256 MiB through the SOCKS5 port across five moves, sha256 intact, one handshake', {
  timeout: 180_000,
}, async () => {
  const src = await origin();
  let curl: ChildProcess | undefined;
  try {
    await withTunnel(async (relay, client, socks) => {
      // curl's output is hashed as it arrives; nothing is written to disk.
      const got = createHash('sha256');
      let bytes = 0;
      const c = curlVia(socks, [`http://127.0.0.1:${src.port}/data`], 'ignore', (d) => {
        bytes += d.length;
        got.update(d);
      });
      curl = c.child;
      await forceMoves(client, relay);
      const { code, stderr } = await c.exit;
      assert.equal(code, 0, `curl failed: ${stderr}`);
      assert.equal(bytes, TOTAL, 'every byte arrived');
      assert.equal(got.digest('hex'), await src.sha256, 'sha256 of what arrived matches');
      await checkMoves(client);
    });
  } finally {
    curl?.kill();
    src.server.close();
  }
});

const UP_TOTAL = 128 * 1024 * 1024;

/** An origin that takes one streamed PUT /sink and answers with the body's length and sha256. */
function sink(): Promise<{ server: Server; port: number }> {
  const server = createServer((req, res) => {
    if (req.method !== 'PUT' || req.url !== '/sink') {
      res.writeHead(404).end();
      return;
    }
    const h = createHash('sha256');
    let n = 0;
    req.on('data', (d: Buffer) => {
      n += d.length;
      h.update(d);
    });
    req.on('end', () => res.writeHead(200).end(`${n} ${h.digest('hex')}`));
  });
  return new Promise((resolve) =>
    server.listen(0, '127.0.0.1', () =>
      resolve({ server, port: (server.address() as AddressInfo).port }),
    ),
  );
}

test('curl uploads 128 MiB through the SOCKS5 port across five moves, sha256 intact, one handshake', {
  timeout: 180_000,
}, async () => {
  // The other direction: the client is the sender, so what it had in flight on a path that died
  // is its to send again, and on HTTP the body goes up the up-stream or in POSTs.
  const dst = await sink();
  let curl: ChildProcess | undefined;
  try {
    await withTunnel(async (relay, client, socks) => {
      // curl streams its stdin as the body (-T -: chunked, nothing read ahead into memory); the
      // test feeds it at RATE so that the upload spans the moves.
      let answer = '';
      const c = curlVia(socks, ['-T', '-', `http://127.0.0.1:${dst.port}/sink`], 'pipe', (d) => {
        answer += d;
      });
      curl = c.child;
      const sent = createHash('sha256');
      const feed = (async (): Promise<void> => {
        const started = performance.now();
        const stdin = c.child.stdin!;
        for (let i = 0; i * CHUNK < UP_TOTAL; i++) {
          const wait = started + ((i * CHUNK) / RATE) * 1000 - performance.now();
          if (wait > 0) await sleep(wait);
          const b = chunkBytes(i + 100_000);
          sent.update(b);
          if (!stdin.write(b)) await new Promise((r) => stdin.once('drain', r));
        }
        stdin.end();
      })();
      let onHttp: Line | undefined;
      await forceMoves(client, relay, async () => {
        // Up to ~1.8 s for the session to settle on HTTP streaming with its up-stream.
        for (let i = 0; i < 9; i++) {
          onHttp = await clientStatus(client);
          if (onHttp.httpUpstream === 'live') return;
          await sleep(200);
        }
      });
      await feed;
      const { code, stderr } = await c.exit;
      assert.equal(code, 0, `curl failed: ${stderr}`);
      const [n, sha] = answer.trim().split(' ');
      assert.equal(Number(n), UP_TOTAL, 'the origin got every byte');
      assert.equal(sha, sent.digest('hex'), 'sha256 of what arrived matches');
      // While HTTP was all there was, the body went up the up-stream, not in POSTs.
      assert.equal(onHttp?.encapsulation, 'http-stream', JSON.stringify(onHttp));
      assert.equal(onHttp?.httpUpstream, 'live', JSON.stringify(onHttp));
      await checkMoves(client);
    });
  } finally {
    curl?.kill();
    dst.server.close();
  }
});
