// Entry of the volunteer page (/): the panel, its TrainingController, the coordinator backend,
// the browser's sensors and the consent store. The only place these meet.
import '../browser/node-shims/process.ts'; // before anything that loads simple-peer
import '../elements/volunteer-panel.ts';
import { TrainingController } from '../controllers/training-controller.ts';
import { ConsentStore } from '../core/consent.ts';
import { pageOptions } from '../browser/page-options.ts';
import { volunteerWiring } from './wiring.ts';

const panel = document.querySelector('murmur-volunteer-panel')!;
try {
  const { backend, sensors, storage } = await volunteerWiring(true);
  const controller = new TrainingController({ backend, sensors, consent: new ConsentStore(storage), ...pageOptions(location.search) });
  panel.controller = controller;
  await controller.init();
  (window as unknown as { murmurVolunteer: TrainingController }).murmurVolunteer = controller;
} catch (e) {
  panel.textContent = `The volunteer page could not start: ${(e as Error).message}. Nothing was run.`;
}
