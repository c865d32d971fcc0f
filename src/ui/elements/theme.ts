// Shared look of the three faces: system fonts, one accent, readable contrast (WCAG AA), visible
// keyboard focus. Colours are custom properties so a host page or a dark theme can override them.
import { css } from 'lit';

export const theme = css`
  :host {
    --murmur-fg: #1d2330;
    --murmur-muted: #5a6272;
    --murmur-bg: #ffffff;
    --murmur-panel: #f5f6f8;
    --murmur-line: #d9dde3;
    --murmur-accent: #2453c7;
    --murmur-accent-fg: #ffffff;
    --murmur-ok: #1d7a45;
    --murmur-warn: #9a5b00;
    --murmur-bad: #b3261e;
    --murmur-radius: 8px;
    font-family: system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif;
    color: var(--murmur-fg);
    line-height: 1.45;
  }
  button {
    font: inherit;
    padding: 0.45em 0.95em;
    border-radius: var(--murmur-radius);
    border: 1px solid var(--murmur-line);
    background: var(--murmur-bg);
    color: var(--murmur-fg);
    cursor: pointer;
  }
  button.primary { background: var(--murmur-accent); color: var(--murmur-accent-fg); border-color: var(--murmur-accent); }
  button:disabled { opacity: 0.5; cursor: not-allowed; }
  button:focus-visible, input:focus-visible, a:focus-visible, select:focus-visible, [tabindex]:focus-visible {
    outline: 3px solid color-mix(in srgb, var(--murmur-accent) 55%, transparent);
    outline-offset: 2px;
  }
  a { color: var(--murmur-accent); }
  .muted { color: var(--murmur-muted); }
  .visually-hidden {
    position: absolute; width: 1px; height: 1px; overflow: hidden; clip: rect(0 0 0 0); white-space: nowrap;
  }
`;
