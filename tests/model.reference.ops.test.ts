// Every op of the CPU reference, one at a time: forward against a naive direct implementation
// or hand-computed values, backward against central finite differences in float64 of
// L = sum(out * R) (so dout = R), and the gradient rule (parameter grads +=, activation grads =).
// Sizes are small and deliberately not multiples of 4 where the matmul tiles by 4.
import { describe, expect, it } from 'vitest';
import {
  attentionBackward, attentionForward, crossentropySoftmaxBackward, crossentropySoftmaxForward,
  encoderBackward, encoderForward, geluBackward, geluForward, layernormBackward, layernormForward,
  matmulBackward, matmulForward, matmulTransposedBackward, matmulTransposedForward,
  residualBackward, residualForward,
} from '../src/model/reference.ts';
import { maxAbsErr, maxRelErr, numericGrad, randn } from './support/numeric.ts';

// Fourth-order finite differences in f64 (h = 1e-4) on O(1) values: error ~1e-10 absolute.
const FD_TOL = 1e-6;
const FD_FLOOR = 1e-3;
const expectGrad = (analytic: Float64Array, numeric: Float64Array) => {
  const { err, at } = maxRelErr(analytic, numeric, FD_FLOOR);
  expect(err, `worst at ${at}: analytic ${analytic[at]} vs numeric ${numeric[at]}`).toBeLessThan(FD_TOL);
};

describe('encoder', () => {
  const B = 2, T = 3, C = 5, V = 7, maxT = 4;
  const tokens = new Uint32Array([3, 0, 3, 6, 3, 1]); // token 3 three times: its grads must sum
  const wte = randn(V * C, 1), wpe = randn(maxT * C, 2);

  it('adds the token row and the position row', () => {
    const out = new Float64Array(B * T * C);
    encoderForward(out, tokens, wte, wpe, B, T, C);
    for (let b = 0; b < B; b++) for (let t = 0; t < T; t++) for (let i = 0; i < C; i++) {
      expect(out[(b * T + t) * C + i]).toBe(wte[tokens[b * T + t]! * C + i]! + wpe[t * C + i]!);
    }
  });

  it('backward matches finite differences and accumulates (+=)', () => {
    const R = randn(B * T * C, 3);
    const run = () => { const o = new Float64Array(B * T * C); encoderForward(o, tokens, wte, wpe, B, T, C); return o; };
    const dwte = new Float64Array(V * C), dwpe = new Float64Array(maxT * C);
    encoderBackward(dwte, dwpe, R, tokens, B, T, C);
    expectGrad(dwte, numericGrad(wte, run, R));
    expectGrad(dwpe, numericGrad(wpe, run, R));
    const once = dwte.slice();
    encoderBackward(dwte, dwpe, R, tokens, B, T, C);
    expect(maxAbsErr(dwte, once.map((x) => 2 * x))).toBeLessThan(1e-12);
  });
});

describe('layernorm', () => {
  it('matches hand-computed values', () => {
    const out = new Float64Array(4), mean = new Float64Array(1), rstd = new Float64Array(1);
    layernormForward(out, mean, rstd, new Float64Array([1, 2, 3, 4]), new Float64Array([1, 1, 2, 1]), new Float64Array([0, 0, 0, 0.5]), 1, 4);
    const s = 1 / Math.sqrt(1.25 + 1e-5); // mean 2.5, biased variance 1.25, eps 1e-5
    expect(mean[0]).toBe(2.5);
    expect(rstd[0]).toBeCloseTo(s, 14);
    const want = [-1.5 * s, -0.5 * s, 2 * 0.5 * s, 1.5 * s + 0.5];
    for (let i = 0; i < 4; i++) expect(out[i]).toBeCloseTo(want[i]!, 13);
  });

  it('backward matches finite differences', () => {
    const N = 3, C = 7;
    const inp = randn(N * C, 4), w = randn(C, 5), b = randn(C, 6), R = randn(N * C, 7);
    const mean = new Float64Array(N), rstd = new Float64Array(N);
    const run = () => { const o = new Float64Array(N * C); layernormForward(o, mean, rstd, inp, w, b, N, C); return o; };
    run();
    const dinp = new Float64Array(N * C).fill(123); // = : garbage must be overwritten
    const dw = new Float64Array(C), db = new Float64Array(C);
    layernormBackward(dinp, dw, db, R, inp, w, mean, rstd, N, C);
    expectGrad(dinp, numericGrad(inp, run, R));
    expectGrad(dw, numericGrad(w, run, R));
    expectGrad(db, numericGrad(b, run, R));
  });
});

/** out(N, OC) = inp(N, C) @ W(C, OC) + bias, the obvious way. */
function naiveMatmul(inp: Float64Array, W: Float64Array, bias: Float64Array | null, N: number, C: number, OC: number) {
  const out = new Float64Array(N * OC);
  for (let n = 0; n < N; n++) for (let o = 0; o < OC; o++) {
    let s = bias ? bias[o]! : 0;
    for (let c = 0; c < C; c++) s += inp[n * C + c]! * W[c * OC + o]!;
    out[n * OC + o] = s;
  }
  return out;
}

describe('matmul (Conv1D weight (C, OC))', () => {
  // 8x8x8 exercises only the 4x4 tiles; 7x5x9 and 9x6x3 exercise ragged rows and columns.
  for (const [N, C, OC] of [[8, 8, 8], [7, 5, 9], [9, 6, 3], [1, 3, 2]] as const) {
    it(`forward matches a naive triple loop (N=${N}, C=${C}, OC=${OC})`, () => {
      const inp = randn(N * C, 10), W = randn(C * OC, 11), bias = randn(OC, 12);
      const out = new Float64Array(N * OC).fill(7);
      matmulForward(out, inp, W, bias, N, C, OC);
      expect(maxAbsErr(out, naiveMatmul(inp, W, bias, N, C, OC))).toBeLessThan(1e-12);
      matmulForward(out, inp, W, null, N, C, OC);
      expect(maxAbsErr(out, naiveMatmul(inp, W, null, N, C, OC))).toBeLessThan(1e-12);
    });

    it(`backward matches finite differences; dinp =, dweight and dbias += (N=${N}, C=${C}, OC=${OC})`, () => {
      const inp = randn(N * C, 13), W = randn(C * OC, 14), bias = randn(OC, 15), R = randn(N * OC, 16);
      const run = () => { const o = new Float64Array(N * OC); matmulForward(o, inp, W, bias, N, C, OC); return o; };
      const dinp = new Float64Array(N * C).fill(-5), dW = new Float64Array(C * OC), db = new Float64Array(OC);
      matmulBackward(dinp, dW, db, R, inp, W, N, C, OC);
      expectGrad(dinp, numericGrad(inp, run, R));
      expectGrad(dW, numericGrad(W, run, R));
      expectGrad(db, numericGrad(bias, run, R));
      const [i1, w1, b1] = [dinp.slice(), dW.slice(), db.slice()];
      matmulBackward(dinp, dW, db, R, inp, W, N, C, OC);
      expect(maxAbsErr(dinp, i1)).toBe(0);
      expect(maxAbsErr(dW, w1.map((x) => 2 * x))).toBeLessThan(1e-12);
      expect(maxAbsErr(db, b1.map((x) => 2 * x))).toBeLessThan(1e-12);
      matmulBackward(dinp, dW, null, R, inp, W, N, C, OC); // no bias: must not throw
    });
  }
});

describe('matmulTransposed (tied LM head, weight (OC, C))', () => {
  for (const [N, C, OC] of [[8, 4, 12], [5, 7, 6]] as const) {
    it(`forward is inp @ weight^T and backward matches finite differences (N=${N}, C=${C}, OC=${OC})`, () => {
      const inp = randn(N * C, 20), Wt = randn(OC * C, 21), R = randn(N * OC, 22);
      const W = new Float64Array(C * OC); // the same matrix as (C, OC) for the naive product
      for (let o = 0; o < OC; o++) for (let c = 0; c < C; c++) W[c * OC + o] = Wt[o * C + c]!;
      const run = () => { const o = new Float64Array(N * OC); matmulTransposedForward(o, inp, Wt, N, C, OC); return o; };
      expect(maxAbsErr(run(), naiveMatmul(inp, W, null, N, C, OC))).toBeLessThan(1e-12);
      const dinp = new Float64Array(N * C).fill(3), dWt = new Float64Array(OC * C);
      matmulTransposedBackward(dinp, dWt, R, inp, Wt, N, C, OC);
      expectGrad(dinp, numericGrad(inp, run, R));
      expectGrad(dWt, numericGrad(Wt, run, R));
    });
  }
});

/** Causal attention the obvious way: per (b, h) build Q, K, V, masked softmax(QK^T/sqrt(hs)) V. */
function naiveAttention(qkv: Float64Array, B: number, T: number, C: number, NH: number) {
  const hs = C / NH, out = new Float64Array(B * T * C);
  for (let b = 0; b < B; b++) for (let h = 0; h < NH; h++) {
    const at = (t: number, part: number, i: number) => qkv[(b * T + t) * 3 * C + part * C + h * hs + i]!;
    for (let t = 0; t < T; t++) {
      const scores: number[] = [];
      for (let s = 0; s <= t; s++) {
        let d = 0;
        for (let i = 0; i < hs; i++) d += at(t, 0, i) * at(s, 1, i);
        scores.push(d / Math.sqrt(hs));
      }
      const mx = Math.max(...scores);
      const e = scores.map((x) => Math.exp(x - mx));
      const z = e.reduce((x, y) => x + y, 0);
      for (let i = 0; i < hs; i++) {
        let y = 0;
        for (let s = 0; s <= t; s++) y += (e[s]! / z) * at(s, 2, i);
        out[(b * T + t) * C + h * hs + i] = y;
      }
    }
  }
  return out;
}

describe('attention (causal, q|k|v packed)', () => {
  const B = 2, T = 5, C = 6, NH = 2;
  const fwd = (qkv: Float64Array) => {
    const out = new Float64Array(B * T * C), pre = new Float64Array(B * NH * T * T), att = new Float64Array(B * NH * T * T);
    attentionForward(out, pre, att, qkv, B, T, C, NH);
    return { out, pre, att };
  };

  it('forward matches the naive computation; rows sum to 1 and are zero above the diagonal', () => {
    const qkv = randn(B * T * 3 * C, 30);
    const { out, att } = fwd(qkv);
    expect(maxAbsErr(out, naiveAttention(qkv, B, T, C, NH))).toBeLessThan(1e-12);
    for (let r = 0; r < B * NH * T; r++) {
      const t = r % T;
      let s = 0;
      for (let t2 = 0; t2 < T; t2++) { if (t2 > t) expect(att[r * T + t2]).toBe(0); s += att[r * T + t2]!; }
      expect(s).toBeCloseTo(1, 14);
    }
  });

  it('is causal: the last position changes no earlier output', () => {
    const qkv = randn(B * T * 3 * C, 31);
    const before = fwd(qkv).out;
    for (let b = 0; b < B; b++) for (let i = 0; i < 3 * C; i++) qkv[(b * T + T - 1) * 3 * C + i] += 1;
    const after = fwd(qkv).out;
    for (let b = 0; b < B; b++) for (let t = 0; t < T - 1; t++) for (let i = 0; i < C; i++) {
      expect(after[(b * T + t) * C + i]).toBe(before[(b * T + t) * C + i]);
    }
  });

  it('backward matches finite differences and overwrites dqkv (=)', () => {
    const qkv = randn(B * T * 3 * C, 32), R = randn(B * T * C, 33);
    const { att } = fwd(qkv);
    const dqkv = new Float64Array(B * T * 3 * C).fill(9);
    const dpre = new Float64Array(B * NH * T * T), datt = new Float64Array(B * NH * T * T);
    attentionBackward(dqkv, dpre, datt, R, qkv, att, B, T, C, NH);
    expectGrad(dqkv, numericGrad(qkv, () => fwd(qkv).out, R));
  });
});

describe('gelu (tanh approximation)', () => {
  it('matches torch.nn.GELU(approximate="tanh") at known points', () => {
    // Values from torch.nn.functional.gelu(x, approximate='tanh') in float64.
    const x = new Float64Array([0, 1, -1, 3, -3]);
    const want = [0, 0.8411919906082768, -0.15880800939172324, 2.996362607918227, -0.0036373920817729943];
    const out = new Float64Array(5);
    geluForward(out, x, 5);
    for (let i = 0; i < 5; i++) expect(out[i]).toBeCloseTo(want[i]!, 13);
  });

  it('backward matches finite differences', () => {
    const N = 11, x = randn(N, 40, 2), R = randn(N, 41);
    const run = () => { const o = new Float64Array(N); geluForward(o, x, N); return o; };
    const dinp = new Float64Array(N).fill(1);
    geluBackward(dinp, x, R, N);
    expectGrad(dinp, numericGrad(x, run, R));
  });
});

describe('residual', () => {
  it('adds, copies the gradient to both inputs (=), and may run in place', () => {
    const a = new Float64Array([1, 2, 3]), b = new Float64Array([10, 20, 30]), out = new Float64Array(3);
    residualForward(out, a, b, 3);
    expect([...out]).toEqual([11, 22, 33]);
    const da = new Float64Array(3).fill(5), db = new Float64Array(3).fill(5);
    residualBackward(da, db, new Float64Array([0.5, -1, 2]), 3);
    expect([...da]).toEqual([0.5, -1, 2]);
    expect([...db]).toEqual([0.5, -1, 2]);
    residualForward(a, a, b, 3);
    expect([...a]).toEqual([11, 22, 33]);
  });
});

describe('crossentropy + softmax', () => {
  it('uniform logits give loss ln V and probs 1/V', () => {
    const N = 2, V = 8;
    const losses = new Float64Array(N), probs = new Float64Array(N * V);
    crossentropySoftmaxForward(losses, probs, new Float64Array(N * V).fill(3), new Uint32Array([1, 7]), N, V);
    expect(losses[0]).toBeCloseTo(Math.log(V), 14);
    expect(losses[1]).toBeCloseTo(Math.log(V), 14);
    for (const p of probs) expect(p).toBeCloseTo(1 / V, 15);
  });

  it('matches -log softmax on hand values and stays finite for huge logits', () => {
    const losses = new Float64Array(2), probs = new Float64Array(6);
    crossentropySoftmaxForward(losses, probs, new Float64Array([0, 1, 2, 1000, 0, -1000]), new Uint32Array([2, 1]), 2, 3);
    const z = 1 + Math.E + Math.E ** 2;
    expect(losses[0]).toBeCloseTo(Math.log(z) - 2, 14);
    expect(probs[1]).toBeCloseTo(Math.E / z, 14);
    expect(losses[1]).toBeCloseTo(1000, 10);
  });

  it('backward is scale * (probs - onehot) / N and matches finite differences of the mean loss', () => {
    const N = 3, V = 5, scale = 0.7;
    const logits = randn(N * V, 50), targets = new Uint32Array([4, 0, 2]);
    const losses = new Float64Array(N), probs = new Float64Array(N * V);
    const run = () => { crossentropySoftmaxForward(losses, probs, logits, targets, N, V); return losses; };
    run();
    const dlogits = new Float64Array(N * V).fill(8);
    crossentropySoftmaxBackward(dlogits, probs, targets, N, V, scale);
    expectGrad(dlogits, numericGrad(logits, run, new Float64Array(N).fill(scale / N)));
  });
});
