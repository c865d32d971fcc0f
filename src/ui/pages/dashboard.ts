// Entry of /dashboard: wires the dashboard to this coordinator (same origin) and the in-browser
// sampler. The only place these implementations meet.
import '../elements/dashboard.ts';
import { DashboardController } from '../controllers/dashboard-controller.ts';
import { CoordinatorDashboardSource } from '../browser/coordinator-dashboard.ts';
import { pickRun } from '../browser/runs.ts';
import { createSampler } from '../sampling/sampler.ts';

const el = document.querySelector('murmur-dashboard')!;
try {
  const runId = await pickRun(location.origin, location.search);
  const source = new CoordinatorDashboardSource({ baseUrl: location.origin, runId, sampler: createSampler() });
  const controller = new DashboardController({ source });
  el.controller = controller;
  await controller.start();
  (window as unknown as { murmurDashboard: DashboardController }).murmurDashboard = controller;
} catch (e) {
  el.textContent = `The dashboard could not start: ${(e as Error).message}`;
}
