// Matmul kernel lab: every numbered variant in ./matmul/ is validated against a CPU matmul and
// timed on the transformer block's shapes. Only the winner moves into src/shaders.
// Run: npx tsx bench/kernels/matmul.ts [--max-size S] [--small-shapes] [--out DIR] [variant prefix...]
//   (a prefix of the file or of file:entry, e.g. 10 src/shaders/matmul.wgsl:nt)
//   (writes bench/results/kernels-matmul.json after every variant, `complete` once all ran). Besides the block's shapes, square shapes
//   1024^3, 2048^3, 4096^3 (those up to --max-size, default 4096; SwiftShader needs a small cap,
//   e.g. 1024) show what the kernel reaches on a large problem, as GFLOPS and as a share of the
//   adapter's fp32 peak where it is known (FP32_PEAKS). Large results are checked on sampled
//   entries, not the whole product.
//
// Findings on SwiftShader (2 shared cores, so absolute numbers swing with load; compare rows of
// one run): 01 naive ~0.2 GFLOPS; 04 16x16 workgroup-memory tile ~0.08 (slower than naive:
// barriers are expensive on a CPU); 02 8x4 register block with vec4 loads ~1-2.7; 03 the same
// with scalar loads close to 02 on some shapes, 2-3x worse on others; 05 the block as a loop
// over an array with an override row count 3-5x slower than 02 (the array is not promoted to
// registers); 06 an 8x8 block (two vec4 of columns) 1.1-1.8x 02 over repeated runs, since on
// SwiftShader a load is a gather across a SIMD group's lanes and the wider block feeds twice the
// multiply-adds from each (the same with 4 rows, tried as 07 in c3a1479, fell between the two). The trainer's kernel
// (src/shaders/matmul.wgsl) is 02 and 06 generalised: nn/nt/tn, epilogues, batching, TM = 8 or
// 4 rows and TN = 4 or 8 columns kept as hand-written rows behind `if (TM == 8u)`, `if (TN == 8u)`.
// 08 (subgroups): the four invocations of a quad own the same 8 rows, so in 06 each gathers the
// same A values; in 08 each loads two of the eight rows and quadBroadcast passes them round, a
// shuffle instead of a gather. On SwiftShader it ran 1.15-1.35x 06 on the block's shapes (the
// trainer's QUAD shapes, 3.1-4.1 GFLOPS against 2.3-3.5 for the same blocks without, in one run).
// 09 gives each invocation 16 rows (A's four loads a quad shared): B's loads, which no neighbour
// shares, then feed 16 rows each; 3.5-5.0 GFLOPS against 08's 2.7-4.2 over three runs (the
// trainer's `tm: 16` quad shapes 3.3-4.9), despite 128 accumulators that cannot stay in registers.
// 10 is C = A @ B^T with B stored (N, K), as dx = dy @ W^T reads the weights: with DOTS=1 a dot
// product per output of the two vec4s along k, added to the accumulator; with DOTS=0 B's four
// vec4s regrouped along the columns and multiply-adds chained as 02 does. A scalar GPU issues the
// dot's add as one more instruction (a compiler may not reorder the sum); on SwiftShader, which
// keeps every component in its own vector, the two ran alike. The trainer's nt takes DOTS=0.
import { mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { pathToFileURL } from 'node:url';
import { fp32Peak } from '../../src/gpu/peaks.ts';
import { arg, intArg } from '../args.ts';
import { labAdapter, labDevice, maxRelErr, randn, readBack, storage, timeIt, uniform } from './lab.ts';

interface Variant { file: string; colsPerThread: number; rowsPerThread: number; wg: [number, number]; overrides?: Record<string, number>; vec4: boolean; production?: boolean; entry?: string; bT?: boolean; subgroups?: boolean }
const dir = new URL('./matmul/', import.meta.url);
const VARIANTS: Variant[] = [
  { file: '01_naive.wgsl', colsPerThread: 1, rowsPerThread: 1, wg: [16, 16], vec4: false },
  { file: '02_reg8x4_vec4.wgsl', colsPerThread: 4, rowsPerThread: 8, wg: [8, 8], vec4: true },
  { file: '02_reg8x4_vec4.wgsl', colsPerThread: 4, rowsPerThread: 8, wg: [16, 4], vec4: true },
  { file: '02_reg8x4_vec4.wgsl', colsPerThread: 4, rowsPerThread: 8, wg: [4, 16], vec4: true },
  { file: '02_reg8x4_vec4.wgsl', colsPerThread: 4, rowsPerThread: 8, wg: [16, 16], vec4: true },
  { file: '03_reg8x4_scalar.wgsl', colsPerThread: 4, rowsPerThread: 8, wg: [8, 8], vec4: false },
  { file: '04_shared16.wgsl', colsPerThread: 1, rowsPerThread: 1, wg: [16, 16], vec4: false },
  { file: '05_reg_override_loop.wgsl', colsPerThread: 4, rowsPerThread: 8, wg: [8, 8], overrides: { TM: 8 }, vec4: true },
  { file: '05_reg_override_loop.wgsl', colsPerThread: 4, rowsPerThread: 4, wg: [8, 8], overrides: { TM: 4 }, vec4: true },
  { file: '06_reg8x8_vec4.wgsl', colsPerThread: 8, rowsPerThread: 8, wg: [8, 8], vec4: true },
  { file: '06_reg8x8_vec4.wgsl', colsPerThread: 8, rowsPerThread: 8, wg: [16, 4], vec4: true },
  { file: '06_reg8x8_vec4.wgsl', colsPerThread: 8, rowsPerThread: 8, wg: [4, 16], vec4: true },
  { file: '06_reg8x8_vec4.wgsl', colsPerThread: 8, rowsPerThread: 8, wg: [8, 4], vec4: true },
  { file: '06_reg8x8_vec4.wgsl', colsPerThread: 8, rowsPerThread: 8, wg: [16, 8], vec4: true },
  { file: '08_reg8x8_quad.wgsl', colsPerThread: 8, rowsPerThread: 8, wg: [8, 8], vec4: true, subgroups: true },
  { file: '08_reg8x8_quad.wgsl', colsPerThread: 8, rowsPerThread: 8, wg: [16, 4], vec4: true, subgroups: true },
  { file: '08_reg8x8_quad.wgsl', colsPerThread: 8, rowsPerThread: 8, wg: [8, 4], vec4: true, subgroups: true },
  { file: '09_reg16x8_quad.wgsl', colsPerThread: 8, rowsPerThread: 16, wg: [8, 4], vec4: true, subgroups: true },
  { file: '09_reg16x8_quad.wgsl', colsPerThread: 8, rowsPerThread: 16, wg: [16, 4], vec4: true, subgroups: true },
  { file: '09_reg16x8_quad.wgsl', colsPerThread: 8, rowsPerThread: 16, wg: [8, 2], vec4: true, subgroups: true },
  // The kernel the trainer uses (src/shaders/matmul.wgsl + vec4 prelude), entry nn.
  { file: 'src/shaders/matmul.wgsl', colsPerThread: 4, rowsPerThread: 8, wg: [8, 8], vec4: true, production: true },
  { file: 'src/shaders/matmul.wgsl', colsPerThread: 4, rowsPerThread: 8, wg: [16, 4], vec4: true, production: true },
  { file: 'src/shaders/matmul.wgsl', colsPerThread: 4, rowsPerThread: 4, wg: [16, 16], overrides: { TM: 4 }, vec4: true, production: true },
  { file: 'src/shaders/matmul.wgsl', colsPerThread: 4, rowsPerThread: 8, wg: [16, 4], overrides: { VEC4: 0 }, vec4: false, production: true },
  // The trainer's 8 x 8 register block (TN = 8, `cols: 8` in a tuning): the lab's 06 generalised.
  { file: 'src/shaders/matmul.wgsl', colsPerThread: 8, rowsPerThread: 8, wg: [8, 8], overrides: { TN: 8 }, vec4: true, production: true },
  { file: 'src/shaders/matmul.wgsl', colsPerThread: 8, rowsPerThread: 8, wg: [16, 4], overrides: { TN: 8 }, vec4: true, production: true },
  { file: 'src/shaders/matmul.wgsl', colsPerThread: 8, rowsPerThread: 8, wg: [8, 4], overrides: { TN: 8 }, vec4: true, production: true },
  // The same with QUAD (08 generalised): on adapters with subgroups only.
  ...([[8, 8], [16, 4], [8, 4]] as [number, number][]).map((wg): Variant =>
    ({ file: 'src/shaders/matmul.wgsl', colsPerThread: 8, rowsPerThread: 8, wg, overrides: { TN: 8, QUAD: 1 }, vec4: true, production: true, subgroups: true })),
  // ... and with 16 rows an invocation (09 generalised).
  ...([[8, 4], [16, 4], [8, 2]] as [number, number][]).map((wg): Variant =>
    ({ file: 'src/shaders/matmul.wgsl', colsPerThread: 8, rowsPerThread: 16, wg, overrides: { TN: 8, TM: 16, QUAD: 1 }, vec4: true, production: true, subgroups: true })),
  // The trainer's workgroup-memory tiles (entry nnTile): an 8x8 block per invocation, so a
  // (8 wgY) x (8 wgX) tile per workgroup.
  ...([[16, 16], [16, 8], [8, 16], [8, 8]] as [number, number][]).map((wg): Variant =>
    ({ file: 'src/shaders/matmul.wgsl', entry: 'nnTile', colsPerThread: 8, rowsPerThread: 8, wg, vec4: true, production: true })),
  ...([[16, 16], [8, 8]] as [number, number][]).map((wg): Variant =>
    ({ file: 'src/shaders/matmul.wgsl', entry: 'nnTile', colsPerThread: 8, rowsPerThread: 8, wg, overrides: { TK: 16 }, vec4: true, production: true })),
  // ... with PREFETCH: two stages in turn, the next one read into registers while this one is
  // multiplied (`prefetch` in a tuning).
  ...([[16, 16], [16, 8], [8, 16], [8, 8]] as [number, number][]).map((wg): Variant =>
    ({ file: 'src/shaders/matmul.wgsl', entry: 'nnTile', colsPerThread: 8, rowsPerThread: 8, wg, overrides: { PREFETCH: 1 }, vec4: true, production: true })),
  // 16-deep stages prefetched: two of them fit a 64 x 64 tile's workgroup memory.
  { file: 'src/shaders/matmul.wgsl', entry: 'nnTile', colsPerThread: 8, rowsPerThread: 8, wg: [8, 8], overrides: { TK: 16, PREFETCH: 1 }, vec4: true, production: true },
  // Tiles in groups of 8 rows (SWIZZLE, `swizzle` in a tuning): the workgroups resident at once
  // share A's rows and B's columns in the second-level cache, where 4096^3's operands (64 MiB
  // each) do not fit.
  ...([{}, { PREFETCH: 1 }, { TK: 16 }] as Record<string, number>[]).map((o): Variant =>
    ({ file: 'src/shaders/matmul.wgsl', entry: 'nnTile', colsPerThread: 8, rowsPerThread: 8, wg: [16, 16], overrides: { ...o, SWIZZLE: 8 }, vec4: true, production: true })),
  // C = A @ B^T with B stored (N, K) (`bT`), the backward's dx = dy @ W^T: 10 with DOTS takes
  // dot products, without it the same multiply-adds as the nn kernels; then the trainer's nt (the
  // multiply-adds) on its tuned shapes, beside its nn rows above on the same sizes.
  ...[1, 0].flatMap((dots) => ([[16, 4], [4, 16]] as [number, number][]).map((wg): Variant =>
    ({ file: '10_nt.wgsl', colsPerThread: 4, rowsPerThread: 8, wg, overrides: { DOTS: dots }, vec4: true, bT: true }))),
  ...([[16, 4], [4, 16], [8, 8]] as [number, number][]).map((wg): Variant =>
    ({ file: 'src/shaders/matmul.wgsl', entry: 'nt', colsPerThread: 4, rowsPerThread: 8, wg, vec4: true, production: true, bT: true })),
  { file: 'src/shaders/matmul.wgsl', entry: 'nt', colsPerThread: 8, rowsPerThread: 8, wg: [8, 8], overrides: { TN: 8 }, vec4: true, production: true, bT: true },
];
const srcDir = new URL('../../src/shaders/', import.meta.url);
// As src/gpu/shaders.ts compiles it: quad.wgsl (quad-off.wgsl without subgroups) and half.wgsl
// (the f16 operand rounding, off here) in front.
const productionCode = (quads: boolean) => [quads ? 'quad.wgsl' : 'quad-off.wgsl', 'half.wgsl', 'matmul.wgsl'].map((f) => readFileSync(new URL(f, srcDir), 'utf8')).join('');

/** B (rows, cols) row-major as (cols, rows). */
function transpose(B: Float32Array, rows: number, cols: number): Float32Array {
  const T = new Float32Array(B.length);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) T[c * rows + r] = B[r * cols + c];
  return T;
}

function cpuMatmul(A: Float32Array, B: Float32Array, M: number, K: number, N: number): Float64Array {
  const C = new Float64Array(M * N);
  for (let i = 0; i < M; i++) for (let k = 0; k < K; k++) {
    const a = A[i * K + k];
    for (let j = 0; j < N; j++) C[i * N + j] += a * B[k * N + j];
  }
  return C;
}

/** C[i,j] of A (M,K) @ B (K,N) for `count` sampled (i, j), in float64. */
function sampledCheck(A: Float32Array, B: Float32Array, C: Float32Array, M: number, K: number, N: number, count: number): number {
  let err = 0, scale = 0;
  for (let s = 0; s < count; s++) {
    const i = (s * 7919) % M, j = (s * 104729 + 13) % N;
    let want = 0;
    for (let k = 0; k < K; k++) want += A[i * K + k] * B[k * N + j];
    err = Math.max(err, Math.abs(C[i * N + j] - want));
    scale = Math.max(scale, Math.abs(want));
  }
  return err / Math.max(scale, 1e-30);
}

const argv = process.argv.slice(2);
const maxSize = intArg('max-size', 4096);
// --small-shapes: two small ragged products only (tests/bench.kernel-lab.test.ts checks every
// row of the lab this way on SwiftShader, so that a broken row shows before a device run).
const smallShapes = argv.includes('--small-shapes');
const valued = new Set(['--max-size', '--out']);
const only = argv.filter((a, i) => !valued.has(a) && !valued.has(argv[i - 1] ?? '') && a !== '--small-shapes');
const device = await labDevice();
const adapterText = labAdapter ? `${labAdapter.vendor} ${labAdapter.architecture} ${labAdapter.device} ${labAdapter.description}` : '';
const peak = fp32Peak(adapterText);
const large = [1024, 2048, 4096].filter((n) => n <= maxSize).map((n): [number, number, number] => [n, n, n]);
const shapes: [number, number, number][] = smallShapes ? [[36, 20, 48], [70, 36, 136]] : [[512, 256, 1024], [512, 1024, 256], [512, 256, 768], [36, 20, 44], ...large];
const results: { variant: string; wg: string; overrides: Record<string, number>; shape: string; gflops: number; peakShare: number | null; maxRelErr: number }[] = [];
// bench/results here, dist/results beside the bundle (where scripts/device-run.sh looks); --out DIR.
const outDir = arg('out') ? pathToFileURL(`${arg('out')}/`) : new URL('../results/', import.meta.url);
mkdirSync(outDir, { recursive: true });
// Written after every variant (complete: false) and at the end, whole each time (a temporary
// file renamed over the last): a run cut short by a device call's time limit keeps its rows.
function save(complete: boolean): void {
  const file = new URL('kernels-matmul.json', outDir), tmp = new URL('kernels-matmul.json.tmp', outDir);
  writeFileSync(tmp, JSON.stringify({ date: new Date().toISOString(), adapter: labAdapter, fp32PeakGflops: peak?.gflops ?? null, peakOf: peak?.name ?? null, maxSize, complete, results }, null, 2) + '\n');
  renameSync(tmp, file);
}
console.log(peak ? `fp32 peak: ${peak.gflops} GFLOPS (${peak.name})` : `fp32 peak of "${adapterText}" unknown: no share of peak`);
if (large.length < 3 && !smallShapes) console.log(`large shapes capped at ${maxSize} (--max-size)`);
console.log('variant                         wg      ' + shapes.map(([m, k, n]) => `${m}x${k}x${n}`.padStart(16)).join('') + '   (GFLOPS; err)');
for (const v of VARIANTS) {
  // A prefix of the file, or of file:entry (src/shaders/matmul.wgsl:nt for the trainer's nt rows).
  if (only.length && !only.some((o) => `${v.file}:${v.entry ?? (v.production ? 'nn' : 'main')}`.startsWith(o))) continue;
  if (v.subgroups && !device.features.has('subgroups')) { console.log(`${v.file.padEnd(30)}  ${`${v.wg[0]}x${v.wg[1]}`.padEnd(6)}  (needs the subgroups feature, which this adapter lacks)`); continue; }
  const module = device.createShaderModule({ label: `lab.${v.file}`, code: v.production ? productionCode(device.features.has('subgroups')) : readFileSync(new URL(v.file, dir), 'utf8') });
  // The production kernel declares every binding of its explicit layout; 'auto' would drop the
  // unused ones, so give it the full layout.
  const layout = v.production
    ? device.createPipelineLayout({ bindGroupLayouts: [device.createBindGroupLayout({ entries: ['read-only-storage', 'read-only-storage', 'read-only-storage', 'read-only-storage', 'storage', 'uniform', 'storage', 'read-only-storage', 'read-only-storage'].map((type, binding) => ({ binding, visibility: GPUShaderStage.COMPUTE, buffer: { type: type as GPUBufferBindingType } })) })] })
    : 'auto';
  const pipeline = device.createComputePipeline({
    label: `lab.${v.file}`, layout,
    compute: { module, entryPoint: v.entry ?? (v.production ? 'nn' : 'main'), constants: { WG_X: v.wg[0], WG_Y: v.wg[1], ...(v.overrides ?? {}) } },
  });
  const cells: string[] = [];
  for (const [M, K, N] of shapes) {
    const A = randn(M * K, 1), B = randn(K * N, 2);
    const bA = storage(device, A, 'lab.A'), bB = storage(device, v.bT ? transpose(B, K, N) : B, 'lab.B'), bC = storage(device, M * N, 'lab.C');
    // production uniform: M N K lda | ldb ldc offA offB | offC offBias offR ldr | nInner aOuter aInner bOuter | bInner cOuter cInner alpha
    const u = v.production
      ? uniform(device, [M, N, K, K, v.bT ? K : N, N, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0x3f800000], 'lab.mm')
      : uniform(device, [M, N, K, 0], 'lab.dims');
    const bufs = v.production ? [bA, bB, bC, u] : [bA, bB, bC, u];
    const dbias = storage(device, N, 'lab.dbias');
    const entries = v.production
      ? [[0, bA], [1, bB], [2, bA], [3, bA], [4, bC], [5, u], [6, dbias], [7, bA], [8, bB]].map(([binding, buffer]) => ({ binding: binding as number, resource: { buffer: buffer as GPUBuffer } }))
      : bufs.map((buffer, binding) => ({ binding, resource: { buffer } }));
    const bg = device.createBindGroup({ layout: pipeline.getBindGroupLayout(0), entries });
    const gx = Math.ceil(N / v.colsPerThread / v.wg[0]), gy = Math.ceil(M / v.rowsPerThread / v.wg[1]);
    const encode = (enc: GPUCommandEncoder) => {
      const pass = enc.beginComputePass(); pass.setPipeline(pipeline); pass.setBindGroup(0, bg); pass.dispatchWorkgroups(gx, gy); pass.end();
    };
    const ms = await timeIt(device, encode, M * N * K > 1e6 ? 3 : 5);
    const C = await readBack(device, bC, M * N);
    const err = M * N * K > 1e9 ? sampledCheck(A, B, C, M, K, N, 512) : maxRelErr(C, cpuMatmul(A, B, M, K, N));
    const gflops = 2 * M * N * K / ms / 1e6;
    cells.push(`${gflops.toFixed(2)};${err < 1e-5 ? 'ok' : err.toExponential(0)}`.padStart(16));
    results.push({ variant: v.entry ? `${v.file}:${v.entry}` : v.file, wg: `${v.wg[0]}x${v.wg[1]}`, overrides: v.overrides ?? {}, shape: `${M}x${K}x${N}`, gflops, peakShare: peak ? gflops / peak.gflops : null, maxRelErr: err });
    for (const b of [bA, bB, bC, u, dbias]) b.destroy();
  }
  const set = Object.entries(v.overrides ?? {}).map(([name, x]) => ` ${name}=${x}`).join('');
  console.log(`${(v.entry ? `${v.file}:${v.entry}` : v.file).padEnd(30)}  ${`${v.wg[0]}x${v.wg[1]}`.padEnd(6)}${cells.join('')}${set}`);
  save(false);
}
device.destroy();
const best = (shape: string) => results.filter((r) => r.shape === shape).sort((a, b) => b.gflops - a.gflops)[0];
for (const [n] of large) {
  const b = best(`${n}x${n}x${n}`);
  if (b) console.log(`best at ${n}^3: ${b.variant} ${b.wg} ${JSON.stringify(b.overrides)} ${b.gflops.toFixed(1)} GFLOPS${b.peakShare === null ? '' : ` = ${(100 * b.peakShare).toFixed(1)}% of fp32 peak`}`);
}
save(true);
