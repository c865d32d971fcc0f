// 08: 06's 8x8 block, with A's rows shared across a quad of invocations (subgroups feature).
// The four invocations of a quad own the same 8 rows (adjacent columns), so in 06 each loads
// the same 8 vec4 of A per k-step: on SwiftShader every load is a 4-lane gather. Here quad lane
// q loads rows q and 4 + q only, and quadBroadcast hands each row to the other three.
enable subgroups;
struct Dims { M: u32, N: u32, K: u32, pad: u32 }
@group(0) @binding(0) var<storage, read> A: array<vec4f>;        // (M, K/4)
@group(0) @binding(1) var<storage, read> B: array<vec4f>;        // (K, N/4)
@group(0) @binding(2) var<storage, read_write> C: array<vec4f>;  // (M, N/4)
@group(0) @binding(3) var<uniform> d: Dims;
override WG_X: u32 = 8;
override WG_Y: u32 = 8;

@compute @workgroup_size(WG_X, WG_Y)
fn main(@builtin(global_invocation_id) g: vec3u, @builtin(subgroup_invocation_id) sid: u32) {
  let n4 = d.N / 4u;
  let k4 = d.K / 4u;
  let c4 = g.x * 2u;
  let r0 = g.y * 8u;
  let q = sid & 3u;
  // No early return: every lane of a quad must reach the broadcasts.
  let live = c4 < n4 && r0 < d.M;
  let last = d.M - 1u;
  let lo = min(r0 + q, last) * k4;
  let hi = min(r0 + 4u + q, last) * k4;
  let cb = min(c4, n4 - 2u);
  var s0 = vec4f(0.0); var t0 = vec4f(0.0);
  var s1 = vec4f(0.0); var t1 = vec4f(0.0);
  var s2 = vec4f(0.0); var t2 = vec4f(0.0);
  var s3 = vec4f(0.0); var t3 = vec4f(0.0);
  var s4 = vec4f(0.0); var t4 = vec4f(0.0);
  var s5 = vec4f(0.0); var t5 = vec4f(0.0);
  var s6 = vec4f(0.0); var t6 = vec4f(0.0);
  var s7 = vec4f(0.0); var t7 = vec4f(0.0);
  for (var k = 0u; k < k4; k++) {
    let bi = 4u * k * n4 + cb;
    let b0 = B[bi]; let b1 = B[bi + n4]; let b2 = B[bi + 2u * n4]; let b3 = B[bi + 3u * n4];
    let e0 = B[bi + 1u]; let e1 = B[bi + n4 + 1u]; let e2 = B[bi + 2u * n4 + 1u]; let e3 = B[bi + 3u * n4 + 1u];
    let xl = A[lo + k];
    let xh = A[hi + k];
    var a: vec4f;
    a = quadBroadcast(xl, 0u); s0 += a.x * b0 + a.y * b1 + a.z * b2 + a.w * b3; t0 += a.x * e0 + a.y * e1 + a.z * e2 + a.w * e3;
    a = quadBroadcast(xl, 1u); s1 += a.x * b0 + a.y * b1 + a.z * b2 + a.w * b3; t1 += a.x * e0 + a.y * e1 + a.z * e2 + a.w * e3;
    a = quadBroadcast(xl, 2u); s2 += a.x * b0 + a.y * b1 + a.z * b2 + a.w * b3; t2 += a.x * e0 + a.y * e1 + a.z * e2 + a.w * e3;
    a = quadBroadcast(xl, 3u); s3 += a.x * b0 + a.y * b1 + a.z * b2 + a.w * b3; t3 += a.x * e0 + a.y * e1 + a.z * e2 + a.w * e3;
    a = quadBroadcast(xh, 0u); s4 += a.x * b0 + a.y * b1 + a.z * b2 + a.w * b3; t4 += a.x * e0 + a.y * e1 + a.z * e2 + a.w * e3;
    a = quadBroadcast(xh, 1u); s5 += a.x * b0 + a.y * b1 + a.z * b2 + a.w * b3; t5 += a.x * e0 + a.y * e1 + a.z * e2 + a.w * e3;
    a = quadBroadcast(xh, 2u); s6 += a.x * b0 + a.y * b1 + a.z * b2 + a.w * b3; t6 += a.x * e0 + a.y * e1 + a.z * e2 + a.w * e3;
    a = quadBroadcast(xh, 3u); s7 += a.x * b0 + a.y * b1 + a.z * b2 + a.w * b3; t7 += a.x * e0 + a.y * e1 + a.z * e2 + a.w * e3;
  }
  if (!live) { return; }
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
