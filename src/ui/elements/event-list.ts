// <murmur-events>: the run's events, newest first (peers joining and leaving, partners reporting a
// peer for a bad update, checkpoints saved, deleted or failed, run changes). The sentences are
// made once when an event arrives (src/ui/core/events.ts); this only lays them out, and only
// when the list changed: the controller notifies every refresh, the list changes far less often.
import { LitElement, html, css, nothing, type PropertyValues } from 'lit';
import { repeat } from 'lit/directives/repeat.js';
import type { DashboardController, RunEventView } from '../controllers/dashboard-controller.ts';
import { LitWatch } from '../controllers/observable.ts';
import { theme } from './theme.ts';

export class EventList extends LitElement {
  static override properties = { controller: { attribute: false } };
  declare controller: DashboardController | null;
  private watch = new LitWatch(this, () => this.controller);
  private renderedVersion = -1;
  /** Formatted times by event id: date formatting is the costliest part of a render. */
  private times = new Map<number, { iso: string; text: string }>();

  static override styles = [theme, css`
    :host { display: block; }
    p { margin: 0 0 0.4rem; font-size: 0.85rem; }
    ol { list-style: none; margin: 0; padding: 0; max-height: 290px; overflow-y: auto; border: 1px solid var(--murmur-line); border-radius: var(--murmur-radius); background: var(--murmur-bg); }
    li { display: grid; grid-template-columns: 5.6rem 6.2rem minmax(0, 1fr); gap: 0.5rem; align-items: baseline; padding: 0.3rem 0.6rem; border-bottom: 1px solid #f0f1f4; border-left: 4px solid transparent; font-size: 0.85rem; }
    li:last-child { border-bottom: 0; }
    li.bad { border-left-color: var(--murmur-bad); background: #fdecea; }
    li.warn { border-left-color: var(--murmur-warn); background: #fff8eb; }
    li.ok { border-left-color: var(--murmur-ok); }
    time { font-variant-numeric: tabular-nums; color: var(--murmur-muted); white-space: nowrap; }
    .tag { font-size: 0.72rem; font-weight: 700; text-transform: uppercase; letter-spacing: 0.03em; white-space: nowrap; color: var(--murmur-muted); }
    li.bad .tag { color: var(--murmur-bad); }
    .text { overflow-wrap: anywhere; }
    .detail { display: block; font-size: 0.8rem; }
  `];

  constructor() { super(); this.controller = null; }

  protected override willUpdate(changed: PropertyValues<this>): void {
    if (changed.has('controller')) { this.watch.rebind(); this.renderedVersion = -1; }
  }

  protected override shouldUpdate(changed: PropertyValues<this>): boolean {
    return changed.has('controller') || (this.controller?.eventsVersion ?? -1) !== this.renderedVersion;
  }

  override render() {
    const c = this.controller;
    if (!c) return nothing;
    this.renderedVersion = c.eventsVersion;
    const list = c.events;
    if (list.length === 0) {
      return html`<p class="muted" data-events="none">No run events yet: peers joining and leaving, updates a partner rejected, and checkpoints appear here.</p>`;
    }
    if (this.times.size > 4 * list.length) this.times.clear();
    return html`
      <p class="muted">${list.length < c.eventsSeen ? `The newest ${list.length} of ${c.eventsSeen} events received` : `${list.length} event${list.length === 1 ? '' : 's'}`}, newest first.</p>
      <ol tabindex="0" role="log" aria-label="Run events, newest first">
        ${repeat(list, (e) => e.id, (e) => { const time = this.time(e); return html`<li class=${e.tone} data-event=${e.kind}>
          <time datetime=${time.iso}>${time.text}</time>
          <span class="tag">${e.tag}</span>
          <span class="text">${e.text}${e.detail ? html`<span class="detail muted">${e.detail}</span>` : nothing}</span>
        </li>`; })}
      </ol>`;
  }

  /** Time of day; the date too when it is not today. */
  private time(e: RunEventView): { iso: string; text: string } {
    let s = this.times.get(e.id);
    if (s === undefined) {
      const d = new Date(e.t);
      s = { iso: d.toISOString(), text: d.toDateString() === new Date().toDateString() ? d.toLocaleTimeString() : d.toLocaleString() };
      this.times.set(e.id, s);
    }
    return s;
  }
}

customElements.define('murmur-events', EventList);
declare global { interface HTMLElementTagNameMap { 'murmur-events': EventList } }
