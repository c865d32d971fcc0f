// <murmur-chart>: one uPlot chart of a ChartView (aligned x + series with roles). uPlot draws on
// canvas and is made for live series: setData on each refresh, a new plot only when the set of
// series or the scales change. The band fills between the 'min' and 'max' series.
import { LitElement, html, css, unsafeCSS, type PropertyValues } from 'lit';
import uPlot from 'uplot';
import uplotCss from 'uplot/dist/uPlot.min.css?inline';
import type { ChartView } from '../controllers/dashboard-controller.ts';
import { theme } from './theme.ts';

const PEER_COLORS = ['#4e79a7', '#f28e2b', '#59a14f', '#e15759', '#76b7b2', '#edc948', '#b07aa1', '#ff9da7', '#9c755f', '#bab0ac'];
const TOTAL_COLORS = ['#2453c7', '#c2410c', '#15803d'];

export class LiveChart extends LitElement {
  static override properties = {
    view: { attribute: false },
    label: {},
    xLabel: { attribute: 'x-label' },
    xKind: { attribute: 'x-kind' },
    logX: { type: Boolean, attribute: 'log-x' },
    separateAxes: { type: Boolean, attribute: 'separate-axes' },
    height: { type: Number },
    compact: { type: Boolean },
  };
  /** Small multiple: no legend or x label; the caption shows the latest value instead. */
  declare compact: boolean;
  /** Plot height in px, legend included. */
  declare height: number;
  declare view: ChartView | null;
  /** What the chart shows, for screen readers and the heading. */
  declare label: string;
  declare xLabel: string;
  /** 'time' formats x (unix seconds) as clock time; 'elapsed' as seconds since start; 'number' as is. */
  declare xKind: 'time' | 'elapsed' | 'number';
  declare logX: boolean;
  /** Each series on its own y axis (throughput chart: tokens/s, bytes/s and peers differ in scale). */
  declare separateAxes: boolean;

  static override styles = [theme, unsafeCSS(uplotCss), css`
    :host { display: block; min-width: 0; }
    .plot { width: 100%; }
    .empty { min-height: 80px; display: grid; place-items: center; color: var(--murmur-muted); border: 1px dashed var(--murmur-line); border-radius: var(--murmur-radius); }
    .caption { font-size: 0.85rem; margin: 0.3rem 0 0; display: flex; justify-content: space-between; }
    .caption strong { font-variant-numeric: tabular-nums; }
    .note { font-size: 0.8rem; color: var(--murmur-muted); margin: 0.2rem 0 0; }
    .u-legend { font-size: 0.78rem; }
    .u-legend .u-series:not(:first-child) .u-label { max-width: 11ch; overflow: hidden; text-overflow: ellipsis; white-space: nowrap; display: inline-block; vertical-align: bottom; }
  `];

  private plot: uPlot | null = null;
  private signature = '';
  private resize: ResizeObserver | null = null;

  constructor() {
    super();
    this.view = null;
    this.label = '';
    this.xLabel = '';
    this.xKind = 'number';
    this.logX = false;
    this.separateAxes = false;
    this.height = 260;
    this.compact = false;
  }

  override render() {
    const v = this.view;
    const has = v && v.x.length > 0;
    const latest = has && this.compact ? lastValue(v!.series[0]!.values) : null;
    return html`
      ${this.compact ? html`<p class="caption"><span>${this.label}</span><strong>${latest === null ? '–' : fmt(latest)}</strong></p>` : ''}
      <div class="plot" role="img" aria-label=${this.summary()} ?hidden=${!has} style="height:${this.height}px"></div>
      ${has ? '' : html`<div class="empty" style="height:${this.height}px">No data yet</div>`}
      ${v && v.totalPeers > v.shownPeers && v.shownPeers > 0
        ? html`<p class="note">Lines for the ${v.shownPeers} most recently active of ${v.totalPeers} peers; the median and the band cover all of them.</p>`
        : ''}
      ${v?.clipped
        ? html`<p class="note" data-note="clipped">${v.clipped.peers} ${v.clipped.peers === 1 ? 'peer claims' : 'peers claim'} steps past this axis (up to step
          ${v.clipped.furthestStep}), beyond what peers off probation and the run's agreed step reach (step ${v.clipped.axisStep}): not drawn there.</p>`
        : ''}
      ${v?.diverged
        ? html`<p class="note" data-note="diverged">${v.diverged.first}${v.diverged.peers > 1 ? ` and ${v.diverged.peers - 1} more` : ''} reported a NaN
          or infinite loss (or one past 10,000), first at step ${v.diverged.step}: diverged; such points are gaps in the lines (see the NaN alert).</p>`
        : ''}`;
  }

  /** Text alternative: the last value of each aggregate series. */
  private summary(): string {
    const v = this.view;
    if (!v || v.x.length === 0) return `${this.label}: no data yet`;
    const parts = v.series.filter((s) => s.role !== 'peer' && s.role !== 'min' && s.role !== 'max').map((s) => {
      const last = lastValue(s.values);
      return `${s.label} ${last === null ? 'none' : fmt(last)}`;
    });
    return `${this.label}, ${v.x.length} points against ${this.xLabel}${this.logX ? ' (log scale)' : ''}: ${parts.join(', ')}`;
  }

  protected override updated(changed: PropertyValues<this>): void {
    const v = this.view;
    const box = this.renderRoot.querySelector<HTMLDivElement>('.plot');
    if (!box || !v || v.x.length === 0) { this.destroyPlot(); return; }
    const sig = JSON.stringify([v.series.map((s) => `${s.role}:${s.label}`), this.logX, this.xKind, this.separateAxes, this.xLabel, this.height]);
    const data = [v.x, ...v.series.map((s) => s.values)] as uPlot.AlignedData;
    if (this.plot && sig === this.signature) {
      this.plot.setData(data);
      return;
    }
    this.destroyPlot();
    this.signature = sig;
    this.plot = new uPlot(this.options(v, box.clientWidth || 600), data, box);
    this.resize ??= new ResizeObserver(() => this.plot?.setSize({ width: box.clientWidth, height: this.height - (this.compact ? 0 : legendHeight(box)) }));
    this.resize.observe(box);
    void changed;
  }

  private options(v: ChartView, width: number): uPlot.Options {
    const series: uPlot.Series[] = [{ label: this.xLabel, value: (_u, x) => (x === null ? '–' : this.fmtX(x, 0)) }];
    const bands: uPlot.Band[] = [];
    let peer = 0, total = 0;
    const axes: uPlot.Axis[] = [{
      // uPlot copies keys as given: an explicit `undefined` would erase its defaults.
      ...(this.compact ? { size: 28 } : { label: this.xLabel }),
      // Clock time ticks on whole seconds and round minutes, never between two seconds.
      ...(this.xKind === 'time' ? { incrs: [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 14400, 21600, 43200, 86400] } : {}), stroke: '#5a6272', grid: { stroke: '#eceef1' }, space: 70,
      values: (u, ticks) => {
        const { min = 0, max = 0 } = u.scales.x!;
        const decades = this.logX && min > 0 ? Math.log10(max / min) : 0;
        // A log axis ticks 1..9 of every decade: label only 1 (and 2, 5 when few decades show).
        return ticks.map((t) => (this.logX && !logLabel(t, decades) ? '' : this.fmtX(t, max - min)));
      },
    }];
    v.series.forEach((s, i) => {
      const idx = i + 1;
      switch (s.role) {
        case 'min': series.push({ label: 'min', stroke: 'rgba(36, 83, 199, 0.25)', width: 1, spanGaps: true, points: { show: false }, value: (_u, y) => fmtMaybe(y) }); break;
        case 'max':
          series.push({ label: 'max', stroke: 'rgba(36, 83, 199, 0.25)', width: 1, spanGaps: true, points: { show: false }, value: (_u, y) => fmtMaybe(y) });
          bands.push({ series: [idx, idx - 1], fill: 'rgba(36, 83, 199, 0.10)' });
          break;
        case 'peer':
          series.push({ label: s.label, stroke: PEER_COLORS[peer++ % PEER_COLORS.length] + 'b0', width: 1, spanGaps: true, points: { show: false }, value: (_u, y) => fmtMaybe(y) });
          break;
        case 'median':
          series.push({ label: 'median', stroke: '#1d2330', width: 2.5, spanGaps: true, points: { show: false }, value: (_u, y) => fmtMaybe(y) });
          break;
        case 'total': {
          const scale = this.separateAxes ? `y${total}` : 'y';
          series.push({ label: s.label, stroke: TOTAL_COLORS[total % TOTAL_COLORS.length], width: 2, spanGaps: false, scale, points: { show: false }, value: (_u, y) => fmtMaybe(y) });
          if (this.separateAxes) axes.push({ scale, stroke: TOTAL_COLORS[total % TOTAL_COLORS.length], side: total === 0 ? 3 : 1, grid: { show: total === 0, stroke: '#eceef1' }, values: (_u, t) => t.map(fmt), size: 60 });
          total++;
          break;
        }
      }
    });
    if (!this.separateAxes) axes.push({ stroke: '#5a6272', grid: { stroke: '#eceef1' }, values: (_u, t) => t.map(fmt), size: 56, space: this.compact ? 20 : 30 });
    // Totals (tokens/s, bytes/s, peers) read against zero; losses use the data's own range.
    const fromZero = v.series.every((s) => s.role === 'total');
    return {
      width, height: this.height - (this.compact ? 0 : 40),
      series, bands, axes,
      scales: {
        x: { time: false, distr: this.logX ? 3 : 1 },
        ...(fromZero && !this.separateAxes ? { y: { range: (_u: uPlot, _min: number, max: number): uPlot.Range.MinMax => [0, max > 0 ? max * 1.15 : 1] } } : {}),
      },
      legend: { show: !this.compact, live: true },
      cursor: { drag: { x: true, y: false } },
    };
  }

  /** span: the visible x range (seconds for time), to choose the precision of tick labels. */
  private fmtX(x: number, span: number): string {
    switch (this.xKind) {
      case 'time': {
        const d = new Date(x * 1000);
        const hm = `${String(d.getHours()).padStart(2, '0')}:${String(d.getMinutes()).padStart(2, '0')}`;
        return span > 0 && span > 900 ? hm : `${hm}:${String(d.getSeconds()).padStart(2, '0')}`;
      }
      case 'elapsed':
        return x < 10 ? `${Number(x.toPrecision(2))} s` : x < 120 ? `${Math.round(x)} s` : x < 7200 ? `${Number((x / 60).toFixed(1))} min` : `${Number((x / 3600).toFixed(1))} h`;
      default: return fmt(x);
    }
  }

  private destroyPlot(): void {
    this.plot?.destroy();
    this.plot = null;
    this.signature = '';
  }

  override disconnectedCallback(): void {
    super.disconnectedCallback();
    this.resize?.disconnect();
    this.resize = null;
    this.destroyPlot();
  }
}

function logLabel(t: number, decades: number): boolean {
  if (!(t > 0)) return false;
  const m = Math.round((t / 10 ** Math.floor(Math.log10(t) + 1e-9)) * 1000) / 1000;
  return m === 1 || (decades <= 2 && (m === 2 || m === 5));
}

function legendHeight(box: HTMLElement): number {
  return (box.querySelector('.u-legend') as HTMLElement | null)?.offsetHeight ?? 40;
}

function lastValue(vs: (number | null)[]): number | null {
  for (let i = vs.length - 1; i >= 0; i--) if (vs[i] !== null) return vs[i]!;
  return null;
}

function fmt(v: number): string {
  const a = Math.abs(v);
  if (a === 0) return '0';
  if (Number.isInteger(v) && a < 1e4) return String(v);
  if (a >= 1e9) return `${(v / 1e9).toFixed(1)}G`;
  if (a >= 1e6) return `${(v / 1e6).toFixed(1)}M`;
  if (a >= 1e4) return `${(v / 1e3).toFixed(0)}K`;
  if (a >= 1e3) return `${(v / 1e3).toFixed(1)}K`;
  if (a >= 10) return v.toFixed(0);
  if (a >= 1) return v.toFixed(2);
  return v.toPrecision(2);
}

function fmtMaybe(v: number | null): string {
  return v === null || v === undefined ? '–' : fmt(v);
}

customElements.define('murmur-chart', LiveChart);
declare global { interface HTMLElementTagNameMap { 'murmur-chart': LiveChart } }
