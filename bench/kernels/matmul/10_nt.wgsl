// 10: C = A @ B^T with B stored (N, K), as the backward's dx = dy @ W^T reads the weights. Each
// invocation owns an 8x4 block of C; A's rows and B's rows (C's columns) are read as vec4s along
// k. With DOTS each output takes a dot product of two of them and adds it to its accumulator:
// four multiply-adds and then an add, five instructions on a scalar GPU, since a compiler may
// not reorder the sum. Without, the four B vec4s of a step are regrouped along the columns (one
// vec4 per k) and each row of C chains s + a.x * b_k0 + ... + a.w * b_k3 as the nn kernels do:
// four multiply-adds, the regrouping only a choice of registers. K a multiple of 4.
struct Dims { M: u32, N: u32, K: u32, pad: u32 }
@group(0) @binding(0) var<storage, read> A: array<vec4f>;        // (M, K/4)
@group(0) @binding(1) var<storage, read> B: array<vec4f>;        // (N, K/4)
@group(0) @binding(2) var<storage, read_write> C: array<f32>;    // (M, N)
@group(0) @binding(3) var<uniform> d: Dims;
override WG_X: u32 = 8;
override WG_Y: u32 = 8;
override DOTS: bool = false;

fn step(s: vec4f, a: vec4f, b0: vec4f, b1: vec4f, b2: vec4f, b3: vec4f) -> vec4f {
  if (DOTS) { return s + vec4f(dot(a, b0), dot(a, b1), dot(a, b2), dot(a, b3)); }
  let k0 = vec4f(b0.x, b1.x, b2.x, b3.x); let k1 = vec4f(b0.y, b1.y, b2.y, b3.y);
  let k2 = vec4f(b0.z, b1.z, b2.z, b3.z); let k3 = vec4f(b0.w, b1.w, b2.w, b3.w);
  return s + a.x * k0 + a.y * k1 + a.z * k2 + a.w * k3;
}

@compute @workgroup_size(WG_X, WG_Y)
fn main(@builtin(global_invocation_id) g: vec3u) {
  let k4 = d.K / 4u;
  let c0 = g.x * 4u;
  let r0 = g.y * 8u;
  if (c0 >= d.N || r0 >= d.M) { return; }
  let last = d.M - 1u;
  let lastc = d.N - 1u;
  let a0 = min(r0 + 0u, last) * k4; let a1 = min(r0 + 1u, last) * k4;
  let a2 = min(r0 + 2u, last) * k4; let a3 = min(r0 + 3u, last) * k4;
  let a4 = min(r0 + 4u, last) * k4; let a5 = min(r0 + 5u, last) * k4;
  let a6 = min(r0 + 6u, last) * k4; let a7 = min(r0 + 7u, last) * k4;
  let q0 = min(c0, lastc) * k4; let q1 = min(c0 + 1u, lastc) * k4;
  let q2 = min(c0 + 2u, lastc) * k4; let q3 = min(c0 + 3u, lastc) * k4;
  var s0 = vec4f(0.0); var s1 = vec4f(0.0); var s2 = vec4f(0.0); var s3 = vec4f(0.0);
  var s4 = vec4f(0.0); var s5 = vec4f(0.0); var s6 = vec4f(0.0); var s7 = vec4f(0.0);
  for (var k = 0u; k < k4; k++) {
    let b0 = B[q0 + k]; let b1 = B[q1 + k]; let b2 = B[q2 + k]; let b3 = B[q3 + k];
    s0 = step(s0, A[a0 + k], b0, b1, b2, b3); s1 = step(s1, A[a1 + k], b0, b1, b2, b3);
    s2 = step(s2, A[a2 + k], b0, b1, b2, b3); s3 = step(s3, A[a3 + k], b0, b1, b2, b3);
    s4 = step(s4, A[a4 + k], b0, b1, b2, b3); s5 = step(s5, A[a5 + k], b0, b1, b2, b3);
    s6 = step(s6, A[a6 + k], b0, b1, b2, b3); s7 = step(s7, A[a7 + k], b0, b1, b2, b3);
  }
  let rows = array<vec4f, 8>(s0, s1, s2, s3, s4, s5, s6, s7);
  for (var r = 0u; r < 8u; r++) {
    for (var q = 0u; q < 4u; q++) {
      if (r0 + r < d.M && c0 + q < d.N) { C[(r0 + r) * d.N + c0 + q] = rows[r][q]; }
    }
  }
}
