import { defineConfig } from 'vite';

// The backend serves web/dist with an SPA fallback; during development the
// dev server proxies the API, the events socket and /ws to a local backend.
const backend = process.env.CENTRALITA_DEV_BACKEND ?? 'http://127.0.0.1:8080';

export default defineConfig({
  base: '/',
  build: { outDir: 'dist', emptyOutDir: true, sourcemap: false, chunkSizeWarningLimit: 800 },
  server: {
    host: '127.0.0.1',
    proxy: {
      '/api': { target: backend, ws: true, changeOrigin: false },
      '/hr': { target: backend, changeOrigin: false },
      '/ws': { target: backend.replace(/^http/, 'ws'), ws: true },
    },
  },
});
