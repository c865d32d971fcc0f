// Backward of the causal softmax in attention.fwd.wgsl, in place over datt, one invocation per
// (z, t) row: dpreatt[j] = att[j] * (datt[j] - sum_k att[k] datt[k]) for j <= t, 0 after.
// The surrounding products (dAtt = dOut V^T, dV = att^T dOut, dQ = scale dPre K,
// dK = scale dPre^T Q) run on matmul.wgsl.
struct P { rows: u32, T: u32, ld: u32, pad: u32 }
@group(0) @binding(0) var<storage, read> att: array<f32>;         // (B*NH, T, ld)
@group(0) @binding(1) var<storage, read_write> datt: array<f32>;  // (B*NH, T, ld) -> dpreatt
@group(0) @binding(2) var<uniform> p: P;
override WG: u32 = 64;

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) g: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  for (var r = g.x; r < p.rows; r += nwg.x * WG) {
    let t = r % p.T;
    let x = r * p.ld;
    var s = 0.0;
    for (var j = 0u; j <= t; j++) { s += att[x + j] * datt[x + j]; }
    for (var j = 0u; j <= t; j++) { datt[x + j] = att[x + j] * (datt[x + j] - s); }
    for (var j = t + 1u; j < p.ld; j++) { datt[x + j] = 0.0; }
  }
}
