// Every WGSL kernel of the model against the CPU reference (src/model/reference.ts) on random
// inputs, including awkward shapes: B = 1, T not a multiple of the 8-row matmul block, and
// widths that are not multiples of 4 (which take matmul's scalar-load path).
// Tolerances (max |gpu - ref| / max |ref|), stated per kernel:
//   encoder fwd 1e-6 (one add), encoder bwd 1e-5, layernorm fwd 1e-5, layernorm bwd 1e-4
//   (two reductions), matmul fwd/bwd 1e-5 (+ GELU 1e-5), attention fwd 1e-5, attention bwd 1e-4,
//   softmax + cross-entropy fwd/bwd 1e-5.
import { afterAll, describe, expect, it } from 'vitest';
import * as ref from '../src/model/reference.ts';
import { DEFAULT_TUNING, Kernels } from '../src/gpu/kernels.ts';
import { STEP_STATE_LOSS_SCALE, STEP_STATE_WORDS } from '../src/gpu/state.ts';
import {
  ATT_TILED_MAX_HEAD, attentionBackward, attentionForward, attentionKind, attentionQuads, attentionTiled, crossentropy, encoderBackward, encoderForward,
  layernormBackward, layernormForward, layernormScratchFloats, layernormWide, matmulBackward, matmulForward, matmulGeluForward, tokenIndex,
} from '../src/gpu/ops.ts';
import { emptyF32, gpuTest, readF32, uploadF32, uploadU32 } from './support/gpu.ts';
import { randomArray, relErr, runDispatches } from './support/engine.ts';

let kernels: Kernels | undefined;
const K = (device: GPUDevice) => (kernels ??= new Kernels(device));
const Kernels0 = K;
afterAll(() => kernels?.destroy());

const tokensFor = (n: number, V: number, seed: number) => Uint32Array.from(randomArray(n, seed), (x) => Math.floor(((x + 1) / 2) * V) % V);

describe('tokenIndex (host side of the embedding gradient)', () => {
  it('counting-sorts positions by token id, ascending within a token', () => {
    const tokens = Uint32Array.from([3, 1, 3, 0, 1, 3]);
    const idx = tokenIndex(new Uint32Array(5 + 6), tokens, 4);
    expect(Array.from(idx.subarray(0, 5))).toEqual([0, 1, 3, 3, 6]);
    expect(Array.from(idx.subarray(5))).toEqual([3, 1, 4, 0, 2, 5]);
    expect(() => tokenIndex(new Uint32Array(11), Uint32Array.from([0, 0, 0, 0, 0, 9]), 4)).toThrow(/token 9 at position 5 is outside the vocabulary/);
  });
});

describe('encoder', () => {
  for (const [B, T, C, V] of [[2, 5, 12, 11], [1, 3, 6, 7], [3, 9, 32, 256]]) {
    gpuTest(`forward and backward B=${B} T=${T} C=${C} V=${V}`, async (device) => {
      const tokens = tokensFor(B * T, V, 1), wte = randomArray(V * C, 2), wpe = randomArray(T * C, 3), dout = randomArray(B * T * C, 4);
      const gTok = uploadU32(device, tokens), gWte = uploadF32(device, wte), gWpe = uploadF32(device, wpe), gOut = emptyF32(device, B * T * C);
      const dwte0 = randomArray(V * C, 5), dwpe0 = randomArray(T * C, 6);
      const gDout = uploadF32(device, dout), gDwte = uploadF32(device, dwte0), gDwpe = uploadF32(device, dwpe0);
      const gIndex = uploadU32(device, tokenIndex(new Uint32Array(V + 1 + B * T), tokens, V));
      await runDispatches(device, [
        encoderForward(K(device), 't.enc', gOut, gTok, gWte, gWpe, B, T, C),
        ...encoderBackward(K(device), 't.enc.bwd', gDwte, gDwpe, gDout, gIndex, B, T, C, V),
      ]);
      const out = new Float32Array(B * T * C);
      ref.encoderForward(out, tokens, wte, wpe, B, T, C);
      const dwte = dwte0.slice(), dwpe = dwpe0.slice();
      ref.encoderBackward(dwte, dwpe, dout, tokens, B, T, C);
      expect(relErr(await readF32(device, gOut, B * T * C), out)).toBeLessThan(1e-6);
      expect(relErr(await readF32(device, gDwte, V * C), dwte)).toBeLessThan(1e-5);
      expect(relErr(await readF32(device, gDwpe, T * C), dwpe)).toBeLessThan(1e-5);
    });
  }
});

let wideKernels: Kernels | undefined;
afterAll(() => wideKernels?.destroy());
const KW = (device: GPUDevice) => (wideKernels ??= new Kernels(device, { ...DEFAULT_TUNING, layernorm: 'wide' }));

describe('layernorm', () => {
  // rows: an invocation per row; wide: a workgroup of LN_WIDE_WG per row (C = 300 gives some
  // invocations 3 channels and some 2; C = 3 leaves most of the workgroup idle).
  for (const [kind, N, C] of [['rows', 7, 10], ['rows', 1, 3], ['rows', 33, 32], ['rows', 200, 12], ['wide', 7, 10], ['wide', 1, 3], ['wide', 33, 32], ['wide', 200, 12], ['wide', 9, 300], ['wide', 70, 768]] as const) {
    gpuTest(`${kind}: forward and backward N=${N} C=${C} (dinp +=, dweight/dbias +=)`, async (device) => {
      const k = kind === 'wide' ? KW(device) : K(device);
      expect(layernormWide(k)).toBe(kind === 'wide');
      const inp = randomArray(N * C, 1, 3), w = randomArray(C, 2), b = randomArray(C, 3), dout = randomArray(N * C, 4);
      const dinp0 = randomArray(N * C, 5), dw0 = randomArray(C, 6), db0 = randomArray(C, 7);
      const g = {
        inp: uploadF32(device, inp), w: uploadF32(device, w), b: uploadF32(device, b), out: emptyF32(device, N * C),
        mean: emptyF32(device, N), rstd: emptyF32(device, N), dout: uploadF32(device, dout),
        dinp: uploadF32(device, dinp0), dw: uploadF32(device, dw0), db: uploadF32(device, db0),
        scratch: emptyF32(device, layernormScratchFloats(N, C)),
      };
      await runDispatches(device, [
        layernormForward(k, 't.ln', g.out, g.mean, g.rstd, g.inp, g.w, g.b, N, C),
        ...layernormBackward(k, 't.ln.bwd', g.dinp, g.dw, g.db, g.dout, g.inp, g.w, g.mean, g.rstd, g.scratch, N, C),
      ]);
      const out = new Float32Array(N * C), mean = new Float32Array(N), rstd = new Float32Array(N);
      ref.layernormForward(out, mean, rstd, inp, w, b, N, C);
      const dinp = new Float32Array(N * C), dw = dw0.slice(), db = db0.slice();
      ref.layernormBackward(dinp, dw, db, dout, inp, w, mean, rstd, N, C);
      for (let i = 0; i < dinp.length; i++) dinp[i] += dinp0[i]; // the GPU kernel adds into the residual gradient
      expect(relErr(await readF32(device, g.out, N * C), out)).toBeLessThan(1e-5);
      expect(relErr(await readF32(device, g.mean, N), mean)).toBeLessThan(1e-5);
      expect(relErr(await readF32(device, g.rstd, N), rstd)).toBeLessThan(1e-5);
      expect(relErr(await readF32(device, g.dinp, N * C), dinp)).toBeLessThan(1e-4);
      expect(relErr(await readF32(device, g.dw, C), dw)).toBeLessThan(1e-4);
      expect(relErr(await readF32(device, g.db, C), db)).toBeLessThan(1e-4);
    });
  }
});

describe('matmul forward / backward (y = x W + b, W stored (in, out))', () => {
  for (const [N, C, OC] of [[7, 10, 6], [1, 4, 12], [33, 32, 128], [45, 30, 90]]) {
    gpuTest(`N=${N} C=${C} OC=${OC}: forward with residual, backward with and without GELU`, async (device) => {
      const inp = randomArray(N * C, 1), w = randomArray(C * OC, 2), b = randomArray(OC, 3), res = randomArray(N * OC, 4);
      const dout = randomArray(N * OC, 5), dw0 = randomArray(C * OC, 6), db0 = randomArray(OC, 7);
      const g = {
        inp: uploadF32(device, inp), w: uploadF32(device, w), b: uploadF32(device, b), res: uploadF32(device, res),
        out: emptyF32(device, N * OC), dout: uploadF32(device, dout), dinp: emptyF32(device, N * C), dinpGelu: emptyF32(device, N * C),
        dw: uploadF32(device, dw0), db: uploadF32(device, db0), dw2: uploadF32(device, dw0),
      };
      await runDispatches(device, [
        ...matmulForward(K(device), 't.mm', g.out, g.inp, g.w, g.b, N, C, OC, g.res),
        ...matmulBackward(K(device), 't.mm.bwd', g.dinp, g.dw, g.db, g.dout, g.inp, g.w, N, C, OC),
        // the GELU-fused variant: inp plays the pre-activation x and also the GELU output
        ...matmulBackward(K(device), 't.mm.bwd.gelu', g.dinpGelu, g.dw2, null, g.dout, g.inp, g.w, N, C, OC, g.inp),
      ]);
      const out = new Float32Array(N * OC);
      ref.matmulForward(out, inp, w, b, N, C, OC);
      ref.residualForward(out, out, res, N * OC);
      const dinp = new Float32Array(N * C), dw = dw0.slice(), db = db0.slice();
      ref.matmulBackward(dinp, dw, db, dout, inp, w, N, C, OC);
      const dinpGelu = new Float32Array(N * C);
      ref.geluBackward(dinpGelu, inp, dinp, N * C);
      expect(relErr(await readF32(device, g.out, N * OC), out)).toBeLessThan(1e-5);
      expect(relErr(await readF32(device, g.dinp, N * C), dinp)).toBeLessThan(1e-5);
      expect(relErr(await readF32(device, g.dw, C * OC), dw)).toBeLessThan(1e-5);
      expect(relErr(await readF32(device, g.db, OC), db)).toBeLessThan(1e-5);
      expect(relErr(await readF32(device, g.dinpGelu, N * C), dinpGelu)).toBeLessThan(1e-5);
      expect(relErr(await readF32(device, g.dw2, C * OC), dw)).toBeLessThan(1e-5);
    });
  }
});

let tiledKernels: Kernels | undefined, quadKernels: Kernels | undefined, blockedKernels: Kernels | undefined;
afterAll(() => { tiledKernels?.destroy(); quadKernels?.destroy(); blockedKernels?.destroy(); });
const KT = (device: GPUDevice) => (tiledKernels ??= new Kernels(device, { ...DEFAULT_TUNING, attention: 'tiled' }));
const KB = (device: GPUDevice) => (blockedKernels ??= new Kernels(device, { ...DEFAULT_TUNING, attention: 'blocked' }));
// The autotuner's verdict that this device's quads are adjacent invocations (it is: engine.autotune).
const KQ = (device: GPUDevice) => (quadKernels ??= new Kernels(device, { ...DEFAULT_TUNING, quads: true }));

describe('causal multi-head attention (fused: forward one kernel, backward two)', () => {
  // T not a multiple of the 16-row tile or of the row kernels' 4 rows an invocation, one row,
  // several tiles, two row workgroups (T = 70 > 64), and base's longest context (T = 1024, head
  // size 64); head sizes 2, 4, 8, 10, 24, 64; on the row kernels (attention.fwd/bwd.wgsl), the
  // row forward with keys shared across quads (head sizes that are multiples of 4; the others
  // run plain), on the tiled ones (attention.tiled.wgsl), and on the register-blocked ones
  // (attention.blocked.wgsl: 32-row tiles, so T = 33, 37 and 70 leave ragged ones; head sizes
  // that are not a multiple of 4 run tiled there).
  for (const kind of ['rows', 'rows+quads', 'tiled', 'blocked'] as const)
  for (const [B, T, C, NH] of [[1, 5, 8, 2], [2, 13, 32, 4], [1, 1, 6, 3], [2, 9, 12, 3], [2, 19, 30, 3], [1, 37, 48, 2], [2, 33, 128, 2], [1, 70, 16, 2], [1, 1024, 64, 1]]) {
    gpuTest(`${kind}: B=${B} T=${T} C=${C} NH=${NH} (head size ${C / NH})`, async (device) => {
      const K = { rows: Kernels0, 'rows+quads': KQ, tiled: KT, blocked: KB }[kind];
      const runs = kind === 'blocked' ? ((C / NH) % 4 === 0 ? 'blocked' : 'tiled') : kind === 'tiled' ? 'tiled' : 'rows';
      expect(attentionKind(K(device), C / NH)).toBe(runs);
      expect(attentionTiled(K(device), C / NH)).toBe(runs === 'tiled');
      expect(attentionQuads(K(device), C / NH)).toBe(kind === 'rows+quads' && (C / NH) % 4 === 0);
      const qkv = randomArray(B * T * 3 * C, 1, 2), dout = randomArray(B * T * C, 2);
      const g = {
        qkv: uploadF32(device, qkv), out: emptyF32(device, B * T * C), lse: emptyF32(device, B * NH * T),
        dout: uploadF32(device, dout), dqkv: uploadF32(device, randomArray(B * T * 3 * C, 9)), D: emptyF32(device, B * NH * T),
      };
      await runDispatches(device, [
        attentionForward(K(device), 't.attn', g.out, g.lse, g.qkv, B, T, C, NH),
        ...attentionBackward(K(device), 't.attn.bwd', g.dqkv, g.D, g.lse, g.out, g.dout, g.qkv, B, T, C, NH),
      ]);
      const out = new Float32Array(B * T * C), preatt = new Float32Array(B * NH * T * T), att = new Float32Array(B * NH * T * T);
      ref.attentionForward(out, preatt, att, qkv, B, T, C, NH);
      const dqkv = new Float32Array(B * T * 3 * C);
      ref.attentionBackward(dqkv, new Float32Array(B * NH * T * T), new Float32Array(B * NH * T * T), dout, qkv, att, B, T, C, NH);
      // lse of row (z, t) = log sum_{j<=t} exp(preatt): the reference's preatt is already scaled.
      const lse = new Float32Array(B * NH * T);
      for (let r = 0; r < B * NH * T; r++) {
        const t = r % T;
        let mx = -Infinity, sum = 0;
        for (let j = 0; j <= t; j++) mx = Math.max(mx, preatt[r * T + j]);
        for (let j = 0; j <= t; j++) sum += Math.exp(preatt[r * T + j] - mx);
        lse[r] = mx + Math.log(sum);
      }
      expect(relErr(await readF32(device, g.out, B * T * C), out)).toBeLessThan(1e-5);
      expect(relErr(await readF32(device, g.lse, B * NH * T), lse)).toBeLessThan(1e-5);
      expect(relErr(await readF32(device, g.dqkv, B * T * 3 * C), dqkv)).toBeLessThan(1e-4);
    });
  }

  gpuTest('a tiled or blocked tuning runs heads above ATT_TILED_MAX_HEAD on the row kernels', async (device) => {
    expect(attentionTiled(KT(device), ATT_TILED_MAX_HEAD)).toBe(true);
    expect(attentionTiled(KT(device), ATT_TILED_MAX_HEAD + 1)).toBe(false);
    expect(attentionTiled(K(device), 8)).toBe(false);
    expect(attentionKind(KB(device), ATT_TILED_MAX_HEAD)).toBe('blocked');
    expect(attentionKind(KB(device), ATT_TILED_MAX_HEAD + 4)).toBe('rows');
    expect(attentionKind(KB(device), 10)).toBe('tiled');
  });

  it('refuses a head size above the kernels\' register rows', () => {
    expect(() => attentionForward({ uniform: () => { throw new Error('unreachable'); } } as unknown as Kernels, 't.big', null!, null!, null!, 1, 4, 258, 1))
      .toThrow(/head size C\/NH = 258\/1 must be an integer of at most 128/);
  });
});

describe('matmul + bias + GELU fused (the MLP\'s first layer)', () => {
  // The last case's pre-activations reach the hundreds, where tanh's exp overflows to infinity
  // (GELU(x) = x) or underflows to 0 (GELU(x) = 0).
  for (const [N, C, OC, scale] of [[7, 10, 6, 1], [33, 32, 128, 1], [45, 30, 90, 1], [9, 16, 8, 12]]) {
    gpuTest(`N=${N} C=${C} OC=${OC}${scale > 1 ? ', pre-activations in the hundreds' : ''}: GELU output and pre-activation`, async (device) => {
      const inp = randomArray(N * C, 1, scale), w = randomArray(C * OC, 2, scale), b = randomArray(OC, 3);
      const g = { inp: uploadF32(device, inp), w: uploadF32(device, w), b: uploadF32(device, b), out: emptyF32(device, N * OC), pre: emptyF32(device, N * OC) };
      await runDispatches(device, matmulGeluForward(K(device), 't.mm.gelu', g.out, g.pre, g.inp, g.w, g.b, N, C, OC));
      const pre = new Float32Array(N * OC), out = new Float32Array(N * OC);
      ref.matmulForward(pre, inp, w, b, N, C, OC);
      ref.geluForward(out, pre, N * OC);
      expect(relErr(await readF32(device, g.pre, N * OC), pre)).toBeLessThan(1e-5);
      expect(relErr(await readF32(device, g.out, N * OC), out)).toBeLessThan(1e-5);
    });
  }
});

describe('fused softmax + cross-entropy', () => {
  for (const [N, V] of [[7, 13], [1, 256], [20, 256]]) {
    gpuTest(`N=${N} V=${V}: losses and dlogits (mean loss, times StepState's loss scale)`, async (device) => {
      const logits = randomArray(N * V, 1, 4), targets = tokensFor(N, V, 2);
      const gL = uploadF32(device, logits), gT = uploadU32(device, targets), gLoss = emptyF32(device, N);
      const gL2 = uploadF32(device, logits), gLoss2 = emptyF32(device, N);
      const st = new Float32Array(STEP_STATE_WORDS);
      st[STEP_STATE_LOSS_SCALE] = 4;
      const gSt = uploadF32(device, st);
      await runDispatches(device, [
        crossentropy(K(device), 't.ce', gLoss, gL, gT, gSt, N, V, true),
        crossentropy(K(device), 't.ce.eval', gLoss2, gL2, gT, gSt, N, V, false),
      ]);
      const losses = new Float32Array(N), probs = new Float32Array(N * V), dlogits = new Float32Array(N * V);
      ref.crossentropySoftmaxForward(losses, probs, logits, targets, N, V);
      ref.crossentropySoftmaxBackward(dlogits, probs, targets, N, V, 4);
      expect(relErr(await readF32(device, gLoss, N), losses)).toBeLessThan(1e-5);
      expect(relErr(await readF32(device, gL, N * V), dlogits)).toBeLessThan(1e-5);
      expect(relErr(await readF32(device, gLoss2, N), losses)).toBeLessThan(1e-5);
      expect(await readF32(device, gL2, N * V)).toEqual(logits); // evaluation leaves the logits alone
    });
  }
});
