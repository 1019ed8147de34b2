/**
 * Vite build of the web UI: `web/index.html` + `web/src/**` (Preact, JSX compiled by Vite's Oxc
 * transform) → `dist/web/`, which the kernel serves at `/` (kernel/server/index.ts). Run by
 * `scripts/build.mjs` through Vite's `build()` API; no CDN at runtime, everything is bundled.
 *
 * Development against a running kernel: `npx vite web` (the dev server proxies `/api`, the
 * WebSocket and `/login` to `WARDEN_URL`, default `http://127.0.0.1:8787`).
 */
import { defineConfig } from 'vite';
import { fileURLToPath } from 'node:url';

const here = fileURLToPath(new URL('.', import.meta.url));
const kernel = process.env['WARDEN_URL'] ?? 'http://127.0.0.1:8787';

export default defineConfig({
  root: here,
  base: '/',
  // The config file is loaded through `build({configFile})`: no `.env` files, no public dir.
  publicDir: false,
  envDir: false,
  logLevel: 'warn',
  oxc: { jsx: { runtime: 'automatic', importSource: 'preact' } },
  build: {
    outDir: fileURLToPath(new URL('../dist/web/', import.meta.url)),
    emptyOutDir: true,
    target: 'es2022',
    sourcemap: true,
    // One small app: a single chunk keeps the first load to two requests (JS and CSS).
    chunkSizeWarningLimit: 400,
  },
  server: {
    proxy: {
      // The kernel checks Origin against Host on cookie requests: present the kernel's own origin.
      '/api': { target: kernel, ws: true, changeOrigin: true, headers: { origin: kernel } },
      '/login': { target: kernel, changeOrigin: true },
    },
  },
});
