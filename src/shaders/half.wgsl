// f16 operands (issue 17): with the override HALF, the kernels that read matrix-product and
// attention operands (matmul.wgsl, attention.*.wgsl) round each value to the nearest IEEE
// binary16, ties to even, as they load it, and then multiply and accumulate in f32. This is
// the numerics of a step whose activations, weights and incoming gradients are f16, with f32
// master weights and AdamW (src/model/half.ts rounds the same way for the CPU reference). It
// is written with integer and power-of-two arithmetic so that every adapter, SwiftShader
// included, rounds exactly alike; beyond 65504 a value becomes an infinity of its sign, which
// the dynamic loss scaling in gradnorm.wgsl detects. src/gpu/shaders.ts puts this file in
// front of each kernel that uses it.
override HALF: bool = false;

/** 2^e as an f32, for e in -126 ..= 127 (built from its exponent bits: exact on every adapter). */
fn pow2(e: vec4i) -> vec4f {
  return bitcast<vec4f>(vec4u(e + vec4i(127)) << vec4u(23u));
}

/** x rounded to the nearest binary16 value (ties to even), as f32; overflow gives ±infinity. */
fn f16round4(x: vec4f) -> vec4f {
  let bits = bitcast<vec4u>(x);
  // The f16 spacing at |x| is 2^q, q = max(exponent, -14) - 10: normal f16 keep 10 fraction
  // bits, subnormal ones are multiples of 2^-24. |x| / 2^q and back are exact (powers of two),
  // and WGSL's round() breaks ties to even.
  let e = vec4i((bits >> vec4u(23u)) & vec4u(0xffu)) - vec4i(127);
  let q = clamp(e, vec4i(-14), vec4i(127)) - vec4i(10);
  let r = round(abs(x) * pow2(-q)) * pow2(q);
  let mag = select(bitcast<vec4u>(r), vec4u(0x7f800000u), r > vec4f(65504.0));
  return bitcast<vec4f>(mag | (bits & vec4u(0x80000000u)));
}

/** An operand as the kernels read it: itself, or (HALF) rounded to f16. */
fn h4(x: vec4f) -> vec4f {
  if (HALF) { return f16round4(x); }
  return x;
}
fn h1(x: f32) -> f32 {
  if (HALF) { return f16round4(vec4f(x)).x; }
  return x;
}
