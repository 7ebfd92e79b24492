/**
 * The Deno and Bun entries, each bundled as it is deployed and run by its runtime (both install
 * from the npm registry: the binary is in a per-platform optional dependency), driven by the same
 * Node client: handshake, registration on WebSocket, a stream to a TCP echo server, a move to
 * HTTP on the same SA.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { Encapsulation, toHex, Verdict } from '@roamlink/core';
import type { MuxDuplex } from '@roamlink/node';
import { build } from 'esbuild';
import { echoServer, echoThrough, makeKeys, sha256, TestClient, until } from './worker-harness.ts';

const require = createRequire(import.meta.url);

/** The runtime's binary from its platform package, or undefined where none is installed. */
function binary(name: 'deno' | 'bun'): string | undefined {
  if (process.platform !== 'linux' || process.arch !== 'x64') return undefined;
  try {
    const from = createRequire(require.resolve(`${name}/package.json`));
    const pkg = name === 'deno' ? '@deno/linux-x64-glibc' : '@oven/bun-linux-x64';
    const dir = dirname(from.resolve(`${pkg}/package.json`));
    return join(dir, name === 'deno' ? 'deno' : 'bin/bun');
  } catch {
    return undefined;
  }
}

async function bundle(entry: string, out: string): Promise<void> {
  const r = await build({
    entryPoints: [fileURLToPath(new URL(`../src/${entry}`, import.meta.url))],
    bundle: true,
    format: 'esm',
    platform: 'neutral',
    target: 'es2022',
    mainFields: ['module', 'main'],
    write: false,
    logLevel: 'silent',
  });
  writeFileSync(out, r.outputFiles[0]!.text);
}

/** Starts the runtime on the bundle; resolves with its base URL once it listens. */
function run(
  cmd: string[],
  env: Record<string, string>,
): Promise<{ p: ChildProcess; base: string }> {
  const p = spawn(cmd[0]!, cmd.slice(1), { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no listening line: ${out}`)), 20_000);
    const onData = (b: Buffer): void => {
      out += b.toString();
      const m = /listening on (http:\/\/[^\s]+)/.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve({ p, base: m[1]! });
      }
    };
    p.stdout!.on('data', onData);
    p.stderr!.on('data', onData);
    p.once('exit', (code) => reject(new Error(`exited ${code}: ${out}`)));
  });
}

for (const name of ['deno', 'bun'] as const) {
  const bin = binary(name);
  test(`${name}: handshake, registration, a stream, a move to HTTP`, {
    skip: !bin && `no ${name} binary for this platform`,
  }, async () => {
    const dir = mkdtempSync(join(tmpdir(), `roamlink-${name}-`));
    const keys = makeKeys();
    const echo = await echoServer();
    let proc: ChildProcess | undefined;
    const c = new TestClient(keys);
    try {
      const file = join(dir, `relay-${name}.mjs`);
      await bundle(`${name}.ts`, file);
      const t0 = performance.now();
      const { p, base } = await run(
        name === 'deno' ? [bin!, 'run', '--allow-net', '--allow-env', file] : [bin!, file],
        {
          PATH: process.env.PATH ?? '',
          HOME: dir,
          DENO_DIR: join(dir, 'deno'),
          NO_COLOR: '1',
          ROAMLINK_RELAY_KEY: toHex(keys.relay.secretKey),
          ROAMLINK_ALLOW_CLIENTS: toHex(keys.client.publicKey),
          ROAMLINK_EGRESS_ALLOW: '127.0.0.1',
          ROAMLINK_LISTEN: '127.0.0.1:0',
        },
      );
      proc = p;
      const startMs = Math.round(performance.now() - t0);
      const ws = await c.dialWs(base);
      const hs = c.openHttp(base, 'stream');
      c.connect([ws, hs]);
      await until(
        () => c.session.encapsulation === Encapsulation.WEBSOCKET,
        10_000,
        'registration',
      );
      assert.ok(c.rreps.length > 0);
      for (const r of c.rreps) {
        assert.deepEqual(r.encapsulations, [
          Encapsulation.WEBSOCKET,
          Encapsulation.HTTP_STREAM,
          Encapsulation.HTTP_POLL,
        ]);
      }
      // On loopback, nothing between: the relay sees the client's own socket ends.
      assert.equal(c.session.verdict, Verdict.NONE);
      const s = (await c.host.open({ host: '127.0.0.1', port: echo.port })) as MuxDuplex;
      const d1 = new Uint8Array(randomBytes(256 * 1024));
      assert.equal(sha256(await echoThrough(s, d1, 20_000)), sha256(d1));
      const sa = c.session.current!.localSpi;
      c.ws.closePath(ws.path);
      c.move([hs], 'ws-closed');
      await until(() => c.session.encapsulation === Encapsulation.HTTP_STREAM, 10_000, 'move');
      const d2 = new Uint8Array(randomBytes(128 * 1024));
      assert.equal(sha256(await echoThrough(s, d2, 20_000)), sha256(d2));
      assert.equal(c.session.current!.localSpi, sa);
      assert.equal(c.handshakes, 1);
      s.end();
      console.log(`# ${name} startMs=${startMs}`);
    } finally {
      await c.close();
      proc?.kill();
      echo.server.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
}
