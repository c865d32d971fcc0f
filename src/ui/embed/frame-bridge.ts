// The training frame's side of the widget: waits for the embedding page's `connect` (from its
// parent window only), then shows its own start button and drives a TrainingController from the
// commands on the private port, reporting a short status back. Consent is a click on the frame's
// own button (a user activation inside this frame, which no embedding page can forge or
// dispatch), given for this page view only (the frame keeps nothing). The embedding page can
// pause, resume, stop and lower the intensity, never start.
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
export function widgetStatus(c: TrainingController): FrameStatus {
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

/** The frame's start button: shown while the visitor may start (or start again). */
function startButton(doc: Document): HTMLButtonElement {
  const b = doc.createElement('button');
  b.type = 'button';
  b.id = 'murmur-start';
  b.textContent = 'Start training on my GPU';
  b.disabled = true;
  doc.body.appendChild(b);
  return b;
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
      const push = () => {
        if (queued) return;
        queued = true;
        // Coalesce bursts of changes: a few status messages per second at most.
        setTimeout(() => { queued = false; port.postMessage(widgetStatus(c)); }, 150);
      };
      const button = startButton(win.document);
      const showButton = () => {
        button.hidden = c.running;
        button.disabled = !c.canHelp;
        button.textContent = c.phase === 'stopped' ? 'Start again' : 'Start training on my GPU';
      };
      c.subscribe(push);
      c.subscribe(showButton);
      const ready = c.init().then(() => { push(); showButton(); });
      button.addEventListener('click', (ev) => {
        if (!frameActivated(ev, win) || !c.canHelp || c.running) return;
        if (!c.consentRecord) c.giveConsent();
        c.start();
        showButton();
        push();
      });
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
