// A small SVG line-plot writer for benchmark figures: lines, an optional shaded band per series
// (min..max over seeds), linear or log axes, ticks and a legend. Plain strings, no dependencies,
// so the figures are reviewable diffs and open in any browser.

export interface Series {
  label: string;
  x: number[];
  y: number[];
  /** Optional band around the line (same length as x). */
  lo?: number[];
  hi?: number[];
  color?: string;
  dashed?: boolean;
}

export interface PlotSpec {
  title: string;
  xLabel: string;
  yLabel: string;
  series: Series[];
  logX?: boolean;
  logY?: boolean;
  width?: number;
  height?: number;
  /** Optional fixed y range (else fitted to the data and bands). */
  yRange?: [number, number];
  /** Optional x ticks; on a log axis the range then spans exactly the data (e.g. n = 2..1024). */
  xTicks?: number[];
}

const PALETTE = ['#1b6ca8', '#d1495b', '#edae49', '#00798c', '#66a182', '#8d5a97', '#30343f', '#e07a5f'];

export function linePlot(spec: PlotSpec): string {
  const W = spec.width ?? 720, H = spec.height ?? 440;
  const m = { l: 70, r: 190, t: 40, b: 55 };
  const pw = W - m.l - m.r, ph = H - m.t - m.b;
  const all = spec.series.flatMap((s) => s.x.map((x, i) => ({ x, ys: [s.y[i], s.lo?.[i], s.hi?.[i]] })));
  const xs = all.map((p) => p.x).filter((v) => ok(v, spec.logX));
  const ys = all.flatMap((p) => p.ys).filter((v): v is number => v !== undefined && ok(v, spec.logY));
  if (xs.length === 0 || ys.length === 0) throw new Error(`linePlot "${spec.title}": no finite points to draw`);
  const fx = axis(Math.min(...xs), Math.max(...xs), spec.logX ?? false, spec.xTicks);
  const fy = axis(spec.yRange?.[0] ?? Math.min(...ys), spec.yRange?.[1] ?? Math.max(...ys), spec.logY ?? false);
  const X = (v: number) => m.l + fx.frac(v) * pw;
  const Y = (v: number) => m.t + (1 - fy.frac(v)) * ph;
  const out: string[] = [];
  out.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="12">`);
  out.push(`<rect width="${W}" height="${H}" fill="white"/>`);
  out.push(`<text x="${W / 2}" y="22" text-anchor="middle" font-size="14" font-weight="bold">${esc(spec.title)}</text>`);
  // grid and ticks
  for (const t of fx.ticks) {
    out.push(`<line x1="${f(X(t))}" y1="${m.t}" x2="${f(X(t))}" y2="${m.t + ph}" stroke="#e5e5e5"/>`);
    out.push(`<text x="${f(X(t))}" y="${m.t + ph + 16}" text-anchor="middle">${fmt(t)}</text>`);
  }
  for (const t of fy.ticks) {
    out.push(`<line x1="${m.l}" y1="${f(Y(t))}" x2="${m.l + pw}" y2="${f(Y(t))}" stroke="#e5e5e5"/>`);
    out.push(`<text x="${m.l - 6}" y="${f(Y(t) + 4)}" text-anchor="end">${fmt(t)}</text>`);
  }
  out.push(`<rect x="${m.l}" y="${m.t}" width="${pw}" height="${ph}" fill="none" stroke="#888"/>`);
  out.push(`<text x="${m.l + pw / 2}" y="${H - 14}" text-anchor="middle">${esc(spec.xLabel)}</text>`);
  out.push(`<text transform="translate(18 ${m.t + ph / 2}) rotate(-90)" text-anchor="middle">${esc(spec.yLabel)}</text>`);
  // clip lines to the plot area when a fixed y range cuts them
  out.push(`<clipPath id="plot"><rect x="${m.l}" y="${m.t}" width="${pw}" height="${ph}"/></clipPath>`);
  spec.series.forEach((s, si) => {
    const color = s.color ?? PALETTE[si % PALETTE.length];
    const idx = s.x.map((_, i) => i).filter((i) => ok(s.x[i], spec.logX) && ok(s.y[i], spec.logY));
    if (s.lo && s.hi) {
      const band = idx.filter((i) => ok(s.lo![i], spec.logY) && ok(s.hi![i], spec.logY));
      if (band.length > 1) {
        const up = band.map((i) => `${f(X(s.x[i]))},${f(Y(s.hi![i]))}`);
        const down = band.slice().reverse().map((i) => `${f(X(s.x[i]))},${f(Y(s.lo![i]))}`);
        out.push(`<polygon clip-path="url(#plot)" points="${[...up, ...down].join(' ')}" fill="${color}" fill-opacity="0.18" stroke="none"/>`);
      }
    }
    const pts = idx.map((i) => `${f(X(s.x[i]))},${f(Y(s.y[i]))}`).join(' ');
    out.push(`<polyline clip-path="url(#plot)" points="${pts}" fill="none" stroke="${color}" stroke-width="2"${s.dashed ? ' stroke-dasharray="6 4"' : ''}/>`);
    if (idx.length <= 12) for (const i of idx) out.push(`<circle cx="${f(X(s.x[i]))}" cy="${f(Y(s.y[i]))}" r="3" fill="${color}"/>`);
    const ly = m.t + 10 + si * 20;
    out.push(`<line x1="${m.l + pw + 12}" y1="${ly}" x2="${m.l + pw + 36}" y2="${ly}" stroke="${color}" stroke-width="3"${s.dashed ? ' stroke-dasharray="6 4"' : ''}/>`);
    out.push(`<text x="${m.l + pw + 42}" y="${ly + 4}">${esc(s.label)}</text>`);
  });
  out.push('</svg>');
  return out.join('\n') + '\n';
}

function ok(v: number | undefined, log?: boolean): v is number {
  return v !== undefined && Number.isFinite(v) && (!log || v > 0);
}

interface Axis { frac(v: number): number; ticks: number[] }

function axis(lo: number, hi: number, log: boolean, fixed?: number[]): Axis {
  if (fixed && fixed.length > 0) {
    const a = Math.min(lo, ...fixed), b = Math.max(hi, ...fixed);
    const t = (v: number) => (log ? Math.log10(v) : v);
    const span = t(b) - t(a) || 1;
    return { frac: (v) => (t(v) - t(a)) / span, ticks: fixed };
  }
  if (log) {
    const a = Math.floor(Math.log10(lo)), b = Math.ceil(Math.log10(hi));
    const span = Math.max(b - a, 1);
    const ticks: number[] = [];
    for (let e = a; e <= a + span; e++) ticks.push(10 ** e);
    return { frac: (v) => (Math.log10(v) - a) / span, ticks };
  }
  if (hi === lo) { hi = lo + 1; lo = lo - 1; }
  const step = niceStep((hi - lo) / 6);
  const a = Math.floor(lo / step) * step, b = Math.ceil(hi / step) * step;
  const ticks: number[] = [];
  for (let t = a; t <= b + step * 1e-9; t += step) ticks.push(Number(t.toPrecision(12)));
  return { frac: (v) => (v - a) / (b - a), ticks };
}

function niceStep(raw: number): number {
  const e = 10 ** Math.floor(Math.log10(raw));
  const r = raw / e;
  return (r <= 1 ? 1 : r <= 2 ? 2 : r <= 2.5 ? 2.5 : r <= 5 ? 5 : 10) * e;
}

const f = (v: number) => v.toFixed(1);

function fmt(v: number): string {
  if (v === 0) return '0';
  const a = Math.abs(v);
  if (a >= 1e4 || a < 1e-3) return v.toExponential(0);
  return String(Number(v.toPrecision(4)));
}

function esc(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}
