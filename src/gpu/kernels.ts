// Pipelines, uniforms and bind groups, made once. A training step is then only a replay of a
// list of Dispatch records (pipeline + bind group + grid) into one compute pass: no pipeline
// or bind group is created and no uniform is written per step.
import { SHADERS, SUBGROUP_SHADERS, type ShaderName } from './shaders.ts';

/** One recorded kernel launch. */
export interface Dispatch {
  label: string;
  pipeline: GPUComputePipeline;
  bindGroup: GPUBindGroup;
  workgroups: [number, number, number];
}

export type MatmulMode = 'nn' | 'nt' | 'tn';

/**
 * Shape of the matmul kernel per product kind: invocations per workgroup along columns (wgX,
 * `cols` columns each: 4, the default, or 8) and rows (wgY), rows per invocation (tm: 8 or 4,
 * or 16 with `quad`),
 * and whether aligned operands use vec4 loads (vec4) or scalar ones. With `tile`, the workgroup-memory kernels
 * (nnTile, ntTile, tnTile) run instead: each invocation owns an 8 x 8 block (tm is then 8) of
 * a (8 wgY) x (8 wgX) workgroup tile; wgX <= 16, and wgY even and <= 16. `splitK` (2..16)
 * splits K: over that many workgroups per tile for a tiled tn, into that many equal ranges run
 * as a batch for nn and nt (where K splits into multiples of 4); a second dispatch adds the
 * partial products up through the product's epilogue (matmulDispatches, splitOf). `quad` (register kernels, wgX a multiple of 4): the four
 * invocations of a quad share their A loads through quadBroadcast (matmul.wgsl's QUAD); it
 * takes effect on devices with the `subgroups` feature only (Kernels.quads) and the autotuner
 * offers it only where a quad product matched the plain one.
 */
export interface MatmulShape { wgX: number; wgY: number; tm: 4 | 8 | 16; vec4: boolean; cols?: 4 | 8; tile?: boolean; splitK?: number; quad?: boolean; prefetch?: boolean; tk?: 8 | 16; swizzle?: 2 | 4 | 8 | 16 }

/**
 * Grid of the grid-stride kernels over whole state buffers (AdamW, outer step, grad norm,
 * embeddings, GELU): workgroup size and the most workgroups launched. SwiftShader pays ~50 us
 * per workgroup, so few large ones win there; a discrete GPU needs tens of thousands of
 * invocations in flight.
 */
export interface StrideShape { wg: number; groups: number }

/** Kernel shapes chosen per adapter by the autotuner (src/gpu/autotune.ts). */
/** A kind of product and the class it was measured at (Tuning.rates). */
export type RateKey = MatmulMode | `${MatmulMode}.large`;

export interface Tuning {
  /** Per product kind, for products below LARGE_GEMM multiply-adds (and all of them without matmulLarge). */
  matmul: Record<MatmulMode, MatmulShape>;
  /** Per product kind, for products of LARGE_GEMM multiply-adds or more; measured on hardware adapters only. */
  matmulLarge?: Record<MatmulMode, MatmulShape>;
  stride: StrideShape;
  /**
   * Causal attention kernels: 'rows' (attention.fwd/bwd.wgsl, an invocation per 4 rows; the
   * default, and what SwiftShader runs best) or 'tiled' (attention.tiled.wgsl, 256 invocations
   * share each pair of 16-row tiles; head sizes up to ATT_TILED_MAX_HEAD, larger ones use rows)
   * or 'blocked' (attention.blocked.wgsl, 64 invocations per pair of 32-row tiles, each a 4 x 4
   * block of scores from vec4 loads; head sizes a multiple of 4 up to ATT_TILED_MAX_HEAD, others
   * as 'tiled').
   */
  attention?: 'rows' | 'tiled' | 'blocked';
  /**
   * LayerNorm kernels: 'rows' (an invocation per row; the default, and SwiftShader's best) or
   * 'wide' (a workgroup of LN_WIDE_WG per row, reading each row side by side; for GPUs, where an
   * invocation walking a row alone reads C floats apart from its neighbours).
   */
  layernorm?: 'rows' | 'wide';
  /**
   * Per product of a model, by productKey: the shape that was fastest for it at its own size
   * (tunedEngine, hardware adapters); it overrides the class shapes above.
   */
  products?: Record<string, MatmulShape>;
  /**
   * What the chosen class shapes ran when they were measured, in GFLOPS (2 M N K over the mean
   * time of a dispatch), by kind: nn, nt, tn and, with matmulLarge, nn.large, nt.large, tn.large.
   * A report (matmulRates), not a choice: it travels with a cached tuning so that a volunteer's
   * speed is known on every start, not only the first.
   */
  rates?: Partial<Record<RateKey, number>>;
  /**
   * The autotuner found this device's quads to be 4 adjacent invocations (quadsMatch): the row
   * attention forward then shares keys across quads. (Quad matmul shapes are only chosen there.)
   */
  quads?: boolean;
}

/**
 * M*N*K from which a product counts as large: a discrete GPU wants other tiles for the MLP's
 * and the logits' products (millions of outputs) than for a small model's (2^27 = 512^3).
 */
export const LARGE_GEMM = 1 << 27;

/** The tuned shape for a product of kind `mode` and size M x N x K (its GEMM shape class). */
export function tunedShape(t: Tuning, mode: MatmulMode, M: number, N: number, K: number): MatmulShape {
  return t.matmulLarge && M * N * K >= LARGE_GEMM ? t.matmulLarge[mode] : t.matmul[mode];
}

/** Every matmul shape a tuning may use (for the device limits they need). */
export function allMatmulShapes(t: Tuning): MatmulShape[] {
  return [...Object.values(t.matmul), ...Object.values(t.matmulLarge ?? {}), ...Object.values(t.products ?? {})];
}

/** Most products a tuning keeps (Tuning.products): past it, only those of the engine tuned last. */
export const MAX_TUNED_PRODUCTS = 128;

/** Used when no autotune ran: shapes that are reasonable everywhere. */
export const DEFAULT_TUNING: Tuning = {
  matmul: { nn: { wgX: 8, wgY: 8, tm: 8, vec4: true }, nt: { wgX: 8, wgY: 8, tm: 8, vec4: true }, tn: { wgX: 8, wgY: 8, tm: 8, vec4: true } },
  stride: { wg: 256, groups: 256 },
};

/** A binding: a whole buffer, or a range of one (offset and size in bytes). */
export type Ref = GPUBuffer | GPUBufferBinding;

export function asBinding(r: Ref): GPUBufferBinding {
  return 'buffer' in r ? r : { buffer: r };
}

/** Bytes a binding spans. */
export function bindingBytes(r: Ref): number {
  const b = asBinding(r);
  return b.size ?? b.buffer.size - (b.offset ?? 0);
}

/** Grid for a grid-stride kernel: enough workgroups to cover n, at most `cap`. */
export function strideGrid(n: number, wg: number, cap = 65535): [number, number, number] {
  return [Math.max(1, Math.min(cap, Math.ceil(n / wg))), 1, 1];
}

/** Packs a uniform struct of 4-byte fields: integers as u32 unless wrapped with f32(). */
export class UniformData {
  private readonly words: ArrayBuffer;
  private readonly view: DataView;
  private n = 0;
  constructor(capacityWords = 32) {
    this.words = new ArrayBuffer(capacityWords * 4);
    this.view = new DataView(this.words);
  }
  u32(...xs: number[]): this {
    for (const x of xs) {
      if (!Number.isInteger(x) || x < 0 || x > 0xffffffff) throw new RangeError(`uniform u32 field out of range: ${x}`);
      this.view.setUint32(4 * this.n++, x, true);
    }
    return this;
  }
  f32(...xs: number[]): this {
    for (const x of xs) this.view.setFloat32(4 * this.n++, x, true);
    return this;
  }
  /** Bytes, padded to 16 (uniform structs are 16-byte aligned). */
  bytes(): ArrayBuffer {
    return this.words.slice(0, Math.max(16, Math.ceil(this.n / 4) * 16));
  }
}

export class Kernels {
  private readonly modules = new Map<string, GPUShaderModule>();
  private readonly pipelines = new Map<string, GPUComputePipeline>();
  private readonly layouts = new Map<string, GPUBindGroupLayout>();
  /** Bound where a kernel's binding is unused (a bias-free matmul's bias slot). */
  readonly dummy: GPUBuffer;
  /** Bound where a writable binding is unused (a separate buffer: one buffer may not be both). */
  readonly dummyOut: GPUBuffer;
  /** Every buffer this object created (uniforms, dummies), destroyed by destroy(). */
  private readonly owned: GPUBuffer[] = [];
  private scratchBuf: GPUBuffer | undefined;

  /**
   * f16 operands (half.wgsl): the matrix products and attention round what they read to f16
   * and accumulate in f32. Off by default; GpuEngine's `half` option turns it on.
   */
  readonly half: boolean;

  /**
   * The device has the `subgroups` feature (acquireDevice asks for it where the adapter has
   * it): the matmul module then carries quad.wgsl and shapes with `quad` use it.
   */
  readonly quads: boolean;

  constructor(readonly device: GPUDevice, readonly tuning: Tuning = DEFAULT_TUNING, opts: { half?: boolean } = {}) {
    this.half = !!opts.half;
    this.quads = device.features.has('subgroups');
    this.dummy = device.createBuffer({ label: 'Kernels.dummy', size: 256, usage: GPUBufferUsage.STORAGE });
    this.dummyOut = device.createBuffer({ label: 'Kernels.dummyOut', size: 256, usage: GPUBufferUsage.STORAGE });
    this.owned.push(this.dummy, this.dummyOut);
  }

  /**
   * Scratch of at least `floats` floats, shared by every dispatch that asks (split-K partial
   * products: each pair of dispatches writes it, then reads it, before the next pair runs; a
   * compute pass orders them). A larger request makes a larger buffer for later dispatches.
   */
  scratch(floats: number): GPUBuffer {
    const size = Math.max(256, Math.ceil(floats * 4 / 256) * 256);
    if (!this.scratchBuf || this.scratchBuf.size < size) {
      this.scratchBuf = this.device.createBuffer({ label: 'Kernels.scratch', size, usage: GPUBufferUsage.STORAGE });
      this.owned.push(this.scratchBuf);
    }
    return this.scratchBuf;
  }

  /** Override constants of a kernel that reads product or attention operands: HALF when set. */
  operandConstants(): Record<string, boolean> {
    return this.half ? { HALF: true } : {};
  }

  /** Grid of a grid-stride kernel over n elements, with the tuned workgroup count cap. */
  strideGrid(n: number): [number, number, number] {
    return strideGrid(n, this.tuning.stride.wg, this.tuning.stride.groups);
  }

  /** The pipeline of a grid-stride kernel (its workgroup size is the override WG). */
  stridePipeline(name: ShaderName, entry: string, constants: Record<string, number | boolean> = {}): GPUComputePipeline {
    return this.pipeline(name, entry, { WG: this.tuning.stride.wg, ...constants });
  }

  module(name: ShaderName): GPUShaderModule {
    let m = this.modules.get(name);
    if (!m) {
      m = this.device.createShaderModule({ label: `Kernels.${name}`, code: (this.quads && SUBGROUP_SHADERS[name]) || SHADERS[name] });
      this.modules.set(name, m);
    }
    return m;
  }

  /**
   * A bind group layout of `kinds` (binding i gets kinds[i]). Explicit layouts let a pipeline
   * keep bindings that its override constants leave unused, so one bind group shape fits all
   * variants of a kernel.
   */
  layout(key: string, kinds: ('read' | 'write' | 'uniform')[]): GPUBindGroupLayout {
    let l = this.layouts.get(key);
    if (!l) {
      l = this.device.createBindGroupLayout({
        label: `Kernels.layout.${key}`,
        entries: kinds.map((k, binding) => ({
          binding,
          visibility: GPUShaderStage.COMPUTE,
          buffer: { type: k === 'uniform' ? 'uniform' : k === 'read' ? 'read-only-storage' : 'storage' },
        })),
      });
      this.layouts.set(key, l);
    }
    return l;
  }

  /** The pipeline for `entry` of shader `name` with `constants`, created on first use. */
  pipeline(name: ShaderName, entry: string, constants: Record<string, number | boolean> = {}, layout?: GPUBindGroupLayout): GPUComputePipeline {
    const key = `${name}:${entry}:${JSON.stringify(constants)}:${layout?.label ?? 'auto'}`;
    let p = this.pipelines.get(key);
    if (!p) {
      const numeric: Record<string, number> = {};
      for (const [k, v] of Object.entries(constants)) numeric[k] = typeof v === 'boolean' ? Number(v) : v;
      p = this.device.createComputePipeline({
        label: `Kernels.${name}.${entry}`,
        layout: layout ? this.device.createPipelineLayout({ label: `Kernels.${name}.${entry}.layout`, bindGroupLayouts: [layout] }) : 'auto',
        compute: { module: this.module(name), entryPoint: entry, constants: numeric },
      });
      this.pipelines.set(key, p);
    }
    return p;
  }

  /** A uniform buffer holding `data`, written once at creation. */
  uniform(label: string, data: UniformData): GPUBuffer {
    const bytes = data.bytes();
    const buf = this.device.createBuffer({ label, size: bytes.byteLength, usage: GPUBufferUsage.UNIFORM, mappedAtCreation: true });
    new Uint8Array(buf.getMappedRange()).set(new Uint8Array(bytes));
    buf.unmap();
    this.owned.push(buf);
    return buf;
  }

  /** A Dispatch whose bind group binds `refs[i]` at binding i (null: binding i is absent). */
  dispatch(label: string, pipeline: GPUComputePipeline, refs: (Ref | null)[], workgroups: [number, number, number]): Dispatch {
    const max = this.device.limits.maxComputeWorkgroupsPerDimension;
    if (workgroups.some((w) => w > max)) {
      throw new RangeError(`${label}: grid ${workgroups.join('x')} exceeds maxComputeWorkgroupsPerDimension=${max}`);
    }
    const entries: GPUBindGroupEntry[] = [];
    refs.forEach((r, binding) => { if (r) entries.push({ binding, resource: asBinding(r) }); });
    const bindGroup = this.device.createBindGroup({ label, layout: pipeline.getBindGroupLayout(0), entries });
    return { label, pipeline, bindGroup, workgroups };
  }

  destroy(): void {
    for (const b of this.owned) b.destroy();
    this.owned.length = 0;
  }
}

/** Records `list` into one compute pass (WebGPU orders the dispatches' storage accesses). */
export function encodeDispatches(pass: GPUComputePassEncoder, list: readonly Dispatch[]): void {
  for (const d of list) {
    pass.setPipeline(d.pipeline);
    pass.setBindGroup(0, d.bindGroup);
    pass.dispatchWorkgroups(d.workgroups[0], d.workgroups[1], d.workgroups[2]);
  }
}

/** queue.writeBuffer for any typed array (SharedArrayBuffer-backed ones included). */
export function writeArray(queue: GPUQueue, buf: GPUBuffer, data: Float32Array | Uint32Array, byteOffset = 0): void {
  queue.writeBuffer(buf, byteOffset, data.buffer as ArrayBuffer, data.byteOffset, data.byteLength);
}
