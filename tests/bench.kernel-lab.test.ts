// The matmul kernel lab (bench/kernels/matmul.ts) as the next device run calls it
// (scripts/device-run.sh: LAB_ARGS="src/shaders 10"), on two small ragged products on
// SwiftShader: every row it would time on a GPU computes the right product, so that a row broken
// by a kernel change shows here rather than in a device call's scarce minutes.
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';
import { ROOT } from './support/browser.ts';

interface LabRow { variant: string; wg: string; overrides: Record<string, number>; shape: string; maxRelErr: number }
const dirs: string[] = [];
afterAll(async () => { for (const d of dirs) await rm(d, { recursive: true, force: true }); });

describe('kernel lab', () => {
  it('every row of the trainer\'s kernels and of the nt lab kernel matches the CPU product, and the JSON says it ran whole', async () => {
    const out = await mkdtemp(join(tmpdir(), 'murmur-lab-'));
    dirs.push(out);
    await promisify(execFile)(process.execPath,
      ['--import', './scripts/node-register.mjs', 'bench/kernels/matmul.ts', '--small-shapes', '--out', out, 'src/shaders', '10'],
      { cwd: ROOT, timeout: 600_000, maxBuffer: 16 << 20 });
    const lab = JSON.parse(await readFile(join(out, 'kernels-matmul.json'), 'utf8')) as { complete: boolean; results: LabRow[] };
    expect(lab.complete).toBe(true);
    // Only what the filter names, each on both shapes.
    expect(new Set(lab.results.map((r) => r.shape))).toEqual(new Set(['36x20x48', '70x36x136']));
    for (const r of lab.results) expect(r.variant).toMatch(/^(src\/shaders\/matmul\.wgsl(:\w+)?|10_nt\.wgsl)$/);
    for (const r of lab.results) expect(r.maxRelErr, `${r.variant} ${r.wg} ${JSON.stringify(r.overrides)} at ${r.shape}`).toBeLessThan(1e-5);
    // The rows the next GPU run reads: nt in both forms and the trainer's nt, tiles grouped by rows.
    const has = (variant: string, overrides: Record<string, number>) => lab.results.some((r) => r.variant === variant
      && JSON.stringify(Object.entries(r.overrides).sort()) === JSON.stringify(Object.entries(overrides).sort()));
    expect(has('10_nt.wgsl', { DOTS: 1 }) && has('10_nt.wgsl', { DOTS: 0 })).toBe(true);
    expect(has('src/shaders/matmul.wgsl:nt', {})).toBe(true);
    expect(has('src/shaders/matmul.wgsl:nnTile', { PREFETCH: 1, SWIZZLE: 8 })).toBe(true);
  });
});
