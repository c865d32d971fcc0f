// One builder per GPT-2 operation, named and ordered like the CPU reference
// (src/model/reference.ts, after llm.c): outputs first, then inputs, then sizes. Each returns
// the Dispatch records of its kernels, with their uniforms written once, here.
import { type Dispatch, type Kernels, type Ref, strideGrid, UniformData } from './kernels.ts';
import { matmulDispatches } from './matmul.ts';

/** out (B,T,C) = wte[tokens] + wpe[t]. */
export function encoderForward(k: Kernels, label: string, out: Ref, tokens: Ref, wte: Ref, wpe: Ref, B: number, T: number, C: number): Dispatch {
  const u = k.uniform(`${label}.uniform`, new UniformData().u32(B * T, T, C, 0));
  return k.dispatch(label, k.stridePipeline('encoderFwd', 'main'), [tokens, wte, wpe, out, u], k.strideGrid(B * T * C));
}

/**
 * The token index encoderBackward reads: offsets (V+1) then the positions of each token id in
 * ascending order (N), a counting sort of `tokens`. Written into `out` (V+1+N u32).
 */
export function tokenIndex(out: Uint32Array, tokens: Uint32Array, V: number): Uint32Array {
  const N = tokens.length;
  if (out.length !== V + 1 + N) throw new RangeError(`tokenIndex: out has ${out.length} slots, needs V+1+N = ${V + 1 + N}`);
  out.fill(0, 0, V + 1);
  for (let n = 0; n < N; n++) {
    const t = tokens[n];
    if (t >= V) throw new RangeError(`token ${t} at position ${n} is outside the vocabulary (size ${V})`);
    out[t + 1]++;
  }
  for (let v = 0; v < V; v++) out[v + 1] += out[v];
  // Fill positions by walking n upwards, using offsets[t] as a moving cursor, then restore.
  for (let n = 0; n < N; n++) out[V + 1 + out[tokens[n]]++] = n;
  for (let v = V; v > 0; v--) out[v] = out[v - 1];
  out[0] = 0;
  return out;
}

/** dwte (V,C) += dout gathered by token (via tokenIndex); dwpe (T,C) += sum over the batch. */
export function encoderBackward(k: Kernels, label: string, dwte: Ref, dwpe: Ref, dout: Ref, index: Ref, B: number, T: number, C: number, V: number): Dispatch[] {
  const u = k.uniform(`${label}.uniform`, new UniformData().u32(B * T, T, C, V));
  return [
    k.dispatch(`${label}.wpe`, k.stridePipeline('encoderBwd', 'wpe'), [null, dout, dwpe, u], k.strideGrid(T * C)),
    k.dispatch(`${label}.wte`, k.stridePipeline('encoderBwd', 'wte'), [index, dout, dwte, u], k.strideGrid(V * C)),
  ];
}

/** Invocations of a workgroup of the `wide` LayerNorm kernels (one workgroup per row). */
export const LN_WIDE_WG = 128;

/** Whether the LayerNorms run one workgroup per row (`wide`) on this tuning. */
export function layernormWide(k: Kernels): boolean {
  return k.tuning.layernorm === 'wide';
}

/** out (N,C), mean (N), rstd (N) = LayerNorm(inp (N,C)) with weight, bias (C). */
export function layernormForward(k: Kernels, label: string, out: Ref, mean: Ref, rstd: Ref, inp: Ref, weight: Ref, bias: Ref, N: number, C: number): Dispatch {
  const u = k.uniform(`${label}.uniform`, new UniformData().u32(N, C, 0, 0));
  const refs = [inp, weight, bias, out, mean, rstd, u];
  if (layernormWide(k)) return k.dispatch(label, k.pipeline('layernormFwd', 'wide', { WG: LN_WIDE_WG }), refs, [Math.min(N, 65535), 1, 1]);
  return k.dispatch(label, k.pipeline('layernormFwd', 'main'), refs, strideGrid(N, 64));
}

/** Rows per chunk of the LayerNorm parameter-gradient reduction. */
export const LN_ROWS_PER_CHUNK = 64;

/** Floats of scratch layernormBackward needs for N rows of C channels. */
export function layernormScratchFloats(N: number, C: number): number {
  return Math.ceil(N / LN_ROWS_PER_CHUNK) * C * 2;
}

/**
 * dinp (N,C) += ..., dweight (C) += ..., dbias (C) += ...; scratch holds
 * layernormScratchFloats(N, C) floats (shared by every LayerNorm of a step: they run in turn).
 */
export function layernormBackward(k: Kernels, label: string, dinp: Ref, dweight: Ref, dbias: Ref, dout: Ref, inp: Ref, weight: Ref, mean: Ref, rstd: Ref, scratch: Ref, N: number, C: number): Dispatch[] {
  const chunks = Math.ceil(N / LN_ROWS_PER_CHUNK);
  const u = k.uniform(`${label}.uniform`, new UniformData().u32(N, C, LN_ROWS_PER_CHUNK, chunks));
  const refs = [dout, inp, weight, mean, rstd, dinp, null, null, u, scratch];
  const partial = layernormWide(k)
    ? k.dispatch(`${label}.partial`, k.pipeline('layernormBwd', 'wide', { WG: LN_WIDE_WG }), refs, [Math.min(N + Math.ceil(C * chunks / LN_WIDE_WG), 65535), 1, 1])
    : k.dispatch(`${label}.partial`, k.pipeline('layernormBwd', 'partial'), refs, strideGrid(Math.max(N, C * chunks), 64));
  return [
    partial,
    k.dispatch(`${label}.dparamsFinal`, k.pipeline('layernormBwd', 'dparamsFinal'), [null, null, null, null, null, null, dweight, dbias, u, scratch], [Math.ceil(C / 64), 1, 1]),
  ];
}

/** out (N,OC) = inp (N,C) @ weight (C,OC) + bias (OC) [+ residual (N,OC)]. */
export function matmulForward(k: Kernels, label: string, out: Ref, inp: Ref, weight: Ref, bias: Ref | null, N: number, C: number, OC: number, residual?: Ref): Dispatch[] {
  return matmulDispatches(k, {
    label, mode: 'nn', M: N, N: OC, K: C,
    a: { ref: inp, ld: C }, b: { ref: weight, ld: OC }, c: { ref: out, ld: OC },
    bias: bias ? { ref: bias } : undefined,
    epilogue: residual ? { kind: 'residual', ref: residual, ld: OC } : undefined,
  });
}

/**
 * dinp (N,C) = dout @ weight^T [* gelu'(geluInput) when the input came out of a GELU],
 * dweight (C,OC) += inp^T @ dout, dbias (OC) += column sums of dout.
 */
export function matmulBackward(k: Kernels, label: string, dinp: Ref | null, dweight: Ref, dbias: Ref | null, dout: Ref, inp: Ref, weight: Ref, N: number, C: number, OC: number, geluInput?: Ref): Dispatch[] {
  const out: Dispatch[] = [];
  if (dinp) {
    out.push(...matmulDispatches(k, {
      label: `${label}.dinp`, mode: 'nt', M: N, N: C, K: OC,
      a: { ref: dout, ld: OC }, b: { ref: weight, ld: OC }, c: { ref: dinp, ld: C },
      epilogue: geluInput ? { kind: 'geluGrad', ref: geluInput, ld: C } : undefined,
    }));
  }
  // dW and db in one dispatch (two with a K split): the bias gradient is the tn kernel's extra block row.
  out.push(...matmulDispatches(k, {
    label: `${label}.dweight`, mode: 'tn', M: C, N: OC, K: N,
    a: { ref: inp, ld: C }, b: { ref: dout, ld: OC }, c: { ref: dweight, ld: OC }, accumulate: true,
    biasGrad: dbias ? { ref: dbias } : undefined,
  }));
  return out;
}

/**
 * out (N,OC) = GELU(inp (N,C) @ weight (C,OC) + bias (OC)), and preact (N,OC) the value before
 * the GELU (what the backward's gelu' reads): the MLP's first layer and its GELU in one kernel.
 */
export function matmulGeluForward(k: Kernels, label: string, out: Ref, preact: Ref, inp: Ref, weight: Ref, bias: Ref, N: number, C: number, OC: number): Dispatch[] {
  return matmulDispatches(k, {
    label, mode: 'nn', M: N, N: OC, K: C,
    a: { ref: inp, ld: C }, b: { ref: weight, ld: OC }, c: { ref: out, ld: OC },
    bias: { ref: bias }, epilogue: { kind: 'gelu', ref: preact, ld: OC },
  });
}

/** Query/key rows per tile of the tiled attention kernels (BT in attention.tiled.wgsl). */
export const ATT_TILE = 16;
/** Rows per workgroup of the row kernels (attention.fwd/bwd.wgsl): WG = 16 invocations of 4 rows. */
export const ATT_ROWS_PER_WG = 64;
/** Largest head size the fused attention kernels hold in registers (HS_MAX in attention.*.wgsl). */
export const ATT_MAX_HEAD = 128;
/** Largest head size of the tiled attention kernels (HS_MAX in attention.tiled.wgsl: 16 KiB of tiles). */
export const ATT_TILED_MAX_HEAD = 64;
const TILED_LAYOUT = ['read', 'read', 'read', 'read', 'write', 'write', 'uniform'] as const;

/**
 * Whether the row attention forward over heads of size `hs` shares key rows across quads (QUAD):
 * 1.3x on SwiftShader. The backward kernels gained nothing from it (their time goes to the
 * register rows they keep, not to the reads) and stay plain.
 */
export function attentionQuads(k: Kernels, hs: number): boolean {
  return k.quads && k.tuning.quads === true && hs % 4 === 0;
}

/** Query/key rows per tile of the register-blocked attention kernels (BT in attention.blocked.wgsl). */
export const ATT_BLOCK_TILE = 32;

/**
 * The attention kernels that run heads of size `hs` on this tuning: 'blocked' needs a head size
 * that is a multiple of 4 of at most ATT_TILED_MAX_HEAD (else it runs 'tiled'), and 'tiled' one
 * of at most ATT_TILED_MAX_HEAD (else 'rows').
 */
export function attentionKind(k: Kernels, hs: number): 'rows' | 'tiled' | 'blocked' {
  const want = k.tuning.attention ?? 'rows';
  if (want === 'rows' || hs > ATT_TILED_MAX_HEAD) return 'rows';
  return want === 'blocked' && hs % 4 === 0 ? 'blocked' : 'tiled';
}

/** Whether attention over heads of size `hs` runs the tiled kernels on this tuning. */
export function attentionTiled(k: Kernels, hs: number): boolean {
  return attentionKind(k, hs) === 'tiled';
}

function attentionUniform(k: Kernels, label: string, T: number, C: number, NH: number): { u: GPUBuffer; hs: number; tiles: number; rowGroups: number } {
  const hs = C / NH;
  if (!Number.isInteger(hs) || hs > ATT_MAX_HEAD) {
    throw new RangeError(`${label}: head size C/NH = ${C}/${NH} must be an integer of at most ${ATT_MAX_HEAD}`);
  }
  const u = k.uniform(`${label}.uniform`, new UniformData().u32(T, C, NH).f32(1 / Math.sqrt(hs)));
  return { u, hs, tiles: Math.ceil(T / ATT_TILE), rowGroups: Math.ceil(T / ATT_ROWS_PER_WG) };
}

/**
 * out (B,T,C) = causal multi-head attention of qkv (B,T,3C), one fused kernel; lse (B,NH,T)
 * keeps each score row's log-sum-exp for the backward pass.
 */
export function attentionForward(k: Kernels, label: string, out: Ref, lse: Ref, qkv: Ref, B: number, T: number, C: number, NH: number): Dispatch {
  const { u, hs, tiles, rowGroups } = attentionUniform(k, label, T, C, NH);
  const kind = attentionKind(k, hs);
  if (kind === 'blocked') {
    const layout = k.layout('attentionTiled', [...TILED_LAYOUT]);
    return k.dispatch(label, k.pipeline('attentionBlocked', 'fwd', { HS: hs, ...k.operandConstants() }, layout), [qkv, k.dummy, k.dummy, k.dummy, out, lse, u], [Math.ceil(T / ATT_BLOCK_TILE), B * NH, 1]);
  }
  if (kind === 'tiled') {
    const layout = k.layout('attentionTiled', [...TILED_LAYOUT]);
    return k.dispatch(label, k.pipeline('attentionTiled', 'fwd', { HS: hs, ...k.operandConstants() }, layout), [qkv, k.dummy, k.dummy, k.dummy, out, lse, u], [tiles, B * NH, 1]);
  }
  return k.dispatch(label, k.pipeline('attentionFwd', 'main', { HS: hs, QUAD: attentionQuads(k, hs), ...k.operandConstants() }), [qkv, out, lse, u], [rowGroups, B * NH, 1]);
}

/**
 * dqkv (B,T,3C) = gradient of attention wrt qkv, given the forward's output `out` and `lse`
 * and dout (B,T,C); D (B,NH,T) is scratch. Two kernels; no T x T matrix in global memory.
 */
export function attentionBackward(k: Kernels, label: string, dqkv: Ref, D: Ref, lse: Ref, out: Ref, dout: Ref, qkv: Ref, B: number, T: number, C: number, NH: number): Dispatch[] {
  const { u, hs, tiles, rowGroups } = attentionUniform(k, label, T, C, NH);
  const refs = [qkv, out, dout, lse, dqkv, D, u];
  const kind = attentionKind(k, hs);
  if (kind === 'blocked') {
    const layout = k.layout('attentionTiled', [...TILED_LAYOUT]);
    const grid: [number, number, number] = [Math.ceil(T / ATT_BLOCK_TILE), B * NH, 1];
    return [
      k.dispatch(`${label}.dq`, k.pipeline('attentionBlocked', 'dq', { HS: hs, ...k.operandConstants() }, layout), refs, grid),
      k.dispatch(`${label}.dkv`, k.pipeline('attentionBlocked', 'dkv', { HS: hs, ...k.operandConstants() }, layout), refs, grid),
    ];
  }
  if (kind === 'tiled') {
    const layout = k.layout('attentionTiled', [...TILED_LAYOUT]);
    return [
      k.dispatch(`${label}.dq`, k.pipeline('attentionTiled', 'dq', { HS: hs, ...k.operandConstants() }, layout), refs, [tiles, B * NH, 1]),
      k.dispatch(`${label}.dkv`, k.pipeline('attentionTiled', 'dkv', { HS: hs, ...k.operandConstants() }, layout), refs, [tiles, B * NH, 1]),
    ];
  }
  // One explicit layout for both entry points (dkv does not read `out`).
  const layout = k.layout('attentionBwd', ['read', 'read', 'read', 'read', 'write', 'write', 'uniform']);
  return [
    k.dispatch(`${label}.dq`, k.pipeline('attentionBwd', 'dq', { HS: hs, ...k.operandConstants() }, layout), refs, [rowGroups, B * NH, 1]),
    k.dispatch(`${label}.dkv`, k.pipeline('attentionBwd', 'dkv', { HS: hs, ...k.operandConstants() }, layout), refs, [rowGroups, B * NH, 1]),
  ];
}

/**
 * losses (N) = cross-entropy of softmax(logits (N,V)) at targets; with backward, logits are
 * replaced by dlogits for a mean loss over the N positions, times the loss scale in
 * `stepState` (StepState, step-state.wgsl).
 */
export function crossentropy(k: Kernels, label: string, losses: Ref, logits: Ref, targets: Ref, stepState: Ref, N: number, V: number, backward: boolean): Dispatch {
  const u = k.uniform(`${label}.uniform`, new UniformData().u32(N, V).f32(1 / N).u32(0));
  return k.dispatch(label, k.pipeline('crossentropy', 'main', { BACKWARD: backward }), [logits, targets, losses, u, stepState], strideGrid(N, 64));
}
