// The one matrix kernel of the CPU reference (every matmul of the model, forward and backward).
// out(M,N) = A(M,K) @ Bm(K,N) [+ bias(N)], or out += A @ Bm, where A and Bm are read through
// strides so the same code serves x @ W, dout @ W^T and x^T @ dout without transposing anything:
// A(i,k) = a[i*sai + k*sak], Bm(k,j) = b[k*sbk + j*sbj].
// It computes 4x4 output tiles with 16 accumulators held in locals (registers, once the JIT has
// run); the inner loop over k does 8 loads per 16 multiply-adds. Ragged edges fall back to one
// output at a time. (2x8 tiles and stride-free copies measured no faster in V8 on x86-64.)

export type FloatArray = Float32Array | Float64Array;

export function gemm(
  out: FloatArray, // (M, N) row-major
  a: FloatArray, // A(M, K) through strides sai, sak
  b: FloatArray, // Bm(K, N) through strides sbk, sbj
  bias: FloatArray | null, // (N) added when not accumulating, or null
  M: number, K: number, N: number,
  sai: number, sak: number, sbk: number, sbj: number,
  accumulate: boolean,
): void {
  const M4 = M - (M % 4);
  const N4 = N - (N % 4);
  const sbj2 = 2 * sbj, sbj3 = 3 * sbj;
  for (let i = 0; i < M4; i += 4) {
    const ai0 = i * sai, ai1 = ai0 + sai, ai2 = ai1 + sai, ai3 = ai2 + sai;
    for (let j = 0; j < N4; j += 4) {
      let c00 = 0, c01 = 0, c02 = 0, c03 = 0;
      let c10 = 0, c11 = 0, c12 = 0, c13 = 0;
      let c20 = 0, c21 = 0, c22 = 0, c23 = 0;
      let c30 = 0, c31 = 0, c32 = 0, c33 = 0;
      let ak = 0;
      let bk = j * sbj;
      for (let k = 0; k < K; k++) {
        const x0 = a[ai0 + ak], x1 = a[ai1 + ak], x2 = a[ai2 + ak], x3 = a[ai3 + ak];
        const y0 = b[bk], y1 = b[bk + sbj], y2 = b[bk + sbj2], y3 = b[bk + sbj3];
        c00 += x0 * y0; c01 += x0 * y1; c02 += x0 * y2; c03 += x0 * y3;
        c10 += x1 * y0; c11 += x1 * y1; c12 += x1 * y2; c13 += x1 * y3;
        c20 += x2 * y0; c21 += x2 * y1; c22 += x2 * y2; c23 += x2 * y3;
        c30 += x3 * y0; c31 += x3 * y1; c32 += x3 * y2; c33 += x3 * y3;
        ak += sak;
        bk += sbk;
      }
      const o0 = i * N + j, o1 = o0 + N, o2 = o1 + N, o3 = o2 + N;
      if (accumulate) {
        out[o0] += c00; out[o0 + 1] += c01; out[o0 + 2] += c02; out[o0 + 3] += c03;
        out[o1] += c10; out[o1 + 1] += c11; out[o1 + 2] += c12; out[o1 + 3] += c13;
        out[o2] += c20; out[o2 + 1] += c21; out[o2 + 2] += c22; out[o2 + 3] += c23;
        out[o3] += c30; out[o3 + 1] += c31; out[o3 + 2] += c32; out[o3 + 3] += c33;
      } else {
        let b0 = 0, b1 = 0, b2 = 0, b3 = 0;
        if (bias !== null) { b0 = bias[j]; b1 = bias[j + 1]; b2 = bias[j + 2]; b3 = bias[j + 3]; }
        out[o0] = c00 + b0; out[o0 + 1] = c01 + b1; out[o0 + 2] = c02 + b2; out[o0 + 3] = c03 + b3;
        out[o1] = c10 + b0; out[o1 + 1] = c11 + b1; out[o1 + 2] = c12 + b2; out[o1 + 3] = c13 + b3;
        out[o2] = c20 + b0; out[o2 + 1] = c21 + b1; out[o2 + 2] = c22 + b2; out[o2 + 3] = c23 + b3;
        out[o3] = c30 + b0; out[o3 + 1] = c31 + b1; out[o3 + 2] = c32 + b2; out[o3 + 3] = c33 + b3;
      }
    }
    for (let ii = i; ii < i + 4; ii++) gemmCells(out, a, b, bias, ii, N4, N, K, N, sai, sak, sbk, sbj, accumulate);
  }
  for (let i = M4; i < M; i++) gemmCells(out, a, b, bias, i, 0, N, K, N, sai, sak, sbk, sbj, accumulate);
}

/** One output row's columns [j0, j1) of gemm, one at a time (the ragged edges). */
function gemmCells(
  out: FloatArray, a: FloatArray, b: FloatArray, bias: FloatArray | null,
  i: number, j0: number, j1: number, K: number, N: number,
  sai: number, sak: number, sbk: number, sbj: number, accumulate: boolean,
): void {
  const ai = i * sai;
  for (let j = j0; j < j1; j++) {
    let s = 0;
    for (let k = 0, ak = ai, bk = j * sbj; k < K; k++, ak += sak, bk += sbk) s += a[ak] * b[bk];
    if (accumulate) out[i * N + j] += s;
    else out[i * N + j] = s + (bias !== null ? bias[j] : 0);
  }
}
