// Test page wiring: real TrainingController, panel, BrowserSensors and GPU probe; fake backend.
import '../../../src/ui/elements/volunteer-panel.ts';
import { TrainingController } from '../../../src/ui/controllers/training-controller.ts';
import { ConsentStore } from '../../../src/ui/core/consent.ts';
import { BrowserSensors } from '../../../src/ui/browser/sensors.ts';
import { browserProbeEnv, probeGpu } from '../../../src/ui/browser/gpu-probe.ts';
import { FakeBackend } from '../../support/ui-fakes.ts';

const q = new URLSearchParams(location.search);
const backend = new FakeBackend(undefined, undefined, Number(q.get('msPerStep') ?? 20));
backend.mesh.peers = Number(q.get('peers') ?? 2);
backend.probeGpu = () => probeGpu(browserProbeEnv(), { maxStorageBufferBindingSize: 4 << 20 });

const sensors = await BrowserSensors.start();
const controller = new TrainingController({
  backend, sensors, consent: new ConsentStore(localStorage), intensity: Number(q.get('intensity') ?? 0.5), evalEveryRounds: 2,
});
const panel = document.querySelector('murmur-volunteer-panel')!;
panel.controller = controller;
await controller.init();

const volunteerTest = { backend, controller, sensors };
declare global { interface Window { volunteerTest: typeof volunteerTest } }
window.volunteerTest = volunteerTest;
