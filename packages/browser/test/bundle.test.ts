/**
 * The browser bundle: `vite build` (library mode) produces one self-contained ES module with no
 * Node built-in in it — no `node:` specifier, no import or require of a built-in module's bare
 * name, no `process.` — and exports the public API. Reports its size.
 */
import assert from 'node:assert/strict';
import { readFileSync, statSync } from 'node:fs';
import { builtinModules } from 'node:module';
import { dirname, join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';
import { build } from 'vite';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const bundle = join(root, 'dist', 'roamlink-browser.js');

const BUILTINS = new Set(builtinModules.filter((m) => !m.startsWith('_')));

/** Every module specifier the code names: static imports/exports, dynamic imports, requires. */
export function specifiers(code: string): string[] {
  const out: string[] = [];
  const patterns = [
    /\bimport\s*(?:[\w*{}\s,$]+\s*from\s*)?["']([^"']+)["']/g,
    /\bexport\s*[\w*{}\s,$]*\s*from\s*["']([^"']+)["']/g,
    /\bimport\s*\(\s*["']([^"']+)["']\s*\)/g,
    /\brequire\s*\(\s*["']([^"']+)["']\s*\)/g,
  ];
  for (const re of patterns) for (const m of code.matchAll(re)) out.push(m[1]!);
  return out;
}

test('the specifier scan finds what it must (so that an empty result means something)', () => {
  const sample = `import a from "node:fs"; import {b} from 'crypto'; export * from "x";
    const c = await import('os'); const d = require("path");`;
  assert.deepEqual(specifiers(sample).sort(), ['crypto', 'node:fs', 'os', 'path', 'x']);
});

test('vite builds a self-contained ES module without Node built-ins', async (t) => {
  const started = performance.now();
  await build({ root, configFile: join(root, 'vite.config.ts'), logLevel: 'silent' });
  const buildMs = performance.now() - started;
  const code = readFileSync(bundle, 'utf8');

  const specs = specifiers(code);
  const node = specs.filter((s) => s.startsWith('node:') || BUILTINS.has(s.split('/')[0]!));
  assert.deepEqual(node, [], 'no Node built-in is imported or required');
  assert.deepEqual(specs, [], 'the bundle imports nothing: the core and noble are inside');
  assert.doesNotMatch(code, /\bnode:[a-z]/, 'no node: specifier anywhere');
  assert.doesNotMatch(code, /(?<![\w$.])process\s*\.\s*[\w$]/, 'no use of process.');
  assert.doesNotMatch(code, /\brequire\s*\(/, 'no require()');
  assert.doesNotMatch(code, /\bBuffer\s*\.\s*(from|alloc|concat)/, 'no Buffer');

  // The public API is exported by name.
  const exported = /export\s*\{([^}]*)\}\s*;?\s*(?:\/\/[^\n]*\s*)*$/.exec(code)?.[1] ?? '';
  const names = exported.split(',').map((s) =>
    s
      .trim()
      .split(/\s+as\s+/)
      .pop(),
  );
  for (const n of ['connect', 'RoamlinkSession', 'RoamlinkBrowserError', 'BrowserErrorCode']) {
    assert.ok(names.includes(n), `exports ${n}`);
  }

  const bytes = statSync(bundle).size;
  const gzip = gzipSync(code).length;
  assert.ok(bytes > 10_000, 'the bundle holds the core');
  assert.ok(bytes < 1_000_000, `the bundle stays under 1 MB (${bytes} bytes)`);
  t.diagnostic(
    `dist/roamlink-browser.js: ${bytes} bytes, ${gzip} gzipped; built in ${buildMs.toFixed(0)} ms`,
  );
});
