// The one flat parameter layout (llm.c's malloc_and_point_parameters): every kind of state
// (params, grads, AdamW m and v, slow weights phi, outer momentum) is one Float32Array of
// `layout.total` floats, and this offset table says where each tensor lives. CPU reference,
// GPU buffers, wire format and checkpoints all use it, so a tensor never needs re-packing.
//
// Names and shapes follow Hugging Face GPT-2 (GPT2LMHeadModel), with Conv1D weights stored
// (in, out): y = x @ W + b. A checkpoint therefore loads into PyTorch without renaming.
import type { ModelConfig } from './config.ts';
import { validateModelConfig } from './config.ts';

export interface TensorSpec {
  name: string;
  shape: number[];
  /** Offset in floats into the flat buffer; a multiple of ALIGN. */
  offset: number;
  /** Number of floats (product of shape). */
  size: number;
  /** Decoupled weight decay applies (2-D weights and embeddings; never biases or LayerNorm). */
  decay: boolean;
  /** Initial values: GPT-2 normal(0, std), or constant ones / zeros. */
  init: { kind: 'normal'; std: number } | { kind: 'ones' } | { kind: 'zeros' };
}

export interface Layout {
  config: ModelConfig;
  tensors: TensorSpec[];
  byName: Map<string, TensorSpec>;
  /** Floats in the flat buffer, padding included. */
  total: number;
  /** Real parameters (sum of sizes, no padding). */
  params: number;
}

/**
 * Tensor offsets are aligned to 64 floats = 256 bytes, WebGPU's minStorageBufferOffsetAlignment,
 * so a kernel can bind any single tensor as a sub-range of the flat buffer.
 */
export const ALIGN = 64;

/** Per-layer tensor names, in HF GPT-2 order. */
export const LAYER_TENSORS = [
  'ln_1.weight', 'ln_1.bias',
  'attn.c_attn.weight', 'attn.c_attn.bias',
  'attn.c_proj.weight', 'attn.c_proj.bias',
  'ln_2.weight', 'ln_2.bias',
  'mlp.c_fc.weight', 'mlp.c_fc.bias',
  'mlp.c_proj.weight', 'mlp.c_proj.bias',
] as const;
export type LayerTensor = (typeof LAYER_TENSORS)[number];

export function buildLayout(config: ModelConfig): Layout {
  validateModelConfig(config);
  const { vocab: V, ctx: T, layers: L, d: C } = config;
  const std = 0.02;
  // GPT-2: residual projections scaled by 1/sqrt(2L) so the residual stream's variance
  // does not grow with depth.
  const residStd = std / Math.sqrt(2 * L);
  const specs: Omit<TensorSpec, 'offset' | 'size'>[] = [];
  const w = (name: string, shape: number[], s = std) =>
    specs.push({ name, shape, decay: true, init: { kind: 'normal', std: s } });
  const b = (name: string, shape: number[]) => specs.push({ name, shape, decay: false, init: { kind: 'zeros' } });
  const g = (name: string, shape: number[]) => specs.push({ name, shape, decay: false, init: { kind: 'ones' } });

  w('transformer.wte.weight', [V, C]); // (V, C), tied with the output head
  w('transformer.wpe.weight', [T, C], 0.01); // (T, C); GPT-2 initialises positions at 0.01
  for (let l = 0; l < L; l++) {
    const p = `transformer.h.${l}.`;
    g(p + 'ln_1.weight', [C]);
    b(p + 'ln_1.bias', [C]);
    w(p + 'attn.c_attn.weight', [C, 3 * C]); // (C, 3C): q | k | v
    b(p + 'attn.c_attn.bias', [3 * C]);
    w(p + 'attn.c_proj.weight', [C, C], residStd); // (C, C)
    b(p + 'attn.c_proj.bias', [C]);
    g(p + 'ln_2.weight', [C]);
    b(p + 'ln_2.bias', [C]);
    w(p + 'mlp.c_fc.weight', [C, 4 * C]); // (C, 4C)
    b(p + 'mlp.c_fc.bias', [4 * C]);
    w(p + 'mlp.c_proj.weight', [4 * C, C], residStd); // (4C, C)
    b(p + 'mlp.c_proj.bias', [C]);
  }
  g('transformer.ln_f.weight', [C]);
  b('transformer.ln_f.bias', [C]);

  const tensors: TensorSpec[] = [];
  let offset = 0;
  let params = 0;
  for (const s of specs) {
    const size = s.shape.reduce((a, x) => a * x, 1);
    tensors.push({ ...s, offset, size });
    offset += Math.ceil(size / ALIGN) * ALIGN;
    params += size;
  }
  return { config, tensors, byName: new Map(tensors.map((t) => [t.name, t])), total: offset, params };
}

/** The tensor `name` of layer `l` (e.g. layerTensor(layout, 0, 'ln_1.weight')). */
export function layerTensor(layout: Layout, l: number, name: LayerTensor): TensorSpec {
  return tensor(layout, `transformer.h.${l}.${name}`);
}

export function tensor(layout: Layout, name: string): TensorSpec {
  const t = layout.byName.get(name);
  if (!t) throw new Error(`no tensor named "${name}" in this layout`);
  return t;
}

/** A view (no copy) of one tensor inside a flat buffer laid out by `layout`. */
export function view(flat: Float32Array, spec: TensorSpec): Float32Array {
  return flat.subarray(spec.offset, spec.offset + spec.size);
}

/** Float32Array of layout.total zeros: grads, AdamW m/v, outer momentum start here. */
export function zerosLike(layout: Layout): Float32Array {
  return new Float32Array(layout.total);
}

/** A short stable fingerprint of the layout (names, shapes, offsets) for config hashes. */
export function layoutSignature(layout: Layout): string {
  return layout.tensors.map((t) => `${t.name}:${t.shape.join('x')}@${t.offset}`).join(';');
}
