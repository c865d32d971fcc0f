// 09: 08 with 16 rows a lane (16 x 8 blocks): each B load feeds 16 rows instead of 8.
enable subgroups;
struct Dims { M: u32, N: u32, K: u32, pad: u32 }
@group(0) @binding(0) var<storage, read> A: array<vec4f>;
@group(0) @binding(1) var<storage, read> B: array<vec4f>;
@group(0) @binding(2) var<storage, read_write> C: array<vec4f>;
@group(0) @binding(3) var<uniform> d: Dims;
override WG_X: u32 = 8;
override WG_Y: u32 = 8;

@compute @workgroup_size(WG_X, WG_Y)
fn main(@builtin(global_invocation_id) g: vec3u, @builtin(subgroup_invocation_id) sid: u32) {
  let n4 = d.N / 4u;
  let k4 = d.K / 4u;
  let c4 = g.x * 2u;
  let r0 = g.y * 16u;
  let q = sid & 3u;
  let live = c4 < n4 && r0 < d.M;
  let last = d.M - 1u;
  let cb = min(c4, n4 - 2u);
  let a0 = min(r0 + 0u + q, last) * k4;
  let a1 = min(r0 + 4u + q, last) * k4;
  let a2 = min(r0 + 8u + q, last) * k4;
  let a3 = min(r0 + 12u + q, last) * k4;
  var s0 = vec4f(0.0); var t0 = vec4f(0.0);
  var s1 = vec4f(0.0); var t1 = vec4f(0.0);
  var s2 = vec4f(0.0); var t2 = vec4f(0.0);
  var s3 = vec4f(0.0); var t3 = vec4f(0.0);
  var s4 = vec4f(0.0); var t4 = vec4f(0.0);
  var s5 = vec4f(0.0); var t5 = vec4f(0.0);
  var s6 = vec4f(0.0); var t6 = vec4f(0.0);
  var s7 = vec4f(0.0); var t7 = vec4f(0.0);
  var s8 = vec4f(0.0); var t8 = vec4f(0.0);
  var s9 = vec4f(0.0); var t9 = vec4f(0.0);
  var s10 = vec4f(0.0); var t10 = vec4f(0.0);
  var s11 = vec4f(0.0); var t11 = vec4f(0.0);
  var s12 = vec4f(0.0); var t12 = vec4f(0.0);
  var s13 = vec4f(0.0); var t13 = vec4f(0.0);
  var s14 = vec4f(0.0); var t14 = vec4f(0.0);
  var s15 = vec4f(0.0); var t15 = vec4f(0.0);
  for (var k = 0u; k < k4; k++) {
    let bi = 4u * k * n4 + cb;
    let b0 = B[bi]; let b1 = B[bi + n4]; let b2 = B[bi + 2u * n4]; let b3 = B[bi + 3u * n4];
    let e0 = B[bi + 1u]; let e1 = B[bi + n4 + 1u]; let e2 = B[bi + 2u * n4 + 1u]; let e3 = B[bi + 3u * n4 + 1u];
    var a: vec4f;
    let x0 = A[a0 + k];
    a = quadBroadcast(x0, 0u); s0 += a.x * b0 + a.y * b1 + a.z * b2 + a.w * b3; t0 += a.x * e0 + a.y * e1 + a.z * e2 + a.w * e3;
    a = quadBroadcast(x0, 1u); s1 += a.x * b0 + a.y * b1 + a.z * b2 + a.w * b3; t1 += a.x * e0 + a.y * e1 + a.z * e2 + a.w * e3;
    a = quadBroadcast(x0, 2u); s2 += a.x * b0 + a.y * b1 + a.z * b2 + a.w * b3; t2 += a.x * e0 + a.y * e1 + a.z * e2 + a.w * e3;
    a = quadBroadcast(x0, 3u); s3 += a.x * b0 + a.y * b1 + a.z * b2 + a.w * b3; t3 += a.x * e0 + a.y * e1 + a.z * e2 + a.w * e3;
    let x1 = A[a1 + k];
    a = quadBroadcast(x1, 0u); s4 += a.x * b0 + a.y * b1 + a.z * b2 + a.w * b3; t4 += a.x * e0 + a.y * e1 + a.z * e2 + a.w * e3;
    a = quadBroadcast(x1, 1u); s5 += a.x * b0 + a.y * b1 + a.z * b2 + a.w * b3; t5 += a.x * e0 + a.y * e1 + a.z * e2 + a.w * e3;
    a = quadBroadcast(x1, 2u); s6 += a.x * b0 + a.y * b1 + a.z * b2 + a.w * b3; t6 += a.x * e0 + a.y * e1 + a.z * e2 + a.w * e3;
    a = quadBroadcast(x1, 3u); s7 += a.x * b0 + a.y * b1 + a.z * b2 + a.w * b3; t7 += a.x * e0 + a.y * e1 + a.z * e2 + a.w * e3;
    let x2 = A[a2 + k];
    a = quadBroadcast(x2, 0u); s8 += a.x * b0 + a.y * b1 + a.z * b2 + a.w * b3; t8 += a.x * e0 + a.y * e1 + a.z * e2 + a.w * e3;
    a = quadBroadcast(x2, 1u); s9 += a.x * b0 + a.y * b1 + a.z * b2 + a.w * b3; t9 += a.x * e0 + a.y * e1 + a.z * e2 + a.w * e3;
    a = quadBroadcast(x2, 2u); s10 += a.x * b0 + a.y * b1 + a.z * b2 + a.w * b3; t10 += a.x * e0 + a.y * e1 + a.z * e2 + a.w * e3;
    a = quadBroadcast(x2, 3u); s11 += a.x * b0 + a.y * b1 + a.z * b2 + a.w * b3; t11 += a.x * e0 + a.y * e1 + a.z * e2 + a.w * e3;
    let x3 = A[a3 + k];
    a = quadBroadcast(x3, 0u); s12 += a.x * b0 + a.y * b1 + a.z * b2 + a.w * b3; t12 += a.x * e0 + a.y * e1 + a.z * e2 + a.w * e3;
    a = quadBroadcast(x3, 1u); s13 += a.x * b0 + a.y * b1 + a.z * b2 + a.w * b3; t13 += a.x * e0 + a.y * e1 + a.z * e2 + a.w * e3;
    a = quadBroadcast(x3, 2u); s14 += a.x * b0 + a.y * b1 + a.z * b2 + a.w * b3; t14 += a.x * e0 + a.y * e1 + a.z * e2 + a.w * e3;
    a = quadBroadcast(x3, 3u); s15 += a.x * b0 + a.y * b1 + a.z * b2 + a.w * b3; t15 += a.x * e0 + a.y * e1 + a.z * e2 + a.w * e3;
  }
  if (!live) { return; }
  let o = r0 * n4 + c4;
  if (r0 + 0u < d.M) { C[o + 0u * n4] = s0; C[o + 0u * n4 + 1u] = t0; }
  if (r0 + 1u < d.M) { C[o + 1u * n4] = s1; C[o + 1u * n4 + 1u] = t1; }
  if (r0 + 2u < d.M) { C[o + 2u * n4] = s2; C[o + 2u * n4 + 1u] = t2; }
  if (r0 + 3u < d.M) { C[o + 3u * n4] = s3; C[o + 3u * n4 + 1u] = t3; }
  if (r0 + 4u < d.M) { C[o + 4u * n4] = s4; C[o + 4u * n4 + 1u] = t4; }
  if (r0 + 5u < d.M) { C[o + 5u * n4] = s5; C[o + 5u * n4 + 1u] = t5; }
  if (r0 + 6u < d.M) { C[o + 6u * n4] = s6; C[o + 6u * n4 + 1u] = t6; }
  if (r0 + 7u < d.M) { C[o + 7u * n4] = s7; C[o + 7u * n4 + 1u] = t7; }
  if (r0 + 8u < d.M) { C[o + 8u * n4] = s8; C[o + 8u * n4 + 1u] = t8; }
  if (r0 + 9u < d.M) { C[o + 9u * n4] = s9; C[o + 9u * n4 + 1u] = t9; }
  if (r0 + 10u < d.M) { C[o + 10u * n4] = s10; C[o + 10u * n4 + 1u] = t10; }
  if (r0 + 11u < d.M) { C[o + 11u * n4] = s11; C[o + 11u * n4 + 1u] = t11; }
  if (r0 + 12u < d.M) { C[o + 12u * n4] = s12; C[o + 12u * n4 + 1u] = t12; }
  if (r0 + 13u < d.M) { C[o + 13u * n4] = s13; C[o + 13u * n4 + 1u] = t13; }
  if (r0 + 14u < d.M) { C[o + 14u * n4] = s14; C[o + 14u * n4 + 1u] = t14; }
  if (r0 + 15u < d.M) { C[o + 15u * n4] = s15; C[o + 15u * n4 + 1u] = t15; }
}
