// The training frame's side of the widget: waits for the embedding page's `connect` (from its
// parent window only), then shows its own start button and drives a TrainingController from the
// commands on the private port, reporting a short status back. Consent is a click on the frame's
// own button (a user activation inside this frame, which no embedding page can forge or
// dispatch), given for this page view only (the frame keeps nothing). The embedding page can
// pause, resume, stop and lower the intensity, never start.
//
// A real click is not enough: the embedding page owns the <iframe> element and can make it
// transparent, cover it with a decoy or slide it under the pointer, so that the visitor's click
// on the page's own button lands on ours (clickjacking). The click counts only when the button
// was in full view: IntersectionObserver v2 (trackVisibility) has reported it visible (no
// opacity, filter or distorting transform on it or any ancestor, in any frame; nothing drawn over
// it) without a break for VISIBLE_MS, and it has not appeared or moved in the frame for as long
// (Chromium also reports a frame its page just moved as not visible for a moment). Until then
// the button takes no pointer events, and a click where it is only says why. Where the browser
// has no IntersectionObserver v2 (Firefox, Safari today), nothing can show the frame that it is
// in view, so the button never starts: it says so and points to the Murmur site, whose pages
// cannot be framed (docs/design.md section 6).
import type { TrainingController } from '../controllers/training-controller.ts';
import { formatCount } from '../core/format.ts';
import Value from 'typebox/value';
import { READY, type ReadyMsg, type FrameStatus, type WidgetPhase } from './bridge.ts';
import { ConnectMsg, HOST_COMMANDS, MAX_STATUS_TEXT, type HostCommand } from './bridge-schemas.ts';

/** The connect message its schema accepts, with the intensities settled; anything else is ignored. */
export function parseConnect(data: unknown): Required<ConnectMsg> | null {
  if (!Value.Check(ConnectMsg, data)) return null;
  const share = (v: number | undefined, dflt: number) => (v === undefined ? dflt : Math.max(0.1, v));
  return { ...data, maxIntensity: share(data.maxIntensity, 1), intensity: share(data.intensity, 0.5) };
}

/** A command its schema accepts; anything else is ignored. */
export function parseCommand(data: unknown): HostCommand | null {
  const cmd = (data as { cmd?: unknown } | null)?.cmd;
  if (typeof cmd !== 'string' || !Object.prototype.hasOwnProperty.call(HOST_COMMANDS, cmd)) return null;
  return Value.Check(HOST_COMMANDS[cmd as keyof typeof HOST_COMMANDS], data) ? data as HostCommand : null;
}

/**
 * What the host widget may show: a phase and one sentence, nothing identifying. Always within its
 * schema (FrameStatus), which embed.js holds it to: a status it refused would leave the widget stale.
 */
export function widgetStatus(c: TrainingController, refused: string | null = null): FrameStatus {
  let phase: WidgetPhase, text: string;
  const f = c.figures;
  if (c.gpu.status === 'pending' || c.run.status === 'pending') { phase = 'checking'; text = 'Checking whether this device can help…'; }
  else if (c.run.status === 'error') { phase = 'error'; text = 'The Murmur coordinator did not answer. Try again later.'; }
  else if (c.gpu.status === 'error' || (c.gpu.status === 'complete' && !c.gpu.value.ok)) {
    phase = 'unsupported';
    const title = c.gpu.status === 'complete' && !c.gpu.value.ok ? c.gpu.value.title : 'The GPU check failed';
    text = `${title}: this device cannot help. Nothing was started.`;
  } else {
    switch (c.phase) {
      case 'idle': phase = 'ready'; text = 'Ready: nothing runs until you press Start.'; break;
      case 'starting': phase = 'starting'; text = 'Starting: preparing your GPU…'; break;
      case 'training':
        phase = 'training';
        text = c.pauseReasons.includes('user') ? 'Pausing after this burst…'
          : f.step === 0 ? 'Training: running the first steps on your GPU…'
          : `Training: ${formatCount(f.tokensPerS)} tokens/s, ${f.rounds} exchange${f.rounds === 1 ? '' : 's'} so far.`;
        break;
      case 'waiting-peers': phase = 'waiting'; text = f.peersOnline === 0 ? 'Waiting for peers: none online, training alone for now.' : 'Waiting for a partner to exchange with…'; break;
      case 'paused':
        phase = 'paused';
        text = c.pauseReasons.includes('user') ? 'Paused. Your progress is kept.'
          : c.pauseReasons.includes('hidden') ? 'Paused while this tab is hidden.' : 'Paused: your device is busy, hot or low on battery.';
        break;
      case 'stopping': phase = 'training'; text = 'Stopping…'; break;
      case 'stopped': phase = 'stopped'; text = 'Stopped. Thank you!'; break;
      default: phase = 'error'; text = 'Training stopped because of an error.';
    }
  }
  // While the start button shows, why a click on it did not (or would not) count: the frame says it too.
  if (refused !== null && (phase === 'ready' || phase === 'stopped')) text = refused;
  return {
    type: 'status', phase, text: text.slice(0, MAX_STATUS_TEXT), intensity: c.intensity, maxIntensity: c.maxIntensity,
    tokensPerS: Math.max(0, Math.round(f.tokensPerS) || 0), userPaused: c.pauseReasons.includes('user'),
  };
}

/**
 * True when this frame has a user activation right now (a real click or key press inside it).
 * Where the browser has no navigator.userActivation, the trusted event is the activation.
 */
export function frameActivated(ev: Event, win: Window): boolean {
  if (!ev.isTrusted) return false;
  const ua = (win.navigator as Navigator & { userActivation?: { isActive: boolean } }).userActivation;
  return ua ? ua.isActive : true;
}

/** How long the start button must have been in full view, and in place, before a click on it counts. */
export const VISIBLE_MS = 500;

/** Why a click on the start button did not count: shown in the frame and sent as the widget's status. */
export const REFUSED = {
  hidden: 'Not started: this button was hidden or covered. Click it in plain view to start.',
  early: 'Not started: this button had just appeared or moved. Click it again to start.',
  unsupported: (origin: string) => 'Not started: this browser cannot confirm that this button is in view, ' +
    `so training cannot start from this site. Start it on ${origin} instead.`,
} as const;

/**
 * Whether a click on `button` counts: IntersectionObserver v2 has reported the button visible for
 * VISIBLE_MS without a break, and it has been shown and in place that long. `verdict(t)` takes the
 * click's timeStamp (the clock of performance.now() and of the observer's entries) and gives null
 * (it counts) or the reason it does not. `placed()` is called after the button may have been
 * shown, hidden or moved: a change restarts the clock. While a click would not count, the button
 * takes no pointer events (a click there reaches the document behind it).
 */
export function visibilityGate(button: HTMLButtonElement, win: Window) {
  const IO = (win as Window & { IntersectionObserver?: typeof IntersectionObserver }).IntersectionObserver;
  const Entry = (win as Window & { IntersectionObserverEntry?: typeof IntersectionObserverEntry }).IntersectionObserverEntry;
  let supported = typeof IO === 'function' && !!Entry && 'isVisible' in Entry.prototype;
  let visibleSince: number | null = null;
  let placedAt = win.performance.now();
  let place = '';
  let timer: ReturnType<typeof setTimeout> | undefined;
  const where = () => {
    if (button.hidden) return 'hidden';
    const r = button.getBoundingClientRect();
    return [r.x, r.y, r.width, r.height].map(Math.round).join(',') + (button.disabled ? ' disabled' : '');
  };
  /** Restarts the clock if the button was shown, hidden, enabled or moved since the last look. */
  const look = (t: number) => {
    const now = where();
    if (now !== place) { place = now; placedAt = t; }
  };
  const verdict = (t: number): string | null => {
    look(t);
    if (!supported) return REFUSED.unsupported(win.location.origin);
    if (visibleSince === null) return REFUSED.hidden;
    return t - visibleSince < VISIBLE_MS || t - placedAt < VISIBLE_MS ? REFUSED.early : null;
  };
  const refresh = () => {
    clearTimeout(timer);
    const t = win.performance.now();
    const open = verdict(t) === null;
    button.style.pointerEvents = open ? '' : 'none';
    if (!open && supported && visibleSince !== null) {
      timer = setTimeout(refresh, Math.max(visibleSince, placedAt) + VISIBLE_MS - t + 5);
    }
  };
  const observer = supported ? new IO!((entries) => {
    for (const e of entries) {
      const visible = (e as IntersectionObserverEntry & { isVisible?: boolean }).isVisible;
      if (visible === undefined) supported = false;
      else if (!visible) visibleSince = null;
      else visibleSince ??= e.time;
    }
    refresh();
  }, { trackVisibility: true, delay: 100 } as IntersectionObserverInit) : null;
  observer?.observe(button);
  win.addEventListener('resize', () => { placedAt = win.performance.now(); refresh(); });
  look(placedAt);
  refresh();
  return {
    verdict,
    /** After the button was shown, hidden or changed: restarts the clock if it moved. */
    placed: () => { look(win.performance.now()); refresh(); },
    get supported() { return supported; },
  };
}

/** The frame's start button, and beside it why a click on it did not count. */
function startButton(doc: Document): { button: HTMLButtonElement; note: HTMLElement } {
  const row = doc.createElement('div');
  row.style.cssText = 'display: flex; align-items: flex-start; gap: 0.4rem;';
  const b = doc.createElement('button');
  b.type = 'button';
  b.id = 'murmur-start';
  b.textContent = 'Start training on my GPU';
  b.disabled = true;
  b.style.flex = 'none';
  const note = doc.createElement('span');
  note.id = 'murmur-note';
  note.setAttribute('role', 'status');
  // At most two lines (the frame is one button high); the widget's status line has it all.
  note.style.cssText = 'font-size: 0.72rem; line-height: 1.2; max-height: 2.4em; overflow: hidden; color: #5a6272;';
  row.append(b, note);
  doc.body.appendChild(row);
  return { button: b, note };
}

/**
 * Listens for the parent's connect message, tells the parent it is ready, and serves the
 * connection. `make` builds the controller with the site's cap (only once the cap is known); it
 * may be slow (commands wait on the port meanwhile). Call it before anything else the frame
 * awaits, so the parent is not kept waiting.
 */
export function serveFrame(
  make: (hello: Required<ConnectMsg>) => TrainingController | Promise<TrainingController>,
  win: Window = window,
): Promise<TrainingController> {
  return new Promise((resolve, reject) => {
    const onMessage = async (ev: MessageEvent) => {
      // Only the embedding page (our parent) may connect, and only once.
      if (ev.source !== win.parent || win.parent === win) return;
      const hello = parseConnect(ev.data);
      const port = ev.ports[0];
      if (!hello || !port) return;
      win.removeEventListener('message', onMessage);
      let c: TrainingController;
      try {
        c = await make(hello);
      } catch (e) {
        reject(e);
        return;
      }
      let queued = false;
      const { button, note } = startButton(win.document);
      const gate = visibilityGate(button, win);
      /** Why the last click on the start button did not count (or would not); cleared when training starts. */
      let refused: string | null = null;
      const push = () => {
        if (queued) return;
        queued = true;
        // Coalesce bursts of changes: a few status messages per second at most.
        setTimeout(() => { queued = false; port.postMessage(widgetStatus(c, refused)); }, 150);
      };
      const showButton = () => {
        button.hidden = c.running;
        button.disabled = !c.canHelp || !gate.supported;
        button.textContent = c.phase === 'stopped' ? 'Start again' : 'Start training on my GPU';
        if (c.running) refused = null;
        else if (!gate.supported) refused = REFUSED.unsupported(win.location.origin);
        note.textContent = note.title = refused ?? '';
        gate.placed();
      };
      c.subscribe(push);
      c.subscribe(showButton);
      const ready = c.init().then(() => { push(); showButton(); });
      // On the document: a click where the button is while it takes no pointer events lands on
      // the page behind it, and is answered too.
      win.document.addEventListener('click', (ev) => {
        if (!frameActivated(ev, win) || button.hidden || !c.canHelp || c.running) return;
        if (ev.target !== button) {
          const r = button.getBoundingClientRect();
          if (!(ev.clientX >= r.left && ev.clientX <= r.right && ev.clientY >= r.top && ev.clientY <= r.bottom)) return;
        }
        refused = gate.verdict(ev.timeStamp);
        if (refused === null) {
          if (!c.consentRecord) c.giveConsent();
          c.start();
        }
        showButton();
        push();
      }, true);
      port.onmessage = async (m: MessageEvent) => {
        const cmd = parseCommand(m.data);
        if (!cmd) return;
        await ready;
        switch (cmd.cmd) {
          case 'pause': c.pauseNow(); break;
          case 'resume': c.resume(); break;
          case 'stop': await c.stop(); break;
          case 'intensity': c.setIntensity(cmd.value); break;
        }
        push();
      };
      resolve(c);
    };
    win.addEventListener('message', onMessage);
    if (win.parent !== win) win.parent.postMessage({ type: READY } satisfies ReadyMsg, '*');
  });
}
