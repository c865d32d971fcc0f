// 01: one invocation per output element, scalar loads. The baseline every variant must beat.
struct Dims { M: u32, N: u32, K: u32, pad: u32 }
@group(0) @binding(0) var<storage, read> A: array<f32>;        // (M, K)
@group(0) @binding(1) var<storage, read> B: array<f32>;        // (K, N)
@group(0) @binding(2) var<storage, read_write> C: array<f32>;  // (M, N)
@group(0) @binding(3) var<uniform> d: Dims;
override WG_X: u32 = 16;
override WG_Y: u32 = 16;

@compute @workgroup_size(WG_X, WG_Y)
fn main(@builtin(global_invocation_id) g: vec3u) {
  let col = g.x;
  let row = g.y;
  if (col >= d.N || row >= d.M) { return; }
  var acc = 0.0;
  for (var k = 0u; k < d.K; k++) { acc += A[row * d.K + k] * B[k * d.N + col]; }
  C[row * d.N + col] = acc;
}
