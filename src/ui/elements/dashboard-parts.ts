// Small pieces of the dashboard, each rendering one part of a DashboardController:
// <murmur-alerts>, <murmur-checkpoints> (list + downloads), <murmur-samples> (text per checkpoint,
// a slider over steps).
import { LitElement, html, css, nothing, type PropertyValues } from 'lit';
import type { DashboardController } from '../controllers/dashboard-controller.ts';
import { LitWatch } from '../controllers/observable.ts';
import type { AlertKind } from '../core/alerts.ts';
import { formatBytes, formatCount, formatLoss } from '../core/format.ts';
import { theme } from './theme.ts';

const KIND_LABEL: Record<AlertKind, string> = {
  nan: 'NaN', divergence: 'divergence', stall: 'stall', throughput: 'throughput', offender: 'bad update', checkpoint: 'checkpoint failed',
  connectivity: 'links fail',
};

abstract class Part extends LitElement {
  static override properties = { controller: { attribute: false } };
  declare controller: DashboardController | null;
  private watch = new LitWatch(this, () => this.controller);
  constructor() { super(); this.controller = null; }
  protected override willUpdate(changed: PropertyValues<this>): void {
    if (changed.has('controller')) this.watch.rebind();
  }
}

export class AlertList extends Part {
  static override styles = [theme, css`
    ul { list-style: none; margin: 0; padding: 0; display: grid; gap: 0.4rem; }
    li { display: flex; gap: 0.8rem; align-items: flex-start; justify-content: space-between; padding: 0.5rem 0.7rem; border-radius: var(--murmur-radius); border-left: 5px solid var(--murmur-warn); background: #fff8eb; }
    li.critical { border-color: var(--murmur-bad); background: #fdecea; }
    .kind { font-weight: 700; text-transform: uppercase; font-size: 0.75rem; letter-spacing: 0.04em; margin-right: 0.4rem; }
    /* A peer's text (a link error, an unknown offence code, a checkpoint's failure) may hold no
       place to break: wrapped anywhere, it stays in its box, and Dismiss beside it. */
    p { margin: 0; min-width: 0; overflow-wrap: anywhere; }
  `];

  override render() {
    const alerts = this.controller?.alerts ?? [];
    if (alerts.length === 0) return html`<p class="muted" data-alerts="none">No alerts: no NaN, divergence, stall, throughput drop, bad update or failed checkpoint seen.</p>`;
    // role=alert on the list announces a new alert once, when it appears.
    return html`<ul role="alert" aria-label="Alerts">
      ${alerts.map((a) => html`<li class=${a.severity} data-alert=${a.kind}>
        <p><span class="kind">${KIND_LABEL[a.kind]}</span>${a.message}
          <span class="muted">(${new Date(a.t).toLocaleTimeString()})</span></p>
        <button aria-label=${`Dismiss the ${KIND_LABEL[a.kind]} alert${a.peerId ? ` for ${a.peerId}` : ''}`} @click=${() => this.controller!.dismissAlert(a.key)}>Dismiss</button>
      </li>`)}
    </ul>`;
  }
}

export class CheckpointList extends Part {
  static override styles = [theme, css`
    table { border-collapse: collapse; width: 100%; font-size: 0.88rem; }
    th, td { text-align: left; padding: 0.35rem 0.5rem; border-bottom: 1px solid var(--murmur-line); }
    th { background: var(--murmur-panel); }
    td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
    .wrap { max-height: 300px; overflow: auto; }
    a { white-space: nowrap; margin-right: 0.6rem; }
  `];

  override render() {
    const c = this.controller;
    if (!c) return nothing;
    const t = c.checkpoints;
    if (t.status === 'pending') return html`<p class="muted">Loading checkpoints…</p>`;
    if (t.status === 'error') return html`<p role="alert">The checkpoint list did not load: ${t.error}</p>`;
    if (t.value.length === 0) return html`<p class="muted">No checkpoint yet. The coordinator takes one from a live peer on a schedule.</p>`;
    const list = [...t.value].reverse();
    return html`<div class="wrap" tabindex="0" role="region" aria-label="Checkpoints">
      <table>
        <thead><tr><th scope="col">Step</th><th scope="col" class="num">Outer step</th><th scope="col" class="num">Val. loss</th>
          <th scope="col" class="num">Tokens</th><th scope="col">Saved</th><th scope="col" class="num">Size</th><th scope="col">Download</th></tr></thead>
        <tbody>${list.map((k) => html`<tr data-checkpoint=${k.id}>
          <td>${k.step}</td><td class="num">${k.round}</td><td class="num" data-loss>${k.measured ? formatLoss(k.valLoss)
            : html`<span class="muted" title=${`claimed ${formatLoss(k.valLoss)} by its peer; not measured by the coordinator`}>not measured</span>`}</td>
          <td class="num">${formatCount(k.tokens)}</td><td>${new Date(k.createdAt).toLocaleString()}</td><td class="num">${formatBytes(k.bytes)}</td>
          <td>
            <a href=${k.fileUrl} download=${`${k.id}.safetensors`} data-download="checkpoint"
              aria-label=${`Checkpoint at step ${k.step}, safetensors`}>safetensors</a>
            <a href=${k.exportUrl} download=${`${k.id}-gpt2-model.safetensors`} data-download="gpt2"
              aria-label=${`GPT-2 export of step ${k.step}, model.safetensors`}>GPT-2 model</a>
            <a href=${k.exportConfigUrl} download=${`${k.id}-gpt2-config.json`} data-download="gpt2-config"
              aria-label=${`GPT-2 export of step ${k.step}, config.json`}>config.json</a>
          </td></tr>`)}
        </tbody>
      </table></div>`;
  }
}

export class SampleViewer extends Part {
  static override properties = { ...Part.properties, index: { state: true } };
  declare index: number;
  static override styles = [theme, css`
    /* A model may write a long run with no space (an early or a poisoned one does): broken anywhere. */
    pre { white-space: pre-wrap; overflow-wrap: anywhere; background: var(--murmur-bg); border: 1px solid var(--murmur-line); border-radius: var(--murmur-radius); padding: 0.7rem; min-height: 6rem; font-size: 0.9rem; margin: 0.5rem 0 0; }
    .prompt { font-weight: 700; background: #e8eefc; }
    input[type=range] { width: min(28rem, 100%); }
  `];

  constructor() { super(); this.index = -1; }

  override render() {
    const c = this.controller;
    if (!c || c.checkpoints.status !== 'complete' || c.checkpoints.value.length === 0) {
      return html`<p class="muted">Samples appear once there is a checkpoint.</p>`;
    }
    const list = c.checkpoints.value;
    const i = this.index < 0 || this.index >= list.length ? list.length - 1 : this.index;
    const ck = list[i]!;
    const s = c.samples.get(ck.id);
    if (!s) queueMicrotask(() => void c.loadSample(ck));
    return html`
      <label for="sample-step">Checkpoint at step <strong data-sample-step>${ck.step}</strong></label>
      <input id="sample-step" type="range" min="0" max=${list.length - 1} .value=${String(i)}
        aria-valuetext=${`step ${ck.step}`} @input=${(e: Event) => { this.index = Number((e.target as HTMLInputElement).value); }}>
      <pre aria-live="polite" data-sample=${ck.id}>${!s || s.status === 'pending' ? 'Sampling…'
        : s.status === 'error' ? `No sample: ${s.error}`
        : html`<span class="prompt">${s.value.prompt}</span>${s.value.text}`}</pre>`;
  }
}

/** How volunteers reach each other: direct vs relayed exchanges, link failures and why, flagged peers. */
export class ConnectivityPanel extends Part {
  static override styles = [theme, css`
    p { margin: 0 0 0.4rem; }
    ul { margin: 0.2rem 0 0.6rem; padding-left: 1.2rem; }
    li { overflow-wrap: anywhere; }
  `];
  override render() {
    const c = this.controller;
    if (!c) return nothing;
    const v = c.connectivity;
    const total = v.direct + v.relayed;
    return html`
      <p data-connectivity-shares>${total === 0 ? 'No exchange has named its link yet.'
        : html`<strong>${formatCount(v.direct)}</strong> direct, <strong>${formatCount(v.relayed)}</strong> through a TURN relay
          (${Math.round((v.relayFraction ?? 0) * 100)}% relayed).`}
        <span data-link-failures>${v.linkFailures === 0 ? 'No link has failed to open.' : `${formatCount(v.linkFailures)} links failed to open.`}</span></p>
      ${v.reasons.length === 0 ? nothing : html`<p>Why links failed:</p>
        <ul data-link-reasons>${v.reasons.map((r) => html`<li>${formatCount(r.count)} × ${r.reason}</li>`)}</ul>`}
      ${v.failing.length === 0 ? nothing : html`<p>Training alone because links keep failing:</p>
        <ul data-failing-peers>${v.failing.map((f) => html`<li><code>${f.peerId}</code>: ${f.reason}</li>`)}</ul>`}`;
  }
}

customElements.define('murmur-alerts', AlertList);
customElements.define('murmur-connectivity', ConnectivityPanel);
customElements.define('murmur-checkpoints', CheckpointList);
customElements.define('murmur-samples', SampleViewer);
declare global {
  interface HTMLElementTagNameMap { 'murmur-alerts': AlertList; 'murmur-checkpoints': CheckpointList; 'murmur-samples': SampleViewer; 'murmur-connectivity': ConnectivityPanel }
}
