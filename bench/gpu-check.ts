// `npm run bench:gpu-check [-- --presets micro,tiny] [--steps N] [--out DIR]`: does this GPU train
// like the CPU reference? The whole WGSL step (GpuEngine) and CpuTrainer (reference forward and
// backward, clip, AdamW, schedule) run N steps from the same weights on the same corpus batches;
// the table gives the worst per-step loss gap and the final parameter and moment gaps, scaled as
// in tests/engine.train.test.ts (which holds SwiftShader to 1e-3 / 2e-3 / 1e-3). The tests only
// see SwiftShader; this is how a real GPU's arithmetic (FMA, reduction order, subnormals) is
// checked. The engine runs the autotuner's kernels for this adapter, as a volunteer's does (on
// a GPU: tiled matmul, K-split weight gradients, tiled attention where they won);
// --default-tuning runs the untuned defaults. --half adds a row per preset with f16 operands
// (GpuEngine and CpuTrainer with `half`: the f16 path against its own CPU reference; a few
// rounding ties that land differently grow into larger weight gaps than f32 ones, see
// tests/engine.half.test.ts). Writes bench/results/gpu-check.json.
import { mkdirSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { preset, trainConfig } from '../src/model/config.ts';
import { initParams } from '../src/model/init.ts';
import { buildLayout } from '../src/model/layout.ts';
import { CpuTrainer } from '../src/train/cpu-trainer.ts';
import { nodeEngine, nodeTuning } from '../src/gpu/autotune-node.ts';
import { describeAdapter, optionalFeatures, summarizeAdapter } from '../src/gpu/device.ts';
import { nodeGpu } from '../src/gpu/node-gpu.ts';
import { arg, intArg, resultsDir } from './args.ts';
import { loadDefaultCorpus } from '../src/data/corpus.ts';
import { WindowSampler } from '../src/data/sampler.ts';
import type { Batch } from '../src/data/batch.ts';

const presets = (arg('presets') ?? 'micro,tiny').split(',');
const STEPS = intArg('steps', 10);
const outDir = resultsDir();

const gpu = await nodeGpu();
const adapter = await gpu.requestAdapter();
const adapterName = describeAdapter(summarizeAdapter(adapter!));
const device = await adapter!.requestDevice({
  label: 'gpu-check.device',
  requiredFeatures: optionalFeatures(adapter!),
  requiredLimits: { maxStorageBufferBindingSize: adapter!.limits.maxStorageBufferBindingSize, maxBufferSize: adapter!.limits.maxBufferSize },
});
const corpus = loadDefaultCorpus();
console.log(`gpu-check on ${adapterName}: ${STEPS} steps per preset, GPU engine vs CPU reference`);
const tuning = await nodeTuning(device, summarizeAdapter(adapter!), process.argv.includes('--default-tuning'));
console.log(`tuning: ${JSON.stringify(tuning)}`);

const rows: { preset: string; half: boolean; B: number; T: number; steps: number; maxLossRel: number; paramRatio: number; momentRatio: number; firstLoss: number; lastLoss: number; cpuMs: number; gpuMs: number; skipped: number }[] = [];
const precisions = process.argv.includes('--half') ? [false, true] : [false];
for (const half of precisions) for (const name of presets) {
  const model = preset(name);
  const layout = buildLayout(model);
  // The preset's context, a small batch: enough tokens to exercise every kernel's tiling.
  const B = 4, T = model.ctx;
  const cfg = trainConfig({ batch: B, seqLen: T, lr: 3e-3, warmupSteps: 3, totalSteps: 100 }, model);
  const sampler = new WindowSampler(corpus.train, { seed: 11, replica: 0 });
  const batches: Batch[] = Array.from({ length: STEPS }, () => sampler.next(B, T));
  const theta0 = initParams(layout, 5);

  let t0 = performance.now();
  const cpu = new CpuTrainer(layout, cfg, theta0, 0, { half });
  const cpuLosses = batches.map((b) => cpu.trainStep(b));
  const cpuMs = (performance.now() - t0) / STEPS;

  const engine = await nodeEngine(device, summarizeAdapter(adapter!), { layout, train: cfg, B, T, tuning, half }, process.argv.includes('--default-tuning'));
  const zeros = new Float32Array(layout.total);
  engine.writeState({ params: theta0, m: zeros, v: zeros, phi: theta0, outerM: zeros, step: 0 });
  t0 = performance.now();
  let s = 0;
  const stats = await engine.train(STEPS, () => batches[s++]);
  const gpuMs = (performance.now() - t0) / STEPS;
  const st = await engine.readState();
  const { skipped } = await engine.lossScaling();
  engine.destroy();

  let maxLossRel = 0;
  for (let i = 0; i < STEPS; i++) maxLossRel = Math.max(maxLossRel, Math.abs(stats.losses[i] - cpuLosses[i]) / cpuLosses[i]);
  let diff = 0, change = 0, mdiff = 0, mscale = 0;
  for (let i = 0; i < layout.total; i++) {
    diff = Math.max(diff, Math.abs(st.params[i] - cpu.params[i]));
    change = Math.max(change, Math.abs(cpu.params[i] - theta0[i]));
    mdiff = Math.max(mdiff, Math.abs(st.m[i] - cpu.m[i]));
    mscale = Math.max(mscale, Math.abs(cpu.m[i]));
  }
  rows.push({ preset: name, half, skipped, B, T, steps: STEPS, maxLossRel, paramRatio: diff / change, momentRatio: mdiff / mscale, firstLoss: cpuLosses[0], lastLoss: cpuLosses[STEPS - 1], cpuMs, gpuMs });
}
device.destroy();

const pad = (x: string, n: number) => x.padStart(n);
console.log(`${'preset'.padEnd(12)}${pad('B x T', 10)}${pad('loss cpu first->last', 22)}${pad('max loss rel', 14)}${pad('params', 11)}${pad('moments', 11)}${pad('cpu ms', 10)}${pad('gpu ms', 9)}`);
for (const r of rows) {
  console.log(`${(r.half ? `${r.preset} f16` : r.preset).padEnd(12)}${pad(`${r.B} x ${r.T}`, 10)}${pad(`${r.firstLoss.toFixed(3)} -> ${r.lastLoss.toFixed(3)}`, 22)}${pad(r.maxLossRel.toExponential(2), 14)}` +
    `${pad(r.paramRatio.toExponential(2), 11)}${pad(r.momentRatio.toExponential(2), 11)}${pad(r.cpuMs.toFixed(0), 10)}${pad(r.gpuMs.toFixed(1), 9)}`);
}
console.log('params: |θ_gpu − θ_cpu|∞ / |θ_cpu − θ_0|∞; moments: |m_gpu − m_cpu|∞ / |m_cpu|∞ (SwiftShader tests hold 2e-3 and 1e-3)');
mkdirSync(outDir, { recursive: true });
const file = join(outDir, 'gpu-check.json');
writeFileSync(file + '.tmp', JSON.stringify({ date: new Date().toISOString(), adapter: adapterName, node: process.version, tuning, rows }, null, 1) + '\n');
renameSync(file + '.tmp', file);
console.log(`wrote ${file}`);
