// IEEE binary16 ("f16") rounding on the CPU: the numerics of a training step whose matmul and
// attention inputs are f16 (accumulated in f32) with f32 master weights and AdamW, as a GPU
// with `shader-f16` would run them (issue 17). SwiftShader has no `shader-f16`, so this is how
// the suite checks that such a step still trains: ReferenceGPT rounds those operands with it.
// Node 20 has no Math.f16round.

/** Largest finite f16. */
export const F16_MAX = 65504;

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);
/** 2^k for the spacings an f16 can have: k = -24 .. 5. */
const POW2 = Array.from({ length: 30 }, (_, i) => 2 ** (i - 24));

/**
 * x (taken as the f32 it is stored as) rounded to the nearest f16 value, ties to even, as a
 * number; overflow gives ±Infinity.
 */
export function f16round(x: number): number {
  if (x === 0 || !Number.isFinite(x)) return x;
  f32[0] = x;
  const e = ((u32[0]! >>> 23) & 0xff) - 127; // |x| = 1.f × 2^e (below 2^-126 e is -127: subnormal)
  const q = POW2[Math.min(29, Math.max(e, -14) - 10 + 24)]!; // the f16 spacing at |x|
  const a = Math.abs(f32[0]!);
  const v = a / q; // exact: q is a power of two
  let r = Math.round(v);
  if (r - v === 0.5 && r % 2 === 1) r -= 1; // Math.round breaks ties upward: make them even
  const out = r * q;
  return x < 0 ? -(out > F16_MAX ? Infinity : out) : out > F16_MAX ? Infinity : out;
}

/** dst[i] = f16round(src[i]) for the first n elements (dst may be src). */
export function roundF16(dst: Float32Array, src: Float32Array, n = src.length): void {
  for (let i = 0; i < n; i++) dst[i] = f16round(src[i]!);
}
