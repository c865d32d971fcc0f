// One outer round for the page and the headless volunteer (src/round/outer-round.ts): the same
// round, driven once through the browser's TrainingController and once through the headless
// volunteer's runOuterRound, gives the same report.
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { TrainingController } from '../src/ui/controllers/training-controller.ts';
import { ConsentStore } from '../src/ui/core/consent.ts';
import { runOuterRound } from '../src/volunteer/round.ts';
import { lossToWire, type ReportFields } from '../src/protocol/messages.ts';
import type { Mesh } from '../src/sync/mesh.ts';
import type { ExchangeResult, PartnerPayload } from '../src/sync/types.ts';
import { FAKE_GPU, FAKE_RUN, FakeBackend, FakeSensors, FakeTrainer, MemoryStorage } from './support/ui-fakes.ts';

const GPU_NAME = FAKE_GPU.ok ? FAKE_GPU.name : null;

beforeEach(() => { vi.useFakeTimers({ now: 1_700_000_000_000 }); });
afterEach(() => { vi.useRealTimers(); });

/** What a report looks like on the wire, minus the two fields that depend on wall time. */
function comparable(r: ReportFields): Omit<ReportFields, 'time' | 'tokensPerS'> {
  const { time, tokensPerS, ...rest } = r;
  expect(time).toBeGreaterThan(0);
  expect(tokensPerS).toBeGreaterThan(0);
  return rest;
}

describe('one outer round (page and headless volunteer)', () => {
  it('the TrainingController and the headless volunteer report the same fields and values for the same paired round', async () => {
    // The page: one round of H = 5 steps against the fake mesh (a partner, φ 0.5 away per element).
    const backend = new FakeBackend(FAKE_RUN, undefined, 20);
    backend.mesh.peers = 2;
    const c = new TrainingController({
      backend, sensors: new FakeSensors(), consent: new ConsentStore(new MemoryStorage(), () => Date.now()), intensity: 1, evalEveryRounds: 1,
    });
    await c.init();
    c.giveConsent();
    c.start();
    for (let i = 0; i < 50 && !backend.reports.some((r) => r.round === 1); i++) await vi.advanceTimersByTimeAsync(20);
    const stopping = c.stop();
    await vi.advanceTimersByTimeAsync(1000);
    await stopping;
    const pageReport = backend.reports.find((r) => r.round === 1)!;
    expect(pageReport).toBeDefined();
    // What the page's backend sends: losses by name when non-finite (lossToWire), as the headless one does.
    const pageWire: ReportFields = { ...pageReport, trainLoss: lossToWire(pageReport.trainLoss), valLoss: lossToWire(pageReport.valLoss) };

    // The headless volunteer: the same trainer curve, the same partner and exchange.
    const trainer = new FakeTrainer();
    const losses = await (async () => { const p = trainer.train(FAKE_RUN.H); await vi.advanceTimersByTimeAsync(200); return p; })();
    const mine = await trainer.outerPayload();
    const partner = backend.mesh.partners[0]!;
    const bytes = mine.phi.byteLength + mine.delta.byteLength;
    const payload: PartnerPayload = {
      peer: partner, round: 0, phi: mine.phi.map((v) => v + 0.5), delta: mine.delta.slice(), deltaNorm: 0.2, phiDistance: 0.5 * Math.sqrt(mine.phi.length), clipped: false,
    };
    const result: ExchangeResult = {
      round: 0, outcome: 'paired', partner, payload, reason: null, rejection: null, via: 'coordinator',
      pairMs: 1, transferMs: 1, elapsedMs: 2, budgetMs: 1000, bytesSent: bytes, bytesReceived: bytes,
      link: { local: 'host', remote: 'host', connectMs: 12 }, linkError: null,
    };
    const mesh = { exchange: async () => result, stats: () => ({ linkFailures: 0, lastLinkError: null }) } as unknown as Mesh;
    const headless = await runOuterRound(mesh, trainer, {
      round: 0, inner: { step: trainer.step, losses, tokens: FAKE_RUN.H * FAKE_RUN.tokensPerStep, innerMs: 100 },
      pairWaitFrac: FAKE_RUN.pairWaitFrac, adapter: GPU_NAME, evaluate: () => trainer.evaluate(),
    });

    expect(Object.keys(pageWire).sort()).toEqual(Object.keys(headless.report).sort());
    expect(comparable(pageWire)).toEqual(comparable(headless.report));
    // Not vacuous: a paired round with a measured distance, loss and validation loss.
    expect(headless.report).toMatchObject({ step: 5, round: 1, partner, partnerDist: 1, bytesIn: bytes, bytesOut: bytes, adapter: GPU_NAME, linkLocal: 'host', connectMs: 12 });
    expect(typeof headless.report.trainLoss).toBe('number');
    expect(typeof headless.report.valLoss).toBe('number');
  });
});
