// CPU reference training-step benchmark: forward + backward + clip + AdamW (one CpuTrainer step)
// for the micro and tiny presets. Prints a table and writes bench/results/cpu.json.
//
// FLOPs per step: src/model/flops.ts, the one convention of every benchmark (attention over the full
// T x T, though the reference visits only the causal half), so GFLOPS compare across them.
import { writeFileSync, mkdirSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { preset, trainConfig, type PresetName } from '../src/model/config.ts';
import { buildLayout } from '../src/model/layout.ts';
import { Rng } from '../src/model/rng.ts';
import { CpuTrainer } from '../src/train/cpu-trainer.ts';
import { stepFlops } from '../src/model/flops.ts';

interface Row { preset: string; params: number; B: number; T: number; tokens: number; step_ms: number; gflops: number }

function batchFor(B: number, T: number, seed: number) {
  const rng = new Rng(seed, 3);
  const tokens = new Uint32Array(B * T), targets = new Uint32Array(B * T);
  for (let i = 0; i < B * T; i++) { tokens[i] = rng.int(256); targets[i] = rng.int(256); }
  return { B, T, tokens, targets };
}

function benchPreset(name: PresetName, B: number, warmup: number, steps: number): Row {
  const model = preset(name);
  const layout = buildLayout(model);
  const T = model.ctx;
  const cfg = trainConfig({ batch: B }, model);
  const trainer = new CpuTrainer(layout, cfg, undefined, 1);
  const batch = batchFor(B, T, 2);
  for (let i = 0; i < warmup; i++) trainer.trainStep(batch);
  const times: number[] = [];
  for (let i = 0; i < steps; i++) {
    const t0 = performance.now();
    trainer.trainStep(batch);
    times.push(performance.now() - t0);
  }
  times.sort((a, b) => a - b);
  const stepMs = times[Math.floor(times.length / 2)]!;
  const tokens = B * T;
  const flops = stepFlops(model, B, T);
  return { preset: name, params: layout.params, B, T, tokens, step_ms: round(stepMs, 2), gflops: round(flops / (stepMs * 1e6), 3) };
}

const round = (x: number, d: number) => Math.round(x * 10 ** d) / 10 ** d;

function main(): void {
  // Timings on a shared machine swing with its load: the load average is recorded beside them.
  const loadBefore = loadavg()[0]!;
  const rows = [benchPreset('micro', 8, 10, 30), benchPreset('tiny', 8, 3, 9)];
  console.log('CPU reference: one training step (forward + backward + clip + AdamW), median');
  console.log('FLOPs/step: src/model/flops.ts (matmuls forward and backward, attention over the full T x T)\n');
  console.log('preset   params      B    T  tokens   step ms   GFLOPS');
  for (const r of rows) {
    console.log(`${r.preset.padEnd(8)} ${String(r.params).padStart(8)} ${String(r.B).padStart(4)} ${String(r.T).padStart(4)} ${String(r.tokens).padStart(7)} ${r.step_ms.toFixed(2).padStart(9)} ${r.gflops.toFixed(3).padStart(8)}`);
  }
  const load = [loadBefore, loadavg()[0]!].map((x) => round(x, 2));
  console.log(`\n1-min load average before/after: ${load.join(' / ')} on ${cpus().length} cores (${cpus()[0]?.model ?? 'unknown CPU'})`);
  const out = join(dirname(fileURLToPath(import.meta.url)), 'results', 'cpu.json');
  mkdirSync(dirname(out), { recursive: true });
  const doc = {
    benchmark: 'cpu-reference-train-step',
    flops_formula: 'src/model/flops.ts stepFlops(model, B, T)',
    node: process.version, arch: process.arch, cpu: cpus()[0]?.model ?? 'unknown', cores: cpus().length,
    loadavg_1m_before_after: load, date: new Date().toISOString(),
    rows,
  };
  writeFileSync(out, JSON.stringify(doc, null, 2) + '\n');
  console.log(`\nwrote ${out}`);
}

main();
