// Murmur's f32 reference model and AdamW step against PyTorch (tests/fixtures/make_golden.py):
// the same GPT-2 micro weights and batch must give the same logits, loss, every parameter
// gradient, and the same losses over 10 clipped AdamW steps.
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { preset, trainConfig } from '../src/model/config.ts';
import { buildLayout } from '../src/model/layout.ts';
import { ReferenceGPT } from '../src/model/reference.ts';
import { CpuTrainer } from '../src/train/cpu-trainer.ts';
import { learningRate } from '../src/train/schedule.ts';
import { GOLDEN, GOLDEN_TRAIN } from './fixtures/dump_inputs.ts';

const fixtures = join(dirname(fileURLToPath(import.meta.url)), 'fixtures');
const REGEN = 'regenerate: npx tsx tests/fixtures/dump_inputs.ts && /usr/bin/python3 tests/fixtures/make_golden.py';

interface Inputs {
  B: number; T: number; total: number; lrs: number[]; tokens: number[]; targets: number[];
  train: { beta1: number; beta2: number; eps: number; weightDecay: number; gradClip: number };
  tensors: { name: string; shape: number[]; offset: number; size: number; decay: boolean }[];
}
interface Golden { loss: number; losses: number[]; logits: { offset: number; length: number }; grads: { offset: number; length: number } }

const inputs = JSON.parse(readFileSync(join(fixtures, 'gpt2-micro.inputs.json'), 'utf8')) as Inputs;
const golden = JSON.parse(readFileSync(join(fixtures, 'gpt2-micro.golden.json'), 'utf8')) as Golden;
const f32 = (file: string) => { const b = readFileSync(join(fixtures, file)); return new Float32Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength)); };
const params0 = f32('gpt2-micro.params.bin');
const goldBin = f32('gpt2-micro.golden.bin');
const goldLogits = goldBin.subarray(golden.logits.offset, golden.logits.offset + golden.logits.length);
const goldGrads = goldBin.subarray(golden.grads.offset, golden.grads.offset + golden.grads.length);

const model = preset(GOLDEN.preset);
const layout = buildLayout(model);
const cfg = trainConfig({ batch: GOLDEN.B, seqLen: GOLDEN.T, ...GOLDEN_TRAIN }, model);
const batch = { B: inputs.B, T: inputs.T, tokens: Uint32Array.from(inputs.tokens), targets: Uint32Array.from(inputs.targets) };

// Tolerances. PyTorch sums in float32 (blocked, vectorised); Murmur sums in float64 and rounds
// once, so the two differ by float32 rounding. Measured when the fixture was made (torch 1.13):
// loss 3e-9 relative, logits 2.4e-7 absolute (|logit| <= 0.64), gradients <= 4.6e-7 of each
// tensor's largest entry, step losses <= 1e-7 relative. Each bound leaves ~10x margin.
const LOSS_RTOL = 1e-5; // mean loss, relative
const LOGITS_ATOL = 2e-6; // max |a - b| over all (B, T, V) logits
const GRAD_RTOL = 5e-6; // per tensor: max |a - b| / max |b|
const STEP_LOSS_RTOL = 1e-6; // each of the 10 training losses, relative

describe('golden: Murmur f32 reference vs PyTorch (micro preset)', () => {
  it('the fixture was made from this layout, schedule and training config', () => {
    expect(inputs.total, REGEN).toBe(layout.total);
    expect(inputs.tensors, REGEN).toEqual(layout.tensors.map(({ name, shape, offset, size, decay }) => ({ name, shape, offset, size, decay })));
    expect(inputs.train, REGEN).toEqual({ beta1: cfg.beta1, beta2: cfg.beta2, eps: cfg.eps, weightDecay: cfg.weightDecay, gradClip: cfg.gradClip });
    expect(inputs.lrs, REGEN).toEqual(inputs.lrs.map((_, s) => learningRate(s, cfg)));
    expect(params0.length).toBe(layout.total);
  });

  const ref = new ReferenceGPT(layout, 'f32');
  const params = params0.slice();
  const grads = new Float32Array(layout.total);

  it('loss and logits match', () => {
    const loss = ref.forward(params, batch);
    expect(Math.abs(loss - golden.loss) / golden.loss).toBeLessThan(LOSS_RTOL);
    const logits = ref.logits();
    expect(logits.length).toBe(goldLogits.length);
    let worst = 0;
    for (let i = 0; i < logits.length; i++) worst = Math.max(worst, Math.abs(logits[i]! - goldLogits[i]!));
    expect(worst).toBeLessThan(LOGITS_ATOL);
  });

  it('every parameter gradient matches', () => {
    ref.forward(params, batch);
    ref.backward(params, grads);
    for (const t of layout.tensors) {
      let diff = 0, scale = 0;
      for (let i = t.offset; i < t.offset + t.size; i++) {
        diff = Math.max(diff, Math.abs(grads[i]! - goldGrads[i]!));
        scale = Math.max(scale, Math.abs(goldGrads[i]!));
      }
      expect(scale, `${t.name}: PyTorch gradient is all zero`).toBeGreaterThan(0);
      expect(diff / scale, `${t.name}: max |diff| ${diff} vs max |grad| ${scale}`).toBeLessThan(GRAD_RTOL);
    }
  });

  it('10 clipped AdamW steps give the same losses', () => {
    const trainer = new CpuTrainer(layout, cfg, params0);
    const losses = golden.losses.map(() => trainer.trainStep(batch));
    for (let s = 0; s < losses.length; s++) {
      expect(Math.abs(losses[s]! - golden.losses[s]!) / golden.losses[s]!, `step ${s}: ${losses[s]} vs ${golden.losses[s]}`).toBeLessThan(STEP_LOSS_RTOL);
    }
    expect(losses[9]!).toBeLessThan(losses[0]! - 0.3); // the comparison covers real progress
  });
});
