// <murmur-peer-grid>: the per-peer health table, virtualised: only the rows in view (plus a few)
// are in the DOM, so 500 peers cost what 20 do. Stale peers (not heard from recently, or gone)
// are highlighted and say so in words, not only in colour. The caption counts the gone peers the
// controller forgot too (it holds the newest GONE_PEER_CAP), so the totals are not cut short.
import { LitElement, html, css, nothing } from 'lit';
import type { PeerRow } from '../controllers/dashboard-controller.ts';
import { formatAgo, formatCount, formatLoss } from '../core/format.ts';
import { theme } from './theme.ts';

const ROW = 30; // px, fixed row height is what makes the windowing arithmetic exact
const OVERSCAN = 6;

export class PeerGrid extends LitElement {
  static override properties = {
    rows: { attribute: false },
    now: { type: Number },
    staleMs: { type: Number, attribute: 'stale-ms' },
    forgotten: { type: Number },
    scrollTop: { state: true },
  };
  declare rows: PeerRow[];
  declare now: number;
  declare staleMs: number;
  /** Peers that left or went stale and are no longer listed (DashboardController.forgottenPeers). */
  declare forgotten: number;
  declare scrollTop: number;

  static override styles = [theme, css`
    :host { display: block; }
    .scroller { max-height: 330px; overflow-y: auto; border: 1px solid var(--murmur-line); border-radius: var(--murmur-radius); position: relative; background: var(--murmur-bg); }
    .head, .row { display: grid; grid-template-columns: 11.5rem minmax(8rem, 1.6fr) 6rem 5rem 5rem 7rem minmax(8rem, 1fr); gap: 0.5rem; align-items: center; padding: 0 0.6rem; font-size: 0.85rem; }
    .head { position: sticky; top: 0; z-index: 1; background: var(--murmur-panel); font-weight: 600; height: ${ROW}px; border-bottom: 1px solid var(--murmur-line); }
    .row { position: absolute; left: 0; right: 0; height: ${ROW}px; border-bottom: 1px solid #f0f1f4; }
    .row.stale { background: #fff4e5; color: #6b4a00; }
    .num { text-align: right; font-variant-numeric: tabular-nums; }
    .id, .partner { font-family: ui-monospace, monospace; font-size: 0.8rem; }
    /* Every cell holds a peer's claim (an adapter name of 200 characters, a step of 16 digits, a
       loss of 10): cut to its column, whole in its title, never drawn over the next one. */
    .cell { overflow: hidden; text-overflow: ellipsis; white-space: nowrap; }
    .badge { font-size: 0.72rem; font-weight: 700; border: 1px solid currentColor; border-radius: 4px; padding: 0 0.3em; margin-left: 0.3em; }
  `];

  constructor() {
    super();
    this.rows = [];
    this.now = Date.now();
    this.staleMs = 30_000;
    this.forgotten = 0;
    this.scrollTop = 0;
  }

  override render() {
    const rows = this.rows;
    const viewport = 330 - ROW;
    const first = Math.max(0, Math.floor(this.scrollTop / ROW) - OVERSCAN);
    const last = Math.min(rows.length, Math.ceil((this.scrollTop + viewport) / ROW) + OVERSCAN);
    const stale = rows.filter((r) => this.stale(r)).length;
    return html`
      <p class="muted" id="grid-caption">${rows.length} peers, ${rows.length - stale} live${stale ? `, ${stale} stale` : ''}${this.forgotten
        ? `, and ${this.forgotten} more that left or went stale earlier, no longer listed` : ''}.
        Stale: not heard from for ${Math.round(this.staleMs / 1000)} s or left.</p>
      <div class="scroller" tabindex="0" style="height:${Math.min(330, (rows.length + 1) * ROW + 2)}px" role="table" aria-labelledby="grid-caption" aria-rowcount=${rows.length + 1}
        @scroll=${(e: Event) => { this.scrollTop = (e.target as HTMLElement).scrollTop; }}>
        <div class="head" role="row" aria-rowindex="1">
          <span role="columnheader">Peer</span><span role="columnheader">GPU adapter</span>
          <span role="columnheader" class="num">tokens/s</span><span role="columnheader" class="num">step</span>
          <span role="columnheader" class="num">loss</span><span role="columnheader">last seen</span><span role="columnheader">last partner</span>
        </div>
        <div style="height:${rows.length * ROW}px" role="presentation"></div>
        ${rows.slice(first, last).map((r, k) => {
          const i = first + k;
          const stale = this.stale(r);
          return html`<div class="row ${stale ? 'stale' : ''}" role="row" aria-rowindex=${i + 2} data-peer=${r.id} data-stale=${stale}
            style="top:${ROW + i * ROW}px">
            <span role="cell" class="cell id">${r.id}</span>
            <span role="cell" class="cell" title=${r.adapter ?? ''}>${r.adapter ?? '–'}</span>
            <span role="cell" class="cell num">${formatCount(r.tokensPerS)}</span>
            <span role="cell" class="cell num" title=${r.step}>${r.step}</span>
            <span role="cell" class="cell num" title=${formatLoss(r.trainLoss)}>${formatLoss(r.trainLoss)}</span>
            <span role="cell" class="cell">${formatAgo(this.now - r.lastSeen)}${stale ? html`<span class="badge">${r.left ? 'left' : 'stale'}</span>` : nothing}</span>
            <span role="cell" class="cell partner">${r.partner ?? '–'}</span>
          </div>`;
        })}
      </div>`;
  }

  private stale(r: PeerRow): boolean {
    return r.left || this.now - r.lastSeen > this.staleMs;
  }
}

customElements.define('murmur-peer-grid', PeerGrid);
declare global { interface HTMLElementTagNameMap { 'murmur-peer-grid': PeerGrid } }
