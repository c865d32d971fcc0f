// Kernel shapes per adapter: a short timing run at start-up picks the matmul workgroup shape,
// rows per invocation and load width (per product kind, and per GEMM shape class on hardware
// adapters: small and large, see LARGE_GEMM) and the grid-stride workgroup count, and the result is cached by adapter
// (IndexedDB in a browser, a JSON file in Node), so it runs once per machine. The best shape
// on a software GPU is not the best on a real one: SwiftShader pays per workgroup and runs a
// few wide workgroups best, a discrete GPU wants many.
import type { AdapterSummary } from './device.ts';
import { adapterPeak, type Peak } from './peaks.ts';
import { allMatmulShapes, DEFAULT_TUNING, encodeDispatches, Kernels, MAX_TUNED_PRODUCTS, type Dispatch, type MatmulMode, type MatmulShape, type RateKey, type StrideShape, type Tuning, UniformData } from './kernels.ts';
import { GpuEngine, type EngineOptions } from './engine.ts';
import { matmulDispatches, productsOf, shapeProblem, splitOf, type MatmulSpec } from './matmul.ts';
import { attentionBackward, attentionForward, layernormBackward, layernormForward, layernormScratchFloats } from './ops.ts';
import { isTuning } from './tuning-check.ts';
import { STEP_STATE_WORDS } from './state.ts';

/** Bump when kernels change enough that cached shapes should be re-measured. */
export const AUTOTUNE_VERSION = 10;

export interface TuningStore {
  load(key: string): Promise<Tuning | undefined>;
  save(key: string, tuning: Tuning): Promise<void>;
}

export interface AutotuneOptions {
  store?: TuningStore;
  /** Re-measure even when the store has shapes for this adapter. */
  force?: boolean;
  /** Register-block shapes tried on every adapter (default MATMUL_CANDIDATES). */
  matmulCandidates?: MatmulShape[];
  /** Workgroup-memory tile shapes tried on hardware adapters only (default TILE_CANDIDATES). */
  tileCandidates?: MatmulShape[];
  strideCandidates?: StrideShape[];
  /** K splits tried for tn's fastest tile (default SPLIT_CANDIDATES). */
  splitCandidates?: number[];
  /** Rows of tiles per group in the tile order tried on the fastest tile (default SWIZZLE_ROWS). */
  swizzleRows?: 2 | 4 | 8 | 16;
  /** Attention kernels tried on hardware adapters (default all three; software adapters keep 'rows'). */
  attentionCandidates?: NonNullable<Tuning['attention']>[];
  /** Sequence length of the timed attention (default 256). */
  attentionT?: number;
  /** LayerNorm kernels tried on hardware adapters (default both; software adapters keep 'rows'). */
  layernormCandidates?: NonNullable<Tuning['layernorm']>[];
  /** Rows and channels of the timed LayerNorm (default 2048 x 768). */
  layernormN?: number;
  layernormC?: number;
  /** Problem size of the timed matmuls (M = N = K). */
  size?: number;
  /**
   * Problem size of the large GEMM class (M = N = K, default 1024 so that M*N*K >= LARGE_GEMM);
   * measured on hardware adapters only: on a software one (SwiftShader pays per workgroup, and
   * 1024^3 takes seconds a candidate) the small class's shapes serve every product.
   */
  largeSize?: number;
}

export interface AutotuneResult {
  tuning: Tuning;
  fromCache: boolean;
  key: string;
  /** Mean milliseconds per dispatch of every candidate measured (empty when cached). */
  timings: { kernel: string; shape: string; ms: number }[];
  /**
   * Quad shapes (MatmulShape.quad): 'offered' when the device has subgroups and a quad product
   * matched the plain one on every kind, 'mismatch' when one did not (this adapter's quads are
   * not the 4 adjacent invocations the kernel assumes; none is offered), 'no-subgroups' without
   * the feature, 'cached' when the tuning came from the store.
   */
  quads: 'offered' | 'mismatch' | 'no-subgroups' | 'cached';
}

/** Workgroup shapes tried with vec4 loads; the fastest is then also tried with scalar loads. */
export const MATMUL_CANDIDATES: MatmulShape[] = [
  { wgX: 8, wgY: 8, tm: 8, vec4: true }, { wgX: 16, wgY: 4, tm: 8, vec4: true }, { wgX: 4, wgY: 16, tm: 8, vec4: true },
  { wgX: 16, wgY: 16, tm: 8, vec4: true }, { wgX: 16, wgY: 16, tm: 4, vec4: true },
  // 8 x 8 blocks: each load feeds twice the multiply-adds (SwiftShader's best, bench/kernels 06).
  { wgX: 8, wgY: 8, tm: 8, vec4: true, cols: 8 }, { wgX: 16, wgY: 4, tm: 8, vec4: true, cols: 8 }, { wgX: 8, wgY: 4, tm: 8, vec4: true, cols: 8 },
];
/**
 * The workgroup-memory tiled kernels (128 x 128 down to 64 x 64 tiles), tried on hardware
 * adapters only: on SwiftShader their barriers cost more than they save (bench/kernels), and
 * timing them there would only lengthen the first start.
 */
export const TILE_CANDIDATES: MatmulShape[] = [
  { wgX: 16, wgY: 16, tm: 8, vec4: true, tile: true }, { wgX: 16, wgY: 8, tm: 8, vec4: true, tile: true },
  { wgX: 8, wgY: 16, tm: 8, vec4: true, tile: true }, { wgX: 8, wgY: 8, tm: 8, vec4: true, tile: true },
];
/** Quad variants (and 16-row ones of 8-row shapes) are timed of this many of the fastest register shapes (per kind and class). */
export const QUAD_TRIES = 3;
/** Rows of tiles per group in the tile order tried on the fastest tile (`swizzle`). */
export const SWIZZLE_ROWS = 8;
/** K splits tried on tn with its fastest tile (hardware adapters). */
export const SPLIT_CANDIDATES = [2, 4, 8];
export const STRIDE_CANDIDATES: StrideShape[] = [
  { wg: 256, groups: 64 }, { wg: 256, groups: 256 }, { wg: 256, groups: 1024 }, { wg: 256, groups: 4096 },
];

export function shapeName(s: MatmulShape): string {
  return `${s.tile ? 'tile ' : ''}${s.wgX}x${s.wgY}/${s.tm}${s.cols === 8 ? 'x8' : ''}${s.vec4 ? '' : '/scalar'}${s.quad ? '/quad' : ''}${s.prefetch ? '/prefetch' : ''}${s.tk === 16 ? '/k16' : ''}${s.swizzle ? `/swizzle${s.swizzle}` : ''}${(s.splitK ?? 1) > 1 ? `/split${s.splitK}` : ''}`;
}

/** A measured rate of a chosen class shape (Tuning.rates), against the adapter's fp32 peak where known. */
export interface RateLine { kind: RateKey; shape: string; gflops: number; peakShare: number | null }
export interface MatmulRates { peak: Peak | null; rows: RateLine[] }

/** What the tuning's matmul shapes ran when measured (none for the defaults, or for a tuning without rates). */
export function matmulRates(tuning: Tuning, info: AdapterSummary): MatmulRates {
  const peak = info.isSoftware ? null : adapterPeak(info);
  const rows: RateLine[] = [];
  for (const suffix of ['', '.large'] as const) {
    const shapes = suffix ? tuning.matmulLarge : tuning.matmul;
    for (const mode of ['nn', 'nt', 'tn'] as MatmulMode[]) {
      const kind = `${mode}${suffix}` as RateKey;
      const gflops = tuning.rates?.[kind];
      if (gflops === undefined || !shapes) continue;
      rows.push({ kind, shape: shapeName(shapes[mode]), gflops, peakShare: peak ? gflops / peak.gflops : null });
    }
  }
  return { peak, rows };
}

/** One line for logs: "nn 16x4/8 23.40 TFLOPS (35.0%), nt ... of NVIDIA H200 SXM's fp32 peak (66900 GFLOPS)". */
export function describeRates(r: MatmulRates): string {
  if (r.rows.length === 0) return 'matmul rates not measured (default shapes, or a tuning cached without them)';
  const rate = (g: number) => (g >= 1000 ? `${(g / 1000).toFixed(2)} TFLOPS` : `${g.toFixed(2)} GFLOPS`);
  const line = r.rows.map((x) => `${x.kind} ${x.shape} ${rate(x.gflops)}${x.peakShare === null ? '' : ` (${(100 * x.peakShare).toFixed(1)}%)`}`).join(', ');
  return `${line}${r.peak ? ` of ${r.peak.name}'s fp32 peak (${r.peak.gflops} GFLOPS)` : ' (fp32 peak of this adapter unknown)'}`;
}

/** The cache key: which adapter, and which version of the kernels. */
export function tuningKey(info: AdapterSummary): string {
  return `v${AUTOTUNE_VERSION}|${info.vendor}|${info.architecture}|${info.description}`;
}

export async function autotune(device: GPUDevice, info: AdapterSummary, opts: AutotuneOptions = {}): Promise<AutotuneResult> {
  const key = tuningKey(info);
  if (opts.store && !opts.force) {
    const cached = await opts.store.load(key).catch(() => undefined);
    // Checked against the cache's one schema (tuning-schema.ts) by TypeBox's compiled code for it.
    // ... and the kernels' own limits (a tile's sides), which the schema does not express.
    if (cached && isTuning(cached) && allMatmulShapes(cached).every((sh) => shapeProblem(sh) === null)) return { tuning: cached, fromCache: true, key, timings: [], quads: 'cached' };
  }
  const timings: AutotuneResult['timings'] = [];
  const n = opts.size ?? 256;
  const nLarge = info.isSoftware ? 0 : opts.largeSize ?? 1024;
  const k = new Kernels(device, DEFAULT_TUNING);
  const usage = GPUBufferUsage.STORAGE;
  const owned: GPUBuffer[] = [];
  const buf = (label: string, floats: number) => {
    const b = device.createBuffer({ label: `autotune.${label}`, size: floats * 4, usage });
    owned.push(b);
    return b;
  };
  try {
    const quads = !k.quads ? 'no-subgroups' : await quadsMatch(k) ? 'offered' : 'mismatch';
    const candidates = [...opts.matmulCandidates ?? MATMUL_CANDIDATES, ...info.isSoftware ? [] : opts.tileCandidates ?? TILE_CANDIDATES];
    // Per GEMM shape class (the small one, then the large one where measured) and product kind.
    // The large class times tn (the weight gradients: a layer's in x out from a K of every token
    // in the batch) as (size/2)^2 outputs over 4 size rows, the same multiply-adds as size^3:
    // few outputs and a long K, where a tile too large leaves most of a GPU idle.
    const cx: SearchContext = { device, k, candidates, quads: quads === 'offered', splits: opts.splitCandidates ?? SPLIT_CANDIDATES, swizzle: opts.swizzleRows ?? SWIZZLE_ROWS, splitAll: !info.isSoftware, timings };
    // What each chosen shape ran, in GFLOPS (Tuning.rates).
    const rates: NonNullable<Tuning['rates']> = {};
    const searchClass = async (size: number, suffix: '' | '.large'): Promise<Record<MatmulMode, MatmulShape>> => {
      const A = buf(`A${suffix}`, 2 * size * size), B = buf(`B${suffix}`, 2 * size * size), C = buf(`C${suffix}`, size * size);
      const chosen = {} as Record<MatmulMode, MatmulShape>;
      for (const mode of ['nn', 'nt', 'tn'] as MatmulMode[]) {
        const [M, N, K] = mode === 'tn' && suffix ? [size / 2, size / 2, size * 4] : [size, size, size];
        const spec: MatmulSpec = { label: `autotune.matmul.${mode}`, mode, M, N, K, a: { ref: A, ld: mode === 'tn' ? M : K }, b: { ref: B, ld: mode === 'nt' ? K : N }, c: { ref: C, ld: N } };
        const best = await searchProduct(cx, spec, `matmul.${mode}${suffix}`);
        chosen[mode] = best.shape;
        rates[`${mode}${suffix}`] = 2 * M * N * K / best.ms / 1e6;
      }
      return chosen;
    };
    const matmulBest = await searchClass(n, '');
    const matmulLarge = nLarge > 0 ? await searchClass(nLarge, '.large') : undefined;
    // The grid-stride shape, timed on AdamW over 1M floats (the largest such kernel per step).
    const total = 1 << 20;
    const P = buf('params', total), G = buf('grads', total), M = buf('m', total), V = buf('v', total);
    const mask = buf('mask', total / 64), st = buf('stepState', STEP_STATE_WORDS);
    const u = k.uniform('autotune.adamw.uniform', new UniformData().u32(total).f32(0.9, 0.95, 1e-8));
    let bestStride = { ms: Infinity, shape: DEFAULT_TUNING.stride };
    for (const shape of opts.strideCandidates ?? STRIDE_CANDIDATES) {
      if (shape.wg > device.limits.maxComputeInvocationsPerWorkgroup) continue;
      const pipeline = k.pipeline('adamw', 'main', { WG: shape.wg });
      const d = k.dispatch('autotune.adamw', pipeline, [P, G, M, V, mask, st, u], [Math.min(shape.groups, Math.ceil(total / 4 / shape.wg)), 1, 1]);
      const ms = await timeDispatch(device, d);
      timings.push({ kernel: 'adamw', shape: `${shape.wg}x${shape.groups}`, ms });
      if (ms < bestStride.ms) bestStride = { ms, shape };
    }
    // The attention kernels, forward and backward, on 4 sequences of 256 tokens (attentionT), 8
    // heads of 64: enough workgroups of each kind to fill a large GPU, as a model's attention does.
    let attention: Tuning['attention'];
    if (!info.isSoftware) {
      const [B, T, NH, C] = [4, opts.attentionT ?? 256, 8, 512];
      const qkv = buf('qkv', B * T * 3 * C), out = buf('att.out', B * T * C), dout = buf('att.dout', B * T * C);
      const lse = buf('att.lse', B * NH * T), D = buf('att.D', B * NH * T), dqkv = buf('att.dqkv', B * T * 3 * C);
      let best = Infinity;
      for (const kind of opts.attentionCandidates ?? ['rows', 'tiled', 'blocked'] as const) {
        const ka = new Kernels(device, { ...DEFAULT_TUNING, attention: kind });
        try {
          const ds = [attentionForward(ka, 'autotune.attn', out, lse, qkv, B, T, C, NH), ...attentionBackward(ka, 'autotune.attn.bwd', dqkv, D, lse, out, dout, qkv, B, T, C, NH)];
          const ms = await timeDispatch(device, ds);
          timings.push({ kernel: 'attention', shape: kind, ms });
          if (ms < best) { best = ms; attention = kind; }
        } finally {
          ka.destroy();
        }
      }
    }
    // The LayerNorm kernels, forward and backward, on 2048 rows of 768 (layernormN, layernormC).
    let layernorm: Tuning['layernorm'];
    if (!info.isSoftware) {
      const [N, C] = [opts.layernormN ?? 2048, opts.layernormC ?? 768];
      const x = buf('ln.x', N * C), y = buf('ln.y', N * C), dy = buf('ln.dy', N * C), dx = buf('ln.dx', N * C);
      const w = buf('ln.w', C), b = buf('ln.b', C), dw = buf('ln.dw', C), db = buf('ln.db', C);
      const mean = buf('ln.mean', N), rstd = buf('ln.rstd', N), scratch = buf('ln.scratch', layernormScratchFloats(N, C));
      let best = Infinity;
      for (const kind of opts.layernormCandidates ?? ['rows', 'wide'] as const) {
        const kl = new Kernels(device, { ...DEFAULT_TUNING, layernorm: kind });
        try {
          const ds = [layernormForward(kl, 'autotune.ln', y, mean, rstd, x, w, b, N, C), ...layernormBackward(kl, 'autotune.ln.bwd', dx, dw, db, dy, x, w, mean, rstd, scratch, N, C)];
          const ms = await timeDispatch(device, ds);
          timings.push({ kernel: 'layernorm', shape: kind, ms });
          if (ms < best) { best = ms; layernorm = kind; }
        } finally {
          kl.destroy();
        }
      }
    }
    const tuning: Tuning = {
      matmul: matmulBest, ...(matmulLarge ? { matmulLarge } : {}), stride: bestStride.shape,
      ...(attention ? { attention } : {}), ...(layernorm ? { layernorm } : {}), ...(quads === 'offered' ? { quads: true } : {}), rates,
    };
    await opts.store?.save(key, tuning).catch(() => {});
    return { tuning, fromCache: false, key, timings, quads };
  } finally {
    for (const b of owned) b.destroy();
    k.destroy();
  }
}

/**
 * Whether quad products (8 and 16 rows) equal plain ones here, for each kind (nn, nt, tn) on a
 * shape whose edges leave lanes past the last row and column (37 x 45, K 21): the kernels assume
 * a quad is 4 adjacent invocations of a workgroup row, which WebGPU does not promise, so it is
 * checked on the device before any quad shape is timed. All run the same multiply-adds per
 * output in the same order.
 */
export async function quadsMatch(k: Kernels): Promise<boolean> {
  const device = k.device;
  const [M, N, K] = [37, 45, 21];
  const usage = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST;
  const A = device.createBuffer({ label: 'autotune.quads.A', size: M * K * 4, usage });
  const B = device.createBuffer({ label: 'autotune.quads.B', size: K * N * 4, usage });
  const shapes: MatmulShape[] = [
    { wgX: 8, wgY: 4, tm: 8, vec4: false, cols: 8 }, { wgX: 8, wgY: 4, tm: 8, vec4: false, cols: 8, quad: true }, { wgX: 8, wgY: 4, tm: 16, vec4: false, cols: 8, quad: true },
  ];
  const C = device.createBuffer({ label: 'autotune.quads.C', size: 3 * shapes.length * M * N * 4, usage });
  const read = device.createBuffer({ label: 'autotune.quads.read', size: C.size, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
  try {
    const fill = (n: number, seed: number) => Float32Array.from({ length: n }, (_, i) => Math.sin(seed + i * 0.7311));
    device.queue.writeBuffer(A, 0, fill(M * K, 1));
    device.queue.writeBuffer(B, 0, fill(K * N, 2));
    const list: Dispatch[] = [];
    const slot = (mode: number, shape: number) => (mode * shapes.length + shape) * M * N;
    (['nn', 'nt', 'tn'] as MatmulMode[]).forEach((mode, i) => shapes.forEach((shape, j) => {
      list.push(...matmulDispatches(k, {
        label: `autotune.quads.${mode}`, mode, M, N, K, a: { ref: A, ld: mode === 'tn' ? M : K }, b: { ref: B, ld: mode === 'nt' ? K : N },
        c: { ref: C, ld: N, off: slot(i, j) },
      }, shape));
    }));
    const enc = device.createCommandEncoder({ label: 'autotune.quads' });
    const pass = enc.beginComputePass();
    encodeDispatches(pass, list);
    pass.end();
    enc.copyBufferToBuffer(C, 0, read, 0, C.size);
    device.queue.submit([enc.finish()]);
    await read.mapAsync(GPUMapMode.READ);
    const c = new Float32Array(read.getMappedRange().slice(0));
    read.unmap();
    for (let i = 0; i < 3; i++) {
      const plain = c.subarray(slot(i, 0), slot(i, 0) + M * N);
      const scale = plain.reduce((m, x) => Math.max(m, Math.abs(x)), 0);
      if (!(scale > 0)) return false;
      for (let j = 1; j < shapes.length; j++) {
        const quad = c.subarray(slot(i, j), slot(i, j) + M * N);
        if (plain.some((x, e) => !(Math.abs(x - quad[e]) <= 1e-5 * scale))) return false;
      }
    }
    return true;
  } finally {
    for (const b of [A, B, C, read]) b.destroy();
  }
}

interface SearchContext {
  device: GPUDevice;
  /** Kernels to build the candidates with (the engine's own for its products: its f16 and quad settings). */
  k: Kernels;
  candidates: MatmulShape[];
  /** Whether quad shapes may be tried (the device's quads matched the plain kernel). */
  quads: boolean;
  splits: number[];
  /** Rows of tiles per group of the tile order tried (`swizzle`). */
  swizzle: 2 | 4 | 8 | 16;
  /** Whether nn and nt products also try their K split as a batch of ranges (hardware adapters). */
  splitAll: boolean;
  timings: AutotuneResult['timings'];
}

/**
 * The fastest shape for product `spec` and its time (its buffers are overwritten): every
 * candidate that fits the device, then quad variants of the fastest register shapes, the
 * fastest tile prefetched and 16 deep, the fastest of those in groups of tile rows, K splits of
 * the fastest tile where the product can split, and the winner with the other load width.
 */
async function searchProduct(cx: SearchContext, spec: MatmulSpec, kernel: string): Promise<{ shape: MatmulShape; ms: number }> {
  let best = { ms: Infinity, shape: DEFAULT_TUNING.matmul[spec.mode] };
  let bestTile = { ms: Infinity, shape: undefined as MatmulShape | undefined };
  const registers: { ms: number; shape: MatmulShape }[] = [];
  const measure = async (shape: MatmulShape) => {
    const ms = await timeDispatch(cx.device, matmulDispatches(cx.k, spec, shape));
    cx.timings.push({ kernel, shape: shapeName(shape), ms });
    if (ms < best.ms) best = { ms, shape };
    if (shape.tile && ms < bestTile.ms) bestTile = { ms, shape };
    if (!shape.tile) registers.push({ ms, shape });
  };
  for (const shape of cx.candidates) {
    if (shape.wgX * shape.wgY > cx.device.limits.maxComputeInvocationsPerWorkgroup) continue;
    await measure(shape);
  }
  // Quads: the fastest register shapes again with their A loads shared across each quad,
  // and those of 8 rows also with 16 (each B load then feeds twice the rows).
  if (cx.quads) {
    const top = registers.filter((r) => r.shape.wgX % 4 === 0).sort((a, b) => a.ms - b.ms).slice(0, QUAD_TRIES);
    for (const r of top) {
      await measure({ ...r.shape, quad: true });
      if (r.shape.tm === 8) await measure({ ...r.shape, quad: true, tm: 16 });
    }
  }
  // The fastest tile again with its stages prefetched into registers and double-buffered, 16
  // deep, and both (where the kernel can run them).
  const fastTile = bestTile.shape;
  if (fastTile) {
    for (const more of [{ prefetch: true }, { tk: 16 as const }, { prefetch: true, tk: 16 as const }]) {
      if (shapeProblem({ ...fastTile, ...more }) === null) await measure({ ...fastTile, ...more });
    }
    // The fastest of those with its workgroups ordered in groups of rows of tiles, where the
    // product has more rows of tiles than a group.
    const ordered = { ...bestTile.shape!, swizzle: cx.swizzle };
    if (Math.ceil(spec.M / (8 * ordered.wgY)) > cx.swizzle) await measure(ordered);
  }
  // Weight gradients: the fastest tile again with K split over 2, 4, 8 workgroups per tile.
  if (spec.mode === 'tn' && bestTile.shape && splitOf(spec, { ...bestTile.shape, splitK: 2 }) > 1) {
    const tile = bestTile.shape;
    for (const splitK of cx.splits) await measure({ ...tile, splitK });
  }
  // nn, nt: the fastest shape again with K in 2, 4, 8 ranges where K splits so (few outputs from
  // a long K: a layer's output projection from the MLP's width).
  if (spec.mode !== 'tn' && cx.splitAll) {
    const top = best.shape;
    for (const splitK of cx.splits) if (splitOf(spec, { ...top, splitK }) === splitK) await measure({ ...top, splitK });
  }
  // The load width: the winning shape again with the other width.
  await measure({ ...best.shape, vec4: !best.shape.vec4 });
  return best;
}

/**
 * An engine for `opts` whose matrix products run the shape that was fastest for each of them at
 * its own size (Tuning.products), on hardware adapters: the product shapes the engine builds that
 * the tuning does not have yet are timed on the engine's own buffers, and the engine is built
 * again with them (the first one's buffers are only scratch: nothing has been written yet). The
 * merged tuning (with the products the store already holds for `key`) is saved under `key`. A
 * software adapter, or a tuning that has every product, gets the engine as built.
 */
export async function tunedEngine(device: GPUDevice, info: AdapterSummary, opts: EngineOptions, tune: { store?: TuningStore; key?: string; candidates?: MatmulShape[]; splits?: number[]; swizzleRows?: 2 | 4 | 8 | 16 } = {}): Promise<{ engine: GpuEngine; tuning: Tuning; tuned: number; timings: AutotuneResult['timings'] }> {
  const tuning = opts.tuning ?? DEFAULT_TUNING;
  const first = new GpuEngine(device, opts);
  const built = productsOf(first.kernels);
  const missing = [...built].filter(([key]) => !tuning.products?.[key]);
  if (info.isSoftware || missing.length === 0) return { engine: first, tuning, tuned: 0, timings: [] };
  const timings: AutotuneResult['timings'] = [];
  const found: Record<string, MatmulShape> = {};
  try {
    const cx: SearchContext = {
      device, k: first.kernels, candidates: tune.candidates ?? [...MATMUL_CANDIDATES, ...TILE_CANDIDATES],
      quads: first.kernels.quads && tuning.quads === true, splits: tune.splits ?? SPLIT_CANDIDATES, swizzle: tune.swizzleRows ?? SWIZZLE_ROWS, splitAll: true, timings,
    };
    for (const [key, spec] of missing) found[key] = (await searchProduct(cx, spec, `product ${key}`)).shape;
  } finally {
    first.destroy();
  }
  // Products other models stored for this adapter since `tuning` was read are kept too.
  const stored = tune.store && tune.key ? await tune.store.load(tune.key).catch(() => undefined) : undefined;
  let products = { ...(stored && isTuning(stored) ? stored.products : {}), ...tuning.products, ...found };
  if (Object.keys(products).length > MAX_TUNED_PRODUCTS) products = Object.fromEntries(Object.entries(products).filter(([key]) => built.has(key)));
  const merged: Tuning = { ...tuning, products };
  if (tune.store && tune.key) await tune.store.save(tune.key, merged).catch(() => {});
  return { engine: new GpuEngine(device, { ...opts, tuning: merged }), tuning: merged, tuned: missing.length, timings };
}

/**
 * Ms per dispatch (or per list of dispatches): one warm-up (compiles), then as many repeats in one submit as make the batch
 * take >= 10 ms (so submit overhead does not decide on a fast GPU), timed three times; the
 * minimum wins, because anything else on the machine only ever adds time.
 */
export async function timeDispatch(device: GPUDevice, d: Dispatch | Dispatch[]): Promise<number> {
  const list = Array.isArray(d) ? d : [d];
  const run = async (reps: number) => {
    const enc = device.createCommandEncoder({ label: 'autotune.time' });
    const pass = enc.beginComputePass({ label: 'autotune.time.pass' });
    encodeDispatches(pass, Array.from({ length: reps }, () => list).flat());
    pass.end();
    const t0 = performance.now();
    device.queue.submit([enc.finish()]);
    await device.queue.onSubmittedWorkDone();
    return performance.now() - t0;
  };
  await run(1);
  let reps = 1;
  let best = await run(reps);
  while (best < 10 && reps < 256) {
    reps *= 4;
    best = await run(reps);
  }
  for (let i = 0; i < 2; i++) best = Math.min(best, await run(reps));
  return best / reps;
}

/** In-memory store (tests, and a fallback where nothing persists). */
export function memoryStore(): TuningStore & { entries: Map<string, Tuning> } {
  const entries = new Map<string, Tuning>();
  return {
    entries,
    async load(key) { return entries.get(key); },
    async save(key, tuning) { entries.set(key, tuning); },
  };
}

/** IndexedDB store for browsers (page or worker): database `murmur`, object store `autotune`. */
export function indexedDbStore(dbName = 'murmur'): TuningStore {
  const open = () => new Promise<IDBDatabase>((resolve, reject) => {
    const req = indexedDB.open(dbName, 1);
    req.onupgradeneeded = () => { if (!req.result.objectStoreNames.contains('autotune')) req.result.createObjectStore('autotune'); };
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => reject(req.error);
  });
  const tx = async <T>(mode: IDBTransactionMode, fn: (s: IDBObjectStore) => IDBRequest): Promise<T> => {
    const db = await open();
    try {
      return await new Promise<T>((resolve, reject) => {
        const req = fn(db.transaction('autotune', mode).objectStore('autotune'));
        req.onsuccess = () => resolve(req.result as T);
        req.onerror = () => reject(req.error);
      });
    } finally {
      db.close();
    }
  };
  return {
    load: (key) => tx<Tuning | undefined>('readonly', (s) => s.get(key)),
    save: async (key, tuning) => { await tx('readwrite', (s) => s.put(tuning, key)); },
  };
}
