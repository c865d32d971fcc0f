// LayerNorm over the last dimension (llm.c layernorm_forward):
// out = (x - mean) * rstd * weight + bias, saving mean and rstd for the backward pass.
//   main: one invocation per row, walking its C channels alone (SwiftShader: no barriers);
//   wide: one workgroup per row (a GPU): the WG invocations read the row's channels side by
//         side, so each read of the workgroup is one contiguous span, and reduce in workgroup
//         memory (workgroupSum, workgroup-sum.wgsl in front). WG is a power of two of at most 256.
struct P { N: u32, C: u32, pad0: u32, pad1: u32 }
@group(0) @binding(0) var<storage, read> inp: array<f32>;        // (N, C)
@group(0) @binding(1) var<storage, read> weight: array<f32>;     // (C)
@group(0) @binding(2) var<storage, read> bias: array<f32>;       // (C)
@group(0) @binding(3) var<storage, read_write> out: array<f32>;  // (N, C)
@group(0) @binding(4) var<storage, read_write> mean: array<f32>; // (N)
@group(0) @binding(5) var<storage, read_write> rstd: array<f32>; // (N)
@group(0) @binding(6) var<uniform> p: P;
override WG: u32 = 64;
const EPS: f32 = 1e-5;

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) g: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  for (var n = g.x; n < p.N; n += nwg.x * WG) {
    let x = n * p.C;
    var m = 0.0;
    for (var c = 0u; c < p.C; c++) { m += inp[x + c]; }
    m /= f32(p.C);
    var v = 0.0;
    for (var c = 0u; c < p.C; c++) { let d = inp[x + c] - m; v += d * d; }
    v /= f32(p.C);
    let s = 1.0 / sqrt(v + EPS);
    for (var c = 0u; c < p.C; c++) { out[x + c] = (inp[x + c] - m) * s * weight[c] + bias[c]; }
    mean[n] = m;
    rstd[n] = s;
  }
}

@compute @workgroup_size(WG)
fn wide(@builtin(workgroup_id) wg: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) li: u32) {
  for (var n = wg.x; n < p.N; n += nwg.x) {
    let x = n * p.C;
    var s = 0.0;
    for (var c = li; c < p.C; c += WG) { s += inp[x + c]; }
    let m = workgroupSum(vec2f(s, 0.0), li).x / f32(p.C);
    var v = 0.0;
    for (var c = li; c < p.C; c += WG) { let d = inp[x + c] - m; v += d * d; }
    let r = 1.0 / sqrt(workgroupSum(vec2f(v, 0.0), li).x / f32(p.C) + EPS);
    for (var c = li; c < p.C; c += WG) { out[x + c] = (inp[x + c] - m) * r * weight[c] + bias[c]; }
    if (li == 0u) {
      mean[n] = m;
      rstd[n] = r;
    }
  }
}
