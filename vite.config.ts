// One config for the web app (Vite) and the test suite (Vitest).
import { defineConfig } from 'vitest/config';

export default defineConfig({
  // Workers are ES modules so they can import the trainer and comlink like the page does.
  worker: { format: 'es' },
  server: { host: '127.0.0.1' },
  build: { outDir: 'dist/web', emptyOutDir: true, target: 'es2022' },
  test: {
    include: ['tests/**/*.test.ts'],
    // The software GPU and headless Chromium are slow and share 2 cores: generous per-test
    // limits, and at most two test files at once.
    testTimeout: 120_000,
    hookTimeout: 120_000,
    maxWorkers: 2,
    pool: 'forks',
    reporters: ['default', './tests/support/summary-reporter.ts'],
  },
});
