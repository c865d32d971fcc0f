// Causal multi-head attention is three steps; the two products run on matmul.wgsl (batched
// over z = b * NH + h):  preatt = scale * Q K^T  ->  this softmax  ->  out = att V.
// This kernel is the middle step: a causal softmax in place over each row of preatt, one
// invocation per (z, t) row. Row t keeps columns j <= t; the rest of the row (including the
// padding up to the row stride, which keeps vec4 loads aligned) is set to 0 so that att V
// can run over full rows.
struct P { rows: u32, T: u32, ld: u32, pad: u32 }
@group(0) @binding(0) var<storage, read_write> att: array<f32>;  // (B*NH, T, ld)
@group(0) @binding(1) var<uniform> p: P;
override WG: u32 = 64;

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) g: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  for (var r = g.x; r < p.rows; r += nwg.x * WG) {
    let t = r % p.T;
    let x = r * p.ld;
    var mx = att[x];
    for (var j = 1u; j <= t; j++) { mx = max(mx, att[x + j]); }
    var sum = 0.0;
    for (var j = 0u; j <= t; j++) { let e = exp(att[x + j] - mx); att[x + j] = e; sum += e; }
    let inv = 1.0 / sum;
    for (var j = 0u; j <= t; j++) { att[x + j] *= inv; }
    for (var j = t + 1u; j < p.ld; j++) { att[x + j] = 0.0; }
  }
}
