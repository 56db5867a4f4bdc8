import { defineConfig } from 'vite';

// The gateway embeds dist/app (services/gateway/console.go); dist/README.txt
// stays, so go:embed compiles before the first build.
export default defineConfig({
  base: '/',
  build: {
    outDir: 'dist/app',
    emptyOutDir: true,
    assetsInlineLimit: 0, // every asset a file of the gateway: nothing the CSP must special-case
    sourcemap: false,
    target: 'es2022',
    chunkSizeWarningLimit: 1024,
  },
});
