// Test page wiring: real DashboardController + <murmur-dashboard>, fake coordinator feed.
import '../../../src/ui/elements/dashboard.ts';
import { DashboardController } from '../../../src/ui/controllers/dashboard-controller.ts';
import { FakeDashboardSource, fakeCheckpoint, fakeEvent, fakePeerId, fakeReport } from '../../support/ui-fakes.ts';

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
// One an older coordinator stored with its peer's claim, not measured yet.
source.checkpointRows[1] = { ...source.checkpointRows[1]!, valLoss: 0.02, measured: false };
// Stored run events: the run, every peer joining, each checkpoint saved.
source.eventRows.push(fakeEvent('run-created', now - 600_000, null, { run: { preset: 'tiny', dataset: 'moby-dick' } }));
for (let i = 0; i < peers; i++) {
  source.eventRows.push(fakeEvent('peer-joined', now - 600_000 + 10 * i, fakePeerId(i), { replica: i, resumed: false, client: { kind: 'browser', adapter: `fake GPU ${i}` } }));
}
for (const c of source.checkpointRows) source.eventRows.push(fakeEvent('checkpoint-saved', c.createdAt, c.peerId, { id: c.id, step: c.step, valLoss: c.valLoss, bytes: c.bytes }));
source.eventRows.sort((a, b) => a.t - b.t);

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
    // Churn: a peer rejoins every second (its row stays; the events panel re-renders).
    source.pushEvent(fakeEvent('peer-joined', t, fakePeerId(step % peers), { replica: step % peers, resumed: true, client: { kind: 'browser' } }));
  }, 1000);
}

const dashTest = { source, controller, fakeReport, fakeEvent, fakePeerId, stopLive: () => liveTimer && clearInterval(liveTimer), step: () => step };
declare global { interface Window { dashTest: typeof dashTest } }
window.dashTest = dashTest;
