// One config for the web app (Vite) and the test suite (Vitest).
import { defineConfig, type Plugin } from 'vitest/config';

/**
 * The page entries live in web/ but are served from the site root (/, /dashboard, /consent, /frame.html):
 * move the emitted HTML files up one level. Their asset URLs are absolute (base '/'), so they
 * stay valid.
 */
function pagesAtRoot(): Plugin {
  return {
    name: 'murmur-pages-at-root',
    apply: 'build',
    enforce: 'post',
    generateBundle(_opts, bundle) {
      for (const [key, file] of Object.entries(bundle)) {
        if (file.type === 'asset' && file.fileName.startsWith('web/') && file.fileName.endsWith('.html')) {
          delete bundle[key];
          this.emitFile({ type: 'asset', fileName: file.fileName.slice('web/'.length), source: file.source });
        }
      }
    },
  };
}

export default defineConfig({
  plugins: [pagesAtRoot()],
  // simple-peer and its stream dependencies are CommonJS written for Node: they read `global` and
  // require('events'). In the browser the bare name resolves to the npm package `events` (a
  // dependency for this reason); server code imports 'node:events' and keeps Node's own.
  define: { global: 'globalThis' },
  // Workers are ES modules so they can import the trainer and comlink like the page does.
  worker: { format: 'es' },
  server: { host: '127.0.0.1' },
  build: {
    outDir: 'dist/web',
    emptyOutDir: true,
    target: 'es2022',
    rollupOptions: {
      input: {
        index: 'web/index.html',
        dashboard: 'web/dashboard.html',
        frame: 'web/frame.html',
        consent: 'web/consent.html',
        // A classic script for other sites: a fixed name, no imports (see src/ui/embed/embed.ts).
        embed: 'src/ui/embed/embed.ts',
      },
      output: {
        entryFileNames: (chunk) => (chunk.name === 'embed' ? 'embed.js' : 'assets/[name]-[hash].js'),
      },
    },
  },
  test: {
    include: ['tests/**/*.test.ts'],
    // The software GPU and headless Chromium are slow and share 2 cores: at most two test files
    // at once. A test waits for named conditions, each with its own deadline (up to 300 s, two
    // or three in a row in the end-to-end tests); these limits are only the outer guard against
    // a hang outside them, so they must be longer than the waits they contain. At 120 s a
    // loaded machine cut the volunteer and tab end-to-end tests short while their conditions
    // were still coming (two fresh clones tested at once, load 11).
    testTimeout: 900_000,
    hookTimeout: 300_000,
    maxWorkers: 2,
    pool: 'forks',
    // GPU tests run on SwiftShader even on a machine with a GPU (Node would pick the GPU): their
    // tolerances and adapter checks are SwiftShader's. Set VK_ICD_FILENAMES to test another driver.
    env: { VK_ICD_FILENAMES: process.env.VK_ICD_FILENAMES || '/usr/lib/chromium/vk_swiftshader_icd.json' },
    // expect.poll's deadline, like every wait's (tests/support/wait.ts, HANG_GUARD_MS), only
    // guards against a hang: its default second ran out on a loaded machine while the condition
    // was still coming (a widget's button text, in a fresh-clone run). A poll that passes returns
    // as soon as its condition holds.
    expect: { poll: { timeout: 30_000 } },
    reporters: ['default', './tests/support/summary-reporter.ts'],
  },
});
