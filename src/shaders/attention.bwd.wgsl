// Causal multi-head attention, backward, in two kernels that recompute the probabilities
// P = exp(scale q.k - lse) tile by tile from attention.fwd.wgsl's log-sum-exp, so no T x T
// matrix per head goes to global memory (FlashAttention-2's split):
//   dq:  a workgroup per tile of BT query rows; also writes D_i = dO_i . O_i, which dkv needs.
//        dq_i = scale * sum_{j<=i} P_ij (dO_i . v_j - D_i) k_j
//   dkv: a workgroup per tile of BT key rows, walking the query tiles from the diagonal down.
//        dv_j = sum_{i>=j} P_ij dO_i;  dk_j = scale * sum_{i>=j} P_ij (dO_i . v_j - D_i) q_i
// dq must run before dkv (D). Both overwrite their part of dqkv. With HALF (half.wgsl) q, k,
// v and dO are rounded to f16 as they are read; O (for D) and the probabilities stay f32.
struct P { T: u32, C: u32, NH: u32, scale: f32 }
@group(0) @binding(0) var<storage, read> qkv: array<f32>;         // (B, T, 3C)
@group(0) @binding(1) var<storage, read> out: array<f32>;         // (B, T, C) forward output O
@group(0) @binding(2) var<storage, read> dout: array<f32>;        // (B, T, C)
@group(0) @binding(3) var<storage, read> lse: array<f32>;         // (B*NH, T)
@group(0) @binding(4) var<storage, read_write> dqkv: array<f32>;  // (B, T, 3C)
@group(0) @binding(5) var<storage, read_write> D: array<f32>;     // (B*NH, T) written by dq, read by dkv
@group(0) @binding(6) var<uniform> p: P;

override HS: u32 = 64u;
const BT: u32 = 16u;
const HS_MAX: u32 = 128u;

var<workgroup> ta: array<f32, 2048>; // BT x HS_MAX: K tile (dq) or Q tile (dkv)
var<workgroup> tb: array<f32, 2048>; // V tile (dq) or dO tile (dkv)

@compute @workgroup_size(16)
fn dq(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_index) li: u32) {
  let z = wg.y;
  let b = z / p.NH;
  let h = z % p.NH;
  let C3 = 3u * p.C;
  let base = b * p.T * C3 + h * HS;
  let i = wg.x * BT + li;
  let live = i < p.T;
  var q: array<f32, HS_MAX>;
  var g: array<f32, HS_MAX>; // dO_i
  var acc: array<f32, HS_MAX>;
  var Di = 0.0;
  var Li = 0.0;
  if (live) {
    let row = (b * p.T + i) * p.C + h * HS;
    for (var d = 0u; d < HS; d++) {
      q[d] = h1(qkv[base + i * C3 + d]) * p.scale;
      g[d] = h1(dout[row + d]);
      Di += g[d] * out[row + d];
      acc[d] = 0.0;
    }
    Li = lse[z * p.T + i];
    D[z * p.T + i] = Di;
  }
  for (var tile = 0u; tile <= wg.x; tile++) {
    let j0 = tile * BT;
    workgroupBarrier();
    for (var e = li; e < BT * HS; e += BT) {
      let j = j0 + e / HS;
      let d = e % HS;
      var kv = 0.0;
      var vv = 0.0;
      if (j < p.T) { kv = h1(qkv[base + j * C3 + p.C + d]); vv = h1(qkv[base + j * C3 + 2u * p.C + d]); }
      ta[e] = kv;
      tb[e] = vv;
    }
    workgroupBarrier();
    if (live) {
      let n = min(BT, i + 1u - j0);
      for (var jj = 0u; jj < n; jj++) {
        var s = 0.0;
        var dp = 0.0;
        for (var d = 0u; d < HS; d++) { s += q[d] * ta[jj * HS + d]; dp += g[d] * tb[jj * HS + d]; }
        let ds = exp(s - Li) * (dp - Di);
        for (var d = 0u; d < HS; d++) { acc[d] += ds * ta[jj * HS + d]; }
      }
    }
  }
  if (live) {
    for (var d = 0u; d < HS; d++) { dqkv[base + i * C3 + d] = acc[d] * p.scale; }
  }
}

@compute @workgroup_size(16)
fn dkv(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_index) li: u32, @builtin(num_workgroups) nwg: vec3u) {
  let z = wg.y;
  let b = z / p.NH;
  let h = z % p.NH;
  let C3 = 3u * p.C;
  let base = b * p.T * C3 + h * HS;
  let j = wg.x * BT + li;
  let live = j < p.T;
  var k: array<f32, HS_MAX>;
  var v: array<f32, HS_MAX>;
  var dk: array<f32, HS_MAX>;
  var dv: array<f32, HS_MAX>;
  if (live) {
    for (var d = 0u; d < HS; d++) {
      k[d] = h1(qkv[base + j * C3 + p.C + d]);
      v[d] = h1(qkv[base + j * C3 + 2u * p.C + d]);
      dk[d] = 0.0;
      dv[d] = 0.0;
    }
  }
  // Query tiles from the diagonal one to the last (there are nwg.x tiles).
  for (var tile = wg.x; tile < nwg.x; tile++) {
    let i0 = tile * BT;
    workgroupBarrier();
    for (var e = li; e < BT * HS; e += BT) {
      let i = i0 + e / HS;
      let d = e % HS;
      var qv = 0.0;
      var gv = 0.0;
      if (i < p.T) { qv = h1(qkv[base + i * C3 + d]) * p.scale; gv = h1(dout[(b * p.T + i) * p.C + h * HS + d]); }
      ta[e] = qv;
      tb[e] = gv;
    }
    workgroupBarrier();
    if (live) {
      let n = min(BT, p.T - i0);
      for (var ii = select(0u, j - i0, j > i0); ii < n; ii++) {
        let i = i0 + ii;
        var s = 0.0;
        var dp = 0.0;
        for (var d = 0u; d < HS; d++) { s += ta[ii * HS + d] * k[d]; dp += tb[ii * HS + d] * v[d]; }
        let pij = exp(s - lse[z * p.T + i]);
        let ds = pij * (dp - D[z * p.T + i]);
        for (var d = 0u; d < HS; d++) { dv[d] += pij * tb[ii * HS + d]; dk[d] += ds * ta[ii * HS + d]; }
      }
    }
  }
  if (live) {
    // ta held scale * q, so dk already carries the scale.
    for (var d = 0u; d < HS; d++) {
      dqkv[base + j * C3 + p.C + d] = dk[d];
      dqkv[base + j * C3 + 2u * p.C + d] = dv[d];
    }
  }
}
