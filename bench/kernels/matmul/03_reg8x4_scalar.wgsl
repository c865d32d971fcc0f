// 03: as 02, but the buffers are array<f32> and each vec4 is assembled from four scalar loads,
// which lifts the multiple-of-4 requirement on strides. Is it slower?
struct Dims { M: u32, N: u32, K: u32, pad: u32 }
@group(0) @binding(0) var<storage, read> A: array<f32>;        // (M, K)
@group(0) @binding(1) var<storage, read> B: array<f32>;        // (K, N)
@group(0) @binding(2) var<storage, read_write> C: array<f32>;  // (M, N)
@group(0) @binding(3) var<uniform> d: Dims;
override WG_X: u32 = 8;
override WG_Y: u32 = 8;

fn ld(i: u32) -> vec4f { return vec4f(A[i], A[i + 1u], A[i + 2u], A[i + 3u]); }
fn lb(i: u32) -> vec4f { return vec4f(B[i], B[i + 1u], B[i + 2u], B[i + 3u]); }

@compute @workgroup_size(WG_X, WG_Y)
fn main(@builtin(global_invocation_id) g: vec3u) {
  let N = d.N; let K = d.K;
  let c0 = g.x * 4u;
  let r0 = g.y * 8u;
  if (c0 >= N || r0 >= d.M) { return; }
  let last = d.M - 1u;
  let a0 = min(r0 + 0u, last) * K; let a1 = min(r0 + 1u, last) * K;
  let a2 = min(r0 + 2u, last) * K; let a3 = min(r0 + 3u, last) * K;
  let a4 = min(r0 + 4u, last) * K; let a5 = min(r0 + 5u, last) * K;
  let a6 = min(r0 + 6u, last) * K; let a7 = min(r0 + 7u, last) * K;
  var s0 = vec4f(0.0); var s1 = vec4f(0.0); var s2 = vec4f(0.0); var s3 = vec4f(0.0);
  var s4 = vec4f(0.0); var s5 = vec4f(0.0); var s6 = vec4f(0.0); var s7 = vec4f(0.0);
  for (var k = 0u; k < K; k += 4u) {
    let bi = k * N + c0;
    let b0 = lb(bi); let b1 = lb(bi + N); let b2 = lb(bi + 2u * N); let b3 = lb(bi + 3u * N);
    var a = ld(a0 + k); s0 += a.x * b0 + a.y * b1 + a.z * b2 + a.w * b3;
    a = ld(a1 + k); s1 += a.x * b0 + a.y * b1 + a.z * b2 + a.w * b3;
    a = ld(a2 + k); s2 += a.x * b0 + a.y * b1 + a.z * b2 + a.w * b3;
    a = ld(a3 + k); s3 += a.x * b0 + a.y * b1 + a.z * b2 + a.w * b3;
    a = ld(a4 + k); s4 += a.x * b0 + a.y * b1 + a.z * b2 + a.w * b3;
    a = ld(a5 + k); s5 += a.x * b0 + a.y * b1 + a.z * b2 + a.w * b3;
    a = ld(a6 + k); s6 += a.x * b0 + a.y * b1 + a.z * b2 + a.w * b3;
    a = ld(a7 + k); s7 += a.x * b0 + a.y * b1 + a.z * b2 + a.w * b3;
  }
  let o = r0 * N + c0;
  let rows = array<vec4f, 8>(s0, s1, s2, s3, s4, s5, s6, s7);
  for (var r = 0u; r < 8u; r++) {
    if (r0 + r < d.M) {
      let v = rows[r]; let p = o + r * N;
      C[p] = v.x; C[p + 1u] = v.y; C[p + 2u] = v.z; C[p + 3u] = v.w;
    }
  }
}
