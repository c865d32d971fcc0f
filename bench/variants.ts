// `npm run bench:variants [-- --presets small,base] [--batch 8] [--out DIR]`: the kernel families
// the autotuner chooses between, side by side at a model's own sizes in one run (issue 17):
//   attention   forward + backward: rows, tiled, blocked (head sizes as the preset's);
//   layernorm   forward + backward over B·T rows of d: rows, wide;
//   fcproj      the MLP's projection forward (B·T x d from K = 4d, bias and residual): the
//               adapter's tuned class shape whole, then with K split 2, 4 and 8 ways;
//   tiles       the MLP's expansion forward (B·T x 4d from K = d, bias): the adapter's tuned
//               class shape, then the workgroup-memory tiles 128 x 128, 64 x 128 and 64 x 64,
//               each plain, prefetched (stages double-buffered, the next read into registers)
//               and 16 deep, where the kernel can run it.
// Each row gives ms per run (timed as the autotuner times: repeats in one submit, best of three)
// and its speed against the first row of its family. On a GPU this is what each kernel change
// buys at the model's sizes; on SwiftShader, a check of the harness (the GPU kernels are not
// what it runs). Writes bench/results/variants.json.
import { mkdirSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { preset } from '../src/model/config.ts';
import { nodeTuning } from '../src/gpu/autotune-node.ts';
import { shapeName, timeDispatch } from '../src/gpu/autotune.ts';
import { describeAdapter, optionalFeatures, summarizeAdapter } from '../src/gpu/device.ts';
import { DEFAULT_TUNING, Kernels, tunedShape, type MatmulShape, type Tuning } from '../src/gpu/kernels.ts';
import { matmulDispatches, shapeProblem, splitOf, type MatmulSpec } from '../src/gpu/matmul.ts';
import { attentionBackward, attentionForward, attentionKind, layernormBackward, layernormForward, layernormScratchFloats } from '../src/gpu/ops.ts';
import { nodeGpu } from '../src/gpu/node-gpu.ts';
import { arg, intArg, resultsDir } from './args.ts';

const presets = (arg('presets') ?? 'micro').split(',');
const B = intArg('batch', 8);
const outDir = resultsDir();

const gpu = await nodeGpu();
const adapter = await gpu.requestAdapter({ powerPreference: 'high-performance' });
if (!adapter) throw new Error('no WebGPU adapter (nodeGpu() says what to install)');
const info = summarizeAdapter(adapter);
const device = await adapter.requestDevice({
  label: 'variants.device', requiredFeatures: optionalFeatures(adapter),
  requiredLimits: { maxStorageBufferBindingSize: adapter.limits.maxStorageBufferBindingSize, maxBufferSize: adapter.limits.maxBufferSize },
});
const tuning = await nodeTuning(device, info);
console.log(`bench:variants on ${describeAdapter(info)}; batch ${B}; tuning ${JSON.stringify(tuning)}`);

interface Row { preset: string; family: string; variant: string; ms: number; speedup: number }
const rows: Row[] = [];
const owned: GPUBuffer[] = [];
const buf = (floats: number) => {
  const b = device.createBuffer({ size: Math.max(16, floats * 4), usage: GPUBufferUsage.STORAGE });
  owned.push(b);
  return b;
};
/** Times each variant (a Kernels per tuning, and the dispatches it builds); the first is the baseline. */
const family = async (name: string, p: string, variants: [string, Tuning, (k: Kernels) => ReturnType<typeof matmulDispatches>][]) => {
  let first = 0;
  for (const [variant, t, build] of variants) {
    const k = new Kernels(device, t);
    try {
      const ms = await timeDispatch(device, build(k));
      first ||= ms;
      rows.push({ preset: p, family: name, variant, ms, speedup: first / ms });
    } finally {
      k.destroy();
    }
  }
};

for (const name of presets) {
  const m = preset(name);
  const [T, C, NH, N] = [m.ctx, m.d, m.heads, B * m.ctx];
  const qkv = buf(N * 3 * C), out = buf(N * C), dout = buf(N * C), lse = buf(B * NH * T), D = buf(B * NH * T), dqkv = buf(N * 3 * C);
  // What a tuning of each kind runs at this head size (a kind may fall back to another).
  const runs = (kind: 'rows' | 'tiled' | 'blocked') => attentionKind({ tuning: { ...tuning, attention: kind } } as Kernels, C / NH);
  await family('attention', name, (['rows', 'tiled', 'blocked'] as const).map((kind) => [
    runs(kind) === kind ? kind : `${kind} (runs ${runs(kind)})`,
    { ...tuning, attention: kind },
    (k) => [attentionForward(k, 'v.attn', out, lse, qkv, B, T, C, NH), ...attentionBackward(k, 'v.attn.bwd', dqkv, D, lse, out, dout, qkv, B, T, C, NH)],
  ]));
  const x = buf(N * C), y = buf(N * C), dy = buf(N * C), dx = buf(N * C), w = buf(C), b = buf(C), dw = buf(C), db = buf(C);
  const mean = buf(N), rstd = buf(N), scratch = buf(layernormScratchFloats(N, C));
  await family('layernorm', name, (['rows', 'wide'] as const).map((kind) => [kind, { ...tuning, layernorm: kind },
    (k) => [layernormForward(k, 'v.ln', y, mean, rstd, x, w, b, N, C), ...layernormBackward(k, 'v.ln.bwd', dx, dw, db, dy, x, w, mean, rstd, scratch, N, C)]]));
  const A = buf(N * 4 * C), W = buf(4 * C * C), bias = buf(C), R = buf(N * C), Cout = buf(N * C);
  const spec: MatmulSpec = { label: 'v.fcproj', mode: 'nn', M: N, N: C, K: 4 * C, a: { ref: A, ld: 4 * C }, b: { ref: W, ld: C }, c: { ref: Cout, ld: C }, bias: { ref: bias }, epilogue: { kind: 'residual', ref: R, ld: C } };
  const shape = tunedShape(tuning, 'nn', N, C, 4 * C);
  await family('fcproj', name, [1, 2, 4, 8].filter((s) => s === 1 || splitOf(spec, { ...shape, splitK: s }) === s).map((s) => [
    `${shapeName({ ...shape, splitK: s })}`, DEFAULT_TUNING, (k) => matmulDispatches(k, spec, { ...shape, splitK: s }),
  ]));
  const fcSpec: MatmulSpec = { label: 'v.fc', mode: 'nn', M: N, N: 4 * C, K: C, a: { ref: x, ld: C }, b: { ref: W, ld: 4 * C }, c: { ref: A, ld: 4 * C }, bias: { ref: buf(4 * C) } };
  const tiles = [[16, 16], [16, 8], [8, 8]].flatMap(([wgX, wgY]) => [{}, { prefetch: true }, { tk: 16 as const }, { prefetch: true, tk: 16 as const }]
    .map((more): MatmulShape => ({ wgX, wgY, tm: 8, vec4: true, tile: true, ...more })).filter((sh) => shapeProblem(sh) === null));
  await family('tiles', name, [tunedShape(tuning, 'nn', N, 4 * C, C), ...tiles].map((sh) => [shapeName(sh), DEFAULT_TUNING, (k) => matmulDispatches(k, fcSpec, sh)]));
  for (const bf of owned.splice(0)) bf.destroy();
}

const pad = (s: string, n: number) => s.padStart(n);
console.log(`${'preset'.padEnd(8)}${'family'.padEnd(11)}${'variant'.padEnd(30)}${pad('ms', 10)}${pad('vs first', 10)}`);
for (const r of rows) console.log(`${r.preset.padEnd(8)}${r.family.padEnd(11)}${r.variant.padEnd(30)}${pad(r.ms.toFixed(3), 10)}${pad(`${r.speedup.toFixed(2)}x`, 10)}`);
mkdirSync(outDir, { recursive: true });
const file = join(outDir, 'variants.json');
writeFileSync(file + '.tmp', JSON.stringify({ date: new Date().toISOString(), adapter: describeAdapter(info), software: info.isSoftware, batch: B, tuning, rows }, null, 1) + '\n');
renameSync(file + '.tmp', file);
console.log(`wrote ${file}`);
device.destroy();
