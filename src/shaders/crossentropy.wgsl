// Fused softmax + cross-entropy over the vocabulary, one invocation per position (llm.c's
// fused classifier): losses[n] = logsumexp(logits[n,:]) - logits[n, target], and, with
// BACKWARD, the logits are overwritten by their gradient (softmax - onehot) * dloss, where
// dloss = 1 / (B T) is the mean's derivative, times StepState's loss scale (1 unless the
// operands are f16: step-state.wgsl). The probabilities are never stored.
struct P { N: u32, V: u32, dloss: f32, pad: u32 }
@group(0) @binding(0) var<storage, read_write> logits: array<f32>; // (N, V) -> dlogits
@group(0) @binding(1) var<storage, read> targets: array<u32>;      // (N)
@group(0) @binding(2) var<storage, read_write> losses: array<f32>; // (N)
@group(0) @binding(3) var<uniform> p: P;
@group(0) @binding(4) var<storage, read> st: StepState;            // [BACKWARD]
override WG: u32 = 64;
override BACKWARD: bool = true;

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) g: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  for (var n = g.x; n < p.N; n += nwg.x * WG) {
    let x = n * p.V;
    var mx = logits[x];
    for (var v = 1u; v < p.V; v++) { mx = max(mx, logits[x + v]); }
    var sum = 0.0;
    for (var v = 0u; v < p.V; v++) { sum += exp(logits[x + v] - mx); }
    let tgt = targets[n];
    losses[n] = log(sum) + mx - logits[x + tgt];
    if (BACKWARD) {
      let inv = 1.0 / sum;
      let dloss = p.dloss * st.lossScale;
      for (var v = 0u; v < p.V; v++) {
        let prob = exp(logits[x + v] - mx) * inv;
        logits[x + v] = (prob - select(0.0, 1.0, v == tgt)) * dloss;
      }
    }
  }
}
