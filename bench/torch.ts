// `npm run bench:torch [-- --presets micro,tiny] [--batch B] [--warmup N] [--timed N] [--modes fp32,tf32,compile]
//   [--python PATH] [--out DIR]`: what a volunteer loses by training in a browser. The same GPT
// (a preset, batch B at the preset's context) trains from the same weights (Murmur's init,
// handed to PyTorch as safetensors) on the same corpus batches with the same AdamW settings
// (constant peak rate, clip, decoupled decay on the same tensors) for warmup + timed steps, once
// by Murmur's WGSL engine through Dawn (autotuned shapes, as a volunteer runs it) and once per
// PyTorch mode by bench/torch_gpt.py: fp32 eager with TF32 off, then TF32 on and torch.compile
// as extra rows where they exist. Each side's time per step is the mean over the timed steps,
// after the warm-up ones. Writes bench/results/torch.json:
//   {rows: [{gpu, driver, preset, tokens_per_step, murmur_ms, torch_ms, torch_mode, torch_device,
//            ratio, murmur_tflops, torch_tflops, loss_gap_after_10_steps, note}], skipped, ...}
// ratio = Murmur tokens/s over PyTorch tokens/s (= torch_ms / murmur_ms); the loss gap is
// |murmur - torch| / torch of the loss after 10 updates (step 11's forward), the same-numerics
// check. TFLOPS count the step's matmuls (src/model/flops.ts) for both sides alike.
// Without a GPU, Murmur runs on SwiftShader and PyTorch on the CPU: those rows prove the
// harness only, and say so in `note`. On a GPU machine, scripts/device-run.sh runs the bundled
// copy (dist/kernels/torch.mjs beside torch_gpt.py).
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { preset, trainConfig } from '../src/model/config.ts';
import { initParams } from '../src/model/init.ts';
import { buildLayout } from '../src/model/layout.ts';
import { hfModelSafetensors } from '../src/model/hf-export.ts';
import { autotune, describeRates, matmulRates } from '../src/gpu/autotune.ts';
import { fileStore, nodeEngine } from '../src/gpu/autotune-node.ts';
import { describeAdapter, optionalFeatures, summarizeAdapter } from '../src/gpu/device.ts';
import { nodeGpu } from '../src/gpu/node-gpu.ts';
import { arg, intArg, resultsDir } from './args.ts';
import { checkDeviceLimits, requirements } from '../src/gpu/limits.ts';
import { loadDefaultCorpus } from '../src/data/corpus.ts';
import { WindowSampler } from '../src/data/sampler.ts';
import type { Batch } from '../src/data/batch.ts';
import { stepFlops } from '../src/model/flops.ts';

const presets = (arg('presets') ?? 'micro,tiny').split(',');
const B = intArg('batch', 8);
const WARMUP = intArg('warmup', 3, 0);
// The loss after 10 updates is step 11's: at least 11 steps in all.
const TIMED = intArg('timed', 10, Math.max(1, 11 - WARMUP));
const MODES = (arg('modes') ?? 'fp32,tf32,compile').split(',');
for (const m of MODES) if (!['fp32', 'tf32', 'compile'].includes(m)) throw new Error(`--modes: unknown mode "${m}" (fp32, tf32, compile)`);
const python = arg('python') ?? (existsSync('/usr/bin/python3') ? '/usr/bin/python3' : 'python3');
const here = fileURLToPath(new URL('.', import.meta.url));
const script = join(here, 'torch_gpt.py');
const outDir = resultsDir();

interface TorchResult { mode: string; skipped?: string; device?: string; device_name?: string; torch?: string; ms_per_step?: number; losses?: number[]; attention?: string }

const gpu = await nodeGpu();
const adapter = await gpu.requestAdapter({ powerPreference: 'high-performance' });
if (!adapter) throw new Error('no WebGPU adapter (nodeGpu() says what to install)');
const info = summarizeAdapter(adapter);
const adapterName = describeAdapter(info);
const software = info.isSoftware;
const driver = (() => {
  try { return execFileSync('nvidia-smi', ['--query-gpu=driver_version', '--format=csv,noheader'], { encoding: 'utf8' }).trim().split('\n')[0]; } catch { return info.description || null; }
})();
const device = await adapter.requestDevice({
  label: 'torch-bench.device',
  requiredFeatures: optionalFeatures(adapter),
  requiredLimits: { maxStorageBufferBindingSize: adapter.limits.maxStorageBufferBindingSize, maxBufferSize: adapter.limits.maxBufferSize },
});
const tuned = await autotune(device, info, { store: fileStore() });
const rates = matmulRates(tuned.tuning, info);
console.log(`autotuned matmul: ${describeRates(rates)}`);
const corpus = loadDefaultCorpus();
console.log(`bench:torch on ${adapterName}${driver ? ` (driver ${driver})` : ''}; ${WARMUP} warm-up + ${TIMED} timed steps per preset, batch ${B}; python ${python}`);

const rows: Record<string, unknown>[] = [];
let usedTuning = tuned.tuning;
const skipped: { preset: string; mode: string; reason: string }[] = [];
for (const name of presets) {
  const model = preset(name);
  const layout = buildLayout(model);
  const T = model.ctx;
  // The peak rate held constant: the schedule's warm-up would make 11 steps mostly warm-up.
  const cfg = trainConfig({ batch: B, seqLen: T }, model);
  const steps = WARMUP + TIMED;
  const sampler = new WindowSampler(corpus.train, { seed: 17, replica: 0 });
  const batches: Batch[] = Array.from({ length: steps }, () => sampler.next(B, T));
  const theta0 = initParams(layout, 1);
  const flops = stepFlops(model, B, T);

  // ---- Murmur ----
  checkDeviceLimits(device.limits, requirements(layout, B, T, tuned.tuning).needs, adapterName);
  // On a GPU each product then runs the shape measured fastest at its own size (once per model).
  const engine = await nodeEngine(device, info, { layout, train: cfg, B, T, tuning: tuned.tuning });
  usedTuning = engine.kernels.tuning;
  const zeros = new Float32Array(layout.total);
  engine.writeState({ params: theta0, m: zeros, v: zeros, phi: theta0, outerM: zeros, step: 0 });
  engine.setFixedLr(cfg.lr);
  let s = 0;
  const warm = await engine.train(WARMUP, () => batches[s++]);
  const t0 = performance.now();
  const timed = await engine.train(TIMED, () => batches[s++]);
  const murmurMs = (performance.now() - t0) / TIMED;
  const murmurLosses = [...warm.losses, ...timed.losses];
  const dispatches = engine.dispatchesPerStep;
  engine.destroy();
  console.log(`${name}: murmur ${murmurMs.toFixed(1)} ms/step, ${dispatches} dispatches; losses ${murmurLosses.map((l) => l.toFixed(3)).join(' ')}`);

  // ---- PyTorch ----
  const dir = mkdtempSync(join(tmpdir(), 'murmur-torch-'));
  try {
    writeFileSync(join(dir, 'model.safetensors'), hfModelSafetensors(layout, theta0));
    const tokens = new Uint32Array(steps * 2 * B * T);
    batches.forEach((b, i) => { tokens.set(b.tokens, (2 * i) * B * T); tokens.set(b.targets, (2 * i + 1) * B * T); });
    writeFileSync(join(dir, 'batches.bin'), new Uint8Array(tokens.buffer));
    const decay = Object.fromEntries(layout.tensors.map((t) => [t.name, t.decay]));
    writeFileSync(join(dir, 'run.json'), JSON.stringify({ model, train: cfg, decay, warmup: WARMUP, timed: TIMED, modes: MODES }));
    const stdout = execFileSync(python, [script, dir], { encoding: 'utf8', maxBuffer: 16 << 20, stdio: ['ignore', 'pipe', 'inherit'] });
    for (const line of stdout.split('\n').filter((l) => l.startsWith('{'))) {
      const r = JSON.parse(line) as TorchResult;
      if (r.skipped !== undefined || r.ms_per_step === undefined || !r.losses) {
        skipped.push({ preset: name, mode: r.mode, reason: r.skipped ?? 'no result' });
        console.log(`${name}: torch ${r.mode} skipped: ${r.skipped}`);
        continue;
      }
      const gap = Math.abs(murmurLosses[10] - r.losses[10]) / r.losses[10];
      const row = {
        gpu: adapterName, driver, preset: name, tokens_per_step: B * T,
        murmur_ms: murmurMs, torch_ms: r.ms_per_step, torch_mode: r.mode, torch_device: r.device_name, torch_version: r.torch, torch_attention: r.attention,
        ratio: r.ms_per_step / murmurMs,
        murmur_tflops: flops / murmurMs / 1e9, torch_tflops: flops / r.ms_per_step / 1e9,
        loss_gap_after_10_steps: gap, murmur_dispatches: dispatches, steps: { warmup: WARMUP, timed: TIMED },
        note: software || r.device !== 'cuda'
          ? `harness check only: Murmur on ${adapterName}, PyTorch on ${r.device_name}; not a GPU comparison`
          : 'same GPU',
      };
      rows.push(row);
      console.log(`${name}: torch ${r.mode} ${r.ms_per_step.toFixed(1)} ms/step on ${r.device_name}; losses ${r.losses.map((l) => l.toFixed(3)).join(' ')}`);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
device.destroy();

const fmt = (x: number, d: number) => x.toFixed(d);
const head = ['preset', 'tokens', 'murmur ms', 'torch mode', 'torch ms', 'ratio', 'murmur TFLOPS', 'torch TFLOPS', 'loss gap @10'];
const cells = rows.map((r) => [String(r.preset), String(r.tokens_per_step), fmt(r.murmur_ms as number, 1), String(r.torch_mode), fmt(r.torch_ms as number, 1),
  `${fmt(r.ratio as number, 3)}x`, fmt(r.murmur_tflops as number, 4), fmt(r.torch_tflops as number, 4), (r.loss_gap_after_10_steps as number).toExponential(2)]);
const widths = head.map((h, i) => Math.max(h.length, ...cells.map((c) => c[i].length)));
const line = (c: string[]) => c.map((x, i) => (i === 0 ? x.padEnd(widths[i]) : x.padStart(widths[i]))).join('  ');
console.log(`\n${line(head)}`);
for (const c of cells) console.log(line(c));
if (software) console.log('(software adapter: these rows only prove the harness; the GPU rows come from scripts/device-run.sh on a GPU machine)');

mkdirSync(outDir, { recursive: true });
const out = join(outDir, 'torch.json');
writeFileSync(`${out}.tmp`, JSON.stringify({
  date: new Date().toISOString(), gpu: adapterName, driver, software, tuning: usedTuning, matmul_rates: rates, batch: B, rows, skipped,
}, null, 2) + '\n');
renameSync(`${out}.tmp`, out);
console.log(`wrote ${out}`);
