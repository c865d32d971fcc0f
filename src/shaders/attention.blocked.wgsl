// Causal multi-head attention, forward (fwd) and backward (dq, then dkv), register-blocked for
// GPUs ('blocked'): the algorithm of attention.tiled.wgsl (online softmax; the backward
// recomputes P from the saved log-sum-exp; no T x T matrix in global memory), but each
// invocation computes a 4 x 4 block of scores from vec4 loads of its 4 query and 4 key rows, so
// that every load feeds four dot products, where the tiled kernels feed one multiply-add with
// two workgroup-memory reads. The operands are read straight from global memory (the cache
// serves the rows the workgroup shares), as the register matmul kernels do; only what the
// workgroup computes passes through workgroup memory: one 32 x 32 tile of probabilities (and of
// dS in dkv), 4 KiB each, and in fwd the blocks' row maxes and sums, 2 KiB.
//
// A workgroup of 64 invocations owns a tile of 32 rows of one head z = b * NH + h (query rows
// for fwd and dq, key rows for dkv) and walks the 32-row tiles of the other side on or before
// (fwd, dq) or on or after (dkv) the diagonal. Invocation li = 8 tI + tJ plays:
//   score role   rows 4 tI .. 4 tI + 3 of the query tile by rows 4 tJ .. 4 tJ + 3 of the key
//                tile: S (and dO . v in the backward), into workgroup memory;
//   output role  rows 4 tI .. 4 tI + 3 of its own tile (O, dq; dk and dv in dkv) by the head
//                dims of vec4s tJ and tJ + 8 (HS <= 64), accumulated over the visiting tile;
//   row stats    (fwd) the running max and sum of rows 4 tI .. 4 tI + 3 over the keys so far,
//                from the 8 blocks of those rows (the same values in each of their invocations).
// HS is a multiple of 4 of at most 64 (ops.ts falls back to the other kernels otherwise).
// The per-invocation arrays (o, acc, dk, dv, s) are indexed only in the innermost loops of 2 and
// 4 iterations, which a compiler unrolls, so that they stay in registers.
//
// qkv is (B, T, 3C) packed q | k | v, read here as vec4s; head h of part p sits at vec4 column
// p * C/4 + h * HS/4. With HALF (half.wgsl) q, k, v and dO are rounded to f16 as they are read.
struct P { T: u32, C: u32, NH: u32, scale: f32 }
@group(0) @binding(0) var<storage, read> qkv: array<vec4f>;       // (B, T, 3C)
@group(0) @binding(1) var<storage, read> out: array<vec4f>;       // (B, T, C) forward output O (dq reads it)
@group(0) @binding(2) var<storage, read> dout: array<vec4f>;      // (B, T, C)
@group(0) @binding(3) var<storage, read> lse: array<f32>;         // (B*NH, T)
@group(0) @binding(4) var<storage, read_write> res: array<vec4f>; // fwd: O (B, T, C); dq, dkv: dqkv (B, T, 3C)
@group(0) @binding(5) var<storage, read_write> aux: array<f32>;   // fwd: lse (B*NH, T); dq: D (B*NH, T) written; dkv: D read
@group(0) @binding(6) var<uniform> p: P;

/** Head size: a multiple of 4, at most 64; a pipeline per head size. */
override HS: u32 = 64u;
const BT: u32 = 32u;   // rows of a tile, either side
const NEG: f32 = -3.0e38;

var<workgroup> tileP: array<vec4f, 256>;  // 32 x 8 vec4s (layout per kernel, below)
var<workgroup> tileS: array<vec4f, 256>;  // dkv: dS beside P
var<workgroup> rowA: array<vec4f, 8>;     // dq: per row of the own tile, D
var<workgroup> rowB: array<vec4f, 8>;     // dq: the row's lse
var<workgroup> part: array<vec4f, 128>;   // fwd: [tJ * 8 + tI] a block's row maxes, [64 + ...] its row sums

struct Head { z: u32, C4: u32, C34: u32, qkvBase: u32, rowBase: u32 }
fn head(z: u32) -> Head {
  let C4 = p.C / 4u;
  let b = z / p.NH;
  let h = z % p.NH;
  return Head(z, C4, 3u * C4, b * p.T * 3u * C4 + h * (HS / 4u), b * p.T * C4 + h * (HS / 4u));
}
// Vec4 `d` of part `part` (0 q, 1 k, 2 v) of row t; row T - 1's past the end (callers mask).
fn qkvAt(hd: Head, t: u32, part: u32, d: u32) -> vec4f {
  return h4(qkv[hd.qkvBase + min(t, p.T - 1u) * hd.C34 + part * hd.C4 + d]);
}
fn doutAt(hd: Head, t: u32, d: u32) -> vec4f {
  return h4(dout[hd.rowBase + min(t, p.T - 1u) * hd.C4 + d]);
}

// d[r][c] = x_(i0 + 4 tI + r) . y_(j0 + 4 tJ + c), where x is q (dout false) or dO (dout true)
// and y is part `part` of qkv: the scores before the scale (q . k), or dO . v.
fn blockDots(hd: Head, i0: u32, j0: u32, tI: u32, tJ: u32, dout: bool, part: u32) -> array<vec4f, 4> {
  var s: array<vec4f, 4>;
  for (var d = 0u; d < HS / 4u; d++) {
    let y0 = qkvAt(hd, j0 + 4u * tJ, part, d);
    let y1 = qkvAt(hd, j0 + 4u * tJ + 1u, part, d);
    let y2 = qkvAt(hd, j0 + 4u * tJ + 2u, part, d);
    let y3 = qkvAt(hd, j0 + 4u * tJ + 3u, part, d);
    // The four rows' vec4s regrouped by head dim, so that each of the 16 dot products chains
    // four multiply-adds into s (matmul.wgsl's byK, nt's form), not four and then an add.
    let k0 = vec4f(y0.x, y1.x, y2.x, y3.x); let k1 = vec4f(y0.y, y1.y, y2.y, y3.y);
    let k2 = vec4f(y0.z, y1.z, y2.z, y3.z); let k3 = vec4f(y0.w, y1.w, y2.w, y3.w);
    for (var r = 0u; r < 4u; r++) {
      let i = i0 + 4u * tI + r;
      var x: vec4f;
      if (dout) { x = doutAt(hd, i, d); } else { x = qkvAt(hd, i, 0u, d); }
      s[r] = s[r] + x.x * k0 + x.y * k1 + x.z * k2 + x.w * k3;
    }
  }
  return s;
}
// s[r][c] = scale * q_(i0 + 4 tI + r) . k_(j0 + 4 tJ + c).
fn scores(hd: Head, i0: u32, j0: u32, tI: u32, tJ: u32) -> array<vec4f, 4> {
  var s = blockDots(hd, i0, j0, tI, tJ, false, 1u);
  for (var r = 0u; r < 4u; r++) { s[r] *= p.scale; }
  return s;
}
// Whether key j may be seen from query i (causal, both inside the sequence).
fn visible(i: u32, j: u32) -> bool { return j <= i && i < p.T; }

// tileP[j * 8 + tI][r] = probability of query 4 tI + r for key j of the visiting tile.
// The online softmax's row statistics are the block's too: each invocation takes the max (then
// the sum) of its 4 x 4 block's rows, the 8 invocations of a row of blocks meet in `part`, and
// each of them keeps the running max m and sum l of its 4 rows (the same values in all 8), so
// every invocation exponentiates its own 16 scores at once.
@compute @workgroup_size(64)
fn fwd(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_index) li: u32) {
  let hd = head(wg.y);
  let tI = li / 8u;
  let tJ = li % 8u;
  let i0 = wg.x * BT;
  var m = vec4f(NEG);  // rows 4 tI .. 4 tI + 3
  var l = vec4f(0.0);
  var o: array<vec4f, 8>;  // o[4 q + r]: row 4 tI + r, head vec4 tJ + 8 q
  for (var tile = 0u; tile <= wg.x; tile++) {
    let j0 = tile * BT;
    var s = scores(hd, i0, j0, tI, tJ);
    var bm = vec4f(NEG);
    for (var r = 0u; r < 4u; r++) {
      for (var c = 0u; c < 4u; c++) { s[r][c] = select(NEG, s[r][c], j0 + 4u * tJ + c <= i0 + 4u * tI + r); }
      bm[r] = max(max(s[r][0], s[r][1]), max(s[r][2], s[r][3]));
    }
    part[tJ * 8u + tI] = bm;
    workgroupBarrier();
    var mt = m;
    for (var j = 0u; j < 8u; j++) { mt = max(mt, part[j * 8u + tI]); }
    // Every row sees at least one key of every tile it visits (key 0 of the first, its own
    // diagonal of the last), so mt is a real score and exp(NEG - mt) is 0.
    var bs = vec4f(0.0);
    for (var c = 0u; c < 4u; c++) {
      var col: vec4f;
      for (var r = 0u; r < 4u; r++) { col[r] = exp(s[r][c] - mt[r]); }
      tileP[(4u * tJ + c) * 8u + tI] = col;
      bs += col;
    }
    part[64u + tJ * 8u + tI] = bs;
    workgroupBarrier();
    let corr = exp(m - mt);
    var sum = vec4f(0.0);
    for (var j = 0u; j < 8u; j++) { sum += part[64u + j * 8u + tI]; }
    l = l * corr + sum;
    m = mt;
    for (var q = 0u; q < 2u; q++) {
      for (var r = 0u; r < 4u; r++) { o[4u * q + r] *= corr[r]; }
    }
    for (var c = 0u; c < BT; c++) {
      let pr = tileP[c * 8u + tI];
      for (var q = 0u; q < 2u; q++) {
        let d = tJ + 8u * q;
        if (d < HS / 4u) {
          let v = select(vec4f(0.0), qkvAt(hd, j0 + c, 2u, d), j0 + c < p.T);
          for (var r = 0u; r < 4u; r++) { o[4u * q + r] += pr[r] * v; }
        }
      }
    }
    workgroupBarrier();
  }
  let inv = 1.0 / l;
  for (var r = 0u; r < 4u; r++) {
    let i = i0 + 4u * tI + r;
    if (tJ == 0u && i < p.T) { aux[hd.z * p.T + i] = m[r] + log(l[r]); }
  }
  for (var q = 0u; q < 2u; q++) {
    let d = tJ + 8u * q;
    for (var r = 0u; r < 4u; r++) {
      let i = i0 + 4u * tI + r;
      if (d < HS / 4u && i < p.T) { res[hd.rowBase + i * hd.C4 + d] = o[4u * q + r] * inv[r]; }
    }
  }
}

// dq_i = scale * sum_{j<=i} P_ij (dO_i . v_j - D_i) k_j, with D_i = dO_i . O_i (written for dkv).
// tileP[j * 8 + tI][r] = dS of query 4 tI + r and key j of the visiting tile.
@compute @workgroup_size(64)
fn dq(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_index) li: u32) {
  let hd = head(wg.y);
  let tI = li / 8u;
  let tJ = li % 8u;
  let i0 = wg.x * BT;
  if (li < BT) {
    let i = i0 + li;
    var Di = 0.0;
    var Li = 0.0;
    if (i < p.T) {
      for (var d = 0u; d < HS / 4u; d++) { Di += dot(doutAt(hd, i, d), out[hd.rowBase + i * hd.C4 + d]); }
      Li = lse[hd.z * p.T + i];
      aux[hd.z * p.T + i] = Di;
    }
    rowA[li / 4u][li % 4u] = Di;
    rowB[li / 4u][li % 4u] = Li;
  }
  workgroupBarrier();
  let Dr = rowA[tI];
  let Lr = rowB[tI];
  var acc: array<vec4f, 8>;
  for (var tile = 0u; tile <= wg.x; tile++) {
    let j0 = tile * BT;
    let s = scores(hd, i0, j0, tI, tJ);
    let g = blockDots(hd, i0, j0, tI, tJ, true, 2u);
    for (var c = 0u; c < 4u; c++) {
      let j = j0 + 4u * tJ + c;
      var col: vec4f;
      for (var r = 0u; r < 4u; r++) {
        col[r] = select(0.0, exp(s[r][c] - Lr[r]) * (g[r][c] - Dr[r]), visible(i0 + 4u * tI + r, j));
      }
      tileP[(4u * tJ + c) * 8u + tI] = col;
    }
    workgroupBarrier();
    for (var c = 0u; c < BT; c++) {
      let ds = tileP[c * 8u + tI];
      for (var q = 0u; q < 2u; q++) {
        let d = tJ + 8u * q;
        if (d < HS / 4u) {
          let k = select(vec4f(0.0), qkvAt(hd, j0 + c, 1u, d), j0 + c < p.T);
          for (var r = 0u; r < 4u; r++) { acc[4u * q + r] += ds[r] * k; }
        }
      }
    }
    workgroupBarrier();
  }
  for (var q = 0u; q < 2u; q++) {
    let d = tJ + 8u * q;
    for (var r = 0u; r < 4u; r++) {
      let i = i0 + 4u * tI + r;
      if (d < HS / 4u && i < p.T) { res[hd.qkvBase + i * hd.C34 + d] = acc[4u * q + r] * p.scale; }
    }
  }
}

// A workgroup per tile of key rows j, walking the query tiles from the diagonal one down:
//   dv_j = sum_{i>=j} P_ij dO_i;  dk_j = scale * sum_{i>=j} P_ij (dO_i . v_j - D_i) q_i
// The score role here is query rows 4 tI + r of the visiting tile by key rows 4 tJ + c of this
// one; tileP[i * 8 + tJ][c] = P and tileS[i * 8 + tJ][c] = dS of query i and key 4 tJ + c.
// The output role is key rows 4 tI + c of this tile by head vec4s tJ and tJ + 8.
@compute @workgroup_size(64)
fn dkv(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_index) li: u32, @builtin(num_workgroups) nwg: vec3u) {
  let hd = head(wg.y);
  let tI = li / 8u;
  let tJ = li % 8u;
  let j0 = wg.x * BT;
  var dk: array<vec4f, 8>;  // [4 q + c]: key 4 tI + c, head vec4 tJ + 8 q
  var dv: array<vec4f, 8>;
  for (var tile = wg.x; tile < nwg.x; tile++) {
    let i0 = tile * BT;
    let s = scores(hd, i0, j0, tI, tJ);
    let g = blockDots(hd, i0, j0, tI, tJ, true, 2u);
    for (var r = 0u; r < 4u; r++) {
      let i = i0 + 4u * tI + r;
      let ok = i < p.T;
      let Li = select(0.0, lse[hd.z * p.T + min(i, p.T - 1u)], ok);
      let Di = select(0.0, aux[hd.z * p.T + min(i, p.T - 1u)], ok);
      var pr: vec4f;
      var dsr: vec4f;
      for (var c = 0u; c < 4u; c++) {
        let pij = select(0.0, exp(s[r][c] - Li), visible(i, j0 + 4u * tJ + c) && j0 + 4u * tJ + c < p.T);
        pr[c] = pij;
        dsr[c] = pij * (g[r][c] - Di);
      }
      tileP[(4u * tI + r) * 8u + tJ] = pr;
      tileS[(4u * tI + r) * 8u + tJ] = dsr;
    }
    workgroupBarrier();
    for (var a = 0u; a < BT; a++) {
      let i = i0 + a;
      let pk = tileP[a * 8u + tI];
      let dsk = tileS[a * 8u + tI];
      for (var q = 0u; q < 2u; q++) {
        let d = tJ + 8u * q;
        if (d < HS / 4u) {
          let dO = select(vec4f(0.0), doutAt(hd, i, d), i < p.T);
          let qs = select(vec4f(0.0), qkvAt(hd, i, 0u, d) * p.scale, i < p.T);
          for (var c = 0u; c < 4u; c++) {
            dv[4u * q + c] += pk[c] * dO;
            dk[4u * q + c] += dsk[c] * qs;
          }
        }
      }
    }
    workgroupBarrier();
  }
  for (var q = 0u; q < 2u; q++) {
    let d = tJ + 8u * q;
    for (var c = 0u; c < 4u; c++) {
      let j = j0 + 4u * tI + c;
      if (d < HS / 4u && j < p.T) {
        res[hd.qkvBase + j * hd.C34 + hd.C4 + d] = dk[4u * q + c];
        res[hd.qkvBase + j * hd.C34 + 2u * hd.C4 + d] = dv[4u * q + c];
      }
    }
  }
}
