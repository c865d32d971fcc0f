// The widget frame's intensity against a hostile embedding page (src/ui/embed/frame-bridge.ts): the
// page sets the cap in its connect and the intensity by command, and draws its own slider, which
// may say anything. The ceiling is the cap at connect (the consent window states it: its tests are
// tests/server.consent.test.ts and ui.consent-window.browser.test.ts); the frame refuses a
// command above it with a sentence saying so, trains on at or below it, and says in its own
// status what it trains at. A real TrainingController on fakes, under fake timers.
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { TrainingController } from '../src/ui/controllers/training-controller.ts';
import { ConsentStore } from '../src/ui/core/consent.ts';
import { hostIntensity, parseCommand, parseConnect, widgetStatus } from '../src/ui/embed/frame-bridge.ts';
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
