// 05: as 02 but the row count TM is an override and the block lives in a fixed array driven by
// loops; does the compiler still keep it in registers once TM is constant?
struct Dims { M: u32, N: u32, K: u32, pad: u32 }
@group(0) @binding(0) var<storage, read> A: array<vec4f>;
@group(0) @binding(1) var<storage, read> B: array<vec4f>;
@group(0) @binding(2) var<storage, read_write> C: array<vec4f>;
@group(0) @binding(3) var<uniform> d: Dims;
override WG_X: u32 = 8;
override WG_Y: u32 = 8;
override TM: u32 = 8;

@compute @workgroup_size(WG_X, WG_Y)
fn main(@builtin(global_invocation_id) g: vec3u) {
  let n4 = d.N / 4u;
  let k4 = d.K / 4u;
  let c4 = g.x;
  let r0 = g.y * TM;
  if (c4 >= n4 || r0 >= d.M) { return; }
  var acc: array<vec4f, 8>;
  var ao: array<u32, 8>;
  for (var r = 0u; r < TM; r++) { ao[r] = min(r0 + r, d.M - 1u) * k4; acc[r] = vec4f(0.0); }
  for (var k = 0u; k < k4; k++) {
    let bi = 4u * k * n4 + c4;
    let b0 = B[bi]; let b1 = B[bi + n4]; let b2 = B[bi + 2u * n4]; let b3 = B[bi + 3u * n4];
    for (var r = 0u; r < TM; r++) {
      let a = A[ao[r] + k];
      acc[r] += a.x * b0 + a.y * b1 + a.z * b2 + a.w * b3;
    }
  }
  for (var r = 0u; r < TM; r++) { if (r0 + r < d.M) { C[(r0 + r) * n4 + c4] = acc[r]; } }
}
