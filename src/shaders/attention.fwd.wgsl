// Causal multi-head attention, forward, in one kernel (FlashAttention's online softmax): no
// T x T matrix goes to global memory. A workgroup owns a tile of BT query rows of one head
// z = b * NH + h and walks the key tiles 0..its own (causal), staging each K and V tile in
// workgroup memory; each invocation keeps its query row, running max, running sum and output
// row in registers. The backward pass (attention.bwd.wgsl) recomputes the probabilities from
// the saved log-sum-exp, so nothing else is kept.
// qkv is (B, T, 3C) packed q | k | v; head h of part p sits at columns p*C + h*HS. With HALF
// (half.wgsl) q, k and v are rounded to f16 as they are read.
struct P { T: u32, C: u32, NH: u32, scale: f32 }
@group(0) @binding(0) var<storage, read> qkv: array<f32>;        // (B, T, 3C)
@group(0) @binding(1) var<storage, read_write> out: array<f32>;  // (B, T, C)
@group(0) @binding(2) var<storage, read_write> lse: array<f32>;  // (B*NH, T) log-sum-exp of each scaled score row
@group(0) @binding(3) var<uniform> p: P;

/** Head size; a pipeline per head size, so the loops over d have a constant bound. */
override HS: u32 = 64u;
/** Rows per tile (= invocations per workgroup). */
const BT: u32 = 16u;
/** Largest head size: register rows and tiles are sized for it (2 tiles of BT x 128 = 16 KiB). */
const HS_MAX: u32 = 128u;
/** Below any score; finite so that exp(m - mt) is 0, never NaN, before the first key. */
const NEG: f32 = -3.0e38;

var<workgroup> kt: array<f32, 2048>; // BT x HS_MAX
var<workgroup> vt: array<f32, 2048>;

@compute @workgroup_size(16)
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_index) li: u32) {
  let z = wg.y;
  let b = z / p.NH;
  let h = z % p.NH;
  let C3 = 3u * p.C;
  let base = b * p.T * C3 + h * HS;
  let i = wg.x * BT + li;
  let live = i < p.T;
  var q: array<f32, HS_MAX>;
  var o: array<f32, HS_MAX>;
  var s: array<f32, BT>;
  if (live) {
    for (var d = 0u; d < HS; d++) { q[d] = h1(qkv[base + i * C3 + d]) * p.scale; o[d] = 0.0; }
  }
  var m = NEG;
  var l = 0.0;
  // Key tiles up to the diagonal one: the loop bound is the same for the whole workgroup.
  for (var tile = 0u; tile <= wg.x; tile++) {
    let j0 = tile * BT;
    workgroupBarrier();
    for (var e = li; e < BT * HS; e += BT) {
      let j = j0 + e / HS;
      let d = e % HS;
      var kv = 0.0;
      var vv = 0.0;
      if (j < p.T) { kv = h1(qkv[base + j * C3 + p.C + d]); vv = h1(qkv[base + j * C3 + 2u * p.C + d]); }
      kt[e] = kv;
      vt[e] = vv;
    }
    workgroupBarrier();
    if (live) {
      // Keys j0 .. min(i, j0 + BT - 1); i >= j0 because tile <= wg.x.
      let n = min(BT, i + 1u - j0);
      var mt = m;
      for (var jj = 0u; jj < n; jj++) {
        var dot = 0.0;
        for (var d = 0u; d < HS; d++) { dot += q[d] * kt[jj * HS + d]; }
        s[jj] = dot;
        mt = max(mt, dot);
      }
      // One rescale per tile, not per key.
      let corr = exp(m - mt);
      l *= corr;
      for (var d = 0u; d < HS; d++) { o[d] *= corr; }
      for (var jj = 0u; jj < n; jj++) {
        let pj = exp(s[jj] - mt);
        l += pj;
        for (var d = 0u; d < HS; d++) { o[d] += pj * vt[jj * HS + d]; }
      }
      m = mt;
    }
  }
  if (live) {
    let inv = 1.0 / l;
    let row = (b * p.T + i) * p.C + h * HS;
    for (var d = 0u; d < HS; d++) { out[row + d] = o[d] * inv; }
    lse[z * p.T + i] = m + log(l);
  }
}
