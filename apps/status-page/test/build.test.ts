/**
 * The status page's build, in the test path (so CI always has a page for the relay to serve):
 * vite builds dist/ with the page under /status/, the relay's loader reads every file of it, and
 * the page's code imports nothing from Node. The in-browser demo's client is a chunk of its own.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { builtinModules } from 'node:module';
import { dirname, join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { build } from 'vite';
import { loadStatusAssets, STATUS_PAGE_DIST } from '../../relay/src/status-node.ts';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const BUILTINS = new Set(builtinModules.filter((m) => !m.startsWith('_')));

test('vite builds the status page where the relay reads it', async (t) => {
  const started = performance.now();
  await build({ root, configFile: join(root, 'vite.config.ts'), logLevel: 'silent' });
  t.diagnostic(`vite build ${(performance.now() - started).toFixed(0)} ms`);
  assert.equal(`${join(root, 'dist')}/`, STATUS_PAGE_DIST);

  const html = readFileSync(join(root, 'dist', 'index.html'), 'utf8');
  const scripts = [...html.matchAll(/src="([^"]+\.js)"/g)].map((m) => m[1]!);
  const styles = [...html.matchAll(/href="([^"]+\.css)"/g)].map((m) => m[1]!);
  assert.equal(scripts.length, 1, html);
  assert.equal(styles.length, 1, html);
  for (const u of [...scripts, ...styles]) assert.match(u, /^\/status\/assets\/[\w.-]+$/);

  const assets = loadStatusAssets();
  assert.ok('files' in assets, 'the loader finds the build');
  const files = assets.files;
  assert.ok(files.has('index.html'));
  for (const u of [...scripts, ...styles]) {
    assert.ok(files.has(u.slice('/status/'.length)), `${u} is served`);
  }
  assert.equal(files.get(styles[0]!.slice('/status/'.length))!.type, 'text/css; charset=utf-8');

  const js = [...files].filter(([k]) => k.endsWith('.js'));
  assert.ok(
    js.some(([k]) => k.includes('demo-client')),
    'the browser client is a chunk loaded on demand',
  );
  for (const [name, f] of js) {
    const code = new TextDecoder().decode(f.body);
    const specs = [...code.matchAll(/\bfrom\s*["']([^"']+)["']|\bimport\s*\(\s*["']([^"']+)["']/g)]
      .map((m) => m[1] ?? m[2]!)
      .filter((s) => s.startsWith('node:') || BUILTINS.has(s.split('/')[0]!));
    assert.deepEqual(specs, [], `${name} imports no Node built-in`);
  }
  t.diagnostic(js.map(([k, f]) => `${k} ${(f.body.length / 1024).toFixed(1)} KiB`).join(', '));
});

test('a missing build is reported with the command that makes it', () => {
  const a = loadStatusAssets(join(root, 'no-such-dir'));
  assert.ok('missing' in a);
  assert.match(a.missing, /pnpm --filter @roamlink\/status-page build/);
});
