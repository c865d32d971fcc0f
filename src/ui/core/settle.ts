// When a click on a button that starts something counts: the button has been drawn in one place
// for SETTLE_MS, and so has what the caller checks besides (the widget's frame: the button in full
// view, src/ui/embed/frame-bridge.ts; the volunteer page: the page shown and focused, pageGate).
// A page that brings our button under the visitor's pointer just before a click it expects gets a
// click that does not count: a frame slid there (clickjacking), or the volunteer page that its
// opener navigated to as the pop-up over it closed on the first press of a double-click
// (double-clickjacking). docs/design.md section 6.

/** How long a start button must have been in place, and what the caller checks besides held, before a click on it counts. */
export const SETTLE_MS = 500;

/** Whether a click at `t` counts: each of `since` (null: not yet) is at least SETTLE_MS before it. */
export function settled(t: number, ...since: (number | null)[]): boolean {
  return since.every((s) => s !== null && t - s >= SETTLE_MS);
}

/** When a click would count at the earliest: SETTLE_MS after the latest of `since`. */
export function settlesAt(...since: number[]): number {
  return Math.max(...since) + SETTLE_MS;
}

/** Where `el` is drawn: its box in the viewport, the viewport, the zoom, and whether it is shown and enabled. */
function placeOf(el: HTMLElement, win: Window): string {
  if (el.hidden || !el.isConnected) return 'hidden';
  const r = el.getBoundingClientRect();
  return [r.x, r.y, r.width, r.height, win.innerWidth, win.innerHeight].map(Math.round).join(',') +
    ` ${win.devicePixelRatio}x` + ((el as HTMLButtonElement).disabled ? ' disabled' : '');
}

/**
 * Since when a button has been in place: `look(el, t)` restarts the clock at `t` when it finds the
 * button shown, hidden, enabled, moved or drawn by another element since the previous look (a
 * page re-rendered may draw it anew), and gives the clock's start; `restart(t)` restarts it.
 */
export function placeClock(win: Window, t0: number) {
  let at = t0;
  let seen: { el: HTMLElement; place: string } | null = null;
  return {
    look(el: HTMLElement, t: number): number {
      const place = placeOf(el, win);
      if (seen?.el !== el || seen.place !== place) { seen = { el, place }; at = t; }
      return at;
    },
    restart(t: number) { at = t; },
  };
}

/** How long a button must have held the keyboard focus, with no other key pressed, before Enter or Space on it counts (keyGate). */
export const KEY_FOCUS_MS = 500;

/** Why a key press on a button did not count: it had only just got the focus, or other keys were typed on it. */
export type KeyRefusal = 'keyboard' | 'typed';

/**
 * Whether a key press on `button` (its click with detail 0) counts: the button has held the
 * keyboard focus for KEY_FOCUS_MS, and no other key was pressed in `doc` since it got it, nor
 * was the key held (a repeat). A visitor typing in a form field the page put just before the
 * widget's frame presses Tab, lands on Start and types on; the Space or Enter that follows is a
 * trusted activation of the button. So with a top-level window a page opened under a visitor
 * who types (the consent window, after a click on Start the page got through a mask): its keys
 * go on into it, a Tab lands on Allow and the next Space pressed it. `verdict(t)` takes the
 * click's timeStamp; a refusal restarts the clock, so that pressing again after a moment works
 * (the keyboard keeps its way), but forgets no key typed: only the button's getting the focus
 * anew does. The visitor who typed on and pressed Enter, seeing no answer where they thought they
 * typed, presses Enter again, and that press counted when the refusal forgot the typing. The
 * button may be in a shadow root: a key's own target is the first of its composed path.
 */
export function keyGate(button: HTMLElement, doc: Document) {
  /** When the button got the focus (or a key press on it was last refused); null while it has none. */
  let since: number | null = null;
  let otherKeys = false;
  button.addEventListener('focus', (e) => { since = e.timeStamp; otherKeys = false; });
  button.addEventListener('blur', () => { since = null; });
  // Capture: the keys reach the document first, wherever its focus is.
  doc.addEventListener('keydown', (e) => {
    // Enter or Space pressed once on the button is the press being judged; any other key is not.
    if (e.composedPath()[0] !== button || e.repeat || (e.key !== 'Enter' && e.key !== ' ')) otherKeys = true;
  }, true);
  return {
    verdict(t: number): KeyRefusal | null {
      if (since !== null && !otherKeys && t - since >= KEY_FOCUS_MS) return null;
      if (otherKeys) return 'typed';
      if (since !== null) since = t;
      return 'keyboard';
    },
  };
}

/** Why a click on the volunteer page's I agree or Start did not count. */
export const PAGE_REFUSED = 'That click did not count: this page had only just come to the front, or this button had just appeared or moved. Click it again.';

/** Why a key press (Enter, Space) on one of them did not count (keyGate). */
export const PAGE_KEY_REFUSED: Record<KeyRefusal, string> = {
  keyboard: 'That key did not count: this button had only just got the keyboard focus. Press it again.',
  typed: 'That key did not count: other keys were typed on this button, or the key was held. Move the focus off it and back, then press it.',
};

/**
 * Whether a click on one of the volunteer page's guarded buttons (I agree, Start) counts: the page
 * has been shown and had the focus for SETTLE_MS without a break, and the button has been in place
 * as long (a placeClock per button, by its key). Frame-ancestors keeps the page out of frames, but
 * a site can open a pop-up over its own tab, navigate that tab to the volunteer page when the
 * visitor presses the pop-up's "double-click here", and close the pop-up: the second click lands
 * on the page, which has just come to the front. `buttons()` lists the guarded buttons now drawn,
 * with their keys; call `refresh()` after each render. While a click would not count, a button
 * takes no pointer events (a click there reaches what is behind it); `at(x, y)` says whether a
 * point lies on a guarded, enabled button, for a click there to be answered.
 */
export function pageGate(win: Window, buttons: () => Iterable<[string, HTMLElement]>) {
  const doc = win.document;
  const front = () => doc.visibilityState === 'visible' && doc.hasFocus();
  let frontSince: number | null = front() ? win.performance.now() : null;
  const clocks = new Map<string, ReturnType<typeof placeClock>>();
  let timer: ReturnType<typeof setTimeout> | undefined;
  const placedAt = (key: string, el: HTMLElement, t: number) => {
    let c = clocks.get(key);
    if (!c) clocks.set(key, c = placeClock(win, t));
    return c.look(el, t);
  };
  /** Each guarded button's keyGate, made when refresh() first sees it (before it can have the focus). */
  const keyed = new WeakMap<HTMLElement, ReturnType<typeof keyGate>>();
  const keysOf = (el: HTMLElement) => {
    let k = keyed.get(el);
    if (!k) keyed.set(el, k = keyGate(el, doc));
    return k;
  };
  const verdict = (key: string, el: HTMLElement, t: number, keyboard = false): string | null => {
    if (!(front() && settled(t, frontSince, placedAt(key, el, t)))) return PAGE_REFUSED;
    const why = keyboard ? keysOf(el).verdict(t) : null;
    return why === null ? null : PAGE_KEY_REFUSED[why];
  };
  const refresh = () => {
    clearTimeout(timer);
    const t = win.performance.now();
    let next = Infinity;
    for (const [key, el] of buttons()) {
      keysOf(el);
      const open = front() && settled(t, frontSince, placedAt(key, el, t));
      el.style.pointerEvents = open ? '' : 'none';
      if (!open && frontSince !== null) next = Math.min(next, settlesAt(frontSince, placedAt(key, el, t)));
    }
    if (next < Infinity) timer = setTimeout(refresh, next - t + 5);
  };
  // Coming to the front (a focus, the tab shown, a page back from the back/forward cache) restarts
  // the clock; leaving it stops it.
  const restart = () => { frontSince = front() ? win.performance.now() : null; refresh(); };
  win.addEventListener('focus', restart);
  win.addEventListener('blur', restart);
  win.addEventListener('pageshow', restart);
  doc.addEventListener('visibilitychange', restart);
  // A scroll or a resize moves the buttons: the look restarts their clocks.
  win.addEventListener('scroll', refresh, { capture: true, passive: true });
  win.addEventListener('resize', refresh);
  return {
    /**
     * Null when a click at `t` (its timeStamp) on `el`, the button of `key`, counts; otherwise why
     * not. `keyboard`: the click is a key press (detail 0), which keyGate judges too.
     */
    verdict,
    refresh,
    at(x: number, y: number): boolean {
      for (const [, el] of buttons()) {
        const r = el.getBoundingClientRect();
        if (!(el as HTMLButtonElement).disabled && x >= r.left && x <= r.right && y >= r.top && y <= r.bottom) return true;
      }
      return false;
    },
  };
}
