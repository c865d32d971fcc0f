// Small numeric helpers shared by the reference-model tests.
import { Rng } from '../../src/model/rng.ts';

/** Normal(0, std) values, deterministic from `seed`. */
export function randn(n: number, seed: number, std = 1): Float64Array {
  const rng = new Rng(seed, 99);
  const out = new Float64Array(n);
  for (let i = 0; i < n; i++) out[i] = rng.normal() * std;
  return out;
}

/**
 * Largest |a-b| / max(|a|, |b|, floor) over the arrays, with the index where it happens. The
 * floor keeps coordinates whose true value is ~0 from dominating with meaningless ratios.
 */
export function maxRelErr(a: ArrayLike<number>, b: ArrayLike<number>, floor: number): { err: number; at: number } {
  if (a.length !== b.length) throw new Error(`maxRelErr: lengths differ (${a.length} vs ${b.length})`);
  let err = 0, at = -1;
  for (let i = 0; i < a.length; i++) {
    const e = Math.abs(a[i]! - b[i]!) / Math.max(Math.abs(a[i]!), Math.abs(b[i]!), floor);
    if (!(e <= err)) { err = e; at = i; }
  }
  return { err, at };
}

/** Largest |a-b|. */
export function maxAbsErr(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error(`maxAbsErr: lengths differ (${a.length} vs ${b.length})`);
  let e = 0;
  for (let i = 0; i < a.length; i++) { const d = Math.abs(a[i]! - b[i]!); if (!(d <= e)) e = d; }
  return e;
}

/**
 * Fourth-order central difference of f at x[i] (x is perturbed in place and restored):
 * (-f(x+2h) + 8f(x+h) - 8f(x-h) + f(x-2h)) / 12h. Truncation error is O(h^4), so h can be
 * large enough (1e-4) that float64 rounding in f stays ~1e-10 in the result.
 */
export function centralDiff(x: Float64Array, i: number, f: () => number, h = 1e-4): number {
  const old = x[i]!;
  x[i] = old + 2 * h; const f2 = f();
  x[i] = old + h; const f1 = f();
  x[i] = old - h; const m1 = f();
  x[i] = old - 2 * h; const m2 = f();
  x[i] = old;
  return (-f2 + 8 * f1 - 8 * m1 + m2) / (12 * h);
}

/**
 * Finite-difference gradient of L = sum(run() * weights) with respect to every element of `x`.
 * `run` recomputes the op's output from its inputs.
 */
export function numericGrad(x: Float64Array, run: () => Float64Array, weights: Float64Array): Float64Array {
  const L = () => { const o = run(); let s = 0; for (let i = 0; i < o.length; i++) s += o[i]! * weights[i]!; return s; };
  const g = new Float64Array(x.length);
  for (let i = 0; i < x.length; i++) g[i] = centralDiff(x, i, L);
  return g;
}
