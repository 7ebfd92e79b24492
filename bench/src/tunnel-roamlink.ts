/**
 * The roamlink side of `pnpm bench tunnel`: starts `roamlink relay` and `roamlink connect
 * --socks` as two processes (as a user runs them), the client racing only the one encapsulation
 * under test, and stops both. The harness (tunnel.ts) uses only `startRoamlinkTunnel`; a failure
 * here becomes that row's error, the other rows still run.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import type { SocksTunnel } from './tunnel-ssh.ts';

const CLI = fileURLToPath(new URL('../../apps/client/src/cli.ts', import.meta.url));
const KINDS = ['udp', 'tcp', 'ws', 'http'] as const;
type Kind = (typeof KINDS)[number] | 'udp-1400';

type Line = Record<string, unknown>;

function spawnCli(
  args: string[],
  env: Record<string, string> = {},
): {
  child: ChildProcess;
  next: (pred: (l: Line) => boolean, what: string) => Promise<Line>;
} {
  const child = spawn(process.execPath, [CLI, ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, ...env },
  });
  let err = '';
  child.stderr!.on('data', (d) => (err = (err + d).slice(-4000)));
  const lines: Line[] = [];
  const waiters = new Set<() => void>();
  createInterface({ input: child.stdout! }).on('line', (l) => {
    try {
      lines.push(JSON.parse(l) as Line);
    } catch {
      lines.push({ raw: l });
    }
    for (const w of waiters) w();
  });
  const next = (pred: (l: Line) => boolean, what: string): Promise<Line> =>
    new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        waiters.delete(check);
        reject(new Error(`no ${what} in 15 s: ${err}`));
      }, 15_000);
      const onExit = (code: number | null): void => {
        clearTimeout(timer);
        reject(new Error(`exited (${code}) before ${what}: ${err}`));
      };
      child.once('exit', onExit);
      const check = (): void => {
        const hit = lines.find(pred);
        if (hit) {
          clearTimeout(timer);
          waiters.delete(check);
          child.off('exit', onExit);
          resolve(hit);
        }
      };
      waiters.add(check);
      check();
    });
  return { child, next };
}

const stopChild = (c: ChildProcess): Promise<void> =>
  new Promise((resolve) => {
    if (c.exitCode !== null || c.signalCode !== null) return resolve();
    c.once('exit', () => resolve());
    c.kill('SIGINT');
    setTimeout(() => c.kill('SIGKILL'), 3000).unref();
  });

/** `roamlink connect --socks`, plus `-L` to `forwardTo` (the origin) when given. */
export async function startRoamlinkTunnel(
  encapsulation: Kind,
  forwardTo?: number,
): Promise<SocksTunnel> {
  const dir = mkdtempSync(join(tmpdir(), 'roamlink-bench-'));
  // udp-1400: UDP held at the common 1400-byte packet (no path-MTU search), on both sides.
  const kind: (typeof KINDS)[number] = encapsulation === 'udp-1400' ? 'udp' : encapsulation;
  const env: Record<string, string> =
    encapsulation === 'udp-1400' ? { ROAMLINK_UDP_MAX_PAYLOAD: '1360' } : {};
  const key = spawnCli(['keygen', '--data-dir', join(dir, 'client')]);
  const clientKey = String((await key.next((l) => typeof l.raw === 'string', 'client key')).raw);
  const relay = spawnCli(
    [
      'relay',
      '--udp',
      '127.0.0.1:0',
      '--tcp',
      '127.0.0.1:0',
      '--http',
      '127.0.0.1:0',
      '--data-dir',
      join(dir, 'relay'),
      '--allow',
      clientKey,
      '--egress-allow',
      '127.0.0.1/32',
      '--log-format',
      'json',
    ],
    env,
  );
  let client: ReturnType<typeof spawnCli> | undefined;
  const stop = async (): Promise<void> => {
    await Promise.all([client ? stopChild(client.child) : undefined, stopChild(relay.child)]);
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    const l = await relay.next((x) => x.msg === 'listening', 'relay listening');
    client = spawnCli(
      [
        'connect',
        String(l.udp),
        '--relay-key',
        String(l.publicKey),
        '--relay-tcp',
        String(l.tcp),
        '--relay-http',
        String(l.http),
        '--data-dir',
        join(dir, 'client'),
        '--socks',
        '127.0.0.1:0',
        ...(forwardTo === undefined ? [] : ['-L', `127.0.0.1:0:127.0.0.1:${forwardTo}`]),
        '--json-log',
        ...KINDS.filter((k) => k !== kind).map((k) => `--no-${k}`),
      ],
      env,
    );
    const socks = await client.next((x) => x.msg === 'socks-listening', 'SOCKS port');
    const fwd =
      forwardTo === undefined
        ? undefined
        : await client.next((x) => x.msg === 'forward-listening', 'forward');
    const reg = await client.next((x) => x.msg === 'registered', 'registration');
    const port = Number(String(socks.address).split(':').pop());
    return {
      socksPort: port,
      ...(fwd ? { forwardPort: Number(String(fwd.address).split(':').pop()) } : {}),
      stop,
      info: { encapsulation: reg.encapsulation, verdict: reg.verdict },
      pids: [relay.child.pid, client.child.pid].filter((p): p is number => p !== undefined),
    };
  } catch (e) {
    await stop();
    throw e;
  }
}
