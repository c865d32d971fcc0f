// Test frame: the real frame bridge, TrainingController, sensors and GPU probe; fake backend.
import { TrainingController } from '../../../src/ui/controllers/training-controller.ts';
import { ConsentStore } from '../../../src/ui/core/consent.ts';
import { BrowserSensors } from '../../../src/ui/browser/sensors.ts';
import { browserProbeEnv, probeGpu } from '../../../src/ui/browser/gpu-probe.ts';
import { CONSENT_GRACE_MS, CONSENT_HOLD_MS, serveFrame, type HoldTiming } from '../../../src/ui/embed/frame-bridge.ts';
import { FakeBackend } from '../../support/ui-fakes.ts';
import { CoordinatorConsent } from '../../../src/ui/browser/consent-client.ts';

const backend = new FakeBackend(undefined, undefined, 20);
backend.mesh.peers = 1;
backend.probeGpu = () => probeGpu(browserProbeEnv(), { maxStorageBufferBindingSize: 4 << 20 });
const frameTest = {
  backend, controller: null as TrainingController | null,
  /** How often the frame claims its session and how long it trains on unheard: a test shortens them. */
  hold: { holdMs: CONSENT_HOLD_MS, graceMs: CONSENT_GRACE_MS } as HoldTiming,
  /**
   * What becomes of the frame's claims: 'through' to the coordinator, 'unreachable' (each fails
   * as fetch does when the network is down), or 'forgotten' (a 404, as from a coordinator that
   * crashed and lost the session).
   */
  claims: 'through' as 'through' | 'unreachable' | 'forgotten',
};
declare global { interface Window { frameTest: typeof frameTest } }
window.frameTest = frameTest;
// A slow frame: it starts listening well after its load event (as a frame whose entry module
// awaits its wiring first would, on a busy machine). The host must wait for its `ready`.
await new Promise((r) => setTimeout(r, 1500));
const sensorsReady = BrowserSensors.start();
// The consent window is the real page (web/consent.html), and /api goes to a real coordinator
// (startBrowser's `proxy`): the run's embedding sites are the test's host pages.
const claims: typeof fetch = async (input, init) => {
  if (String(input).endsWith('/claim') && frameTest.claims === 'unreachable') throw new TypeError('Failed to fetch');
  if (String(input).endsWith('/claim') && frameTest.claims === 'forgotten') {
    return new Response(JSON.stringify({ error: 'no such consent request: it expired, ended, was already used, or never existed. Press Start in the widget again.' }), { status: 404 });
  }
  return fetch(input, init);
};
const consent = { port: new CoordinatorConsent(location.origin, () => 'default', claims), path: '/web/consent.html' };
frameTest.controller = await serveFrame(async (hello) => new TrainingController({
  backend, sensors: await sensorsReady, consent: new ConsentStore(null), maxIntensity: hello.maxIntensity, intensity: hello.intensity,
}), consent, window, frameTest.hold);
