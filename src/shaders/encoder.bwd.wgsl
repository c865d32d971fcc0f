// Embedding gradients (parameter grads accumulate: +=).
// dwpe[t,c] += sum_b dout[b,t,c]: one invocation per (t, c).
// dwte[v,c] += sum over positions n with tokens[n] = v of dout[n,c]: one invocation per channel
// c walks all positions in order, so no two invocations touch the same float and the sum is
// deterministic without float atomics (which WGSL does not have).
struct P { N: u32, T: u32, C: u32, pad: u32 }
@group(0) @binding(0) var<storage, read> tokens: array<u32>;     // (B, T)
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
fn wte(@builtin(global_invocation_id) g: vec3u) {
  let c = g.x;
  if (c >= p.C) { return; }
  for (var n = 0u; n < p.N; n++) {
    let w = tokens[n] * p.C + c;
    dw[w] += dout[n * p.C + c];
  }
}
