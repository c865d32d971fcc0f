// The sum over a workgroup of WG invocations (WG, the including kernel's override: a power of two
// of at most 256) of each invocation's vec2 `v`, for the kernels that reduce a row in workgroup
// memory (LayerNorm's `wide` forward and backward). src/gpu/shaders.ts puts this file in front.
var<workgroup> red: array<vec2f, 256>;

/** Every invocation gets the sum; call it from uniform control flow (it has barriers). */
fn workgroupSum(v: vec2f, li: u32) -> vec2f {
  red[li] = v;
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s >>= 1u) {
    if (li < s) { red[li] += red[li + s]; }
    workgroupBarrier();
  }
  let r = red[0];
  workgroupBarrier();
  return r;
}
