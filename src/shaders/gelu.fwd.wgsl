// GELU, tanh approximation (GPT-2): out = 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))).
// Its backward is fused into matmul.wgsl (EPI = 2): dx = (dy W^T) * gelu'(x).
struct P { n: u32, pad0: u32, pad1: u32, pad2: u32 }
@group(0) @binding(0) var<storage, read> inp: array<f32>;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<uniform> p: P;
override WG: u32 = 256;
const GELU_S: f32 = 0.7978845608028654;

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) g: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  for (var i = g.x; i < p.n; i += nwg.x * WG) {
    let x = inp[i];
    out[i] = 0.5 * x * (1.0 + tanh(GELU_S * (x + 0.044715 * x * x * x)));
  }
}
