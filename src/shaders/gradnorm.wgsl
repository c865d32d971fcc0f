// Global gradient norm, clip factor, learning-rate schedule and Adam bias corrections, all on
// the GPU so a training step needs no CPU round trip.
//   partial:  each invocation sums squares over a grid-stride range of vec4s (P is a multiple
//             of 64) -> partials[invocation];
//             no workgroup barriers (on SwiftShader a barrier per workgroup cost more than
//             the sums)
//   finalize: one workgroup sums the partials in a fixed order, then thread 0 advances the step
//             counter and writes everything adamw.wgsl needs into StepState. With loss scaling
//             the gradients arrive scaled: their norm is divided by the scale, and a norm that
//             is not finite (an operand past f16's range became infinite) skips the step and
//             halves the scale.
// Math as src/model/adamw.ts (clip like torch clip_grad_norm_: factor maxNorm / (norm + 1e-6),
// applied only below 1) and src/train/schedule.ts (warm-up from lr/warmup, cosine to a floor).
struct P { n: u32, nPartials: u32, cap: u32, pad: u32 }
struct Hyper {
  lr: f32, warmupSteps: f32, totalSteps: f32, minLrFrac: f32,
  beta1: f32, beta2: f32, eps: f32, weightDecay: f32,
  // fixedLr >= 0 replaces the schedule (negative: the schedule): the simulator runs its schedule
  // on a simulated clock and writes each step's rate here before the step.
  gradClip: f32, fixedLr: f32,
  // Dynamic loss scaling (f16 operands; 0 = off): after this many good steps in a row the loss
  // scale doubles. PyTorch's GradScaler rule, as src/train/cpu-trainer.ts.
  growthInterval: f32, pad: f32,
}
@group(0) @binding(0) var<storage, read> grads: array<vec4f>;        // (P / 4) [partial]
@group(0) @binding(1) var<storage, read_write> partials: array<f32>; // (nPartials)
@group(0) @binding(2) var<storage, read_write> st: StepState;        // [finalize]
@group(0) @binding(3) var<storage, read_write> hist: array<f32>;     // (cap, 2) [finalize]
@group(0) @binding(4) var<uniform> p: P;
@group(0) @binding(5) var<uniform> h: Hyper;                         // [finalize]
const WG: u32 = 256u;
const PI: f32 = 3.141592653589793;
var<workgroup> part: array<f32, WG>;

fn treeSum(l: u32) -> f32 {
  workgroupBarrier();
  for (var w = WG / 2u; w > 0u; w >>= 1u) {
    if (l < w) { part[l] += part[l + w]; }
    workgroupBarrier();
  }
  return part[0];
}

/** Invocations per workgroup of `partial` (autotuned); nPartials = workgroups * PARTIAL_WG. */
override PARTIAL_WG: u32 = 256;

@compute @workgroup_size(PARTIAL_WG)
fn partial(@builtin(global_invocation_id) gid: vec3u) {
  var s = 0.0;
  for (var i = gid.x; i < p.n / 4u; i += p.nPartials) { let g = grads[i]; s += dot(g, g); }
  partials[gid.x] = s;
}

/**
 * cos(pi p) for p in [0, 1] to ~1e-7: WGSL's cos() only promises an absolute error of 2^-11,
 * which would put the learning rate 1e-4 off the TypeScript schedule. sin(x), x = pi (1/2 - p)
 * in [-pi/2, pi/2], by its Taylor series to x^11 (truncation < 6e-8).
 */
fn cosPi(p: f32) -> f32 {
  let x = PI * (0.5 - p);
  let x2 = x * x;
  return x * (1.0 + x2 * (-1.0 / 6.0 + x2 * (1.0 / 120.0 + x2 * (-1.0 / 5040.0 + x2 * (1.0 / 362880.0 + x2 * (-1.0 / 39916800.0))))));
}

/** Whether x is finite, from its exponent bits (a compiler may assume no float is infinite or NaN). */
fn finite(x: f32) -> bool {
  return (bitcast<u32>(x) & 0x7f800000u) != 0x7f800000u;
}

/** learningRate(step) of src/train/schedule.ts (unless fixedLr is set); `step` is 0-based. */
fn learningRate(step: f32) -> f32 {
  if (h.fixedLr >= 0.0) { return h.fixedLr; }
  let minLr = h.lr * h.minLrFrac;
  if (step < h.warmupSteps) { return h.lr * (step + 1.0) / h.warmupSteps; }
  if (step >= h.totalSteps) { return minLr; }
  let progress = (step - h.warmupSteps) / (h.totalSteps - h.warmupSteps);
  return minLr + 0.5 * (1.0 + cosPi(progress)) * (h.lr - minLr);
}

@compute @workgroup_size(WG)
fn finalize(@builtin(local_invocation_index) l: u32) {
  var s = 0.0;
  for (var i = l; i < p.nPartials; i += WG) { s += partials[i]; }
  part[l] = s;
  let total = treeSum(l);
  if (l != 0u) { return; }
  let lossScale = st.lossScale;
  let step0 = st.step;
  let lr = learningRate(f32(step0));
  let t = f32(step0 + 1u); // AdamW counts steps from 1
  // A skipped step still counts: the schedule and AdamW's t move on, so the step counter stays
  // the number of steps queued and needs no read-back.
  st.step = step0 + 1u;
  st.lr = lr;
  st.stepSize = lr / (1.0 - pow(h.beta1, t));
  st.bc2Sqrt = sqrt(1.0 - pow(h.beta2, t));
  st.decayKeep = 1.0 - lr * h.weightDecay;
  if (h.growthInterval > 0.0) {
    if (!finite(total)) {
      st.skip = 1u;
      st.lossScale = lossScale * 0.5;
      st.goodSteps = 0u;
      st.skipped += 1u;
      hist[(step0 % p.cap) * 2u + 1u] = st.gradNorm; // the last finite norm, as CpuTrainer keeps it
      return;
    }
    st.goodSteps += 1u;
    if (f32(st.goodSteps) >= h.growthInterval) { st.lossScale = lossScale * 2.0; st.goodSteps = 0u; }
  }
  st.skip = 0u;
  let norm = sqrt(total) / lossScale;
  var scale = 1.0;
  if (h.gradClip > 0.0) {
    let coef = h.gradClip / (norm + 1e-6);
    if (coef < 1.0) { scale = coef; }
  }
  hist[(step0 % p.cap) * 2u + 1u] = norm;
  st.gradNorm = norm;
  st.clipScale = scale / lossScale;
}
