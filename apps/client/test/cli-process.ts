/**
 * The real `roamlink` processes for end-to-end tests: spawn the CLI, collect its stdout as JSON
 * lines (anything else as `{ raw }`), wait for a line, write control lines to its stdin. Plus the
 * usual start-up: a client key, a relay on loopback with ephemeral ports (its first line is
 * `listening`), and a client connected to it.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync } from 'node:fs';
import {
  type AddressInfo,
  createServer,
  type Server,
  type Socket,
  connect as tcpConnect,
} from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { type Squid, startSquid } from '../../../packages/node/test/squid.ts';

export const CLI = fileURLToPath(new URL('../src/cli.ts', import.meta.url));

export type Line = Record<string, unknown>;

export interface Proc {
  child: ChildProcess;
  /** Every stdout line so far, parsed. */
  lines: Line[];
  stderr: () => string;
  /** The first line (from the start) that matches; fails after `ms` (default 15 s). */
  until(pred: (l: Line) => boolean, what: string, ms?: number): Promise<Line>;
  /** Writes one line to the process's stdin (`--control`). */
  send(line: string): void;
  /** The exit code (null when a signal ended it). */
  exited: Promise<number | null>;
}

export function run(args: string[]): Proc {
  const child = spawn(process.execPath, [CLI, ...args], { stdio: ['pipe', 'pipe', 'pipe'] });
  let err = '';
  child.stderr!.on('data', (d) => (err += d));
  // A process that exits before reading its stdin must not fail the test with EPIPE.
  child.stdin!.on('error', () => {});
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
  const exited = new Promise<number | null>((r) => child.once('exit', r));
  return {
    child,
    lines,
    stderr: () => err,
    exited,
    send: (line) => child.stdin!.write(`${line}\n`),
    until: (pred, what, ms = 15_000) =>
      new Promise((resolve, reject) => {
        const timer = setTimeout(() => {
          waiters.delete(check);
          reject(new Error(`no ${what} in ${ms} ms: ${err.slice(-2000)}`));
        }, ms);
        const check = (): void => {
          const hit = lines.find(pred);
          if (hit) {
            clearTimeout(timer);
            waiters.delete(check);
            resolve(hit);
          }
        };
        waiters.add(check);
        check();
      }),
  };
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** "host:port" (as the processes log addresses) split; the port is after the last colon. */
export const hostPort = (a: string): { host: string; port: number } => {
  const i = a.lastIndexOf(':');
  return { host: a.slice(0, i), port: Number(a.slice(i + 1)) };
};

/** A fresh directory for one test's keys. */
export const tempDir = (): string => mkdtempSync(join(tmpdir(), 'roamlink-e2e-'));

/** `roamlink keygen` into `<dir>/client`; returns the printed stdout line (the public key). */
export async function keygen(dir: string): Promise<string> {
  const key = run(['keygen', '--data-dir', join(dir, 'client')]);
  await key.exited;
  return String((key.lines[0] as { raw?: unknown } | undefined)?.raw);
}

/** The relay's flags for loopback with ephemeral ports, JSON logs and stdin control. */
export function relayArgs(dir: string, clientPub: string, extra: string[] = []): string[] {
  return [
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
    clientPub,
    '--log-format',
    'json',
    '--control',
    ...extra,
  ];
}

/** The client's flags for the relay whose `listening` line is given (JSON log, stdin control). */
export function connectArgs(listening: Line, dir: string, extra: string[] = []): string[] {
  return [
    'connect',
    listening.udp as string,
    '--relay-key',
    listening.publicKey as string,
    '--relay-tcp',
    listening.tcp as string,
    '--relay-http',
    listening.http as string,
    '--data-dir',
    join(dir, 'client'),
    '--json-log',
    '--control',
    ...extra,
  ];
}

/** Ends a process if it still runs (SIGINT, then SIGKILL after `ms`) and waits for its exit. */
export async function stop(p: Proc | undefined, ms = 5000): Promise<void> {
  if (!p || p.child.exitCode !== null || p.child.signalCode !== null) return;
  p.child.kill('SIGINT');
  const t = setTimeout(() => p.child.kill('SIGKILL'), ms);
  await p.exited;
  clearTimeout(t);
}

/**
 * Turns WebSocket off on a running client (`disable ws`) and returns its next registration, which
 * must be on HTTP streaming: what "the session moves to HTTP" means in a test.
 */
export async function moveToHttp(client: Proc, what: string): Promise<Line> {
  const n = client.lines.length;
  client.send('disable ws');
  const moved = await client.until(
    (l) => l.msg === 'registered' && client.lines.indexOf(l) >= n,
    `registration over HTTP ${what}`,
  );
  assert.equal(moved.encapsulation, 'http-stream');
  return moved;
}

/** The client's `status` answer (control line), after the lines already seen. */
export async function clientStatus(client: Proc): Promise<Line> {
  const n = client.lines.length;
  client.send('status');
  const l = await client.until(
    (x) => x.status !== undefined && client.lines.indexOf(x) >= n,
    'status',
  );
  return l.status as Line;
}

/** A TCP server on 127.0.0.1 (connection errors ignored); `port` once listening. */
export async function serve(
  onConnection: (s: Socket) => void,
): Promise<{ server: Server; port: number }> {
  const server = createServer((s) => {
    s.on('error', () => {});
    onConnection(s);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return { server, port: (server.address() as AddressInfo).port };
}

/** A TCP echo server on 127.0.0.1 (half-close passed back): the target of streams in tests. */
export function tcpEcho(): Promise<{ server: Server; port: number }> {
  return serve((s) => s.pipe(s));
}

/**
 * One round trip through a forward to an echo server: connects to `address` (host:port), writes
 * `text` and resolves with the first bytes that come back, and the connection, still open (later
 * errors on it are ignored).
 */
export async function roundTrip(
  address: string,
  text: string,
): Promise<{ reply: string; socket: Socket }> {
  const { host, port } = hostPort(address);
  const socket = tcpConnect(port, host);
  socket.on('error', () => {});
  await once(socket, 'connect');
  socket.write(text);
  const [d] = (await once(socket, 'data')) as [Buffer];
  return { reply: d.toString(), socket };
}

/** As `roundTrip`, then closes the connection; resolves with the reply. */
export async function echoed(address: string, text: string): Promise<string> {
  const { reply, socket } = await roundTrip(address, text);
  socket.destroy();
  return reply;
}

/** What withRelay gives its body. */
export interface RelayFixture {
  dir: string;
  listening: Line;
  /** Client arguments of a `-L` forward to the echo. */
  forward: string[];
  /** Starts nothing; `c` is stopped after the body, with the relay. */
  track: (c: Proc) => Proc;
}

/**
 * A TCP echo and a relay (`relayFlags` beside the usual ones); `body` gets them with the client
 * arguments of a forward to the echo, and starts its clients through `track` (each is stopped
 * after, with everything else).
 */
export async function withRelay(
  relayFlags: string[],
  body: (p: RelayFixture) => Promise<void>,
): Promise<void> {
  const echo = await tcpEcho();
  const dir = tempDir();
  const pub = await keygen(dir);
  const relay = run(relayArgs(dir, pub, relayFlags));
  const clients: Proc[] = [];
  try {
    const listening = await relay.until((l) => l.msg === 'listening', 'relay listening');
    await body({
      dir,
      listening,
      forward: ['-L', `127.0.0.1:0:127.0.0.1:${echo.port}`],
      track: (c) => {
        clients.push(c);
        return c;
      },
    });
  } finally {
    await stop(relay);
    for (const c of clients) await stop(c);
    echo.server.close();
  }
}

/** withRelay with squid (`squidOpts`) too, stopped after everything else. */
export async function withSquidRelay(
  squidOpts: Parameters<typeof startSquid>[0],
  relayFlags: string[],
  body: (p: RelayFixture & { squid: Squid }) => Promise<void>,
): Promise<void> {
  const squid = await startSquid(squidOpts);
  try {
    await withRelay(relayFlags, (p) => body({ ...p, squid }));
  } finally {
    await squid.stop();
  }
}
