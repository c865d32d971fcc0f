// Host side of src/shaders/matmul.wgsl: turns a product description into one Dispatch, with
// the load width (VEC4) from the operands' alignment and the tuned preference, and the
// workgroup shape from the autotuned Tuning.
import { bindingBytes, type Dispatch, type Kernels, type MatmulMode, type MatmulShape, type Ref, tunedShape, UniformData } from './kernels.ts';

/** One matrix operand: a buffer binding plus an element offset and row stride (floats). */
export interface Operand {
  ref: Ref;
  /** Row stride in floats. */
  ld: number;
  /** Offset of element (0, 0) in floats, inside the binding. */
  off?: number;
  /** Batched products: offset per outer batch index (z / inner) and per inner index (z % inner). */
  outer?: number;
  inner?: number;
}

export interface MatmulSpec {
  label: string;
  /** nn: A @ B;  nt: A @ B^T;  tn: A^T @ B.  C is (M, N); K is the summed dimension. */
  mode: MatmulMode;
  M: number;
  N: number;
  K: number;
  a: Operand;
  b: Operand;
  c: Operand;
  /** Adds bias[col] (N floats at `off`). */
  bias?: { ref: Ref; off?: number };
  /** tn only: also dbias[col] += sum over the K rows of B (the bias gradient next to dW). */
  biasGrad?: { ref: Ref; off?: number };
  /**
   * residual: C = ... + R;  geluGrad: C = ... * gelu'(R);  gelu: C = GELU(...) and the
   * pre-activation is written to R (the output the GELU backward reads). R is (M, ld).
   */
  epilogue?: { kind: 'residual' | 'geluGrad' | 'gelu'; ref: Ref; ld: number; off?: number };
  /** C += result (parameter gradients). */
  accumulate?: boolean;
  /** Scales the product (attention's 1/sqrt(head size)). */
  alpha?: number;
  /** z = 0..count-1, split as (z / inner, z % inner) for the operands' outer/inner offsets. */
  batch?: { count: number; inner: number };
}

const MM_LAYOUT = ['read', 'read', 'read', 'read', 'write', 'uniform', 'write', 'read', 'read'] as const;

/** True when every A/B load of the product can be an aligned vec4 (the tuning may still prefer scalar). */
export function vec4Aligned(s: MatmulSpec): boolean {
  const ints = [s.a.ld, s.b.ld, s.a.off ?? 0, s.b.off ?? 0, s.a.outer ?? 0, s.a.inner ?? 0, s.b.outer ?? 0, s.b.inner ?? 0];
  const bytes = [s.a.ref, s.b.ref].flatMap((r) => ['buffer' in r ? r.offset ?? 0 : 0, bindingBytes(r)]);
  return ints.every((x) => x % 4 === 0) && bytes.every((x) => x % 16 === 0);
}

/**
 * What identifies a product for the tuning: its kind, what it fuses (bias, epilogue, bias
 * gradient, accumulation) and its sizes, e.g. `nn+bias+residual:4096x768x3072`.
 */
export function productKey(s: MatmulSpec): string {
  const parts = [s.mode, s.bias && 'bias', s.epilogue?.kind, s.biasGrad && 'biasGrad', s.accumulate && 'acc'].filter(Boolean);
  return `${parts.join('+')}:${s.M}x${s.N}x${s.K}`;
}

const built = new WeakMap<Kernels, Map<string, MatmulSpec>>();

/** The products built on `k`'s tuned shapes, by productKey (the first of each): what tunedEngine times. */
export function productsOf(k: Kernels): Map<string, MatmulSpec> {
  let m = built.get(k);
  if (!m) built.set(k, m = new Map());
  return m;
}

/** The tuning's shape for product `s` (its own, else its class's), noted in productsOf(k). */
export function tunedFor(k: Kernels, s: MatmulSpec): MatmulShape {
  const key = productKey(s);
  const products = productsOf(k);
  if (!s.batch && !products.has(key)) products.set(key, s);
  return k.tuning.products?.[key] ?? tunedShape(k.tuning, s.mode, s.M, s.N, s.K);
}

/** Null when the kernels can run `shape`; otherwise what is wrong with it (a tile's limits). */
export function shapeProblem(shape: MatmulShape): string | null {
  if (shape.tile && !(shape.tm === 8 && shape.wgX <= 16 && shape.wgY <= 16 && shape.wgY % 2 === 0)) {
    return `a tiled matmul needs tm 8, wgX <= 16 and an even wgY <= 16, got ${JSON.stringify(shape)}`;
  }
  if (shape.cols !== undefined && shape.cols !== 4 && shape.cols !== 8) return `cols must be 4 or 8, got ${JSON.stringify(shape)}`;
  if (shape.tile && shape.cols === 8) return `cols 8 is a register-block shape; a tiled matmul has its own 8 x 8 block, got ${JSON.stringify(shape)}`;
  if (shape.tm === 16 && !shape.quad) return `tm 16 takes its rows 8..15 from a quad's broadcasts: it needs quad, got ${JSON.stringify(shape)}`;
  if (shape.quad && (shape.tile || shape.wgX % 4 !== 0)) return `quad shares loads across 4 adjacent invocations of a register kernel: it needs no tile and wgX a multiple of 4, got ${JSON.stringify(shape)}`;
  if (shape.tk !== undefined && !((shape.tk === 8 || shape.tk === 16) && shape.tile)) return `tk is a tiled matmul's stage depth, 8 or 16: it needs tile, got ${JSON.stringify(shape)}`;
  // Prefetch: each invocation holds 2 tk / wgX vec4s of A and 2 tk / wgY of B a stage (at most
  // 4 each), and two stages fit each tile array (tk * max(wgX, wgY) <= 128).
  const tk = shape.tk ?? 8;
  if (shape.prefetch && !(shape.tile && [shape.wgX, shape.wgY].every((w) => (2 * tk) % w === 0 && 2 * tk <= 4 * w && tk * w <= 128))) {
    return `prefetch double-buffers a tiled matmul's stages: it needs tile, and wgX, wgY of 4, 8 or 16 with tk 8 or of 8 with tk 16, got ${JSON.stringify(shape)}`;
  }
  if (shape.swizzle !== undefined && !([2, 4, 8, 16].includes(shape.swizzle) && shape.tile)) {
    return `swizzle orders a tiled matmul's workgroups in groups of 2, 4, 8 or 16 rows of tiles: it needs tile, got ${JSON.stringify(shape)}`;
  }
  return null;
}

/**
 * The K split that `shape` gives product `s` (1: none; never for a batched product).
 *   tn, a tiled shape, no bias or epilogue: K ranges over the workgroups of each tile
 *     (tnTile's SPLIT_K; the bias gradient rides with the first range);
 *   nn, nt, any shape, no bias gradient: K in `split` equal ranges, each a multiple of 4 long,
 *     run as a batch of partial products (a K that does not split so runs whole). A long K with
 *     few outputs (a layer's output projection from the MLP's width) otherwise leaves most of a
 *     GPU idle.
 * Either way splitSum adds the partial products in order, then applies the scale, bias and
 * epilogue.
 */
export function splitOf(s: MatmulSpec, shape: MatmulShape): number {
  const split = shape.splitK ?? 1;
  if (!Number.isInteger(split) || split < 1 || split > 16) throw new RangeError(`${s.label}: splitK must be an integer in 1..16, got ${split}`);
  if (split === 1 || s.batch) return 1;
  if (s.mode === 'tn') return shape.tile && !s.epilogue && !s.bias ? Math.min(split, Math.ceil(s.K / 8)) : 1;
  return !s.biasGrad && s.K % (4 * split) === 0 ? split : 1;
}

/**
 * The dispatches of product `s`: one (matmul), or for a K split (splitOf) two: the partial
 * products of the K ranges into slabs of the shared scratch, then their sum into C, in slab
 * order, through the product's scale, bias and epilogue (accumulating when `s` accumulates).
 */
export function matmulDispatches(k: Kernels, s: MatmulSpec, shape: MatmulShape = tunedFor(k, s)): Dispatch[] {
  const slab = s.M * s.N;
  // No more slabs than one storage binding holds (for nn and nt, still equal ranges of K).
  const fits = Math.floor(k.device.limits.maxStorageBufferBindingSize / (4 * slab));
  let split = Math.min(splitOf(s, shape), fits);
  while (s.mode !== 'tn' && split > 1 && s.K % (4 * split) !== 0) split--;
  if (split <= 1) return [matmul(k, s, { ...shape, splitK: 1 })];
  const scratch = k.scratch(split * slab);
  const plain = { ...s, label: `${s.label}.split`, bias: undefined, epilogue: undefined, accumulate: false, alpha: undefined, batch: { count: split, inner: 1 } };
  const slabs = { ref: scratch, ld: s.N, outer: slab };
  let partial: Dispatch;
  if (s.mode === 'tn') {
    partial = matmul(k, { ...plain, a: { ...s.a, outer: 0 }, b: { ...s.b, outer: 0 }, c: slabs }, shape, split);
  } else {
    // Range z of K: A's columns z * per.. (A is M x K either way); B's rows (nn: K x N) or columns (nt: N x K).
    const per = s.K / split;
    partial = matmul(k, { ...plain, K: per, a: { ...s.a, outer: per }, b: { ...s.b, outer: s.mode === 'nn' ? per * s.b.ld : per }, c: slabs }, { ...shape, splitK: 1 });
  }
  const geluOut = s.epilogue?.kind === 'gelu';
  const u = new UniformData()
    .u32(s.M, s.N, split, 0)
    .u32(0, s.c.ld, 0, 0)
    .u32(s.c.off ?? 0, s.bias?.off ?? 0, s.epilogue?.off ?? 0, s.epilogue?.ld ?? 0)
    .u32(1, 0, 0, 0)
    .u32(0, 0, 0)
    .f32(s.alpha ?? 1);
  const constants = { ACCUM: !!s.accumulate, HAS_BIAS: !!s.bias, EPI: s.epilogue ? { residual: 1, geluGrad: 2, gelu: 3 }[s.epilogue.kind] : 0 };
  const sum = k.dispatch(`${s.label}.splitSum`, k.pipeline('matmul', 'splitSum', constants, k.layout('matmul', [...MM_LAYOUT])),
    [k.dummy, k.dummy, s.bias?.ref ?? k.dummy, (!geluOut && s.epilogue?.ref) || k.dummy, s.c.ref, k.uniform(`${s.label}.splitSum.uniform`, u),
      geluOut ? s.epilogue!.ref : k.dummyOut, scratch, k.dummy],
    [Math.min(k.device.limits.maxComputeWorkgroupsPerDimension, Math.ceil(slab / 256)), 1, 1]);
  return [partial, sum];
}

/**
 * One Dispatch for `s`; `shape` overrides the tuned workgroup shape (the autotuner's
 * candidates). A shape's splitK is matmulDispatches' business: here `splitK` (internal) is the
 * K split of a partial-product dispatch, whose batch index z is the K range.
 */
export function matmul(k: Kernels, s: MatmulSpec, tuned: MatmulShape = tunedFor(k, s), splitK = 1): Dispatch {
  for (const [name, v] of [['M', s.M], ['N', s.N], ['K', s.K]] as const) {
    if (!Number.isInteger(v) || v < 1) throw new RangeError(`${s.label}: matmul ${name} must be a positive integer, got ${v}`);
  }
  const problem = shapeProblem(tuned);
  if (problem) throw new RangeError(`${s.label}: ${problem}`);
  // On a device without subgroups a quad shape (a cached tuning) runs the plain kernel, 16 rows as 8.
  const shape: MatmulShape = tuned.quad && !k.quads ? { ...tuned, quad: false, tm: tuned.tm === 16 ? 8 : tuned.tm } : tuned;
  const vec4 = shape.vec4 && vec4Aligned(s);
  const constants = {
    VEC4: vec4,
    WG_X: shape.wgX,
    WG_Y: shape.wgY,
    TM: shape.tm,
    TN: shape.cols ?? 4,
    HAS_BIAS: !!s.bias,
    ACCUM: !!s.accumulate,
    EPI: s.epilogue ? { residual: 1, geluGrad: 2, gelu: 3 }[s.epilogue.kind] : 0,
    BIAS_GRAD: !!s.biasGrad,
    QUAD: !!shape.quad,
    PREFETCH: !!shape.prefetch,
    TK: shape.tk ?? 8,
    SWIZZLE: shape.swizzle ?? 0,
    ...(splitK > 1 ? { SPLIT_K: splitK } : {}),
    ...k.operandConstants(),
  };
  if (s.biasGrad && (s.mode !== 'tn' || s.bias)) throw new Error(`${s.label}: biasGrad needs mode tn and no bias`);
  const geluOut = s.epilogue?.kind === 'gelu';
  if (geluOut && (s.biasGrad || s.accumulate)) throw new Error(`${s.label}: the gelu epilogue writes its own output; it cannot accumulate or take biasGrad`);
  const layout = k.layout('matmul', [...MM_LAYOUT]);
  const pipeline = k.pipeline('matmul', shape.tile ? `${s.mode}Tile` : s.mode, constants, layout);
  const batch = s.batch ?? { count: 1, inner: 1 };
  const u = new UniformData()
    .u32(s.M, s.N, s.K, s.a.ld)
    .u32(s.b.ld, s.c.ld, s.a.off ?? 0, s.b.off ?? 0)
    .u32(s.c.off ?? 0, s.bias?.off ?? s.biasGrad?.off ?? 0, s.epilogue?.off ?? 0, s.epilogue?.ld ?? 0)
    .u32(batch.inner, s.a.outer ?? 0, s.a.inner ?? 0, s.b.outer ?? 0)
    .u32(s.b.inner ?? 0, s.c.outer ?? 0, s.c.inner ?? 0)
    .f32(s.alpha ?? 1);
  const uniform = k.uniform(`${s.label}.uniform`, u);
  // Register kernels: one invocation per TM x cols block (biasGrad: one more row of blocks).
  // Tiled kernels: one workgroup per (8 wgY) x (8 wgX) tile (biasGrad: one more row of tiles).
  const grid: [number, number, number] = shape.tile
    ? [Math.ceil(s.N / (8 * shape.wgX)), Math.ceil(s.M / (8 * shape.wgY)) + (s.biasGrad ? 1 : 0), batch.count]
    : [Math.ceil(Math.ceil(s.N / (shape.cols ?? 4)) / shape.wgX), Math.ceil((Math.ceil(s.M / shape.tm) + (s.biasGrad ? 1 : 0)) / shape.wgY), batch.count];
  return k.dispatch(s.label, pipeline,
    // Each operand goes to the view its load width reads; the other view gets the dummy.
    // The gelu epilogue's pre-activation output and biasGrad share the writable aux binding.
    [vec4 ? s.a.ref : k.dummy, vec4 ? s.b.ref : k.dummy, s.bias?.ref ?? k.dummy, (!geluOut && s.epilogue?.ref) || k.dummy, s.c.ref, uniform,
      s.biasGrad?.ref ?? (geluOut ? s.epilogue!.ref : k.dummyOut), vec4 ? k.dummy : s.a.ref, vec4 ? k.dummy : s.b.ref], grid);
}
