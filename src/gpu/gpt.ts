// The GPT-2 forward and backward passes as lists of Dispatch records over buffers made once
// (llm.c's gpt2_forward / gpt2_backward, one kernel launch per line). Activations live in one
// buffer per tensor per layer; parameter and gradient tensors are ranges of the flat state
// buffers.
import type { Layout } from '../model/layout.ts';
import { layerTensor, tensor } from '../model/layout.ts';
import { type Dispatch, type Kernels, writeArray } from './kernels.ts';
import { matmulDispatches } from './matmul.ts';
import {
  attentionBackward, attentionForward, crossentropy, encoderBackward, encoderForward,
  layernormBackward, layernormForward, layernormScratchFloats, matmulBackward, matmulForward, matmulGeluForward, tokenIndex,
} from './ops.ts';
import type { GpuState } from './state.ts';

interface LayerActs {
  ln1: GPUBuffer; ln1Mean: GPUBuffer; ln1Rstd: GPUBuffer; // (N,C) (N) (N)
  qkv: GPUBuffer; // (N, 3C)
  lse: GPUBuffer; // (B, NH, T) log-sum-exp of the attention score rows
  atty: GPUBuffer; // (N, C)
  res2: GPUBuffer; // (N, C)
  ln2: GPUBuffer; ln2Mean: GPUBuffer; ln2Rstd: GPUBuffer;
  fch: GPUBuffer; fchGelu: GPUBuffer; // (N, 4C)
  res3: GPUBuffer; // (N, C)
}

/**
 * Activation memory of a (layout, B, T) exactly as GpuGPT allocates it: total bytes and the
 * largest single buffer (what maxStorageBufferBindingSize must hold). Attention is fused, so it
 * keeps only a log-sum-exp per score row: memory grows linearly in T.
 */
export function activationBytes(layout: Layout, B: number, T: number): { total: number; largest: number } {
  const { d: C, layers: L, heads: NH, vocab: V } = layout.config;
  const N = B * T;
  const perLayer = (15 * N * C + 4 * N + B * NH * T) * 4; // ln1, qkv(3), atty, res2, ln2, fch(4), fchGelu(4), res3; 4 row stats; lse
  const shared = (5 * N + V + 1 + N * C /* tokens, targets, index, losses, lnf stats; encoded */ + N * C + N * V /* lnf, logits */
    + 10 * N * C /* dres, dln, datty, dqkv(3), dfch(4) */ + B * NH * T /* attention D */ + layernormScratchFloats(N, C)) * 4;
  const total = perLayer * L + shared;
  const largest = Math.max(N * V * 4, N * 4 * C * 4);
  return { total, largest };
}

export class GpuGPT {
  readonly N: number;
  /** (B, T) u32 inputs and next-token targets, written per step with queue.writeBuffer. */
  readonly tokens: GPUBuffer;
  readonly targets: GPUBuffer;
  /** (V+1+N) u32: the batch's tokens counting-sorted by id, for the embedding gradient. */
  readonly tokenIndex: GPUBuffer;
  private readonly tokenIndexHost: Uint32Array;
  /** (N) per-position losses. */
  readonly losses: GPUBuffer;
  /** Gradient scratch cleared at the start of every step (the residual-stream gradient is +=). */
  readonly dres: GPUBuffer;
  /** Forward through the fused softmax + cross-entropy, which leaves dlogits for backward. */
  readonly forward: Dispatch[] = [];
  /** Forward for evaluation: the same kernels, cross-entropy without its backward half. */
  readonly evalForward: Dispatch[] = [];
  readonly backward: Dispatch[] = [];
  private readonly owned: GPUBuffer[] = [];

  constructor(private readonly k: Kernels, readonly layout: Layout, private readonly state: GpuState, readonly B: number, readonly T: number) {
    const { vocab: V, layers: L, d: C, heads: NH, ctx } = layout.config;
    if (T > ctx) throw new RangeError(`sequence length T=${T} exceeds the model's context ${ctx}`);
    try {
      const N = (this.N = B * T);
      const f32 = (member: string, floats: number) => this.buffer(member, floats);
      this.tokens = this.buffer('tokens', N);
      this.targets = this.buffer('targets', N);
      this.tokenIndex = this.buffer('tokenIndex', V + 1 + N);
      this.tokenIndexHost = new Uint32Array(V + 1 + N);
      this.losses = f32('losses', N);
      const encoded = f32('encoded', N * C);
      const acts: LayerActs[] = [];
      for (let l = 0; l < L; l++) {
        const b = (name: string, floats: number) => f32(`${name}[${l}]`, floats);
        acts.push({
          ln1: b('ln1', N * C), ln1Mean: b('ln1Mean', N), ln1Rstd: b('ln1Rstd', N), qkv: b('qkv', N * 3 * C),
          lse: b('lse', B * NH * T), atty: b('atty', N * C), res2: b('res2', N * C),
          ln2: b('ln2', N * C), ln2Mean: b('ln2Mean', N), ln2Rstd: b('ln2Rstd', N),
          fch: b('fch', N * 4 * C), fchGelu: b('fchGelu', N * 4 * C), res3: b('res3', N * C),
        });
      }
      const lnf = f32('lnf', N * C), lnfMean = f32('lnfMean', N), lnfRstd = f32('lnfRstd', N);
      const logits = f32('logits', N * V); // (N, V), overwritten by dlogits
      // backward scratch
      this.dres = f32('dres', N * C);
      const dln = f32('dln', N * C), datty = f32('datty', N * C), dqkv = f32('dqkv', N * 3 * C), dfch = f32('dfch', N * 4 * C);
      const attD = f32('attD', B * NH * T);
      const lnScratch = f32('lnScratch', layernormScratchFloats(N, C));

      const P = (name: string) => state.tensor(state.params, tensor(layout, name));
      const G = (name: string) => state.tensor(state.grads, tensor(layout, name));
      const LP = (l: number, name: Parameters<typeof layerTensor>[2]) => state.tensor(state.params, layerTensor(layout, l, name));
      const LG = (l: number, name: Parameters<typeof layerTensor>[2]) => state.tensor(state.grads, layerTensor(layout, l, name));
      const wte = P('transformer.wte.weight');

      // ---- forward ----
      const fwd: Dispatch[] = [];
      fwd.push(encoderForward(k, 'GpuGPT.encoder', encoded, this.tokens, wte, P('transformer.wpe.weight'), B, T, C));
      for (let l = 0; l < L; l++) {
        const a = acts[l];
        const resid = l === 0 ? encoded : acts[l - 1].res3;
        const h = `GpuGPT.h${l}`;
        fwd.push(layernormForward(k, `${h}.ln1`, a.ln1, a.ln1Mean, a.ln1Rstd, resid, LP(l, 'ln_1.weight'), LP(l, 'ln_1.bias'), N, C));
        fwd.push(...matmulForward(k, `${h}.qkv`, a.qkv, a.ln1, LP(l, 'attn.c_attn.weight'), LP(l, 'attn.c_attn.bias'), N, C, 3 * C));
        fwd.push(attentionForward(k, `${h}.attn`, a.atty, a.lse, a.qkv, B, T, C, NH));
        fwd.push(...matmulForward(k, `${h}.attproj`, a.res2, a.atty, LP(l, 'attn.c_proj.weight'), LP(l, 'attn.c_proj.bias'), N, C, C, resid));
        fwd.push(layernormForward(k, `${h}.ln2`, a.ln2, a.ln2Mean, a.ln2Rstd, a.res2, LP(l, 'ln_2.weight'), LP(l, 'ln_2.bias'), N, C));
        fwd.push(...matmulGeluForward(k, `${h}.fc`, a.fchGelu, a.fch, a.ln2, LP(l, 'mlp.c_fc.weight'), LP(l, 'mlp.c_fc.bias'), N, C, 4 * C));
        fwd.push(...matmulForward(k, `${h}.fcproj`, a.res3, a.fchGelu, LP(l, 'mlp.c_proj.weight'), LP(l, 'mlp.c_proj.bias'), N, 4 * C, C, a.res2));
      }
      const last = acts[L - 1].res3;
      fwd.push(layernormForward(k, 'GpuGPT.lnf', lnf, lnfMean, lnfRstd, last, P('transformer.ln_f.weight'), P('transformer.ln_f.bias'), N, C));
      // logits = lnf @ wte^T: the output head is tied to the token embedding.
      fwd.push(...matmulDispatches(k, { label: 'GpuGPT.logits', mode: 'nt', M: N, N: V, K: C, a: { ref: lnf, ld: C }, b: { ref: wte, ld: C }, c: { ref: logits, ld: V } }));
      this.forward.push(...fwd, crossentropy(k, 'GpuGPT.crossentropy', this.losses, logits, this.targets, state.stepState, N, V, true));
      this.evalForward.push(...fwd, crossentropy(k, 'GpuGPT.crossentropyEval', this.losses, logits, this.targets, state.stepState, N, V, false));

      // ---- backward ----
      const bwd = this.backward;
      bwd.push(...matmulDispatches(k, { label: 'GpuGPT.logits.dinp', mode: 'nn', M: N, N: C, K: V, a: { ref: logits, ld: V }, b: { ref: wte, ld: C }, c: { ref: dln, ld: C } }));
      bwd.push(...matmulDispatches(k, { label: 'GpuGPT.logits.dweight', mode: 'tn', M: V, N: C, K: N, a: { ref: logits, ld: V }, b: { ref: lnf, ld: C }, c: { ref: G('transformer.wte.weight'), ld: C }, accumulate: true }));
      bwd.push(...layernormBackward(k, 'GpuGPT.lnf.bwd', this.dres, G('transformer.ln_f.weight'), G('transformer.ln_f.bias'), dln, last, P('transformer.ln_f.weight'), lnfMean, lnfRstd, lnScratch, N, C));
      for (let l = L - 1; l >= 0; l--) {
        const a = acts[l];
        const resid = l === 0 ? encoded : acts[l - 1].res3;
        const h = `GpuGPT.h${l}`;
        bwd.push(...matmulBackward(k, `${h}.fcproj.bwd`, dfch, LG(l, 'mlp.c_proj.weight'), LG(l, 'mlp.c_proj.bias'), this.dres, a.fchGelu, LP(l, 'mlp.c_proj.weight'), N, 4 * C, C, a.fch));
        bwd.push(...matmulBackward(k, `${h}.fc.bwd`, dln, LG(l, 'mlp.c_fc.weight'), LG(l, 'mlp.c_fc.bias'), dfch, a.ln2, LP(l, 'mlp.c_fc.weight'), N, C, 4 * C));
        bwd.push(...layernormBackward(k, `${h}.ln2.bwd`, this.dres, LG(l, 'ln_2.weight'), LG(l, 'ln_2.bias'), dln, a.res2, LP(l, 'ln_2.weight'), a.ln2Mean, a.ln2Rstd, lnScratch, N, C));
        bwd.push(...matmulBackward(k, `${h}.attproj.bwd`, datty, LG(l, 'attn.c_proj.weight'), LG(l, 'attn.c_proj.bias'), this.dres, a.atty, LP(l, 'attn.c_proj.weight'), N, C, C));
        bwd.push(...attentionBackward(k, `${h}.attn.bwd`, dqkv, attD, a.lse, a.atty, datty, a.qkv, B, T, C, NH));
        bwd.push(...matmulBackward(k, `${h}.qkv.bwd`, dln, LG(l, 'attn.c_attn.weight'), LG(l, 'attn.c_attn.bias'), dqkv, a.ln1, LP(l, 'attn.c_attn.weight'), N, C, 3 * C));
        bwd.push(...layernormBackward(k, `${h}.ln1.bwd`, this.dres, LG(l, 'ln_1.weight'), LG(l, 'ln_1.bias'), dln, resid, LP(l, 'ln_1.weight'), a.ln1Mean, a.ln1Rstd, lnScratch, N, C));
      }
      bwd.push(...encoderBackward(k, 'GpuGPT.encoder.bwd', G('transformer.wte.weight'), G('transformer.wpe.weight'), this.dres, this.tokenIndex, B, T, C, V));
    } catch (e) {
      this.destroy(); // a half-built model holds no GPU memory
      throw e;
    }
  }

  private buffer(member: string, elems: number): GPUBuffer {
    const buf = this.k.device.createBuffer({
      label: `GpuGPT.${member}`,
      size: Math.max(16, Math.ceil(elems / 4) * 16),
      usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST | GPUBufferUsage.COPY_SRC,
    });
    this.owned.push(buf);
    return buf;
  }

  /** Writes one batch's tokens, targets and token index (queued before the next submit). */
  writeBatch(tokens: Uint32Array, targets: Uint32Array): void {
    if (tokens.length !== this.N || targets.length !== this.N) {
      throw new RangeError(`batch has ${tokens.length} tokens and ${targets.length} targets; this model was built for B*T = ${this.B}*${this.T} = ${this.N}`);
    }
    const V = this.layout.config.vocab;
    for (let i = 0; i < this.N; i++) {
      if (targets[i] >= V) throw new RangeError(`target ${targets[i]} at position ${i} is outside the vocabulary (size ${V})`);
    }
    tokenIndex(this.tokenIndexHost, tokens, V); // also checks the tokens
    const q = this.k.device.queue;
    writeArray(q, this.tokens, tokens);
    writeArray(q, this.targets, targets);
    writeArray(q, this.tokenIndex, this.tokenIndexHost);
  }

  destroy(): void {
    for (const b of this.owned) b.destroy();
    this.owned.length = 0;
  }
}
