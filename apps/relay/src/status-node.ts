/**
 * The status page on Node: the built page read from disk once at start (apps/status-page/dist,
 * built by vite), and the once-a-second sample of every tunnel's stream-layer stats that feeds the
 * recorder's RTT and throughput series.
 */
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { extname, join, relative, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { StatusAssets } from './app.ts';
import type { RelayHandle } from './relay.ts';
import type { StatusRecorder } from './status.ts';

/** Where `pnpm --filter @roamlink/status-page build` puts the page. */
export const STATUS_PAGE_DIST = fileURLToPath(new URL('../../status-page/dist/', import.meta.url));

export const BUILD_HINT =
  'Build it with `pnpm --filter @roamlink/status-page build` (the tests build it too), then ' +
  'start the relay again: it reads the page once, at start.';

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.ico': 'image/x-icon',
  '.json': 'application/json',
  '.map': 'application/json',
  '.woff2': 'font/woff2',
};

/** Every file of the built page, by its path under /status/; or why there is none. */
export function loadStatusAssets(dir = STATUS_PAGE_DIST): StatusAssets {
  if (!existsSync(join(dir, 'index.html'))) {
    return { missing: `No built page in ${dir}. ${BUILD_HINT}` };
  }
  const files = new Map<string, { type: string; body: Uint8Array<ArrayBuffer> }>();
  const walk = (d: string): void => {
    for (const name of readdirSync(d)) {
      const p = join(d, name);
      if (statSync(p).isDirectory()) walk(p);
      else {
        const key = relative(dir, p).split(sep).join('/');
        const body = new Uint8Array(readFileSync(p));
        files.set(key, { type: TYPES[extname(p)] ?? 'application/octet-stream', body });
      }
    }
  };
  try {
    walk(dir);
  } catch (e) {
    // A build replacing the directory right now: no page this run, never a crash.
    return { missing: `Could not read ${dir} (${(e as Error).message}). ${BUILD_HINT}` };
  }
  return { files };
}

/** Samples every tunnel's stats into the recorder each `everyMs`; returns the call that stops. */
export function sampleTunnels(
  recorder: StatusRecorder,
  relay: Pick<RelayHandle, 'tunnels'>,
  everyMs = 1000,
): () => void {
  const timer = setInterval(() => recorder.sample(relay.tunnels()), everyMs);
  timer.unref();
  return () => clearInterval(timer);
}
