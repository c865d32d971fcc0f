// Turning thousands of raw metric reports from hundreds of peers into what a chart can draw
// smoothly: per-peer smoothing, binning onto one shared x grid (uPlot needs aligned data), the
// median across peers and a min/max band of the raw values. Pure functions over plain arrays.

export interface XY {
  x: ArrayLike<number>;
  /** null = no value at this x (e.g. a report without a validation loss) */
  y: ArrayLike<number | null>;
}

/**
 * Exponential moving average with TensorBoard's debiasing (the first points are not dragged
 * towards 0). weight 0 = raw, 0.99 = very smooth. Non-finite values pass through as null and do
 * not poison the average.
 */
export function smoothEma(y: ArrayLike<number | null>, weight: number): (number | null)[] {
  if (!(weight >= 0 && weight < 1)) throw new Error(`smoothing weight must be in [0, 1), got ${weight}`);
  const out: (number | null)[] = new Array(y.length);
  let acc = 0;
  let wn = 1; // weight ** (values seen), kept incrementally: Math.pow per point showed in profiles
  for (let i = 0; i < y.length; i++) {
    const v = y[i];
    if (v === null || v === undefined || !Number.isFinite(v)) { out[i] = null; continue; }
    acc = acc * weight + (1 - weight) * v;
    wn *= weight;
    out[i] = weight === 0 ? v : acc / (1 - wn);
  }
  return out;
}

export interface Grid {
  /** bin centres (arithmetic, or geometric when log) */
  x: number[];
  /** bin edges, length x.length + 1 */
  edges: number[];
  log: boolean;
}

/** `bins` bins over [lo, hi]; log spacing needs lo > 0 (the caller drops x <= 0 for log-x). */
export function makeGrid(lo: number, hi: number, bins: number, log: boolean): Grid {
  if (!(bins >= 1) || !Number.isInteger(bins)) throw new Error(`bins must be a positive integer, got ${bins}`);
  if (!Number.isFinite(lo) || !Number.isFinite(hi)) throw new Error(`grid bounds must be finite, got [${lo}, ${hi}]`);
  if (log && !(lo > 0)) throw new Error(`a log-x grid needs a positive lower bound, got ${lo}`);
  if (hi <= lo) hi = lo + (log ? lo : 1);
  const edges: number[] = [];
  const x: number[] = [];
  const a = log ? Math.log(lo) : lo;
  const b = log ? Math.log(hi) : hi;
  for (let i = 0; i <= bins; i++) {
    const e = a + ((b - a) * i) / bins;
    edges.push(log ? Math.exp(e) : e);
  }
  for (let i = 0; i < bins; i++) {
    const c = a + ((b - a) * (i + 0.5)) / bins;
    x.push(log ? Math.exp(c) : c);
  }
  return { x, edges, log };
}

export function binIndex(grid: Grid, v: number): number {
  const n = grid.x.length;
  const lo = grid.edges[0]!, hi = grid.edges[n]!;
  if (!(v >= lo) || !(v <= hi)) return -1;
  const f = grid.log ? (Math.log(v) - Math.log(lo)) / (Math.log(hi) - Math.log(lo)) : (v - lo) / (hi - lo);
  return Math.min(n - 1, Math.max(0, Math.floor(f * n)));
}

/** Mean of each series' finite values per bin; null where a bin holds none. */
export function binMean(grid: Grid, s: XY): (number | null)[] {
  const n = grid.x.length;
  const sum = new Float64Array(n), cnt = new Uint32Array(n);
  for (let i = 0; i < s.x.length; i++) {
    const v = s.y[i];
    if (v === null || v === undefined || !Number.isFinite(v)) continue;
    const k = binIndex(grid, s.x[i]!);
    if (k < 0) continue;
    sum[k] += v; cnt[k]++;
  }
  // A plain loop: Array.from with a mapper was most of the dashboard's refresh time at 500 peers.
  const out: (number | null)[] = new Array(n);
  for (let k = 0; k < n; k++) out[k] = cnt[k] ? sum[k]! / cnt[k]! : null;
  return out;
}

/** Min and max of all finite raw values of all series per bin: the band drawn under the lines. */
export function binRange(grid: Grid, series: XY[]): { min: (number | null)[]; max: (number | null)[] } {
  const n = grid.x.length;
  const min: (number | null)[] = new Array(n).fill(null);
  const max: (number | null)[] = new Array(n).fill(null);
  for (const s of series) {
    for (let i = 0; i < s.x.length; i++) {
      const v = s.y[i];
      if (v === null || v === undefined || !Number.isFinite(v)) continue;
      const k = binIndex(grid, s.x[i]!);
      if (k < 0) continue;
      if (min[k] === null || v < min[k]!) min[k] = v;
      if (max[k] === null || v > max[k]!) max[k] = v;
    }
  }
  return { min, max };
}

export function median(values: number[]): number | null {
  return medianInPlace([...values]);
}

/** Median of `s`, reordering it. */
function medianInPlace(s: number[]): number | null {
  if (s.length === 0) return null;
  const m = s.length >> 1;
  const hi = select(s, m);
  if (s.length % 2) return hi;
  let lo = -Infinity;
  for (let i = 0; i < m; i++) if (s[i]! > lo) lo = s[i]!;
  return (lo + hi) / 2;
}

/**
 * The k-th smallest value (0-based) by quickselect, in expected O(n), reordering `a` so that
 * a[0..k) <= a[k] <= a[k+1..). The median of 500 peers in each of 300 bins is the dashboard's
 * costliest step; sorting every bin cost several times more.
 */
function select(a: number[], k: number): number {
  let lo = 0, hi = a.length - 1;
  while (lo < hi) {
    const pivot = a[(lo + hi) >> 1]!;
    let i = lo, j = hi;
    while (i <= j) {
      while (a[i]! < pivot) i++;
      while (a[j]! > pivot) j--;
      if (i <= j) { const t = a[i]!; a[i] = a[j]!; a[j] = t; i++; j--; }
    }
    if (k <= j) hi = j;
    else if (k >= i) lo = i;
    else break;
  }
  return a[k]!;
}

/**
 * Median across series per bin. A series that has stopped reporting does not count in later bins
 * (it has no value there), so the median follows the live peers.
 */
export function binMedian(binned: (number | null)[][], bins: number): (number | null)[] {
  const out: (number | null)[] = new Array(bins);
  const vals: number[] = [];
  for (let k = 0; k < bins; k++) {
    vals.length = 0;
    for (let j = 0; j < binned.length; j++) { const v = binned[j]![k]; if (v !== null && v !== undefined) vals.push(v); }
    out[k] = medianInPlace(vals);
  }
  return out;
}

/**
 * Keeps at most `maxPoints` of a long series for drawing, preserving spikes: per bucket of
 * consecutive points it keeps the first, the minimum and the maximum (in x order). A NaN spike is
 * what a researcher must see, so non-finite points are always kept.
 */
export function downsampleMinMax(x: ArrayLike<number>, y: ArrayLike<number | null>, maxPoints: number): { x: number[]; y: (number | null)[] } {
  const n = x.length;
  if (maxPoints < 3) throw new Error(`maxPoints must be at least 3, got ${maxPoints}`);
  if (n <= maxPoints) return { x: Array.from(x), y: Array.from(y) };
  const buckets = Math.floor(maxPoints / 3);
  const size = n / buckets;
  const keep = new Set<number>();
  for (let b = 0; b < buckets; b++) {
    const from = Math.floor(b * size), to = Math.min(n, Math.floor((b + 1) * size));
    if (from >= to) continue;
    keep.add(from);
    let lo = -1, hi = -1;
    for (let i = from; i < to; i++) {
      const v = y[i];
      if (v === null || v === undefined) continue;
      if (!Number.isFinite(v)) { keep.add(i); continue; }
      if (lo < 0 || v < (y[lo] as number)) lo = i;
      if (hi < 0 || v > (y[hi] as number)) hi = i;
    }
    if (lo >= 0) keep.add(lo);
    if (hi >= 0) keep.add(hi);
  }
  keep.add(n - 1);
  const idx = [...keep].sort((a, b) => a - b);
  return { x: idx.map((i) => x[i]!), y: idx.map((i) => y[i] ?? null) };
}

/**
 * Fills interior gaps (nulls between two values) by linear interpolation over the bin index;
 * leading and trailing nulls stay (no extrapolation beyond where a peer reported). A sparse
 * series binned onto a fine grid becomes one continuous line, and the median across peers then
 * compares peers at the same x instead of whichever peer happened to report in a bin.
 */
export function fillGaps(values: (number | null)[]): (number | null)[] {
  const out = values.slice();
  let prev = -1;
  for (let i = 0; i < out.length; i++) {
    if (out[i] === null) continue;
    if (prev >= 0 && i - prev > 1) {
      const a = out[prev]!, b = out[i]!;
      for (let k = prev + 1; k < i; k++) out[k] = a + ((b - a) * (k - prev)) / (i - prev);
    }
    prev = i;
  }
  return out;
}
