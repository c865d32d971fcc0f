// <murmur-volunteer-panel>: the volunteer page. Renders a TrainingController: what the run is,
// what runs here and what leaves this machine, the GPU check, consent, controls, intensity and
// the live figures. All state lives in the controller. A click on I agree or Start counts only once
// the page has been at the front, and the button in place, for half a second (pageGate,
// src/ui/core/settle.ts): a site could bring the page under a click it asked for.
import { LitElement, html, css, nothing, type PropertyValues, type TemplateResult } from 'lit';
import type { Figures, PauseReason, TrainingController } from '../controllers/training-controller.ts';
import { LitWatch } from '../controllers/observable.ts';
import { formatBytes, formatCount, formatDuration, formatLoss, formatRate } from '../core/format.ts';
import { MIN_INTENSITY } from '../core/duty.ts';
import { pageGate, PAGE_REFUSED } from '../core/settle.ts';
import type { RunSummary, SessionStart } from '../ports.ts';
import { theme } from './theme.ts';

const REASON_TEXT: Record<PauseReason, string> = {
  user: 'you paused it',
  hidden: 'this tab is hidden (training pauses while you are elsewhere; you can change that below)',
  battery: 'your device is on a low battery',
  pressure: 'your device reports critical load or heat (Compute Pressure)',
};

export class VolunteerPanel extends LitElement {
  static override properties = { controller: { attribute: false }, refused: { state: true } };
  declare controller: TrainingController | null;
  /** Why the last click on I agree or Start did not count; cleared by one that did. */
  declare refused: string | null;

  private watch = new LitWatch(this, () => this.controller);
  /** The buttons that consent and start, by their data-action. */
  private gate = pageGate(window, () => [...this.renderRoot.querySelectorAll<HTMLElement>(GUARDED)].map((b) => [b.dataset.action!, b]));

  static override styles = [theme, css`
    :host { display: block; max-width: 56rem; margin: 0 auto; padding: 1.5rem 1rem 3rem; }
    h1 { font-size: 1.6rem; margin: 0 0 0.25rem; }
    h2 { font-size: 1.1rem; margin: 0 0 0.6rem; }
    section { background: var(--murmur-panel); border: 1px solid var(--murmur-line); border-radius: var(--murmur-radius); padding: 1rem 1.2rem; margin: 1rem 0; }
    .cols { display: grid; grid-template-columns: 1fr 1fr; gap: 0 1.5rem; }
    @media (max-width: 640px) { .cols { grid-template-columns: 1fr; } }
    ul { margin: 0.3rem 0; padding-left: 1.2rem; }
    li { margin: 0.15rem 0; }
    .row { display: flex; flex-wrap: wrap; gap: 0.6rem; align-items: center; }
    .status { font-weight: 600; padding: 0.7rem 1rem; border-radius: var(--murmur-radius); border-left: 5px solid var(--murmur-muted); background: var(--murmur-bg); margin: 0.8rem 0; }
    .status.training { border-color: var(--murmur-ok); }
    .status.paused, .status.waiting-peers { border-color: var(--murmur-warn); }
    .status.error { border-color: var(--murmur-bad); }
    .status .detail { font-weight: 400; color: var(--murmur-muted); display: block; margin-top: 0.2rem; }
    .gpu-ok { color: var(--murmur-ok); font-weight: 600; }
    .gpu-bad { border-left: 5px solid var(--murmur-bad); padding-left: 0.8rem; }
    .gpu-bad h3 { margin: 0 0 0.3rem; font-size: 1rem; color: var(--murmur-bad); }
    dl.figures { display: grid; grid-template-columns: repeat(auto-fill, minmax(11rem, 1fr)); gap: 0.6rem; margin: 0; }
    dl.figures div { background: var(--murmur-bg); border: 1px solid var(--murmur-line); border-radius: var(--murmur-radius); padding: 0.5rem 0.7rem; }
    dt { font-size: 0.8rem; color: var(--murmur-muted); }
    dd { margin: 0; font-size: 1.2rem; font-variant-numeric: tabular-nums; font-weight: 600; overflow-wrap: anywhere; }
    dd[data-figure=partner] { font-family: ui-monospace, monospace; font-size: 0.95rem; padding-top: 0.2rem; }
    input[type=range] { width: min(22rem, 100%); accent-color: var(--murmur-accent); }
    label { display: inline-flex; gap: 0.5rem; align-items: center; }
    .consent-given { color: var(--murmur-ok); }
    .refused { color: var(--murmur-bad); font-weight: 600; }
    .sensors { font-size: 0.92rem; }
  `];

  constructor() {
    super();
    this.controller = null;
    this.refused = null;
  }

  protected override willUpdate(changed: PropertyValues<this>): void {
    if (changed.has('controller')) this.watch.rebind();
  }

  protected override firstUpdated(): void {
    // A click where a guarded button is, while it takes no pointer events, lands behind it: it is
    // answered too.
    this.renderRoot.addEventListener('click', (ev) => {
      const e = ev as MouseEvent;
      if (e.detail > 0 && !(e.target as Element).matches(GUARDED) && this.gate.at(e.clientX, e.clientY)) this.refused = PAGE_REFUSED;
    });
  }

  protected override updated(): void {
    this.gate.refresh();
  }

  /** Runs `act` when this click on a guarded button counts; otherwise says to click again. */
  private guarded(ev: Event, act: () => void): void {
    const b = ev.currentTarget as HTMLElement;
    this.refused = this.gate.verdict(b.dataset.action!, b, ev.timeStamp, (ev as MouseEvent).detail === 0);
    if (this.refused === null) act();
  }

  override render(): TemplateResult {
    const c = this.controller;
    if (!c) return html`<p>Loading…</p>`;
    return html`
      <header>
        <h1>Murmur: lend your GPU to train an open language model</h1>
        <p class="muted">Training runs in this browser tab, on your graphics card, only while you let it.</p>
      </header>
      ${this.renderRun()}
      ${this.renderGpu()}
      ${this.renderControls()}
      ${c.canHelp && (c.running || c.phase !== 'idle') ? this.renderFigures(c.figures) : nothing}
    `;
  }

  private renderRun(): TemplateResult {
    const c = this.controller!;
    if (c.run.status === 'pending') return html`<section aria-busy="true"><h2>This run</h2><p>Loading the run description…</p></section>`;
    if (c.run.status === 'error') {
      return html`<section role="alert"><h2>This run</h2><p>The coordinator did not answer: ${c.run.error}</p>
        <p>Nothing has started. Reload the page to try again.</p></section>`;
    }
    const r = c.run.value;
    return html`
      <section aria-labelledby="run-h">
        <h2 id="run-h">What this run trains</h2>
        <p><strong>${r.name}</strong>: a ${r.preset} GPT-style model (${formatCount(r.params)} parameters) learning to write
          like its training text, <em>${r.dataset}</em>. Run by <strong>${r.operator}</strong>.
          Results (loss curves, samples of generated text, and the model weights as downloadable checkpoints) are
          published on the <a href=${r.resultsUrl}>research dashboard</a>.</p>
        <div class="cols">
          <div>
            <h2>What runs on your machine</h2>
            <ul>
              <li>A background worker in this tab trains the model on your GPU (WebGPU), in short bursts with rests
                set by the intensity control below.</li>
              <li>It downloads the training text from this coordinator, and the current model from it or from another volunteer.</li>
              <li>Nothing is installed, nothing on your disk is read, and everything stops when you close the tab.</li>
            </ul>
          </div>
          <div>
            <h2>What leaves your machine</h2>
            <ul>
              <li data-ice-policy=${r.icePolicy ?? 'all'}>Every ${r.H} training steps: the model's weights and your progress (about ${formatBytes(r.bytesPerExchange)})
                go to one other volunteer over a WebRTC link. ${r.icePolicy === 'relay'
                  ? 'This run sends every link through its own relay server, so other volunteers never see your IP address.'
                  : 'Where a direct link works it is used, and it shows that volunteer your IP address; otherwise the link goes through this run\'s relay server.'}</li>
              <li data-link-rate=${r.linkBytesPerS}>As much comes back from that volunteer. For the exchange to finish within the ${r.exchangeWaitS} s
                each side waits, your connection needs at least ${formatRate(r.linkBytesPerS)} each way; on a slower one every
                exchange misses and your GPU trains alone. <span data-first-link-rate=${r.firstLinkBytesPerS}>Your first exchange, before the
                wait is fitted to your connection, has ${r.firstExchangeWaitS} s: it needs ${formatRate(r.firstLinkBytesPerS)} each way,
                and on a slower one that first round is trained alone.</span></li>
              <li>To this coordinator: training figures (loss, speed, bytes sent) and your GPU's name, under a random
                id for this session. No account, no cookies, no tracking.</li>
              <li>Your consent is kept in this browser only, for 30 days.</li>
            </ul>
          </div>
        </div>
      </section>`;
  }

  private renderGpu(): TemplateResult {
    const c = this.controller!;
    if (c.gpu.status === 'pending') return html`<section aria-busy="true"><h2>Your GPU</h2><p>Checking for WebGPU…</p></section>`;
    if (c.gpu.status === 'error') return html`<section class="gpu-bad" role="alert"><h2>Your GPU</h2><p>The GPU check failed: ${c.gpu.error}</p></section>`;
    const g = c.gpu.value;
    if (!g.ok) {
      return html`<section class="gpu-bad" data-gpu="unsupported" data-code=${g.code} role="alert" aria-labelledby="gpu-h">
        <h2 id="gpu-h">Your GPU</h2>
        <h3>${g.title}: this device cannot help with training right now.</h3>
        <p>${g.explanation}</p>
        <p><strong>What you can do:</strong> ${g.advice}</p>
        <p class="muted">Nothing was started and nothing was sent. You can still follow the run on the
          <a href=${c.run.status === 'complete' ? c.run.value.resultsUrl : '/dashboard'}>dashboard</a>.</p>
      </section>`;
    }
    return html`<section aria-labelledby="gpu-h" data-gpu="ok">
      <h2 id="gpu-h">Your GPU</h2>
      <p><span class="gpu-ok">✓ Found:</span> ${g.name}.
        ${g.adapter.isSoftware ? html`<br><strong>This is a software GPU</strong> (your processor imitating a graphics card):
          it works, but about a hundred times slower and it keeps your CPU busy.` : nothing}</p>
    </section>`;
  }

  private renderControls(): TemplateResult | typeof nothing {
    const c = this.controller!;
    if (!c.canHelp) return nothing;
    const consented = c.consentRecord !== null;
    const running = c.running;
    const userPaused = c.pauseReasons.includes('user');
    return html`
      <section aria-labelledby="ctl-h">
        <h2 id="ctl-h">Take part</h2>
        ${consented ? html`
          <p class="consent-given" data-consent="given">✓ You agreed on ${date(c.consentRecord!.grantedAt)}; this lasts until
            ${date(c.consentRecord!.expiresAt)}${c.consentRemembered ? '' : ' (this browser blocks storage, so only until you leave the page)'}.
            <button @click=${() => void c.revokeConsent()}>Withdraw consent</button></p>`
        : html`
          <p>Nothing runs until you agree and press Start. You can pause or stop at any time, and withdraw your consent here.</p>
          <div class="row"><button class="primary" data-action="consent" @click=${(e: Event) => this.guarded(e, () => c.giveConsent())}>I agree: let Murmur use my GPU</button></div>`}
        ${c.phase !== 'idle' || consented ? this.renderStatus() : nothing}
        <div class="row" role="group" aria-label="Training controls">
          ${!running ? html`<button class="primary" data-action="start" ?disabled=${!consented} @click=${(e: Event) => this.guarded(e, () => c.start())}>Start training</button>` : nothing}
          ${running && !userPaused ? html`
            <button data-action="pause-now" @click=${() => c.pauseNow()}>Pause now</button>
            ${c.phase === 'paused' ? nothing : html`<button data-action="pause-after" ?disabled=${c.pauseAfterStep} @click=${() => c.pauseAfterOuterStep()}
              title="Finish the current outer step (its remaining inner steps and the exchange with a partner), then pause">
              Finish this step, then pause</button>`}` : nothing}
          ${running && userPaused ? html`<button class="primary" data-action="resume" @click=${(e: Event) => this.guarded(e, () => c.resume())}>Resume</button>` : nothing}
          ${running ? html`<button data-action="stop" ?disabled=${c.phase === 'stopping'} @click=${() => void c.stop()}>Stop</button>` : nothing}
        </div>
        ${this.refused ? html`<p class="refused" role="alert" data-refused>${this.refused}</p>` : nothing}
        <p>
          <label for="intensity">GPU intensity</label>
          <input id="intensity" type="range" min=${MIN_INTENSITY * 100} max=${c.maxIntensity * 100} step="5"
            .value=${String(Math.round(c.intensity * 100))}
            aria-describedby="intensity-help"
            aria-valuetext=${`${Math.round(c.intensity * 100)}% of the time`}
            @input=${(e: Event) => c.setIntensity(Number((e.target as HTMLInputElement).value) / 100)}>
          <output for="intensity" data-figure="intensity">${Math.round(c.intensity * 100)}%</output>
        </p>
        <p id="intensity-help" class="muted">The share of time your GPU works for Murmur; it rests the remainder, which keeps it
          cooler and quieter. Lower it if your fans get loud or other apps feel slow.</p>
        <p><label><input type="checkbox" data-action="background" .checked=${!c.pauseWhenHidden}
          @change=${(e: Event) => c.setPauseWhenHidden(!(e.target as HTMLInputElement).checked)}>
          Keep training while this tab is hidden</label></p>
        ${this.renderSensors()}
      </section>`;
  }

  private renderStatus(): TemplateResult {
    const c = this.controller!;
    const f = c.figures;
    let text: string, detail: string | TemplateResult = '';
    switch (c.phase) {
      case 'idle': text = 'Not training.'; detail = c.consentRecord ? 'Press Start when you are ready.' : ''; break;
      case 'starting': text = 'Starting…'; detail = 'Connecting to the coordinator, preparing your GPU and fetching the run\'s current model.'; break;
      case 'training':
        text = c.pauseAfterStep ? `Training; will pause after this step (${f.stepsToOuter} inner steps and one exchange left).` : 'Training.';
        detail = f.peersOnline === 0
          ? 'You are the only volunteer online: your GPU trains on its own and shares its progress with the first partner who joins.'
          : `${f.peersOnline} other volunteer${f.peersOnline === 1 ? '' : 's'} online.`;
        if (c.effectiveIntensity < c.intensity && c.effectiveIntensity > 0) {
          detail = html`${detail} Running at half your intensity: ${c.policy.reasons.map((r) => REASON_TEXT[r as PauseReason]).join('; ')}.`;
        }
        break;
      case 'waiting-peers':
        text = 'Waiting for peers.';
        detail = f.peersOnline === 0
          ? 'No other volunteer is online to exchange with. After a short wait your GPU takes this outer step alone and goes on training.'
          : `Looking for a partner among ${f.peersOnline} volunteer${f.peersOnline === 1 ? '' : 's'} for outer step ${f.rounds + 1}.`;
        break;
      case 'paused':
        text = 'Paused.';
        detail = `Because ${c.pauseReasons.map((r) => REASON_TEXT[r]).join('; ')}.` +
          (c.pauseReasons.includes('user') ? ' Your progress is kept: Resume goes on from here.' : ' Training resumes by itself when that changes.');
        break;
      case 'stopping': text = 'Stopping…'; detail = 'Finishing the burst in flight, then releasing your GPU.'; break;
      case 'stopped': text = 'Stopped.'; detail = 'Your GPU is released. Thank you!'; break;
      case 'error': text = 'Training stopped because of an error.'; detail = c.error ?? ''; break;
    }
    return html`<div class="status ${c.phase}" role="status" aria-live="polite" data-phase=${c.phase}>${text}<span class="detail">${detail}</span></div>`;
  }

  private renderSensors(): TemplateResult {
    const c = this.controller!;
    const s = c.sensorSupport;
    const sensors = c.policy;
    const battery = s.battery
      ? sensors.sources.battery.level === 2 ? 'plugged in or not reported: full intensity.' : sensors.sources.battery.level === 1 ? 'on battery: half intensity.' : 'low battery: paused until 30% or charging.'
      : 'this browser does not report the battery, so Murmur cannot back off on battery for you. Lower the intensity yourself when unplugged.';
    const pressure = s.pressure
      ? sensors.sources.pressure.level === 2 ? 'normal.' : sensors.sources.pressure.level === 1 ? 'serious: half intensity.' : 'critical: paused.'
      : 'this browser does not report compute pressure (heat/load), so Murmur cannot back off by itself. Watch your fans.';
    return html`<ul class="sensors muted" aria-label="Automatic back-off">
      <li>Battery: ${battery}</li>
      <li>Device load and heat: ${pressure}</li>
      <li>Back-off recovers only after 30 s of better readings, so your GPU does not switch on and off.</li>
    </ul>`;
  }

  private renderFigures(f: Figures): TemplateResult {
    const c = this.controller!;
    const run = c.run.status === 'complete' ? c.run.value : null;
    const fig = (key: string, label: string, value: string | TemplateResult) =>
      html`<div><dt id=${`fig-${key}`}>${label}</dt><dd aria-labelledby=${`fig-${key}`} data-figure=${key}>${value}</dd></div>`;
    return html`
      <section aria-labelledby="fig-h">
        <h2 id="fig-h">Live figures</h2>
        ${f.linksFailing ? html`<p class="links-failing" role="alert" data-links-failing>Your browser cannot open a link to other volunteers,
          so it is training alone and your work is not shared yet: ${f.linksFailing}. The run's operator can fix this (docs/deploy.md);
          training goes on meanwhile.</p>` : nothing}
        <dl class="figures">
          ${fig('loss', 'Local training loss', formatLoss(f.loss))}
          ${fig('tokens-per-s', 'Tokens per second', formatCount(f.tokensPerS))}
          ${fig('duty', 'GPU busy (last 30 s)', `${Math.round(f.duty * 100)}%`)}
          ${fig('rounds', 'Outer steps', `${f.rounds}${f.soloRounds ? ` (${f.soloRounds} alone)` : ''}`)}
          ${fig('partner', 'Current partner', f.partner ?? (f.peersOnline === 0 ? 'none online' : f.soloReason ? `none: ${f.soloReason}` : '–'))}
          ${fig('bytes-up', 'Uploaded', formatBytes(f.bytesUp))}
          ${fig('bytes-down', 'Downloaded', formatBytes(f.bytesDown))}
          ${fig('donated', 'GPU time donated', formatDuration(f.donatedMs))}
          ${fig('tokens', 'Tokens you trained', formatCount(f.tokensTrained))}
          ${fig('accepted', 'Exchanges accepted by partners', String(f.exchangesAccepted))}
          ${f.divergences ? fig('divergences', 'Steps redone after the loss blew up', `${f.divergences} time${f.divergences === 1 ? '' : 's'}`) : nothing}
          ${f.gpuResets ? fig('gpu-resets', 'GPU resets (the steps since the last exchange were trained again)', `${f.gpuResets} time${f.gpuResets === 1 ? '' : 's'}`) : nothing}
        </dl>
        ${c.joinedFrom ? html`<p class="muted" data-start=${c.joinedFrom.source}>${startText(c.joinedFrom)}</p>` : nothing}
        ${run ? html`<p class="muted">One step trains on ${formatCount(run.tokensPerStep)} tokens; an outer step is every ${run.H} steps.</p>` : nothing}
      </section>`;
  }
}

/**
 * The buttons whose click must be the volunteer's own (pageGate): consent, start, and resume,
 * which undoes the volunteer's own pause as start undoes a stop.
 */
const GUARDED = 'button[data-action=consent], button[data-action=start], button[data-action=resume]';

/** Where this replica's weights came from, in the volunteer's words. */
function startText(s: SessionStart): string {
  const at = `step ${s.step}, outer step ${s.round}`;
  switch (s.source) {
    case 'peer': return `Your GPU picked up the run where it stands: it copied the current model from volunteer ${s.from} (${at}).`;
    case 'checkpoint': return `Your GPU picked up the run from its newest checkpoint (${at}): no other volunteer could share the model.`;
    case 'fresh': return 'Your GPU started the model from scratch: no volunteer or checkpoint had trained it yet.';
  }
}

function date(ms: number): string {
  return new Date(ms).toLocaleDateString(undefined, { year: 'numeric', month: 'short', day: 'numeric' });
}

customElements.define('murmur-volunteer-panel', VolunteerPanel);

declare global {
  interface HTMLElementTagNameMap { 'murmur-volunteer-panel': VolunteerPanel }
}

export type { RunSummary };
