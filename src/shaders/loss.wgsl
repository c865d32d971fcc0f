// Mean of the per-position losses, reduced by one workgroup in a fixed order (deterministic).
//   train: writes the mean into the loss history ring at slot (step % cap), where step is the
//          optimizer-step counter before this step's update; read back every few steps.
//   evaluate:  adds the mean into acc[0] (evaluate() clears it first and divides by the batches).
struct P { N: u32, cap: u32, pad0: u32, pad1: u32 }
@group(0) @binding(0) var<storage, read> losses: array<f32>;      // (N)
@group(0) @binding(1) var<storage, read> st: StepState;
@group(0) @binding(2) var<storage, read_write> acc: array<f32>;   // train: (cap, 2) loss | grad norm; eval: (1)
@group(0) @binding(3) var<uniform> p: P;
const WG: u32 = 256u;
var<workgroup> part: array<f32, WG>;

fn reduce(l: u32) -> f32 {
  var s = 0.0;
  for (var i = l; i < p.N; i += WG) { s += losses[i]; }
  part[l] = s;
  workgroupBarrier();
  for (var w = WG / 2u; w > 0u; w >>= 1u) {
    if (l < w) { part[l] += part[l + w]; }
    workgroupBarrier();
  }
  return part[0] / f32(p.N);
}

@compute @workgroup_size(WG)
fn train(@builtin(local_invocation_index) l: u32) {
  let mean = reduce(l);
  if (l == 0u) { acc[(st.step % p.cap) * 2u] = mean; }
}

@compute @workgroup_size(WG)
fn evaluate(@builtin(local_invocation_index) l: u32) {
  let mean = reduce(l);
  if (l == 0u) { acc[0] += mean; }
}
