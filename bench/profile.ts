// `npm run bench:profile [-- --preset tiny] [--block]`: where a training step's GPU time goes.
// Runs the engine in Node (Dawn; SwiftShader without a GPU driver), times every dispatch of one
// step with timestamp queries (one compute pass per dispatch), and prints the kernels grouped
// by kind (layers folded together), slowest first; then times --steps N (default 20) whole
// training steps on the wall clock, loss read-back included. The kernels' shapes are the
// autotuner's for this adapter (cached as a volunteer's are; --default-tuning for the untuned
// defaults). Writes bench/results/profile.json.
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { preset, trainConfig, type ModelConfig } from '../src/model/config.ts';
import { initParams } from '../src/model/init.ts';
import { buildLayout } from '../src/model/layout.ts';
import { GpuEngine } from '../src/gpu/engine.ts';
import { nodeTuning } from '../src/gpu/autotune-node.ts';
import { describeAdapter, summarizeAdapter } from '../src/gpu/device.ts';
import { nodeGpu } from '../src/gpu/node-gpu.ts';
import { stepFlops } from './flops.ts';

const arg = (name: string) => { const i = process.argv.indexOf(`--${name}`); return i < 0 ? undefined : process.argv[i + 1]; };
const block = process.argv.includes('--block');
const model: ModelConfig = block ? { vocab: 256, ctx: 128, layers: 1, d: 256, heads: 4 } : preset(arg('preset') ?? 'tiny');
const cfg = trainConfig(block ? { batch: 4, seqLen: 128 } : {}, model);
const layout = buildLayout(model);

const gpu = await nodeGpu();
const adapter = await gpu.requestAdapter();
if (!adapter) throw new Error('no WebGPU adapter (nodeGpu() says what to install)');
if (!adapter.features.has('timestamp-query')) throw new Error(`${describeAdapter(summarizeAdapter(adapter))} has no timestamp-query feature; cannot profile`);
const device = await adapter.requestDevice({
  label: 'profile.device', requiredFeatures: ['timestamp-query'],
  requiredLimits: { maxStorageBufferBindingSize: adapter.limits.maxStorageBufferBindingSize, maxBufferSize: adapter.limits.maxBufferSize },
});
const tuning = await nodeTuning(device, summarizeAdapter(adapter), process.argv.includes('--default-tuning'));
console.log(`tuning: ${JSON.stringify(tuning)}`);
const engine = new GpuEngine(device, { layout, train: cfg, B: cfg.batch, T: cfg.seqLen, tuning });
const theta = initParams(layout, 1), zeros = new Float32Array(layout.total);
engine.writeState({ params: theta, m: zeros, v: zeros, phi: theta, outerM: zeros, step: 0 });
const tokens = Uint32Array.from({ length: cfg.batch * cfg.seqLen }, (_, i) => (i * 31) % model.vocab);
const batch = { B: cfg.batch, T: cfg.seqLen, tokens, targets: tokens.map((t) => (t + 1) % model.vocab) };
await engine.train(1, () => batch); // compile and warm up

const list = engine.stepDispatches;
const querySet = device.createQuerySet({ label: 'profile.querySet', type: 'timestamp', count: 2 * list.length });
const resolve = device.createBuffer({ label: 'profile.resolve', size: 16 * list.length, usage: GPUBufferUsage.QUERY_RESOLVE | GPUBufferUsage.COPY_SRC });
const read = device.createBuffer({ label: 'profile.read', size: 16 * list.length, usage: GPUBufferUsage.COPY_DST | GPUBufferUsage.MAP_READ });
engine.model.writeBatch(batch.tokens, batch.targets);
const enc = device.createCommandEncoder({ label: 'profile.step' });
enc.clearBuffer(engine.state.grads);
enc.clearBuffer(engine.model.dres);
list.forEach((d, i) => {
  const pass = enc.beginComputePass({ label: `profile.${d.label}`, timestampWrites: { querySet, beginningOfPassWriteIndex: 2 * i, endOfPassWriteIndex: 2 * i + 1 } });
  pass.setPipeline(d.pipeline);
  pass.setBindGroup(0, d.bindGroup);
  pass.dispatchWorkgroups(...d.workgroups);
  pass.end();
});
enc.resolveQuerySet(querySet, 0, 2 * list.length, resolve, 0);
enc.copyBufferToBuffer(resolve, 0, read, 0, read.size);
device.queue.submit([enc.finish()]);
await read.mapAsync(GPUMapMode.READ);
const ts = new BigInt64Array(read.getMappedRange());
const kinds = new Map<string, { ms: number; count: number }>();
let total = 0;
list.forEach((d, i) => {
  const ms = Number(ts[2 * i + 1] - ts[2 * i]) / 1e6;
  total += ms;
  const kind = d.label.replace(/\.h\d+\./, '.h*.');
  const k = kinds.get(kind) ?? { ms: 0, count: 0 };
  k.ms += ms; k.count++;
  kinds.set(kind, k);
});
const rows = [...kinds.entries()].map(([kernel, v]) => ({ kernel, dispatches: v.count, ms: v.ms, share: v.ms / total })).sort((a, b) => b.ms - a.ms);
const name = block ? 'block d=256 h=4 (1 layer), B x T = 4 x 128' : `${arg('preset') ?? 'tiny'} preset, B x T = ${cfg.batch} x ${cfg.seqLen}`;
console.log(`${describeAdapter(summarizeAdapter(adapter))}; ${name}; ${list.length} dispatches; GPU time ${total.toFixed(1)} ms ` +
  `(${(stepFlops(model, cfg.batch, cfg.seqLen) / total / 1e6).toFixed(2)} GFLOPS)`);
console.log(`${'kernel'.padEnd(44)} ${'n'.padStart(3)} ${'ms'.padStart(9)} ${'share'.padStart(6)}`);
for (const r of rows) console.log(`${r.kernel.padEnd(44)} ${String(r.dispatches).padStart(3)} ${r.ms.toFixed(2).padStart(9)} ${(100 * r.share).toFixed(1).padStart(5)}%`);
// Whole steps as the trainer runs them: one submit each, losses read back in chunks.
const timedSteps = Number(arg('steps') ?? 20);
if (!(Number.isInteger(timedSteps) && timedSteps >= 1)) throw new Error(`--steps must be a positive integer, got ${arg('steps')}`);
const w0 = performance.now();
await engine.train(timedSteps, () => batch);
const stepMs = (performance.now() - w0) / timedSteps;
console.log(`wall clock: ${stepMs.toFixed(2)} ms per step over ${timedSteps} steps (${(stepFlops(model, cfg.batch, cfg.seqLen) / stepMs / 1e6).toFixed(2)} GFLOPS), ` +
  `${(cfg.batch * cfg.seqLen / stepMs * 1000).toFixed(0)} tokens/s`);
const out = join(fileURLToPath(new URL('.', import.meta.url)), 'results', 'profile.json');
await mkdir(join(out, '..'), { recursive: true });
await writeFile(out, JSON.stringify({ adapter: describeAdapter(summarizeAdapter(adapter)), tuning, model: name, dispatches: list.length, totalMs: total, wallMsPerStep: stepMs, timedSteps, rows }, null, 2) + '\n');
console.log(`wrote ${out}`);
engine.destroy();
device.destroy();
