// The autotuner: measures candidate kernel shapes, keeps the fastest, caches it per adapter
// (memory, and the Node JSON file store), and a cached adapter is not measured again; a cached
// entry its schema refuses is measured again, in Node (named by field) and in the worker (by
// TypeBox's compiled check, which must be what scripts/compile-checks.ts writes now).
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { readFileSync } from 'node:fs';
import { afterAll, describe, expect, it, vi } from 'vitest';
import Value from 'typebox/value';
import { autotune, describeRates, matmulRates, memoryStore, QUAD_TRIES, quadsMatch, shapeName, tunedEngine, tuningKey } from '../src/gpu/autotune.ts';
import { GpuEngine } from '../src/gpu/engine.ts';
import { preset, trainConfig } from '../src/model/config.ts';
import { buildLayout } from '../src/model/layout.ts';
import { initParams } from '../src/model/init.ts';
import { randomBatch } from './support/batches.ts';
import { isTuning } from '../src/gpu/tuning-check.ts';
import { TuningSchema } from '../src/gpu/tuning-schema.ts';
import { COMPILED_CHECKS, compiledModule } from '../scripts/compile-checks.ts';
import { ROOT } from './support/browser.ts';
import { DEFAULT_TUNING, Kernels, LARGE_GEMM, MAX_TUNED_PRODUCTS, tunedShape, type Tuning } from '../src/gpu/kernels.ts';
import { SUBGROUP_SHADERS, type ShaderName } from '../src/gpu/shaders.ts';
import { matmul, productKey, productsOf, shapeProblem, tunedFor } from '../src/gpu/matmul.ts';
import { readF32, uploadF32 } from './support/gpu.ts';
import { randomArray, runDispatches } from './support/engine.ts';
import { fileStore } from '../src/gpu/autotune-node.ts';
import { nodeGpu } from '../src/gpu/node-gpu.ts';
import { getTestGpu, gpuTest } from './support/gpu.ts';

const small = {
  size: 64,
  matmulCandidates: [{ wgX: 8, wgY: 8, tm: 8 as const, vec4: true }, { wgX: 16, wgY: 4, tm: 4 as const, vec4: true }],
  strideCandidates: [{ wg: 256, groups: 16 }, { wg: 64, groups: 64 }],
};
// The test device has subgroups (engine.matmul checks it), so the fastest register shapes are
// also timed as quads, and those of 8 rows as 16-row quads too.
const quadTries = Math.min(QUAD_TRIES, small.matmulCandidates.length) + small.matmulCandidates.filter((c) => c.tm === 8).length;
const dirs: string[] = [];
afterAll(async () => { for (const d of dirs) await rm(d, { recursive: true, force: true }); });

describe('autotune', () => {
  gpuTest('measures every candidate, picks the fastest, and caches it', async (device) => {
    const { info } = await getTestGpu();
    const store = memoryStore();
    const r = await autotune(device, info, { ...small, store });
    expect(r.fromCache).toBe(false);
    expect(r.quads).toBe('offered');
    expect(r.tuning.quads).toBe(true); // the row attention forward's licence to share keys across quads
    expect(r.timings).toHaveLength(3 * (2 + quadTries + 1) + 2); // per mode: 2 shapes, their quad variants, the winner's other load width; 2 grids
    for (const c of small.matmulCandidates) expect(r.timings.map((t) => t.shape)).toContain(shapeName({ ...c, quad: true }));
    expect(r.timings.map((t) => t.shape)).toContain(shapeName({ ...small.matmulCandidates[0], quad: true, tm: 16 }));
    for (const t of r.timings) expect(t.ms).toBeGreaterThan(0);
    for (const mode of ['nn', 'nt', 'tn'] as const) {
      const mine = r.timings.filter((t) => t.kernel === `matmul.${mode}`);
      const fastest = mine.reduce((a, b) => (b.ms < a.ms ? b : a));
      expect(shapeName(r.tuning.matmul[mode])).toBe(fastest.shape);
      // What the winner ran: 2 n^3 multiply-adds over its time, in GFLOPS.
      expect(r.tuning.rates?.[mode]).toBeCloseTo(2 * small.size ** 3 / fastest.ms / 1e6, 6);
    }
    expect(Object.keys(r.tuning.rates ?? {}).sort()).toEqual(['nn', 'nt', 'tn']);
    // A software adapter has no known peak: the rates are reported as rates only.
    const report = matmulRates(r.tuning, info);
    expect(report.peak).toBeNull();
    expect(report.rows.map((x) => [x.kind, x.shape, x.gflops, x.peakShare])).toEqual((['nn', 'nt', 'tn'] as const).map((m) => [m, shapeName(r.tuning.matmul[m]), r.tuning.rates![m], null]));
    expect(describeRates(report)).toMatch(/^nn \S+ [\d.]+ GFLOPS, nt \S+ [\d.]+ GFLOPS, tn \S+ [\d.]+ GFLOPS \(fp32 peak of this adapter unknown\)$/);
    expect(small.strideCandidates).toContainEqual(r.tuning.stride);
    expect(store.entries.get(tuningKey(info))).toEqual(r.tuning);

    const again = await autotune(device, info, { ...small, store });
    expect(again.fromCache).toBe(true);
    expect(again.quads).toBe('cached');
    expect(again.timings).toHaveLength(0);
    expect(again.tuning).toEqual(r.tuning);
  });

  gpuTest('on a hardware adapter also tunes the large GEMM class and tries the tiled matmul, attention and wide LayerNorm kernels; a software one does none of it', async (device) => {
    const { info } = await getTestGpu();
    const tile = { wgX: 4, wgY: 4, tm: 8 as const, vec4: true, tile: true };
    const hw = await autotune(device, { ...info, isSoftware: false }, { ...small, tileCandidates: [tile], splitCandidates: [2, 3], swizzleRows: 2, largeSize: 96, attentionT: 24, layernormN: 40, layernormC: 48, store: memoryStore() });
    // 2 classes x 3 modes x (3 shapes + quad variants of the 2 register ones + the tile prefetched and 16 deep + other width), tn's fastest tile split 2 ways in each class;
    // nn and nt's winner split where K = 64 or 96 splits into equal multiples of 4 (64: 2 ranges; 96: 2 and 3); 2 grids; 3 attention kernels; 2 LayerNorm kernels;
    // the fastest tile in groups of 2 rows of tiles where there are more than 2 (nn and nt in the large class: 96 rows, 3 of 32;
    // its tn has 48)
    expect(hw.timings).toHaveLength(2 * 3 * (3 + quadTries + 2 + 1) + 2 * 2 + 2 * (1 + 2) + 2 + 3 + 2 + 2);
    const att = hw.timings.filter((t) => t.kernel === 'attention');
    expect(att.map((t) => t.shape).sort()).toEqual(['blocked', 'rows', 'tiled']);
    expect(hw.tuning.attention).toBe(att.reduce((a, b) => (b.ms < a.ms ? b : a)).shape);
    const ln = hw.timings.filter((t) => t.kernel === 'layernorm');
    expect(ln.map((t) => t.shape).sort()).toEqual(['rows', 'wide']);
    expect(hw.tuning.layernorm).toBe(ln.reduce((a, b) => (b.ms < a.ms ? b : a)).shape);
    for (const mode of ['nn', 'nt', 'tn'] as const) {
      for (const suffix of ['', '.large']) {
        const mine = hw.timings.filter((t) => t.kernel === `matmul.${mode}${suffix}`);
        const grouped = suffix !== '' && mode !== 'tn';
        expect(mine).toHaveLength((mode === 'tn' ? 8 + quadTries : 6 + quadTries + (suffix ? 2 : 1)) + (grouped ? 1 : 0));
        // The tile prefetched and 16 deep; both at once needs wgX, wgY of 8, so not this 4 x 4 one.
        const tiles = [tile, { ...tile, prefetch: true }, { ...tile, tk: 16 as const }].map(shapeName);
        expect(mine.map((t) => t.shape)).toEqual(expect.arrayContaining(tiles));
        // Then the fastest of those in groups of 2 rows of tiles (large nn and nt only).
        const plainFastest = mine.filter((t) => tiles.includes(t.shape)).reduce((a, b) => (b.ms < a.ms ? b : a));
        // (When the grouped tile is the fastest of all, the variants timed after it, its splits and
        // its other width, are of it and carry '/swizzle2' too: only the grouped tiles are counted.)
        const ordered = mine.filter((t) => tiles.some((s) => t.shape === `${s}/swizzle2`));
        expect(ordered.map((t) => t.shape)).toEqual(grouped ? [`${plainFastest.shape}/swizzle2`] : []);
        if (!grouped) expect(mine.filter((t) => t.shape.includes('/swizzle'))).toEqual([]);
        // The splits are of the fastest of those.
        const fastTile = [plainFastest, ...ordered].reduce((a, b) => (b.ms < a.ms ? b : a)).shape;
        if (mode === 'tn') expect(mine.map((t) => t.shape)).toEqual(expect.arrayContaining([`${fastTile}/split2`, `${fastTile}/split3`]));
        const chosen = (suffix ? hw.tuning.matmulLarge! : hw.tuning.matmul)[mode];
        expect(shapeName(chosen)).toBe(mine.reduce((a, b) => (b.ms < a.ms ? b : a)).shape);
      }
    }
    // Rates of every chosen class shape, the large tn at its (96/2)^2 outputs over K = 4 * 96.
    for (const [kind, flops] of [['nn', 2 * 64 ** 3], ['nt', 2 * 64 ** 3], ['tn', 2 * 64 ** 3], ['nn.large', 2 * 96 ** 3], ['nt.large', 2 * 96 ** 3], ['tn.large', 2 * 48 * 48 * 384]] as const) {
      const mine = hw.timings.filter((t) => t.kernel === `matmul.${kind}`);
      expect(hw.tuning.rates?.[kind], kind).toBeCloseTo(flops / Math.min(...mine.map((t) => t.ms)) / 1e6, 6);
    }
    expect(isTuning(hw.tuning)).toBe(true);
    const sw = await autotune(device, { ...info, isSoftware: true }, { ...small, tileCandidates: [tile], largeSize: 96, store: memoryStore() });
    expect(sw.tuning.matmulLarge).toBeUndefined();
    expect(sw.tuning.attention).toBeUndefined();
    expect(sw.tuning.layernorm).toBeUndefined();
    expect(sw.timings.filter((t) => t.shape.startsWith('tile') || t.kernel === 'attention' || t.kernel === 'layernorm')).toHaveLength(0);
  });

  it('reports the rates against the fp32 peak of the GPU the adapter names, where the table has it', () => {
    const tuning: Tuning = { ...DEFAULT_TUNING, matmulLarge: DEFAULT_TUNING.matmul, rates: { nn: 26380, tn: 20000, 'nt.large': 33450 } };
    const h200 = { vendor: 'nvidia', architecture: '', device: 'nvidia-h200', description: 'NVIDIA: 580.159.04', isSoftware: false };
    const r = matmulRates(tuning, h200);
    expect(r.peak).toEqual({ gflops: 66900, name: 'NVIDIA H200 SXM' });
    expect(r.rows.map((x) => [x.kind, x.gflops, x.peakShare])).toEqual([['nn', 26380, 26380 / 66900], ['tn', 20000, 20000 / 66900], ['nt.large', 33450, 0.5]]);
    expect(describeRates(r)).toBe(`nn ${shapeName(tuning.matmul.nn)} 26.38 TFLOPS (39.4%), tn ${shapeName(tuning.matmul.tn)} 20.00 TFLOPS (29.9%), ` +
      `nt.large ${shapeName(tuning.matmul.nt)} 33.45 TFLOPS (50.0%) of NVIDIA H200 SXM's fp32 peak (66900 GFLOPS)`);
    // The same card without its name, a GPU the table lacks, and a tuning without rates.
    expect(matmulRates(tuning, { ...h200, device: '' }).peak).toBeNull();
    expect(matmulRates(tuning, { ...h200, device: 'radeon-rx-7900' }).rows[0]!.peakShare).toBeNull();
    expect(describeRates(matmulRates(DEFAULT_TUNING, h200))).toMatch(/^matmul rates not measured/);
  });

  gpuTest('quads are offered only where a quad product equals the plain one: lanes that are not a quad\'s neighbours are caught', async (device) => {
    const k = new Kernels(device);
    // A device whose quad lane 1 answered with lane 2's value (a quad that is not 4 adjacent invocations).
    class Scrambled extends Kernels {
      override module(name: ShaderName): GPUShaderModule {
        if (name !== 'matmul') return super.module(name);
        return this.device.createShaderModule({ label: 'test.scrambled', code: SUBGROUP_SHADERS.matmul!.replaceAll('quadBroadcast(x, 1u)', 'quadBroadcast(x, 2u)') });
      }
    }
    const bad = new Scrambled(device);
    // Lane 1 wrong only in the rows 8..15 of a 16-row nn block (the other products are right).
    class Scrambled16 extends Kernels {
      override module(name: ShaderName): GPUShaderModule {
        if (name !== 'matmul') return super.module(name);
        const code = SUBGROUP_SHADERS.matmul!.replace('x = quad1(xl); s9 = fma4(s9,', 'x = quad2(xl); s9 = fma4(s9,');
        expect(code).not.toBe(SUBGROUP_SHADERS.matmul);
        return this.device.createShaderModule({ label: 'test.scrambled16', code });
      }
    }
    const bad16 = new Scrambled16(device);
    try {
      expect(k.quads).toBe(true);
      expect(await quadsMatch(k)).toBe(true);
      expect(await quadsMatch(bad)).toBe(false);
      expect(await quadsMatch(bad16)).toBe(false);
    } finally {
      k.destroy();
      bad.destroy();
      bad16.destroy();
    }
  });

  it('without the subgroups feature: no quad shape is timed, and a cached quad shape runs the plain kernel', async () => {
    const { info } = await getTestGpu();
    // A second adapter (the test device's one is consumed), and a device without the feature.
    const adapter = await (await nodeGpu()).requestAdapter();
    const plain = await adapter!.requestDevice({ label: 'test.no-subgroups' });
    try {
      expect(plain.features.has('subgroups')).toBe(false);
      const r = await autotune(plain, info, { ...small, store: memoryStore() });
      expect(r.quads).toBe('no-subgroups');
      expect(r.tuning.quads).toBeUndefined();
      expect(r.timings.filter((t) => t.shape.includes('quad'))).toHaveLength(0);
      const k = new Kernels(plain);
      try {
        expect(k.quads).toBe(false);
        const [M, N, K] = [9, 12, 8];
        const A = randomArray(M * K, 1), B = randomArray(K * N, 2);
        const a = uploadF32(plain, A), b = uploadF32(plain, B), c = uploadF32(plain, new Float32Array(M * N));
        // 16 rows come from a quad's broadcasts: without quads that shape runs as 8 rows.
        for (const tm of [8, 16] as const) {
          await runDispatches(plain, [matmul(k, { label: 'test.plain-quad', mode: 'nn', M, N, K, a: { ref: a, ld: K }, b: { ref: b, ld: N }, c: { ref: c, ld: N } }, { wgX: 4, wgY: 4, tm, vec4: true, cols: 8, quad: true })]);
          const got = await readF32(plain, c, M * N);
          for (let i = 0; i < M; i++) for (let j = 0; j < N; j++) {
            let want = 0;
            for (let p = 0; p < K; p++) want += A[i * K + p] * B[p * N + j];
            expect(got[i * N + j]).toBeCloseTo(want, 4);
          }
        }
        for (const x of [a, b, c]) x.destroy();
      } finally {
        k.destroy();
      }
    } finally {
      plain.destroy();
    }
  });

  it('shapes the kernels cannot run are named: 16 rows without quad, quad on a tile or on wgX not a multiple of 4', () => {
    expect(shapeProblem({ wgX: 8, wgY: 4, tm: 16, vec4: true })).toMatch(/tm 16 .* needs quad/);
    expect(shapeProblem({ wgX: 8, wgY: 4, tm: 8, vec4: true, tile: true, quad: true })).toMatch(/quad .* needs no tile/);
    expect(shapeProblem({ wgX: 6, wgY: 4, tm: 8, vec4: true, quad: true })).toMatch(/wgX a multiple of 4/);
    expect(shapeProblem({ wgX: 8, wgY: 4, tm: 16, vec4: true, cols: 8, quad: true })).toBeNull();
  });

  it('a product uses its shape class: large from LARGE_GEMM multiply-adds, small below or without a large class', () => {
    const big = { wgX: 16, wgY: 16, tm: 8 as const, vec4: true };
    const t: Tuning = { ...DEFAULT_TUNING, matmulLarge: { nn: big, nt: big, tn: big } };
    expect(tunedShape(t, 'nn', 512, 512, 512)).toBe(big);
    expect(512 ** 3).toBe(LARGE_GEMM);
    expect(tunedShape(t, 'nt', 512, 512, 511)).toBe(DEFAULT_TUNING.matmul.nt);
    expect(tunedShape(DEFAULT_TUNING, 'tn', 4096, 4096, 4096)).toBe(DEFAULT_TUNING.matmul.tn);
  });

  gpuTest('the Node file store persists across instances and survives a corrupt file', async (device) => {
    const { info } = await getTestGpu();
    const dir = await mkdtemp(join(tmpdir(), 'murmur-autotune-'));
    dirs.push(dir);
    const path = join(dir, 'sub', 'autotune.json');
    const r = await autotune(device, info, { ...small, store: fileStore(path) });
    expect(JSON.parse(await readFile(path, 'utf8'))[r.key]).toEqual(r.tuning);
    expect((await autotune(device, info, { ...small, store: fileStore(path) })).fromCache).toBe(true);
    await writeFile(path, '{ not json');
    const fresh = await autotune(device, info, { ...small, store: fileStore(path) });
    expect(fresh.fromCache).toBe(false);
    expect(JSON.parse(await readFile(path, 'utf8'))[r.key]).toEqual(fresh.tuning);
  });

  it('the Node file store ignores cache entries its schema refuses, naming the field', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'murmur-autotune-'));
    dirs.push(dir);
    const path = join(dir, 'autotune.json');
    const bad = (f: (t: Tuning) => void): Tuning => { const t = structuredClone(DEFAULT_TUNING); f(t); return t; };
    await writeFile(path, JSON.stringify({
      good: DEFAULT_TUNING,
      text: bad((t) => { (t.matmul.nn as { wgX: unknown }).wgX = '8'; }),
      huge: bad((t) => { t.stride.groups = 1e12; }),
      missing: bad((t) => { delete (t.matmul as Partial<Tuning['matmul']>).tn; }),
    }));
    const warn = vi.spyOn(console, 'warn').mockImplementation(() => {});
    try {
      const store = fileStore(path);
      expect(await store.load('good')).toEqual(DEFAULT_TUNING);
      for (const key of ['text', 'huge', 'missing']) expect(await store.load(key)).toBeUndefined();
      const said = warn.mock.calls.map((c) => String(c[0]));
      expect(said.some((w) => w.includes('autotune["text"].matmul.nn.wgX'))).toBe(true);
      expect(said.some((w) => w.includes('autotune["huge"].stride.groups'))).toBe(true);
      expect(said.some((w) => w.includes('autotune["missing"].matmul.tn'))).toBe(true);
      // A file that is JSON but not an object counts as no cache.
      await writeFile(path, '[1, 2]');
      expect(await fileStore(path).load('0')).toBeUndefined();
    } finally {
      warn.mockRestore();
    }
  });

  /** DEFAULT_TUNING with one change. */
  const bad = (f: (t: Tuning) => void): Tuning => { const t = structuredClone(DEFAULT_TUNING); f(t); return t; };

  gpuTest('measures again when the cached entry is not what the schema accepts', async (device) => {
    const { info } = await getTestGpu();
    const store = memoryStore();
    store.entries.set(tuningKey(info), bad((t) => { t.stride.groups = 1e12; }));
    const r = await autotune(device, info, { ...small, store });
    expect(r.fromCache).toBe(false);
    expect(store.entries.get(tuningKey(info))).toEqual(r.tuning);
    store.entries.set(tuningKey(info), bad((t) => { (t.matmul.nn as unknown as Record<string, unknown>).prefetch = 'yes'; }));
    expect((await autotune(device, info, { ...small, store })).fromCache).toBe(false);
    store.entries.set(tuningKey(info), bad((t) => { t.matmul.nn = { wgX: 8, wgY: 8, tm: 8, vec4: true, tile: true, tk: 12 as 16 }; }));
    expect((await autotune(device, info, { ...small, store })).fromCache).toBe(false);
    store.entries.set(tuningKey(info), bad((t) => { t.matmul.nt = { wgX: 8, wgY: 8, tm: 8, vec4: true, tile: true, swizzle: 32 as 16 }; }));
    expect((await autotune(device, info, { ...small, store })).fromCache).toBe(false);
    // Rates are a report, but a cached one is checked all the same: a negative rate, an unknown kind.
    store.entries.set(tuningKey(info), bad((t) => { t.rates = { nn: -5 }; }));
    expect((await autotune(device, info, { ...small, store })).fromCache).toBe(false);
    store.entries.set(tuningKey(info), bad((t) => { (t as unknown as { rates: Record<string, number> }).rates = { mm: 5 }; }));
    expect((await autotune(device, info, { ...small, store })).fromCache).toBe(false);
    // A tile wider than the kernel's workgroup memory holds passes the schema, not the kernel.
    store.entries.set(tuningKey(info), bad((t) => { t.matmul.tn = { wgX: 32, wgY: 8, tm: 8, vec4: true, tile: true }; }));
    expect((await autotune(device, info, { ...small, store })).fromCache).toBe(false);
    // Quad fields the schema takes but the kernels cannot run: 16 rows without quad, a quad tile, a quad on 6 columns of invocations.
    // Prefetch on a register shape, and on a tile whose 2-wide rows of invocations would each need
    // 8 vec4s of B a stage (the kernel holds 4: the rest of the tile would go unread).
    for (const shape of [{ wgX: 8, wgY: 4, tm: 16 as const, vec4: true }, { wgX: 8, wgY: 8, tm: 8 as const, vec4: true, tile: true, quad: true }, { wgX: 6, wgY: 4, tm: 8 as const, vec4: true, quad: true },
      { wgX: 8, wgY: 8, tm: 8 as const, vec4: true, prefetch: true }, { wgX: 8, wgY: 2, tm: 8 as const, vec4: true, tile: true, prefetch: true },
      // A stage depth on a register shape; two 16-deep stages of a 128-wide tile (twice the memory the kernel has).
      { wgX: 8, wgY: 8, tm: 8 as const, vec4: true, tk: 16 as const }, { wgX: 16, wgY: 8, tm: 8 as const, vec4: true, tile: true, prefetch: true, tk: 16 as const },
      // A tile order on a register shape (whose kernels have no tiles to order).
      { wgX: 8, wgY: 8, tm: 8 as const, vec4: true, swizzle: 8 as const }]) {
      store.entries.set(tuningKey(info), bad((t) => { t.matmul.nn = shape; }));
      expect((await autotune(device, info, { ...small, store })).fromCache).toBe(false);
    }
  });

  it('the worker\'s check is TypeBox\'s compiled code for the schema, as the script writes it now', () => {
    for (const c of COMPILED_CHECKS) {
      expect(readFileSync(join(ROOT, c.file), 'utf8'), `${c.file} is stale: run npx tsx scripts/compile-checks.ts`).toBe(compiledModule(c));
    }
    // It stands alone: nothing of TypeBox (or anything else) is imported but a type.
    const text = readFileSync(join(ROOT, 'src/gpu/tuning-check.ts'), 'utf8');
    expect(text.split('\n').filter((l) => /^import\b/.test(l))).toEqual(["import type { Tuning } from './kernels.ts';"]);
  });

  it('the worker\'s check answers as the schema does', () => {
    const large = { nn: DEFAULT_TUNING.matmul.nn, nt: DEFAULT_TUNING.matmul.nt, tn: DEFAULT_TUNING.matmul.tn };
    const cases: unknown[] = [
      DEFAULT_TUNING, { ...DEFAULT_TUNING, matmulLarge: large }, { ...DEFAULT_TUNING, matmulLarge: undefined },
      bad((t) => { (t.matmul.nn as { wgX: unknown }).wgX = '8'; }), bad((t) => { t.stride.groups = 1e12; }),
      bad((t) => { delete (t.matmul as Partial<Tuning['matmul']>).tn; }), bad((t) => { t.matmul.nt.wgY = 2.5; }),
      bad((t) => { t.matmul.tn.tm = 6 as 4; }), bad((t) => { t.stride.wg = 0; }), bad((t) => { t.stride.wg = NaN; }),
      bad((t) => { (t.matmul.nn as { vec4: unknown }).vec4 = 1; }), { ...DEFAULT_TUNING, extra: 1 },
      { ...DEFAULT_TUNING, matmul: { ...DEFAULT_TUNING.matmul, xx: DEFAULT_TUNING.matmul.nn } }, { ...DEFAULT_TUNING, matmulLarge: null },
      null, [], 'tuning', { matmul: DEFAULT_TUNING.matmul },
    ];
    expect(cases.map((c) => isTuning(c))).toEqual(cases.map((c) => Value.Check(TuningSchema, c)));
    expect(cases.map((c) => isTuning(c)).filter(Boolean)).toHaveLength(3);
  });
});

describe('tunedEngine: each product of a model at its own size (hardware adapters)', () => {
  const model = preset('micro');
  const layout = buildLayout(model);
  const B = 2, T = 16;
  const cfg = trainConfig({ batch: B, seqLen: T, lr: 3e-3, warmupSteps: 2, totalSteps: 20 }, model);
  const candidates = [{ wgX: 8, wgY: 8, tm: 8 as const, vec4: true }, { wgX: 4, wgY: 4, tm: 4 as const, vec4: true }];
  const engineOpts = { layout, train: cfg, B, T, tuning: DEFAULT_TUNING };
  const batches = [randomBatch(B, T, 1), randomBatch(B, T, 2), randomBatch(B, T, 3)];
  const train = async (engine: GpuEngine) => {
    const theta = initParams(layout, 2), zeros = new Float32Array(layout.total);
    engine.writeState({ params: theta, m: zeros, v: zeros, phi: theta, outerM: zeros, step: 0 });
    let s = 0;
    return (await engine.train(3, () => batches[s++])).losses;
  };

  gpuTest('times every product the engine builds, keeps the fastest per product, saves the merged tuning, and trains as the untuned engine does', async (device) => {
    const { info } = await getTestGpu();
    const hw = { ...info, isSoftware: false };
    const store = memoryStore();
    const t = await tunedEngine(device, hw, engineOpts, { store, key: 'k', candidates, splits: [2] });
    const keys = [...productsOf(t.engine.kernels).keys()].sort();
    try {
      expect(keys.length).toBeGreaterThan(5); // qkv, attproj, fc, fcproj, logits: forward, dinp, dweight
      expect(keys).toContain(`nn+bias+residual:${B * T}x${model.d}x${4 * model.d}`); // fcproj forward
      expect(Object.keys(t.tuning.products!).sort()).toEqual(keys);
      expect(t.tuned).toBe(keys.length);
      expect(t.engine.kernels.tuning).toEqual(t.tuning);
      expect(store.entries.get('k')).toEqual(t.tuning);
      expect(isTuning(t.tuning)).toBe(true);
      for (const key of keys) {
        const mine = t.timings.filter((x) => x.kernel === `product ${key}`);
        expect(mine.length).toBeGreaterThanOrEqual(candidates.length + 1); // each candidate, and the winner's other width
        expect(shapeName(t.tuning.products![key])).toBe(mine.reduce((a, b) => (b.ms < a.ms ? b : a)).shape);
      }
      // fcproj's forward (K = 4d) also ran with K in 2 ranges.
      expect(t.timings.filter((x) => x.kernel === `product nn+bias+residual:${B * T}x${model.d}x${4 * model.d}`).map((x) => x.shape).some((sh) => sh.endsWith('/split2'))).toBe(true);
      // The engine runs the tuned shapes: the same losses as the untuned engine's.
      const plain = new GpuEngine(device, engineOpts);
      try {
        const [got, want] = [await train(t.engine), await train(plain)];
        for (let i = 0; i < 3; i++) expect(Math.abs(got[i] - want[i]) / want[i]).toBeLessThan(1e-4);
      } finally {
        plain.destroy();
      }
    } finally {
      t.engine.destroy();
    }
    // A tuning that has every product is used as it is; a software adapter tunes none.
    const again = await tunedEngine(device, hw, { ...engineOpts, tuning: t.tuning }, { store, key: 'k', candidates, splits: [2] });
    again.engine.destroy();
    expect(again.tuned).toBe(0);
    expect(again.tuning).toBe(t.tuning);
    // Another model's products, stored for this adapter meanwhile, are kept beside this one's.
    const other = { ...t.tuning, products: { ...t.tuning.products, 'nn:3x5x8': DEFAULT_TUNING.matmul.nn } };
    store.entries.set('k', other);
    const third = await tunedEngine(device, hw, { ...engineOpts, B: 1 }, { store, key: 'k', candidates: [candidates[0]], splits: [] });
    third.engine.destroy();
    expect(third.tuned).toBeGreaterThan(0);
    expect(Object.keys(store.entries.get('k')!.products!)).toEqual(expect.arrayContaining(['nn:3x5x8', ...keys, ...productsOf(third.engine.kernels).keys()]));
    const sw = await tunedEngine(device, info, engineOpts, { candidates });
    sw.engine.destroy();
    expect(sw.tuned).toBe(0);
    expect(sw.tuning.products).toBeUndefined();
  });

  gpuTest(`keeps at most MAX_TUNED_PRODUCTS (${MAX_TUNED_PRODUCTS}): past it, only the products of the engine tuned last`, async (device) => {
    const { info } = await getTestGpu();
    const others = Object.fromEntries(Array.from({ length: MAX_TUNED_PRODUCTS }, (_, i) => [`nn:${i + 1}x7x7`, DEFAULT_TUNING.matmul.nn]));
    const full: Tuning = { ...DEFAULT_TUNING, products: others };
    expect(isTuning(full)).toBe(true);
    expect(isTuning({ ...full, products: { ...others, 'nn:999x7x7': DEFAULT_TUNING.matmul.nn } })).toBe(false); // the schema's bound is this one
    const t = await tunedEngine(device, { ...info, isSoftware: false }, { ...engineOpts, tuning: full }, { candidates: [candidates[0]], splits: [] });
    t.engine.destroy();
    expect(Object.keys(t.tuning.products!).sort()).toEqual([...productsOf(t.engine.kernels).keys()].sort());
    expect(isTuning(t.tuning)).toBe(true);
  });

  gpuTest('a product runs its own tuned shape, else its class\'s; productKey names what it fuses', async (device) => {
    const spec = { label: 't', mode: 'nn' as const, M: 8, N: 12, K: 4, a: { ref: device.createBuffer({ size: 256, usage: GPUBufferUsage.STORAGE }), ld: 4 }, b: { ref: device.createBuffer({ size: 256, usage: GPUBufferUsage.STORAGE }), ld: 12 }, c: { ref: device.createBuffer({ size: 512, usage: GPUBufferUsage.STORAGE }), ld: 12 } };
    expect(productKey(spec)).toBe('nn:8x12x4');
    expect(productKey({ ...spec, bias: { ref: spec.a.ref }, epilogue: { kind: 'residual', ref: spec.c.ref, ld: 12 } })).toBe('nn+bias+residual:8x12x4');
    expect(productKey({ ...spec, mode: 'tn', biasGrad: { ref: spec.a.ref }, accumulate: true })).toBe('tn+biasGrad+acc:8x12x4');
    const own = { wgX: 4, wgY: 4, tm: 4 as const, vec4: false };
    const k = new Kernels(device, { ...DEFAULT_TUNING, products: { 'nn:8x12x4': own } });
    try {
      expect(tunedFor(k, spec)).toEqual(own);
      expect(tunedFor(k, { ...spec, K: 8 })).toEqual(DEFAULT_TUNING.matmul.nn);
      expect([...productsOf(k).keys()]).toEqual(['nn:8x12x4', 'nn:8x12x8']);
    } finally {
      k.destroy();
    }
  });
});
