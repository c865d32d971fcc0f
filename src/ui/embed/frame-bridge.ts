// The training frame's side of the widget: waits for the embedding page's `connect` (from its
// parent window only), then shows its own start button and drives a TrainingController from the
// commands on the private port, reporting a short status back. Consent is a click on the frame's
// own button (a user activation inside this frame, which no embedding page can forge or
// dispatch), given for this page view only (the frame keeps nothing). The embedding page can
// pause, resume, stop and lower the intensity, never start, and never raise it above the ceiling
// the consent window stated (the site's cap at connect): the frame says the intensity it
// trains at in its own status line, since the page's slider may say anything.
//
// A real click is not enough: the embedding page owns the <iframe> element and can make it
// transparent, cover it with a decoy, slide it under the pointer, cut it down to a corner of the
// button or zoom it out to a few pixels, so that the visitor's click on the page's own button
// lands on ours (clickjacking). The click counts only when the button was in full view:
// IntersectionObserver v2 (trackVisibility) has reported it visible (no opacity, filter or
// distorting transform on it or any ancestor, in any frame; nothing drawn over it) and whole (all
// of it inside the frame's viewport) without a break for SETTLE_MS, the frame is not drawn at
// under half size (isVisible sees neither clipping nor CSS zoom), and the button has not appeared
// or moved in the frame for as long (Chromium also reports a frame its page just moved as not
// visible for a moment). Until then the button takes no pointer events, and a click where it is
// only says why. A mouse click counts only once the pointer has been over the button for as long
// (pointerGate): the page can slide the frame under a resting pointer, which the frame sees no
// other way. A key press on it (a click with detail 0) counts only once the button has held
// the focus for KEY_FOCUS_MS with no other key pressed: a visitor typing in the page's form field
// just before the frame tabs onto Start and types on. Where the browser has no
// IntersectionObserver v2 (Firefox, Safari today), nothing can show the frame that it is in view,
// so the button never starts: it says so and points to the Murmur site, whose pages cannot be
// framed (docs/design.md section 6).
//
// Even a click that passes all of that does not start training by itself: a page can put a mask
// (CSS mask-image, fully transparent) on the <iframe>, or zoom it by 0.25 on a 2x screen, and
// the frame sees neither (IntersectionObserver v2 still reports the button visible; the frame's
// devicePixelRatio reads 0.5). So the click opens the consent window (askConsent): a pop-up of
// the Murmur origin, which no page can frame, mask or zoom, naming the site and the run, and
// training starts only once its Allow was pressed for this click's own nonce. The window then
// stays open as the donation's own Stop, where the page cannot hide it: the frame trains only while
// the coordinator says the window still holds the session (holdConsent), and stops when the
// window's Stop was pressed or the window was closed.
//
// While training runs, the frame shows its own Stop and status, and pauses by itself when its Stop
// has been out of full view for UNSEEN_PAUSE_MS: the page could hide the frame and ignore its own
// Pause and Stop, and a frame hidden by its page still reads document.visibilityState 'visible',
// so the pause-while-hidden policy would never see it. Only a click on the frame's own Resume, in
// full view as Start must be, undoes that pause; the page's commands remain a second way to pause
// or stop.
import type { TrainingController } from '../controllers/training-controller.ts';
import type { ConsentPort } from '../ports.ts';
import { formatCount, formatRate } from '../core/format.ts';
import { keyGate, placeClock, settled, settlesAt, type KeyRefusal } from '../core/settle.ts';
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
 * `held`: why the frame holds training paused (HELD, CONSENT.lost, CONSENT.forgotten), said while
 * it pauses or is paused; `refused`: why a click on its start (or resume) button did not count;
 * `asked`: the page's intensity refused just now, said over all of these while it stands (intensityRefusal).
 */
export function widgetStatus(c: TrainingController, refused: string | null = null, held: string | null = null, asked: number | null = null): FrameStatus {
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
      case 'idle': phase = 'ready'; text = `Ready: nothing runs until you press Start.${linkNote(c)}`; break;
      case 'starting': phase = 'starting'; text = 'Starting: preparing your GPU…'; break;
      case 'training':
        phase = 'training';
        text = c.pauseReasons.includes('user') ? 'Pausing after this burst…'
          : f.step === 0 ? `Training: running the first steps on your GPU, ${gpuAt(c)}.`
          : `Training: ${formatCount(f.tokensPerS)} tokens/s, ${f.rounds} exchange${f.rounds === 1 ? '' : 's'} so far, ${gpuAt(c)}.`;
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
  // While the frame holds training paused, why, until training ends (a Stop: 'Stopping…', then
  // 'Stopped'); and while the start (or resume) button shows, why a click on it did not (or would
  // not) count: the frame says it too.
  if (held !== null && c.running && phase !== 'stopped' && c.phase !== 'stopping') text = held;
  if (refused !== null && (phase === 'ready' || phase === 'stopped' || held !== null)) text = refused;
  // The answer to the page's intensity refused just now (intensityRefusal decides how long it stands).
  if (asked !== null) text = raiseRefused(c, asked);
  return {
    type: 'status', phase, text: text.slice(0, MAX_STATUS_TEXT), intensity: c.intensity, maxIntensity: c.maxIntensity,
    tokensPerS: Math.max(0, Math.round(f.tokensPerS) || 0), userPaused: c.pauseReasons.includes('user'),
  };
}

/** A share (0..1) as a whole percentage. */
const pct = (x: number) => `${Math.round(x * 100)}%`;

/** What the frame trains at now: the intensity after the policy's back-off (effectiveIntensity). */
function gpuAt(c: TrainingController): string {
  return `GPU at ${pct(c.effectiveIntensity)}`;
}

/**
 * Why the page's intensity `asked` was refused: above the ceiling (the site's cap at connect, which
 * the consent window states). While training runs, what it runs at.
 */
export function raiseRefused(c: TrainingController, asked: number): string {
  return `Refused: this site asked for ${pct(asked)} of your GPU, above its cap of ${pct(c.maxIntensity)} that the Murmur window states` +
    (c.phase === 'training' ? `; ${gpuAt(c)}.` : '.');
}

/**
 * The page's `intensity` command: sets it when it is within the ceiling the consent window states (the
 * site's cap at connect; the page may lower it and raise it back up to that), and returns null;
 * above it changes nothing and returns the share asked, which the frame then says it refused.
 */
export function hostIntensity(c: TrainingController, value: number): number | null {
  if (value > c.maxIntensity) return value;
  c.setIntensity(value);
  return null;
}

/**
 * How long the frame's status says it refused the page's intensity, unless the status's words
 * change first: time to read its sentence (about 20 words, some 5 s at an ordinary pace).
 */
export const INTENSITY_REFUSAL_MS = 6000;

/**
 * What a status says apart from its figures (widgetStatus): its phase, the controller's, why it
 * pauses, why the frame holds it, and why a click did not count. When this changes, something
 * happened that the status must say at once.
 */
export function statusWords(c: TrainingController, refused: string | null, held: string | null): string {
  return JSON.stringify([widgetStatus(c, refused, held).phase, c.phase, c.pauseReasons, held, refused]);
}

/**
 * The page's intensity refused (hostIntensity), as the answer to the request that asked for it:
 * `refuse(asked, words)` after each refused request, `shown(words)` the share to say refused in a
 * status with those words (statusWords) now, or null. The refusal stands for INTENSITY_REFUSAL_MS
 * while the words stay as they were when it was refused, so the status sent in reply to each
 * refused request names the cap, and no Paused, Training, Stopped or held reason waits behind it
 * (it once stood until the page asked within the cap, and said "Refused" over all of them).
 * `onLapse` is called when it lapses, to send the status that follows it.
 */
export function intensityRefusal(onLapse: () => void) {
  let standing: { asked: number; words: string } | null = null;
  let timer: ReturnType<typeof setTimeout> | undefined;
  const end = () => { standing = null; clearTimeout(timer); };
  return {
    refuse(asked: number, words: string): void {
      end();
      standing = { asked, words };
      timer = setTimeout(() => { standing = null; onLapse(); }, INTENSITY_REFUSAL_MS);
    },
    shown(words: string): number | null {
      if (standing !== null && standing.words !== words) end();
      return standing?.asked ?? null;
    },
    /** A request within the cap: nothing refused stands. */
    end,
  };
}

/**
 * What the run asks of the visitor's connection, said beside Start as the volunteer page's consent
 * text says it: the least rate each way at which an exchange ends inside the 60 s a volunteer
 * waits, and the first exchange's (15 s, before the wait is fitted to the link). Empty until the run is known.
 */
function linkNote(c: TrainingController): string {
  if (c.run.status !== 'complete') return '';
  const r = c.run.value;
  return ` This run needs a connection of at least ${formatRate(r.linkBytesPerS)} each way, ${formatRate(r.firstLinkBytesPerS)} for the first exchange.`;
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

/**
 * The smallest devicePixelRatio at which a click counts. A page's CSS zoom on the <iframe> scales
 * the frame's devicePixelRatio with it (zoom 0.03 read 0.03 in Chromium, zoom 0.5 read 0.5), and
 * IntersectionObserver v2 still reports the button visible. The volunteer's own browser zoom
 * lowers it too: 50% on a common screen is 0.5, which still counts.
 */
export const MIN_PIXEL_RATIO = 0.5;

/** How long the start button must have held the keyboard focus, with no other key pressed, before Enter or Space on it counts (keyGate). */
export { KEY_FOCUS_MS } from '../core/settle.ts';

/**
 * How long the frame's Stop may be out of full view while training runs before the frame pauses
 * it. A few seconds: Chromium reports a frame its page just moved (a scroll, a status line that
 * grew) as not visible for a moment.
 */
export const UNSEEN_PAUSE_MS = 3000;

/** How often the unseen watch looks at the frame while training runs, whatever the observer reports (unseenWatch). */
export const UNSEEN_LOOK_MS = 1000;

/** Why a click on the start button did not count: shown in the frame and sent as the widget's status. */
export const REFUSED = {
  hidden: 'Not started: this button was hidden or covered. Click it in plain view to start.',
  early: 'Not started: this button had just appeared or moved. Click it again to start.',
  keyboard: 'Not started: this button had only just got the keyboard focus. Press it again to start.',
  typed: 'Not started: other keys were typed on this button. Move the focus off it and back, then press it to start.',
  unsupported: (origin: string) => 'Not started: this browser cannot confirm that this button is in view, ' +
    `so training cannot start from this site. Start it on ${origin} instead.`,
} as const;

/** What the frame says while it waits for the consent window, and what became of it. */
export const CONSENT = {
  waiting: 'Confirm in the Murmur window that opened. No window? Press the button again to open it.',
  denied: 'Not started: you chose Don\'t allow in the Murmur window, or closed it.',
  expired: 'Not started: the Murmur window was not answered in time. Press Start to ask again.',
  unplaced: 'Not started: this browser does not say which site shows this frame, so the Murmur window cannot name it.',
  failed: (why: string) => `Not started: the Murmur coordinator did not take the request: ${why}`,
  stopped: 'Stopped from the Murmur window. Press Start to donate again.',
  closed: 'Stopped: the Murmur window was closed. Press Start to donate again.',
  lost: 'Paused: the Murmur coordinator could not be reached to confirm that the Murmur window is still open. Press Resume to ask again.',
  forgotten: 'Paused: the Murmur coordinator lost this donation\'s session (it restarted, or did not hear from this frame or the Murmur window for minutes). Press Resume to ask again.',
} as const;

/** The button's text while a consent window is open for it. */
export const CONSENT_AGAIN = 'Open the Murmur window again';

/** How often the frame asks the coordinator for the consent window's answer. */
export const CONSENT_POLL_MS = 1000;

/** How long the frame waits for that answer: the coordinator forgets a request after 5 minutes (server/consent.ts). */
export const CONSENT_WAIT_MS = 5 * 60_000;

/**
 * How often the frame holds its session while it trains (a claim): well inside the coordinator's
 * frameMs (server/consent.ts), and soon enough that the window's Stop stops training within seconds.
 */
export const CONSENT_HOLD_MS = 5000;

/**
 * How long the frame trains on without hearing the coordinator before it pauses: it cannot tell
 * whether the window is still open, and a page can cut the frame off from the coordinator no more
 * than the network can (the frame's requests are its own), so a short outage passes and a long one
 * pauses.
 */
export const CONSENT_GRACE_MS = 45_000;

/**
 * How often the frame claims its session and how long it trains on unheard (holdConsent): the
 * constants above, read at each claim, so a test page may shorten them on the object it passed.
 */
export interface HoldTiming { holdMs: number; graceMs: number }
const HOLD_TIMING: HoldTiming = { holdMs: CONSENT_HOLD_MS, graceMs: CONSENT_GRACE_MS };

/** The consent window's size: room for what it says and its two buttons. */
export const CONSENT_FEATURES = 'popup,noopener,noreferrer,width=520,height=640';

/** A fresh nonce: 16 random bytes in base64url (22 characters), unguessable by the embedding page. */
export function newNonce(crypto: Crypto): string {
  const b = crypto.getRandomValues(new Uint8Array(16));
  return btoa(String.fromCharCode(...b)).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}

/** The site whose page shows this frame (Chromium and Safari have location.ancestorOrigins), or null. */
export function embeddingSite(win: Window): string | null {
  const a = (win.location as Location & { ancestorOrigins?: DOMStringList }).ancestorOrigins;
  return a && a.length > 0 ? a[0]! : null;
}

/** Where the coordinator serves the consent window, and how the frame reaches it. */
export interface FrameConsent { port: ConsentPort; path: string }

/**
 * Registers a fresh nonce with the coordinator, opens the consent window for it, and resolves with
 * the visitor's answer there: 'allowed', 'denied', 'expired' (no answer within CONSENT_WAIT_MS, or
 * the coordinator forgot it), or an Error to show. The window opens in the click's own task (a
 * pop-up needs the click's user activation), before the nonce is registered: it looks for the
 * nonce until the coordinator has it (src/ui/elements/consent-window.ts). `stillWanted()` false
 * ends the wait early ('expired'). `maxIntensity`: the ceiling the frame holds the page to
 * (hostIntensity), registered with the nonce so that the window states it.
 */
export function askConsent(consent: FrameConsent, win: Window, nonce: string, stillWanted: () => boolean, maxIntensity = 1): Promise<'allowed' | 'denied' | 'expired' | Error> {
  const site = embeddingSite(win);
  if (site === null) return Promise.resolve(new Error(CONSENT.unplaced));
  openConsent(consent, win, nonce);
  return (async () => {
    try {
      await consent.port.register(nonce, site, maxIntensity);
    } catch (e) {
      return new Error(CONSENT.failed((e as Error).message));
    }
    // Withdrawn while it was being registered (a Stop): the window hears it and asks no more.
    if (!stillWanted()) {
      consent.port.release(nonce);
      return 'expired';
    }
    const until = win.performance.now() + CONSENT_WAIT_MS;
    while (stillWanted() && win.performance.now() < until) {
      await new Promise((r) => setTimeout(r, CONSENT_POLL_MS));
      let state: Awaited<ReturnType<ConsentPort['claim']>>;
      try {
        state = await consent.port.claim(nonce);
      } catch {
        continue; // the coordinator for a moment unreachable: asked again until the deadline
      }
      if (state === 'allowed' || state === 'denied') return state;
      if (state !== 'pending') return 'expired';
    }
    return 'expired';
  })();
}

/** Why a held session ended (holdConsent). */
export type HoldEnd = 'stopped' | 'closed' | 'forgotten' | 'lost';

/**
 * Holds the session `nonce` while `stillHeld()`: claims it every CONSENT_HOLD_MS, and calls `onEnd`
 * once with why it ended: 'stopped' (the window's Stop), 'closed' (the window was closed, or the
 * frame heard its own release), 'forgotten' (the coordinator no longer knows the session: it
 * restarted without saving it, a crash, or heard neither this frame nor the window for their
 * time; the window may well be open, so it is not said to be closed), or 'lost' (no answer from the
 * coordinator for CONSENT_GRACE_MS; a claim that takes longer than CONSENT_HOLD_MS counts as none).
 */
export function holdConsent(
  port: ConsentPort, nonce: string, win: Window, stillHeld: () => boolean, onEnd: (why: HoldEnd) => void, timing: HoldTiming = HOLD_TIMING,
): void {
  let heard = win.performance.now();
  const look = async () => {
    if (!stillHeld()) return;
    let state: Awaited<ReturnType<ConsentPort['claim']>> | null;
    let timer: ReturnType<typeof setTimeout> | undefined;
    try {
      state = await Promise.race([port.claim(nonce), new Promise<null>((r) => { timer = setTimeout(() => r(null), timing.holdMs); })]);
    } catch {
      state = null;
    } finally {
      clearTimeout(timer);
    }
    if (!stillHeld()) return;
    if (state === 'allowed') heard = win.performance.now();
    else if (state !== null) return onEnd(state === 'stopped' ? 'stopped' : state === 'gone' ? 'forgotten' : 'closed');
    else if (win.performance.now() - heard >= timing.graceMs) return onEnd('lost');
    setTimeout(() => void look(), timing.holdMs);
  };
  setTimeout(() => void look(), timing.holdMs);
}

/** Opens the consent window for `nonce` (again): the nonce in the fragment, which no server sees. */
export function openConsent(consent: FrameConsent, win: Window, nonce: string): void {
  win.open(`${consent.path}#${nonce}`, '_blank', CONSENT_FEATURES);
}

/** The status while the frame holds training paused because it was out of view. */
export const HELD = 'Paused while this frame was out of view. Press Resume in it to go on.';

/** Whether all of `r` (a rect in the frame's viewport) lies inside the frame's viewport. */
function insideViewport(r: DOMRectReadOnly, win: Window): boolean {
  return r.left >= 0 && r.top >= 0 && r.right <= win.innerWidth && r.bottom <= win.innerHeight;
}

/**
 * Whether an IntersectionObserver v2 entry shows its target visible and whole. isVisible alone
 * passes a frame its page cut down to a corner of the target (it read true with 1.4% of the
 * button showing) or zoomed out (true at zoom 0.03, with 33% showing): the observer's threshold of
 * 1 reports when the target stops being whole. Full view is this and drawnFullSize, read at each
 * look: the observer reports no change of the frame's zoom (a button zoomed out stays visible and
 * whole), so a size taken from its last entry could be stale either way (a frame zoomed out after
 * Start kept training; one zoomed back in before Resume never took the click).
 */
export function visibleAndWhole(e: IntersectionObserverEntry, win: Window): boolean {
  return (e as IntersectionObserverEntry & { isVisible?: boolean }).isVisible === true && e.intersectionRatio >= 0.99 &&
    insideViewport(e.boundingClientRect, win);
}

/** Whether the frame is drawn at least at MIN_PIXEL_RATIO (not zoomed out by its page). */
function drawnFullSize(win: Window): boolean {
  return win.devicePixelRatio >= MIN_PIXEL_RATIO;
}

/**
 * Calls `fn` whenever the frame's devicePixelRatio changes (a page zooming the frame, or the
 * volunteer's own browser zoom): a media query for the present ratio, asked again for each new one.
 */
function onPixelRatioChange(win: Window, fn: () => void): void {
  const watch = () => {
    const mq = win.matchMedia?.(`(resolution: ${win.devicePixelRatio}dppx)`);
    mq?.addEventListener?.('change', () => { watch(); fn(); }, { once: true });
  };
  watch();
}

/**
 * Observes `el` with IntersectionObserver v2 and calls `report` with whether it is visible and
 * whole (visibleAndWhole) and the entry's time, or with `undefined` where the browser turned out
 * to have no isVisible. Null where the browser has no IntersectionObserver v2 at all.
 */
function observeView(el: Element, win: Window, report: (inView: boolean | undefined, t: number) => void): IntersectionObserver | null {
  const IO = (win as Window & { IntersectionObserver?: typeof IntersectionObserver }).IntersectionObserver;
  const Entry = (win as Window & { IntersectionObserverEntry?: typeof IntersectionObserverEntry }).IntersectionObserverEntry;
  if (typeof IO !== 'function' || !Entry || !('isVisible' in Entry.prototype)) return null;
  const observer = new IO((entries) => {
    for (const e of entries) report('isVisible' in e ? visibleAndWhole(e, win) : undefined, e.time);
  }, { trackVisibility: true, delay: 100, threshold: [1] } as IntersectionObserverInit);
  observer.observe(el);
  return observer;
}

/**
 * Whether a click on `button` counts: IntersectionObserver v2 has reported the button visible and
 * whole (visibleAndWhole) for SETTLE_MS without a break, the frame is drawn full size now
 * (drawnFullSize), and the button has been shown and in place that long (placeClock, as on the
 * volunteer page; a change of the frame's devicePixelRatio is a change of place).
 * `verdict(t)` takes the click's timeStamp (the clock of performance.now() and of the observer's
 * entries) and gives null (it counts) or the reason it does not. `placed()` is called after the
 * button may have been shown, hidden or moved: a change restarts the clock, as does a change of
 * the frame's size or devicePixelRatio (a page zooming the frame). While a click would not count,
 * the button takes no pointer events (a click there reaches the document behind it).
 */
export function visibilityGate(button: HTMLButtonElement, win: Window) {
  let supported = true;
  let visibleSince: number | null = null;
  let timer: ReturnType<typeof setTimeout> | undefined;
  const place = placeClock(win, win.performance.now());
  /** When the button was last shown, hidden, enabled or moved (a change since the last look restarts the clock at `t`). */
  const placedAt = (t: number) => place.look(button, t);
  const verdict = (t: number): string | null => {
    const placed = placedAt(t);
    if (!supported) return REFUSED.unsupported(win.location.origin);
    // The observer reports no change of the frame's zoom: its devicePixelRatio is read now.
    if (visibleSince === null || !drawnFullSize(win) || !insideViewport(button.getBoundingClientRect(), win)) return REFUSED.hidden;
    return settled(t, visibleSince, placed) ? null : REFUSED.early;
  };
  const refresh = () => {
    clearTimeout(timer);
    const t = win.performance.now();
    const open = verdict(t) === null;
    button.style.pointerEvents = open ? '' : 'none';
    if (!open && supported && visibleSince !== null) {
      timer = setTimeout(refresh, settlesAt(visibleSince, placedAt(t)) - t + 5);
    }
  };
  const observer = observeView(button, win, (inView, t) => {
    if (inView === undefined) supported = false;
    else if (!inView) visibleSince = null;
    else visibleSince ??= t;
    refresh();
  });
  if (!observer) supported = false;
  win.addEventListener('resize', () => { place.restart(win.performance.now()); refresh(); });
  // (The look restarts the clock: the ratio is part of the button's place.)
  onPixelRatioChange(win, refresh);
  refresh();
  return {
    verdict,
    /** After the button was shown, hidden or changed: restarts the clock if it moved. */
    placed: () => { placedAt(win.performance.now()); refresh(); },
    get supported() { return supported; },
  };
}

/** The frame's words for a key press keyGate (src/ui/core/settle.ts) did not count. */
function keyRefused(why: KeyRefusal | null): string | null {
  return why === null ? null : REFUSED[why];
}

/**
 * Whether a mouse click on `button` counts: the mouse pointer has been over the button, without
 * leaving it or the frame, for SETTLE_MS before the click. A page can slide the frame under a
 * pointer resting on its own decoy just before the visitor clicks: nothing the frame sees has
 * changed (the button is in full view and in place within the frame, and IntersectionObserver v2
 * reports no move), and Chromium let that click through to a frame of another site slid there
 * 60 ms before it (a frame of the same site had it dropped). The pointer that arrives over the
 * button with the frame, or with the click, is new to it; so is one that rested on another part of
 * the frame before the page slid Start under it. `verdict(ev)` takes the click; one from a touch, a
 * pen or the keyboard (judged elsewhere) is not judged here.
 */
export function pointerGate(button: HTMLElement, win: Window) {
  /** Since when the mouse pointer has been over the button; null while it is not. */
  let since: number | null = null;
  const doc = win.document;
  const on = (e: PointerEvent) => {
    const r = button.getBoundingClientRect();
    return e.clientX >= r.left && e.clientX <= r.right && e.clientY >= r.top && e.clientY <= r.bottom;
  };
  const look = (e: PointerEvent) => {
    if (e.pointerType !== 'mouse') return;
    if (!on(e)) since = null;
    else since ??= e.timeStamp;
  };
  for (const type of ['pointerover', 'pointermove', 'pointerdown'] as const) doc.addEventListener(type, look, true);
  // Out of the frame: the pointer leaves for an element of no document of ours.
  doc.addEventListener('pointerout', (e) => { if (e.relatedTarget === null) since = null; }, true);
  return {
    verdict(ev: MouseEvent): string | null {
      const type = (ev as PointerEvent).pointerType;
      if (ev.detail === 0 || (type !== undefined && type !== 'mouse')) return null;
      return since !== null && settled(ev.timeStamp, since) ? null : REFUSED.early;
    },
  };
}

/**
 * Calls `onUnseen` once `el` has been out of full view (visibleAndWhole and drawnFullSize) for
 * UNSEEN_PAUSE_MS while the watch is on and the tab is shown (in a hidden tab the policy pauses
 * training, and resumes it when the tab is back). Where the browser has no IntersectionObserver
 * v2, training never starts in the frame, and there is nothing to watch.
 *
 * The observer reports a change of what covers or clips `el`, not a page zooming the frame out
 * (CSS zoom on the <iframe>): the button stays whole and visible, only smaller, so no threshold is
 * crossed. So each look combines the observer's last verdict with the frame's devicePixelRatio and
 * `el`'s rect read then, and looks are taken on the observer's reports, on the frame's resize and
 * on a change of its devicePixelRatio (both follow a zoom), and once every UNSEEN_LOOK_MS while the
 * watch is on, in case a browser reports neither.
 */
export function unseenWatch(el: HTMLElement, win: Window, onUnseen: () => void) {
  let on = false;
  /** The observer's last verdict (visibleAndWhole). */
  let observed = false;
  let unseenSince: number | null = null;
  let timer: ReturnType<typeof setTimeout> | undefined;
  const inView = () => observed && drawnFullSize(win) && insideViewport(el.getBoundingClientRect(), win);
  const check = () => {
    clearTimeout(timer);
    if (!on || win.document.visibilityState === 'hidden') { unseenSince = null; return; }
    const t = win.performance.now();
    if (inView()) {
      unseenSince = null;
      timer = setTimeout(check, UNSEEN_LOOK_MS);
      return;
    }
    unseenSince ??= t;
    if (t - unseenSince < UNSEEN_PAUSE_MS) {
      // A timer, not the observer's next report: a frame taken out of the page may report nothing more.
      timer = setTimeout(check, Math.min(UNSEEN_LOOK_MS, unseenSince + UNSEEN_PAUSE_MS - t + 5));
      return;
    }
    on = false;
    unseenSince = null;
    onUnseen();
  };
  observeView(el, win, (v) => { observed = v === true; check(); });
  win.document.addEventListener('visibilitychange', check);
  win.addEventListener('resize', check);
  onPixelRatioChange(win, check);
  return {
    /** Watches while true; turning it on starts the count afresh. */
    set on(v: boolean) {
      if (v === on) return;
      on = v;
      unseenSince = null;
      check();
    },
  };
}

/** The frame's start (or resume) button, its stop button while training runs, and beside them a line that says why a click did not count, or what runs. */
function controls(doc: Document): { button: HTMLButtonElement; stop: HTMLButtonElement; note: HTMLElement } {
  const row = doc.createElement('div');
  row.style.cssText = 'display: flex; align-items: flex-start; gap: 0.4rem;';
  const button = (id: string, text: string): HTMLButtonElement => {
    const el = doc.createElement('button');
    el.type = 'button';
    el.id = id;
    el.textContent = text;
    el.style.flex = 'none';
    return el;
  };
  const b = button('murmur-start', 'Start training on my GPU');
  b.disabled = true;
  const stop = button('murmur-stop', 'Stop');
  stop.hidden = true;
  const note = doc.createElement('span');
  note.id = 'murmur-note';
  note.setAttribute('role', 'status');
  // At most two lines (the frame is one button high); the widget's status line has it all.
  note.style.cssText = 'font-size: 0.72rem; line-height: 1.2; max-height: 2.4em; overflow: hidden; color: #5a6272;';
  row.append(b, stop, note);
  // The frame (2.6rem high) is not scrolled by the visitor's wheel: a scroll moves Start, and the
  // click after it is refused as "just moved". (web/frame.html's margins leave room for a note of
  // two lines: the page cannot be scrolled at all.)
  doc.documentElement.style.overflow = 'hidden';
  doc.body.appendChild(row);
  return { button: b, stop, note };
}

/**
 * Listens for the parent's connect message, tells the parent it is ready, and serves the
 * connection. `make` builds the controller with the site's cap (only once the cap is known); it
 * may be slow (commands wait on the port meanwhile). Call it before anything else the frame
 * awaits, so the parent is not kept waiting.
 */
export function serveFrame(
  make: (hello: Required<ConnectMsg>) => TrainingController | Promise<TrainingController>,
  consent: FrameConsent,
  win: Window = window,
  timing: HoldTiming = HOLD_TIMING,
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
      const { button, stop, note } = controls(win.document);
      const gate = visibilityGate(button, win);
      const keys = keyGate(button, win.document);
      const pointer = pointerGate(button, win);
      /** Why the last click on the start button did not count (or would not); cleared when training starts. */
      let refused: string | null = null;
      /**
       * Why the frame paused training itself (out of view: HELD; the window's session not
       * confirmed: CONSENT.lost, CONSENT.forgotten), or null: only a click on its own Resume
       * undoes that. Training's end ends it, and its words with it: a Stop while paused said the
       * pause's words beside 'stopped'.
       */
      let held: string | null = null;
      /** The consent window open for a click on Start or Resume: one at a time, so a second click only opens it again. */
      let asking: { nonce: string; resume: boolean } | null = null;
      /** The nonce of the session training runs under (allowed in its consent window, held since: holdConsent). */
      let session: string | null = null;
      /** The page's intensity refused just now, said in the status while it stands (intensityRefusal). */
      const refusal = intensityRefusal(() => { showButton(); push(); });
      /** The share to say refused in a status now, or null. */
      const asked = () => refusal.shown(statusWords(c, refused, held));
      /** Ends the session, so the consent window says the widget stopped. */
      const release = () => {
        if (session === null) return;
        consent.port.release(session);
        session = null;
      };
      /**
       * A Stop (the frame's, the page's) or the page going: ends the session, and withdraws the
       * question a consent window still asks (a Resume's), which then says the widget stopped
       * instead of asking: an Allow there would start what the visitor just stopped.
       */
      const withdraw = () => {
        release();
        if (asking === null) return;
        consent.port.release(asking.nonce);
        asking = null;
        // No window to confirm in any more: the status follows the Stop.
        if (refused === CONSENT.waiting) refused = null;
      };
      // (A tab closed, or the frame taken out of the page: the window hears it at once.)
      win.addEventListener('pagehide', withdraw);
      const push = () => {
        if (queued) return;
        queued = true;
        // Coalesce bursts of changes: a few status messages per second at most.
        setTimeout(() => { queued = false; port.postMessage(widgetStatus(c, refused, held, asked())); }, 150);
      };
      // (pauseNow notifies: the controls and the status follow.)
      // Paused so, it keeps holding its session (the window's Stop, or its closing, still stops it),
      // but Resume asks through a new consent window, as Start does: the page that hid the frame
      // gets no resume from the old one.
      const watch = unseenWatch(stop, win, () => { held = HELD; c.pauseNow(); });
      const showButton = () => {
        if (!c.running) {
          held = null;
          // Training ended (its Stop, the page's, an error, the run stopped): so did its session.
          release();
        }
        // While it trains the frame shows Stop (and, when it paused itself, Resume): the page may
        // hide its own controls.
        button.hidden = c.running && held === null;
        stop.hidden = !c.running;
        stop.disabled = c.phase === 'stopping';
        watch.on = c.running && held === null;
        button.disabled = !c.canHelp || !gate.supported;
        button.textContent = asking ? CONSENT_AGAIN : held !== null ? 'Resume training' : c.phase === 'stopped' ? 'Start again' : 'Start training on my GPU';
        if (c.running && held === null) refused = null;
        else if (!gate.supported) refused = REFUSED.unsupported(win.location.origin);
        // While it trains, what it trains at: the page's slider may say anything. (The ceiling a
        // click consents to is stated in the consent window, which the page cannot mask.)
        const text = refused ?? (c.running ? widgetStatus(c, null, held, asked()).text : '');
        if (note.textContent !== text) note.textContent = note.title = text;
        gate.placed();
      };
      c.subscribe(push);
      c.subscribe(showButton);
      const ready = c.init().then(() => { push(); showButton(); });
      // Stopping needs no proof of anything: it is always what the volunteer may want.
      stop.addEventListener('click', () => { withdraw(); void c.stop(); });
      // On the document: a click where the button is while it takes no pointer events lands on
      // the page behind it, and is answered too.
      win.document.addEventListener('click', (ev) => {
        if (!frameActivated(ev, win) || ev.target === stop || button.hidden || !c.canHelp || (c.running && held === null)) return;
        if (ev.target !== button) {
          const r = button.getBoundingClientRect();
          if (!(ev.clientX >= r.left && ev.clientX <= r.right && ev.clientY >= r.top && ev.clientY <= r.bottom)) return;
        }
        // A key press on the button (Enter, Space) is a click with detail 0; a pointer's has 1 or more.
        refused = (ev.detail === 0 ? keyRefused(keys.verdict(ev.timeStamp)) : pointer.verdict(ev)) ?? gate.verdict(ev.timeStamp);
        // The click is the visitor's as far as this frame can tell; whether they meant it only the
        // consent window, out of the page's reach, can say.
        if (refused === null && asking) openConsent(consent, win, asking.nonce);
        else if (refused === null) ask(held !== null);
        if (refused === null) refused = CONSENT.waiting;
        showButton();
        push();
      }, true);
      const ask = (resume: boolean) => {
        const mine = { nonce: newNonce(win.crypto), resume };
        asking = mine;
        void askConsent(consent, win, mine.nonce, () => asking === mine, c.maxIntensity).then((answer) => {
          if (asking !== mine) return;
          asking = null;
          if (answer === 'allowed') {
            refused = null;
            let started = false;
            if (resume && held !== null) {
              held = null;
              c.resume();
              started = true;
            } else if (!resume && !c.running) {
              if (!c.consentRecord) c.giveConsent();
              c.start();
              started = true;
            }
            if (started) {
              release();
              session = mine.nonce;
              holdConsent(consent.port, mine.nonce, win, () => session === mine.nonce && c.running, (why) => {
                session = null;
                if (why === 'lost' || why === 'forgotten') {
                  // The window may still be open: paused, and Resume asks afresh.
                  held = CONSENT[why];
                  refused = null;
                  c.pauseNow();
                  if (why === 'lost') consent.port.release(mine.nonce);
                } else {
                  void c.stop().then(() => { refused = why === 'stopped' ? CONSENT.stopped : CONSENT.closed; showButton(); push(); });
                }
                showButton();
                push();
              }, timing);
            } else consent.port.release(mine.nonce);
          } else {
            refused = answer === 'denied' ? CONSENT.denied : answer === 'expired' ? CONSENT.expired : answer.message;
          }
          showButton();
          push();
        });
      };
      port.onmessage = async (m: MessageEvent) => {
        const cmd = parseCommand(m.data);
        if (!cmd) return;
        await ready;
        switch (cmd.cmd) {
          case 'pause': c.pauseNow(); break;
          // Not while the frame holds training paused: the page that hid it would resume it.
          case 'resume': if (held === null) c.resume(); break;
          case 'stop': withdraw(); await c.stop(); break;
          case 'intensity': {
            const over = hostIntensity(c, cmd.value);
            if (over === null) {
              refusal.end();
              break;
            }
            refusal.refuse(over, statusWords(c, refused, held));
            // Its answer at once, not coalesced with what follows: each refused request gets one
            // naming the cap, even when the phase changes before the next status.
            port.postMessage(widgetStatus(c, refused, held, over));
            break;
          }
        }
        showButton();
        push();
      };
      resolve(c);
    };
    win.addEventListener('message', onMessage);
    if (win.parent !== win) win.parent.postMessage({ type: READY } satisfies ReadyMsg, '*');
  });
}
