// Page side of `npm run bench:step`: Murmur's Trainer and a TF.js WebGPU model of the same
// architecture train in this one page on the same adapter; steps are timed alternately.
import * as tf from '@tensorflow/tfjs';
import '@tensorflow/tfjs-backend-webgpu';
import type { ModelConfig } from '../src/model/config.ts';
import { PRESETS, trainConfig } from '../src/model/config.ts';
import { initParams } from '../src/model/init.ts';
import { buildLayout } from '../src/model/layout.ts';
import { Rng } from '../src/model/rng.ts';
import { indexedDbStore } from '../src/gpu/autotune.ts';
import { optionalFeatures } from '../src/gpu/device.ts';
import type { Tuning } from '../src/gpu/kernels.ts';
import { Trainer } from '../src/worker/trainer.ts';
import { stepFlops } from '../src/model/flops.ts';
import { TfjsGPT } from './tfjs-gpt.ts';
import { profileModel, type ModelProfile } from './profile-core.ts';

export interface StepRow {
  model: string;
  params: number;
  tokens: number;
  murmur_ms: number;
  tfjs_ms: number | null;
  speedup: number | null;
  murmur_gflops: number;
  dispatches: number;
}

export interface BenchOptions { reps: number; warmup: number; tiny: boolean; autotune: boolean; profile: boolean }

/** The block's step in this page, per kernel (timestamp queries) and on the wall clock (bench:step --profile). */
export type PageProfile = ModelProfile;

/** One block step of a GpuEngine with `tuning` on its own device, profiled as bench:profile does in Node. */
async function profileBlock(block: ModelConfig, B: number, T: number, tuning: Tuning, steps: number): Promise<PageProfile> {
  const adapter = await navigator.gpu.requestAdapter();
  if (!adapter) throw new Error('--profile: no WebGPU adapter in the page');
  if (!adapter.features.has('timestamp-query')) throw new Error('--profile: this adapter has no timestamp-query feature (Chromium needs --enable-dawn-features=allow_unsafe_apis)');
  const device = await adapter.requestDevice({ label: 'step.profile', requiredFeatures: ['timestamp-query', ...optionalFeatures(adapter)] });
  try {
    return await profileModel(device, block, trainConfig({ batch: B, seqLen: T }, block), tuning, steps);
  } finally {
    device.destroy();
  }
}

const median = (xs: number[]) => { const s = [...xs].sort((a, b) => a - b); const m = s.length >> 1; return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2; };

function randomBytes(n: number, seed: number): Uint8Array {
  const rng = new Rng(seed, 3);
  return Uint8Array.from({ length: n }, () => rng.int(256));
}

async function murmurTrainer(model: ModelConfig, B: number, T: number, autotune: boolean) {
  const trainer = new Trainer({ tuningStore: indexedDbStore('murmur-bench') });
  const info = await trainer.init({ model, train: { batch: B, seqLen: T }, data: randomBytes(1 << 17, 1), readEvery: 1, autotune }, 1);
  return { trainer, dispatches: info.dispatchesPerStep, adapter: info.adapter, tuning: info.tuning };
}

async function timeMs(fn: () => Promise<unknown>): Promise<number> {
  const t0 = performance.now();
  await fn();
  return performance.now() - t0;
}

const bench = {
  async run(o: BenchOptions): Promise<{ adapter: string; tfjsBackend: string; tuning: Tuning; rows: StepRow[]; log: string[]; profile: PageProfile | null }> {
    const log: string[] = [];
    await tf.setBackend('webgpu');
    await tf.ready();
    const rows: StepRow[] = [];

    // 1. One transformer block, d=256, 4 heads, B x T = 4 x 128, vocab 256: Murmur vs TF.js.
    const block: ModelConfig = { vocab: 256, ctx: 128, layers: 1, d: 256, heads: 4 };
    const B = 4, T = 128;
    const m = await murmurTrainer(block, B, T, o.autotune);
    const tfm = new TfjsGPT(block, initParams(buildLayout(block), 1), T, trainConfig({}, block).lr);
    const rng = new Rng(2, 5);
    const tok = Int32Array.from({ length: B * T }, () => rng.int(256));
    const tgt = Int32Array.from({ length: B * T }, () => rng.int(256));
    for (let i = 0; i < o.warmup; i++) {
      log.push(`warm-up ${i}: murmur ${(await timeMs(() => m.trainer.train(1))).toFixed(0)} ms, tfjs ${(await timeMs(() => tfm.step(tok, tgt, B))).toFixed(0)} ms`);
    }
    const mt: number[] = [], tt: number[] = [];
    for (let i = 0; i < o.reps; i++) {
      // Alternate which goes first, so neither always runs on a warmer or cooler machine.
      if (i % 2 === 0) { mt.push(await timeMs(() => m.trainer.train(1))); tt.push(await timeMs(() => tfm.step(tok, tgt, B))); }
      else { tt.push(await timeMs(() => tfm.step(tok, tgt, B))); mt.push(await timeMs(() => m.trainer.train(1))); }
      log.push(`rep ${i}: murmur ${mt[i].toFixed(0)} ms, tfjs ${tt[i].toFixed(0)} ms`);
    }
    const layout = buildLayout(block);
    rows.push({
      model: 'block d=256 h=4 (1 layer)', params: layout.params, tokens: B * T, murmur_ms: median(mt), tfjs_ms: median(tt),
      speedup: median(tt) / median(mt), murmur_gflops: stepFlops(block, B, T) / median(mt) / 1e6, dispatches: m.dispatches,
    });
    tfm.dispose();
    m.trainer.dispose();
    const profile = o.profile ? await profileBlock(block, B, T, m.tuning, o.reps) : null;

    // 2. The tiny preset at its default batch, Murmur only.
    if (o.tiny) {
      const tiny = PRESETS.tiny;
      const tc = trainConfig({}, tiny);
      const mt2 = await murmurTrainer(tiny, tc.batch, tc.seqLen, o.autotune);
      for (let i = 0; i < o.warmup; i++) await mt2.trainer.train(1);
      const ts: number[] = [];
      for (let i = 0; i < o.reps; i++) ts.push(await timeMs(() => mt2.trainer.train(1)));
      log.push(`tiny: ${ts.map((t) => t.toFixed(0)).join(', ')} ms`);
      rows.push({
        model: 'tiny preset', params: buildLayout(tiny).params, tokens: tc.batch * tc.seqLen, murmur_ms: median(ts), tfjs_ms: null, speedup: null,
        murmur_gflops: stepFlops(tiny, tc.batch, tc.seqLen) / median(ts) / 1e6, dispatches: mt2.dispatches,
      });
      mt2.trainer.dispose();
    }
    return { adapter: m.adapter, tfjsBackend: tf.getBackend(), tuning: m.tuning, rows, log, profile };
  },
};

declare global {
  interface Window { bench: typeof bench }
}
window.bench = bench;
