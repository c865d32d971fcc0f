// Matrix products with bias and epilogues, register-blocked: each invocation owns a TMx4 block
// of C (TM = 8 or 4 rows, 4 adjacent columns) held in TM vec4 registers, and reads A and B four
// contiguous floats at a time. The block's rows are written out by hand (s0..s7): a loop over
// an array indexed by row kept the block in memory on SwiftShader, 4x slower; TM = 4 drops
// rows 4..7 through `if (TM == 8u)`, which the compiler folds once the override is known.
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
// land on neighbouring floats (or WebGPU's bounds clamp) and are discarded by the store.

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
/** Rows per invocation: 8 or 4 (fewer registers, more invocations). */
override TM: u32 = 8u;
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

const GELU_S: f32 = 0.7978845608028654; // sqrt(2 / pi)

fn lda4(i: u32) -> vec4f {
  if (VEC4) { return A4[i >> 2u]; }
  return vec4f(A1[i], A1[i + 1u], A1[i + 2u], A1[i + 3u]);
}
fn ldb4(i: u32) -> vec4f {
  if (VEC4) { return B4[i >> 2u]; }
  return vec4f(B1[i], B1[i + 1u], B1[i + 2u], B1[i + 3u]);
}
fn lda1(i: u32) -> f32 {
  if (VEC4) { return A4[i >> 2u][i & 3u]; }
  return A1[i];
}
fn ldb1(i: u32) -> f32 {
  if (VEC4) { return B4[i >> 2u][i & 3u]; }
  return B1[i];
}

fn gelu(x: f32) -> f32 {
  return 0.5 * x * (1.0 + tanh(GELU_S * (x + 0.044715 * x * x * x)));
}

fn geluGrad(x: f32) -> f32 {
  let cube = 0.044715 * x * x * x;
  let t = tanh(GELU_S * (x + cube));
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

fn storeRow(row: u32, c0: u32, s: vec4f, offC: u32) {
  if (row >= u.M) { return; }
  for (var q = 0u; q < 4u; q++) {
    let col = c0 + q;
    if (col < u.N) {
      var v = u.alpha * s[q];
      if (HAS_BIAS) { v += bias[u.offBias + col]; }
      if (EPI == 1u) { v += R[u.offR + row * u.ldr + col]; }
      if (EPI == 2u) { v *= geluGrad(R[u.offR + row * u.ldr + col]); }
      if (EPI == 3u) { aux[u.offR + row * u.ldr + col] = v; v = gelu(v); }
      let ci = offC + row * u.ldc + col;
      if (ACCUM) { v += C[ci]; }
      C[ci] = v;
    }
  }
}

fn storeBlock(r0: u32, c0: u32, offC: u32, s0: vec4f, s1: vec4f, s2: vec4f, s3: vec4f,
              s4: vec4f, s5: vec4f, s6: vec4f, s7: vec4f) {
  storeRow(r0, c0, s0, offC); storeRow(r0 + 1u, c0, s1, offC);
  storeRow(r0 + 2u, c0, s2, offC); storeRow(r0 + 3u, c0, s3, offC);
  if (TM == 8u) {
    storeRow(r0 + 4u, c0, s4, offC); storeRow(r0 + 5u, c0, s5, offC);
    storeRow(r0 + 6u, c0, s6, offC); storeRow(r0 + 7u, c0, s7, offC);
  }
}

// a . (b0, b1, b2, b3) as rows: the four k-steps of one vec4 of A against four rows of B.
fn fma4(s: vec4f, a: vec4f, b0: vec4f, b1: vec4f, b2: vec4f, b3: vec4f) -> vec4f {
  return s + a.x * b0 + a.y * b1 + a.z * b2 + a.w * b3;
}

// a against four columns of B^T, each a vec4 along k.
fn dot4(s: vec4f, a: vec4f, b0: vec4f, b1: vec4f, b2: vec4f, b3: vec4f) -> vec4f {
  return s + vec4f(dot(a, b0), dot(a, b1), dot(a, b2), dot(a, b3));
}

@compute @workgroup_size(WG_X, WG_Y)
fn nn(@builtin(global_invocation_id) g: vec3u) {
  let c0 = g.x * 4u;
  let r0 = g.y * TM;
  if (c0 >= u.N || r0 >= u.M) { return; }
  let o = batchOffsets(g.z);
  let last = u.M - 1u;
  let a0 = o.a + min(r0, last) * u.lda;      let a1 = o.a + min(r0 + 1u, last) * u.lda;
  let a2 = o.a + min(r0 + 2u, last) * u.lda; let a3 = o.a + min(r0 + 3u, last) * u.lda;
  let a4 = o.a + min(r0 + 4u, last) * u.lda; let a5 = o.a + min(r0 + 5u, last) * u.lda;
  let a6 = o.a + min(r0 + 6u, last) * u.lda; let a7 = o.a + min(r0 + 7u, last) * u.lda;
  var s0 = vec4f(0.0); var s1 = vec4f(0.0); var s2 = vec4f(0.0); var s3 = vec4f(0.0);
  var s4 = vec4f(0.0); var s5 = vec4f(0.0); var s6 = vec4f(0.0); var s7 = vec4f(0.0);
  let ldb = u.ldb;
  let k4 = u.K & ~3u;
  var bi = o.b + c0;
  for (var k = 0u; k < k4; k += 4u) {
    let b0 = ldb4(bi); let b1 = ldb4(bi + ldb); let b2 = ldb4(bi + 2u * ldb); let b3 = ldb4(bi + 3u * ldb);
    bi += 4u * ldb;
    s0 = fma4(s0, lda4(a0 + k), b0, b1, b2, b3); s1 = fma4(s1, lda4(a1 + k), b0, b1, b2, b3);
    s2 = fma4(s2, lda4(a2 + k), b0, b1, b2, b3); s3 = fma4(s3, lda4(a3 + k), b0, b1, b2, b3);
    if (TM == 8u) {
      s4 = fma4(s4, lda4(a4 + k), b0, b1, b2, b3); s5 = fma4(s5, lda4(a5 + k), b0, b1, b2, b3);
      s6 = fma4(s6, lda4(a6 + k), b0, b1, b2, b3); s7 = fma4(s7, lda4(a7 + k), b0, b1, b2, b3);
    }
  }
  for (var k = k4; k < u.K; k++) {
    let b = ldb4(o.b + k * ldb + c0);
    s0 += lda1(a0 + k) * b; s1 += lda1(a1 + k) * b; s2 += lda1(a2 + k) * b; s3 += lda1(a3 + k) * b;
    if (TM == 8u) { s4 += lda1(a4 + k) * b; s5 += lda1(a5 + k) * b; s6 += lda1(a6 + k) * b; s7 += lda1(a7 + k) * b; }
  }
  storeBlock(r0, c0, o.c, s0, s1, s2, s3, s4, s5, s6, s7);
}

@compute @workgroup_size(WG_X, WG_Y)
fn nt(@builtin(global_invocation_id) g: vec3u) {
  let c0 = g.x * 4u;
  let r0 = g.y * TM;
  if (c0 >= u.N || r0 >= u.M) { return; }
  let o = batchOffsets(g.z);
  let last = u.M - 1u;
  let a0 = o.a + min(r0, last) * u.lda;      let a1 = o.a + min(r0 + 1u, last) * u.lda;
  let a2 = o.a + min(r0 + 2u, last) * u.lda; let a3 = o.a + min(r0 + 3u, last) * u.lda;
  let a4 = o.a + min(r0 + 4u, last) * u.lda; let a5 = o.a + min(r0 + 5u, last) * u.lda;
  let a6 = o.a + min(r0 + 6u, last) * u.lda; let a7 = o.a + min(r0 + 7u, last) * u.lda;
  let lastc = u.N - 1u;
  let q0 = o.b + c0 * u.ldb;                 let q1 = o.b + min(c0 + 1u, lastc) * u.ldb;
  let q2 = o.b + min(c0 + 2u, lastc) * u.ldb; let q3 = o.b + min(c0 + 3u, lastc) * u.ldb;
  var s0 = vec4f(0.0); var s1 = vec4f(0.0); var s2 = vec4f(0.0); var s3 = vec4f(0.0);
  var s4 = vec4f(0.0); var s5 = vec4f(0.0); var s6 = vec4f(0.0); var s7 = vec4f(0.0);
  let k4 = u.K & ~3u;
  for (var k = 0u; k < k4; k += 4u) {
    let b0 = ldb4(q0 + k); let b1 = ldb4(q1 + k); let b2 = ldb4(q2 + k); let b3 = ldb4(q3 + k);
    s0 = dot4(s0, lda4(a0 + k), b0, b1, b2, b3); s1 = dot4(s1, lda4(a1 + k), b0, b1, b2, b3);
    s2 = dot4(s2, lda4(a2 + k), b0, b1, b2, b3); s3 = dot4(s3, lda4(a3 + k), b0, b1, b2, b3);
    if (TM == 8u) {
      s4 = dot4(s4, lda4(a4 + k), b0, b1, b2, b3); s5 = dot4(s5, lda4(a5 + k), b0, b1, b2, b3);
      s6 = dot4(s6, lda4(a6 + k), b0, b1, b2, b3); s7 = dot4(s7, lda4(a7 + k), b0, b1, b2, b3);
    }
  }
  for (var k = k4; k < u.K; k++) {
    let b = vec4f(ldb1(q0 + k), ldb1(q1 + k), ldb1(q2 + k), ldb1(q3 + k));
    s0 += lda1(a0 + k) * b; s1 += lda1(a1 + k) * b; s2 += lda1(a2 + k) * b; s3 += lda1(a3 + k) * b;
    if (TM == 8u) { s4 += lda1(a4 + k) * b; s5 += lda1(a5 + k) * b; s6 += lda1(a6 + k) * b; s7 += lda1(a7 + k) * b; }
  }
  storeBlock(r0, c0, o.c, s0, s1, s2, s3, s4, s5, s6, s7);
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
fn tn(@builtin(global_invocation_id) g: vec3u) {
  let c0 = g.x * 4u;
  let r0 = g.y * TM;
  if (c0 >= u.N) { return; }
  let o = batchOffsets(g.z);
  if (BIAS_GRAD && g.y == (u.M + TM - 1u) / TM) {
    biasGrad(c0, o.b);
    return;
  }
  if (r0 >= u.M) { return; }
  var s0 = vec4f(0.0); var s1 = vec4f(0.0); var s2 = vec4f(0.0); var s3 = vec4f(0.0);
  var s4 = vec4f(0.0); var s5 = vec4f(0.0); var s6 = vec4f(0.0); var s7 = vec4f(0.0);
  // Rows r0..r0+TM-1 of C are TM adjacent columns of A: one or two vec4 loads per k. Past the
  // last row they read neighbouring floats that storeRow then discards.
  var ai = o.a + r0;
  var bi = o.b + c0;
  for (var k = 0u; k < u.K; k++) {
    let lo = lda4(ai);
    let b = ldb4(bi);
    s0 += lo.x * b; s1 += lo.y * b; s2 += lo.z * b; s3 += lo.w * b;
    if (TM == 8u) {
      let hi = lda4(ai + 4u);
      s4 += hi.x * b; s5 += hi.y * b; s6 += hi.z * b; s7 += hi.w * b;
    }
    ai += u.lda;
    bi += u.ldb;
  }
  storeBlock(r0, c0, o.c, s0, s1, s2, s3, s4, s5, s6, s7);
}
