/**
 * `pnpm bench upload [--delay-ms 25] [--size 16M] [--runs 1] [--json]`: uploads through the tunnel
 * over a wide-area round trip. A delay proxy (delay-proxy.ts) holds every chunk `--delay-ms` each
 * way in front of the relay's TCP and HTTP ports (a round trip of twice that), and curl POSTs
 * `--size` bytes through the SOCKS5 port to the origin, per row:
 *
 * - `direct`: curl straight to the origin through a delay proxy of its own (the ceiling: one TCP
 *   connection over the same round trip);
 * - `tcp`, `ws`: roamlink over TCP and WebSocket;
 * - `http`: HTTP streaming as the client runs it, on its up-stream where it passes (here it does);
 * - `http-posts`: HTTP streaming kept to a POST per batch (`--no-http-upstream`), what a browser
 *   or a proxy that holds request bodies gets.
 *
 * MB/s is the median of the runs (1 MB = 10^6 B); `vsDirect` its ratio to `direct` in the same
 * run. UDP is left out: the delay proxy carries TCP only.
 */
import { randomFillSync } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type DelayProxy, startDelayProxy } from './delay-proxy.ts';
import { flag, median, printRows, type Row } from './table.ts';
import { upload } from './tunnel-curl.ts';
import { startOrigin } from './tunnel-origin.ts';
import { startRoamlinkTunnel } from './tunnel-roamlink.ts';

const ROWS = ['direct', 'tcp', 'ws', 'http', 'http-posts'] as const;
const VALUE_FLAGS = ['delay-ms', 'size', 'runs'];

function value(args: string[], name: string): string | undefined {
  const i = args.indexOf(`--${name}`);
  if (i < 0) return undefined;
  const v = args[i + 1];
  if (v === undefined || v.startsWith('--')) throw new Error(`--${name} needs a value`);
  return v;
}

function parseBytes(s: string): number {
  const m = /^(\d+)([KMG]?)$/i.exec(s);
  if (!m) throw new Error(`--size: "${s}" is not a size like 16M`);
  const n = Number(m[1]) * 1024 ** ' KMG'.indexOf((m[2] || ' ').toUpperCase());
  if (n < 1) throw new Error('--size must be at least 1 byte');
  return n;
}

export async function run(args: string[]): Promise<void> {
  const json = flag(args, 'json');
  const usage =
    'usage: pnpm bench upload [--delay-ms 25] [--size 16M] [--runs 1] [--json] [--quick]\n';
  if (args.includes('--help') || args.includes('-h')) {
    process.stdout.write(usage);
    return;
  }
  let delayMs: number;
  let size: number;
  let runs: number;
  try {
    for (let i = 0; i < args.length; i++) {
      const a = args[i]!;
      if (a === '--json' || a === '--quick') continue;
      if (!VALUE_FLAGS.includes(a.slice(2))) throw new Error(`unknown argument "${a}"`);
      i++;
    }
    delayMs = Number(value(args, 'delay-ms') ?? 25);
    if (!Number.isFinite(delayMs) || delayMs < 0) throw new Error('--delay-ms needs a number');
    size = parseBytes(value(args, 'size') ?? (flag(args, 'quick') ? '4M' : '16M'));
    runs = Number(value(args, 'runs') ?? 1);
    if (!Number.isSafeInteger(runs) || runs < 1) throw new Error('--runs needs a positive integer');
  } catch (e) {
    process.stderr.write(`${(e as Error).message}\n${usage}`);
    process.exitCode = 2;
    return;
  }
  const dir = mkdtempSync(join(tmpdir(), 'roamlink-upload-'));
  const file = join(dir, 'body');
  writeFileSync(file, randomFillSync(Buffer.allocUnsafe(size)));
  const origin = await startOrigin();
  const proxies: DelayProxy[] = [];
  const delayed = async (port: number): Promise<number> => {
    const p = await startDelayProxy(port, delayMs);
    proxies.push(p);
    return p.port;
  };
  const timeoutMs = 600_000;
  const results = new Map<string, number[]>();
  const errors = new Map<string, string>();
  try {
    for (let r = 0; r < runs; r++) {
      for (const row of ROWS) {
        const log = (m: string): void => {
          if (!json) process.stderr.write(`${row}: ${m}\n`);
        };
        try {
          let MBps: number;
          if (row === 'direct') {
            MBps = (await upload(await delayed(origin.port), file, size, null, timeoutMs)).MBps;
          } else {
            const kind = row === 'http-posts' ? 'http' : row;
            const t = await startRoamlinkTunnel(kind, undefined, {
              ...(row === 'http-posts' ? { clientArgs: ['--no-http-upstream'] } : {}),
              via: async (_k, at) => `127.0.0.1:${await delayed(Number(at.split(':').pop()))}`,
            });
            try {
              MBps = (await upload(origin.port, file, size, t.socksPort, timeoutMs)).MBps;
            } finally {
              await t.stop();
            }
          }
          log(`${(size / 2 ** 20).toFixed(0)} MiB at ${MBps.toFixed(2)} MB/s`);
          results.set(row, [...(results.get(row) ?? []), MBps]);
        } catch (e) {
          errors.set(row, (e as Error).message);
          log(`error: ${(e as Error).message}`);
        }
        await Promise.all(proxies.splice(0).map((p) => p.stop()));
      }
    }
  } finally {
    await Promise.all(proxies.map((p) => p.stop()));
    await origin.stop();
    rmSync(dir, { recursive: true, force: true });
  }
  const direct = results.get('direct');
  const rows: Row[] = ROWS.map((row) => {
    const xs = results.get(row);
    const MBps = xs ? median(xs) : 0;
    return {
      encapsulation: row,
      rttMs: 2 * delayMs,
      bytes: size,
      runs,
      MBps: Number(MBps.toFixed(2)),
      vsDirect: direct && xs ? Number((MBps / median(direct)).toFixed(3)) : 0,
      error: errors.get(row) ?? '',
    };
  });
  printRows(
    rows,
    json,
    `Upload: ${(size / 2 ** 20).toFixed(0)} MiB POSTed through SOCKS5 over a ${2 * delayMs} ms round trip (a delay proxy before the relay), MB/s (1 MB = 10^6 B), median of ${runs}`,
  );
}
