// Entry of the widget's training frame (/frame.html, loaded by embed.js after a click): the
// frame bridge shows the start button and drives a TrainingController for the embedding page.
// Nothing is remembered here: the click on the frame's own button, confirmed in the consent
// window (/consent, which the coordinator serves and no page can frame), is this page view's consent.
import '../browser/node-shims/process.ts'; // before anything that loads simple-peer
import { TrainingController } from '../controllers/training-controller.ts';
import { ConsentStore } from '../core/consent.ts';
import { serveFrame } from '../embed/frame-bridge.ts';
import { CoordinatorConsent } from '../browser/consent-client.ts';
import { volunteerWiring } from './wiring.ts';

// Listen for the embedding page first; the wiring (sensors, GPU probe) gets ready meanwhile.
const wiring = volunteerWiring(false);
const consent = { port: new CoordinatorConsent(location.origin, () => wiring.then((w) => w.runId)), path: '/consent' };
await serveFrame(async (hello) => {
  const { backend, sensors } = await wiring;
  return new TrainingController({
    backend, sensors, consent: new ConsentStore(null), maxIntensity: hello.maxIntensity, intensity: hello.intensity,
  });
}, consent);
