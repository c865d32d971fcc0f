// The numbers README and docs/benchmarks.md quote are measurements, so each is recomputed here
// from the JSON under bench/results/ that the benchmark wrote. A number that no claim below
// checks fails too (in docs/benchmarks.md, and in README's Benchmarks section), so a result
// cannot be quoted without a source, and a rerun that changes a result forces the text along.
import { describe, expect, it } from 'vitest';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ROOT } from './support/browser.ts';
import { forwardFlops, stepFlops } from '../src/model/flops.ts';
import { PRESETS } from '../src/model/config.ts';
import { buildLayout } from '../src/model/layout.ts';

type Doc = 'README.md' | 'docs/benchmarks.md';
const TEXT: Record<Doc, string> = {
  'README.md': readFileSync(join(ROOT, 'README.md'), 'utf8'),
  'docs/benchmarks.md': readFileSync(join(ROOT, 'docs', 'benchmarks.md'), 'utf8'),
};

/**
 * What reads as a measurement: a decimal with two or more places, a number in e-notation with
 * a decimal mantissa, a percentage, a ratio (12×, not the 8×32 of a shape), thousands (118K),
 * milliseconds with decimals, FLOP rates and CPU-hours.
 */
export const MEASURE = /\d+\.\d+e[-+]?\d+|\d+(?:\.\d+)?(?:%|×(?![\dT])|K\b|\s[TG]FLOPS|\sCPU-hours)|\d+\.\d+\sms|\d+\.\d{2,}/g;

/** Does `value` print as the number in `token`, at the precision the token shows? */
export function printsAs(value: number, token: string): boolean {
  const num = /\d+(?:\.\d+)?(?:e[-+]?\d+)?/.exec(token)![0];
  if (num.includes('e')) {
    const places = (num.split('e')[0]!.split('.')[1] ?? '').length;
    return value.toExponential(places).replace(/e([-+])0*(\d)/, 'e$1$2').replace('e+', 'e') === num;
  }
  const places = (num.split('.')[1] ?? '').length;
  return value.toFixed(places) === num;
}

// ---- reading bench/results -------------------------------------------------------------------

interface Run { method: string; lr?: number; seed: number; final_val_loss: number; idle_fraction: number; comm_fraction: number; wall_s: number }
const json = (file: string): any => JSON.parse(readFileSync(join(ROOT, 'bench', 'results', file), 'utf8'));
const runs = (file: string): Run[] => json(file).runs;
const avg = (xs: number[]): number => {
  if (xs.length === 0) throw new Error('no runs matched');
  return xs.reduce((a, b) => a + b, 0) / xs.length;
};
const sd = (xs: number[]): number => Math.sqrt(xs.reduce((a, x) => a + (x - avg(xs)) ** 2, 0) / (xs.length - 1));
function pick(file: string, method: string, where: (r: Run, i: number) => boolean = () => true): Run[] {
  const out = runs(file).filter((r, i) => r.method === method && where(r, i));
  if (out.length === 0) throw new Error(`${file}: no ${method} run`);
  return out;
}
/** Mean final validation loss of one method's runs (at one inner rate, if given). */
const loss = (file: string, method: string, lr?: number): number =>
  avg(pick(file, method, (r) => lr === undefined || r.lr === lr).map((r) => r.final_val_loss));
const meanOf = (file: string, method: string, key: 'idle_fraction' | 'comm_fraction'): number =>
  avg(pick(file, method).map((r) => r[key]));
/** The one run of a method in a file of `murmur sim --json` specs and runs, matched on its spec. */
function specRun(file: string, method: string, spec: Record<string, unknown> = {}): Run {
  const j = json(file);
  const found = (j.runs as Run[]).filter((r, i) => r.method === method
    && Object.entries(spec).every(([k, v]) => JSON.stringify(j.specs[i][k]) === JSON.stringify(v)));
  if (found.length !== 1) throw new Error(`${file}: ${found.length} ${method} runs match ${JSON.stringify(spec)}`);
  return found[0]!;
}
const longLr4 = (method: string, seed: number): number => json(`sim-long-lr4e-3-runs/seed${seed}-${method}.json`).runs[0].final_val_loss;
const longLr4Mean = (method: string): number => avg([1, 2, 3].map((s) => longLr4(method, s)));
const profile = (preset: string) => json('profile-h100.json').runs.find((r: any) => r.model.startsWith(`${preset} preset`));
const profileTflops = (preset: 'small' | 'base', B: number, T: number) =>
  stepFlops(PRESETS[preset], B, T) / (profile(preset).wallMsPerStep / 1e3) / 1e12;
const gpuCheck = (file: string, preset: string, key: string): number => json(file).rows.find((r: any) => r.preset === preset && !r.half)[key];
const matmul = (file: string, wg: string): number =>
  json(file).results.find((r: any) => r.variant === 'src/shaders/matmul.wgsl' && r.wg === wg && r.shape === '512x256x1024' && Object.keys(r.overrides).length === 0).gflops;
/** The trainer's register kernel at 512x1024x256 in the SwiftShader lab run, with exactly these overrides. */
const labRow = (wg: string, overrides: Record<string, number>): any => {
  const rows = json('kernels-matmul.json').results.filter((r: any) => r.variant === 'src/shaders/matmul.wgsl' && r.wg === wg && r.shape === '512x1024x256'
    && JSON.stringify(Object.entries(r.overrides).sort()) === JSON.stringify(Object.entries(overrides).sort()));
  if (rows.length !== 1) throw new Error(`kernels-matmul.json: ${rows.length} rows for ${wg} ${JSON.stringify(overrides)}`);
  return rows[0];
};
const torchRow = (preset: string) => json('torch-h200.json').rows.find((r: any) => r.preset === preset && r.torch_mode === 'fp32');
const h200Profile = (preset: string) => json('profile-h200.json').runs.find((r: any) => r.model.startsWith(`${preset} preset`));
const h200Ms = (preset: string, kernel: (k: string) => boolean): number => h200Profile(preset).rows.filter((x: any) => kernel(x.kernel)).reduce((a: number, x: any) => a + x.ms, 0);
const isLayerNorm = (k: string) => /^GpuGPT\.(h\*\.ln[12]|lnf)(\.|$)/.test(k);
const attentionMs = (file: string): number => json(file).runs.find((r: any) => r.model.startsWith('base preset')).rows
  .filter((x: any) => x.kernel.includes('.attn')).reduce((a: number, x: any) => a + x.ms, 0);
const bestAt4096 = (variant: (v: string) => boolean) => json('kernels-matmul-h200.json').results
  .filter((r: any) => r.shape === '4096x4096x4096' && variant(r.variant)).sort((a: any, b: any) => b.gflops - a.gflops)[0];
const microParams = (d: number) => buildLayout({ ...PRESETS.micro, d }).params;

// ---- the claims --------------------------------------------------------------------------------

/** `quote` occurs in the document; the last measurement in it must print as `value`. */
interface Claim { doc: Doc; quote: string; value: () => number }
/** A preset's row of checkpoint.json's validation. */
const val = (preset: string): any => json('checkpoint.json').validation.find((r: any) => r.preset === preset);
const bm = (quote: string, value: () => number): Claim => ({ doc: 'docs/benchmarks.md', quote, value });
const rd = (quote: string, value: () => number): Claim => ({ doc: 'README.md', quote, value });
const pct = (x: number) => 100 * x;

const CLAIMS: Claim[] = [
  // sim.json: the main comparison
  bm('| NoLoCo, ready pool | 2.394', () => loss('sim.json', 'noloco-async')),
  bm('| NoLoCo, ready pool | 2.394 | 6.0%', () => pct(meanOf('sim.json', 'noloco-async', 'idle_fraction'))),
  bm('| NoLoCo, ready pool | 2.394 | 6.0% | 5.1%', () => pct(meanOf('sim.json', 'noloco-async', 'comm_fraction'))),
  bm('| NoLoCo, lockstep | 2.454', () => loss('sim.json', 'noloco-lockstep')),
  bm('| NoLoCo, lockstep | 2.454 | 34.2%', () => pct(meanOf('sim.json', 'noloco-lockstep', 'idle_fraction'))),
  bm('| NoLoCo, lockstep | 2.454 | 34.2% | 3.7%', () => pct(meanOf('sim.json', 'noloco-lockstep', 'comm_fraction'))),
  bm('5.3% of an inner loop', () => pct(json('sim.json').probe['noloco-async'].fraction_of_inner_loop)),
  bm('| DiLoCo | 2.448', () => loss('sim.json', 'diloco')),
  bm('| DiLoCo | 2.448 | 33.4%', () => pct(meanOf('sim.json', 'diloco', 'idle_fraction'))),
  bm('| DiLoCo | 2.448 | 33.4% | 1.2%', () => pct(meanOf('sim.json', 'diloco', 'comm_fraction'))),
  bm('| data-parallel (DDP) | 2.447', () => loss('sim.json', 'ddp')),
  bm('| data-parallel (DDP) | 2.447 | 15.0%', () => pct(meanOf('sim.json', 'ddp', 'idle_fraction'))),
  bm('| data-parallel (DDP) | 2.447 | 15.0% | 56.9%', () => pct(meanOf('sim.json', 'ddp', 'comm_fraction'))),
  bm('| local (no communication) | 2.407', () => loss('sim.json', 'local')),
  // equal speeds, free network
  bm('| DDP (gradients every step) | 2.327', () => specRun('sim-equal-speeds-free-network-900-steps.json', 'ddp').final_val_loss),
  bm('| local | 2.465', () => specRun('sim-equal-speeds-free-network-900-steps.json', 'local').final_val_loss),
  bm('| lockstep NoLoCo | 2.457', () => specRun('sim-equal-speeds-free-network-900-steps.json', 'noloco-lockstep').final_val_loss),
  bm('| DiLoCo | 2.444', () => specRun('sim-equal-speeds-free-network-900-steps.json', 'diloco', { alpha: undefined }).final_val_loss),
  bm('| DiLoCo, outer momentum 0.5 and rate 1.4 | 2.423',
    () => specRun('sim-equal-speeds-free-network-900-steps.json', 'diloco', { alpha: 0.5, beta: 1.4 }).final_val_loss),
  // the barrier methods' inner rate
  bm('| 2e-3 | 2.454', () => loss('sim.json', 'noloco-lockstep')),
  bm('| 2e-3 | 2.454 | 2.448', () => loss('sim.json', 'diloco')),
  bm('| 4e-3 | 2.432', () => loss('sim-barrier-lr-grid.json', 'noloco-lockstep', 0.004)),
  bm('| 4e-3 | 2.432 | 2.433', () => loss('sim-barrier-lr-grid.json', 'diloco', 0.004)),
  bm('| 6e-3 | 2.437', () => loss('sim-lr6e-3.json', 'noloco-lockstep')),
  bm('| 6e-3 | 2.437 | 2.442', () => loss('sim-lr6e-3.json', 'diloco')),
  bm('| 1e-2 | 2.669', () => loss('sim-barrier-lr-grid.json', 'noloco-lockstep', 0.01)),
  bm('| 1e-2 | 2.669 | 2.556', () => loss('sim-barrier-lr-grid.json', 'diloco', 0.01)),
  // every method at 4e-3 and 6e-3
  ...([['ready pool', 'noloco-async', '2.330', '2.320'], ['lockstep', 'noloco-lockstep', '2.432', '2.437'], ['DiLoCo', 'diloco', '2.433', '2.442'],
    ['DDP', 'ddp', '2.432', '2.555'], ['local', 'local', '2.411', '2.447']] as const).flatMap(([name, method, at4, at6]) => [
    bm(`| ${name} | ${at4}`, () => loss('sim-lr4e-3.json', method, 0.004)),
    bm(`| ${name} | ${at4} | ${at6}`, () => loss('sim-lr6e-3.json', method)),
  ]),
  bm('seed-to-seed\nspread (sd 0.07', () => sd(pick('sim-lr6e-3.json', 'local').map((r) => r.final_val_loss))),
  // batch
  bm('| 1×32 | 2.472', () => specRun('sim-batch.json', 'local', { batch: 1 }).final_val_loss),
  bm('| 1×32 | 2.472 | 2.521', () => specRun('sim-batch.json', 'noloco-lockstep', { batch: 1 }).final_val_loss),
  bm('| 8×32 | 2.221', () => specRun('sim-batch.json', 'local', { batch: 8 }).final_val_loss),
  bm('| 8×32 | 2.221 | 2.354', () => specRun('sim-batch.json', 'noloco-lockstep', { batch: 8 }).final_val_loss),
  bm('| 8×32 | 2.221 | 2.354 | 2.364', () => specRun('sim-batch.json', 'diloco', { batch: 8 }).final_val_loss),
  bm('| 8×32 | 2.221 | 2.354 | 2.364 | 2.205', () => specRun('sim-batch.json', 'noloco-async', { batch: 8 }).final_val_loss),
  // width
  bm('A model with 3.4×', () => microParams(json('sim-d64.json').setup.model.d) / buildLayout(PRESETS.micro).params),
  bm('119K', () => microParams(json('sim-d64.json').setup.model.d) / 1e3),
  ...([['ready pool', 'noloco-async', '2.248'], ['local', 'local', '2.314'], ['lockstep', 'noloco-lockstep', '2.354'],
    ['DiLoCo', 'diloco', '2.382'], ['DDP', 'ddp', '2.429']] as const).map(([name, method, v]) =>
    bm(`| ${name} | ${v}`, () => loss('sim-d64.json', method, json('sim-d64.json').best_lr[method]))),
  bm('At 434K', () => microParams(json('sim-d128-local-vs-lockstep.json').specs[0].model.d) / 1e3),
  bm('led lockstep by 0.090', () => specRun('sim-d128-local-vs-lockstep.json', 'noloco-lockstep').final_val_loss
    - specRun('sim-d128-local-vs-lockstep.json', 'local').final_val_loss),
  // the long budget
  bm('about 3.6\nCPU-hours', () => json('sim-long.json').runs_wall_s / 3600),
  ...([['ready pool', 'noloco-async', '1.776'], ['lockstep', 'noloco-lockstep', '1.836'], ['DiLoCo', 'diloco', '1.873'],
    ['DDP', 'ddp', '1.761'], ['local', 'local', '1.854']] as const).map(([name, method, v]) => bm(`| ${name} | ${v}`, () => loss('sim-long.json', method))),
  bm('about 2 CPU-hours', () => avg([1, 2, 3].flatMap((s) => ['diloco', 'local', 'noloco-lockstep']
    .map((m) => json(`sim-long-lr4e-3-runs/seed${s}-${m}.json`).runs[0].wall_s))) * 9 / 3600),
  ...([['lockstep', 'noloco-lockstep'], ['DiLoCo', 'diloco'], ['local', 'local']] as const).flatMap(([name, method]) => {
    const v = [1, 2, 3].map((s) => longLr4(method, s).toFixed(3));
    return [
      ...[1, 2, 3].map((s) => bm(`| ${name} | ${v.slice(0, s).join(' | ')}`, () => longLr4(method, s))),
      bm(`| ${name} | ${v.join(' | ')} | ${longLr4Mean(method).toFixed(3)}`, () => longLr4Mean(method)),
    ];
  }),
  bm('at 16× the budget', () => json('sim-long.json').setup.time / json('sim.json').setup.time),
  bm('### A 16×', () => json('sim-long.json').setup.time / json('sim.json').setup.time),
  // the GPU engine
  bm('Murmur is 13.6×', () => json('step.json').rows[0].speedup),
  bm('timestamp queries, the\ncode `bench:profile` uses in Node, `bench/profile-core.ts`): 567.5 ms', () => json('step.json').profile.totalMs),
  bm('569.6 ms', () => json('step.json').profile.wallMsPerStep),
  bm('with quads the two now take 51.0 ms', () => json('step.json').profile.rows.find((x: any) => x.kernel === 'GpuGPT.h*.fc').ms),
  bm('and 43.7 ms', () => json('step.json').profile.rows.find((x: any) => x.kernel === 'GpuGPT.h*.fcproj').ms),
  bm('The products\nnow take 84%', () => 100 * json('step.json').profile.rows.filter((x: any) => /\.(fc|fcproj|qkv|attproj)\b|logits/.test(x.kernel)).reduce((a: number, x: any) => a + x.ms, 0) / json('step.json').profile.totalMs),
  bm('three attention kernels 10.1%', () => 100 * json('step.json').profile.rows.filter((x: any) => x.kernel.includes('.attn')).reduce((a: number, x: any) => a + x.ms, 0) / json('step.json').profile.totalMs),
  bm('three attention kernels 10.1% (57.3 ms', () => json('step.json').profile.rows.filter((x: any) => x.kernel.includes('.attn')).reduce((a: number, x: any) => a + x.ms, 0)),
  bm('| tiny | 8×128 | 12.7 ms', () => profile('tiny').wallMsPerStep),
  bm('| small | 8×256 | 40.8 ms', () => profile('small').wallMsPerStep),
  bm('| small | 8×256 | 40.8 ms | 3.6 TFLOPS', () => profileTflops('small', 8, 256)),
  bm('| base | 8×512 | 189.2 ms', () => profile('base').wallMsPerStep),
  bm('| base | 8×512 | 189.2 ms | 7.1 TFLOPS', () => profileTflops('base', 8, 512)),
  ...(['micro', 'tiny'] as const).flatMap((p) => {
    const cells = [gpuCheck('gpu-check-h100.json', p, 'maxLossRel'), gpuCheck('gpu-check.json', p, 'maxLossRel'),
      gpuCheck('gpu-check-h100.json', p, 'paramRatio'), gpuCheck('gpu-check.json', p, 'paramRatio')];
    const shown = cells.map((x) => x.toExponential(1).replace(/e([-+])0*(\d)/, 'e$1$2'));
    return cells.map((x, i) => bm(`| ${p} | ${shown.slice(0, i + 1).join(' | ')}`, () => x));
  }),
  bm('ran 1.50 TFLOPS', () => matmul('kernels-matmul-h100.json', '8x8') / 1e3),
  // Murmur against PyTorch on the H200
  ...(['small', 'base'] as const).flatMap((p) => {
    const r = torchRow(p);
    const cells = [`${r.murmur_ms.toFixed(1)} ms`, `${r.torch_ms.toFixed(1)} ms`, `${r.ratio.toFixed(3)}×`, `${r.murmur_tflops.toFixed(2)} TFLOPS`,
      `${r.torch_tflops.toFixed(2)} TFLOPS`, r.loss_gap_after_10_steps.toExponential(1).replace(/e([-+])0*(\d)/, 'e$1$2')];
    const values = [r.murmur_ms, r.torch_ms, r.ratio, r.murmur_tflops, r.torch_tflops, r.loss_gap_after_10_steps];
    return cells.map((_, i) => bm(`| ${p} | ${cells.slice(0, i + 1).join(' | ')}`, () => values[i]!));
  }),
  bm('took 22.80 ms', () => h200Profile('small').wallMsPerStep),
  bm('gave 0.210×', () => json('torch-h200-before.json').rows.find((r: any) => r.preset === 'small' && r.torch_mode === 'fp32').ratio),
  bm('and 0.149×', () => json('torch-h200-before.json').rows.find((r: any) => r.preset === 'base' && r.torch_mode === 'fp32').ratio),
  bm('went from 134.8 ms', () => attentionMs('profile-h200-before.json')),
  bm('a step to\n  40.96 ms', () => attentionMs('profile-h200.json')),
  bm('127.35 ms', () => h200Profile('base').wallMsPerStep),
  bm('took\n  13.43 ms', () => h200Ms('base', isLayerNorm)),
  bm('(of 138.81 ms)', () => h200Profile('base').totalMs),
  bm('and 4.39 ms', () => h200Ms('small', isLayerNorm)),
  bm('(of 23.59 ms)', () => h200Profile('small').totalMs),
  bm('attention backward took 35.19 ms', () => h200Ms('base', (k) => k.includes('.attn.bwd'))),
  bm('took 3.34 ms', () => h200Ms('small', (k) => k === 'GpuGPT.h*.fcproj')),
  bm('expansion\'s\n  1.05 ms', () => h200Ms('small', (k) => k === 'GpuGPT.h*.fc')),
  bm('(nt, 4096 × 3072 from K = 768) took 10.62 ms', () => h200Ms('base', (k) => k === 'GpuGPT.h*.fcproj.bwd.dinp')),
  bm('of the same sizes 7.27 ms', () => h200Ms('base', (k) => k === 'GpuGPT.h*.fc')),
  bm('at 26.38 TFLOPS', () => bestAt4096((v) => v === 'src/shaders/matmul.wgsl').gflops / 1e3),
  bm('at 26.38 TFLOPS on 4096³, 39.4%', () => pct(bestAt4096((v) => v === 'src/shaders/matmul.wgsl').peakShare)),
  bm('tile at 25.61 TFLOPS', () => bestAt4096((v) => v.endsWith(':nnTile')).gflops / 1e3),
  bm('worst loss gap 1.1e-7', () => gpuCheck('gpu-check-h200.json', 'micro', 'maxLossRel')),
  bm('and 1.6e-6', () => gpuCheck('gpu-check-h200.json', 'tiny', 'maxLossRel')),
  bm('within 1.2e-4', () => gpuCheck('gpu-check-h200.json', 'micro', 'paramRatio')),
  bm('and 2.2e-3 of the change', () => gpuCheck('gpu-check-h200.json', 'tiny', 'paramRatio')),
  bm('and 1.80 GFLOPS', () => matmul('kernels-matmul.json', '8x8')),
  bm('16×4 workgroups) ran 2.02 GFLOPS', () => labRow('16x4', { TN: 8 }).gflops),
  bm('the same block ran 3.27 GFLOPS', () => labRow('16x4', { TN: 8, QUAD: 1 }).gflops),
  bm('8×2 workgroups)\n4.88 GFLOPS', () => labRow('8x2', { TN: 8, TM: 16, QUAD: 1 }).gflops),
  bm('8 × 4 block\'s best\nwas 1.96 GFLOPS', () => Math.max(...json('kernels-matmul.json').results
    .filter((r: any) => r.variant === 'src/shaders/matmul.wgsl' && r.shape === '512x1024x256' && r.overrides.TN === undefined).map((r: any) => r.gflops))),
  rd('reaches a validation loss of 2.394', () => loss('sim.json', 'noloco-async')),
  rd('lockstep NoLoCo 2.454', () => loss('sim.json', 'noloco-lockstep')),
  rd('DiLoCo 2.448', () => loss('sim.json', 'diloco')),
  rd('AdamW 2.447', () => loss('sim.json', 'ddp')),
  rd('and 2.407 for no communication', () => loss('sim.json', 'local')),
  rd('training step is 13.6×', () => json('step.json').rows[0].speedup),
  rd('trains at\n0.326×', () => torchRow('base').ratio),
  rd('(0.38× the bytes)', () => json('mesh.json').bytes_per_exchange.find((r: any) => r.preset === 'tiny' && r.compression === 'int8').vs_f32),
  bm('`tiny` sends 0.38×', () => json('mesh.json').bytes_per_exchange.find((r: any) => r.preset === 'tiny' && r.compression === 'int8').vs_f32),
  // reads.json: anonymous reads against volunteers
  // Each row's cells are the JSON's, at two places: the quote is found in the table or the claim fails.
  ...(['| on the event loop, no budget (before) |', '| read worker, no budget |', '| read worker, budget 250,500 (now) |'] as const).flatMap((label, i): Claim[] => {
    const m = () => json('reads.json').modes[i];
    const f = (x: number) => x.toFixed(2);
    const cells = [
      (r: any) => `${f(r.ack_ms_quiet.p50)} ms`, (r: any) => ` / ${f(r.ack_ms_quiet.p99)} ms |`, (r: any) => ` ${f(r.ack_ms_flood.p50)} ms`,
      (r: any) => ` / ${f(r.ack_ms_flood.p99)} ms`, (r: any) => ` / ${f(r.ack_ms_flood.max)} ms |`, (r: any) => ` ${f(r.reads.served_per_s)}`,
    ];
    const values = [(r: any) => r.ack_ms_quiet.p50, (r: any) => r.ack_ms_quiet.p99, (r: any) => r.ack_ms_flood.p50, (r: any) => r.ack_ms_flood.p99, (r: any) => r.ack_ms_flood.max, (r: any) => r.reads.served_per_s];
    return cells.map((_, k) => bm(`${label} ${cells.slice(0, k + 1).map((c) => c(m())).join('')}`, () => values[k]!(m())));
  }),
  bm('is 126.11× faster', () => json('reads.json').ack_p50_flood_ratio_before_over_now),
  bm('p99 34.47× faster', () => json('reads.json').ack_p99_flood_ratio_before_over_now),
  bm('5 requests, 675.82 ms', () => json('reads.json').dashboard_history.narrowing.ms),
  bm('and 18.16 MB', () => json('reads.json').dashboard_history.narrowing.bytes / 1e6),
  bm('one request, 29.73 ms', () => json('reads.json').dashboard_history.newest.ms),
  bm('29.73 ms and 8.03 MB', () => json('reads.json').dashboard_history.newest.bytes / 1e6),
  bm('rows (22.73× faster)', () => json('reads.json').dashboard_history.ms_ratio_narrowing_over_newest),
  bm('one backward walk, took 171.80 ms', () => json('reads.json').dashboard_window.newest_walk_ms),
  bm('takes 405.77 ms', () => json('reads.json').dashboard_window.fair_share_ms),
  bm('405.77 ms, 2.36×', () => json('reads.json').dashboard_window.ms_ratio_fair_over_walk),
  // downloads.json: anonymous downloads against volunteers
  ...(['| no limits (before) |', '| budget 8,64, places 8,256 (now) |'] as const).flatMap((label, i): Claim[] => {
    const m = () => json('downloads.json').modes[i];
    const f = (x: number) => x.toFixed(2);
    const cells = [
      (r: any) => ` ${f(r.ack_ms_quiet.p50)} ms`, (r: any) => ` / ${f(r.ack_ms_quiet.p99)} ms |`, (r: any) => ` ${f(r.ack_ms_flood.p50)} ms`,
      (r: any) => ` / ${f(r.ack_ms_flood.p99)} ms`, (r: any) => ` / ${f(r.ack_ms_flood.max)} ms |`, (r: any) => ` ${r.newcomers_flood.n},`,
      (r: any) => ` ${f(r.newcomers_flood.p50_ms)} ms`, (r: any) => ` / ${f(r.newcomers_flood.max_ms)} ms |`, (r: any) => ` ${f(r.flood.mb_per_s)} MB/s |`,
      (r: any) => ` ${r.flood.refused} |`, (r: any) => ` ${f(r.server_cpu_percent_flood)}% |`,
    ];
    // Counts (newcomers, refusals) are no measurement a claim can end on: they stay in the quote, checked by the cells after them.
    const values = [(r: any) => r.ack_ms_quiet.p50, (r: any) => r.ack_ms_quiet.p99, (r: any) => r.ack_ms_flood.p50, (r: any) => r.ack_ms_flood.p99, (r: any) => r.ack_ms_flood.max,
      null, (r: any) => r.newcomers_flood.p50_ms, (r: any) => r.newcomers_flood.max_ms, (r: any) => r.flood.mb_per_s, null, (r: any) => r.server_cpu_percent_flood];
    return cells.flatMap((_, k) => {
      const v = values[k];
      return v ? [bm(`${label}${cells.slice(0, k + 1).map((c) => c(m())).join('')}`, () => v(m()))] : [];
    });
  }),
  bm('acknowledgement time is 2.92× shorter', () => json('downloads.json').ack_p99_flood_ratio_before_over_now),
  bm('data and state 6.32× shorter', () => json('downloads.json').newcomer_p50_flood_ratio_before_over_now),
  bm('still got 218.60 MB/s', () => json('downloads.json').modes[1].flood.mb_per_s),
  bm('(2.75× less than before)', () => json('downloads.json').flood_mb_per_s_ratio_before_over_now),
  // nat-turn-cap-tiny.json: the default run's relayed exchange at the 700 KB/s row, against bytes / max-bps
  bm('at 700 KB/s the median took 1.43×', () => json('nat-turn-cap-tiny.json').rows.find((r: any) => r.max_bps === 700_000).ms_ratio),
  bm('at 700 KB/s the median took 1.43× bytes / `max-bps` and the slowest 1.69×', () => json('nat-turn-cap-tiny.json').rows.find((r: any) => r.max_bps === 700_000).max_ratio),
  bm('the slowest later exchange 2.26×', () => Math.max(...json('nat-turn-cap-tiny-1250k.json').rows.map((r: any) => r.max_ratio))),
  // checkpoint.json: the coordinator's validation of an upload
  bm('| tiny | 4 | 5.32 s', () => val('tiny').ms_1_thread / 1000),
  bm('| tiny | 4 | 5.32 s | 2.99 s', () => val('tiny').ms_threads / 1000),
  bm('| tiny | 4 | 5.32 s | 2.99 s | 1.78×', () => val('tiny').thread_speedup),
  bm('| tiny | 4 | 5.32 s | 2.99 s | 1.78× | 5.32 s', () => val('tiny').before_ms / 1000),
  bm('| tiny | 4 | 5.32 s | 2.99 s | 1.78× | 5.32 s | 1.8×', () => val('tiny').speedup_vs_before),
  bm('| small | 1 | 24.12 s', () => val('small').ms_1_thread / 1000),
  bm('| small | 1 | 24.12 s | 12.60 s', () => val('small').ms_threads / 1000),
  bm('| small | 1 | 24.12 s | 12.60 s | 1.91×', () => val('small').thread_speedup),
  bm('| small | 1 | 24.12 s | 12.60 s | 1.91× | 95.86 s', () => val('small').before_ms / 1000),
  bm('| small | 1 | 24.12 s | 12.60 s | 1.91× | 95.86 s | 7.6×', () => val('small').speedup_vs_before),
  bm('| base | 1 | 223.97 s', () => val('base').ms_1_thread / 1000),
  bm('| base | 1 | 223.97 s | 114.36 s', () => val('base').ms_threads / 1000),
  bm('| base | 1 | 223.97 s | 114.36 s | 1.96×', () => val('base').thread_speedup),
  bm('| base | 1 | 223.97 s | 114.36 s | 1.96× | 895.87 s (4 × its one batch)', () => val('base').before_ms / 1000),
  bm('| base | 1 | 223.97 s | 114.36 s | 1.96× | 895.87 s (4 × its one batch) | 7.8×', () => val('base').speedup_vs_before),
  bm('faster on one thread (0.77×', () => val('micro').thread_speedup),
];

function section(text: string, name: string): string {
  const start = text.indexOf(`\n## ${name}\n`);
  if (start < 0) throw new Error(`no "## ${name}" section`);
  const end = text.indexOf('\n## ', start + 4);
  return text.slice(start, end < 0 ? undefined : end);
}

describe('benchmark numbers in README and docs/benchmarks.md', () => {
  it('every claim quotes its source correctly', () => {
    const bad: string[] = [];
    for (const c of CLAIMS) {
      const text = TEXT[c.doc];
      if (!text.includes(c.quote)) { bad.push(`${c.doc}: "${c.quote}" is not in the text`); continue; }
      const token = [...c.quote.matchAll(MEASURE)].pop()?.[0];
      if (!token) { bad.push(`${c.doc}: "${c.quote}" quotes no measurement`); continue; }
      const value = c.value();
      if (!printsAs(value, token)) bad.push(`${c.doc}: "${c.quote}" but bench/results gives ${value}`);
    }
    expect(bad).toEqual([]);
  });

  it('quotes no measurement that no claim checks', () => {
    const unchecked: string[] = [];
    const scanned: Array<[Doc, string, number]> = [
      ['docs/benchmarks.md', TEXT['docs/benchmarks.md'], 0],
      ['README.md', section(TEXT['README.md'], 'Benchmarks'), TEXT['README.md'].indexOf(section(TEXT['README.md'], 'Benchmarks'))],
    ];
    for (const [doc, text, offset] of scanned) {
      // Where each claim's checked number sits in the whole document.
      const checked = new Set<number>();
      for (const c of CLAIMS.filter((x) => x.doc === doc)) {
        const tokens = [...c.quote.matchAll(MEASURE)];
        const last = tokens.pop();
        for (let at = TEXT[doc].indexOf(c.quote); at >= 0 && last; at = TEXT[doc].indexOf(c.quote, at + 1)) checked.add(at + last.index!);
      }
      for (const m of text.matchAll(MEASURE)) {
        if (!checked.has(offset + m.index!)) unchecked.push(`${doc}: "${text.slice(Math.max(0, m.index! - 30), m.index! + m[0].length)}"`);
      }
    }
    expect(unchecked).toEqual([]);
  });

  it('names a JSON file under bench/results for every table', () => {
    const files = new Set(readdirSync(join(ROOT, 'bench', 'results')));
    const named = [...TEXT['docs/benchmarks.md'].matchAll(/`(?:bench\/results\/)?([\w.-]+\.json)`/g)].map((m) => m[1]!);
    expect(named.filter((f) => !files.has(f))).toEqual([]);
    for (const [block] of TEXT['docs/benchmarks.md'].matchAll(/(?:^(?!\|).*\n)+(?=^\|)/gm)) {
      expect(block, 'the text before a table names its JSON file').toMatch(/\.json`|results\/[\w-]+\/`/);
    }
  });

  it('catches a wrong or unchecked number (the checker itself)', () => {
    expect(printsAs(2.3863, '2.386')).toBe(true);
    expect(printsAs(2.3873, '2.386')).toBe(false);
    expect(printsAs(1.8431e-6, '1.8e-6')).toBe(true);
    expect(printsAs(56.9, '57%')).toBe(true);
    expect([...'loss 2.386, 34.0% idle, 7.3× faster, 8×32 tokens, 4e-3, 12.7 ms, 118K'.matchAll(MEASURE)].map((m) => m[0]))
      .toEqual(['2.386', '34.0%', '7.3×', '12.7 ms', '118K']);
  });
});

describe('src/model/flops.ts, the one FLOP formula', () => {
  it('counts micro by hand: matmuls times 3, attention over the full T x T', () => {
    const { d: C, layers: L, vocab: V } = PRESETS.micro;
    const B = 2, T = 32, N = B * T;
    const matmuls = 2 * N * (L * (3 * C * C + C * C + 4 * C * C + 4 * C * C) + V * C);
    expect(forwardFlops(PRESETS.micro, B, T)).toBe(matmuls + L * B * 2 * (2 * T * T * C));
    expect(stepFlops(PRESETS.micro, B, T)).toBe(3 * (matmuls + L * B * 2 * (2 * T * T * C)));
  });
});
