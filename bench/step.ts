// `npm run bench:step`: one headless Chromium page, one adapter; times a full training step
// (forward, backward, optimizer) of Murmur and of TF.js (WebGPU backend) on the same model
// (one transformer block, d=256, 4 heads, B x T = 4 x 128, vocab 256), alternating the two,
// medians after warm-up; then Murmur alone on the `tiny` preset. Prints a table and writes
// bench/results/step.json. Options: --reps N (default 5), --warmup N (default 1), --no-tiny,
// --no-autotune (Murmur on the default kernel shapes; writes bench/results/step-untuned.json),
// --profile (the block's step per kernel in the page, as bench:profile gives it in Node).
import { mkdir, writeFile } from 'node:fs/promises';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import { startBrowser, ROOT } from '../tests/support/browser.ts';
import type { StepRow } from './step.page.ts';
import { profileLines } from './profile-table.ts';

function arg(name: string, dflt: number): number {
  const i = process.argv.indexOf(`--${name}`);
  if (i < 0) return dflt;
  const v = Number(process.argv[i + 1]);
  if (!Number.isInteger(v) || v < 1) throw new Error(`--${name} needs a positive integer, got ${process.argv[i + 1]}`);
  return v;
}

const reps = arg('reps', 5), warmup = arg('warmup', 1), tiny = !process.argv.includes('--no-tiny');
// --no-autotune: Murmur on the default kernel shapes (what a step costs before the autotuner's choice).
const autotune = !process.argv.includes('--no-autotune');
// --profile: also the block's step per kernel in this page (timestamp queries), as bench:profile gives it in Node.
const profile = process.argv.includes('--profile');
// The machine may be shared: record its load, since absolute times (TF.js's most) swing with it.
const loadBefore = loadavg()[0];
const h = await startBrowser({ optimizeDeps: ['@tensorflow/tfjs', '@tensorflow/tfjs-backend-webgpu'], ...(profile ? { args: ['--enable-dawn-features=allow_unsafe_apis'] } : {}) });
try {
  const page = await h.openPage('/bench/step.html');
  await page.waitForFunction(() => window.bench !== undefined, null, { timeout: 120_000 });
  const r = await page.evaluate((o) => window.bench.run(o), { reps, warmup, tiny, autotune, profile });
  for (const l of r.log) console.log(`  ${l}`);
  const fmt = (x: number | null, d = 0) => (x === null ? '-' : x.toFixed(d));
  const head = ['model', 'params', 'tokens', 'murmur ms', 'tfjs ms', 'speedup', 'GFLOPS', 'dispatches'];
  const cells = r.rows.map((x: StepRow) => [x.model, String(x.params), String(x.tokens), fmt(x.murmur_ms), fmt(x.tfjs_ms), x.speedup === null ? '-' : `${x.speedup.toFixed(2)}x`, fmt(x.murmur_gflops, 2), String(x.dispatches)]);
  const widths = head.map((hd, i) => Math.max(hd.length, ...cells.map((c) => c[i].length)));
  const line = (c: string[]) => c.map((s, i) => (i === 0 ? s.padEnd(widths[i]) : s.padStart(widths[i]))).join('  ');
  console.log(`\nadapter: ${r.adapter} (TF.js backend: ${r.tfjsBackend}); medians of ${reps} steps after ${warmup} warm-up`);
  console.log(`${autotune ? 'autotuned' : 'default (--no-autotune)'} shapes: ${JSON.stringify(r.tuning)}`);
  const load = { before: loadBefore, after: loadavg()[0] };
  console.log(`1-minute load average: ${load.before.toFixed(2)} before, ${load.after.toFixed(2)} after`);
  console.log(line(head));
  for (const c of cells) console.log(line(c));
  if (r.profile) {
    console.log(`\nthe block's step in this page: GPU time ${r.profile.totalMs.toFixed(1)} ms over ${r.profile.dispatches} dispatches; wall clock ${r.profile.wallMsPerStep.toFixed(1)} ms a step (GpuEngine alone, ${reps} steps)`);
    for (const l of profileLines(r.profile.rows)) console.log(l);
  }
  const out = join(ROOT, 'bench', 'results', autotune ? 'step.json' : 'step-untuned.json');
  await mkdir(join(ROOT, 'bench', 'results'), { recursive: true });
  await writeFile(out, JSON.stringify({ adapter: r.adapter, tfjsBackend: r.tfjsBackend, reps, warmup, autotune, profile: r.profile, date: new Date().toISOString(), loadavg1: load, tuning: r.tuning, rows: r.rows }, null, 2) + '\n');
  console.log(`\nwrote ${out}`);
} finally {
  await h.close();
}
