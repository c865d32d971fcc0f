// Matrix products with bias and epilogues, register-blocked: each invocation owns a TM x TN block
// of C (TM = 8 or 4 rows, TN = 4 or 8 adjacent columns) held in TM or 2 TM vec4 registers, and
// reads A and B four contiguous floats at a time. The block's rows are written out by hand
// (s0..s7, and t0..t7 for columns 4..7): a loop over an array indexed by row kept the block in
// memory on SwiftShader, 4x slower; TM = 4 drops rows 4..7 through `if (TM >= 8u)` and TN = 4
// the t rows through `if (TN == 8u)`, which the compiler folds once the overrides are known.
// No workgroup memory: on SwiftShader a shared-memory tile was slower than the naive kernel
// (bench/kernels/matmul), while register blocks reuse each load 4-8 times from registers.
//
// Three entry points cover forward and backward of y = x @ W + b with W stored (in, out):
//   nn: C = A @ B        forward (x @ W), dlnf = dlogits @ wte, attention att @ V and dQ
//   nt: C = A @ B^T      dx = dy @ W^T, logits = lnf @ wte^T, attention Q K^T and dAtt
//   tn: C = A^T @ B      dW = x^T @ dy, dwte, attention dV and dK
//       with BIAS_GRAD, one extra row of workgroups also adds the column sums of B into dbias
//       (db = sum over rows of dy): the bias gradient rides along with dW at no extra latency.
// C(M,N) = alpha * op(A) op(B) (+ bias[col]) (epilogue) (+ C if ACCUM). A batch index z
// (attention: z = b * NH + h) offsets each operand by zOuter * outer + zInner * inner.
//
// Loads: lda4(i) reads A[i..i+3] and lda1(i) reads A[i], i in floats. The vector width of a
// load is the override VEC4: one aligned 16-byte load from the vec4 view of the buffer (A4),
// or four scalar loads from its f32 view (A1), which any stride allows. The host binds the same
// buffer to both views (read-only bindings may alias) and picks VEC4 from the operands'
// alignment and the autotuner's preference for this adapter. Scalar reads past the end of a row
// land on neighbouring floats (or WebGPU's bounds clamp) and are discarded by the store. With
// HALF (half.wgsl, put in front of this file) every load rounds A and B to f16.
//
// Quads: with QUAD (quad.wgsl in front, on devices with subgroups; wgX a multiple of 4) the
// four invocations of a quad, which own the same rows of C, each load a quarter of those rows'
// A values and broadcast them to the others (arow0..3 in nn/nt, pair0..3 in tn). Every lane of
// a quad then stays to the end of the loop: lanes past the last column compute on clamped or
// neighbouring reads and store nothing.

struct Mm {
  M: u32, N: u32, K: u32, lda: u32,
  ldb: u32, ldc: u32, offA: u32, offB: u32,
  offC: u32, offBias: u32, offR: u32, ldr: u32,
  nInner: u32, aOuter: u32, aInner: u32, bOuter: u32,
  bInner: u32, cOuter: u32, cInner: u32, alpha: f32,
}

@group(0) @binding(0) var<storage, read> A4: array<vec4f>;      // A as vec4 [VEC4]
@group(0) @binding(1) var<storage, read> B4: array<vec4f>;      // B as vec4 [VEC4]
@group(0) @binding(2) var<storage, read> bias: array<f32>;        // (N) when HAS_BIAS
@group(0) @binding(3) var<storage, read> R: array<f32>;           // (M, ldr) when EPI is 1 or 2
@group(0) @binding(4) var<storage, read_write> C: array<f32>;     // (M, ldc)
@group(0) @binding(5) var<uniform> u: Mm;
@group(0) @binding(6) var<storage, read_write> aux: array<f32>;   // dbias (N) at offBias with BIAS_GRAD; pre-activation (M, ldr) at offR with EPI 3
@group(0) @binding(7) var<storage, read> A1: array<f32>;        // A as f32 [!VEC4]
@group(0) @binding(8) var<storage, read> B1: array<f32>;        // B as f32 [!VEC4]

/** Invocations per workgroup along columns (x, 4 columns each) and rows (y, TM rows each). */
override WG_X: u32 = 8;
override WG_Y: u32 = 8;
/**
 * Rows per invocation: 8 or 4 (fewer registers, more invocations), or 16 with QUAD only (rows
 * 8..15 come from the quad's broadcasts; each B load then feeds 16 rows).
 */
override TM: u32 = 8u;
/**
 * Columns per invocation: 4 or 8 (a second vec4 of columns, t0..t7 beside s0..s7). Every load
 * of A then feeds twice the multiply-adds: on SwiftShader, where a load is a gather across the
 * lanes of a SIMD group, an 8 x 8 block ran 1.4-1.8x the 8 x 4 one (bench/kernels/matmul, 06).
 */
override TN: u32 = 4u;
/** Vector width of the loads: true = vec4 loads (strides and offsets multiples of 4), false = scalar. */
override VEC4: bool = true;
override HAS_BIAS: bool = false;
/** C += result instead of C = result (parameter gradients accumulate, llm.c's rule). */
override ACCUM: bool = false;
/**
 * 0: none; 1: + R (residual stream); 2: * gelu'(R) (backward through GELU, R = pre-activation);
 * 3: C = GELU(result) and the pre-activation result goes to aux (bias + GELU fused into the product).
 */
override EPI: u32 = 0u;
/** tn only: the workgroup row after the last block row sums B's columns into aux as dbias (+=). */
override BIAS_GRAD: bool = false;
/** A's rows shared across each quad (see the top of this file): only with quad.wgsl in front. */
override QUAD: bool = false;

const GELU_S: f32 = 0.7978845608028654; // sqrt(2 / pi)

fn lda4(i: u32) -> vec4f {
  if (VEC4) { return h4(A4[i >> 2u]); }
  return h4(vec4f(A1[i], A1[i + 1u], A1[i + 2u], A1[i + 3u]));
}
fn ldb4(i: u32) -> vec4f {
  if (VEC4) { return h4(B4[i >> 2u]); }
  return h4(vec4f(B1[i], B1[i + 1u], B1[i + 2u], B1[i + 3u]));
}
fn lda1(i: u32) -> f32 {
  if (VEC4) { return h1(A4[i >> 2u][i & 3u]); }
  return h1(A1[i]);
}
fn ldb1(i: u32) -> f32 {
  if (VEC4) { return h1(B4[i >> 2u][i & 3u]); }
  return h1(B1[i]);
}

/** nn/nt: where row r of A starts (clamped to the last row), and its float at column k. */
fn arowAt(o: Offs, r: u32) -> u32 { return o.a + min(r, u.M - 1u) * u.lda; }
fn arow1At(o: Offs, r: u32, k: u32) -> f32 { return lda1(arowAt(o, r) + k); }

// Row j (0..3, or 4..7 with the quad's second load) of the block's A values at k..k+3: quad
// lane j's load x with QUAD, else this invocation's own load at i.
fn arow0(i: u32, x: vec4f) -> vec4f { if (QUAD) { return quad0(x); } return lda4(i); }
fn arow1(i: u32, x: vec4f) -> vec4f { if (QUAD) { return quad1(x); } return lda4(i); }
fn arow2(i: u32, x: vec4f) -> vec4f { if (QUAD) { return quad2(x); } return lda4(i); }
fn arow3(i: u32, x: vec4f) -> vec4f { if (QUAD) { return quad3(x); } return lda4(i); }

// tanh through one exp, 1 - 2 / (1 + e^2y): exact to ~1e-7 absolute (what GELU needs: its
// result is 0.5 x (1 + tanh)), and on SwiftShader cheaper than the built-in. e^2y overflows to
// infinity past y ~ 44, which gives 1; far below, 0 gives -1.
fn tanhExp(y: f32) -> f32 {
  return 1.0 - 2.0 / (1.0 + exp(2.0 * y));
}

fn gelu(x: f32) -> f32 {
  return 0.5 * x * (1.0 + tanhExp(GELU_S * (x + 0.044715 * x * x * x)));
}

fn geluGrad(x: f32) -> f32 {
  let cube = 0.044715 * x * x * x;
  let t = tanhExp(GELU_S * (x + cube));
  let sech2 = 1.0 - t * t;
  return 0.5 * (1.0 + t) + 0.5 * x * sech2 * GELU_S * (1.0 + 3.0 * 0.044715 * x * x);
}

struct Offs { a: u32, b: u32, c: u32 }

fn batchOffsets(z: u32) -> Offs {
  let zo = z / u.nInner;
  let zi = z % u.nInner;
  return Offs(u.offA + zo * u.aOuter + zi * u.aInner,
              u.offB + zo * u.bOuter + zi * u.bInner,
              u.offC + zo * u.cOuter + zi * u.cInner);
}

// C(row, col) = alpha * x (+ bias) (epilogue) (+ C): one output of a product (storeRow) or of
// the sum of its K-split partial products (splitSum).
fn storeOne(row: u32, col: u32, x: f32, offC: u32) {
  var v = u.alpha * x;
  if (HAS_BIAS) { v += bias[u.offBias + col]; }
  if (EPI == 1u) { v += R[u.offR + row * u.ldr + col]; }
  if (EPI == 2u) { v *= geluGrad(R[u.offR + row * u.ldr + col]); }
  if (EPI == 3u) { aux[u.offR + row * u.ldr + col] = v; v = gelu(v); }
  let ci = offC + row * u.ldc + col;
  if (ACCUM) { v += C[ci]; }
  C[ci] = v;
}

fn storeRow(row: u32, c0: u32, s: vec4f, offC: u32) {
  if (row >= u.M) { return; }
  for (var q = 0u; q < 4u; q++) {
    if (c0 + q < u.N) { storeOne(row, c0 + q, s[q], offC); }
  }
}

fn storeBlock(r0: u32, c0: u32, offC: u32, s0: vec4f, s1: vec4f, s2: vec4f, s3: vec4f,
              s4: vec4f, s5: vec4f, s6: vec4f, s7: vec4f) {
  storeRow(r0, c0, s0, offC); storeRow(r0 + 1u, c0, s1, offC);
  storeRow(r0 + 2u, c0, s2, offC); storeRow(r0 + 3u, c0, s3, offC);
  if (TM >= 8u) {
    storeRow(r0 + 4u, c0, s4, offC); storeRow(r0 + 5u, c0, s5, offC);
    storeRow(r0 + 6u, c0, s6, offC); storeRow(r0 + 7u, c0, s7, offC);
  }
}

// a . (b0, b1, b2, b3) as rows: the four k-steps of one vec4 of A against four rows of B.
fn fma4(s: vec4f, a: vec4f, b0: vec4f, b1: vec4f, b2: vec4f, b3: vec4f) -> vec4f {
  return s + a.x * b0 + a.y * b1 + a.z * b2 + a.w * b3;
}

// nt's four columns of B^T at k..k+3 (b0..b3, each a vec4 along k) regrouped along the
// columns, one vec4 per k, so that nt multiplies as nn does (fma4: each output chains four
// multiply-adds into its accumulator). With dot products instead each output took the four
// products and then an add, five instructions where four do on a scalar GPU, since a compiler
// may not reorder the sum (bench/kernels/matmul 10, DOTS). The regrouping is only a choice of
// registers there, and on SwiftShader, which keeps each component in its own vector.
struct ByK { k0: vec4f, k1: vec4f, k2: vec4f, k3: vec4f }
fn byK(b0: vec4f, b1: vec4f, b2: vec4f, b3: vec4f) -> ByK {
  return ByK(vec4f(b0.x, b1.x, b2.x, b3.x), vec4f(b0.y, b1.y, b2.y, b3.y),
             vec4f(b0.z, b1.z, b2.z, b3.z), vec4f(b0.w, b1.w, b2.w, b3.w));
}
fn fmaK(s: vec4f, a: vec4f, b: ByK) -> vec4f { return fma4(s, a, b.k0, b.k1, b.k2, b.k3); }

@compute @workgroup_size(WG_X, WG_Y)
fn nn(@builtin(global_invocation_id) g: vec3u, @builtin(local_invocation_index) li: u32) {
  let c0 = g.x * TN;
  let r0 = g.y * TM;
  if (r0 >= u.M || (!QUAD && c0 >= u.N)) { return; }
  let o = batchOffsets(g.z);
  let last = u.M - 1u;
  // QUAD: this lane loads rows r0 + lane and r0 + 4 + lane for its quad.
  let lane = li & 3u;
  let aq = arowAt(o, r0 + lane); let aqh = arowAt(o, r0 + 4u + lane);
  // TM = 16 (QUAD only): rows r0 + 8 + lane and r0 + 12 + lane.
  let aq2 = arowAt(o, r0 + 8u + lane); let aq3 = arowAt(o, r0 + 12u + lane);
  let a0 = o.a + min(r0, last) * u.lda;      let a1 = o.a + min(r0 + 1u, last) * u.lda;
  let a2 = o.a + min(r0 + 2u, last) * u.lda; let a3 = o.a + min(r0 + 3u, last) * u.lda;
  let a4 = o.a + min(r0 + 4u, last) * u.lda; let a5 = o.a + min(r0 + 5u, last) * u.lda;
  let a6 = o.a + min(r0 + 6u, last) * u.lda; let a7 = o.a + min(r0 + 7u, last) * u.lda;
  var s0 = vec4f(0.0); var s1 = vec4f(0.0); var s2 = vec4f(0.0); var s3 = vec4f(0.0);
  var s4 = vec4f(0.0); var s5 = vec4f(0.0); var s6 = vec4f(0.0); var s7 = vec4f(0.0);
  var t0 = vec4f(0.0); var t1 = vec4f(0.0); var t2 = vec4f(0.0); var t3 = vec4f(0.0);
  var t4 = vec4f(0.0); var t5 = vec4f(0.0); var t6 = vec4f(0.0); var t7 = vec4f(0.0);
  var s8 = vec4f(0.0); var s9 = vec4f(0.0); var s10 = vec4f(0.0); var s11 = vec4f(0.0);
  var s12 = vec4f(0.0); var s13 = vec4f(0.0); var s14 = vec4f(0.0); var s15 = vec4f(0.0);
  var t8 = vec4f(0.0); var t9 = vec4f(0.0); var t10 = vec4f(0.0); var t11 = vec4f(0.0);
  var t12 = vec4f(0.0); var t13 = vec4f(0.0); var t14 = vec4f(0.0); var t15 = vec4f(0.0);
  var e0 = vec4f(0.0); var e1 = vec4f(0.0); var e2 = vec4f(0.0); var e3 = vec4f(0.0);
  let ldb = u.ldb;
  let k4 = u.K & ~3u;
  var bi = o.b + c0;
  for (var k = 0u; k < k4; k += 4u) {
    let b0 = ldb4(bi); let b1 = ldb4(bi + ldb); let b2 = ldb4(bi + 2u * ldb); let b3 = ldb4(bi + 3u * ldb);
    if (TN == 8u) { e0 = ldb4(bi + 4u); e1 = ldb4(bi + ldb + 4u); e2 = ldb4(bi + 2u * ldb + 4u); e3 = ldb4(bi + 3u * ldb + 4u); }
    bi += 4u * ldb;
    var xl = vec4f(0.0); var xh = vec4f(0.0);
    if (QUAD) { xl = lda4(aq + k); if (TM >= 8u) { xh = lda4(aqh + k); } }
    var x = arow0(a0 + k, xl); s0 = fma4(s0, x, b0, b1, b2, b3); if (TN == 8u) { t0 = fma4(t0, x, e0, e1, e2, e3); }
    x = arow1(a1 + k, xl); s1 = fma4(s1, x, b0, b1, b2, b3); if (TN == 8u) { t1 = fma4(t1, x, e0, e1, e2, e3); }
    x = arow2(a2 + k, xl); s2 = fma4(s2, x, b0, b1, b2, b3); if (TN == 8u) { t2 = fma4(t2, x, e0, e1, e2, e3); }
    x = arow3(a3 + k, xl); s3 = fma4(s3, x, b0, b1, b2, b3); if (TN == 8u) { t3 = fma4(t3, x, e0, e1, e2, e3); }
    if (TM >= 8u) {
      x = arow0(a4 + k, xh); s4 = fma4(s4, x, b0, b1, b2, b3); if (TN == 8u) { t4 = fma4(t4, x, e0, e1, e2, e3); }
      x = arow1(a5 + k, xh); s5 = fma4(s5, x, b0, b1, b2, b3); if (TN == 8u) { t5 = fma4(t5, x, e0, e1, e2, e3); }
      x = arow2(a6 + k, xh); s6 = fma4(s6, x, b0, b1, b2, b3); if (TN == 8u) { t6 = fma4(t6, x, e0, e1, e2, e3); }
      x = arow3(a7 + k, xh); s7 = fma4(s7, x, b0, b1, b2, b3); if (TN == 8u) { t7 = fma4(t7, x, e0, e1, e2, e3); }
    }
    if (TM == 16u) {
      xl = lda4(aq2 + k); xh = lda4(aq3 + k);
      x = quad0(xl); s8 = fma4(s8, x, b0, b1, b2, b3); if (TN == 8u) { t8 = fma4(t8, x, e0, e1, e2, e3); }
      x = quad1(xl); s9 = fma4(s9, x, b0, b1, b2, b3); if (TN == 8u) { t9 = fma4(t9, x, e0, e1, e2, e3); }
      x = quad2(xl); s10 = fma4(s10, x, b0, b1, b2, b3); if (TN == 8u) { t10 = fma4(t10, x, e0, e1, e2, e3); }
      x = quad3(xl); s11 = fma4(s11, x, b0, b1, b2, b3); if (TN == 8u) { t11 = fma4(t11, x, e0, e1, e2, e3); }
      x = quad0(xh); s12 = fma4(s12, x, b0, b1, b2, b3); if (TN == 8u) { t12 = fma4(t12, x, e0, e1, e2, e3); }
      x = quad1(xh); s13 = fma4(s13, x, b0, b1, b2, b3); if (TN == 8u) { t13 = fma4(t13, x, e0, e1, e2, e3); }
      x = quad2(xh); s14 = fma4(s14, x, b0, b1, b2, b3); if (TN == 8u) { t14 = fma4(t14, x, e0, e1, e2, e3); }
      x = quad3(xh); s15 = fma4(s15, x, b0, b1, b2, b3); if (TN == 8u) { t15 = fma4(t15, x, e0, e1, e2, e3); }
    }
  }
  for (var k = k4; k < u.K; k++) {
    let b = ldb4(o.b + k * ldb + c0);
    s0 += lda1(a0 + k) * b; s1 += lda1(a1 + k) * b; s2 += lda1(a2 + k) * b; s3 += lda1(a3 + k) * b;
    if (TM >= 8u) { s4 += lda1(a4 + k) * b; s5 += lda1(a5 + k) * b; s6 += lda1(a6 + k) * b; s7 += lda1(a7 + k) * b; }
    if (TM == 16u) {
      s8 += arow1At(o, r0 + 8u, k) * b; s9 += arow1At(o, r0 + 9u, k) * b; s10 += arow1At(o, r0 + 10u, k) * b; s11 += arow1At(o, r0 + 11u, k) * b;
      s12 += arow1At(o, r0 + 12u, k) * b; s13 += arow1At(o, r0 + 13u, k) * b; s14 += arow1At(o, r0 + 14u, k) * b; s15 += arow1At(o, r0 + 15u, k) * b;
    }
    if (TN == 8u) {
      let e = ldb4(o.b + k * ldb + c0 + 4u);
      t0 += lda1(a0 + k) * e; t1 += lda1(a1 + k) * e; t2 += lda1(a2 + k) * e; t3 += lda1(a3 + k) * e;
      if (TM >= 8u) { t4 += lda1(a4 + k) * e; t5 += lda1(a5 + k) * e; t6 += lda1(a6 + k) * e; t7 += lda1(a7 + k) * e; }
      if (TM == 16u) {
        t8 += arow1At(o, r0 + 8u, k) * e; t9 += arow1At(o, r0 + 9u, k) * e; t10 += arow1At(o, r0 + 10u, k) * e; t11 += arow1At(o, r0 + 11u, k) * e;
        t12 += arow1At(o, r0 + 12u, k) * e; t13 += arow1At(o, r0 + 13u, k) * e; t14 += arow1At(o, r0 + 14u, k) * e; t15 += arow1At(o, r0 + 15u, k) * e;
      }
    }
  }
  storeBlock(r0, c0, o.c, s0, s1, s2, s3, s4, s5, s6, s7);
  if (TN == 8u) { storeBlock(r0, c0 + 4u, o.c, t0, t1, t2, t3, t4, t5, t6, t7); }
  if (TM == 16u) {
    storeBlock(r0 + 8u, c0, o.c, s8, s9, s10, s11, s12, s13, s14, s15);
    if (TN == 8u) { storeBlock(r0 + 8u, c0 + 4u, o.c, t8, t9, t10, t11, t12, t13, t14, t15); }
  }
}

@compute @workgroup_size(WG_X, WG_Y)
fn nt(@builtin(global_invocation_id) g: vec3u, @builtin(local_invocation_index) li: u32) {
  let c0 = g.x * TN;
  let r0 = g.y * TM;
  if (r0 >= u.M || (!QUAD && c0 >= u.N)) { return; }
  let o = batchOffsets(g.z);
  let last = u.M - 1u;
  let lane = li & 3u;
  let aq = arowAt(o, r0 + lane); let aqh = arowAt(o, r0 + 4u + lane);
  // TM = 16 (QUAD only): rows r0 + 8 + lane and r0 + 12 + lane.
  let aq2 = arowAt(o, r0 + 8u + lane); let aq3 = arowAt(o, r0 + 12u + lane);
  let a0 = o.a + min(r0, last) * u.lda;      let a1 = o.a + min(r0 + 1u, last) * u.lda;
  let a2 = o.a + min(r0 + 2u, last) * u.lda; let a3 = o.a + min(r0 + 3u, last) * u.lda;
  let a4 = o.a + min(r0 + 4u, last) * u.lda; let a5 = o.a + min(r0 + 5u, last) * u.lda;
  let a6 = o.a + min(r0 + 6u, last) * u.lda; let a7 = o.a + min(r0 + 7u, last) * u.lda;
  let lastc = u.N - 1u;
  let q0 = o.b + min(c0, lastc) * u.ldb;     let q1 = o.b + min(c0 + 1u, lastc) * u.ldb;
  let q2 = o.b + min(c0 + 2u, lastc) * u.ldb; let q3 = o.b + min(c0 + 3u, lastc) * u.ldb;
  let q4 = o.b + min(c0 + 4u, lastc) * u.ldb; let q5 = o.b + min(c0 + 5u, lastc) * u.ldb;
  let q6 = o.b + min(c0 + 6u, lastc) * u.ldb; let q7 = o.b + min(c0 + 7u, lastc) * u.ldb;
  var s0 = vec4f(0.0); var s1 = vec4f(0.0); var s2 = vec4f(0.0); var s3 = vec4f(0.0);
  var s4 = vec4f(0.0); var s5 = vec4f(0.0); var s6 = vec4f(0.0); var s7 = vec4f(0.0);
  var t0 = vec4f(0.0); var t1 = vec4f(0.0); var t2 = vec4f(0.0); var t3 = vec4f(0.0);
  var t4 = vec4f(0.0); var t5 = vec4f(0.0); var t6 = vec4f(0.0); var t7 = vec4f(0.0);
  var s8 = vec4f(0.0); var s9 = vec4f(0.0); var s10 = vec4f(0.0); var s11 = vec4f(0.0);
  var s12 = vec4f(0.0); var s13 = vec4f(0.0); var s14 = vec4f(0.0); var s15 = vec4f(0.0);
  var t8 = vec4f(0.0); var t9 = vec4f(0.0); var t10 = vec4f(0.0); var t11 = vec4f(0.0);
  var t12 = vec4f(0.0); var t13 = vec4f(0.0); var t14 = vec4f(0.0); var t15 = vec4f(0.0);
  var e0 = vec4f(0.0); var e1 = vec4f(0.0); var e2 = vec4f(0.0); var e3 = vec4f(0.0);
  let k4 = u.K & ~3u;
  for (var k = 0u; k < k4; k += 4u) {
    let b0 = ldb4(q0 + k); let b1 = ldb4(q1 + k); let b2 = ldb4(q2 + k); let b3 = ldb4(q3 + k);
    if (TN == 8u) { e0 = ldb4(q4 + k); e1 = ldb4(q5 + k); e2 = ldb4(q6 + k); e3 = ldb4(q7 + k); }
    let bk = byK(b0, b1, b2, b3);
    let ek = byK(e0, e1, e2, e3);
    var xl = vec4f(0.0); var xh = vec4f(0.0);
    if (QUAD) { xl = lda4(aq + k); if (TM >= 8u) { xh = lda4(aqh + k); } }
    var x = arow0(a0 + k, xl); s0 = fmaK(s0, x, bk); if (TN == 8u) { t0 = fmaK(t0, x, ek); }
    x = arow1(a1 + k, xl); s1 = fmaK(s1, x, bk); if (TN == 8u) { t1 = fmaK(t1, x, ek); }
    x = arow2(a2 + k, xl); s2 = fmaK(s2, x, bk); if (TN == 8u) { t2 = fmaK(t2, x, ek); }
    x = arow3(a3 + k, xl); s3 = fmaK(s3, x, bk); if (TN == 8u) { t3 = fmaK(t3, x, ek); }
    if (TM >= 8u) {
      x = arow0(a4 + k, xh); s4 = fmaK(s4, x, bk); if (TN == 8u) { t4 = fmaK(t4, x, ek); }
      x = arow1(a5 + k, xh); s5 = fmaK(s5, x, bk); if (TN == 8u) { t5 = fmaK(t5, x, ek); }
      x = arow2(a6 + k, xh); s6 = fmaK(s6, x, bk); if (TN == 8u) { t6 = fmaK(t6, x, ek); }
      x = arow3(a7 + k, xh); s7 = fmaK(s7, x, bk); if (TN == 8u) { t7 = fmaK(t7, x, ek); }
    }
    if (TM == 16u) {
      xl = lda4(aq2 + k); xh = lda4(aq3 + k);
      x = quad0(xl); s8 = fmaK(s8, x, bk); if (TN == 8u) { t8 = fmaK(t8, x, ek); }
      x = quad1(xl); s9 = fmaK(s9, x, bk); if (TN == 8u) { t9 = fmaK(t9, x, ek); }
      x = quad2(xl); s10 = fmaK(s10, x, bk); if (TN == 8u) { t10 = fmaK(t10, x, ek); }
      x = quad3(xl); s11 = fmaK(s11, x, bk); if (TN == 8u) { t11 = fmaK(t11, x, ek); }
      x = quad0(xh); s12 = fmaK(s12, x, bk); if (TN == 8u) { t12 = fmaK(t12, x, ek); }
      x = quad1(xh); s13 = fmaK(s13, x, bk); if (TN == 8u) { t13 = fmaK(t13, x, ek); }
      x = quad2(xh); s14 = fmaK(s14, x, bk); if (TN == 8u) { t14 = fmaK(t14, x, ek); }
      x = quad3(xh); s15 = fmaK(s15, x, bk); if (TN == 8u) { t15 = fmaK(t15, x, ek); }
    }
  }
  for (var k = k4; k < u.K; k++) {
    let b = vec4f(ldb1(q0 + k), ldb1(q1 + k), ldb1(q2 + k), ldb1(q3 + k));
    s0 += lda1(a0 + k) * b; s1 += lda1(a1 + k) * b; s2 += lda1(a2 + k) * b; s3 += lda1(a3 + k) * b;
    if (TM >= 8u) { s4 += lda1(a4 + k) * b; s5 += lda1(a5 + k) * b; s6 += lda1(a6 + k) * b; s7 += lda1(a7 + k) * b; }
    if (TM == 16u) {
      s8 += arow1At(o, r0 + 8u, k) * b; s9 += arow1At(o, r0 + 9u, k) * b; s10 += arow1At(o, r0 + 10u, k) * b; s11 += arow1At(o, r0 + 11u, k) * b;
      s12 += arow1At(o, r0 + 12u, k) * b; s13 += arow1At(o, r0 + 13u, k) * b; s14 += arow1At(o, r0 + 14u, k) * b; s15 += arow1At(o, r0 + 15u, k) * b;
    }
    if (TN == 8u) {
      let e = vec4f(ldb1(q4 + k), ldb1(q5 + k), ldb1(q6 + k), ldb1(q7 + k));
      t0 += lda1(a0 + k) * e; t1 += lda1(a1 + k) * e; t2 += lda1(a2 + k) * e; t3 += lda1(a3 + k) * e;
      if (TM >= 8u) { t4 += lda1(a4 + k) * e; t5 += lda1(a5 + k) * e; t6 += lda1(a6 + k) * e; t7 += lda1(a7 + k) * e; }
      if (TM == 16u) {
        t8 += arow1At(o, r0 + 8u, k) * e; t9 += arow1At(o, r0 + 9u, k) * e; t10 += arow1At(o, r0 + 10u, k) * e; t11 += arow1At(o, r0 + 11u, k) * e;
        t12 += arow1At(o, r0 + 12u, k) * e; t13 += arow1At(o, r0 + 13u, k) * e; t14 += arow1At(o, r0 + 14u, k) * e; t15 += arow1At(o, r0 + 15u, k) * e;
      }
    }
  }
  storeBlock(r0, c0, o.c, s0, s1, s2, s3, s4, s5, s6, s7);
  if (TN == 8u) { storeBlock(r0, c0 + 4u, o.c, t0, t1, t2, t3, t4, t5, t6, t7); }
  if (TM == 16u) {
    storeBlock(r0 + 8u, c0, o.c, s8, s9, s10, s11, s12, s13, s14, s15);
    if (TN == 8u) { storeBlock(r0 + 8u, c0 + 4u, o.c, t8, t9, t10, t11, t12, t13, t14, t15); }
  }
}

// aux as dbias: dbias[c0..c0+3] += sum over the K rows of B (dy) of columns c0..c0+3.
fn biasGrad(c0: u32, offB: u32) {
  var s = vec4f(0.0);
  var bi = offB + c0;
  for (var k = 0u; k < u.K; k++) {
    s += ldb4(bi);
    bi += u.ldb;
  }
  for (var q = 0u; q < 4u; q++) {
    if (c0 + q < u.N) { aux[u.offBias + c0 + q] += s[q]; }
  }
}

@compute @workgroup_size(WG_X, WG_Y)
fn tn(@builtin(global_invocation_id) g: vec3u, @builtin(local_invocation_index) li: u32) {
  let c0 = g.x * TN;
  let r0 = g.y * TM;
  if (!QUAD && c0 >= u.N) { return; }
  let o = batchOffsets(g.z);
  if (BIAS_GRAD && g.y == (u.M + TM - 1u) / TM) {
    if (c0 < u.N) { biasGrad(c0, o.b); }
    if (TN == 8u && c0 + 4u < u.N) { biasGrad(c0 + 4u, o.b); }
    return;
  }
  if (r0 >= u.M) { return; }
  let lane = li & 3u;
  var s0 = vec4f(0.0); var s1 = vec4f(0.0); var s2 = vec4f(0.0); var s3 = vec4f(0.0);
  var s4 = vec4f(0.0); var s5 = vec4f(0.0); var s6 = vec4f(0.0); var s7 = vec4f(0.0);
  var t0 = vec4f(0.0); var t1 = vec4f(0.0); var t2 = vec4f(0.0); var t3 = vec4f(0.0);
  var t4 = vec4f(0.0); var t5 = vec4f(0.0); var t6 = vec4f(0.0); var t7 = vec4f(0.0);
  var s8 = vec4f(0.0); var s9 = vec4f(0.0); var s10 = vec4f(0.0); var s11 = vec4f(0.0);
  var s12 = vec4f(0.0); var s13 = vec4f(0.0); var s14 = vec4f(0.0); var s15 = vec4f(0.0);
  var t8 = vec4f(0.0); var t9 = vec4f(0.0); var t10 = vec4f(0.0); var t11 = vec4f(0.0);
  var t12 = vec4f(0.0); var t13 = vec4f(0.0); var t14 = vec4f(0.0); var t15 = vec4f(0.0);
  // Rows r0..r0+TM-1 of C are TM adjacent columns of A: one, two or four vec4 loads per k. Past
  // the last row they read neighbouring floats that storeRow then discards.
  var ai = o.a + r0;
  var bi = o.b + c0;
  for (var k = 0u; k < u.K; k++) {
    var lo = vec4f(0.0); var hi = vec4f(0.0); var lo2 = vec4f(0.0); var hi2 = vec4f(0.0);
    if (QUAD && TM == 16u) {
      // Lane j reads rows r0 + j, + 4 + j, + 8 + j and + 12 + j; four broadcasts assemble all four vec4s.
      let p = vec4f(lda1(ai + lane), lda1(ai + 4u + lane), lda1(ai + 8u + lane), lda1(ai + 12u + lane));
      let p0 = quad0(p); let p1 = quad1(p); let p2 = quad2(p); let p3 = quad3(p);
      lo = vec4f(p0.x, p1.x, p2.x, p3.x); hi = vec4f(p0.y, p1.y, p2.y, p3.y);
      lo2 = vec4f(p0.z, p1.z, p2.z, p3.z); hi2 = vec4f(p0.w, p1.w, p2.w, p3.w);
    } else if (QUAD) {
      // Lane j reads rows r0 + j and r0 + 4 + j; four pair broadcasts assemble both vec4s.
      var p = vec2f(lda1(ai + lane), 0.0);
      if (TM >= 8u) { p.y = lda1(ai + 4u + lane); }
      let p0 = pair0(p); let p1 = pair1(p); let p2 = pair2(p); let p3 = pair3(p);
      lo = vec4f(p0.x, p1.x, p2.x, p3.x); hi = vec4f(p0.y, p1.y, p2.y, p3.y);
    } else {
      lo = lda4(ai);
      if (TM >= 8u) { hi = lda4(ai + 4u); }
    }
    let b = ldb4(bi);
    s0 += lo.x * b; s1 += lo.y * b; s2 += lo.z * b; s3 += lo.w * b;
    if (TM >= 8u) {
      s4 += hi.x * b; s5 += hi.y * b; s6 += hi.z * b; s7 += hi.w * b;
    }
    if (TM == 16u) {
      s8 += lo2.x * b; s9 += lo2.y * b; s10 += lo2.z * b; s11 += lo2.w * b;
      s12 += hi2.x * b; s13 += hi2.y * b; s14 += hi2.z * b; s15 += hi2.w * b;
    }
    if (TN == 8u) {
      let e = ldb4(bi + 4u);
      t0 += lo.x * e; t1 += lo.y * e; t2 += lo.z * e; t3 += lo.w * e;
      if (TM >= 8u) { t4 += hi.x * e; t5 += hi.y * e; t6 += hi.z * e; t7 += hi.w * e; }
      if (TM == 16u) {
        t8 += lo2.x * e; t9 += lo2.y * e; t10 += lo2.z * e; t11 += lo2.w * e;
        t12 += hi2.x * e; t13 += hi2.y * e; t14 += hi2.z * e; t15 += hi2.w * e;
      }
    }
    ai += u.lda;
    bi += u.ldb;
  }
  storeBlock(r0, c0, o.c, s0, s1, s2, s3, s4, s5, s6, s7);
  if (TN == 8u) { storeBlock(r0, c0 + 4u, o.c, t0, t1, t2, t3, t4, t5, t6, t7); }
  if (TM == 16u) {
    storeBlock(r0 + 8u, c0, o.c, s8, s9, s10, s11, s12, s13, s14, s15);
    if (TN == 8u) { storeBlock(r0 + 8u, c0 + 4u, o.c, t8, t9, t10, t11, t12, t13, t14, t15); }
  }
}

// ---- Workgroup-memory tiles: nnTile, ntTile, tnTile (hardware GPUs) ----
// Each workgroup owns a BM x BN block of C (BM = 8 * WG_Y rows, BN = 8 * WG_X columns, at most
// 128 x 128) and walks K in stages of TK = 8 (or 16): the whole workgroup copies the A tile (BM x TK) and
// the B tile (TK x BN) into workgroup memory, k-major, so that every invocation then reads its
// operands as vec4s of 4 adjacent rows (A) or columns (B). Each invocation accumulates an 8 x 8
// block: rows ty*4 + 0..3 and BM/2 + ty*4 + 0..3, columns tx*4 + 0..3 and BN/2 + tx*4 + 0..3,
// so that neighbouring invocations read neighbouring vec4s. A stage's values are each read by
// WG_X (A) or WG_Y (B) invocations from workgroup memory instead of from global memory: this is
// what a discrete GPU needs (bench/results/kernels-matmul-h200.json); on SwiftShader barriers
// cost more than they save, and the autotuner tries these entry points on hardware adapters only.
// The same uniform, bindings, batching and epilogues as the register kernels; with BIAS_GRAD,
// tnTile's extra row of workgroups sums B's columns into dbias, split over the workgroup's rows.

/** Depth of a stage, 8 or 16 (a multiple of 4: A and B tiles load as vec4s along k). */
override TK: u32 = 8u;
/**
 * Prefetch (hardware GPUs; `prefetch` in a tuning): each invocation reads its share of the next
 * stage from global memory into registers before it multiplies the current stage, so that the
 * reads' latency hides behind the multiply-adds, and writes them to the other half of tA and tB
 * afterwards: two stages in turn, one barrier a stage instead of two. Needs 2 TK a multiple of
 * WG_X and of WG_Y with at most 4 vec4s of each tile per invocation, and two stages in each tile
 * array (TK * max(WG_X, WG_Y) <= 128); src/gpu/matmul.ts's shapeProblem checks both.
 */
override PREFETCH: bool = false;
const TILE4: u32 = 512u; // 16 * 128 / 4: the largest tile, in vec4s (8 KiB)
const HALF4: u32 = 256u; // where the second stage starts with PREFETCH
var<workgroup> tA: array<vec4f, TILE4>; // tA[at + k * BM/4 + r/4][r % 4] = A(row0 + r, k0 + k)
var<workgroup> tB: array<vec4f, TILE4>; // tB[at + k * BN/4 + c/4][c % 4] = B(k0 + k, col0 + c)

// Up to 4 consecutive floats of A from index i, of which the first n are real (n <= 4); zeros after.
fn lda4n(i: u32, n: u32) -> vec4f {
  if (n >= 4u) { return lda4(i); }
  var v = vec4f(0.0);
  for (var q = 0u; q < n; q++) { v[q] = lda1(i + q); }
  return v;
}
fn ldb4n(i: u32, n: u32) -> vec4f {
  if (n >= 4u) { return ldb4(i); }
  var v = vec4f(0.0);
  for (var q = 0u; q < n; q++) { v[q] = ldb1(i + q); }
  return v;
}
fn left(x: u32, end: u32) -> u32 { return select(0u, min(end - x, 4u), x < end); }

// A stage's tiles hold 2 TK WG_Y (A) and 2 TK WG_X (B) vec4s; vec4 e of each is read by
// fetchTile from global memory and written by putA or putB into the stage at vec4 `at`.
// `mode` (0: nn, 1: nt, 2: tn) is a constant at every call, so the choices fold away.
//   A, nn/nt: row r = e / (TK/4) of A at k0 + 4 (e % (TK/4)), stored k-major a float at a time;
//   A, tn:    A(k, row0 + 4 (e % 2 WG_Y) ..) with k = e / (2 WG_Y): a vec4 along rows, as stored;
//   B, nn/tn: B(k, col0 + 4 (e % 2 WG_X) ..) with k = e / (2 WG_X): a vec4 along columns;
//   B, nt:    column c = e / (TK/4) of B^T at k0 + 4 (e % (TK/4)), stored k-major.
// fetchTile(isB, across, ..., first, ...): `across` reads a vec4 across the tile's rows (A) or
// columns (B) from `first`, else a vec4 along k of row or column first + e / (TK/4).
fn fetchTile(isB: bool, across: bool, o: Offs, first: u32, k0: u32, kEnd: u32, e: u32) -> vec4f {
  let w4 = 2u * select(WG_Y, WG_X, isB);
  let ld = select(u.lda, u.ldb, isB);
  let end = select(u.M, u.N, isB);
  var i = 0u;
  var n = 0u;
  if (across) {
    let k = k0 + e / w4;
    let x = first + (e % w4) * 4u;
    if (k >= kEnd) { return vec4f(0.0); }
    i = k * ld + x;
    n = left(x, end);
  } else {
    let x = first + e / (TK / 4u);
    let k = k0 + (e % (TK / 4u)) * 4u;
    if (x >= end) { return vec4f(0.0); }
    i = x * ld + k;
    n = left(k, kEnd);
  }
  if (isB) { return ldb4n(o.b + i, n); }
  return lda4n(o.a + i, n);
}
fn putA(mode: u32, e: u32, v: vec4f, at: u32) {
  if (mode == 2u) { tA[at + e] = v; return; }
  let bm4 = 2u * WG_Y;
  let r = e / (TK / 4u);
  let base = at + (e % (TK / 4u)) * 4u * bm4 + (r >> 2u);
  let c = r & 3u;
  tA[base][c] = v.x; tA[base + bm4][c] = v.y;
  tA[base + 2u * bm4][c] = v.z; tA[base + 3u * bm4][c] = v.w;
}
fn putB(mode: u32, e: u32, v: vec4f, at: u32) {
  if (mode != 1u) { tB[at + e] = v; return; }
  let bn4 = 2u * WG_X;
  let c = e / (TK / 4u);
  let base = at + (e % (TK / 4u)) * 4u * bn4 + (c >> 2u);
  let q = c & 3u;
  tB[base][q] = v.x; tB[base + bn4][q] = v.y;
  tB[base + 2u * bn4][q] = v.z; tB[base + 3u * bn4][q] = v.w;
}

// The 8 x 8 block of an invocation: rows ty*4 + 0..3 (r0..r3) and BM/2 + ty*4 + 0..3 (r4..r7),
// columns tx*4 + 0..3 (l) and BN/2 + tx*4 + 0..3 (h). Named fields, not an array: a GPU
// compiler keeps each in registers only if it never sees a runtime index.
struct Acc {
  r0l: vec4f, r0h: vec4f, r1l: vec4f, r1h: vec4f, r2l: vec4f, r2h: vec4f, r3l: vec4f, r3h: vec4f,
  r4l: vec4f, r4h: vec4f, r5l: vec4f, r5h: vec4f, r6l: vec4f, r6h: vec4f, r7l: vec4f, r7h: vec4f,
}

// One stage in workgroup memory (from vec4 `at` of tA and tB) into the invocation's block.
fn stageProduct(tx: u32, ty: u32, at: u32, acc: ptr<function, Acc>) {
  let bm4 = 2u * WG_Y;
  let bn4 = 2u * WG_X;
  for (var k = 0u; k < TK; k++) {
    let alo = tA[at + k * bm4 + ty]; let ahi = tA[at + k * bm4 + WG_Y + ty];
    let blo = tB[at + k * bn4 + tx]; let bhi = tB[at + k * bn4 + WG_X + tx];
    (*acc).r0l += alo.x * blo; (*acc).r0h += alo.x * bhi;
    (*acc).r1l += alo.y * blo; (*acc).r1h += alo.y * bhi;
    (*acc).r2l += alo.z * blo; (*acc).r2h += alo.z * bhi;
    (*acc).r3l += alo.w * blo; (*acc).r3h += alo.w * bhi;
    (*acc).r4l += ahi.x * blo; (*acc).r4h += ahi.x * bhi;
    (*acc).r5l += ahi.y * blo; (*acc).r5h += ahi.y * bhi;
    (*acc).r6l += ahi.z * blo; (*acc).r6h += ahi.z * bhi;
    (*acc).r7l += ahi.w * blo; (*acc).r7h += ahi.w * bhi;
  }
}

fn storeTile(row0: u32, col0: u32, tx: u32, ty: u32, offC: u32, acc: ptr<function, Acc>) {
  let lo = row0 + ty * 4u;
  let hi = row0 + 4u * WG_Y + ty * 4u;
  let cl = col0 + tx * 4u;
  let ch = col0 + 4u * WG_X + tx * 4u;
  storeRow(lo, cl, (*acc).r0l, offC); storeRow(lo, ch, (*acc).r0h, offC);
  storeRow(lo + 1u, cl, (*acc).r1l, offC); storeRow(lo + 1u, ch, (*acc).r1h, offC);
  storeRow(lo + 2u, cl, (*acc).r2l, offC); storeRow(lo + 2u, ch, (*acc).r2h, offC);
  storeRow(lo + 3u, cl, (*acc).r3l, offC); storeRow(lo + 3u, ch, (*acc).r3h, offC);
  storeRow(hi, cl, (*acc).r4l, offC); storeRow(hi, ch, (*acc).r4h, offC);
  storeRow(hi + 1u, cl, (*acc).r5l, offC); storeRow(hi + 1u, ch, (*acc).r5h, offC);
  storeRow(hi + 2u, cl, (*acc).r6l, offC); storeRow(hi + 2u, ch, (*acc).r6h, offC);
  storeRow(hi + 3u, cl, (*acc).r7l, offC); storeRow(hi + 3u, ch, (*acc).r7h, offC);
}

// dbias[col0 .. col0 + BN) += column sums of B (K x N) over all K rows: each invocation sums a
// vec4 of columns over every (WG_Y / 2)-th row, then the partial sums meet in workgroup memory.
fn biasGradTile(o: Offs, col0: u32, t: u32) {
  let bn4 = 2u * WG_X;
  let slices = (WG_X * WG_Y) / bn4;
  let c = (t % bn4) * 4u;
  let slice = t / bn4;
  var s = vec4f(0.0);
  let n = left(col0 + c, u.N);
  for (var k = slice; k < u.K; k += slices) { s += ldb4n(o.b + k * u.ldb + col0 + c, n); }
  tB[t] = s;
  workgroupBarrier();
  if (slice == 0u) {
    for (var j = 1u; j < slices; j++) { s += tB[j * bn4 + t]; }
    for (var q = 0u; q < n; q++) { aux[u.offBias + col0 + c + q] += s[q]; }
  }
}

// One workgroup's tile of C over k in [kBegin, kEnd), A and B staged as `mode` lays them out.
fn tileProduct(mode: u32, o: Offs, row0: u32, col0: u32, kBegin: u32, kEnd: u32, l: vec3u) {
  let t = l.y * WG_X + l.x;
  let n = WG_X * WG_Y;
  var acc: Acc;
  if (!PREFETCH) {
    for (var k0 = kBegin; k0 < kEnd; k0 += TK) {
      for (var e = t; e < 2u * TK * WG_Y; e += n) { putA(mode, e, fetchTile(false, mode == 2u, o, row0, k0, kEnd, e), 0u); }
      for (var e = t; e < 2u * TK * WG_X; e += n) { putB(mode, e, fetchTile(true, mode != 1u, o, col0, k0, kEnd, e), 0u); }
      workgroupBarrier();
      stageProduct(l.x, l.y, 0u, &acc);
      workgroupBarrier();
    }
  } else {
    // This invocation's vec4s of a stage: A's t + j n for j < aPer, B's t + j n for j < bPer
    // (override constants, so the loops over j unroll and pa, pb stay in registers).
    let aPer = 2u * TK / WG_X;
    let bPer = 2u * TK / WG_Y;
    var pa: array<vec4f, 4>;
    var pb: array<vec4f, 4>;
    for (var j = 0u; j < 4u; j++) {
      if (j < aPer) { pa[j] = fetchTile(false, mode == 2u, o, row0, kBegin, kEnd, t + j * n); }
      if (j < bPer) { pb[j] = fetchTile(true, mode != 1u, o, col0, kBegin, kEnd, t + j * n); }
    }
    var at = 0u;
    for (var j = 0u; j < 4u; j++) {
      if (j < aPer) { putA(mode, t + j * n, pa[j], at); }
      if (j < bPer) { putB(mode, t + j * n, pb[j], at); }
    }
    workgroupBarrier();
    for (var k0 = kBegin; k0 < kEnd; k0 += TK) {
      let next = k0 + TK < kEnd;
      if (next) {
        for (var j = 0u; j < 4u; j++) {
          if (j < aPer) { pa[j] = fetchTile(false, mode == 2u, o, row0, k0 + TK, kEnd, t + j * n); }
          if (j < bPer) { pb[j] = fetchTile(true, mode != 1u, o, col0, k0 + TK, kEnd, t + j * n); }
        }
      }
      stageProduct(l.x, l.y, at, &acc);
      // The other half: every invocation finished reading it before the last barrier.
      at = HALF4 - at;
      if (next) {
        for (var j = 0u; j < 4u; j++) {
          if (j < aPer) { putA(mode, t + j * n, pa[j], at); }
          if (j < bPer) { putB(mode, t + j * n, pb[j], at); }
        }
      }
      workgroupBarrier();
    }
  }
  storeTile(row0, col0, l.x, l.y, o.c, &acc);
}

/**
 * Tile order (`swizzle` in a tuning; 0 off): a GPU starts workgroups in the order of their
 * linear index, x fastest, so in the plain order the workgroups resident at once span a row or
 * two of tiles, each reading its own columns of B from the whole of it. With SWIZZLE = G the
 * linear index walks down G rows of tiles before it moves one column right: the resident
 * workgroups cover a block of about G rows by (resident / G) columns, whose A rows and B
 * columns they share in the GPU's second-level cache. That matters where the operands do not
 * fit in it (4096^3: 64 MiB each); the host times it like any other shape.
 */
override SWIZZLE: u32 = 0u;

// The tile (x, y) that workgroup wg of an (n.x, rows) grid computes (a permutation of the grid).
fn tileAt(wg: vec3u, nx: u32, rows: u32) -> vec2u {
  if (SWIZZLE <= 1u) { return wg.xy; }
  let id = wg.y * nx + wg.x;
  let per = SWIZZLE * nx;
  let first = (id / per) * SWIZZLE;
  let height = min(rows - first, SWIZZLE);
  let within = id % per;
  return vec2u(within / height, first + within % height);
}

@compute @workgroup_size(WG_X, WG_Y)
fn nnTile(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_id) l: vec3u, @builtin(num_workgroups) n: vec3u) {
  let t = tileAt(wg, n.x, n.y);
  tileProduct(0u, batchOffsets(wg.z), t.y * 8u * WG_Y, t.x * 8u * WG_X, 0u, u.K, l);
}

@compute @workgroup_size(WG_X, WG_Y)
fn ntTile(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_id) l: vec3u, @builtin(num_workgroups) n: vec3u) {
  let t = tileAt(wg, n.x, n.y);
  tileProduct(1u, batchOffsets(wg.z), t.y * 8u * WG_Y, t.x * 8u * WG_X, 0u, u.K, l);
}

/**
 * tnTile only: the K rows split over SPLIT_K workgroups per tile (grid z), each writing its
 * partial product to its own (M, N) slab of C (the host binds scratch as C with cOuter = M*N,
 * unbatched); splitSum then adds the slabs into the real C. A weight gradient has few outputs
 * and a long K (every token of the batch): split, its tiles fill a large GPU.
 */
override SPLIT_K: u32 = 1u;

@compute @workgroup_size(WG_X, WG_Y)
fn tnTile(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_id) l: vec3u, @builtin(num_workgroups) n: vec3u) {
  let o = batchOffsets(wg.z);
  let t = l.y * WG_X + l.x;
  // The bias gradient's row of workgroups comes after the tile rows, outside the tile order.
  let rows = n.y - select(0u, 1u, BIAS_GRAD);
  if (BIAS_GRAD && wg.y == rows) {
    if (wg.z == 0u) { biasGradTile(batchOffsets(0u), wg.x * 8u * WG_X, t); }
    return;
  }
  let at = tileAt(wg, n.x, rows);
  let col0 = at.x * 8u * WG_X;
  var kBegin = 0u;
  var kEnd = u.K;
  if (SPLIT_K > 1u) {
    let per = ((u.K + SPLIT_K - 1u) / SPLIT_K + TK - 1u) / TK * TK;
    kBegin = min(u.K, wg.z * per);
    kEnd = min(u.K, kBegin + per);
  }
  tileProduct(2u, o, at.y * 8u * WG_Y, col0, kBegin, kEnd, l);
}

// C (M, N at offC, ldc) (+)= the sum of u.K slabs of M*N floats at A1[offA ..], the split
// partial products (tnTile's K ranges, or those of nn and nt run as a batch over K), added in
// slab order (the same sum every run), through the product's own scale, bias and epilogue.
@compute @workgroup_size(256)
fn splitSum(@builtin(global_invocation_id) g: vec3u, @builtin(num_workgroups) n: vec3u) {
  let total = u.M * u.N;
  for (var e = g.x; e < total; e += n.x * 256u) {
    var v = 0.0;
    for (var s = 0u; s < u.K; s++) { v += A1[u.offA + s * total + e]; }
    storeOne(e / u.N, e % u.N, v, u.offC);
  }
}
