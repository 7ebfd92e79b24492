/**
 * Bundles the Worker as one ES module (what `wrangler deploy` uploads: wrangler.jsonc runs this and
 * uploads dist/worker.js as it is), with the status page's built files (apps/status-page/dist) in
 * it: `src/status-assets.ts` is swapped for a module that holds each file (text as a string, the
 * rest base64). Without a built page the stub stays: the Worker answers /status with how to build.
 *
 *   node scripts/bundle.ts [outfile]     (default dist/worker.js)
 */
import { existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { dirname, extname, join, relative, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build, type Plugin } from 'esbuild';

const HERE = dirname(fileURLToPath(import.meta.url));
const ENTRY = join(HERE, '..', 'src', 'worker.ts');
export const STATUS_PAGE_DIST = join(HERE, '..', '..', 'status-page', 'dist');

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
const TEXT = new Set(['.html', '.js', '.css', '.svg', '.json', '.map']);

/** The module source holding every file under `dir`, or undefined when no page is built there. */
export function statusAssetsModule(dir = STATUS_PAGE_DIST): string | undefined {
  if (!existsSync(join(dir, 'index.html'))) return undefined;
  const entries: string[] = [];
  const walk = (d: string): void => {
    for (const name of readdirSync(d).sort()) {
      const p = join(d, name);
      if (statSync(p).isDirectory()) {
        walk(p);
        continue;
      }
      const key = relative(dir, p).split(sep).join('/');
      const ext = extname(p);
      const type = TYPES[ext] ?? 'application/octet-stream';
      const body = readFileSync(p);
      const value = TEXT.has(ext)
        ? `text(${JSON.stringify(body.toString('utf8'))})`
        : `bin(${JSON.stringify(body.toString('base64'))})`;
      entries.push(`[${JSON.stringify(key)}, { type: ${JSON.stringify(type)}, body: ${value} }]`);
    }
  };
  walk(dir);
  return [
    '// Generated at bundle time from the built status page.',
    'const enc = new TextEncoder();',
    'const text = (s) => enc.encode(s);',
    'const bin = (b) => Uint8Array.from(atob(b), (c) => c.charCodeAt(0));',
    `export const STATUS_ASSETS = { files: new Map([\n${entries.join(',\n')}\n]) };`,
  ].join('\n');
}

/** Swaps src/status-assets.ts for the built page's files (when there is a built page). */
export function statusAssetsPlugin(dir = STATUS_PAGE_DIST): Plugin {
  return {
    name: 'roamlink-status-assets',
    setup(b) {
      b.onLoad({ filter: /[\\/]src[\\/]status-assets\.ts$/ }, () => {
        const contents = statusAssetsModule(dir);
        return contents === undefined ? undefined : { contents, loader: 'js' };
      });
    },
  };
}

/** The Worker as one ES module, the status page in it. */
export async function bundleWorker(): Promise<{ code: string; ms: number; bytes: number }> {
  const t0 = performance.now();
  const out = await build({
    entryPoints: [ENTRY],
    bundle: true,
    format: 'esm',
    platform: 'neutral',
    target: 'es2022',
    conditions: ['workerd', 'worker', 'browser'],
    mainFields: ['module', 'main'],
    external: ['cloudflare:*'],
    plugins: [statusAssetsPlugin()],
    write: false,
    logLevel: 'silent',
  });
  const code = out.outputFiles[0]!.text;
  return { code, ms: performance.now() - t0, bytes: code.length };
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const outfile = process.argv[2] ?? join(HERE, '..', 'dist', 'worker.js');
  const { code, ms } = await bundleWorker();
  mkdirSync(dirname(outfile), { recursive: true });
  writeFileSync(outfile, code);
  const page =
    statusAssetsModule() === undefined ? 'without the status page' : 'with the status page';
  console.log(`${outfile}: ${(code.length / 1024).toFixed(0)} KiB ${page}, ${ms.toFixed(0)} ms`);
}
