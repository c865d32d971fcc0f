// Causal multi-head attention, forward, in one kernel (FlashAttention's online softmax): no
// T x T matrix goes to global memory. An invocation owns four query rows i0..i0+3 of one head
// z = b * NH + h (wg.y), packed into the four lanes of vec4s: q, the output rows, the running
// max and the running sum. It walks the keys 0..i0+3 four at a time, reading each key and
// value element once for all four rows, so every load feeds four (or sixteen) multiply-adds.
// No workgroup memory and no barriers: on SwiftShader a load is a gather across the lanes of a
// SIMD group and a barrier costs more than a shared tile saves (the tiled kernels in
// attention.tiled.wgsl are what a discrete GPU runs). The backward pass (attention.bwd.wgsl)
// recomputes the probabilities from the saved log-sum-exp, so nothing else is kept.
// qkv is (B, T, 3C) packed q | k | v; head h of part p sits at columns p*C + h*HS. With HALF
// (half.wgsl) q, k and v are rounded to f16 as they are read. Shared helpers: attention-rows.wgsl.
struct P { T: u32, C: u32, NH: u32, scale: f32 }
@group(0) @binding(0) var<storage, read> qkv: array<f32>;        // (B, T, 3C)
@group(0) @binding(1) var<storage, read_write> out: array<f32>;  // (B, T, C)
@group(0) @binding(2) var<storage, read_write> lse: array<f32>;  // (B*NH, T) log-sum-exp of each scaled score row
@group(0) @binding(3) var<uniform> p: P;

/** Head size; a pipeline per head size, so the loops over d have a constant bound. */
override HS: u32 = 64u;
/** Invocations per workgroup (ATT_ROWS_WG in src/gpu/ops.ts); each owns 4 rows. */
const WG: u32 = 16u;
/** Largest head size (ATT_MAX_HEAD): the register rows are sized for it. */
const HS_MAX: u32 = 128u;
/** Below any score; finite so that exp(m - mt) is 0, never NaN, before the first key. */
const NEG: f32 = -3.0e38;

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(local_invocation_index) li: u32) {
  let z = gid.y;
  let hd = head(z);
  let i0 = gid.x * 4u;
  // QUAD: the quad's rows start at iq; it leaves only as a whole.
  let lane = li & 3u;
  let iq = i0 - 4u * lane;
  if (select(i0, iq, QUAD) >= p.T) { return; }
  let own = rows4(i0);
  let rows = own.rows;
  let live = own.live;
  let last = own.last;
  let rc = own.clamped;
  var q: array<vec4f, HS_MAX>; // q[d] = (q_i0[d], .., q_i0+3[d]) * scale
  var o: array<vec4f, HS_MAX>;
  for (var d = 0u; d < HS; d++) { q[d] = qkv4(hd, rc, 0u, d) * p.scale; o[d] = vec4f(0.0); }
  var m = vec4f(NEG);
  var l = vec4f(0.0);
  let jEnd = min(select(i0 + 4u, iq + 16u, QUAD), p.T);
  for (var j0 = 0u; j0 < jEnd; j0 += 4u) {
    let kr = min(four(j0), last);
    let kq = min(j0 + lane, p.T - 1u); // QUAD: the key this invocation reads for its quad
    // Scores of the four rows (lanes) against keys j0..j0+3.
    var s0 = vec4f(0.0); var s1 = vec4f(0.0); var s2 = vec4f(0.0); var s3 = vec4f(0.0);
    if (QUAD) {
      for (var d = 0u; d < HS; d += 4u) {
        let x = qkvRow4(hd, kq, 1u, d);
        let k0 = quad0(x); let k1 = quad1(x); let k2 = quad2(x); let k3 = quad3(x); // keys j0..j0+3, elements d..d+3
        let qa = q[d]; let qb = q[d + 1u]; let qc = q[d + 2u]; let qe = q[d + 3u];
        s0 += qa * k0.x + qb * k0.y + qc * k0.z + qe * k0.w;
        s1 += qa * k1.x + qb * k1.y + qc * k1.z + qe * k1.w;
        s2 += qa * k2.x + qb * k2.y + qc * k2.z + qe * k2.w;
        s3 += qa * k3.x + qb * k3.y + qc * k3.z + qe * k3.w;
      }
    } else {
      for (var d = 0u; d < HS; d++) {
        let k = qkv4(hd, kr, 1u, d);
        let qd = q[d];
        s0 += qd * k.x; s1 += qd * k.y; s2 += qd * k.z; s3 += qd * k.w;
      }
    }
    // Key j counts for row i when j <= i (which also keeps j < T for a live row).
    let ok0 = (vec4u(j0) <= rows) & live;
    let ok1 = (vec4u(j0 + 1u) <= rows) & live;
    let ok2 = (vec4u(j0 + 2u) <= rows) & live;
    let ok3 = (vec4u(j0 + 3u) <= rows) & live;
    s0 = select(vec4f(NEG), s0, ok0); s1 = select(vec4f(NEG), s1, ok1);
    s2 = select(vec4f(NEG), s2, ok2); s3 = select(vec4f(NEG), s3, ok3);
    let mt = max(m, max(max(s0, s1), max(s2, s3)));
    // One rescale per four keys.
    let corr = exp(m - mt);
    let p0 = select(vec4f(0.0), exp(s0 - mt), ok0); let p1 = select(vec4f(0.0), exp(s1 - mt), ok1);
    let p2 = select(vec4f(0.0), exp(s2 - mt), ok2); let p3 = select(vec4f(0.0), exp(s3 - mt), ok3);
    l = l * corr + p0 + p1 + p2 + p3;
    if (QUAD) {
      for (var d = 0u; d < HS; d += 4u) {
        let x = qkvRow4(hd, kq, 2u, d);
        let v0 = quad0(x); let v1 = quad1(x); let v2 = quad2(x); let v3 = quad3(x);
        o[d] = o[d] * corr + p0 * v0.x + p1 * v1.x + p2 * v2.x + p3 * v3.x;
        o[d + 1u] = o[d + 1u] * corr + p0 * v0.y + p1 * v1.y + p2 * v2.y + p3 * v3.y;
        o[d + 2u] = o[d + 2u] * corr + p0 * v0.z + p1 * v1.z + p2 * v2.z + p3 * v3.z;
        o[d + 3u] = o[d + 3u] * corr + p0 * v0.w + p1 * v1.w + p2 * v2.w + p3 * v3.w;
      }
    } else {
      for (var d = 0u; d < HS; d++) {
        let v = qkv4(hd, kr, 2u, d);
        o[d] = o[d] * corr + p0 * v.x + p1 * v.y + p2 * v.z + p3 * v.w;
      }
    }
    m = mt;
  }
  let inv = 1.0 / l;
  let C = p.C;
  for (var r = 0u; r < 4u; r++) {
    if (!live[r]) { break; }
    let row = (hd.b * p.T + rows[r]) * C + hd.h * HS;
    for (var d = 0u; d < HS; d++) { out[row + d] = o[d][r] * inv[r]; }
    lse[z * p.T + rows[r]] = m[r] + log(l[r]);
  }
}
