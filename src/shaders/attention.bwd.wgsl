// Causal multi-head attention, backward, in two kernels that recompute the probabilities
// P = exp(scale q.k - lse) from attention.fwd.wgsl's log-sum-exp, so no T x T matrix per head
// goes to global memory (FlashAttention-2's split):
//   dq:  an invocation per four query rows; also writes D_i = dO_i . O_i, which dkv needs.
//        dq_i = scale * sum_{j<=i} P_ij (dO_i . v_j - D_i) k_j
//   dkv: an invocation per four key rows, walking the query rows from its first key down.
//        dv_j = sum_{i>=j} P_ij dO_i;  dk_j = scale * sum_{i>=j} P_ij (dO_i . v_j - D_i) q_i
// dq must run before dkv (D). Both overwrite their part of dqkv. As in the forward kernel, the
// four rows an invocation owns are the lanes of vec4s and the other side is read four rows at a
// time, each element once for all four (see attention.fwd.wgsl for why: no workgroup memory,
// no barriers). With HALF (half.wgsl) q, k, v and dO are rounded to f16 as they are read; O
// (for D) and the probabilities stay f32. Shared helpers (head, qkv4, four): attention-rows.wgsl.
struct P { T: u32, C: u32, NH: u32, scale: f32 }
@group(0) @binding(0) var<storage, read> qkv: array<f32>;         // (B, T, 3C)
@group(0) @binding(1) var<storage, read> out: array<f32>;         // (B, T, C) forward output O
@group(0) @binding(2) var<storage, read> dout: array<f32>;        // (B, T, C)
@group(0) @binding(3) var<storage, read> lse: array<f32>;         // (B*NH, T)
@group(0) @binding(4) var<storage, read_write> dqkv: array<f32>;  // (B, T, 3C)
@group(0) @binding(5) var<storage, read_write> D: array<f32>;     // (B*NH, T) written by dq, read by dkv
@group(0) @binding(6) var<uniform> p: P;

override HS: u32 = 64u;
const WG: u32 = 16u;
const HS_MAX: u32 = 128u;

/** Element d of dO (or O) at rows r of head hd, per lane. */
fn dout4(hd: Head, r: vec4u, d: u32) -> vec4f {
  let c = hd.b * p.T * p.C + hd.h * HS + d;
  return vec4f(h1(dout[c + r.x * p.C]), h1(dout[c + r.y * p.C]), h1(dout[c + r.z * p.C]), h1(dout[c + r.w * p.C]));
}
fn out4(hd: Head, r: vec4u, d: u32) -> vec4f {
  let c = hd.b * p.T * p.C + hd.h * HS + d;
  return vec4f(out[c + r.x * p.C], out[c + r.y * p.C], out[c + r.z * p.C], out[c + r.w * p.C]);
}
fn rowStat(buf: u32, z: u32, r: vec4u) -> vec4f {
  let o = z * p.T;
  if (buf == 0u) { return vec4f(lse[o + r.x], lse[o + r.y], lse[o + r.z], lse[o + r.w]); }
  return vec4f(D[o + r.x], D[o + r.y], D[o + r.z], D[o + r.w]);
}

@compute @workgroup_size(WG)
fn dq(@builtin(global_invocation_id) gid: vec3u) {
  let z = gid.y;
  let hd = head(z);
  let i0 = gid.x * 4u;
  if (i0 >= p.T) { return; }
  let own = rows4(i0);
  let rows = own.rows;
  let live = own.live;
  let last = own.last;
  let rc = own.clamped;
  var q: array<vec4f, HS_MAX>;   // scale * q of the four rows
  var g: array<vec4f, HS_MAX>;   // dO
  var acc: array<vec4f, HS_MAX>; // dq / scale
  var k: array<vec4f, HS_MAX>;   // the current four keys, k[d] = (k_j0[d], .., k_j0+3[d])
  var Di = vec4f(0.0);
  for (var d = 0u; d < HS; d++) {
    q[d] = qkv4(hd, rc, 0u, d) * p.scale;
    g[d] = dout4(hd, rc, d);
    Di += g[d] * out4(hd, rc, d);
    acc[d] = vec4f(0.0);
  }
  let Li = rowStat(0u, z, rc);
  for (var r = 0u; r < 4u; r++) {
    if (live[r]) { D[z * p.T + rows[r]] = Di[r]; }
  }
  let jEnd = min(i0 + 4u, p.T);
  for (var j0 = 0u; j0 < jEnd; j0 += 4u) {
    let kr = min(four(j0), last);
    var s0 = vec4f(0.0); var s1 = vec4f(0.0); var s2 = vec4f(0.0); var s3 = vec4f(0.0);
    var e0 = vec4f(0.0); var e1 = vec4f(0.0); var e2 = vec4f(0.0); var e3 = vec4f(0.0);
    for (var d = 0u; d < HS; d++) {
      let kd = qkv4(hd, kr, 1u, d);
      let vd = qkv4(hd, kr, 2u, d);
      k[d] = kd;
      let qd = q[d];
      let gd = g[d];
      s0 += qd * kd.x; s1 += qd * kd.y; s2 += qd * kd.z; s3 += qd * kd.w;
      e0 += gd * vd.x; e1 += gd * vd.y; e2 += gd * vd.z; e3 += gd * vd.w;
    }
    let ds0 = select(vec4f(0.0), exp(s0 - Li) * (e0 - Di), (vec4u(j0) <= rows) & live);
    let ds1 = select(vec4f(0.0), exp(s1 - Li) * (e1 - Di), (vec4u(j0 + 1u) <= rows) & live);
    let ds2 = select(vec4f(0.0), exp(s2 - Li) * (e2 - Di), (vec4u(j0 + 2u) <= rows) & live);
    let ds3 = select(vec4f(0.0), exp(s3 - Li) * (e3 - Di), (vec4u(j0 + 3u) <= rows) & live);
    for (var d = 0u; d < HS; d++) {
      let kd = k[d];
      acc[d] += ds0 * kd.x + ds1 * kd.y + ds2 * kd.z + ds3 * kd.w;
    }
  }
  let C3 = 3u * p.C;
  for (var r = 0u; r < 4u; r++) {
    if (!live[r]) { break; }
    let row = hd.base + rows[r] * C3;
    for (var d = 0u; d < HS; d++) { dqkv[row + d] = acc[d][r] * p.scale; }
  }
}

@compute @workgroup_size(WG)
fn dkv(@builtin(global_invocation_id) gid: vec3u) {
  let z = gid.y;
  let hd = head(z);
  let j0 = gid.x * 4u;
  if (j0 >= p.T) { return; }
  let own = rows4(j0);
  let keys = own.rows;
  let live = own.live;
  let last = own.last;
  let kc = own.clamped;
  var k: array<vec4f, HS_MAX>;
  var v: array<vec4f, HS_MAX>;
  var dk: array<vec4f, HS_MAX>;
  var dv: array<vec4f, HS_MAX>;
  var q: array<vec4f, HS_MAX>; // the current four query rows, scaled: q[d] = (q_i0[d], .., q_i0+3[d])
  var g: array<vec4f, HS_MAX>; // their dO
  for (var d = 0u; d < HS; d++) {
    k[d] = qkv4(hd, kc, 1u, d);
    v[d] = qkv4(hd, kc, 2u, d);
    dk[d] = vec4f(0.0);
    dv[d] = vec4f(0.0);
  }
  // Query rows from this invocation's first key to the end, four at a time.
  for (var i0 = j0; i0 < p.T; i0 += 4u) {
    let qr = min(four(i0), last);
    var s0 = vec4f(0.0); var s1 = vec4f(0.0); var s2 = vec4f(0.0); var s3 = vec4f(0.0);
    var e0 = vec4f(0.0); var e1 = vec4f(0.0); var e2 = vec4f(0.0); var e3 = vec4f(0.0);
    for (var d = 0u; d < HS; d++) {
      let qd = qkv4(hd, qr, 0u, d) * p.scale;
      let gd = dout4(hd, qr, d);
      q[d] = qd;
      g[d] = gd;
      let kd = k[d];
      let vd = v[d];
      s0 += kd * qd.x; s1 += kd * qd.y; s2 += kd * qd.z; s3 += kd * qd.w;
      e0 += vd * gd.x; e1 += vd * gd.y; e2 += vd * gd.z; e3 += vd * gd.w;
    }
    let L = rowStat(0u, z, qr);
    let Dq = rowStat(1u, z, qr);
    // Query row i counts for key j when i >= j and i < T (keys past T are dropped at the store).
    let p0 = select(vec4f(0.0), exp(s0 - L.x), (keys <= vec4u(i0)) & vec4<bool>(i0 < p.T));
    let p1 = select(vec4f(0.0), exp(s1 - L.y), (keys <= vec4u(i0 + 1u)) & vec4<bool>(i0 + 1u < p.T));
    let p2 = select(vec4f(0.0), exp(s2 - L.z), (keys <= vec4u(i0 + 2u)) & vec4<bool>(i0 + 2u < p.T));
    let p3 = select(vec4f(0.0), exp(s3 - L.w), (keys <= vec4u(i0 + 3u)) & vec4<bool>(i0 + 3u < p.T));
    let ds0 = p0 * (e0 - Dq.x); let ds1 = p1 * (e1 - Dq.y);
    let ds2 = p2 * (e2 - Dq.z); let ds3 = p3 * (e3 - Dq.w);
    for (var d = 0u; d < HS; d++) {
      let gd = g[d];
      let qd = q[d];
      dv[d] += p0 * gd.x + p1 * gd.y + p2 * gd.z + p3 * gd.w;
      dk[d] += ds0 * qd.x + ds1 * qd.y + ds2 * qd.z + ds3 * qd.w;
    }
  }
  // q held scale * q, so dk already carries the scale.
  let C3 = 3u * p.C;
  for (var r = 0u; r < 4u; r++) {
    if (!live[r]) { break; }
    let row = hd.base + keys[r] * C3;
    for (var d = 0u; d < HS; d++) {
      dqkv[row + p.C + d] = dk[d][r];
      dqkv[row + 2u * p.C + d] = dv[d][r];
    }
  }
}
