// AdamW over the whole flat parameter buffer (PyTorch semantics, as src/model/adamw.ts):
//   g = grad * clipScale (clipScale also undoes the loss scale);  m = b1 m + (1-b1) g;  v = b2 v + (1-b2) g^2
//   p = p * (1 - lr wd if the tensor decays) - lr/(1-b1^t) * m / (sqrt(v)/sqrt(1-b2^t) + eps)
// lr, clip and bias corrections come from StepState (gradnorm.wgsl finalize), which also says
// when a step is skipped. Four floats at a time (P is a multiple of 64). Whether a float
// decays is looked up per 64-float chunk: tensors start on 64-float boundaries (layout ALIGN),
// so a chunk never spans two tensors. Padding has zero grads and stays zero.
struct P { n: u32, beta1: f32, beta2: f32, eps: f32 }
@group(0) @binding(0) var<storage, read_write> params: array<vec4f>; // (P / 4)
@group(0) @binding(1) var<storage, read> grads: array<vec4f>;        // (P / 4)
@group(0) @binding(2) var<storage, read_write> m: array<vec4f>;      // (P / 4)
@group(0) @binding(3) var<storage, read_write> v: array<vec4f>;      // (P / 4)
@group(0) @binding(4) var<storage, read> decay: array<u32>;        // (P / 64) 1 where weight decay applies
@group(0) @binding(5) var<storage, read> st: StepState;
@group(0) @binding(6) var<uniform> p: P;
override WG: u32 = 256;

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  if (st.skip != 0u) { return; } // the loss scale overflowed f16: weights and moments stay
  let scale = st.clipScale;
  let stepSize = st.stepSize;
  let bc2Sqrt = st.bc2Sqrt;
  let keep = st.decayKeep;
  let n4 = p.n / 4u;
  for (var i = gid.x; i < n4; i += nwg.x * WG) {
    let g = grads[i] * scale;
    let mi = p.beta1 * m[i] + (1.0 - p.beta1) * g;
    let vi = p.beta2 * v[i] + (1.0 - p.beta2) * g * g;
    m[i] = mi;
    v[i] = vi;
    let k = select(1.0, keep, decay[i / 16u] != 0u);
    params[i] = params[i] * k - stepSize * mi / (sqrt(vi) / bc2Sqrt + p.eps);
  }
}
