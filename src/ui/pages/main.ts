// Entry of the volunteer page (/): the panel, its TrainingController, the coordinator backend,
// the browser's sensors and the consent store. The only place these meet.
import '../browser/node-shims/process.ts'; // before anything that loads simple-peer
import '../elements/volunteer-panel.ts';
import { TrainingController } from '../controllers/training-controller.ts';
import { ConsentStore } from '../core/consent.ts';
import { volunteerWiring } from './wiring.ts';

const panel = document.querySelector('murmur-volunteer-panel')!;
try {
  const { backend, sensors, storage } = await volunteerWiring(true);
  // ?eval=N: validation loss every N outer steps (default 5); tests and demos use 1.
  const evalParam = new URLSearchParams(location.search).get('eval');
  const evalEveryRounds = evalParam === null ? undefined : Number(evalParam);
  if (evalEveryRounds !== undefined && !(Number.isInteger(evalEveryRounds) && evalEveryRounds >= 0)) {
    throw new Error(`?eval= must be a non-negative integer (outer steps between validation losses), got "${evalParam}"`);
  }
  const controller = new TrainingController({ backend, sensors, consent: new ConsentStore(storage), evalEveryRounds });
  panel.controller = controller;
  await controller.init();
  (window as unknown as { murmurVolunteer: TrainingController }).murmurVolunteer = controller;
} catch (e) {
  panel.textContent = `The volunteer page could not start: ${(e as Error).message}. Nothing was run.`;
}
