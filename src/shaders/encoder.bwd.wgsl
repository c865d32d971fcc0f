// Embedding gradients (parameter grads accumulate: +=).
// dwpe[t,c] += sum_b dout[b,t,c]: one invocation per (t, c).
// dwte[v,c] += sum over the positions n with tokens[n] = v of dout[n,c]: one invocation per
// (v, c), walking v's positions from `index` (a counting sort of the batch's tokens that the
// host builds with the batch: offsets (V+1) then positions (N), ascending). No two invocations
// write the same float, the sum order is fixed, and WGSL needs no float atomics (it has none).
struct P { N: u32, T: u32, C: u32, V: u32 }
@group(0) @binding(0) var<storage, read> index: array<u32>;      // (V+1 + N)
@group(0) @binding(1) var<storage, read> dout: array<f32>;       // (B, T, C)
@group(0) @binding(2) var<storage, read_write> dw: array<f32>;   // wpe: (maxT, C); wte: (V, C)
@group(0) @binding(3) var<uniform> p: P;
override WG: u32 = 64;

@compute @workgroup_size(WG)
fn wpe(@builtin(global_invocation_id) g: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let total = p.T * p.C;
  let B = p.N / p.T;
  for (var i = g.x; i < total; i += nwg.x * WG) {
    var s = 0.0;
    for (var b = 0u; b < B; b++) { s += dout[b * total + i]; }
    dw[i] += s;
  }
}

@compute @workgroup_size(WG)
fn wte(@builtin(global_invocation_id) g: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let total = p.V * p.C;
  let pos0 = p.V + 1u;
  for (var i = g.x; i < total; i += nwg.x * WG) {
    let v = i / p.C;
    let c = i % p.C;
    let end = index[v + 1u];
    var s = 0.0;
    for (var j = index[v]; j < end; j++) { s += dout[index[pos0 + j] * p.C + c]; }
    if (end > index[v]) { dw[i] += s; }
  }
}
