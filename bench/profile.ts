// `npm run bench:profile [-- --preset tiny] [--block]`: where a training step's GPU time goes.
// Runs the engine in Node (Dawn; SwiftShader without a GPU driver), times every dispatch of one
// step with timestamp queries (one compute pass per dispatch), and prints the kernels grouped
// by kind (layers folded together), slowest first; then times --steps N (default 20) whole
// training steps on the wall clock, loss read-back included. The kernels' shapes are the
// autotuner's for this adapter (cached as a volunteer's are; --default-tuning for the untuned
// defaults). Writes bench/results/profile.json (--out DIR: DIR/profile.json).
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { preset, trainConfig, type ModelConfig } from '../src/model/config.ts';
import { nodeEngine, nodeTuning } from '../src/gpu/autotune-node.ts';
import { describeRates, matmulRates } from '../src/gpu/autotune.ts';
import { describeAdapter, optionalFeatures, summarizeAdapter } from '../src/gpu/device.ts';
import { nodeGpu } from '../src/gpu/node-gpu.ts';
import { arg, intArg, resultsDir } from './args.ts';
import { stepFlops } from '../src/model/flops.ts';
import { profileModel } from './profile-core.ts';
import { profileLines } from './profile-table.ts';

const block = process.argv.includes('--block');
const model: ModelConfig = block ? { vocab: 256, ctx: 128, layers: 1, d: 256, heads: 4 } : preset(arg('preset') ?? 'tiny');
const cfg = trainConfig(block ? { batch: 4, seqLen: 128 } : {}, model);

const gpu = await nodeGpu();
const adapter = await gpu.requestAdapter();
if (!adapter) throw new Error('no WebGPU adapter (nodeGpu() says what to install)');
if (!adapter.features.has('timestamp-query')) throw new Error(`${describeAdapter(summarizeAdapter(adapter))} has no timestamp-query feature; cannot profile`);
const device = await adapter.requestDevice({
  label: 'profile.device', requiredFeatures: ['timestamp-query', ...optionalFeatures(adapter)],
  requiredLimits: { maxStorageBufferBindingSize: adapter.limits.maxStorageBufferBindingSize, maxBufferSize: adapter.limits.maxBufferSize },
});
const tuning = await nodeTuning(device, summarizeAdapter(adapter), process.argv.includes('--default-tuning'));
console.log(`tuning: ${JSON.stringify(tuning)}`);
console.log(`matmul: ${describeRates(matmulRates(tuning, summarizeAdapter(adapter)))}`);
// Whole steps as the trainer runs them, after the profiled one.
const timedSteps = intArg('steps', 20);
const defaults = process.argv.includes('--default-tuning');
const { totalMs: total, dispatches, rows, wallMsPerStep: stepMs, tuning: used } = await profileModel(device, model, cfg, tuning, timedSteps, (o) => nodeEngine(device, summarizeAdapter(adapter), o, defaults));
const name = block ? 'block d=256 h=4 (1 layer), B x T = 4 x 128' : `${arg('preset') ?? 'tiny'} preset, B x T = ${cfg.batch} x ${cfg.seqLen}`;
console.log(`${describeAdapter(summarizeAdapter(adapter))}; ${name}; ${dispatches} dispatches; GPU time ${total.toFixed(1)} ms ` +
  `(${(stepFlops(model, cfg.batch, cfg.seqLen) / total / 1e6).toFixed(2)} GFLOPS)`);
for (const l of profileLines(rows)) console.log(l);
console.log(`wall clock: ${stepMs.toFixed(2)} ms per step over ${timedSteps} steps (${(stepFlops(model, cfg.batch, cfg.seqLen) / stepMs / 1e6).toFixed(2)} GFLOPS), ` +
  `${(cfg.batch * cfg.seqLen / stepMs * 1000).toFixed(0)} tokens/s`);
const out = join(resultsDir(), 'profile.json');
await mkdir(join(out, '..'), { recursive: true });
await writeFile(out, JSON.stringify({ adapter: describeAdapter(summarizeAdapter(adapter)), tuning: used, model: name, dispatches, totalMs: total, wallMsPerStep: stepMs, timedSteps, rows }, null, 2) + '\n');
console.log(`wrote ${out}`);
device.destroy();
