// embed.js: `<script src="https://HOST/embed.js" data-run="ID"></script>` on a site the run allows
// (the coordinator's admin adds it to the run's `embedSites`: HOST refuses to be framed by any
// other) inserts a <murmur-volunteer> element after the script tag. Until its button is clicked
// it does nothing: no request to HOST, no worker, no GPU. The click (a real one:
// script-dispatched clicks are refused) opens a frame of the Murmur origin holding the start
// button; training starts only on a click inside that frame, which the host page cannot forge,
// on the button in plain view: the frame itself refuses a click while it is transparent, covered
// or has just appeared or moved (src/ui/embed/frame-bridge.ts), since this page owns the
// <iframe> element and could style it any way it likes; and even then only once the visitor has
// allowed it in the consent window, a pop-up of the Murmur origin that this page cannot touch.
// The host page talks to the frame only through a private MessageChannel (pause, resume, stop,
// intensity: never start) and cannot reach into it.
//
// Optional script attributes:
//   data-max-intensity="0.5"  the site owner's cap on GPU intensity (0.1 to 1)
//   data-target="#css-selector"  put the widget there instead of after the script
//   data-frame-path="/frame.html"  where HOST serves the training frame (same origin as embed.js)
//
// Styling: every piece has a CSS part (container, title, description, link, consent-button,
// status, controls, pause-button, stop-button, intensity, intensity-label, intensity-value, intensity-cap),
// e.g. `murmur-volunteer::part(consent-button) { background: teal; }`. The training frame has
// none: it is shown as it is, and must be, since it starts nothing while faded or covered.
//
// This file must stay a dependency-free classic script: no import or export statement at all
// (even `import type` makes tools emit `export {}`, which a classic script cannot parse), so the
// bridge types come in through import() type expressions.
type ConnectMsg = import('./bridge.ts').ConnectMsg;
type FrameStatus = import('./bridge.ts').FrameStatus;
type HostCommand = import('./bridge.ts').HostCommand;
type WidgetPhase = import('./bridge.ts').WidgetPhase;

(() => {
  const TAG = 'murmur-volunteer';
  const READY: import('./bridge.ts').ReadyMsg['type'] = 'murmur:ready';
  const script = document.currentScript as HTMLScriptElement | null;

  const STYLE = `
    :host { display: inline-block; font: 14px/1.4 system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif; color: #1d2330; max-width: 22rem; }
    [part=container] { border: 1px solid #d9dde3; border-radius: 10px; padding: 0.75rem 0.9rem; background: #fff; display: grid; gap: 0.45rem; }
    [part=title] { font-weight: 700; margin: 0; font-size: 1rem; }
    [part=description] { margin: 0; color: #5a6272; font-size: 0.85rem; }
    button { font: inherit; border-radius: 8px; border: 1px solid #d9dde3; background: #fff; color: #1d2330; padding: 0.35em 0.8em; cursor: pointer; }
    [part=consent-button] { background: #2453c7; border-color: #2453c7; color: #fff; font-weight: 600; }
    button:disabled { opacity: 0.5; cursor: not-allowed; }
    button:focus-visible, input:focus-visible, a:focus-visible { outline: 3px solid rgba(36, 83, 199, 0.55); outline-offset: 2px; }
    [part=status] { margin: 0; font-size: 0.85rem; }
    [part=intensity-cap] { margin: 0; font-size: 0.78rem; color: #5a6272; }
    [part=controls] { display: flex; flex-wrap: wrap; gap: 0.4rem; align-items: center; }
    label { display: flex; gap: 0.4rem; align-items: center; font-size: 0.85rem; }
    input[type=range] { flex: 1; min-width: 6rem; accent-color: #2453c7; }
    a { color: #2453c7; }
    iframe { display: block; width: 100%; height: 2.6rem; border: 0; }
  `;

  // The frame's status is read only once it is exactly what FrameStatus (bridge-schemas.ts), its
  // one schema, accepts. This is that schema written out by hand: embed.js runs as a classic
  // script on other sites' pages, so it can import nothing (an import makes it a module; TypeBox
  // bundled in would add its weight to every page that embeds the widget, and the bundler would
  // share it with the app as a chunk this script cannot load). tests/ui.embed-status.test.ts runs
  // this script's own handler on messages made from the schema and fails where the two disagree.
  const PHASES: Record<WidgetPhase, true> = {
    checking: true, unsupported: true, ready: true, starting: true, training: true, waiting: true, paused: true, stopped: true, error: true,
  };
  const STATUS_KEYS = ['type', 'phase', 'text', 'intensity', 'maxIntensity', 'tokensPerS', 'userPaused'];
  const MAX_STATUS_TEXT = 300;
  const MAX_TOKENS_PER_S = 1e12;
  const own = (o: object, k: string) => Object.prototype.hasOwnProperty.call(o, k);
  /** At most `max` code points, as JSON Schema's maxLength counts them. */
  const fits = (s: string, max: number) => s.length <= max || (s.length <= 2 * max && [...s].length <= max);
  const share = (x: unknown) => typeof x === 'number' && x >= 0 && x <= 1;

  function isFrameStatus(v: unknown): v is FrameStatus {
    if (typeof v !== 'object' || v === null || Array.isArray(v)) return false;
    const s = v as Record<string, unknown>;
    const keys = Object.keys(s);
    return keys.length === STATUS_KEYS.length && STATUS_KEYS.every((k) => own(s, k)) &&
      s.type === 'status' && typeof s.phase === 'string' && own(PHASES, s.phase) &&
      typeof s.text === 'string' && fits(s.text, MAX_STATUS_TEXT) && share(s.intensity) && share(s.maxIntensity) &&
      Number.isInteger(s.tokensPerS) && (s.tokensPerS as number) >= 0 && (s.tokensPerS as number) <= MAX_TOKENS_PER_S &&
      typeof s.userPaused === 'boolean';
  }

  function clampCap(v: string | null): number {
    const x = Number(v);
    return Number.isFinite(x) && x > 0 ? Math.min(1, Math.max(0.1, x)) : 1;
  }

  class MurmurVolunteer extends HTMLElement {
    static observedAttributes = ['max-intensity'];
    private readonly root: ShadowRoot;
    private port: MessagePort | null = null;
    private frame: HTMLIFrameElement | null = null;
    private status: FrameStatus | null = null;
    private intensity = 0.5;

    constructor() {
      super();
      // Open, for the tests and assistive tools; a closed root would not protect the frame (the
      // page could still restyle this element, cover it, or frame /frame.html itself): the frame
      // checks that it is in view before a click counts.
      this.root = this.attachShadow({ mode: 'open' });
    }

    /**
     * The site's cap, and once the frame has said its ceiling (the cap it connected with, which
     * it never raises: it refuses an intensity above it), no more than that.
     */
    private get cap(): number {
      return Math.min(clampCap(this.getAttribute('max-intensity')), Math.max(0.1, this.status?.maxIntensity ?? 1));
    }
    private get origin(): string { return this.getAttribute('origin') ?? ''; }

    connectedCallback(): void {
      this.intensity = Math.min(this.intensity, this.cap);
      this.render();
    }

    attributeChangedCallback(): void {
      this.intensity = Math.min(this.intensity, this.cap);
      if (this.isConnected) this.render();
      this.send({ cmd: 'intensity', value: this.intensity });
    }

    /** Builds the shadow DOM once; later changes only touch text and attributes (focus and a dragged slider survive). */
    private build(): void {
      const about = this.origin ? `${this.origin}/` : '#';
      this.root.innerHTML = `<style>${STYLE}</style>
        <div part="container" role="group" aria-label="Murmur: lend your GPU to train a language model">
          <p part="title">Help train an open language model</p>
          <p part="description">Lends this device's graphics card while this page is open, in short bursts.
            Nothing runs until you click. <a part="link" target="_blank" rel="noopener">What runs and what is sent</a></p>
          <button part="consent-button" type="button">Lend my GPU</button>
          <p part="status" role="status" aria-live="polite"></p>
          <div part="controls">
            <button part="pause-button" type="button">Pause</button>
            <button part="stop-button" type="button">Stop</button>
          </div>
          <label part="intensity-label">GPU intensity
            <input part="intensity" type="range" min="10" step="5">
            <output part="intensity-value"></output></label>
          <p part="intensity-cap" hidden></p>
        </div>`;
      this.q<HTMLAnchorElement>('link').href = about;
      this.q('consent-button').addEventListener('click', (e) => this.onConsent(e as MouseEvent));
      this.q('pause-button').addEventListener('click', () => this.send({ cmd: this.status?.userPaused ? 'resume' : 'pause' }));
      this.q('stop-button').addEventListener('click', () => this.send({ cmd: 'stop' }));
      const range = this.q<HTMLInputElement>('intensity');
      range.addEventListener('input', () => {
        this.intensity = Math.min(this.cap, Number(range.value) / 100);
        this.send({ cmd: 'intensity', value: this.intensity });
        this.render();
      });
    }

    private q<T extends HTMLElement = HTMLElement>(part: string): T {
      return this.root.querySelector(`[part=${part}]`) as T;
    }

    private render(): void {
      if (!this.root.firstChild) this.build();
      const s = this.status;
      const started = this.frame !== null;
      const running = s !== null && !['unsupported', 'stopped', 'error', 'ready', 'checking'].includes(s.phase);
      const pct = Math.round(this.intensity * 100);
      this.q('consent-button').hidden = started;
      this.q('status').textContent = s?.text ?? (started ? 'Loading…' : 'Not running.');
      const pause = this.q<HTMLButtonElement>('pause-button');
      pause.disabled = !running;
      pause.textContent = s?.userPaused ? 'Resume' : 'Pause';
      this.q<HTMLButtonElement>('stop-button').disabled = !running;
      const range = this.q<HTMLInputElement>('intensity');
      range.max = String(Math.round(this.cap * 100));
      if (this.root.activeElement !== range) range.value = String(pct);
      range.setAttribute('aria-valuetext', `${pct}% of the time`);
      this.q('intensity-value').textContent = `${pct}%`;
      const cap = this.q('intensity-cap');
      cap.hidden = this.cap >= 1;
      cap.textContent = `This site allows at most ${Math.round(this.cap * 100)}%.`;
    }

    /**
     * Opens the training frame (its start button is the consent). Only a real click opens it:
     * el.click() from the page's script does not.
     */
    private onConsent(e: MouseEvent): void {
      if (!e.isTrusted || !this.origin || this.frame) return;
      // No `part` on the frame: ::part(frame) let one CSS rule make it invisible (clickjacking).
      const frame = document.createElement('iframe');
      frame.title = 'Murmur: start training on this device';
      // The frame gets no referrer (it learns only the embedding site's origin, from
      // location.ancestorOrigins) and cannot navigate this page. It may open one kind of window:
      // the consent window on the Murmur origin, a page of its own, not sandboxed (a sandboxed
      // pop-up could not load a page with Cross-Origin-Opener-Policy), where the visitor allows
      // training (frame-bridge.ts, askConsent).
      frame.referrerPolicy = 'no-referrer';
      frame.setAttribute('sandbox', 'allow-scripts allow-same-origin allow-popups allow-popups-to-escape-sandbox');
      frame.setAttribute('allow', 'compute-pressure');
      const path = this.getAttribute('frame-path') ?? '/frame.html';
      frame.src = `${this.origin}${path}?run=${encodeURIComponent(this.getAttribute('run') ?? '')}`;
      // Connect when the frame says it listens (its load event comes before that), and only to
      // the frame we made, served from the Murmur origin.
      const onReady = (ev: MessageEvent) => {
        if (ev.source !== frame.contentWindow || ev.origin !== this.origin || ev.data?.type !== READY) return;
        window.removeEventListener('message', onReady);
        this.connectFrame(frame);
      };
      window.addEventListener('message', onReady);
      this.frame = frame;
      // Where the consent button was, above the status line: a status that grows (a refused
      // click says why) must not move the frame, or the visitor's next click lands on a frame
      // its browser has just seen moved, which the frame refuses too.
      this.q('consent-button').after(frame);
      this.render();
    }

    private connectFrame(frame: HTMLIFrameElement): void {
      const channel = new MessageChannel();
      this.port = channel.port1;
      // No origin to check here: a port's messages carry none. The port is the check: its other
      // end went only to our frame, in a message addressed to the Murmur origin (below), after
      // that frame said ready from the Murmur origin (onConsent). What comes is still checked
      // field by field, and anything else is ignored.
      this.port.onmessage = (ev: MessageEvent<unknown>) => {
        if (!isFrameStatus(ev.data)) return;
        this.status = ev.data;
        this.intensity = Math.min(this.cap, ev.data.intensity);
        this.render();
      };
      const hello: ConnectMsg = { type: 'murmur:connect', run: this.getAttribute('run') ?? '', maxIntensity: this.cap, intensity: this.intensity };
      // Addressed to the Murmur origin only: if the frame was navigated elsewhere, nothing is delivered.
      frame.contentWindow?.postMessage(hello, this.origin, [channel.port2]);
    }

    private send(c: HostCommand): void {
      this.port?.postMessage(c);
    }
  }

  function escapeHtml(s: string): string {
    return s.replace(/[&<>"']/g, (ch) => `&#${ch.charCodeAt(0)};`);
  }

  if (!customElements.get(TAG)) customElements.define(TAG, MurmurVolunteer);

  // Insert one widget for the script tag that loaded us.
  if (script) {
    const src = new URL(script.src, location.href);
    const el = document.createElement(TAG);
    el.setAttribute('origin', src.origin);
    el.setAttribute('run', script.dataset.run ?? '');
    if (script.dataset.maxIntensity) el.setAttribute('max-intensity', script.dataset.maxIntensity);
    const path = script.dataset.framePath;
    if (path && path.startsWith('/') && !path.startsWith('//')) el.setAttribute('frame-path', path);
    const target = script.dataset.target ? document.querySelector(script.dataset.target) : null;
    if (target) target.appendChild(el);
    else script.after(el);
  }
})();
