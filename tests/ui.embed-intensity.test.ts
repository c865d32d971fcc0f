// The widget frame's intensity against a hostile embedding page (src/ui/embed/frame-bridge.ts): the
// page sets the cap in its connect and the intensity by command, and draws its own slider, which
// may say anything. The ceiling is the cap at connect (the consent window states it: its tests are
// tests/server.consent.test.ts and ui.consent-window.browser.test.ts); the frame refuses a
// command above it with a sentence saying so, trains on at or below it, and says in its own
// status what it trains at. A real TrainingController on fakes, under fake timers. The refusal
// answers the request that asked: the frame's statuses, read from its port in a bare window
// (serveFrame), say it in reply to each refused request and then say the phase again.
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { TrainingController } from '../src/ui/controllers/training-controller.ts';
import { ConsentStore } from '../src/ui/core/consent.ts';
import { hostIntensity, intensityRefusal, parseCommand, parseConnect, serveFrame, widgetStatus } from '../src/ui/embed/frame-bridge.ts';
import type { FrameStatus } from '../src/ui/embed/bridge.ts';
import type { ConsentPort } from '../src/ui/ports.ts';
import { FAKE_RUN, FakeBackend, FakeSensors, MemoryStorage } from './support/ui-fakes.ts';

beforeEach(() => { vi.useFakeTimers({ now: 1_700_000_000_000 }); });
afterEach(() => { vi.useRealTimers(); });

const advance = (ms: number) => vi.advanceTimersByTimeAsync(ms);

/** Moves the fake clock on until `ok()` holds (each look 50 ms on), failing after 20 s of fake time. */
async function until(ok: () => boolean, what: string): Promise<void> {
  for (let t = 0; t < 20_000; t += 50) {
    if (ok()) return;
    await advance(50);
  }
  throw new Error(`never: ${what}`);
}

/** A controller built as the frame builds it from the page's connect. */
async function connected(connect: unknown) {
  const hello = parseConnect(connect);
  if (!hello) throw new Error('connect refused');
  const backend = new FakeBackend(FAKE_RUN, undefined, 20);
  const c = new TrainingController({
    backend, sensors: new FakeSensors({ battery: true, pressure: true }), consent: new ConsentStore(new MemoryStorage(), () => Date.now()),
    maxIntensity: hello.maxIntensity, intensity: hello.intensity,
  });
  await c.init();
  return { c, backend };
}

/** The page's `intensity` command, checked as the port's handler checks it. */
function command(c: TrainingController, value: number): number | null {
  const cmd = parseCommand({ cmd: 'intensity', value });
  if (cmd?.cmd !== 'intensity') throw new Error('command refused');
  return hostIntensity(c, cmd.value);
}

describe('widget frame intensity', () => {
  it('refuses a page raising the intensity above the ceiling, trains on at or below it, and says what it trains at', async () => {
    const { c, backend } = await connected({ type: 'murmur:connect', run: '', maxIntensity: 0.4, intensity: 0.2 });
    backend.mesh.peers = 2;

    c.giveConsent();
    c.start();
    await until(() => c.phase === 'training' && c.figures.step > 0, 'training steps');
    expect(widgetStatus(c).text).toMatch(/, GPU at 20%\.$/);

    // The page shows 10% on its own slider and asks the frame for all of the GPU: refused, and said.
    const asked = command(c, 1);
    expect(asked).toBe(1);
    expect(c.intensity).toBe(0.2);
    await until(() => c.phase === 'training', 'training again');
    const status = widgetStatus(c, null, null, asked);
    expect(status.text).toBe('Refused: this site asked for 100% of your GPU, above its cap of 40% that the Murmur window states; GPU at 20%.');
    expect(status.intensity).toBe(0.2);
    expect(status.maxIntensity).toBe(0.4);
    // Training goes on, at the intensity it had.
    const before = c.figures.step;
    await until(() => c.figures.step > before + 5, 'more steps');
    expect(c.intensity).toBe(0.2);
    expect(c.effectiveIntensity).toBeLessThanOrEqual(0.4);

    // Lowered, then raised back up to the ceiling: both taken, and the status follows.
    expect(command(c, 0.1)).toBeNull();
    expect(c.intensity).toBe(0.1);
    expect(command(c, 0.4)).toBeNull();
    expect(c.intensity).toBe(0.4);
    await until(() => c.phase === 'training', 'training at the ceiling');
    expect(widgetStatus(c).text).toMatch(/, GPU at 40%\.$/);
    // Just above it is refused as well.
    expect(command(c, 0.45)).toBe(0.45);
    expect(c.intensity).toBe(0.4);

    const done = c.stop();
    await advance(1000);
    await done;
  });

  it('takes a ceiling of all of the GPU from a page that sets no cap', async () => {
    const { c } = await connected({ type: 'murmur:connect', run: '' });
    expect(c.maxIntensity).toBe(1);
    expect(command(c, 1)).toBeNull();
    expect(c.intensity).toBe(1);
  });
});

/**
 * Just enough of a browser window for serveFrame in Node: elements that keep what is set on them,
 * and an IntersectionObserver v2 that reports them in full view (as Chromium does for a frame
 * shown plainly), so the frame neither refuses for want of it nor holds training as unseen. No
 * click is made: the test starts the controller the frame drives itself, since the refusal is
 * about the page's commands, not about consent.
 */
function bareWindow() {
  const listeners = new Map<string, Set<(ev: unknown) => void>>();
  const rect = { left: 0, top: 0, right: 100, bottom: 30, x: 0, y: 0, width: 100, height: 30 };
  const element = () => ({
    style: {}, hidden: false, disabled: false, textContent: '', title: '', id: '', type: '', isConnected: true,
    setAttribute() {}, append() {}, addEventListener() {}, getBoundingClientRect: () => rect,
  });
  // (isVisible on the prototype: the frame looks for it there to tell v2 from v1.)
  class IntersectionObserverEntry { get isVisible() { return true; } intersectionRatio = 1; boundingClientRect = rect; time = Date.now(); }
  class IntersectionObserver {
    constructor(private readonly report: (entries: IntersectionObserverEntry[]) => void) {}
    observe() { queueMicrotask(() => this.report([new IntersectionObserverEntry()])); }
  }
  const win = {
    IntersectionObserver, IntersectionObserverEntry,
    parent: { postMessage() {} },
    location: { origin: 'https://murmur.test' },
    performance: { now: () => Date.now() },
    innerWidth: 400, innerHeight: 40, devicePixelRatio: 1,
    crypto: globalThis.crypto,
    document: { createElement: element, body: { appendChild() {} }, documentElement: { style: {} }, addEventListener() {}, visibilityState: 'visible' },
    addEventListener(type: string, fn: (ev: unknown) => void) { (listeners.get(type) ?? listeners.set(type, new Set()).get(type)!).add(fn); },
    removeEventListener(type: string, fn: (ev: unknown) => void) { listeners.get(type)?.delete(fn); },
    dispatch(type: string, ev: unknown) { for (const fn of [...(listeners.get(type) ?? [])]) fn(ev); },
  };
  return win;
}

/** A consent port that no test here reaches (no click counts in a bare window): it says so if one does. */
const noConsent: ConsentPort = {
  register: () => Promise.reject(new Error('no consent window in a bare window')),
  claim: () => Promise.reject(new Error('no consent window in a bare window')),
  release() {},
};

/** The frame served in a bare window, connected by a page with `connect`: its controller, the statuses on the page's port, and the page's commands. */
async function framed(connect: Record<string, unknown>) {
  const win = bareWindow();
  const backend = new FakeBackend(FAKE_RUN, undefined, 20);
  backend.mesh.peers = 2;
  const statuses: FrameStatus[] = [];
  const port = { onmessage: null as ((m: { data: unknown }) => void) | null, postMessage(m: FrameStatus) { statuses.push(m); } };
  const served = serveFrame((hello) => new TrainingController({
    backend, sensors: new FakeSensors({ battery: true, pressure: true }), consent: new ConsentStore(new MemoryStorage(), () => Date.now()),
    maxIntensity: hello.maxIntensity, intensity: hello.intensity,
  }), { port: noConsent, path: '/web/consent.html' }, win as unknown as Window);
  win.dispatch('message', { source: win.parent, data: { type: 'murmur:connect', run: '', ...connect }, ports: [port] });
  const c = await served;
  await until(() => statuses.length > 0, 'the first status');
  const last = () => statuses.at(-1)!;
  const send = (data: unknown) => port.onmessage!({ data });
  return { c, statuses, last, send };
}

const REFUSED_ALL = 'Refused: this site asked for 100% of your GPU, above its cap of 40% that the Murmur window states';

describe('widget frame status after a refused intensity', () => {
  it('says the refusal in reply, then the phase the moment it changes: Paused, Training again, Stopped', async () => {
    const { c, statuses, last, send } = await framed({ maxIntensity: 0.4, intensity: 0.2 });
    c.giveConsent();
    c.start();
    await until(() => last().phase === 'training' && c.figures.step > 0, 'training steps');

    const before = statuses.length;
    send({ cmd: 'intensity', value: 1 });
    await until(() => statuses.length > before, 'a reply');
    expect(statuses[before]!.text).toMatch(new RegExp(`^${REFUSED_ALL}; GPU at 20%\\.$`));
    expect(c.intensity).toBe(0.2);

    // The page pauses: the status says so, not the refusal (the old frame said "Refused" on).
    send({ cmd: 'pause' });
    await until(() => c.phase === 'paused' && last().phase === 'paused', 'paused');
    expect(last().text).toBe('Paused. Your progress is kept.');
    // Resumed: training, and the refusal of before is not said again.
    send({ cmd: 'resume' });
    await until(() => last().phase === 'training' && /^Training: /.test(last().text), 'training again');
    const resumed = statuses.length;
    await until(() => statuses.length > resumed + 3, 'more statuses');
    expect(statuses.slice(resumed - 1).filter((s) => s.text.startsWith('Refused'))).toEqual([]);

    // Refused again, then stopped: the stop is said.
    send({ cmd: 'intensity', value: 1 });
    send({ cmd: 'stop' });
    await until(() => last().phase === 'stopped', 'stopped');
    expect(last().text).toBe('Stopped. Thank you!');
  });

  it('lets a refusal lapse while nothing changes, and answers each refused request, whatever the phase, naming the cap', async () => {
    const { c, statuses, last, send } = await framed({ maxIntensity: 0.4, intensity: 0.2 });
    // Ready: the page asks for all of the GPU, and gets the refusal.
    send({ cmd: 'intensity', value: 1 });
    await until(() => last().text.startsWith('Refused'), 'refused while ready');
    expect(last().text).toBe(`${REFUSED_ALL}.`);
    // Nothing else happens: the status goes back to Ready (the old frame said "Refused" for good).
    await until(() => last().phase === 'ready' && last().text.startsWith('Ready: '), 'ready again');

    c.giveConsent();
    c.start();
    await until(() => last().phase === 'training' && c.figures.step > 0, 'training steps');
    const before = statuses.length;
    send({ cmd: 'intensity', value: 0.9 });
    await until(() => statuses.length > before, 'a reply');
    expect(statuses[before]!.text).toMatch(/^Refused: this site asked for 90% of your GPU, above its cap of 40% that the Murmur window states; GPU at 20%\.$/);
    // Training goes on, and its status comes back while it does.
    await until(() => /^Training: /.test(last().text), 'the training status again');
    expect(last().phase).toBe('training');

    // Within the cap: taken, and no refusal said.
    const within = statuses.length;
    send({ cmd: 'intensity', value: 0.3 });
    await until(() => statuses.length > within && last().intensity === 0.3, 'the intensity taken');
    expect(last().text).not.toMatch(/^Refused/);

    const done = c.stop();
    await advance(1000);
    await done;
    await until(() => last().phase === 'stopped', 'stopped');
    // Stopped: a refused request still gets its answer naming the cap.
    const stopped = statuses.length;
    send({ cmd: 'intensity', value: 1 });
    await until(() => statuses.length > stopped, 'a reply');
    expect(statuses[stopped]!.text).toBe(`${REFUSED_ALL}.`);
    expect(statuses[stopped]!.phase).toBe('stopped');
    await until(() => last().text === 'Stopped. Thank you!', 'stopped said again');
  });

  it('intensityRefusal: stands while the words stay, ends for good when they change, and lapses by itself', async () => {
    let lapsed = 0;
    const r = intensityRefusal(() => { lapsed++; });
    expect(r.shown('training')).toBeNull();
    r.refuse(1, 'training');
    for (let i = 0; i < 5; i++) expect(r.shown('training')).toBe(1);
    expect(r.shown('paused')).toBeNull();
    // Back to training: that refusal answered a request made before the pause, and is not said again.
    expect(r.shown('training')).toBeNull();
    // A refusal nothing ends lapses, and says so once, so the status that follows it is sent.
    r.refuse(0.9, 'ready');
    await until(() => lapsed > 0, 'the lapse');
    expect(r.shown('ready')).toBeNull();
    // A request within the cap ends it at once, and nothing lapses after.
    r.refuse(0.8, 'ready');
    r.end();
    expect(r.shown('ready')).toBeNull();
    await advance(60_000);
    expect(lapsed).toBe(1);
  });
});
