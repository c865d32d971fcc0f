import { describe, expect, it } from 'vitest';
import { PartnerValidator, median, norm2, allFinite } from '../src/sync/validate.ts';
import { seededRandom } from './support/stats.ts';

const n = 4096;
function gaussian(seed: number, scale: number): Float32Array {
  const r = seededRandom(seed);
  const x = new Float32Array(n);
  for (let i = 0; i < n; i++) x[i] = scale * Math.sqrt(-2 * Math.log(r() || 1e-12)) * Math.cos(2 * Math.PI * r());
  return x;
}
function plus(a: Float32Array, b: Float32Array): Float32Array {
  return a.map((x, i) => x + b[i]);
}

describe('PartnerValidator', () => {
  const phi = gaussian(1, 0.02);

  function honestValidator(): PartnerValidator {
    const v = new PartnerValidator(n);
    v.observeOwn(norm2(gaussian(2, 1e-3))); // ~0.064
    return v;
  }

  it('accepts honest partners over many rounds: nearly orthogonal Δ of similar size, nearby φ', () => {
    const v = honestValidator();
    for (let round = 0; round < 40; round++) {
      v.observeOwn(norm2(gaussian(1000 + round, 1e-3)));
      const partner = { phi: plus(phi, gaussian(2000 + round, 1e-3)), delta: gaussian(3000 + round, 1.3e-3) };
      const res = v.check(phi, partner);
      expect(res.ok, JSON.stringify(res)).toBe(true);
      if (res.ok) expect(res.clipped).toBe(false);
    }
  });

  it('clips a large Δ to κ × the median and keeps the direction', () => {
    const v = honestValidator();
    const big = gaussian(4, 1e-3 * 10); // 10x: above κ = 3, below the reject factor
    const dir = big.slice();
    const scale = v.deltaScale;
    const res = v.check(phi, { phi: phi.slice(), delta: big });
    expect(res.ok).toBe(true);
    if (!res.ok) return;
    expect(res.clipped).toBe(true);
    expect(norm2(res.delta) / scale).toBeCloseTo(3, 5);
    const cos = res.delta.reduce((s, x, i) => s + x * dir[i], 0) / (norm2(res.delta) * norm2(dir));
    expect(cos).toBeCloseTo(1, 6);
  });

  it('rejects NaN or Inf anywhere in φ or Δ, naming where', () => {
    const v = honestValidator();
    const d = gaussian(5, 1e-3); d[77] = NaN;
    expect(v.check(phi, { phi: phi.slice(), delta: d })).toMatchObject({ ok: false, reason: 'non-finite', detail: 'Δ[77] = NaN' });
    const p = phi.slice(); p[5] = -Infinity;
    expect(v.check(phi, { phi: p, delta: gaussian(6, 1e-3) })).toMatchObject({ ok: false, reason: 'non-finite', detail: 'φ[5] = -Infinity' });
  });

  it('rejects a huge Δ norm and an outlying φ', () => {
    const v = honestValidator();
    expect(v.check(phi, { phi: phi.slice(), delta: gaussian(7, 1) })).toMatchObject({ ok: false, reason: 'delta-norm' });
    expect(v.check(phi, { phi: gaussian(8, 0.02), delta: gaussian(9, 1e-3) })).toMatchObject({ ok: false, reason: 'phi-distance' });
  });

  it('rejects wrong sizes', () => {
    const v = honestValidator();
    expect(v.check(phi, { phi: new Float32Array(n - 1), delta: new Float32Array(n) })).toMatchObject({ ok: false, reason: 'size' });
  });

  it('a persistent attacker just under the clip bound cannot ratchet the scale up', () => {
    const v = honestValidator();
    const own = norm2(gaussian(2, 1e-3));
    for (let round = 0; round < 100; round++) {
      v.observeOwn(own);
      const d = gaussian(500 + round, 1);
      const s = (2.99 * v.deltaScale) / norm2(d);
      const res = v.check(phi, { phi: phi.slice(), delta: d.map((x) => x * s) });
      expect(res.ok && !res.clipped).toBe(true); // accepted every time, unclipped
    }
    expect(v.deltaScale).toBeLessThan(1.01 * own);
  });

  it('helpers', () => {
    expect(median([3, 1, 2])).toBe(2);
    expect(median([4, 1, 2, 3])).toBe(2); // lower median
    expect(median([])).toBe(0);
    expect(norm2(new Float32Array([3, 4]))).toBe(5);
    expect(allFinite(new Float32Array([1, NaN]))).toBe(false);
    expect(() => new PartnerValidator(3, { clipFactor: 3, rejectFactor: 2, phiFactor: 1, window: 4 })).toThrow(/rejectFactor/);
  });
});
