// Bias gradient of y = x W + b: dbias[j] += sum_n dout[n, j]; one invocation per column, rows
// summed in order (deterministic, no atomics).
struct P { N: u32, OC: u32, pad0: u32, pad1: u32 }
@group(0) @binding(0) var<storage, read> dout: array<f32>;        // (N, OC)
@group(0) @binding(1) var<storage, read_write> dbias: array<f32>; // (OC)
@group(0) @binding(2) var<uniform> p: P;
override WG: u32 = 64;

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) g: vec3u) {
  let j = g.x;
  if (j >= p.OC) { return; }
  var s = 0.0;
  for (var n = 0u; n < p.N; n++) { s += dout[n * p.OC + j]; }
  dbias[j] += s;
}
