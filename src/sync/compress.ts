// Tensor encodings on the wire: f32 (exact), f16 for φ (half the bytes, relative error <= 2^-11),
// bf16 (half the bytes, f32's range, relative error <= 2^-8), and q8 for Δ: int8 per element with one f32 scale per block of Q8_BLOCK values (a quarter of
// the bytes). q8 is lossy, so the sender keeps what rounding dropped (error feedback) and adds it
// to the next Δ it sends: over rounds nothing is lost, only delayed.
import type { CompressionSetting } from '../protocol/exchange-link.ts';
import { Q8_BLOCK, payloadBytes, type Dtype } from '../protocol/frame.ts';
import { CompressionError } from './errors.ts';

// Float32Array views of wire bytes assume little-endian, as every browser platform is.
if (new Uint8Array(new Uint32Array([1]).buffer)[0] !== 1) {
  throw new Error('murmur sync: big-endian platforms are not supported (wire format is little-endian)');
}

const f32Box = new Float32Array(1);
const u32Box = new Uint32Array(f32Box.buffer);

/** IEEE 754 binary16 bits of `x`, rounded to nearest, ties to even; overflow gives ±Inf. */
export function f32ToF16(x: number): number {
  f32Box[0] = x;
  const b = u32Box[0];
  const sign = (b >>> 16) & 0x8000;
  const exp = (b >>> 23) & 0xff;
  const mant = b & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant !== 0 ? 0x200 : 0); // Inf, or a quiet NaN
  const e = exp - 127 + 15; // re-biased exponent
  if (e >= 0x1f) return sign | 0x7c00;
  if (e <= 0) {
    // Half subnormal: value in units of 2^-24 is (1.mant) * 2^(e-14) * 2^23 / 2^23.
    const shift = 14 - e; // >= 14
    if (shift > 24) return sign;
    const m = mant | 0x800000;
    let h = m >>> shift;
    const rem = m & ((1 << shift) - 1);
    const half = 1 << (shift - 1);
    if (rem > half || (rem === half && (h & 1) === 1)) h++;
    return sign | h; // a carry into bit 10 is exactly the smallest normal: correct
  }
  let h = sign | (e << 10) | (mant >>> 13);
  const rem = mant & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && (h & 1) === 1)) h++; // carry may reach Inf: correct
  return h;
}

/** bfloat16 bits of `x`: the upper half of its f32 bits, rounded to nearest, ties to even. */
export function f32ToBf16(x: number): number {
  f32Box[0] = x;
  const b = u32Box[0];
  if ((b & 0x7f800000) === 0x7f800000 && (b & 0x7fffff) !== 0) return (b >>> 16) | 0x40; // keep NaN a NaN
  return ((b + 0x7fff + ((b >>> 16) & 1)) >>> 16) & 0xffff; // a carry into the exponent is correct rounding
}

export function bf16ToF32(h: number): number {
  u32Box[0] = (h & 0xffff) << 16;
  return f32Box[0];
}

let f16Table: Float32Array | null = null;

/** All 65536 half values, built once: decoding is then one lookup per element. */
function halfTable(): Float32Array {
  if (f16Table) return f16Table;
  const t = new Float32Array(65536);
  for (let h = 0; h < 65536; h++) {
    const sign = h & 0x8000 ? -1 : 1;
    const exp = (h >>> 10) & 0x1f;
    const mant = h & 0x3ff;
    if (exp === 0) t[h] = sign * mant * 2 ** -24;
    else if (exp === 0x1f) t[h] = mant ? NaN : sign * Infinity;
    else t[h] = sign * (1 + mant / 1024) * 2 ** (exp - 15);
  }
  return (f16Table = t);
}

export function f16ToF32(h: number): number {
  return halfTable()[h & 0xffff];
}

/** Quantise `src` (+ `residual`, updated in place with what rounding dropped) into a q8 payload. */
export function quantizeQ8(src: Float32Array, residual?: Float32Array): Uint8Array {
  const n = src.length;
  if (residual && residual.length !== n) throw new CompressionError(`q8 residual has ${residual.length} elements, tensor has ${n}`);
  const blocks = Math.ceil(n / Q8_BLOCK);
  const out = new Uint8Array(payloadBytes('q8', n));
  const scales = new Float32Array(out.buffer, 0, blocks); // (blocks,)
  const q = new Int8Array(out.buffer, 4 * blocks, n); // (n,)
  const v = new Float32Array(Q8_BLOCK);
  for (let b = 0; b < blocks; b++) {
    const start = b * Q8_BLOCK;
    const len = Math.min(Q8_BLOCK, n - start);
    let absmax = 0;
    for (let i = 0; i < len; i++) {
      const x = src[start + i] + (residual ? residual[start + i] : 0);
      if (!Number.isFinite(x)) throw new CompressionError(`q8: non-finite value ${x} at element ${start + i}; refusing to send it`);
      v[i] = x;
      const a = Math.abs(x);
      if (a > absmax) absmax = a;
    }
    const scale = Math.fround(absmax / 127);
    scales[b] = scale;
    for (let i = 0; i < len; i++) {
      let k = scale > 0 ? Math.round(v[i] / scale) : 0;
      if (k > 127) k = 127; else if (k < -127) k = -127;
      q[start + i] = k;
      if (residual) residual[start + i] = v[i] - k * scale;
    }
  }
  return out;
}

export function dequantizeQ8(bytes: Uint8Array, elements: number): Float32Array {
  const want = payloadBytes('q8', elements);
  if (bytes.length !== want) throw new CompressionError(`q8 payload of ${bytes.length} bytes, ${elements} elements need ${want}`);
  const aligned = alignedCopy(bytes);
  const blocks = Math.ceil(elements / Q8_BLOCK);
  const scales = new Float32Array(aligned.buffer, aligned.byteOffset, blocks);
  const q = new Int8Array(aligned.buffer, aligned.byteOffset + 4 * blocks, elements);
  const out = new Float32Array(elements);
  for (let b = 0; b < blocks; b++) {
    const s = scales[b];
    const end = Math.min(elements, (b + 1) * Q8_BLOCK);
    for (let i = b * Q8_BLOCK; i < end; i++) out[i] = q[i] * s;
  }
  return out;
}

export function encodeF16(src: Float32Array): Uint8Array {
  // f32ToF16 inlined over the raw bits: ~3x faster than a call per element through the box.
  const bits = new Uint32Array(src.buffer, src.byteOffset, src.length);
  const h = new Uint16Array(src.length);
  for (let i = 0; i < src.length; i++) {
    const b = bits[i];
    const sign = (b >>> 16) & 0x8000;
    const exp = (b >>> 23) & 0xff;
    const mant = b & 0x7fffff;
    const e = exp - 112;
    if (e > 0 && e < 0x1f) {
      let x = sign | (e << 10) | (mant >>> 13);
      const rem = mant & 0x1fff;
      if (rem > 0x1000 || (rem === 0x1000 && (x & 1) === 1)) x++;
      h[i] = x;
    } else {
      h[i] = f32ToF16(src[i]); // zero, subnormal, overflow, Inf, NaN: the careful path
    }
  }
  return new Uint8Array(h.buffer);
}

export function decodeF16(bytes: Uint8Array, elements: number): Float32Array {
  if (bytes.length !== 2 * elements) throw new CompressionError(`f16 payload of ${bytes.length} bytes, ${elements} elements need ${2 * elements}`);
  const aligned = alignedCopy(bytes);
  const h = new Uint16Array(aligned.buffer, aligned.byteOffset, elements);
  const t = halfTable();
  const out = new Float32Array(elements);
  for (let i = 0; i < elements; i++) out[i] = t[h[i]];
  return out;
}

export function encodeBf16(src: Float32Array): Uint8Array {
  const bits = new Uint32Array(src.buffer, src.byteOffset, src.length);
  const h = new Uint16Array(src.length);
  for (let i = 0; i < src.length; i++) {
    const b = bits[i];
    h[i] = (b & 0x7f800000) === 0x7f800000 && (b & 0x7fffff) !== 0 ? (b >>> 16) | 0x40 : ((b + 0x7fff + ((b >>> 16) & 1)) >>> 16) & 0xffff;
  }
  return new Uint8Array(h.buffer);
}

export function decodeBf16(bytes: Uint8Array, elements: number): Float32Array {
  if (bytes.length !== 2 * elements) throw new CompressionError(`bf16 payload of ${bytes.length} bytes, ${elements} elements need ${2 * elements}`);
  const aligned = alignedCopy(bytes);
  const h = new Uint16Array(aligned.buffer, aligned.byteOffset, elements);
  const out = new Float32Array(elements);
  const bits = new Uint32Array(out.buffer);
  for (let i = 0; i < elements; i++) bits[i] = h[i] << 16;
  return out;
}

/** Encode a tensor for the wire. The bytes are a fresh copy: the caller may reuse `src` at once. */
export function encodeTensor(dtype: Dtype, src: Float32Array, residual?: Float32Array): Uint8Array {
  switch (dtype) {
    case 'f32': return new Uint8Array(src.slice().buffer);
    case 'f16': return encodeF16(src);
    case 'bf16': return encodeBf16(src);
    case 'q8': return quantizeQ8(src, residual);
  }
}

export function decodeTensor(dtype: Dtype, bytes: Uint8Array, elements: number): Float32Array {
  switch (dtype) {
    case 'f32': {
      if (bytes.length !== 4 * elements) throw new CompressionError(`f32 payload of ${bytes.length} bytes, ${elements} elements need ${4 * elements}`);
      const a = alignedCopy(bytes);
      return new Float32Array(a.buffer, a.byteOffset, elements);
    }
    case 'f16': return decodeF16(bytes, elements);
    case 'bf16': return decodeBf16(bytes, elements);
    case 'q8': return dequantizeQ8(bytes, elements);
  }
}

/**
 * A partner's φ as received, when the run sends φ rounded (f16, bf16), re-expressed beside our own:
 * φ_i + (round(φ_j) − round(φ_i)), in place, with round(φ_i) decoded from the bytes we sent it
 * (`ownWire`). The consensus term pulls us by γ/2 × (φ_j − φ_i); with the partner's φ rounded and
 * ours not, each side was pulled towards the wire's grid by its own rounding error, every round, the
 * pair's mean with it: two replicas moving 1e-4 a round on weights near 1 kept 38% of that progress
 * over 100 rounds with f16 and 3% with bf16. Both rounded alike, the two pulls are equal
 * and opposite and the pair's mean moves by its Δ alone, as with f32 (within 1% of the float64 reference over
 * those rounds, tests/sync.mesh.test.ts). An element whose own rounding
 * is not finite (|φ_i| past the dtype's range) is left as received; a non-finite received value
 * stays non-finite, for the validator to refuse.
 */
export function phiBesideOwn(dtype: Dtype, theirs: Float32Array, own: Float32Array, ownWire: Uint8Array): Float32Array {
  if (dtype === 'f32') return theirs;
  if (own.length !== theirs.length) throw new CompressionError(`φ beside our own: ${theirs.length} elements received, ours has ${own.length}`);
  const mine = decodeTensor(dtype, ownWire, own.length);
  for (let i = 0; i < theirs.length; i++) {
    const m = mine[i];
    if (m - m === 0) theirs[i] = own[i] + (theirs[i] - m);
  }
  return theirs;
}

/** `bytes` itself when 4-byte aligned, else an aligned copy (typed-array views need alignment). */
function alignedCopy(bytes: Uint8Array): Uint8Array {
  return bytes.byteOffset % 4 === 0 ? bytes : bytes.slice();
}

export const NO_COMPRESSION: CompressionSetting = { phi: 'f32', delta: 'f32' };
export const PHI_DTYPES: readonly Dtype[] = ['f32', 'f16', 'bf16'];
export const DELTA_DTYPES: readonly Dtype[] = ['f32', 'f16', 'bf16', 'q8'];

