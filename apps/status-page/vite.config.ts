/**
 * The status page as the relay serves it: under /status/, with hashed asset names (the relay
 * caches them for good). The in-browser demo's client (@roamlink/browser) is a chunk of its own,
 * loaded when the page first needs it.
 */
import { defineConfig } from 'vite';

export default defineConfig({
  base: '/status/',
  build: {
    outDir: 'dist',
    emptyOutDir: true,
    target: 'es2022',
    assetsInlineLimit: 0,
    reportCompressedSize: false,
  },
});
