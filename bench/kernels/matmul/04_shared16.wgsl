// 04: the textbook 16x16 workgroup-memory tile, one output per invocation.
struct Dims { M: u32, N: u32, K: u32, pad: u32 }
@group(0) @binding(0) var<storage, read> A: array<f32>;
@group(0) @binding(1) var<storage, read> B: array<f32>;
@group(0) @binding(2) var<storage, read_write> C: array<f32>;
@group(0) @binding(3) var<uniform> d: Dims;
override WG_X: u32 = 16;
override WG_Y: u32 = 16;
var<workgroup> ta: array<array<f32, 16>, 16>;
var<workgroup> tb: array<array<f32, 16>, 16>;

@compute @workgroup_size(16, 16)
fn main(@builtin(global_invocation_id) g: vec3u, @builtin(local_invocation_id) l: vec3u) {
  let col = g.x; let row = g.y;
  var acc = 0.0;
  for (var k0 = 0u; k0 < d.K; k0 += 16u) {
    let ar = min(row, d.M - 1u); let ak = min(k0 + l.x, d.K - 1u);
    ta[l.y][l.x] = select(0.0, A[ar * d.K + ak], k0 + l.x < d.K);
    let bk = min(k0 + l.y, d.K - 1u); let bc = min(col, d.N - 1u);
    tb[l.y][l.x] = select(0.0, B[bk * d.N + bc], k0 + l.y < d.K);
    workgroupBarrier();
    for (var k = 0u; k < 16u; k++) { acc += ta[l.y][k] * tb[k][l.x]; }
    workgroupBarrier();
  }
  if (row < d.M && col < d.N) { C[row * d.N + col] = acc; }
}
