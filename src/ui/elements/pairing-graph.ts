// <murmur-pairings>: who exchanged with whom recently, as an SVG graph (peers on a circle, one
// edge per pair, fresher edges darker) with a text list of the latest pairings beside it.
import { LitElement, html, svg, css } from 'lit';
import type { Pairing } from '../controllers/dashboard-controller.ts';
import { formatAgo } from '../core/format.ts';
import { theme } from './theme.ts';

const MAX_NODES = 60;
const SIZE = 260;

export class PairingGraph extends LitElement {
  static override properties = { pairings: { attribute: false }, now: { type: Number }, windowMs: { type: Number, attribute: 'window-ms' } };
  declare pairings: Pairing[];
  declare now: number;
  declare windowMs: number;

  static override styles = [theme, css`
    :host { display: grid; grid-template-columns: ${SIZE}px 1fr; gap: 1rem; align-items: start; }
    @media (max-width: 700px) { :host { grid-template-columns: 1fr; } }
    ol { margin: 0; padding-left: 1.2rem; font-size: 0.85rem; max-height: ${SIZE}px; overflow: auto; }
    code { font-size: 0.8rem; }
    svg { background: var(--murmur-bg); border: 1px solid var(--murmur-line); border-radius: var(--murmur-radius); }
  `];

  constructor() {
    super();
    this.pairings = [];
    this.now = Date.now();
    this.windowMs = 300_000;
  }

  override render() {
    // Nodes: peers of the freshest edges, at most MAX_NODES so the drawing stays legible.
    const nodes: string[] = [];
    for (const p of this.pairings) {
      for (const id of [p.a, p.b]) if (!nodes.includes(id) && nodes.length < MAX_NODES) nodes.push(id);
    }
    nodes.sort();
    const pos = new Map(nodes.map((id, i) => {
      const a = (2 * Math.PI * i) / Math.max(1, nodes.length) - Math.PI / 2;
      return [id, [SIZE / 2 + (SIZE / 2 - 18) * Math.cos(a), SIZE / 2 + (SIZE / 2 - 18) * Math.sin(a)] as const];
    }));
    const edges = this.pairings.filter((p) => pos.has(p.a) && pos.has(p.b));
    const mins = Math.round(this.windowMs / 60_000);
    return html`
      <svg width=${SIZE} height=${SIZE} viewBox="0 0 ${SIZE} ${SIZE}" role="img"
        aria-label=${`${this.pairings.length} pairings among ${nodes.length} peers in the last ${mins} minutes`}>
        ${edges.map((e) => {
          const [x1, y1] = pos.get(e.a)!, [x2, y2] = pos.get(e.b)!;
          const fresh = Math.max(0.15, 1 - (this.now - e.t) / this.windowMs);
          return svg`<line x1=${x1} y1=${y1} x2=${x2} y2=${y2} stroke="#2453c7" stroke-opacity=${fresh.toFixed(2)} stroke-width=${Math.min(4, 1 + Math.log2(e.count))}></line>`;
        })}
        ${nodes.map((id) => { const [x, y] = pos.get(id)!; return svg`<circle cx=${x} cy=${y} r="5" fill="#1d2330"><title>${id}</title></circle>`; })}
      </svg>
      <div>
        <p class="muted">${this.pairings.length ? `Latest pairings (last ${mins} min):` : `No pairings in the last ${mins} minutes.`}</p>
        <ol>${this.pairings.slice(0, 12).map((p) => html`<li><code>${p.a}</code> ↔ <code>${p.b}</code>, ${p.count} exchange${p.count === 1 ? '' : 's'}, ${formatAgo(this.now - p.t)}</li>`)}</ol>
      </div>`;
  }
}

customElements.define('murmur-pairings', PairingGraph);
declare global { interface HTMLElementTagNameMap { 'murmur-pairings': PairingGraph } }
