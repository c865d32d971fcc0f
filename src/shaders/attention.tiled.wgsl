// Causal multi-head attention, forward (fwd) and backward (dq, then dkv), for GPUs with many
// lanes: the same algorithm as attention.fwd.wgsl and attention.bwd.wgsl (online softmax; the
// backward recomputes P from the saved log-sum-exp; no T x T matrix in global memory), but a
// workgroup of 256 invocations shares each tile pair instead of each invocation holding whole
// head rows of its own (four in the row kernels: arrays of up to 128 vec4s that a GPU keeps in
// local memory).
//
// A workgroup owns a tile of BT = 16 rows of one head z = b * NH + h (query rows for fwd and
// dq, key rows for dkv) and walks the tiles of the other side on or before (fwd, dq) or on or
// after (dkv) the diagonal, BT rows at a time. Invocation li plays two roles per tile:
//   score role  (a, c) = (li / 16, li % 16): one score of the 16 x 16 tile, a dot over HS from
//               workgroup memory (row a of this side, row c of the other, stored transposed with
//               a padded stride so that the 16 c's read 16 different banks);
//   row role    (a, lane) = (li / 16, li % 16): head dims lane, lane + 16, ... of row a, in
//               registers (DPL = HS_MAX / 16 of them), updated from the tile's 16 scores.
// Workgroup memory holds at most 16 KiB: this side's rows (one or two BT x HS tiles), the other
// side's tile transposed (HS x 17), and the scores; so HS <= HS_MAX = 64.
//
// qkv is (B, T, 3C) packed q | k | v; head h of part p sits at columns p*C + h*HS. With HALF
// (half.wgsl) q, k, v and dO are rounded to f16 as they are read.
struct P { T: u32, C: u32, NH: u32, scale: f32 }
@group(0) @binding(0) var<storage, read> qkv: array<f32>;         // (B, T, 3C)
@group(0) @binding(1) var<storage, read> out: array<f32>;         // (B, T, C) forward output O (dq reads it)
@group(0) @binding(2) var<storage, read> dout: array<f32>;        // (B, T, C)
@group(0) @binding(3) var<storage, read> lse: array<f32>;         // (B*NH, T)
@group(0) @binding(4) var<storage, read_write> res: array<f32>;   // fwd: O (B, T, C); dq, dkv: dqkv (B, T, 3C)
@group(0) @binding(5) var<storage, read_write> aux: array<f32>;   // fwd: lse (B*NH, T); dq: D (B*NH, T) written
@group(0) @binding(6) var<uniform> p: P;

/** Head size; a pipeline per head size. */
override HS: u32 = 64u;
const BT: u32 = 16u;
const LANES: u32 = 16u;
const HS_MAX: u32 = 64u;
const DPL: u32 = 4u;      // HS_MAX / LANES
const ST: u32 = 17u;      // stride of a transposed tile: BT + 1, so column reads do not share banks
/** Below any score; finite so that exp(m - mt) is 0, never NaN, before the first key. */
const NEG: f32 = -3.0e38;

var<workgroup> rowsA: array<f32, 1024>;  // BT x HS_MAX: this side's rows (q scaled, or q for dkv)
var<workgroup> rowsB: array<f32, 1024>;  // BT x HS_MAX: dO rows (dq, dkv)
var<workgroup> other: array<f32, 1088>;  // HS_MAX x ST: the other side's tile, transposed
var<workgroup> sc: array<f32, 256>;      // BT x BT scores / probabilities
var<workgroup> sc2: array<f32, 256>;     // BT x BT: dkv's dS next to P
var<workgroup> rowL: array<f32, 16>;     // per row of the visiting tile: lse
var<workgroup> rowD: array<f32, 16>;     // per row of the visiting tile: D

struct Head { z: u32, b: u32, h: u32, C3: u32, base: u32 }
fn head(z: u32) -> Head {
  let C3 = 3u * p.C;
  let b = z / p.NH;
  let h = z % p.NH;
  return Head(z, b, h, C3, b * p.T * C3 + h * HS);
}

// rows[r * HS + d] = part `part` of rows t0 .. t0 + BT - 1 (0 past T), times `s`.
fn loadRowsA(hd: Head, t0: u32, part: u32, s: f32, li: u32) {
  for (var e = li; e < BT * HS; e += 256u) {
    let t = t0 + e / HS;
    rowsA[e] = select(0.0, h1(qkv[hd.base + t * hd.C3 + part * p.C + e % HS]) * s, t < p.T);
  }
}
fn loadRowsB(hd: Head, t0: u32, li: u32) {
  for (var e = li; e < BT * HS; e += 256u) {
    let t = t0 + e / HS;
    rowsB[e] = select(0.0, h1(dout[(hd.b * p.T + t) * p.C + hd.h * HS + e % HS]), t < p.T);
  }
}
// other[d * ST + c] = part `part` of row t0 + c, dim d, times `s` (0 past T).
fn loadOther(hd: Head, t0: u32, part: u32, s: f32, li: u32) {
  for (var e = li; e < BT * HS; e += 256u) {
    let c = e / HS;
    let d = e % HS;
    let t = t0 + c;
    other[d * ST + c] = select(0.0, h1(qkv[hd.base + t * hd.C3 + part * p.C + d]) * s, t < p.T);
  }
}
// Row a of rowsA (or rowsB) . column c of other.
fn dotA(a: u32, c: u32) -> f32 {
  var s = 0.0;
  for (var d = 0u; d < HS; d++) { s += rowsA[a * HS + d] * other[d * ST + c]; }
  return s;
}
fn dotB(a: u32, c: u32) -> f32 {
  var s = 0.0;
  for (var d = 0u; d < HS; d++) { s += rowsB[a * HS + d] * other[d * ST + c]; }
  return s;
}

@compute @workgroup_size(256)
fn fwd(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_index) li: u32) {
  let hd = head(wg.y);
  let a = li / LANES;
  let lane = li % LANES;
  let i = wg.x * BT + a;  // this invocation's query row (score role and row role alike)
  loadRowsA(hd, wg.x * BT, 0u, p.scale, li);
  var o: array<f32, DPL>;
  var m = NEG;
  var l = 0.0;
  for (var tile = 0u; tile <= wg.x; tile++) {
    let j0 = tile * BT;
    workgroupBarrier();
    loadOther(hd, j0, 1u, 1.0, li);
    workgroupBarrier();
    // Score (a, lane) = q_i . k_j, -inf above the diagonal (j > i also covers j >= T for i < T).
    let j = j0 + lane;
    sc[li] = select(dotA(a, lane), NEG, j > i);
    workgroupBarrier();
    loadOther(hd, j0, 2u, 1.0, li); // V over K: every score is read from sc now
    var mt = m;
    for (var c = 0u; c < BT; c++) { mt = max(mt, sc[a * BT + c]); }
    workgroupBarrier();
    // One rescale per tile; the 16 invocations of a row compute the same m and l.
    let corr = exp(m - mt);
    l *= corr;
    for (var q = 0u; q < DPL; q++) { o[q] *= corr; }
    for (var c = 0u; c < BT; c++) {
      let pc = exp(sc[a * BT + c] - mt);
      l += pc;
      for (var q = 0u; q < DPL; q++) {
        let d = lane + q * LANES;
        if (d < HS) { o[q] += pc * other[d * ST + c]; }
      }
    }
    m = mt;
  }
  if (i < p.T) {
    let inv = 1.0 / l;
    let row = (hd.b * p.T + i) * p.C + hd.h * HS;
    for (var q = 0u; q < DPL; q++) {
      let d = lane + q * LANES;
      if (d < HS) { res[row + d] = o[q] * inv; }
    }
    if (lane == 0u) { aux[hd.z * p.T + i] = m + log(l); }
  }
}

// dq_i = scale * sum_{j<=i} P_ij (dO_i . v_j - D_i) k_j, with D_i = dO_i . O_i (written for dkv).
@compute @workgroup_size(256)
fn dq(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_index) li: u32) {
  let hd = head(wg.y);
  let a = li / LANES;
  let lane = li % LANES;
  let i0 = wg.x * BT;
  let i = i0 + a;
  loadRowsA(hd, i0, 0u, p.scale, li);
  loadRowsB(hd, i0, li);
  if (lane == 0u) {
    var Di = 0.0;
    var Li = 0.0;
    if (i < p.T) {
      let row = (hd.b * p.T + i) * p.C + hd.h * HS;
      for (var d = 0u; d < HS; d++) { Di += h1(dout[row + d]) * out[row + d]; }
      Li = lse[hd.z * p.T + i];
      aux[hd.z * p.T + i] = Di;
    }
    rowD[a] = Di;
    rowL[a] = Li;
  }
  var acc: array<f32, DPL>;
  for (var tile = 0u; tile <= wg.x; tile++) {
    let j0 = tile * BT;
    workgroupBarrier();
    loadOther(hd, j0, 2u, 1.0, li); // V
    workgroupBarrier();
    let dp = dotB(a, lane);
    workgroupBarrier();
    loadOther(hd, j0, 1u, 1.0, li); // K
    workgroupBarrier();
    let j = j0 + lane;
    let s = dotA(a, lane);
    sc[li] = select(exp(s - rowL[a]) * (dp - rowD[a]), 0.0, j > i || i >= p.T);
    workgroupBarrier();
    for (var c = 0u; c < BT; c++) {
      let ds = sc[a * BT + c];
      for (var q = 0u; q < DPL; q++) {
        let d = lane + q * LANES;
        if (d < HS) { acc[q] += ds * other[d * ST + c]; }
      }
    }
  }
  if (i < p.T) {
    for (var q = 0u; q < DPL; q++) {
      let d = lane + q * LANES;
      if (d < HS) { res[hd.base + i * hd.C3 + d] = acc[q] * p.scale; }
    }
  }
}

// A workgroup per tile of key rows j, walking the query tiles from the diagonal one down:
//   dv_j = sum_{i>=j} P_ij dO_i;  dk_j = scale * sum_{i>=j} P_ij (dO_i . v_j - D_i) q_i
// Here the visiting side is the query tile: rowsA holds scale * q_i, rowsB dO_i, and `other`
// this workgroup's own V (for dO . v) then K (for q . k), transposed.
@compute @workgroup_size(256)
fn dkv(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_index) li: u32, @builtin(num_workgroups) nwg: vec3u) {
  let hd = head(wg.y);
  let a = li / LANES;     // score role: query row a of the visiting tile; row role: key row a
  let lane = li % LANES;  // score role: key row `lane` of this tile; row role: dims
  let j0 = wg.x * BT;
  var dk: array<f32, DPL>;
  var dv: array<f32, DPL>;
  for (var tile = wg.x; tile < nwg.x; tile++) {
    let i0 = tile * BT;
    workgroupBarrier();
    loadRowsA(hd, i0, 0u, p.scale, li);
    loadRowsB(hd, i0, li);
    loadOther(hd, j0, 2u, 1.0, li); // V
    if (li < BT) {
      let i = i0 + li;
      rowL[li] = select(0.0, lse[hd.z * p.T + i], i < p.T);
      rowD[li] = select(0.0, aux[hd.z * p.T + i], i < p.T);
    }
    workgroupBarrier();
    let dp = dotB(a, lane);
    workgroupBarrier();
    loadOther(hd, j0, 1u, 1.0, li); // K
    workgroupBarrier();
    let i = i0 + a;
    let j = j0 + lane;
    let s = dotA(a, lane);
    let pij = select(exp(s - rowL[a]), 0.0, j > i || i >= p.T || j >= p.T);
    sc[li] = pij;
    sc2[li] = pij * (dp - rowD[a]);
    workgroupBarrier();
    // Row role: key row a of this tile gathers over the 16 query rows c of the visiting tile.
    for (var c = 0u; c < BT; c++) {
      let pc = sc[c * BT + a];
      let dsc = sc2[c * BT + a];
      for (var q = 0u; q < DPL; q++) {
        let d = lane + q * LANES;
        if (d < HS) {
          dv[q] += pc * rowsB[c * HS + d];
          dk[q] += dsc * rowsA[c * HS + d];
        }
      }
    }
  }
  let j = j0 + a;
  if (j < p.T) {
    // rowsA held scale * q, so dk already carries the scale.
    for (var q = 0u; q < DPL; q++) {
      let d = lane + q * LANES;
      if (d < HS) {
        res[hd.base + j * hd.C3 + p.C + d] = dk[q];
        res[hd.base + j * hd.C3 + 2u * p.C + d] = dv[q];
      }
    }
  }
}
