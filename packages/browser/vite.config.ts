/**
 * Library build: one ES module, `dist/roamlink-browser.js`, with the core and @noble/* inside and
 * nothing from Node. Minified; a source map beside it.
 */
import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vite';

export default defineConfig({
  build: {
    lib: {
      entry: fileURLToPath(new URL('./src/index.ts', import.meta.url)),
      formats: ['es'],
      fileName: () => 'roamlink-browser.js',
    },
    outDir: 'dist',
    emptyOutDir: true,
    target: 'es2022',
    sourcemap: true,
    minify: true,
  },
});
