// <murmur-consent-window>: the widget's consent window (/consent#nonce), a pop-up the widget's
// frame opens on a click on its Start or Resume. It names the site that shows the widget and the
// run, says what donating means, and asks Allow or Don't allow; the frame trains only after Allow
// for its own nonce. A page of another site can fade, mask or zoom the frame in ways the frame
// cannot see, but not this window: the coordinator serves it with frame-ancestors 'none' and
// Cross-Origin-Opener-Policy (server/routes/web.ts), and its buttons take a click only once the
// window has been at the front, and the button in place, for half a second (pageGate,
// src/ui/core/settle.ts), as the volunteer page's do: a site could otherwise open it under a
// double-click it asked for.
//
// After Allow the window is the donation's own control, which the page cannot hide as it can hide
// the frame (a transparent mask-image): it says what runs and for whom, and its Stop donating, or
// closing it, ends the session on the coordinator, and the frame stops at its next claim
// (holdConsent, src/ui/embed/frame-bridge.ts). Its Stop is at once; its closing (pagehide) is told
// as leaving, which ends the session 15 s on unless the window watches again: a reload cannot be
// told from a close in the page, and the reloaded window (its #nonce kept) watches at once. The
// same holds before the answer: closing the window unanswered is Don't allow 15 s on, and a
// reloaded window can still answer. It watches the request every CONSENT_WATCH_MS while it asks
// or donates, and says when the widget has stopped: a Stop in the widget while this window still
// asks (a Resume's) withdraws the question, and the window then says so instead of asking. Stop takes any click: stopping is always safe.
import { LitElement, html, css, nothing, type TemplateResult } from 'lit';
import { pageGate, PAGE_REFUSED } from '../core/settle.ts';
import type { ConsentAsked, ConsentLink, ConsentWindowPort } from '../ports.ts';
import { formatBytes, formatRate } from '../core/format.ts';
import { theme } from './theme.ts';

/** How long the window looks for its request: the frame registers it while the window opens. */
export const FIND_MS = 10_000;
const FIND_EVERY_MS = 250;

/**
 * How often the window renews its side of the session while the donation runs: well inside the
 * coordinator's windowMs (server/consent.ts), which allows for a background window's timers
 * running once a minute. While it asks, the same watch takes back a leave of its page before it
 * was reloaded that reached the coordinator after the reloaded window's first watch: inside
 * leaveMs (15 s).
 */
export const CONSENT_WATCH_MS = 10_000;

type View =
  | { kind: 'loading' }
  | { kind: 'asking'; asked: ConsentAsked }
  | { kind: 'answered'; asked: ConsentAsked }
  /** Allowed, and the session is live: the window is the donation's Stop. */
  | { kind: 'donating'; asked: ConsentAsked }
  /** The session ended, and why; or the question did ('withdrawn': the widget stopped before it was answered). */
  | { kind: 'ended'; asked: ConsentAsked; why: 'stopped' | 'closed' | 'released' | 'gone' | 'withdrawn' }
  | { kind: 'error'; text: string };

export class ConsentWindow extends LitElement {
  static override properties = { view: { state: true }, refused: { state: true } };
  declare view: View;
  /** Why the last click on Allow or Don't allow did not count. */
  declare refused: string | null;
  private port: ConsentWindowPort | null = null;
  private key = '';
  private sending = false;
  private gate = pageGate(window, () => [...this.renderRoot.querySelectorAll<HTMLElement>('button[data-action]')].map((b) => [b.dataset.action!, b]));

  static override styles = [theme, css`
    :host { display: block; max-width: 30rem; margin: 0 auto; padding: 1.2rem 1rem 2rem; }
    h1 { font-size: 1.3rem; margin: 0 0 0.6rem; }
    .site { font-weight: 700; overflow-wrap: anywhere; }
    ul { margin: 0.4rem 0 0.8rem; padding-left: 1.2rem; }
    .row { display: flex; gap: 0.6rem; margin-top: 1rem; }
    button { font: inherit; border-radius: var(--murmur-radius); border: 1px solid var(--murmur-line); background: #fff; padding: 0.45em 1em; cursor: pointer; }
    button[data-action=allow], button[data-stop] { background: var(--murmur-accent); border-color: var(--murmur-accent); color: var(--murmur-accent-fg); font-weight: 600; }
    .refused, .error { color: var(--murmur-bad); font-weight: 600; }
  `];

  constructor() {
    super();
    this.view = { kind: 'loading' };
    this.refused = null;
  }

  /** Reads the request of `nonce`, looking again until the frame has registered it (FIND_MS at most) or the coordinator has refused it. */
  async load(port: ConsentWindowPort, nonce: string): Promise<void> {
    this.port = port;
    this.key = nonce;
    if (!/^[A-Za-z0-9_-]{22,86}$/.test(nonce)) {
      this.view = { kind: 'error', text: 'This window was opened without a consent request. Close it, and press Start in the Murmur widget.' };
      return;
    }
    const until = performance.now() + FIND_MS;
    for (;;) {
      try {
        const got = await port.load(nonce);
        // Refused when the frame registered it: the coordinator's reason, not a request that never was.
        if ('refused' in got) this.view = { kind: 'error', text: `${got.refused}. Nothing was started.` };
        else {
          this.show(got);
          // A request asked or a donation under way: this window may have been reloaded (or
          // opened again), and its page's pagehide told the coordinator it left; a watch now
          // takes that back.
          void this.watch();
        }
        return;
      } catch (e) {
        if (performance.now() >= until) {
          this.view = { kind: 'error', text: `${(e as Error).message} Nothing was started.` };
          return;
        }
      }
      await new Promise((r) => setTimeout(r, FIND_EVERY_MS));
    }
  }

  /**
   * The view for the request as the coordinator has it; a live session is watched. An ending is
   * said as its state names it, on the first load of a reloaded window too: 'withdrawn' (the
   * question taken back before an answer) is not 'released' (a donation the widget stopped).
   */
  private show(asked: ConsentAsked): void {
    switch (asked.state) {
      case 'pending': this.view = { kind: 'asking', asked }; break;
      case 'denied': this.view = { kind: 'answered', asked }; break;
      case 'allowed': this.view = { kind: 'donating', asked }; break;
      default: this.view = { kind: 'ended', asked, why: asked.state };
    }
  }

  /** One watch at a time, each CONSENT_WATCH_MS after the last answer. */
  private watching: ReturnType<typeof setTimeout> | undefined;

  private watchLater(): void {
    clearTimeout(this.watching);
    this.watching = setTimeout(() => void this.watch(), CONSENT_WATCH_MS);
  }

  /**
   * While it asks or donates: says the window is here (taking back a leave), renews its side of
   * the session, and says so once the widget has stopped.
   */
  private async watch(): Promise<void> {
    clearTimeout(this.watching);
    const v = this.view;
    if ((v.kind !== 'donating' && v.kind !== 'asking') || !this.port) return;
    let now: ConsentAsked | 'gone';
    try {
      now = await this.port.watch(this.key);
    } catch {
      this.watchLater(); // the coordinator for a moment unreachable: the session outlasts a few missed watches
      return;
    }
    if (this.view !== v) return;
    // Still asking: the buttons stay as they are (a click on them is answered as it was).
    if (v.kind === 'asking') {
      // Gone (expired): an answer now is told so when it is given.
      if (now === 'gone') return;
      // Answered, or the widget's Stop (or its page closing) withdrew the question ('withdrawn'): it asks no more.
      if (now.state !== 'pending') this.show(now);
    } else if (now === 'gone') this.view = { kind: 'ended', asked: v.asked, why: 'gone' };
    else this.show(now);
    if (this.view.kind === 'donating' || this.view.kind === 'asking') this.watchLater();
  }

  private async stopDonating(): Promise<void> {
    const v = this.view;
    if (v.kind !== 'donating' || this.sending || !this.port) return;
    this.sending = true;
    try {
      const now = await this.port.stop(this.key);
      this.view = { kind: 'ended', asked: now, why: now.state === 'released' ? 'released' : 'stopped' };
    } catch (e) {
      this.refused = `Not stopped: ${(e as Error).message} Close this window to stop.`;
    } finally {
      this.sending = false;
    }
  }

  override connectedCallback(): void {
    super.connectedCallback();
    window.addEventListener('pagehide', this.onClose);
  }

  override disconnectedCallback(): void {
    window.removeEventListener('pagehide', this.onClose);
    super.disconnectedCallback();
  }

  /**
   * Closing the window is, a short grace on (leaveMs, server/consent.ts), Don't allow while it asks
   * (the widget went on asking the coordinator once a second, and said to confirm in a window that
   * was gone, until the request expired 5 minutes on) and Stop while it donates. A reload sends
   * this too, and the reloaded window takes it back by watching at once: sending Don't allow here
   * showed the reloaded window "Not allowed", and the visitor could not answer.
   */
  private readonly onClose = (): void => {
    if ((this.view.kind === 'asking' || this.view.kind === 'donating') && this.port) this.port.leaveOnClose(this.key);
  };

  protected override firstUpdated(): void {
    // A click where Allow or Don't allow is, while it takes no pointer events, lands behind it: it
    // is answered too, as on the volunteer page.
    this.renderRoot.addEventListener('click', (ev) => {
      const e = ev as MouseEvent;
      if (e.detail > 0 && !(e.target as Element).matches('button[data-action]') && this.gate.at(e.clientX, e.clientY)) this.refused = PAGE_REFUSED;
    });
  }

  protected override updated(): void {
    this.gate.refresh();
  }

  private async answer(ev: Event, allow: boolean): Promise<void> {
    const b = ev.currentTarget as HTMLElement;
    this.refused = this.gate.verdict(b.dataset.action!, b, ev.timeStamp, (ev as MouseEvent).detail === 0);
    if (this.refused !== null || this.sending || !this.port) return;
    this.sending = true;
    try {
      this.show(await this.port.decide(this.key, allow));
      if (this.view.kind === 'donating') this.watchLater();
    } catch (e) {
      this.view = { kind: 'error', text: `Your answer was not taken: ${(e as Error).message}` };
    } finally {
      this.sending = false;
    }
  }

  override render(): TemplateResult {
    const v = this.view;
    switch (v.kind) {
      case 'loading': return html`<p>Loading the request…</p>`;
      case 'error': return html`<h1>Murmur</h1><p class="error" role="alert">${v.text}</p>`;
      case 'answered': return this.renderAnswered(v.asked);
      case 'asking': return this.renderAsking(v.asked);
      case 'donating': return this.renderDonating(v.asked);
      case 'ended': return this.renderEnded(v.asked, v.why);
    }
  }

  private renderAsking(a: ConsentAsked): TemplateResult {
    // The widget's ceiling: its frame refuses the page any intensity above it (hostIntensity).
    const ceiling = a.maxIntensity ?? 1;
    return html`
      <h1>Lend your GPU to Murmur?</h1>
      <p>The page on <span class="site" data-site>${a.site}</span> asks to start training on this device
        for the Murmur run <strong data-run>${a.runName}</strong> (${a.run}).</p>
      <ul>
        <li data-max-intensity=${ceiling}>Your graphics card trains part of an open language model inside that page's tab, in short bursts: at most
          ${Math.round(ceiling * 100)}% of its time, which the site can lower but not raise.</li>
        <li>It downloads training text and exchanges model updates with the coordinator and other volunteers: tens of MB, more over hours.</li>
        ${a.link ? this.renderLink(a.link) : nothing}
        <li>This window then stays open as its Stop: it stops when you press Stop here or in the widget, or close this window or that tab. Nothing is installed, and nothing else on this device is read.</li>
      </ul>
      <p>Only allow it if you pressed Start on that page yourself.</p>
      <div class="row">
        <button type="button" data-action="allow" @click=${(e: Event) => this.answer(e, true)}>Allow</button>
        <button type="button" data-action="deny" @click=${(e: Event) => this.answer(e, false)}>Don't allow</button>
      </div>
      ${this.refused ? html`<p class="refused" role="alert" data-refused>${this.refused}</p>` : nothing}`;
  }

  /**
   * What the run asks of the visitor's link (the coordinator's exchangeLink of the run), said as the
   * volunteer page and the widget's frame say it: an exchange's bytes each way, the least rate at
   * which it ends inside the wait, and the first exchange's.
   */
  private renderLink(l: ConsentLink): TemplateResult {
    return html`<li data-link=${l.leastBytesPerS} data-first-link=${l.firstBytesPerS}>Each exchange sends about ${formatBytes(l.bytes)} of model
      updates to one other volunteer and receives as much. It needs a connection of at least ${formatRate(l.leastBytesPerS)} each way
      to end within the ${l.waitS} s each side waits, and ${formatRate(l.firstBytesPerS)} for the first exchange (${l.firstWaitS} s);
      on a slower one your GPU trains alone.</li>`;
  }

  private renderAnswered(a: ConsentAsked): TemplateResult {
    return html`<h1>Murmur</h1><p role="status" data-answer=${a.state}>Not allowed. Nothing runs on this device; the widget on
      <span class="site">${a.site}</span> is back to its Start button.</p><p>You can close this window.</p>`;
  }

  private renderDonating(a: ConsentAsked): TemplateResult {
    return html`
      <h1>Donating your GPU to Murmur</h1>
      <p role="status" data-answer=${a.state} data-donating>The widget on <span class="site" data-site>${a.site}</span> is training the
        Murmur run <strong data-run>${a.runName}</strong> (${a.run}) on this device.</p>
      <p><strong>Closing this window stops it.</strong> Keep it open while you donate.</p>
      <div class="row"><button type="button" data-stop @click=${() => this.stopDonating()}>Stop donating</button></div>
      ${this.refused ? html`<p class="refused" role="alert" data-refused>${this.refused}</p>` : nothing}`;
  }

  private renderEnded(a: ConsentAsked, why: 'stopped' | 'closed' | 'released' | 'gone' | 'withdrawn'): TemplateResult {
    const site = html`<span class="site">${a.site}</span>`;
    if (why === 'withdrawn') {
      return html`<h1>Murmur</h1><p role="status" data-ended=${why}>The widget on ${site} stopped before you answered: its Stop was
        pressed, or its page was closed. Nothing was started, and nothing runs on this device for it.</p><p>You can close this window.</p>`;
    }
    const text = why === 'stopped' || why === 'closed' ? html`Stopped. The widget on ${site} stops training within a few seconds.`
      : why === 'released' ? html`The widget on ${site} stopped training: its Stop was pressed, it paused while out of view, or its page was closed.`
      : html`The widget on ${site} is gone: its page was closed or lost touch with Murmur.`;
    return html`<h1>Murmur</h1><p role="status" data-ended=${why}>${text} Nothing runs on this device for it now.</p><p>You can close this window.</p>`;
  }
}

customElements.define('murmur-consent-window', ConsentWindow);
declare global { interface HTMLElementTagNameMap { 'murmur-consent-window': ConsentWindow } }
