// 06: each invocation owns a 8x8 block of C (two adjacent vec4 columns) in 16 vec4
// registers; A and B read as vec4, no workgroup memory. K multiple of 4, N multiple of 8.
// Twice the columns of 02: each A load feeds 8 vec4 FMAs instead of 4 (loads are gathers on SwiftShader).
struct Dims { M: u32, N: u32, K: u32, pad: u32 }
@group(0) @binding(0) var<storage, read> A: array<vec4f>;        // (M, K/4)
@group(0) @binding(1) var<storage, read> B: array<vec4f>;        // (K, N/4)
@group(0) @binding(2) var<storage, read_write> C: array<vec4f>;  // (M, N/4)
@group(0) @binding(3) var<uniform> d: Dims;
override WG_X: u32 = 8;
override WG_Y: u32 = 8;

@compute @workgroup_size(WG_X, WG_Y)
fn main(@builtin(global_invocation_id) g: vec3u) {
  let n4 = d.N / 4u;
  let k4 = d.K / 4u;
  let c4 = g.x * 2u;
  let r0 = g.y * 8u;
  if (c4 >= n4 || r0 >= d.M) { return; }
  let last = d.M - 1u;
  let a0 = min(r0 + 0u, last) * k4;
  var s0 = vec4f(0.0); var t0 = vec4f(0.0);
  let a1 = min(r0 + 1u, last) * k4;
  var s1 = vec4f(0.0); var t1 = vec4f(0.0);
  let a2 = min(r0 + 2u, last) * k4;
  var s2 = vec4f(0.0); var t2 = vec4f(0.0);
  let a3 = min(r0 + 3u, last) * k4;
  var s3 = vec4f(0.0); var t3 = vec4f(0.0);
  let a4 = min(r0 + 4u, last) * k4;
  var s4 = vec4f(0.0); var t4 = vec4f(0.0);
  let a5 = min(r0 + 5u, last) * k4;
  var s5 = vec4f(0.0); var t5 = vec4f(0.0);
  let a6 = min(r0 + 6u, last) * k4;
  var s6 = vec4f(0.0); var t6 = vec4f(0.0);
  let a7 = min(r0 + 7u, last) * k4;
  var s7 = vec4f(0.0); var t7 = vec4f(0.0);
  for (var k = 0u; k < k4; k++) {
    let bi = 4u * k * n4 + c4;
    let b0 = B[bi]; let b1 = B[bi + n4]; let b2 = B[bi + 2u * n4]; let b3 = B[bi + 3u * n4];
    let e0 = B[bi + 1u]; let e1 = B[bi + n4 + 1u]; let e2 = B[bi + 2u * n4 + 1u]; let e3 = B[bi + 3u * n4 + 1u];
    var a: vec4f;
    a = A[a0 + k]; s0 += a.x * b0 + a.y * b1 + a.z * b2 + a.w * b3; t0 += a.x * e0 + a.y * e1 + a.z * e2 + a.w * e3;
    a = A[a1 + k]; s1 += a.x * b0 + a.y * b1 + a.z * b2 + a.w * b3; t1 += a.x * e0 + a.y * e1 + a.z * e2 + a.w * e3;
    a = A[a2 + k]; s2 += a.x * b0 + a.y * b1 + a.z * b2 + a.w * b3; t2 += a.x * e0 + a.y * e1 + a.z * e2 + a.w * e3;
    a = A[a3 + k]; s3 += a.x * b0 + a.y * b1 + a.z * b2 + a.w * b3; t3 += a.x * e0 + a.y * e1 + a.z * e2 + a.w * e3;
    a = A[a4 + k]; s4 += a.x * b0 + a.y * b1 + a.z * b2 + a.w * b3; t4 += a.x * e0 + a.y * e1 + a.z * e2 + a.w * e3;
    a = A[a5 + k]; s5 += a.x * b0 + a.y * b1 + a.z * b2 + a.w * b3; t5 += a.x * e0 + a.y * e1 + a.z * e2 + a.w * e3;
    a = A[a6 + k]; s6 += a.x * b0 + a.y * b1 + a.z * b2 + a.w * b3; t6 += a.x * e0 + a.y * e1 + a.z * e2 + a.w * e3;
    a = A[a7 + k]; s7 += a.x * b0 + a.y * b1 + a.z * b2 + a.w * b3; t7 += a.x * e0 + a.y * e1 + a.z * e2 + a.w * e3;
  }
  let o = r0 * n4 + c4;
  { C[o + 0u * n4] = s0; C[o + 0u * n4 + 1u] = t0; }
  if (r0 + 1u < d.M) { C[o + 1u * n4] = s1; C[o + 1u * n4 + 1u] = t1; }
  if (r0 + 2u < d.M) { C[o + 2u * n4] = s2; C[o + 2u * n4 + 1u] = t2; }
  if (r0 + 3u < d.M) { C[o + 3u * n4] = s3; C[o + 3u * n4 + 1u] = t3; }
  if (r0 + 4u < d.M) { C[o + 4u * n4] = s4; C[o + 4u * n4 + 1u] = t4; }
  if (r0 + 5u < d.M) { C[o + 5u * n4] = s5; C[o + 5u * n4 + 1u] = t5; }
  if (r0 + 6u < d.M) { C[o + 6u * n4] = s6; C[o + 6u * n4 + 1u] = t6; }
  if (r0 + 7u < d.M) { C[o + 7u * n4] = s7; C[o + 7u * n4 + 1u] = t7; }
}
