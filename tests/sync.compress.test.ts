import { describe, expect, it } from 'vitest';
import {
  bf16ToF32, decodeBf16, encodeBf16, f32ToBf16,
  decodeF16, decodeTensor, dequantizeQ8, encodeF16, encodeTensor, f16ToF32, f32ToF16, quantizeQ8,
} from '../src/sync/compress.ts';
import { compressionForRun } from '../src/protocol/exchange-link.ts';
import { Q8_BLOCK, payloadBytes } from '../src/protocol/frame.ts';
import { CompressionError } from '../src/sync/errors.ts';
import { seededRandom } from './support/stats.ts';

function normals(n: number, seed: number, scale = 1): Float32Array {
  const r = seededRandom(seed);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = scale * Math.sqrt(-2 * Math.log(r() || 1e-12)) * Math.cos(2 * Math.PI * r());
  return out;
}

describe('f16', () => {
  it('encodes known values with round-to-nearest-even', () => {
    const cases: [number, number][] = [
      [0, 0x0000], [-0, 0x8000], [1, 0x3c00], [-2, 0xc000], [65504, 0x7bff], [65520, 0x7c00], [1e6, 0x7c00],
      [Infinity, 0x7c00], [-Infinity, 0xfc00], [2 ** -14, 0x0400], [2 ** -24, 0x0001], [2 ** -25, 0x0000],
      [3 * 2 ** -25, 0x0002], [1 + 2 ** -11, 0x3c00], [1 + 3 * 2 ** -11, 0x3c02], [0.1, 0x2e66], [2 ** -14 - 2 ** -25, 0x0400],
    ];
    for (const [x, h] of cases) expect(f32ToF16(x).toString(16), `f16(${x})`).toBe(h.toString(16));
    expect(Number.isNaN(f16ToF32(f32ToF16(NaN)))).toBe(true);
  });

  it('round-trips every non-NaN half exactly', () => {
    for (let h = 0; h < 65536; h++) {
      const x = f16ToF32(h);
      if (Number.isNaN(x)) continue;
      if (f32ToF16(x) !== h) throw new Error(`half 0x${h.toString(16)} -> ${x} -> 0x${f32ToF16(x).toString(16)}`);
    }
  });

  it('the vector encoder matches the scalar one on every kind of value', () => {
    const x = new Float32Array([...normals(5000, 4, 3), 0, -0, 1e-8, -3e-6, 6.1e-5, 65504, 65520, 1e9, -1e9, Infinity, -Infinity, NaN, 2 ** -24, 2 ** -25]);
    const h = new Uint16Array(encodeF16(x).buffer);
    for (let i = 0; i < x.length; i++) if (h[i] !== f32ToF16(x[i])) throw new Error(`element ${i} (${x[i]}): ${h[i]} vs ${f32ToF16(x[i])}`);
  });

  it('keeps relative error within 2^-11 on normal-range values', () => {
    const x = normals(10_000, 1, 0.05);
    const y = decodeF16(encodeF16(x), x.length);
    for (let i = 0; i < x.length; i++) {
      if (Math.abs(x[i]) < 2 ** -14) continue;
      expect(Math.abs(y[i] - x[i])).toBeLessThanOrEqual(Math.abs(x[i]) * 2 ** -11);
    }
  });
});

describe('bf16', () => {
  it('rounds to nearest even on the upper half and keeps f32 range', () => {
    const cases: [number, number][] = [
      [1, 0x3f80], [-2, 0xc000], [0, 0], [1 + 2 ** -8, 0x3f80], [1 + 3 * 2 ** -8, 0x3f82], [3e38, 0x7f62],
      [Infinity, 0x7f80], [3.4028234663852886e38, 0x7f80],
    ];
    for (const [x, h] of cases) expect(f32ToBf16(x).toString(16), `bf16(${x})`).toBe(h.toString(16));
    expect(Number.isNaN(bf16ToF32(f32ToBf16(NaN)))).toBe(true);
    const x = normals(5000, 3, 0.05);
    const y = decodeBf16(encodeBf16(x), x.length);
    for (let i = 0; i < x.length; i++) {
      expect(y[i]).toBe(bf16ToF32(f32ToBf16(x[i])));
      expect(Math.abs(y[i] - x[i])).toBeLessThanOrEqual(Math.abs(x[i]) * 2 ** -8);
    }
  });

  it('maps the run setting names', () => {
    expect(compressionForRun('none')).toEqual({ phi: 'f32', delta: 'f32' });
    expect(compressionForRun('int8')).toEqual({ phi: 'f16', delta: 'q8' });
    expect(compressionForRun('bf16')).toEqual({ phi: 'bf16', delta: 'bf16' });
    expect(() => compressionForRun('zstd')).toThrow(/unknown compression "zstd"/);
  });
});

describe('q8 blockwise', () => {
  it('bounds each element error by half a step of its block scale', () => {
    const n = 5 * Q8_BLOCK + 17; // a ragged last block
    const x = normals(n, 2, 0.01);
    x[3] = 5; // one outlier only coarsens its own block
    const bytes = quantizeQ8(x);
    expect(bytes.length).toBe(payloadBytes('q8', n));
    const y = dequantizeQ8(bytes, n);
    for (let b = 0; b * Q8_BLOCK < n; b++) {
      let absmax = 0;
      for (let i = b * Q8_BLOCK; i < Math.min(n, (b + 1) * Q8_BLOCK); i++) absmax = Math.max(absmax, Math.abs(x[i]));
      const step = absmax / 127;
      for (let i = b * Q8_BLOCK; i < Math.min(n, (b + 1) * Q8_BLOCK); i++) {
        expect(Math.abs(y[i] - x[i])).toBeLessThanOrEqual(step / 2 + 1e-7);
      }
    }
    expect(y[3]).toBeCloseTo(5, 5);
  });

  it('error feedback: the sum of what was sent tracks the sum of the true deltas', () => {
    const n = 4 * Q8_BLOCK;
    const residual = new Float32Array(n);
    const sentSum = new Float64Array(n);
    const trueSum = new Float64Array(n);
    const noFbSum = new Float64Array(n);
    for (let round = 0; round < 50; round++) {
      const d = normals(n, 100 + round, 0.001);
      d[0] = 0.5; // a large value in block 0 makes its small values round to zero without feedback
      const sent = dequantizeQ8(quantizeQ8(d, residual), n);
      const plain = dequantizeQ8(quantizeQ8(d), n);
      for (let i = 0; i < n; i++) { sentSum[i] += sent[i]; trueSum[i] += d[i]; noFbSum[i] += plain[i]; }
    }
    let errFb = 0, errNo = 0;
    for (let i = 1; i < Q8_BLOCK; i++) { errFb += (sentSum[i] - trueSum[i]) ** 2; errNo += (noFbSum[i] - trueSum[i]) ** 2; }
    // With feedback the accumulated error is at most one step per element; without, it grows.
    for (let i = 0; i < n; i++) expect(Math.abs(sentSum[i] + residual[i] - trueSum[i])).toBeLessThan(1e-5); // sent = true - what is still owed
    expect(errFb).toBeLessThan(errNo / 10);
  });

  it('refuses non-finite input and mismatched sizes', () => {
    const x = new Float32Array(10); x[4] = NaN;
    expect(() => quantizeQ8(x)).toThrow(CompressionError);
    expect(() => quantizeQ8(new Float32Array(10), new Float32Array(9))).toThrow(/residual/);
    expect(() => dequantizeQ8(new Uint8Array(5), 10)).toThrow(/q8 payload/);
    expect(() => decodeF16(new Uint8Array(5), 10)).toThrow(/f16 payload/);
    expect(() => decodeTensor('f32', new Uint8Array(7), 2)).toThrow(/f32 payload/);
  });

  it('encodeTensor copies, so the caller may overwrite its buffer at once', () => {
    const x = normals(300, 9);
    for (const dtype of ['f32', 'f16', 'bf16', 'q8'] as const) {
      const bytes = encodeTensor(dtype, x);
      const before = decodeTensor(dtype, bytes, x.length).slice();
      const saved = x.slice();
      x.fill(123);
      expect(decodeTensor(dtype, bytes, x.length)).toEqual(before);
      x.set(saved);
    }
    // A view at an odd offset still decodes (copied to alignment).
    const buf = new Uint8Array(1 + 4 * 3); buf.set(new Uint8Array(new Float32Array([1, 2, 3]).buffer), 1);
    expect([...decodeTensor('f32', buf.subarray(1), 3)]).toEqual([1, 2, 3]);
  });
});
