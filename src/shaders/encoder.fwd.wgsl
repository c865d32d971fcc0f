// Token + position embedding: out[b,t,:] = wte[tokens[b,t],:] + wpe[t,:].
struct P { N: u32, T: u32, C: u32, pad: u32 }
@group(0) @binding(0) var<storage, read> tokens: array<u32>;     // (B, T)
@group(0) @binding(1) var<storage, read> wte: array<f32>;        // (V, C)
@group(0) @binding(2) var<storage, read> wpe: array<f32>;        // (maxT, C)
@group(0) @binding(3) var<storage, read_write> out: array<f32>;  // (B, T, C)
@group(0) @binding(4) var<uniform> p: P;
override WG: u32 = 256;

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) g: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let total = p.N * p.C;
  for (var i = g.x; i < total; i += nwg.x * WG) {
    let n = i / p.C;
    let c = i % p.C;
    out[i] = wte[tokens[n] * p.C + c] + wpe[(n % p.T) * p.C + c];
  }
}
