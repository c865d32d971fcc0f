// The autotuner: measures candidate kernel shapes, keeps the fastest, caches it per adapter
// (memory, and the Node JSON file store), and a cached adapter is not measured again.
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it, vi } from 'vitest';
import { autotune, memoryStore, shapeName, tuningKey } from '../src/gpu/autotune.ts';
import { DEFAULT_TUNING, LARGE_GEMM, tunedShape, type Tuning } from '../src/gpu/kernels.ts';
import { fileStore } from '../src/gpu/autotune-node.ts';
import { getTestGpu, gpuTest } from './support/gpu.ts';

const small = {
  size: 64,
  matmulCandidates: [{ wgX: 8, wgY: 8, tm: 8 as const, vec4: true }, { wgX: 16, wgY: 4, tm: 4 as const, vec4: true }],
  strideCandidates: [{ wg: 256, groups: 16 }, { wg: 64, groups: 64 }],
};
const dirs: string[] = [];
afterAll(async () => { for (const d of dirs) await rm(d, { recursive: true, force: true }); });

describe('autotune', () => {
  gpuTest('measures every candidate, picks the fastest, and caches it', async (device) => {
    const { info } = await getTestGpu();
    const store = memoryStore();
    const r = await autotune(device, info, { ...small, store });
    expect(r.fromCache).toBe(false);
    expect(r.timings).toHaveLength(3 * (2 + 1) + 2); // per mode: 2 shapes + the winner's other load width; 2 grids
    for (const t of r.timings) expect(t.ms).toBeGreaterThan(0);
    for (const mode of ['nn', 'nt', 'tn'] as const) {
      const mine = r.timings.filter((t) => t.kernel === `matmul.${mode}`);
      const fastest = mine.reduce((a, b) => (b.ms < a.ms ? b : a));
      expect(shapeName(r.tuning.matmul[mode])).toBe(fastest.shape);
    }
    expect(small.strideCandidates).toContainEqual(r.tuning.stride);
    expect(store.entries.get(tuningKey(info))).toEqual(r.tuning);

    const again = await autotune(device, info, { ...small, store });
    expect(again.fromCache).toBe(true);
    expect(again.timings).toHaveLength(0);
    expect(again.tuning).toEqual(r.tuning);
  });

  gpuTest('on a hardware adapter also tunes the large GEMM class; a software one leaves it out', async (device) => {
    const { info } = await getTestGpu();
    const hw = await autotune(device, { ...info, isSoftware: false }, { ...small, largeSize: 96, store: memoryStore() });
    expect(hw.timings).toHaveLength(2 * 3 * (2 + 1) + 2);
    for (const mode of ['nn', 'nt', 'tn'] as const) {
      const mine = hw.timings.filter((t) => t.kernel === `matmul.${mode}.large`);
      expect(mine).toHaveLength(3);
      expect(shapeName(hw.tuning.matmulLarge![mode])).toBe(mine.reduce((a, b) => (b.ms < a.ms ? b : a)).shape);
    }
    const sw = await autotune(device, { ...info, isSoftware: true }, { ...small, largeSize: 96, store: memoryStore() });
    expect(sw.tuning.matmulLarge).toBeUndefined();
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
});
