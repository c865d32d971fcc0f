// Test page wiring: real DashboardController + <murmur-dashboard>, fake coordinator feed.
import '../../../src/ui/elements/dashboard.ts';
import { DashboardController } from '../../../src/ui/controllers/dashboard-controller.ts';
import { FakeDashboardSource, fakeCheckpoint, fakeReport } from '../../support/ui-fakes.ts';

const q = new URLSearchParams(location.search);
const peers = Number(q.get('peers') ?? 3);
const now = Date.now();
const source = new FakeDashboardSource();
source.runInfo = { ...source.runInfo, createdAt: now - 600_000 };
// Ten minutes of history: one report per peer every 10 s.
let step = 0;
for (let t = now - 600_000; t <= now - 10_000; t += 10_000, step += 10) {
  for (let i = 0; i < peers; i++) source.historyRows.push(fakeReport(i, step, t + i * 7));
}
source.checkpointRows = [100, 300, 500].map((s, k) => fakeCheckpoint(s, now - 400_000 + k * 150_000));

const controller = new DashboardController({ source });
document.querySelector('murmur-dashboard')!.controller = controller;
await controller.start();
source.handlers?.connection('live');

let liveTimer: ReturnType<typeof setInterval> | null = null;
if (q.get('live') === '1') {
  liveTimer = setInterval(() => {
    step += 1;
    const t = Date.now();
    for (let i = 0; i < peers; i++) source.push(fakeReport(i, step, t));
  }, 1000);
}

const dashTest = { source, controller, fakeReport, stopLive: () => liveTimer && clearInterval(liveTimer), step: () => step };
declare global { interface Window { dashTest: typeof dashTest } }
window.dashTest = dashTest;
