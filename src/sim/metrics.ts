// Metrics over a set of replicas' weights.

/** out = elementwise mean of `arrays` (f64 sums, list order). */
export function averageWeights(arrays: readonly Float32Array[]): Float32Array {
  if (arrays.length === 0) throw new Error('averageWeights: no replicas to average');
  const n = arrays[0].length, out = new Float32Array(n), inv = 1 / arrays.length;
  for (let k = 0; k < n; k++) {
    let s = 0;
    for (const a of arrays) s += a[k];
    out[k] = s * inv;
  }
  return out;
}

/**
 * Weight spread: RMS distance of the replicas from their mean, per parameter:
 * sqrt( sum_i |theta_i - mean|^2 / (n * paramCount) ). Padding floats are zero in every replica
 * and add nothing, so `paramCount` (real parameters) is the honest denominator.
 */
export function weightSpread(arrays: readonly Float32Array[], paramCount: number): number {
  if (arrays.length < 2) return 0;
  const n = arrays[0].length;
  let s = 0;
  for (let k = 0; k < n; k++) {
    let mean = 0;
    for (const a of arrays) mean += a[k];
    mean /= arrays.length;
    for (const a of arrays) { const d = a[k] - mean; s += d * d; }
  }
  return Math.sqrt(s / (arrays.length * paramCount));
}

export function sameWeights(a: Float32Array, b: Float32Array): boolean {
  if (a === b) return true;
  if (a.length !== b.length) return false;
  for (let k = 0; k < a.length; k++) if (a[k] !== b[k]) return false;
  return true;
}

/** Fisher-Yates with the given generator: a 1-element list draws nothing. */
export function shuffle<T>(xs: readonly T[], rng: { int(n: number): number }): T[] {
  const out = xs.slice();
  for (let i = out.length - 1; i > 0; i--) {
    const j = rng.int(i + 1);
    [out[i], out[j]] = [out[j], out[i]];
  }
  return out;
}
