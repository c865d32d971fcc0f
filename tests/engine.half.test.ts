// The GPU's f16-operand path (issue 17) against the CPU's (src/model/half.ts, ReferenceGPT and
// CpuTrainer with `half`): the kernels' rounding bit for bit, the attention kernels on rounded
// operands, whole training steps, dynamic loss scaling with its skipped steps, and the loss
// after 50 steps against the f32 path. SwiftShader has no `shader-f16`; half.wgsl rounds with
// f32 integer arithmetic, so the same kernels run here and on any GPU.
import { afterAll, describe, expect } from 'vitest';
import * as ref from '../src/model/reference.ts';
import { f16round, roundF16 } from '../src/model/half.ts';
import { preset, trainConfig } from '../src/model/config.ts';
import { initParams } from '../src/model/init.ts';
import { buildLayout } from '../src/model/layout.ts';
import { CpuTrainer } from '../src/train/cpu-trainer.ts';
import { DEFAULT_TUNING, Kernels } from '../src/gpu/kernels.ts';
import { matmul } from '../src/gpu/matmul.ts';
import { attentionBackward, attentionForward, attentionKind } from '../src/gpu/ops.ts';
import { GpuEngine } from '../src/gpu/engine.ts';
import { loadDefaultCorpus } from '../src/data/corpus.ts';
import { WindowSampler } from '../src/data/sampler.ts';
import type { Batch } from '../src/data/batch.ts';
import { emptyF32, gpuTest, readF32, uploadF32 } from './support/gpu.ts';
import { randomArray, relErr, runDispatches } from './support/engine.ts';

const owned: { destroy(): void }[] = [];
afterAll(() => { for (const o of owned) o.destroy(); });
const halfKernels = (device: GPUDevice, tuning = DEFAULT_TUNING) => {
  const k = new Kernels(device, tuning, { half: true });
  owned.push(k);
  return k;
};
/** -0 and 0 as one value: the kernels' sums start from +0. */
const plainZero = (a: ArrayLike<number>) => Array.from(a, (x) => (x === 0 ? 0 : x));

/** Values across every f16 exponent and past its range, ties included, and random ones. */
function roundingCases(): Float32Array {
  const fixed = [0, 1, -2, 1 / 3, 0.1, 65504, 65519, 65520, -65520, 1e6, -3e38, 1 + 2 ** -11, 1 + 3 * 2 ** -11,
    1 + 2 ** -11 + 2 ** -20, 2 ** -14, 2 ** -24, 2 ** -25, 3 * 2 ** -25, 1e-9, -1e-30];
  const r = randomArray(1000, 17);
  const exps = randomArray(1000, 18);
  const random = Array.from(r, (x, i) => x * 2 ** Math.round(exps[i]! * 25 - 5)); // 2^-30 .. 2^20
  return Float32Array.from([...fixed, ...random]);
}

describe('half.wgsl: operands rounded to f16 as the kernels read them', () => {
  const tunings = [
    { name: 'register blocks, vec4 loads', tuning: DEFAULT_TUNING },
    { name: 'register blocks 8 x 8, scalar loads', tuning: { ...DEFAULT_TUNING, matmul: { nn: { wgX: 4, wgY: 4, tm: 4 as const, vec4: false, cols: 8 as const }, nt: DEFAULT_TUNING.matmul.nt, tn: DEFAULT_TUNING.matmul.tn } } },
    { name: 'workgroup-memory tiles', tuning: { ...DEFAULT_TUNING, matmul: { nn: { wgX: 4, wgY: 2, tm: 8 as const, vec4: true, tile: true }, nt: DEFAULT_TUNING.matmul.nt, tn: DEFAULT_TUNING.matmul.tn } } },
  ];
  for (const { name, tuning } of tunings) {
    gpuTest(`${name}: A and B round to nearest, ties to even, past 65504 to infinity, as f16round`, async (device) => {
      const k = halfKernels(device, tuning);
      const x = roundingCases();
      const n = x.length;
      const want = plainZero(Array.from(x, f16round));
      // A: x as an n x 1 column times B = [1]; B: x as a 1 x n row after A = [1].
      const one = uploadF32(device, [1, 0, 0, 0]);
      const col = uploadF32(device, x), row = uploadF32(device, x);
      const cA = emptyF32(device, n), cB = emptyF32(device, n);
      await runDispatches(device, [
        matmul(k, { label: 't.half.a', mode: 'nn', M: n, N: 1, K: 1, a: { ref: col, ld: 1 }, b: { ref: one, ld: 1 }, c: { ref: cA, ld: 1 } }),
        matmul(k, { label: 't.half.b', mode: 'nn', M: 1, N: n, K: 1, a: { ref: one, ld: 1 }, b: { ref: row, ld: n }, c: { ref: cB, ld: n } }),
      ]);
      expect(plainZero(await readF32(device, cA, n))).toEqual(want);
      expect(plainZero(await readF32(device, cB, n))).toEqual(want);
      // Aligned operands (vec4 loads where the tuning has them): finite values, 4 x 4 identity.
      const finite = x.filter((v) => Math.abs(v) < 65504);
      const fin = finite.slice(0, finite.length - (finite.length % 4));
      const eye = new Float32Array(16);
      for (let i = 0; i < 4; i++) eye[i * 4 + i] = 1;
      const cV = emptyF32(device, fin.length);
      await runDispatches(device, [
        matmul(k, { label: 't.half.vec4', mode: 'nn', M: fin.length / 4, N: 4, K: 4, a: { ref: uploadF32(device, fin), ld: 4 }, b: { ref: uploadF32(device, eye), ld: 4 }, c: { ref: cV, ld: 4 } }),
      ]);
      expect(plainZero(await readF32(device, cV, fin.length))).toEqual(plainZero(Array.from(fin, f16round)));
    });
  }

  gpuTest('without HALF the same products read their operands as they are', async (device) => {
    const k = new Kernels(device);
    owned.push(k);
    const x = Float32Array.from([1 / 3, 0.1, 1 + 2 ** -11, 70000]);
    const c = emptyF32(device, 4);
    await runDispatches(device, [matmul(k, { label: 't.f32', mode: 'nn', M: 4, N: 1, K: 1, a: { ref: uploadF32(device, x), ld: 1 }, b: { ref: uploadF32(device, [1, 0, 0, 0]), ld: 1 }, c: { ref: c, ld: 1 } })]);
    expect(await readF32(device, c, 4)).toEqual(x);
  });

  for (const kind of ['rows', 'tiled', 'blocked'] as const) {
    gpuTest(`attention (${kind}): forward and backward on f16-rounded q, k, v and dO match the reference on rounded inputs`, async (device) => {
      const [B, T, C, NH] = [2, 19, 32, 2];
      const k = halfKernels(device, { ...DEFAULT_TUNING, attention: kind });
      expect(attentionKind(k, C / NH)).toBe(kind);
      const qkv = randomArray(B * T * 3 * C, 1, 2), dout = randomArray(B * T * C, 2);
      const g = {
        qkv: uploadF32(device, qkv), out: emptyF32(device, B * T * C), lse: emptyF32(device, B * NH * T),
        dout: uploadF32(device, dout), dqkv: emptyF32(device, B * T * 3 * C), D: emptyF32(device, B * NH * T),
      };
      await runDispatches(device, [
        attentionForward(k, 't.attn', g.out, g.lse, g.qkv, B, T, C, NH),
        ...attentionBackward(k, 't.attn.bwd', g.dqkv, g.D, g.lse, g.out, g.dout, g.qkv, B, T, C, NH),
      ]);
      const reference = (q: Float32Array, d: Float32Array) => {
        const out = new Float32Array(B * T * C), att = new Float32Array(B * NH * T * T), dqkv = new Float32Array(B * T * 3 * C);
        ref.attentionForward(out, new Float32Array(B * NH * T * T), att, q, B, T, C, NH);
        ref.attentionBackward(dqkv, new Float32Array(B * NH * T * T), new Float32Array(B * NH * T * T), d, q, att, B, T, C, NH);
        return { out, dqkv };
      };
      const rq = new Float32Array(qkv.length), rd = new Float32Array(dout.length);
      roundF16(rq, qkv);
      roundF16(rd, dout);
      const want = reference(rq, rd), unrounded = reference(qkv, dout);
      const out = await readF32(device, g.out, B * T * C), dqkv = await readF32(device, g.dqkv, B * T * 3 * C);
      expect(relErr(out, want.out)).toBeLessThan(1e-5);
      expect(relErr(dqkv, want.dqkv)).toBeLessThan(1e-4);
      // The rounding reached the kernels: the unrounded reference is further off than the tolerance.
      expect(relErr(out, unrounded.out)).toBeGreaterThan(1e-5);
      expect(relErr(dqkv, unrounded.dqkv)).toBeGreaterThan(1e-4);
    });
  }
});

describe('GpuEngine with f16 operands vs CpuTrainer with f16 operands on micro', () => {
  const model = preset('micro');
  const layout = buildLayout(model);
  const B = 4, T = 32;
  const corpus = loadDefaultCorpus();
  const batchesOf = (n: number, seed: number): Batch[] => {
    const s = new WindowSampler(corpus.train, { seed, replica: 0 });
    return Array.from({ length: n }, () => s.next(B, T));
  };
  const zeros = () => new Float32Array(layout.total);
  const gpuRun = async (device: GPUDevice, cfg: ReturnType<typeof trainConfig>, theta0: Float32Array, batches: Batch[], opts: { half?: boolean; lossScale?: number }) => {
    const e = new GpuEngine(device, { layout, train: cfg, B, T, readEvery: 10, ...opts });
    owned.push(e);
    e.writeState({ params: theta0, m: zeros(), v: zeros(), phi: theta0, outerM: zeros(), step: 0 });
    let s = 0;
    const stats = await e.train(batches.length, () => batches[s++]!);
    return { engine: e, losses: stats.losses, state: await e.readState(), scaling: await e.lossScaling() };
  };
  gpuTest('one step\'s gradient matches the CPU f16 gradient far closer than the f32 one', async (device) => {
    // Weights diverge after a few steps whichever way operands are rounded (AdamW turns any
    // perturbation of a tiny gradient into a step of lr), so the numerics are compared where
    // they act: the gradient of one backward pass, scaled by 2^16 on both sides.
    const cfg = trainConfig({ batch: B, seqLen: T }, model);
    const theta0 = initParams(layout, 3);
    const [batch] = batchesOf(1, 4);
    const e = new GpuEngine(device, { layout, train: cfg, B, T, half: true });
    owned.push(e);
    e.writeState({ params: theta0, m: zeros(), v: zeros(), phi: theta0, outerM: zeros(), step: 0 });
    e.enqueueStep(batch!, false);
    const gpu = (await e.readTraining(true)).grads!;
    const cpuGrad = (half: boolean) => {
      const m = new ref.ReferenceGPT(layout, 'f32', { half });
      const g = new Float32Array(layout.total);
      m.forward(theta0, batch!);
      m.backward(theta0, g, 2 ** 16);
      return g;
    };
    const toHalf = relErr(gpu, cpuGrad(true)), toF32 = relErr(gpu, cpuGrad(false));
    console.log(`[half] gradient: max |g_gpu16 - g_cpu16| / max |g| = ${toHalf.toExponential(2)}; against the f32 gradient ${toF32.toExponential(2)}`);
    expect(toHalf).toBeLessThan(1e-3);
    expect(toHalf).toBeLessThan(toF32 / 5);
  });

  gpuTest('20 steps: losses within 1e-3 of the CPU f16 run\'s, with no step skipped at the starting scale', async (device) => {
    const cfg = trainConfig({ batch: B, seqLen: T, lr: 3e-3, warmupSteps: 5, totalSteps: 100 }, model);
    const theta0 = initParams(layout, 3);
    const batches = batchesOf(20, 4);
    const cpuHalf = new CpuTrainer(layout, cfg, theta0, 0, { half: true });
    const wantHalf = batches.map((b) => cpuHalf.trainStep(b));
    const gpu = await gpuRun(device, cfg, theta0, batches, { half: true });
    for (let s = 0; s < batches.length; s++) {
      expect(Math.abs(gpu.losses[s]! - wantHalf[s]!) / wantHalf[s]!, `step ${s}: gpu ${gpu.losses[s]} cpu ${wantHalf[s]}`).toBeLessThan(1e-3);
    }
    expect(wantHalf[19]!).toBeLessThan(wantHalf[0]! - 0.3); // it learned
    expect(gpu.scaling).toEqual({ lossScale: 2 ** 16, skipped: 0 });
    expect(cpuHalf.skippedSteps).toBe(0);
  });

  gpuTest('a loss scale of 2^40 overflows f16: the same steps are skipped as on the CPU, weights untouched by them', async (device) => {
    const cfg = trainConfig({ batch: B, seqLen: T, lr: 3e-3, warmupSteps: 5, totalSteps: 100 }, model);
    const theta0 = initParams(layout, 5);
    const batches = batchesOf(30, 6);
    const first = await gpuRun(device, cfg, theta0, batches.slice(0, 1), { half: true, lossScale: 2 ** 40 });
    expect(first.scaling).toEqual({ lossScale: 2 ** 39, skipped: 1 });
    expect(first.state.params).toEqual(theta0);
    expect(first.state.m).toEqual(zeros());
    expect(first.state.step).toBe(1);

    const cpu = new CpuTrainer(layout, cfg, theta0, 0, { half: true, lossScale: 2 ** 40 });
    batches.forEach((b) => cpu.trainStep(b));
    const gpu = await gpuRun(device, cfg, theta0, batches, { half: true, lossScale: 2 ** 40 });
    console.log(`[half] 2^40 start: skipped gpu ${gpu.scaling.skipped}, cpu ${cpu.skippedSteps}; scale now 2^${Math.log2(gpu.scaling.lossScale)}`);
    expect(cpu.skippedSteps).toBeGreaterThan(0);
    // The same steps overflow (19 of 30 here). A scaled operand that lands within f32 rounding of
    // 65520 could tip one step either way on another CPU's SwiftShader, hence the one-step slack.
    expect(Math.abs(gpu.scaling.skipped - cpu.skippedSteps)).toBeLessThanOrEqual(1);
    expect(gpu.scaling.lossScale).toBe(2 ** (40 - gpu.scaling.skipped)); // no growth in 30 steps
    expect(gpu.state.step).toBe(30);
  });

  gpuTest('50 steps: the held-out loss is within 1% of the f32 path\'s', async (device) => {
    const cfg = trainConfig({ batch: B, seqLen: T, lr: 3e-3, warmupSteps: 5, totalSteps: 50 }, model);
    const theta0 = initParams(layout, 1);
    const batches = batchesOf(50, 4);
    const val = new WindowSampler(corpus.val, { seed: 5, replica: 0 });
    const held = Array.from({ length: 8 }, () => val.next(B, T));
    const f32 = await gpuRun(device, cfg, theta0, batches, {});
    const f16 = await gpuRun(device, cfg, theta0, batches, { half: true });
    const [a, b] = [await f32.engine.evaluate(held), await f16.engine.evaluate(held)];
    console.log(`[half] micro, 50 steps on the GPU: held-out loss f32 ${a.toFixed(6)}, f16 operands ${b.toFixed(6)}`);
    expect(f16.losses.slice(1)).not.toEqual(f32.losses.slice(1)); // the rounding reached the products
    expect(Math.abs(b - a) / a).toBeLessThan(0.01);
    expect(b).toBeLessThan(f16.losses[0]! - 1); // and it learned
  });

  gpuTest('refuses a bad loss scale or growth interval', async (device) => {
    const cfg = trainConfig({ batch: B, seqLen: T }, model);
    expect(() => new GpuEngine(device, { layout, train: cfg, B, T, half: true, lossScale: 0 })).toThrow(/lossScale must be a positive finite number/);
    expect(() => new GpuEngine(device, { layout, train: cfg, B, T, half: true, growthInterval: 1.5 })).toThrow(/growthInterval must be a positive integer/);
  });
});
