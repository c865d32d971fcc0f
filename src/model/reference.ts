// The CPU reference GPT: the oracle every WGSL kernel is checked against, and the engine of the
// multi-replica simulator. It follows llm.c's train_gpt2.c: one function per op, named like the
// kernels (`<op>Forward` / `<op>Backward`), outputs first, then inputs, then sizes; a shape
// comment on every tensor. Gradient rule: parameter grads `+=` (a weight used twice sums its
// grads), activation grads `=` (each op owns its input's gradient buffer; where two paths meet,
// the model adds them explicitly with residualForward).
//
// Every op is generic over Float32Array | Float64Array so the gradient check can run the very
// same code in float64. Sums run in JS doubles and are rounded once on store.
import type { Batch } from '../data/batch.ts';
import type { Layout } from './layout.ts';
import { roundF16 } from './half.ts';
import { layerTensor, tensor } from './layout.ts';
import { gemm } from './gemm.ts';

export type { FloatArray } from './gemm.ts';
import type { FloatArray } from './gemm.ts';

/** LayerNorm epsilon, as torch.nn.LayerNorm and GPT-2. */
export const LN_EPS = 1e-5;
const GELU_SCALE = Math.sqrt(2 / Math.PI);
const GELU_CUBE = 0.044715;

/** tanh through one exp: ~1.6x faster than Math.tanh in V8, exact to ~1e-16 absolute. */
function tanh(x: number): number {
  return 1 - 2 / (Math.exp(2 * x) + 1);
}

// ---------------------------------------------------------------------------------------------
// Encoder: token + position embeddings.
// ---------------------------------------------------------------------------------------------

export function encoderForward(
  out: FloatArray, // (B, T, C)
  tokens: Uint32Array, // (B, T)
  wte: FloatArray, // (V, C)
  wpe: FloatArray, // (maxT, C)
  B: number, T: number, C: number,
): void {
  for (let b = 0; b < B; b++) {
    for (let t = 0; t < T; t++) {
      const o = (b * T + t) * C, w = tokens[b * T + t]! * C, p = t * C;
      for (let i = 0; i < C; i++) out[o + i] = wte[w + i] + wpe[p + i];
    }
  }
}

export function encoderBackward(
  dwte: FloatArray, // (V, C)  +=
  dwpe: FloatArray, // (maxT, C)  +=
  dout: FloatArray, // (B, T, C)
  tokens: Uint32Array, // (B, T)
  B: number, T: number, C: number,
): void {
  for (let b = 0; b < B; b++) {
    for (let t = 0; t < T; t++) {
      const o = (b * T + t) * C, w = tokens[b * T + t]! * C, p = t * C;
      for (let i = 0; i < C; i++) {
        const d = dout[o + i];
        dwte[w + i] += d;
        dwpe[p + i] += d;
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------
// LayerNorm over the last dimension (biased variance, eps 1e-5, like torch.nn.LayerNorm).
// ---------------------------------------------------------------------------------------------

export function layernormForward(
  out: FloatArray, // (N, C)
  mean: FloatArray, // (N) saved for the backward pass
  rstd: FloatArray, // (N) 1 / sqrt(var + eps), saved for the backward pass
  inp: FloatArray, // (N, C)
  weight: FloatArray, // (C)
  bias: FloatArray, // (C)
  N: number, C: number,
): void {
  for (let n = 0; n < N; n++) {
    const x = n * C;
    let m = 0;
    for (let i = 0; i < C; i++) m += inp[x + i];
    m /= C;
    let v = 0;
    for (let i = 0; i < C; i++) { const d = inp[x + i] - m; v += d * d; }
    const s = 1 / Math.sqrt(v / C + LN_EPS);
    for (let i = 0; i < C; i++) out[x + i] = (inp[x + i] - m) * s * weight[i] + bias[i];
    mean[n] = m;
    rstd[n] = s;
  }
}

export function layernormBackward(
  dinp: FloatArray, // (N, C)  =
  dweight: FloatArray, // (C)  +=
  dbias: FloatArray, // (C)  +=
  dout: FloatArray, // (N, C)
  inp: FloatArray, // (N, C)
  weight: FloatArray, // (C)
  mean: FloatArray, // (N)
  rstd: FloatArray, // (N)
  N: number, C: number,
): void {
  for (let n = 0; n < N; n++) {
    const x = n * C;
    const m = mean[n], s = rstd[n];
    // dinp = rstd * (dnorm - mean(dnorm) - norm * mean(dnorm * norm)), dnorm = weight * dout
    let dnormMean = 0, dnormNormMean = 0;
    for (let i = 0; i < C; i++) {
      const norm = (inp[x + i] - m) * s;
      const dnorm = weight[i] * dout[x + i];
      dnormMean += dnorm;
      dnormNormMean += dnorm * norm;
    }
    dnormMean /= C;
    dnormNormMean /= C;
    for (let i = 0; i < C; i++) {
      const d = dout[x + i];
      const norm = (inp[x + i] - m) * s;
      dbias[i] += d;
      dweight[i] += norm * d;
      dinp[x + i] = (weight[i] * d - dnormMean - norm * dnormNormMean) * s;
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Linear layers. Weights are HF Conv1D (in, out): y = x @ W + b.
// ---------------------------------------------------------------------------------------------

export function matmulForward(
  out: FloatArray, // (N, OC)
  inp: FloatArray, // (N, C)
  weight: FloatArray, // (C, OC)
  bias: FloatArray | null, // (OC)
  N: number, C: number, OC: number,
): void {
  gemm(out, inp, weight, bias, N, C, OC, C, 1, OC, 1, false);
}

export function matmulBackward(
  dinp: FloatArray, // (N, C)  =
  dweight: FloatArray, // (C, OC)  +=
  dbias: FloatArray | null, // (OC)  +=
  dout: FloatArray, // (N, OC)
  inp: FloatArray, // (N, C)
  weight: FloatArray, // (C, OC)
  N: number, C: number, OC: number,
): void {
  // dinp(N, C) = dout(N, OC) @ weight(C, OC)^T
  gemm(dinp, dout, weight, null, N, OC, C, OC, 1, 1, OC, false);
  // dweight(C, OC) += inp(N, C)^T @ dout(N, OC)
  gemm(dweight, inp, dout, null, C, N, OC, 1, C, OC, 1, true);
  if (dbias !== null) columnSums(dbias, dout, N, OC);
}

/**
 * The tied LM head: out = inp @ weight^T with weight (OC, C) stored row-major, i.e. logits =
 * lnf(N, C) @ wte(V, C)^T. No bias (GPT-2's lm_head has none).
 */
export function matmulTransposedForward(
  out: FloatArray, // (N, OC)
  inp: FloatArray, // (N, C)
  weight: FloatArray, // (OC, C)
  N: number, C: number, OC: number,
): void {
  gemm(out, inp, weight, null, N, C, OC, C, 1, 1, C, false);
}

export function matmulTransposedBackward(
  dinp: FloatArray, // (N, C)  =
  dweight: FloatArray, // (OC, C)  +=
  dout: FloatArray, // (N, OC)
  inp: FloatArray, // (N, C)
  weight: FloatArray, // (OC, C)
  N: number, C: number, OC: number,
): void {
  // dinp(N, C) = dout(N, OC) @ weight(OC, C)
  gemm(dinp, dout, weight, null, N, OC, C, OC, 1, C, 1, false);
  // dweight(OC, C) += dout(N, OC)^T @ inp(N, C)
  gemm(dweight, dout, inp, null, OC, N, C, 1, OC, C, 1, true);
}

/** dbias(OC) += sum over rows of dout(N, OC). */
function columnSums(dbias: FloatArray, dout: FloatArray, N: number, OC: number): void {
  for (let n = 0; n < N; n++) {
    const r = n * OC;
    for (let o = 0; o < OC; o++) dbias[o] += dout[r + o];
  }
}

// ---------------------------------------------------------------------------------------------
// Causal multi-head self-attention on a packed qkv (q | k | v, as HF's c_attn emits it).
// ---------------------------------------------------------------------------------------------

export function attentionForward(
  out: FloatArray, // (B, T, C)
  preatt: FloatArray, // (B, NH, T, T) scaled scores; 0 above the diagonal
  att: FloatArray, // (B, NH, T, T) softmax rows; 0 above the diagonal
  qkv: FloatArray, // (B, T, 3C)
  B: number, T: number, C: number, NH: number,
): void {
  const hs = C / NH, C3 = 3 * C;
  const scale = 1 / Math.sqrt(hs);
  // Keys and values are taken four at a time: four independent sums per pass over the head
  // instead of one long dependent chain, and one load/store of out per four values.
  for (let b = 0; b < B; b++) {
    for (let h = 0; h < NH; h++) {
      const kh = b * T * C3 + C + h * hs; // key of position 0 for this (b, h)
      const vh = kh + C; // value of position 0
      for (let t = 0; t < T; t++) {
        const q = (b * T + t) * C3 + h * hs;
        const row = ((b * NH + h) * T + t) * T;
        let max = -Infinity;
        let t2 = 0;
        for (; t2 + 3 <= t; t2 += 4) {
          const k0 = kh + t2 * C3, k1 = k0 + C3, k2 = k1 + C3, k3 = k2 + C3;
          let s0 = 0, s1 = 0, s2 = 0, s3 = 0;
          for (let i = 0; i < hs; i++) {
            const qi = qkv[q + i];
            s0 += qi * qkv[k0 + i]; s1 += qi * qkv[k1 + i]; s2 += qi * qkv[k2 + i]; s3 += qi * qkv[k3 + i];
          }
          s0 *= scale; s1 *= scale; s2 *= scale; s3 *= scale;
          preatt[row + t2] = s0; preatt[row + t2 + 1] = s1; preatt[row + t2 + 2] = s2; preatt[row + t2 + 3] = s3;
          if (s0 > max) max = s0;
          if (s1 > max) max = s1;
          if (s2 > max) max = s2;
          if (s3 > max) max = s3;
        }
        for (; t2 <= t; t2++) {
          const k = kh + t2 * C3;
          let s0 = 0;
          for (let i = 0; i < hs; i++) s0 += qkv[q + i] * qkv[k + i];
          s0 *= scale;
          preatt[row + t2] = s0;
          if (s0 > max) max = s0;
        }
        let sum = 0;
        for (let t2 = 0; t2 <= t; t2++) {
          const e = Math.exp(preatt[row + t2] - max);
          att[row + t2] = e;
          sum += e;
        }
        const inv = 1 / sum;
        for (let t2 = 0; t2 <= t; t2++) att[row + t2] *= inv;
        for (let t2 = t + 1; t2 < T; t2++) { att[row + t2] = 0; preatt[row + t2] = 0; }

        const o = (b * T + t) * C + h * hs;
        for (let i = 0; i < hs; i++) out[o + i] = 0;
        t2 = 0;
        for (; t2 + 3 <= t; t2 += 4) {
          const v0 = vh + t2 * C3, v1 = v0 + C3, v2 = v1 + C3, v3 = v2 + C3;
          const a0 = att[row + t2], a1 = att[row + t2 + 1], a2 = att[row + t2 + 2], a3 = att[row + t2 + 3];
          for (let i = 0; i < hs; i++) {
            out[o + i] += a0 * qkv[v0 + i] + a1 * qkv[v1 + i] + a2 * qkv[v2 + i] + a3 * qkv[v3 + i];
          }
        }
        for (; t2 <= t; t2++) {
          const v = vh + t2 * C3;
          const a = att[row + t2];
          for (let i = 0; i < hs; i++) out[o + i] += a * qkv[v + i];
        }
      }
    }
  }
}

export function attentionBackward(
  dqkv: FloatArray, // (B, T, 3C)  =
  dpreatt: FloatArray, // (B, NH, T, T)  = (scratch)
  datt: FloatArray, // (B, NH, T, T)  = (scratch)
  dout: FloatArray, // (B, T, C)
  qkv: FloatArray, // (B, T, 3C)
  att: FloatArray, // (B, NH, T, T)
  B: number, T: number, C: number, NH: number,
): void {
  const hs = C / NH, C3 = 3 * C;
  const scale = 1 / Math.sqrt(hs);
  // Keys and values receive gradient from every later query, so dqkv is summed into from zero.
  dqkv.fill(0, 0, B * T * C3);
  for (let b = 0; b < B; b++) {
    for (let h = 0; h < NH; h++) {
      const kh = b * T * C3 + C + h * hs; // key of position 0 for this (b, h)
      const vh = kh + C; // value of position 0
      for (let t = 0; t < T; t++) {
        const row = ((b * NH + h) * T + t) * T;
        const o = (b * T + t) * C + h * hs;
        // out = sum_t2 att[t2] * v[t2]: into datt and dv, four positions at a time
        let t2 = 0;
        for (; t2 + 3 <= t; t2 += 4) {
          const v0 = vh + t2 * C3, v1 = v0 + C3, v2 = v1 + C3, v3 = v2 + C3;
          const a0 = att[row + t2], a1 = att[row + t2 + 1], a2 = att[row + t2 + 2], a3 = att[row + t2 + 3];
          let s0 = 0, s1 = 0, s2 = 0, s3 = 0;
          for (let i = 0; i < hs; i++) {
            const d = dout[o + i];
            s0 += qkv[v0 + i] * d; s1 += qkv[v1 + i] * d; s2 += qkv[v2 + i] * d; s3 += qkv[v3 + i] * d;
            dqkv[v0 + i] += a0 * d; dqkv[v1 + i] += a1 * d; dqkv[v2 + i] += a2 * d; dqkv[v3 + i] += a3 * d;
          }
          datt[row + t2] = s0; datt[row + t2 + 1] = s1; datt[row + t2 + 2] = s2; datt[row + t2 + 3] = s3;
        }
        for (; t2 <= t; t2++) {
          const v = vh + t2 * C3;
          const a = att[row + t2];
          let s = 0;
          for (let i = 0; i < hs; i++) {
            const d = dout[o + i];
            s += qkv[v + i] * d;
            dqkv[v + i] += a * d;
          }
          datt[row + t2] = s;
        }
        // softmax: dpreatt = att * (datt - sum(att * datt))
        let dot = 0;
        for (let t2 = 0; t2 <= t; t2++) dot += att[row + t2] * datt[row + t2];
        for (let t2 = 0; t2 <= t; t2++) dpreatt[row + t2] = att[row + t2] * (datt[row + t2] - dot);
        for (let t2 = t + 1; t2 < T; t2++) { datt[row + t2] = 0; dpreatt[row + t2] = 0; }
        // preatt = scale * q . k[t2]: into dq and dk, four keys at a time
        const q = (b * T + t) * C3 + h * hs;
        t2 = 0;
        for (; t2 + 3 <= t; t2 += 4) {
          const k0 = kh + t2 * C3, k1 = k0 + C3, k2 = k1 + C3, k3 = k2 + C3;
          const g0 = dpreatt[row + t2] * scale, g1 = dpreatt[row + t2 + 1] * scale;
          const g2 = dpreatt[row + t2 + 2] * scale, g3 = dpreatt[row + t2 + 3] * scale;
          for (let i = 0; i < hs; i++) {
            const qi = qkv[q + i];
            dqkv[q + i] += qkv[k0 + i] * g0 + qkv[k1 + i] * g1 + qkv[k2 + i] * g2 + qkv[k3 + i] * g3;
            dqkv[k0 + i] += qi * g0; dqkv[k1 + i] += qi * g1; dqkv[k2 + i] += qi * g2; dqkv[k3 + i] += qi * g3;
          }
        }
        for (; t2 <= t; t2++) {
          const k = kh + t2 * C3;
          const g = dpreatt[row + t2] * scale;
          for (let i = 0; i < hs; i++) {
            dqkv[q + i] += qkv[k + i] * g;
            dqkv[k + i] += qkv[q + i] * g;
          }
        }
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------
// GELU, GPT-2's tanh approximation (torch.nn.GELU(approximate='tanh')).
// ---------------------------------------------------------------------------------------------

export function geluForward(
  out: FloatArray, // (N)
  inp: FloatArray, // (N)
  N: number,
): void {
  for (let i = 0; i < N; i++) {
    const x = inp[i];
    out[i] = 0.5 * x * (1 + tanh(GELU_SCALE * (x + GELU_CUBE * x * x * x)));
  }
}

export function geluBackward(
  dinp: FloatArray, // (N)  =
  inp: FloatArray, // (N)
  dout: FloatArray, // (N)
  N: number,
): void {
  for (let i = 0; i < N; i++) {
    const x = inp[i];
    const th = tanh(GELU_SCALE * (x + GELU_CUBE * x * x * x));
    const sech2 = 1 - th * th;
    const local = 0.5 * (1 + th) + 0.5 * x * sech2 * GELU_SCALE * (1 + 3 * GELU_CUBE * x * x);
    dinp[i] = local * dout[i];
  }
}

// ---------------------------------------------------------------------------------------------
// Residual connection. Also used to add two gradient paths that meet (out may alias a).
// ---------------------------------------------------------------------------------------------

export function residualForward(
  out: FloatArray, // (N)
  a: FloatArray, // (N)
  b: FloatArray, // (N)
  N: number,
): void {
  for (let i = 0; i < N; i++) out[i] = a[i] + b[i];
}

export function residualBackward(
  da: FloatArray, // (N)  =
  db: FloatArray, // (N)  =
  dout: FloatArray, // (N)
  N: number,
): void {
  for (let i = 0; i < N; i++) { const d = dout[i]; da[i] = d; db[i] = d; }
}

// ---------------------------------------------------------------------------------------------
// Softmax + cross-entropy, fused.
// ---------------------------------------------------------------------------------------------

export function crossentropySoftmaxForward(
  losses: FloatArray, // (N) -log p(target)
  probs: FloatArray, // (N, V)
  logits: FloatArray, // (N, V)
  targets: Uint32Array, // (N)
  N: number, V: number,
): void {
  for (let n = 0; n < N; n++) {
    const r = n * V;
    let max = -Infinity;
    for (let v = 0; v < V; v++) if (logits[r + v] > max) max = logits[r + v];
    let sum = 0;
    for (let v = 0; v < V; v++) sum += Math.exp(logits[r + v] - max);
    const inv = 1 / sum;
    for (let v = 0; v < V; v++) probs[r + v] = Math.exp(logits[r + v] - max) * inv;
    // log-sum-exp rather than -log(probs[target]): exact even when p(target) underflows.
    losses[n] = Math.log(sum) + max - logits[r + targets[n]!];
  }
}

/**
 * dlogits = scale * (probs - onehot(targets)) / N: the gradient of scale * mean(losses).
 * `scale` is dLoss/d(mean loss), 1 for plain training.
 */
export function crossentropySoftmaxBackward(
  dlogits: FloatArray, // (N, V)  =
  probs: FloatArray, // (N, V)
  targets: Uint32Array, // (N)
  N: number, V: number,
  scale: number,
): void {
  const s = scale / N;
  for (let n = 0; n < N; n++) {
    const r = n * V;
    for (let v = 0; v < V; v++) dlogits[r + v] = probs[r + v] * s;
    dlogits[r + targets[n]!] -= s;
  }
}

// ---------------------------------------------------------------------------------------------
// The model: pre-LN GPT-2 with a tied LM head, over one flat parameter buffer.
// ---------------------------------------------------------------------------------------------

/** Views into one flat buffer (params or grads), one per tensor. */
interface LayerViews {
  ln1w: FloatArray; ln1b: FloatArray; // (C)
  qkvw: FloatArray; qkvb: FloatArray; // (C, 3C), (3C)
  attprojw: FloatArray; attprojb: FloatArray; // (C, C), (C)
  ln2w: FloatArray; ln2b: FloatArray; // (C)
  fcw: FloatArray; fcb: FloatArray; // (C, 4C), (4C)
  fcprojw: FloatArray; fcprojb: FloatArray; // (4C, C), (C)
}
interface ParamViews {
  wte: FloatArray; // (V, C)
  wpe: FloatArray; // (maxT, C)
  layers: LayerViews[];
  lnfw: FloatArray; lnfb: FloatArray; // (C)
}

function paramViews(layout: Layout, flat: FloatArray): ParamViews {
  const v = (name: string) => { const t = tensor(layout, name); return flat.subarray(t.offset, t.offset + t.size); };
  const lv = (l: number, name: Parameters<typeof layerTensor>[2]) => {
    const t = layerTensor(layout, l, name); return flat.subarray(t.offset, t.offset + t.size);
  };
  const layers: LayerViews[] = [];
  for (let l = 0; l < layout.config.layers; l++) {
    layers.push({
      ln1w: lv(l, 'ln_1.weight'), ln1b: lv(l, 'ln_1.bias'),
      qkvw: lv(l, 'attn.c_attn.weight'), qkvb: lv(l, 'attn.c_attn.bias'),
      attprojw: lv(l, 'attn.c_proj.weight'), attprojb: lv(l, 'attn.c_proj.bias'),
      ln2w: lv(l, 'ln_2.weight'), ln2b: lv(l, 'ln_2.bias'),
      fcw: lv(l, 'mlp.c_fc.weight'), fcb: lv(l, 'mlp.c_fc.bias'),
      fcprojw: lv(l, 'mlp.c_proj.weight'), fcprojb: lv(l, 'mlp.c_proj.bias'),
    });
  }
  return {
    wte: v('transformer.wte.weight'), wpe: v('transformer.wpe.weight'), layers,
    lnfw: v('transformer.ln_f.weight'), lnfb: v('transformer.ln_f.bias'),
  };
}

/** What one block keeps from the forward pass for its backward pass. */
interface LayerActs {
  ln1: FloatArray; ln1Mean: FloatArray; ln1Rstd: FloatArray; // (N, C), (N), (N)
  qkv: FloatArray; // (N, 3C)
  att: FloatArray; // (B, NH, T, T)
  atty: FloatArray; // (N, C) attention output before c_proj
  attproj: FloatArray; // (N, C)
  res2: FloatArray; // (N, C) residual after attention
  ln2: FloatArray; ln2Mean: FloatArray; ln2Rstd: FloatArray; // (N, C), (N), (N)
  fch: FloatArray; // (N, 4C)
  fchGelu: FloatArray; // (N, 4C)
  fcproj: FloatArray; // (N, C)
  res3: FloatArray; // (N, C) residual after the MLP: the block's output
}

/** Activations and gradient scratch for one (B, T); allocated once and reused every step. */
interface Acts {
  B: number; T: number;
  encoded: FloatArray; // (N, C)
  layers: LayerActs[];
  preatt: FloatArray; // (B, NH, T, T) shared: the backward pass needs only att
  lnf: FloatArray; lnfMean: FloatArray; lnfRstd: FloatArray; // (N, C), (N), (N)
  logits: FloatArray; // (N, V)
  probs: FloatArray; // (N, V)
  losses: FloatArray; // (N)
  // gradient scratch, shared by all layers
  dlogits: FloatArray; // (N, V)
  dlnf: FloatArray; // (N, C)
  dres: FloatArray; // (N, C) gradient of the residual stream
  dres2: FloatArray; // (N, C)
  dfcproj: FloatArray; // (N, C)
  dfchGelu: FloatArray; // (N, 4C)
  dfch: FloatArray; // (N, 4C)
  dln: FloatArray; // (N, C) gradient of a LayerNorm output
  dtmp: FloatArray; // (N, C) a LayerNorm's input gradient before it joins the residual
  dattproj: FloatArray; // (N, C)
  datty: FloatArray; // (N, C)
  dqkv: FloatArray; // (N, 3C)
  dpreatt: FloatArray; // (B, NH, T, T)
  datt: FloatArray; // (B, NH, T, T)
}

export type FloatKind = 'f32' | 'f64';

/** Activation sets kept at once (e.g. the training shape and an evaluation shape). */
const MAX_SHAPES = 4;

export class ReferenceGPT {
  readonly layout: Layout;
  readonly kind: FloatKind;
  private readonly alloc: (n: number) => FloatArray;
  private readonly shapes = new Map<string, Acts>();
  private acts: Acts | null = null;
  private batch: Batch | null = null;
  private lastParams: FloatArray | null = null;
  private pviews: { flat: FloatArray; views: ParamViews } | null = null;
  private gviews: { flat: FloatArray; views: ParamViews } | null = null;
  /**
   * f16 operands: every matmul's and the attention's inputs (activations, weights, and in the
   * backward the incoming gradients) are rounded to f16 before the f32 product, as a GPU with
   * `shader-f16` would read them; master weights, AdamW, LayerNorm, softmax and the loss stay f32.
   */
  readonly half: boolean;
  private readonly halfSlots: Float32Array[] = [];

  constructor(layout: Layout, kind: FloatKind = 'f32', opts: { half?: boolean } = {}) {
    if (kind !== 'f32' && kind !== 'f64') throw new Error(`ReferenceGPT: kind must be 'f32' or 'f64', got "${String(kind)}"`);
    if (opts.half && kind !== 'f32') throw new Error('ReferenceGPT: f16 operands need kind f32');
    this.layout = layout;
    this.kind = kind;
    this.half = !!opts.half;
    this.alloc = kind === 'f32' ? (n) => new Float32Array(n) : (n) => new Float64Array(n);
  }

  /** `x` as the kernels read it: itself, or (half) an f16-rounded copy in scratch slot `slot`. */
  private h(x: FloatArray, slot: number): FloatArray {
    if (!this.half) return x;
    let buf = this.halfSlots[slot];
    if (!buf || buf.length < x.length) buf = this.halfSlots[slot] = new Float32Array(x.length);
    const out = buf.subarray(0, x.length);
    roundF16(out, x as Float32Array);
    return out;
  }

  /** Runs the model on `batch` and returns the mean cross-entropy loss over its B*T tokens. */
  forward(params: FloatArray, batch: Batch): number {
    this.checkFlat(params, 'params');
    this.checkBatch(batch);
    const { B, T, tokens, targets } = batch;
    const { vocab: V, d: C, heads: NH } = this.layout.config;
    const N = B * T;
    const p = this.views(params, 'p');
    const a = this.activations(B, T);

    encoderForward(a.encoded, tokens, p.wte, p.wpe, B, T, C);
    let x = a.encoded; // (N, C) the residual stream entering each block
    for (let l = 0; l < p.layers.length; l++) {
      const w = p.layers[l]!, s = a.layers[l]!;
      layernormForward(s.ln1, s.ln1Mean, s.ln1Rstd, x, w.ln1w, w.ln1b, N, C);
      matmulForward(s.qkv, this.h(s.ln1, 0), this.h(w.qkvw, 1), w.qkvb, N, C, 3 * C);
      attentionForward(s.atty, a.preatt, s.att, this.h(s.qkv, 0), B, T, C, NH);
      matmulForward(s.attproj, this.h(s.atty, 0), this.h(w.attprojw, 1), w.attprojb, N, C, C);
      residualForward(s.res2, x, s.attproj, N * C);
      layernormForward(s.ln2, s.ln2Mean, s.ln2Rstd, s.res2, w.ln2w, w.ln2b, N, C);
      matmulForward(s.fch, this.h(s.ln2, 0), this.h(w.fcw, 1), w.fcb, N, C, 4 * C);
      geluForward(s.fchGelu, s.fch, N * 4 * C);
      matmulForward(s.fcproj, this.h(s.fchGelu, 0), this.h(w.fcprojw, 1), w.fcprojb, N, 4 * C, C);
      residualForward(s.res3, s.res2, s.fcproj, N * C);
      x = s.res3;
    }
    layernormForward(a.lnf, a.lnfMean, a.lnfRstd, x, p.lnfw, p.lnfb, N, C);
    matmulTransposedForward(a.logits, this.h(a.lnf, 0), this.h(p.wte, 1), N, C, V);
    crossentropySoftmaxForward(a.losses, a.probs, a.logits, targets, N, V);

    let sum = 0;
    for (let n = 0; n < N; n++) sum += a.losses[n];
    this.batch = batch;
    this.lastParams = params;
    return sum / N;
  }

  /**
   * Overwrites `grads` with dLoss/dparams (mean loss) for the last forward call, times
   * `lossScale` (f16 operands: the scale keeps small gradients above f16's underflow).
   */
  backward(params: FloatArray, grads: FloatArray, lossScale = 1): void {
    const a = this.acts, batch = this.batch;
    if (a === null || batch === null) throw new Error('ReferenceGPT.backward: call forward() first');
    if (params !== this.lastParams) throw new Error('ReferenceGPT.backward: params is not the buffer the last forward() used');
    this.checkFlat(grads, 'grads');
    if (grads === params) throw new Error('ReferenceGPT.backward: grads must be a different buffer from params');
    const { B, T, tokens, targets } = batch;
    const { vocab: V, d: C, heads: NH } = this.layout.config;
    const N = B * T;
    const p = this.views(params, 'p');
    const g = this.views(grads, 'g');
    grads.fill(0); // parameter grads accumulate (+=) from here

    crossentropySoftmaxBackward(a.dlogits, a.probs, targets, N, V, lossScale);
    matmulTransposedBackward(a.dlnf, g.wte, this.h(a.dlogits, 2), this.h(a.lnf, 0), this.h(p.wte, 1), N, C, V);
    const L = p.layers.length;
    const xLast = L > 0 ? a.layers[L - 1]!.res3 : a.encoded;
    layernormBackward(a.dres, g.lnfw, g.lnfb, a.dlnf, xLast, p.lnfw, a.lnfMean, a.lnfRstd, N, C);
    for (let l = L - 1; l >= 0; l--) {
      const w = p.layers[l]!, dw = g.layers[l]!, s = a.layers[l]!;
      const x = l > 0 ? a.layers[l - 1]!.res3 : a.encoded; // (N, C) this block's input
      // res3 = res2 + fcproj
      residualBackward(a.dres2, a.dfcproj, a.dres, N * C);
      matmulBackward(a.dfchGelu, dw.fcprojw, dw.fcprojb, this.h(a.dfcproj, 2), this.h(s.fchGelu, 0), this.h(w.fcprojw, 1), N, 4 * C, C);
      geluBackward(a.dfch, s.fch, a.dfchGelu, N * 4 * C);
      matmulBackward(a.dln, dw.fcw, dw.fcb, this.h(a.dfch, 2), this.h(s.ln2, 0), this.h(w.fcw, 1), N, C, 4 * C);
      layernormBackward(a.dtmp, dw.ln2w, dw.ln2b, a.dln, s.res2, w.ln2w, s.ln2Mean, s.ln2Rstd, N, C);
      residualForward(a.dres2, a.dres2, a.dtmp, N * C);
      // res2 = x + attproj
      residualBackward(a.dres, a.dattproj, a.dres2, N * C);
      matmulBackward(a.datty, dw.attprojw, dw.attprojb, this.h(a.dattproj, 2), this.h(s.atty, 0), this.h(w.attprojw, 1), N, C, C);
      attentionBackward(a.dqkv, a.dpreatt, a.datt, this.h(a.datty, 2), this.h(s.qkv, 0), s.att, B, T, C, NH);
      matmulBackward(a.dln, dw.qkvw, dw.qkvb, this.h(a.dqkv, 2), this.h(s.ln1, 0), this.h(w.qkvw, 1), N, C, 3 * C);
      layernormBackward(a.dtmp, dw.ln1w, dw.ln1b, a.dln, x, w.ln1w, s.ln1Mean, s.ln1Rstd, N, C);
      residualForward(a.dres, a.dres, a.dtmp, N * C);
    }
    encoderBackward(g.wte, g.wpe, a.dres, tokens, B, T, C);
  }

  /** (B, T, V) logits of the last forward; a view that the next forward overwrites. */
  logits(): FloatArray {
    if (this.acts === null) throw new Error('ReferenceGPT.logits: call forward() first');
    return this.acts.logits;
  }

  /** (B*T) per-token losses of the last forward; a view that the next forward overwrites. */
  losses(): FloatArray {
    if (this.acts === null) throw new Error('ReferenceGPT.losses: call forward() first');
    return this.acts.losses;
  }

  private checkFlat(flat: FloatArray, what: string): void {
    const want = this.kind === 'f32' ? Float32Array : Float64Array;
    if (!(flat instanceof want)) {
      throw new Error(`ReferenceGPT(${this.kind}): ${what} must be a ${want.name}, got ${flat?.constructor?.name ?? typeof flat}`);
    }
    if (flat.length !== this.layout.total) {
      throw new Error(`ReferenceGPT: ${what} has ${flat.length} floats but the layout needs ${this.layout.total}`);
    }
  }

  private checkBatch(batch: Batch): void {
    const { B, T, tokens, targets } = batch;
    const { vocab: V, ctx } = this.layout.config;
    if (!Number.isInteger(B) || B < 1) throw new Error(`batch: B must be a positive integer, got ${B}`);
    if (!Number.isInteger(T) || T < 1 || T > ctx) throw new Error(`batch: T must be an integer in 1..${ctx} (the model's ctx), got ${T}`);
    if (!(tokens instanceof Uint32Array) || tokens.length !== B * T) {
      throw new Error(`batch: tokens must be a Uint32Array of B*T=${B * T}, got length ${tokens?.length}`);
    }
    if (!(targets instanceof Uint32Array) || targets.length !== B * T) {
      throw new Error(`batch: targets must be a Uint32Array of B*T=${B * T}, got length ${targets?.length}`);
    }
    for (let i = 0; i < B * T; i++) {
      if (tokens[i]! >= V) throw new Error(`batch: token ${tokens[i]} at index ${i} is outside the vocabulary (size ${V})`);
      if (targets[i]! >= V) throw new Error(`batch: target ${targets[i]} at index ${i} is outside the vocabulary (size ${V})`);
    }
  }

  /** Cached per-tensor views: rebuilt only when a different flat buffer comes in. */
  private views(flat: FloatArray, which: 'p' | 'g'): ParamViews {
    const c = which === 'p' ? this.pviews : this.gviews;
    if (c !== null && c.flat === flat) return c.views;
    const fresh = { flat, views: paramViews(this.layout, flat) };
    if (which === 'p') this.pviews = fresh; else this.gviews = fresh;
    return fresh.views;
  }

  private activations(B: number, T: number): Acts {
    if (this.acts !== null && this.acts.B === B && this.acts.T === T) return this.acts; // the usual case: no lookup
    const key = `${B}x${T}`;
    let a = this.shapes.get(key);
    if (a === undefined) {
      if (this.shapes.size >= MAX_SHAPES) this.shapes.delete(this.shapes.keys().next().value!);
      a = this.allocActs(B, T);
      this.shapes.set(key, a);
    }
    this.acts = a;
    return a;
  }

  private allocActs(B: number, T: number): Acts {
    const { vocab: V, d: C, heads: NH, layers: L } = this.layout.config;
    const N = B * T, f = this.alloc;
    const layers: LayerActs[] = [];
    for (let l = 0; l < L; l++) {
      layers.push({
        ln1: f(N * C), ln1Mean: f(N), ln1Rstd: f(N), qkv: f(N * 3 * C), att: f(B * NH * T * T),
        atty: f(N * C), attproj: f(N * C), res2: f(N * C), ln2: f(N * C), ln2Mean: f(N), ln2Rstd: f(N),
        fch: f(N * 4 * C), fchGelu: f(N * 4 * C), fcproj: f(N * C), res3: f(N * C),
      });
    }
    return {
      B, T, encoded: f(N * C), layers, preatt: f(B * NH * T * T),
      lnf: f(N * C), lnfMean: f(N), lnfRstd: f(N), logits: f(N * V), probs: f(N * V), losses: f(N),
      dlogits: f(N * V), dlnf: f(N * C), dres: f(N * C), dres2: f(N * C), dfcproj: f(N * C),
      dfchGelu: f(N * 4 * C), dfch: f(N * 4 * C), dln: f(N * C), dtmp: f(N * C), dattproj: f(N * C),
      datty: f(N * C), dqkv: f(N * 3 * C), dpreatt: f(B * NH * T * T), datt: f(B * NH * T * T),
    };
  }
}
