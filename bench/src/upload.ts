/**
 * `pnpm bench upload [--delay-ms 25] [--size 16M] [--runs 1] [--warmup 0] [--json]`: uploads
 * through the tunnel over a wide-area round trip. A delay proxy (delay-proxy.ts) holds every chunk
 * `--delay-ms` each way in front of the relay's TCP and HTTP ports (a round trip of twice that),
 * and curl POSTs `--size` bytes through the SOCKS5 port to the origin, per row:
 *
 * - `direct`: curl straight to the origin through a delay proxy of its own. Not one TCP connection
 *   over a real round trip: curl's connection ends at the proxy on loopback, so its window never
 *   sees the delay (no slow start over it); the proxy holds up to 8 MiB each way. It is the best a
 *   path with that latency could do, and an optimistic baseline for short uploads;
 * - `udp` (only with `--delay-ms 0`: the delay proxy carries TCP only), `tcp`, `ws`: roamlink over
 *   UDP, TCP and WebSocket;
 * - `http`: HTTP streaming as the client runs it, on its up-stream where it passes (here it does);
 * - `http-posts`: HTTP streaming kept to a POST per batch (`--no-http-upstream`), what a browser
 *   or a proxy that holds request bodies gets.
 *
 * The same goes for the tunnels' own TCP connections to the relay: the delay is seen only by the
 * stream layer inside, whose congestion window (RFC 9002 slow start, from 2 packets of ~60 KB on
 * these paths) and receive windows (1 MiB per stream, auto-tuned to 8 MiB) then set the ramp. On a
 * real wide-area path the outer TCP connection ramps from its own ~14 KB window first.
 *
 * `--delay-ms 0` puts no proxy anywhere: uploads on loopback, the counterpart of `pnpm bench
 * tunnel`'s downloads. `--warmup` uploads that many bytes through each tunnel before the timed
 * runs (a fresh Node process runs its first few hundred MB slower, before the JIT has caught up).
 *
 * MB/s is the median of the runs (1 MB = 10^6 B); `vsDirect` its ratio to `direct` in the same
 * run; `cpuPerGiB` the CPU seconds the relay and the client (or the delay proxies and curl's
 * origin for `direct`: not counted, 0) spent per GiB uploaded, median of the runs, from /proc.
 */
import { randomFillSync } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type DelayProxy, startDelayProxy } from './delay-proxy.ts';
import { treeCpuSeconds } from './proc-cpu.ts';
import { flag, median, printRows, type Row } from './table.ts';
import { upload } from './tunnel-curl.ts';
import { startOrigin } from './tunnel-origin.ts';
import { startRoamlinkTunnel } from './tunnel-roamlink.ts';

const ROWS = ['direct', 'udp', 'tcp', 'ws', 'http', 'http-posts'] as const;
const VALUE_FLAGS = ['delay-ms', 'size', 'runs', 'warmup'];

function value(args: string[], name: string): string | undefined {
  const i = args.indexOf(`--${name}`);
  if (i < 0) return undefined;
  const v = args[i + 1];
  if (v === undefined || v.startsWith('--')) throw new Error(`--${name} needs a value`);
  return v;
}

function parseBytes(s: string, name = 'size', min = 1): number {
  const m = /^(\d+)([KMG]?)$/i.exec(s);
  if (!m) throw new Error(`--${name}: "${s}" is not a size like 16M`);
  const n = Number(m[1]) * 1024 ** ' KMG'.indexOf((m[2] || ' ').toUpperCase());
  if (n < min) throw new Error(`--${name} must be at least ${min} byte${min === 1 ? '' : 's'}`);
  return n;
}

export async function run(args: string[]): Promise<void> {
  const json = flag(args, 'json');
  const usage =
    'usage: pnpm bench upload [--delay-ms 25] [--size 16M] [--runs 1] [--warmup 0] [--json] [--quick]\n';
  if (args.includes('--help') || args.includes('-h')) {
    process.stdout.write(usage);
    return;
  }
  let delayMs: number;
  let size: number;
  let runs: number;
  let warmup: number;
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
    warmup = parseBytes(value(args, 'warmup') ?? '0', 'warmup', 0);
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
  // --delay-ms 0: nothing in between.
  const delayed = async (port: number): Promise<number> => {
    if (delayMs === 0) return port;
    const p = await startDelayProxy(port, delayMs);
    proxies.push(p);
    return p.port;
  };
  const rowsRun = ROWS.filter((row) => row !== 'udp' || delayMs === 0);
  const timeoutMs = 600_000;
  const results = new Map<string, number[]>();
  const cpu = new Map<string, number[]>();
  const errors = new Map<string, string>();
  try {
    for (let r = 0; r < runs; r++) {
      for (const row of rowsRun) {
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
              for (let w = 0; w < warmup; w += size) {
                await upload(origin.port, file, size, t.socksPort, timeoutMs);
              }
              const cpu0 = t.pids ? treeCpuSeconds(t.pids) : undefined;
              MBps = (await upload(origin.port, file, size, t.socksPort, timeoutMs)).MBps;
              const cpu1 = t.pids ? treeCpuSeconds(t.pids) : undefined;
              if (cpu0 !== undefined && cpu1 !== undefined) {
                cpu.set(row, [...(cpu.get(row) ?? []), (cpu1 - cpu0) / (size / 2 ** 30)]);
              }
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
  const rows: Row[] = rowsRun.map((row) => {
    const xs = results.get(row);
    const MBps = xs ? median(xs) : 0;
    const c = cpu.get(row);
    return {
      encapsulation: row,
      rttMs: 2 * delayMs,
      bytes: size,
      runs,
      MBps: Number(MBps.toFixed(2)),
      vsDirect: direct && xs ? Number((MBps / median(direct)).toFixed(3)) : 0,
      cpuPerGiB: c ? Number(median(c).toFixed(2)) : 0,
      error: errors.get(row) ?? '',
    };
  });
  const where =
    delayMs === 0
      ? 'on loopback'
      : `over a ${2 * delayMs} ms round trip (a delay proxy before the relay)`;
  printRows(
    rows,
    json,
    `Upload: ${(size / 2 ** 20).toFixed(0)} MiB POSTed through SOCKS5 ${where}, MB/s (1 MB = 10^6 B) and client + relay CPU s per GiB, median of ${runs}${warmup > 0 ? `, after ${(warmup / 2 ** 20).toFixed(0)} MiB of warm-up` : ''}`,
  );
}
