// <murmur-dashboard>: the research dashboard. Renders a DashboardController: run phase, alerts,
// loss charts with the x-axis switch / log-x / smoothing, throughput and peers over time, partner
// weight spread, the pairing graph, the run's events, the peer health grid, samples and
// checkpoints, CSV export.
import { LitElement, html, css, nothing, type PropertyValues } from 'lit';
import type { DashboardController, XAxis } from '../controllers/dashboard-controller.ts';
import { LitWatch } from '../controllers/observable.ts';
import { formatCount, formatRate } from '../core/format.ts';
import { theme } from './theme.ts';
import './live-chart.ts';
import './peer-grid.ts';
import './pairing-graph.ts';
import './event-list.ts';
import './dashboard-parts.ts';

const X_LABEL: Record<XAxis, string> = { tokens: 'tokens (per peer)', step: 'inner steps (per peer)', time: 'wall time since start' };

export class Dashboard extends LitElement {
  static override properties = { controller: { attribute: false } };
  declare controller: DashboardController | null;
  private watch = new LitWatch(this, () => this.controller);

  static override styles = [theme, css`
    :host { display: block; padding: 1rem 1.2rem 3rem; max-width: 90rem; margin: 0 auto; }
    header { display: flex; flex-wrap: wrap; align-items: baseline; gap: 0.5rem 1.5rem; }
    h1 { font-size: 1.45rem; margin: 0; }
    h2 { font-size: 1.05rem; margin: 0 0 0.5rem; }
    .phase { font-weight: 600; padding: 0.2rem 0.6rem; border-radius: 999px; background: #e8eefc; color: #1b3f99; }
    .phase.stopped, .phase.waiting { background: #fff4e5; color: #6b4a00; }
    .conn { font-size: 0.85rem; }
    .conn.reconnecting { color: var(--murmur-bad); font-weight: 600; }
    .kpis { display: flex; flex-wrap: wrap; gap: 0.6rem 1.6rem; margin: 0.6rem 0 0.2rem; }
    .kpis div { font-size: 0.85rem; color: var(--murmur-muted); }
    .kpis strong { display: block; font-size: 1.25rem; color: var(--murmur-fg); font-variant-numeric: tabular-nums; }
    .kpis small { display: block; max-width: 22rem; }
    .toolbar { display: flex; flex-wrap: wrap; gap: 0.6rem 1.4rem; align-items: center; margin: 0.8rem 0; padding: 0.6rem 0.8rem; background: var(--murmur-panel); border: 1px solid var(--murmur-line); border-radius: var(--murmur-radius); }
    fieldset { border: 0; padding: 0; margin: 0; display: inline-flex; gap: 0.2rem; align-items: center; }
    legend { float: left; margin-right: 0.5rem; font-weight: 600; }
    .seg label { border: 1px solid var(--murmur-line); padding: 0.25rem 0.6rem; border-radius: 6px; cursor: pointer; background: var(--murmur-bg); }
    .seg input { position: absolute; opacity: 0; width: 1px; height: 1px; }
    .seg input:checked + span { font-weight: 700; color: var(--murmur-accent); }
    .seg label:has(input:checked) { border-color: var(--murmur-accent); background: #e8eefc; }
    .seg label:has(input:focus-visible) { outline: 3px solid color-mix(in srgb, var(--murmur-accent) 55%, transparent); outline-offset: 2px; }
    .grid2 { display: grid; grid-template-columns: repeat(2, minmax(0, 1fr)); gap: 1rem; }
    @media (max-width: 900px) { .grid2 { grid-template-columns: 1fr; } }
    section { background: var(--murmur-panel); border: 1px solid var(--murmur-line); border-radius: var(--murmur-radius); padding: 0.8rem 1rem; margin: 1rem 0 0; min-width: 0; }
    .grid2 > section { margin: 0; }
    label.inline { display: inline-flex; gap: 0.4rem; align-items: center; }
    footer { margin-top: 1rem; font-size: 0.8rem; }
  `];

  constructor() { super(); this.controller = null; }

  protected override willUpdate(changed: PropertyValues<this>): void {
    if (changed.has('controller')) this.watch.rebind();
  }

  override render() {
    const c = this.controller;
    if (!c) return html`<p>Loading…</p>`;
    const run = c.run.status === 'complete' ? c.run.value : null;
    const phase = c.phase;
    const live = c.peerRows.filter((p) => !c.isStale(p)).length;
    const now = c.clockNow();
    const xKind = c.xAxis === 'time' ? 'elapsed' : 'number';
    return html`
      <header>
        <h1>${run ? `Murmur run “${run.name}”` : 'Murmur dashboard'}</h1>
        <span class="phase ${phase.key}" data-phase=${phase.key}>${phase.text}</span>
        <span class="conn ${c.connection}" role="status">${c.connection === 'live' ? 'Live' : c.connection === 'connecting' ? 'Connecting…' : 'Reconnecting to the coordinator…'}</span>
      </header>
      ${c.run.status === 'error' ? html`<p role="alert">The run did not load: ${c.run.error}</p>` : nothing}
      ${run ? html`<div class="kpis">
        <div>Live peers<strong data-kpi="live">${live}</strong></div>
        <div>${c.throughput.basis === 'vouched' ? 'Tokens/s (off probation)' : 'Tokens/s (estimate)'}<strong data-kpi="tps">${formatCount(c.totalTokensPerS)}</strong>
          <small data-kpi="tps-basis">${throughputBasis(c)}</small></div>
        <div>Model<strong>${run.preset}</strong></div>
        <div>Each volunteer's link<strong data-kpi="link">${formatRate(run.linkBytesPerS)}</strong><small>each way, at least;
          <span data-kpi="first-link">${formatRate(run.firstLinkBytesPerS)}</span> for a first exchange</small></div>
        <div>Dataset<strong>${run.dataset}</strong></div>
        <div>Outer step every<strong>${run.H} steps</strong></div>
        <div>Reports<strong data-kpi="reports">${formatCount(c.reportCount)}</strong></div>
      </div>` : nothing}

      <section aria-labelledby="alerts-h"><h2 id="alerts-h">Alerts</h2><murmur-alerts .controller=${c}></murmur-alerts></section>

      <div class="toolbar" role="group" aria-label="Chart options">
        <fieldset class="seg"><legend>x-axis</legend>
          ${(['tokens', 'step', 'time'] as XAxis[]).map((x) => html`<label><input type="radio" name="xaxis" value=${x} .checked=${c.xAxis === x}
            @change=${() => c.setXAxis(x)}><span>${x === 'tokens' ? 'Tokens' : x === 'step' ? 'Steps' : 'Wall time'}</span></label>`)}
        </fieldset>
        <label class="inline"><input type="checkbox" data-control="logx" .checked=${c.logX} @change=${(e: Event) => c.setLogX((e.target as HTMLInputElement).checked)}> Log x</label>
        <label class="inline" for="smooth">Smoothing</label>
        <input id="smooth" type="range" min="0" max="0.98" step="0.02" .value=${String(c.smoothing)}
          aria-valuetext=${c.smoothing === 0 ? 'off' : String(c.smoothing)}
          @input=${(e: Event) => c.setSmoothing(Number((e.target as HTMLInputElement).value))}>
        <output for="smooth">${c.smoothing.toFixed(2)}</output>
        <button data-action="csv" @click=${() => this.downloadCsv()}>Export metrics (CSV)</button>
      </div>

      <div class="grid2">
        <section aria-labelledby="train-h"><h2 id="train-h">Training loss</h2>
          <murmur-chart data-chart="train" .view=${c.trainView} label="Training loss" x-label=${X_LABEL[c.xAxis]} x-kind=${xKind} ?log-x=${c.logX}></murmur-chart></section>
        <section aria-labelledby="val-h"><h2 id="val-h">Validation loss</h2>
          <murmur-chart data-chart="val" .view=${c.valView} label="Validation loss" x-label=${X_LABEL[c.xAxis]} x-kind=${xKind} ?log-x=${c.logX}></murmur-chart></section>
        <section aria-labelledby="tp-h"><h2 id="tp-h">Throughput, bandwidth and live peers</h2>
          ${c.throughputView.series.length === 0 ? html`<murmur-chart .view=${c.throughputView} label="Throughput" height="260"></murmur-chart>`
            : c.throughputView.series.map((s, i) => html`<murmur-chart data-chart=${['throughput', 'bandwidth', 'peers'][i]} height="100" compact
              .view=${{ ...c.throughputView, series: [s] }} label=${[c.throughput.basis === 'vouched' ? 'Tokens per second, peers off probation' : 'Tokens per second, estimated (nobody off probation yet)', 'Bandwidth, bytes per second (sent + received)', 'Live peers'][i]!} x-label="time" x-kind="time"></murmur-chart>`)}</section>
        <section aria-labelledby="spread-h"><h2 id="spread-h">Weight spread between partners</h2>
          <murmur-chart data-chart="spread" .view=${c.spreadView} label="L2 distance between partners' slow weights" x-label="time" x-kind="time"></murmur-chart></section>
      </div>

      <div class="grid2" style="margin-top:1rem">
        <section aria-labelledby="pair-h"><h2 id="pair-h">Recent pairings</h2>
          <murmur-pairings .pairings=${c.pairings} now=${now}></murmur-pairings></section>
        <section aria-labelledby="events-h"><h2 id="events-h">Run events</h2><murmur-events .controller=${c}></murmur-events></section>
      </div>
      <section aria-labelledby="conn-h"><h2 id="conn-h">Connectivity</h2><murmur-connectivity .controller=${c}></murmur-connectivity></section>
      <section aria-labelledby="peers-h"><h2 id="peers-h">Peers</h2>
        <murmur-peer-grid .rows=${c.peerRows} now=${now} stale-ms=${c.staleMs} forgotten=${c.forgottenPeers}></murmur-peer-grid></section>
      <div class="grid2" style="margin-top:1rem">
        <section aria-labelledby="samples-h"><h2 id="samples-h">Text sampled from checkpoints</h2><murmur-samples .controller=${c}></murmur-samples></section>
        <section aria-labelledby="ckpt-h"><h2 id="ckpt-h">Checkpoints</h2><murmur-checkpoints .controller=${c}></murmur-checkpoints></section>
      </div>
      <footer class="muted">Views refresh at most once a second (last refresh ${c.lastRefreshMs.toFixed(0)} ms).
        ${c.logTruncated ? 'The oldest reports were dropped from this page to bound its memory: the CSV holds the newest ones.' : ''}</footer>`;
  }

  private downloadCsv(): void {
    const c = this.controller!;
    const blob = new Blob([c.csv()], { type: 'text/csv;charset=utf-8' });
    const a = document.createElement('a');
    a.href = URL.createObjectURL(blob);
    const run = c.run.status === 'complete' ? c.run.value.id : 'run';
    a.download = `murmur-${run}-metrics.csv`;
    a.click();
    setTimeout(() => URL.revokeObjectURL(a.href), 10_000);
  }
}

/**
 * What the run's tokens/s counts, in words (src/ui/core/throughput.ts): whose claims, and those
 * left out. Peers' speeds are their own claims; only ids off probation are vouched for.
 */
function throughputBasis(c: DashboardController): string {
  const t = c.throughput;
  const plural = (n: number, one: string, many = `${one}s`) => `${n} ${n === 1 ? one : many}`;
  const listed = c.standingsListed ? '' : ' The coordinator\'s peer list has not loaded: no id is known to be off probation.';
  if (t.basis === 'every-client') {
    return t.clients === 0 ? `No live peer reports its speed.${listed}`
      : `Nobody is off probation yet: ${plural(t.clients, 'client address', 'client addresses')} × their median claim.${listed}`;
  }
  const counted = t.peers === t.clients ? plural(t.peers, 'peer') : `${plural(t.peers, 'peer')} from ${plural(t.clients, 'client address', 'client addresses')}, each address once`;
  const left = t.unvouched.peers > 0 ? ` + ${plural(t.unvouched.peers, 'peer')} on probation, claiming ${formatCount(t.unvouched.tokensPerS)} more` : '';
  return `${counted} off probation${left}.`;
}

customElements.define('murmur-dashboard', Dashboard);
declare global { interface HTMLElementTagNameMap { 'murmur-dashboard': Dashboard } }
