// What a model needs from the device (src/gpu/limits.ts), with attention fused: no binding
// grows with T^2, so `base` at ctx 1024 needs the same limits as at 512 (its flat parameter
// buffer, 185 MiB, is the largest binding either way).
import { describe, expect, it } from 'vitest';
import { PRESETS } from '../src/model/config.ts';
import { buildLayout } from '../src/model/layout.ts';
import { activationBytes } from '../src/gpu/gpt.ts';
import { DEFAULT_TUNING } from '../src/gpu/kernels.ts';
import { requirements } from '../src/gpu/limits.ts';

describe('device requirements with fused attention', () => {
  const base1024 = buildLayout({ ...PRESETS.base, ctx: 1024 });

  it('base at ctx 1024, batch 8: the same limits as at T = 512; no activation binding above 128 MiB', () => {
    const r = requirements(base1024, 8, 1024, DEFAULT_TUNING);
    expect(r.requested).toEqual(requirements(base1024, 8, 512, DEFAULT_TUNING).requested);
    expect(r.needs.maxStorageBufferBindingSize).toBe(base1024.total * 4);
    expect(activationBytes(base1024, 8, 1024).largest).toBeLessThanOrEqual(128 << 20);
    expect(r.needs.maxComputeWorkgroupStorageSize).toBe(16384);
  });

  it('activation memory is linear in T (doubling T at most doubles it)', () => {
    const a = activationBytes(base1024, 8, 512).total, b = activationBytes(base1024, 8, 1024).total;
    expect(b).toBeLessThanOrEqual(2 * a);
    expect(b).toBeGreaterThan(1.9 * a);
  });
});
