/**
 * `pnpm bench ws-receive [--size 1G] [--runs 12] [--json]`: what a WebSocket client spends to
 * receive 1 MiB binary messages (the relay's downloads) with `ws` reading the socket itself
 * ('ws'), against `ws` handed whole frames from a read arena (`connectWsFrames`, 'frames', what
 * `roamlink connect` uses on a direct ws:// path).
 *
 * Method: a `ws` server in a process of its own sends the same 1 MiB message as fast as the
 * connection takes it. Each measurement is a fresh client process (a process's own speed varies
 * by tens of percent and keeps that for its life) that receives `--size` after 64 MiB of warm-up
 * and reports its CPU (user and system, from `process.cpuUsage`) and its rate. The two modes take
 * turns, the first of each pair alternating; a ratio is the median of the per-pair ratios.
 */
import { randomBytes } from 'node:crypto';
import type { NetConnectOpts } from 'node:net';
import { fileURLToPath } from 'node:url';
import { connectWsFrames } from '@roamlink/node';
import { WebSocket, WebSocketServer } from 'ws';
import { spawnNode, stopChild } from './child.ts';
import { flag, median, option, printRows, type Row } from './table.ts';
import { parseSize } from './tunnel.ts';

const SELF = fileURLToPath(import.meta.url);
const MESSAGE = 1 << 20;
const WARMUP_MESSAGES = 64;
const MODES = ['ws', 'frames'] as const;
type Mode = (typeof MODES)[number];

interface Sample {
  mode: Mode;
  MBps: number;
  cpuPerGiB: number;
  userPerGiB: number;
  sysPerGiB: number;
}

/** The server: sends MESSAGE-byte messages while less than 8 MiB waits in the socket. */
function serve(): void {
  const wss = new WebSocketServer({ port: 0, host: '127.0.0.1', perMessageDeflate: false });
  const msg = randomBytes(MESSAGE);
  wss.on('listening', () => {
    const a = wss.address();
    process.stdout.write(
      `${JSON.stringify({ port: a !== null && typeof a === 'object' ? a.port : 0 })}\n`,
    );
  });
  wss.on('connection', (s) => {
    const pump = (): void => {
      while (s.readyState === WebSocket.OPEN && s.bufferedAmount < 8 * MESSAGE) s.send(msg);
      if (s.readyState === WebSocket.OPEN) setImmediate(pump);
    };
    pump();
  });
  process.once('SIGINT', () => process.exit(0));
}

/** One client: receives `bytes` after the warm-up, prints a Sample, exits. */
function receive(port: number, mode: Mode, bytes: number): void {
  const messages = Math.ceil(bytes / MESSAGE);
  const ws = new WebSocket(`ws://127.0.0.1:${port}/`, {
    maxPayload: MESSAGE,
    perMessageDeflate: false,
    ...(mode === 'frames'
      ? {
          createConnection: ((o: NetConnectOpts) =>
            connectWsFrames(o, MESSAGE)) as unknown as typeof import('node:net').createConnection,
        }
      : {}),
  });
  let n = 0;
  let t0 = 0n;
  let c0 = process.cpuUsage();
  ws.on('message', (m: Buffer) => {
    if (m.length !== MESSAGE) throw new Error(`a message of ${m.length} bytes`);
    n++;
    if (n === WARMUP_MESSAGES) {
      t0 = process.hrtime.bigint();
      c0 = process.cpuUsage();
    } else if (n === WARMUP_MESSAGES + messages) {
      const c = process.cpuUsage(c0);
      const s = Number(process.hrtime.bigint() - t0) / 1e9;
      const gib = (messages * MESSAGE) / 2 ** 30;
      const sample: Sample = {
        mode,
        MBps: (messages * MESSAGE) / s / 1e6,
        cpuPerGiB: (c.user + c.system) / 1e6 / gib,
        userPerGiB: c.user / 1e6 / gib,
        sysPerGiB: c.system / 1e6 / gib,
      };
      process.stdout.write(`${JSON.stringify(sample)}\n`);
      ws.terminate();
      process.exit(0);
    }
  });
  ws.on('error', (e) => {
    process.stderr.write(`${e.message}\n`);
    process.exit(1);
  });
}

export async function run(args: string[]): Promise<void> {
  const json = flag(args, 'json');
  const quick = flag(args, 'quick');
  const at = args.indexOf('--size');
  const bytes = parseSize(at < 0 ? (quick ? '16M' : '1G') : (args[at + 1] ?? ''));
  const runs = option(args, 'runs', quick ? 2 : 12);
  if (!Number.isInteger(runs) || runs < 1) throw new Error(`--runs: ${runs}`);
  const server = spawnNode(SELF, ['server']);
  const samples: Sample[][] = [];
  try {
    const port = Number((await server.next((l) => typeof l.port === 'number', 'server port')).port);
    for (let r = 0; r < runs; r++) {
      const pair: Sample[] = [];
      for (const mode of r % 2 ? [...MODES].reverse() : MODES) {
        const c = spawnNode(SELF, ['client', String(port), mode, String(bytes)]);
        const line = await c.next((l) => l.mode === mode, `${mode} sample`);
        await stopChild(c.child);
        pair.push(line as unknown as Sample);
        if (!json) {
          process.stderr.write(
            `  ${mode}: ${(line.MBps as number).toFixed(0)} MB/s, ${(line.cpuPerGiB as number).toFixed(3)} s CPU per GiB (pair ${r + 1}/${runs})\n`,
          );
        }
      }
      samples.push(MODES.map((m) => pair.find((s) => s.mode === m)!));
    }
  } finally {
    await stopChild(server.child);
  }
  const rows: Row[] = MODES.map((mode, i) => {
    const mine = samples.map((p) => p[i]!);
    const base = samples.map((p) => p[0]!);
    return {
      mode,
      runs,
      MBps: median(mine.map((s) => s.MBps)),
      cpuPerGiB: median(mine.map((s) => s.cpuPerGiB)),
      userPerGiB: median(mine.map((s) => s.userPerGiB)),
      sysPerGiB: median(mine.map((s) => s.sysPerGiB)),
      // Against `ws` reading for itself, pair by pair.
      cpuVsWs: median(mine.map((s, k) => s.cpuPerGiB / base[k]!.cpuPerGiB)),
      MBpsVsWs: median(mine.map((s, k) => s.MBps / base[k]!.MBps)),
    };
  });
  printRows(
    rows,
    json,
    `WebSocket receive: ${runs} pairs of fresh client processes, ${bytes / MESSAGE} messages of 1 MiB each`,
  );
}

const [role, ...rest] = process.argv.slice(2);
if (role === 'server') serve();
else if (role === 'client') receive(Number(rest[0]), rest[1] as Mode, Number(rest[2]));
