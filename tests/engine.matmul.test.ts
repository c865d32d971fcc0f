// matmul.wgsl against a float64 CPU product: every mode, epilogue and batching, on shapes that
// are not multiples of the 8x4 or 8x8 register blocks, on both the vec4 and the scalar load path.
// Tolerance: 1e-5 relative to the largest output (f32 sums of up to ~100 terms).
import { afterAll, describe, expect, vi } from 'vitest';
import { DEFAULT_TUNING, Kernels, writeArray, type MatmulMode, type Tuning } from '../src/gpu/kernels.ts';
import { matmul, matmulDispatches, splitOf, vec4Aligned, type MatmulSpec } from '../src/gpu/matmul.ts';
import { gpuTest, readF32, uploadF32 } from './support/gpu.ts';
import { randomArray, relErr, runDispatches } from './support/engine.ts';
import { matmulGeluForward } from '../src/gpu/ops.ts';

const TOL = 1e-5;
// Every case runs with both register-block heights (TM = 8 and 4) and widths (4 and 8 columns),
// several workgroup shapes, and (for aligned operands) both load widths; and on the workgroup-memory tiled kernels (tile:
// 128 x 128, 64 x 32 and 32 x 16 workgroup tiles, the last with scalar loads), whose
// tiles and 8-deep stages the shapes below cut at odd places; and tn with K split in 3 and 5.
const TUNINGS: Tuning[] = [
  DEFAULT_TUNING,
  { ...DEFAULT_TUNING, matmul: { nn: { wgX: 16, wgY: 4, tm: 4, vec4: true }, nt: { wgX: 4, wgY: 16, tm: 4, vec4: true }, tn: { wgX: 16, wgY: 4, tm: 4, vec4: true } } },
  { ...DEFAULT_TUNING, matmul: { nn: { wgX: 8, wgY: 8, tm: 8, vec4: false }, nt: { wgX: 8, wgY: 8, tm: 4, vec4: false }, tn: { wgX: 8, wgY: 8, tm: 8, vec4: false } } },
  { ...DEFAULT_TUNING, matmul: { nn: { wgX: 16, wgY: 16, tm: 8, vec4: true, tile: true }, nt: { wgX: 16, wgY: 16, tm: 8, vec4: true, tile: true }, tn: { wgX: 16, wgY: 16, tm: 8, vec4: true, tile: true } } },
  { ...DEFAULT_TUNING, matmul: { nn: { wgX: 8, wgY: 4, tm: 8, vec4: true, tile: true }, nt: { wgX: 4, wgY: 8, tm: 8, vec4: true, tile: true }, tn: { wgX: 8, wgY: 4, tm: 8, vec4: true, tile: true } } },
  { ...DEFAULT_TUNING, matmul: { nn: { wgX: 4, wgY: 2, tm: 8, vec4: false, tile: true }, nt: { wgX: 4, wgY: 2, tm: 8, vec4: false, tile: true }, tn: { wgX: 4, wgY: 2, tm: 8, vec4: false, tile: true } } },
  // 8 x 8 register blocks (cols 8), rows 8 and 4, vec4 and scalar loads.
  { ...DEFAULT_TUNING, matmul: { nn: { wgX: 16, wgY: 4, tm: 8, vec4: true, cols: 8 }, nt: { wgX: 8, wgY: 8, tm: 8, vec4: true, cols: 8 }, tn: { wgX: 8, wgY: 4, tm: 8, vec4: true, cols: 8 } } },
  { ...DEFAULT_TUNING, matmul: { nn: { wgX: 4, wgY: 4, tm: 4, vec4: false, cols: 8 }, nt: { wgX: 4, wgY: 8, tm: 4, vec4: false, cols: 8 }, tn: { wgX: 2, wgY: 8, tm: 4, vec4: false, cols: 8 } } },
  // Quads (A's loads shared across 4 adjacent invocations by quadBroadcast; the device has subgroups, see below):
  // 8 x 8 and 8 x 4 blocks, rows 8 and 4, vec4 and scalar loads, lanes past N and M.
  { ...DEFAULT_TUNING, matmul: { nn: { wgX: 8, wgY: 4, tm: 8, vec4: true, cols: 8, quad: true }, nt: { wgX: 16, wgY: 4, tm: 8, vec4: true, quad: true }, tn: { wgX: 8, wgY: 8, tm: 8, vec4: false, cols: 8, quad: true } } },
  { ...DEFAULT_TUNING, matmul: { nn: { wgX: 4, wgY: 4, tm: 4, vec4: false, quad: true }, nt: { wgX: 4, wgY: 8, tm: 4, vec4: false, cols: 8, quad: true }, tn: { wgX: 4, wgY: 4, tm: 4, vec4: true, cols: 8, quad: true } } },
  // 16-row quads (rows 8..15 from the second pair of broadcasts): 8 and 4 columns, vec4 and scalar loads.
  { ...DEFAULT_TUNING, matmul: { nn: { wgX: 8, wgY: 4, tm: 16, vec4: true, cols: 8, quad: true }, nt: { wgX: 4, wgY: 2, tm: 16, vec4: false, cols: 8, quad: true }, tn: { wgX: 16, wgY: 4, tm: 16, vec4: false, cols: 8, quad: true } } },
  { ...DEFAULT_TUNING, matmul: { nn: { wgX: 4, wgY: 2, tm: 16, vec4: false, quad: true }, nt: { wgX: 8, wgY: 4, tm: 16, vec4: true, quad: true }, tn: { wgX: 4, wgY: 4, tm: 16, vec4: true, quad: true } } },
  // Prefetched tiles (two stages in turn, the next one read into registers while this one is
  // multiplied): 1, 2 and 4 vec4s of each tile per invocation, vec4 and scalar loads, nn split
  // in 2, tn split in 3; and 16-deep stages (tk 16), plain and prefetched, tn split in 2.
  { ...DEFAULT_TUNING, matmul: { nn: { wgX: 16, wgY: 16, tm: 8, vec4: true, tile: true, prefetch: true }, nt: { wgX: 8, wgY: 4, tm: 8, vec4: false, tile: true, prefetch: true }, tn: { wgX: 4, wgY: 8, tm: 8, vec4: true, tile: true, prefetch: true, splitK: 3 } } },
  { ...DEFAULT_TUNING, matmul: { nn: { wgX: 4, wgY: 4, tm: 8, vec4: false, tile: true, prefetch: true, splitK: 2 }, nt: { wgX: 16, wgY: 8, tm: 8, vec4: true, tile: true, prefetch: true }, tn: { wgX: 16, wgY: 16, tm: 8, vec4: false, tile: true, prefetch: true } } },
  { ...DEFAULT_TUNING, matmul: { nn: { wgX: 8, wgY: 8, tm: 8, vec4: true, tile: true, prefetch: true, tk: 16 }, nt: { wgX: 16, wgY: 16, tm: 8, vec4: false, tile: true, tk: 16 }, tn: { wgX: 8, wgY: 8, tm: 8, vec4: false, tile: true, prefetch: true, tk: 16, splitK: 2 } } },
  // Tiles in groups of 2, 4, 8 or 16 rows (swizzle): the cases' 2 to 5 rows of tiles leave a
  // short last group or one group taller than the grid; with prefetch, tn split in 3, scalar loads.
  { ...DEFAULT_TUNING, matmul: { nn: { wgX: 4, wgY: 2, tm: 8, vec4: true, tile: true, swizzle: 2 }, nt: { wgX: 4, wgY: 4, tm: 8, vec4: false, tile: true, prefetch: true, swizzle: 4 }, tn: { wgX: 4, wgY: 2, tm: 8, vec4: true, tile: true, splitK: 3, swizzle: 2 } } },
  { ...DEFAULT_TUNING, matmul: { nn: { wgX: 8, wgY: 4, tm: 8, vec4: false, tile: true, swizzle: 16 }, nt: { wgX: 4, wgY: 2, tm: 8, vec4: true, tile: true, swizzle: 8 }, tn: { wgX: 8, wgY: 4, tm: 8, vec4: false, tile: true, prefetch: true, swizzle: 4 } } },
  // K split over 3 and 5 workgroups per tile (tn only; the others ignore splitK).
  { ...DEFAULT_TUNING, matmul: { nn: { wgX: 8, wgY: 8, tm: 8, vec4: true }, nt: { wgX: 8, wgY: 8, tm: 8, vec4: true }, tn: { wgX: 4, wgY: 2, tm: 8, vec4: true, tile: true, splitK: 3 } } },
  { ...DEFAULT_TUNING, matmul: { nn: { wgX: 8, wgY: 8, tm: 8, vec4: true }, nt: { wgX: 8, wgY: 8, tm: 8, vec4: true }, tn: { wgX: 16, wgY: 16, tm: 8, vec4: false, tile: true, splitK: 5 } } },
  // nn and nt with K in 2, 3 or 4 equal ranges as a batch of partial products (where K splits
  // into multiples of 4: K = 8, 16, 24 below), register and tiled, through splitSum's epilogues.
  { ...DEFAULT_TUNING, matmul: { nn: { wgX: 8, wgY: 8, tm: 8, vec4: true, splitK: 2 }, nt: { wgX: 4, wgY: 2, tm: 8, vec4: false, tile: true, splitK: 4 }, tn: DEFAULT_TUNING.matmul.tn } },
  { ...DEFAULT_TUNING, matmul: { nn: { wgX: 4, wgY: 2, tm: 8, vec4: true, tile: true, splitK: 3 }, nt: { wgX: 8, wgY: 8, tm: 4, vec4: true, splitK: 2 }, tn: DEFAULT_TUNING.matmul.tn } },
];
const kernels: Kernels[] = [];
const kernelsFor = (device: GPUDevice, t: number) => (kernels[t] ??= new Kernels(device, TUNINGS[t]));
afterAll(() => { for (const k of kernels) k?.destroy(); });

const geluGrad = (x: number) => {
  const s = Math.sqrt(2 / Math.PI), t = Math.tanh(s * (x + 0.044715 * x ** 3));
  return 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * s * (1 + 3 * 0.044715 * x * x);
};

interface Case { mode: MatmulMode; M: number; N: number; K: number; lda?: number; ldb?: number; bias?: boolean; accum?: boolean; epi?: 'residual' | 'geluGrad'; alpha?: number }

/** CPU: C (M, N) in row-major with ldc = N. A, B stored as the mode says with the given ld. */
function cpu(c: Case, A: Float32Array, B: Float32Array, lda: number, ldb: number, bias: Float32Array, R: Float32Array, C0: Float32Array): Float64Array {
  const out = new Float64Array(c.M * c.N);
  for (let i = 0; i < c.M; i++) for (let j = 0; j < c.N; j++) {
    let s = 0;
    for (let p = 0; p < c.K; p++) {
      const a = c.mode === 'tn' ? A[p * lda + i] : A[i * lda + p];
      const b = c.mode === 'nt' ? B[j * ldb + p] : B[p * ldb + j];
      s += a * b;
    }
    let v = (c.alpha ?? 1) * s;
    if (c.bias) v += bias[j];
    if (c.epi === 'residual') v += R[i * c.N + j];
    if (c.epi === 'geluGrad') v *= geluGrad(R[i * c.N + j]);
    if (c.accum) v += C0[i * c.N + j];
    out[i * c.N + j] = v;
  }
  return out;
}

async function check(device: GPUDevice, c: Case): Promise<{ err: number; vec4: boolean }> {
  const aRows = c.mode === 'tn' ? c.K : c.M, aCols = c.mode === 'tn' ? c.M : c.K;
  const bRows = c.mode === 'nt' ? c.N : c.K, bCols = c.mode === 'nt' ? c.K : c.N;
  const lda = c.lda ?? aCols, ldb = c.ldb ?? bCols;
  const A = randomArray(aRows * lda, 1), B = randomArray(bRows * ldb, 2);
  const bias = randomArray(c.N, 3), R = randomArray(c.M * c.N, 4, 2), C0 = randomArray(c.M * c.N, 5);
  const bufs = [uploadF32(device, A), uploadF32(device, B), uploadF32(device, bias), uploadF32(device, R), uploadF32(device, C0)];
  const spec: MatmulSpec = {
    label: 'test.matmul', mode: c.mode, M: c.M, N: c.N, K: c.K,
    a: { ref: bufs[0], ld: lda }, b: { ref: bufs[1], ld: ldb }, c: { ref: bufs[4], ld: c.N },
    bias: c.bias ? { ref: bufs[2] } : undefined,
    epilogue: c.epi ? { kind: c.epi, ref: bufs[3], ld: c.N } : undefined,
    accumulate: c.accum, alpha: c.alpha,
  };
  const want = cpu(c, A, B, lda, ldb, bias, R, C0);
  let err = 0;
  for (let t = 0; t < TUNINGS.length; t++) {
    writeArray(device.queue, bufs[4], C0); // accumulate starts from the same C each time
    await runDispatches(device, matmulDispatches(kernelsFor(device, t), spec));
    err = Math.max(err, relErr(await readF32(device, bufs[4], c.M * c.N), want));
  }
  return { err, vec4: vec4Aligned(spec) };
}

describe('matmul.wgsl', () => {
  gpuTest('the test device has subgroups, so the quad tunings below run their quad kernels', async (device) => {
    // Debian's chromium SwiftShader (and Dawn on any recent GPU driver) has the feature; without
    // it the quad tunings would silently test the plain kernels twice.
    expect(device.features.has('subgroups'), 'this adapter lacks the WebGPU "subgroups" feature: install Debian\'s chromium (SwiftShader 5+) or update the GPU driver').toBe(true);
    expect(kernelsFor(device, 0).quads).toBe(true);
  });
  const modes: MatmulMode[] = ['nn', 'nt', 'tn'];
  for (const mode of modes) {
    gpuTest(`${mode}: aligned shapes take the vec4 path and match`, async (device) => {
      const r = await check(device, { mode, M: 16, N: 32, K: 24 });
      expect(r.vec4).toBe(true);
      expect(r.err).toBeLessThan(TOL);
    });
    gpuTest(`${mode}: M, N, K not multiples of the block or of 4 (scalar path)`, async (device) => {
      const r = await check(device, { mode, M: 13, N: 7, K: 5 });
      expect(r.vec4).toBe(false);
      expect(r.err).toBeLessThan(TOL);
    });
    gpuTest(`${mode}: several tiles and stages, every edge ragged`, async (device) => {
      expect((await check(device, { mode, M: 70, N: 45, K: 37 })).err).toBeLessThan(TOL);
      const r = await check(device, { mode, M: 67, N: 134, K: 42, lda: mode === 'tn' ? 68 : 44, ldb: mode === 'nt' ? 44 : 136 });
      expect(r.vec4).toBe(true);
      expect(r.err).toBeLessThan(TOL);
    });
    gpuTest(`${mode}: one row, one column, K = 1`, async (device) => {
      expect((await check(device, { mode, M: 1, N: 1, K: 1 })).err).toBeLessThan(TOL);
    });
    gpuTest(`${mode}: vec4 path with K not a multiple of 4 and M, N ragged`, async (device) => {
      const r = await check(device, { mode, M: 9, N: 12, K: 13, lda: mode === 'tn' ? 12 : 16, ldb: mode === 'nt' ? 16 : 12 });
      expect(r.vec4).toBe(true);
      expect(r.err).toBeLessThan(TOL);
    });
  }
  gpuTest('bias + residual epilogue (forward with the residual add fused)', async (device) => {
    expect((await check(device, { mode: 'nn', M: 11, N: 20, K: 16, bias: true, epi: 'residual' })).err).toBeLessThan(TOL);
  });
  gpuTest("geluGrad epilogue (dx = dy W^T * gelu'(x))", async (device) => {
    expect((await check(device, { mode: 'nt', M: 10, N: 16, K: 8, epi: 'geluGrad' })).err).toBeLessThan(TOL);
  });
  gpuTest('accumulate (dW += x^T dy) and alpha', async (device) => {
    expect((await check(device, { mode: 'tn', M: 12, N: 8, K: 21, accum: true, alpha: 0.25 })).err).toBeLessThan(TOL);
  });
  gpuTest('alpha, bias and accumulate together on nn and nt, split and whole', async (device) => {
    for (const mode of ['nn', 'nt'] as const) {
      expect((await check(device, { mode, M: 12, N: 8, K: 24, accum: true, alpha: 0.25, bias: true })).err).toBeLessThan(TOL);
    }
  });
  gpuTest('nn and nt split K as a batch of equal ranges, summed through the gelu epilogue (its pre-activation too)', async (device) => {
    const [M, K, N] = [10, 24, 12];
    const inp = randomArray(M * K, 1), w = randomArray(K * N, 2), b = randomArray(N, 3);
    const run = async (t: number) => {
      const g = { inp: uploadF32(device, inp), w: uploadF32(device, w), b: uploadF32(device, b), out: uploadF32(device, new Float32Array(M * N)), pre: uploadF32(device, new Float32Array(M * N)) };
      const ds = matmulGeluForward(kernelsFor(device, t), 'test.gelu', g.out, g.pre, g.inp, g.w, g.b, M, K, N);
      await runDispatches(device, ds);
      return { labels: ds.map((d) => d.label), out: await readF32(device, g.out, M * N), pre: await readF32(device, g.pre, M * N) };
    };
    const whole = await run(0);
    expect(whole.labels).toEqual(['test.gelu']);
    for (const t of [TUNINGS.length - 2, TUNINGS.length - 1]) {
      const split = await run(t);
      expect(split.labels).toEqual(['test.gelu.split', 'test.gelu.splitSum']);
      expect(relErr(split.pre, whole.pre)).toBeLessThan(TOL);
      expect(relErr(split.out, whole.out)).toBeLessThan(TOL);
    }
  });

  gpuTest('tn with the bias gradient riding along (dW += x^T dy, db += column sums of dy)', async (device) => {
    for (const [M, N, K] of [[12, 8, 21], [5, 7, 3], [16, 32, 9], [40, 36, 29]]) {
      const A = randomArray(K * M, 1), B = randomArray(K * N, 2), C0 = randomArray(M * N, 3), db0 = randomArray(N, 4);
      const want = cpu({ mode: 'tn', M, N, K, accum: true }, A, B, M, N, new Float32Array(N), new Float32Array(M * N), C0);
      const wantDb = Float64Array.from(db0);
      for (let k = 0; k < K; k++) for (let j = 0; j < N; j++) wantDb[j] += B[k * N + j];
      for (let t = 0; t < TUNINGS.length; t++) {
        const gA = uploadF32(device, A), gB = uploadF32(device, B), gC = uploadF32(device, C0), gDb = uploadF32(device, db0);
        await runDispatches(device, matmulDispatches(kernelsFor(device, t), {
          label: 'test.tn.bias', mode: 'tn', M, N, K, accumulate: true,
          a: { ref: gA, ld: M }, b: { ref: gB, ld: N }, c: { ref: gC, ld: N }, biasGrad: { ref: gDb },
        }));
        expect(relErr(await readF32(device, gC, M * N), want)).toBeLessThan(TOL);
        expect(relErr(await readF32(device, gDb, N), wantDb)).toBeLessThan(TOL);
      }
    }
  });

  gpuTest('batched heads: per-(b, h) offsets into interleaved qkv', async (device) => {
    // Q K^T for B=2, NH=3, T=5, hs=4 out of qkv (B, T, 3C) with C = 12.
    const B = 2, NH = 3, T = 5, hs = 4, C = NH * hs, ld = 8;
    const qkv = randomArray(B * T * 3 * C, 7);
    const bq = uploadF32(device, qkv);
    const head = (part: number) => ({ ref: bq, ld: 3 * C, off: part * C, outer: T * 3 * C, inner: hs });
    for (let t = 0; t < TUNINGS.length; t++) {
    const bo = uploadF32(device, new Float32Array(B * NH * T * ld));
    await runDispatches(device, [matmul(kernelsFor(device, t), {
      label: 'test.qk', mode: 'nt', M: T, N: T, K: hs, batch: { count: B * NH, inner: NH }, alpha: 0.5,
      a: head(0), b: head(1), c: { ref: bo, ld, outer: NH * T * ld, inner: T * ld },
    })]);
    const got = await readF32(device, bo, B * NH * T * ld);
    const want = new Float64Array(B * NH * T * ld);
    const gotValid = new Float64Array(want.length);
    for (let b = 0; b < B; b++) for (let h = 0; h < NH; h++) for (let t = 0; t < T; t++) for (let s = 0; s < T; s++) {
      let dot = 0;
      for (let i = 0; i < hs; i++) dot += qkv[(b * T + t) * 3 * C + h * hs + i] * qkv[(b * T + s) * 3 * C + C + h * hs + i];
      const o = ((b * NH + h) * T + t) * ld + s;
      want[o] = 0.5 * dot;
      gotValid[o] = got[o];
    }
    expect(relErr(gotValid, want)).toBeLessThan(TOL);
    }
  });

  gpuTest('a K split is two dispatches (partial products, then their sum): tiled tn, and nn and nt where K splits evenly', async (device) => {
    const buf = uploadF32(device, new Float32Array(64));
    const spec = (mode: MatmulMode): MatmulSpec => ({ label: `test.split.${mode}`, mode, M: 4, N: 4, K: 40, a: { ref: buf, ld: 4 }, b: { ref: buf, ld: 4 }, c: { ref: buf, ld: 4 } });
    const t = TUNINGS.length - 4;
    expect(matmulDispatches(kernelsFor(device, t), spec('tn')).map((d) => d.label)).toEqual(['test.split.tn.split', 'test.split.tn.splitSum']);
    expect(matmulDispatches(kernelsFor(device, t), spec('nn'))).toHaveLength(1);
    expect(matmulDispatches(kernelsFor(device, TUNINGS.length - 2), spec('nn')).map((d) => d.label)).toEqual(['test.split.nn.split', 'test.split.nn.splitSum']);
    // nn, nt: equal ranges of a multiple of 4 (K = 40: 2 of 20, not 4 of 10), no bias gradient, no batch.
    const reg = { wgX: 8, wgY: 8, tm: 8 as const, vec4: true };
    expect(splitOf(spec('nn'), { ...reg, splitK: 2 })).toBe(2);
    expect(splitOf(spec('nt'), { ...reg, splitK: 5 })).toBe(5);
    expect(splitOf(spec('nt'), { ...reg, splitK: 4 })).toBe(1);
    expect(splitOf({ ...spec('nn'), batch: { count: 2, inner: 1 } }, { ...reg, splitK: 2 })).toBe(1);
    expect(splitOf(spec('tn'), { ...reg, splitK: 2 })).toBe(1);
    // No more ranges than 8-deep stages; none with an epilogue or a batch.
    const tile = { wgX: 4, wgY: 2, tm: 8 as const, vec4: true, tile: true, splitK: 16 };
    expect(splitOf({ ...spec('tn'), K: 17 }, tile)).toBe(3);
    expect(splitOf({ ...spec('tn'), batch: { count: 2, inner: 1 } }, tile)).toBe(1);
    expect(splitOf(spec('tn'), { ...tile, tile: false })).toBe(1);
    expect(() => splitOf(spec('tn'), { ...tile, splitK: 17 })).toThrow(/test\.split\.tn: splitK must be an integer in 1\.\.16/);
  });

  gpuTest('a split capped by the binding size keeps equal ranges of K', async (device) => {
    // A device whose storage binding holds 3 slabs of this 4 x 4 product: 5 ranges of K = 40
    // become 2, not 3 (40 / 3 is no range), and the product is still right.
    const limits = new Proxy(device.limits, { get: (t, p) => (p === 'maxStorageBufferBindingSize' ? 3 * 16 * 4 : Reflect.get(t, p)) });
    const small = new Proxy(device, { get: (t, p) => (p === 'limits' ? limits : ((v) => (typeof v === 'function' ? v.bind(t) : v))(Reflect.get(t, p))) });
    const k = new Kernels(small, { ...DEFAULT_TUNING, matmul: { ...DEFAULT_TUNING.matmul, nn: { ...DEFAULT_TUNING.matmul.nn, splitK: 5 } } });
    try {
      const A = randomArray(4 * 40, 1), B = randomArray(40 * 4, 2);
      const g = { a: uploadF32(device, A), b: uploadF32(device, B), c: uploadF32(device, new Float32Array(16)) };
      const spec: MatmulSpec = { label: 'test.capped', mode: 'nn', M: 4, N: 4, K: 40, a: { ref: g.a, ld: 40 }, b: { ref: g.b, ld: 4 }, c: { ref: g.c, ld: 4 } };
      const ds = matmulDispatches(k, spec);
      expect(ds.map((d) => d.label)).toEqual(['test.capped.split', 'test.capped.splitSum']);
      expect(ds[0].workgroups[2]).toBe(2);
      await runDispatches(device, ds);
      expect(relErr(await readF32(device, g.c, 16), cpu({ mode: 'nn', M: 4, N: 4, K: 40 }, A, B, 40, 4, new Float32Array(4), new Float32Array(16), new Float32Array(16)))).toBeLessThan(TOL);
    } finally {
      k.destroy();
    }
  });

  gpuTest('a tiled shape\'s stage depth and prefetch reach the kernel as TK and PREFETCH', async (device) => {
    const t = TUNINGS.findIndex((x) => x.matmul.nn.tk === 16);
    const k = kernelsFor(device, t);
    const seen = vi.spyOn(k, 'pipeline');
    const buf = uploadF32(device, new Float32Array(64));
    const spec = (mode: MatmulMode): MatmulSpec => ({ label: `test.tk.${mode}`, mode, M: 8, N: 8, K: 8, a: { ref: buf, ld: 8 }, b: { ref: buf, ld: 8 }, c: { ref: uploadF32(device, new Float32Array(64)), ld: 8 } });
    for (const mode of ['nn', 'nt'] as const) matmul(k, spec(mode));
    expect(seen.mock.calls.map(([, entry, c]) => [entry, c?.TK, c?.PREFETCH])).toEqual([['nnTile', 16, true], ['ntTile', 16, false]]);
    seen.mockRestore();
  });

  gpuTest('a tiled shape\'s tile order reaches the kernel as SWIZZLE (0 without one)', async (device) => {
    const buf = uploadF32(device, new Float32Array(64));
    const spec = (mode: MatmulMode): MatmulSpec => ({ label: `test.swizzle.${mode}`, mode, M: 8, N: 8, K: 8, a: { ref: buf, ld: 8 }, b: { ref: buf, ld: 8 }, c: { ref: uploadF32(device, new Float32Array(64)), ld: 8 } });
    const seen: unknown[][] = [];
    for (const t of [TUNINGS.findIndex((x) => x.matmul.nn.swizzle === 2), TUNINGS.findIndex((x) => x.matmul.nn.tile && x.matmul.nt.tile && x.matmul.tn.tile && !x.matmul.nn.swizzle)]) {
      const k = kernelsFor(device, t);
      const spy = vi.spyOn(k, 'pipeline');
      for (const mode of ['nn', 'nt', 'tn'] as const) matmul(k, spec(mode));
      seen.push(...spy.mock.calls.map(([, entry, c]) => [entry, c?.SWIZZLE]));
      spy.mockRestore();
    }
    expect(seen).toEqual([['nnTile', 2], ['ntTile', 4], ['tnTile', 2], ['nnTile', 0], ['ntTile', 0], ['tnTile', 0]]);
  });

  gpuTest('a tiled shape the kernel cannot run is refused by name', async (device) => {
    const buf = uploadF32(device, new Float32Array(16));
    const spec: MatmulSpec = { label: 'test.badtile', mode: 'nn', M: 4, N: 4, K: 4, a: { ref: buf, ld: 4 }, b: { ref: buf, ld: 4 }, c: { ref: buf, ld: 4 } };
    expect(() => matmul(kernelsFor(device, 0), spec, { wgX: 32, wgY: 8, tm: 8, vec4: true, tile: true })).toThrow(/test\.badtile: a tiled matmul needs/);
    expect(() => matmul(kernelsFor(device, 0), spec, { wgX: 8, wgY: 3, tm: 8, vec4: true, tile: true })).toThrow(/even wgY/);
    expect(() => matmul(kernelsFor(device, 0), spec, { wgX: 8, wgY: 8, tm: 8, vec4: true, tile: true, cols: 8 })).toThrow(/test\.badtile: cols 8 is a register-block shape/);
    expect(() => matmul(kernelsFor(device, 0), spec, { wgX: 8, wgY: 8, tm: 8, vec4: true, cols: 6 as 8 })).toThrow(/cols must be 4 or 8/);
    expect(() => matmul(kernelsFor(device, 0), spec, { wgX: 8, wgY: 8, tm: 8, vec4: true, prefetch: true })).toThrow(/test\.badtile: prefetch double-buffers a tiled matmul's stages: it needs tile/);
    expect(() => matmul(kernelsFor(device, 0), spec, { wgX: 8, wgY: 2, tm: 8, vec4: true, tile: true, prefetch: true })).toThrow(/wgX, wgY of 4, 8 or 16/);
    expect(() => matmul(kernelsFor(device, 0), spec, { wgX: 16, wgY: 16, tm: 8, vec4: true, tile: true, prefetch: true, tk: 16 })).toThrow(/of 8 with tk 16/);
    expect(() => matmul(kernelsFor(device, 0), spec, { wgX: 8, wgY: 8, tm: 8, vec4: true, tk: 16 })).toThrow(/test\.badtile: tk is a tiled matmul's stage depth, 8 or 16: it needs tile/);
    expect(() => matmul(kernelsFor(device, 0), spec, { wgX: 8, wgY: 8, tm: 8, vec4: true, swizzle: 8 })).toThrow(/test\.badtile: swizzle orders a tiled matmul's workgroups in groups of 2, 4, 8 or 16 rows of tiles: it needs tile/);
    expect(() => matmul(kernelsFor(device, 0), spec, { wgX: 8, wgY: 8, tm: 8, vec4: true, tile: true, swizzle: 3 as 2 })).toThrow(/groups of 2, 4, 8 or 16 rows/);
  });
});
