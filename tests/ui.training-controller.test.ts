// TrainingController against fakes under vitest's fake timers: the whole volunteer flow, the
// duty cycle, pause variants, policy back-off, reports and errors, deterministically.
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { MIN_PAIR_WAIT_MS, TrainingController } from '../src/ui/controllers/training-controller.ts';
import { ConsentStore } from '../src/ui/core/consent.ts';
import { FAKE_RUN, FakeBackend, FakeMesh, FakeSensors, MemoryStorage } from './support/ui-fakes.ts';

beforeEach(() => { vi.useFakeTimers({ now: 1_700_000_000_000 }); });
afterEach(() => { vi.useRealTimers(); });

async function setup(opts: { intensity?: number; maxIntensity?: number; msPerStep?: number } = {}) {
  const backend = new FakeBackend(FAKE_RUN, undefined, opts.msPerStep ?? 20);
  const sensors = new FakeSensors({ battery: true, pressure: true });
  const consent = new ConsentStore(new MemoryStorage(), () => Date.now());
  const c = new TrainingController({ backend, sensors, consent, intensity: opts.intensity ?? 1, maxIntensity: opts.maxIntensity, evalEveryRounds: 2 });
  await c.init();
  return { c, backend, sensors, consent };
}
const advance = (ms: number) => vi.advanceTimersByTimeAsync(ms);
/** stop() waits for the chunk in flight, which runs on fake timers: keep the clock moving. */
async function stop(c: TrainingController | { stop(): Promise<void> }) {
  const done = c.stop();
  await advance(1000);
  await done;
}

describe('TrainingController', () => {
  it('loads the run and GPU, and does nothing before consent and Start', async () => {
    const { c, backend } = await setup();
    expect(c.run).toEqual({ status: 'complete', value: FAKE_RUN });
    expect(c.gpu.status).toBe('complete');
    expect(c.canHelp).toBe(true);
    expect(() => c.start()).toThrow(/consent first/);
    c.giveConsent();
    expect(c.consentRecord?.runId).toBe('default');
    await advance(5000);
    expect(backend.joins).toBe(0);
    expect(c.phase).toBe('idle');
  });

  it('remembers consent for the next visit, and revoking stops training', async () => {
    const { c, consent, backend } = await setup();
    c.giveConsent();
    const c2 = new TrainingController({ backend, sensors: new FakeSensors(), consent });
    await c2.init();
    expect(c2.consentRecord).not.toBeNull();
    c2.start();
    await advance(500);
    expect(c2.phase).toBe('training');
    const revoked = c2.revokeConsent();
    await advance(1000);
    await revoked;
    expect(c2.phase).toBe('stopped');
    expect(c2.consentRecord).toBeNull();
    expect(() => c2.start()).toThrow(/consent/);
  });

  it('trains, does outer steps, reports, pauses, resumes and stops with figures changing', async () => {
    const { c, backend } = await setup();
    backend.mesh.peers = 2;
    c.giveConsent();
    c.start();
    await advance(2000);
    expect(c.phase).toMatch(/training|waiting-peers/);
    const f1 = { ...c.figures };
    expect(f1.step).toBeGreaterThan(5);
    expect(f1.rounds).toBeGreaterThan(0);
    expect(f1.loss).toBeGreaterThan(0);
    expect(f1.tokensTrained).toBe(f1.step * FAKE_RUN.tokensPerStep);
    expect(f1.partner).toMatch(/^p-/);
    expect(f1.exchangesAccepted).toBe(f1.rounds);
    expect(f1.bytesUp).toBeGreaterThan(0);
    expect(f1.tokensPerS).toBeGreaterThan(0);
    expect(backend.reports.length).toBeGreaterThanOrEqual(f1.rounds);
    expect(backend.reports.some((r) => r.valLoss !== null)).toBe(true);
    expect(backend.trainer!.outerSteps.every((n) => n === 1)).toBe(true);

    c.pauseNow();
    await advance(200); // the chunk in flight finishes
    expect(c.phase).toBe('paused');
    expect(c.pauseReasons).toEqual(['user']);
    const paused = c.figures.step;
    await advance(3000);
    expect(c.figures.step).toBe(paused);

    c.resume();
    await advance(1000);
    expect(c.figures.step).toBeGreaterThan(paused);
    expect(c.figures.loss).not.toBe(f1.loss);

    await stop(c);
    expect(c.phase).toBe('stopped');
    expect(backend.trainer!.disposed).toBe(true);
    expect(backend.closes).toBe(1);
  });

  it('"finish this step, then pause" completes the outer step first', async () => {
    const { c, backend } = await setup();
    c.giveConsent();
    c.start();
    await advance(130); // join + a few inner steps into round 0
    expect(c.figures.rounds).toBe(0);
    c.pauseAfterOuterStep();
    expect(c.pauseAfterStep).toBe(true);
    await advance(2000);
    expect(c.phase).toBe('paused');
    expect(c.figures.rounds).toBe(1);
    expect(c.figures.step).toBe(FAKE_RUN.H);
    expect(backend.mesh.exchanges).toHaveLength(1);
    await stop(c);
  });

  it('continues the step and round counters of the state it joined from, in figures, pairing rounds and reports', async () => {
    const { c, backend } = await setup();
    backend.mesh.peers = 2;
    backend.start = { source: 'peer', from: 'p-00000000000000b2', step: 120, round: 30 };
    c.giveConsent();
    c.start();
    await advance(130);
    expect(c.joinedFrom).toEqual(backend.start);
    expect(c.peerId).toBe('p-00000000000000a1');
    expect(backend.trainer!.loads.map((l) => l.innerStep)).toEqual([120]);
    c.pauseAfterOuterStep();
    await advance(2000);
    expect(c.phase).toBe('paused');
    expect(c.figures.rounds).toBe(31);
    expect(c.figures.step).toBe(120 + FAKE_RUN.H);
    // The pairing round is the run's, not this tab's count: partners pair for the same round.
    expect(backend.mesh.exchanges.map((e) => e.round)).toEqual([30]);
    // Tokens are this volunteer's own work, not the run's.
    expect(c.figures.tokensTrained).toBe(FAKE_RUN.H * FAKE_RUN.tokensPerStep);
    const first = backend.reports[0]!;
    expect(first.round).toBe(30);
    expect(first.step).toBeGreaterThan(120);
    expect(first.step).toBeLessThanOrEqual(120 + FAKE_RUN.H);
    expect(backend.reports.at(-1)).toMatchObject({ step: 120 + FAKE_RUN.H, round: 31 });
    await stop(c);

    // A new session starts from its own state (here a checkpoint behind the old one).
    backend.start = { source: 'checkpoint', from: null, step: 40, round: 10 };
    c.resume();
    c.start();
    await advance(60);
    expect(c.joinedFrom).toEqual(backend.start);
    expect(c.figures).toMatchObject({ step: 40, rounds: 10 }); // joined, first chunk still running
    await advance(1000);
    expect(backend.mesh.exchanges.map((e) => e.round).slice(0, 3)).toEqual([30, 10, 11]);
    await stop(c);
  });

  it('solo outer steps while no peer is online, after waiting for one', async () => {
    const { c, backend } = await setup();
    c.giveConsent();
    c.start();
    await advance(1500);
    expect(c.figures.soloRounds).toBeGreaterThan(0);
    expect(c.figures.partner).toBeNull();
    expect(c.figures.peersOnline).toBe(0);
    expect(backend.trainer!.outerSteps.every((n) => n === 0)).toBe(true);
    expect(backend.mesh.exchanges.every((e) => e.waitMs >= MIN_PAIR_WAIT_MS)).toBe(true);
    await stop(c);
  });

  it('tells the volunteer when its links keep failing (it trains alone), and why; clears once a link opens', async () => {
    const { c, backend } = await setup();
    backend.mesh.peers = 1;
    const why = 'connect timeout: no ICE path (ours host, theirs host); no STUN or TURN server is configured';
    backend.mesh.linkError = why;
    c.giveConsent();
    c.start();
    for (let i = 0; i < 200 && c.figures.rounds < 3; i++) await advance(100);
    expect(c.figures.rounds).toBeGreaterThanOrEqual(3);
    expect(c.figures.linksFailing).toBe(why);
    expect(backend.reports.some((r) => r.linkFailures === 1 && r.linkError === why)).toBe(true);
    backend.mesh.linkError = null;
    const before = c.figures.rounds;
    for (let i = 0; i < 200 && c.figures.rounds < before + 1; i++) await advance(100);
    expect(c.figures.exchangesAccepted).toBeGreaterThan(0);
    expect(c.figures.linksFailing).toBeNull();
    await stop(c);
  });

  it('waits in the pool for the run\'s current pool wait, which the coordinator may change', async () => {
    // 200 ms steps, H = 5: a 1 s inner loop, so both waits are above the MIN_PAIR_WAIT_MS floor.
    const { c, backend } = await setup({ msPerStep: 200 });
    backend.mesh.peers = 1;
    backend.pairWaitFrac = 0.5;
    c.giveConsent();
    c.start();
    await advance(3000);
    const before = backend.mesh.exchanges.length;
    expect(before).toBeGreaterThan(0);
    const first = backend.mesh.exchanges[0]!.waitMs;
    expect(first).toBeGreaterThan(MIN_PAIR_WAIT_MS);
    backend.pairWaitFrac = 2;
    await advance(3000);
    const later = backend.mesh.exchanges.slice(before + 1).map((e) => e.waitMs);
    expect(later.length).toBeGreaterThan(0);
    // Same inner-loop time (fake steps take msPerStep), four times the fraction.
    for (const w of later) expect(w / first).toBeCloseTo(4, 1);
    await stop(c);
  });

  it('lowers the measured duty cycle with the intensity', async () => {
    const measure = async (intensity: number) => {
      const { c, backend } = await setup({ intensity });
      c.giveConsent();
      c.start();
      await advance(2000); // warm-up
      const from = Date.now();
      await advance(20_000);
      const duty = backend.trainer!.dutyBetween(from, Date.now());
      const own = c.figures.duty;
      console.log(`intensity ${intensity}: fake GPU duty ${duty.toFixed(3)}, controller ${own.toFixed(3)}, tokens/s ${c.figures.tokensPerS.toFixed(0)}`);
      await stop(c);
      return { duty, own };
    };
    const full = await measure(1);
    const quarter = await measure(0.25);
    // Outer-step waits (30 ms per 100 ms of steps) keep even full power below 100%.
    expect(full.duty).toBeGreaterThan(0.6);
    expect(quarter.duty).toBeGreaterThan(0.15);
    expect(quarter.duty).toBeLessThan(0.3);
    expect(quarter.own).toBeCloseTo(quarter.duty, 1);
  });

  it('caps intensity at the embedding site\'s maximum', async () => {
    const { c } = await setup({ intensity: 0.9, maxIntensity: 0.3 });
    expect(c.intensity).toBe(0.3);
    c.setIntensity(1);
    expect(c.intensity).toBe(0.3);
    c.setIntensity(0.05);
    expect(c.intensity).toBe(0.1);
  });

  it('pauses while the tab is hidden and resumes when visible; halves on serious pressure', async () => {
    const { c, sensors } = await setup();
    c.giveConsent();
    c.start();
    await advance(500);
    sensors.set({ hidden: true });
    await advance(200);
    expect(c.phase).toBe('paused');
    expect(c.pauseReasons).toEqual(['hidden']);
    const s = c.figures.step;
    await advance(5000);
    expect(c.figures.step).toBe(s);
    sensors.set({ hidden: false });
    await advance(500);
    expect(c.phase).not.toBe('paused');
    expect(c.figures.step).toBeGreaterThan(s);

    sensors.set({ pressure: 'serious' });
    expect(c.effectiveIntensity).toBe(0.5);
    sensors.set({ pressure: 'critical' });
    await advance(200);
    expect(c.pauseReasons).toEqual(['pressure']);
    sensors.set({ pressure: 'nominal' });
    await advance(10_000);
    expect(c.phase).toBe('paused'); // hysteresis: 30 s of calm first
    await advance(25_000);
    expect(c.phase).not.toBe('paused');
    await stop(c);
  });

  it('keeps training in the background when the volunteer allows it', async () => {
    const { c, sensors } = await setup();
    c.setPauseWhenHidden(false);
    c.giveConsent();
    c.start();
    sensors.set({ hidden: true });
    await advance(1000);
    expect(c.phase).not.toBe('paused');
    await stop(c);
  });

  it('reports a NaN loss to the coordinator but shows the last good loss', async () => {
    const { c, backend } = await setup();
    c.giveConsent();
    c.start();
    await advance(300);
    const good = c.figures.loss;
    backend.trainer!.inject = NaN;
    await advance(1500);
    expect(backend.reports.some((r) => r.trainLoss !== null && Number.isNaN(r.trainLoss))).toBe(true);
    expect(Number.isFinite(c.figures.loss)).toBe(true);
    expect(good).not.toBeNull();
    await stop(c);
  });

  it('goes on after the trainer reset a diverged round, and reports the NaN', async () => {
    const { c, backend } = await setup();
    c.giveConsent();
    c.start();
    await advance(300);
    backend.trainer!.divergeNext = true;
    await advance(1000);
    expect(c.phase).not.toBe('error');
    expect(c.figures.divergences).toBe(1);
    expect(backend.reports.some((r) => r.trainLoss !== null && Number.isNaN(r.trainLoss))).toBe(true);
    const s = c.figures.step;
    await advance(500);
    expect(c.figures.step).toBeGreaterThan(s);
    await stop(c);
  });

  it('counts a lost and rebuilt GPU without touching the step figures, and stops listening when stopped', async () => {
    const { c, backend } = await setup();
    c.giveConsent();
    c.start();
    await advance(300);
    const trainer = backend.trainer!;
    expect(trainer.gpuListeners.size).toBe(1);
    const before = { step: c.figures.step, tokensTrained: c.figures.tokensTrained, divergences: c.figures.divergences };
    let notified = 0;
    const off = c.subscribe(() => { notified++; });
    trainer.loseDevice();
    off();
    expect(c.figures.gpuResets).toBe(1);
    expect(notified).toBeGreaterThan(0);
    // The worker trained the round's steps again: the counts the page shows are still right.
    expect(c.figures).toMatchObject(before);
    expect(c.phase).not.toBe('error');
    await advance(500);
    expect(c.figures.step).toBeGreaterThan(before.step);
    await stop(c);
    expect(trainer.gpuListeners.size).toBe(0);
  });

  it('stops with an error when three inner loops in a row diverge (as the headless volunteer does)', async () => {
    const { c, backend } = await setup();
    c.giveConsent();
    c.start();
    await advance(300);
    backend.trainer!.divergeTimes = 3;
    await advance(1000);
    expect(c.figures.divergences).toBe(3);
    expect(c.phase).toBe('error');
    expect(c.error).toMatch(/3 inner loops in a row diverged/);
    // Two in a row, then a good loop: training goes on.
    const again = await setup();
    again.c.giveConsent();
    again.c.start();
    await advance(300);
    again.backend.trainer!.divergeTimes = 2;
    await advance(1000);
    expect(again.c.figures.divergences).toBe(2);
    expect(again.c.phase).not.toBe('error');
    await stop(again.c);
  });

  it('shows the error when joining fails, and can start again', async () => {
    const { c, backend } = await setup();
    backend.joinError = new Error('coordinator unreachable at http://127.0.0.1:1: connection refused');
    c.giveConsent();
    c.start();
    await advance(100);
    expect(c.phase).toBe('error');
    expect(c.error).toMatch(/coordinator unreachable/);
    backend.joinError = null;
    c.start();
    await advance(300);
    expect(c.phase).toBe('training');
    await stop(c);
  });

  it('Stop aborts a join still in progress and says "stopped" once the join has let go; a new Start joins afresh', async () => {
    const { c, backend } = await setup();
    const realJoin = backend.join.bind(backend);
    let seen: AbortSignal | undefined;
    let settled = false;
    backend.join = (signal) => new Promise((_, reject) => {
      seen = signal;
      // As the real backend: the abort releases what the join started, then the join rejects.
      signal?.addEventListener('abort', () => { setTimeout(() => { settled = true; reject(signal.reason); }, 50); }, { once: true });
    });
    c.giveConsent();
    c.start();
    await advance(100);
    expect(c.phase).toBe('starting');
    const done = c.stop();
    await advance(10);
    expect(seen?.aborted).toBe(true);
    expect(c.phase).toBe('stopping');
    expect(c.running).toBe(true);
    await advance(100);
    await done;
    expect(settled).toBe(true);
    expect(c.phase).toBe('stopped');
    expect(c.error).toBeNull();
    backend.join = realJoin;
    c.start();
    await advance(300);
    expect(c.phase).toBe('training');
    expect(backend.joins).toBe(1);
    await stop(c);
  });

  it('a join that ignores the abort: its late session is closed before the page says "stopped"', async () => {
    const { c, backend } = await setup();
    let release!: () => void;
    const realJoin = backend.join.bind(backend);
    backend.join = () => new Promise((r) => { release = () => r(realJoin()); });
    c.giveConsent();
    c.start();
    await advance(100);
    const done = c.stop();
    release();
    await advance(100);
    await done;
    expect(c.phase).toBe('stopped');
    expect(backend.closes).toBe(1);
  });

  it('the coordinator ends the session: training stops, the session is closed, and the page says why', async () => {
    const { c, backend } = await setup();
    const realJoin = backend.join.bind(backend);
    let end!: (reason: string) => void;
    backend.join = async (signal) => ({ ...await realJoin(signal), onEnd: (fn) => { end = fn; return () => {}; } });
    c.giveConsent();
    c.start();
    await advance(300);
    expect(c.phase).toBe('training');
    end('replaced by a newer connection of this peer');
    await advance(1000);
    expect(c.phase).toBe('error');
    expect(c.error).toBe('the coordinator ended this session: replaced by a newer connection of this peer');
    expect(c.running).toBe(false);
    expect(backend.closes).toBe(1);
  });

  it('Stop then Start: the new session reports bytes from its own mesh (never negative), and starts its round empty', async () => {
    // An outer step of several chunks (H is hundreds on real runs), so reports go between rounds.
    const backend = new FakeBackend({ ...FAKE_RUN, H: 50 });
    const c = new TrainingController({ backend, sensors: new FakeSensors(), consent: new ConsentStore(new MemoryStorage(), () => Date.now()), intensity: 1, evalEveryRounds: 0 });
    await c.init();
    // As the real backend: each join builds a new mesh whose byte counters start at 0.
    const realJoin = backend.join.bind(backend);
    backend.join = async (signal) => {
      const mesh = new FakeMesh();
      mesh.peers = 2;
      return { ...await realJoin(signal), mesh };
    };
    c.giveConsent();
    c.start();
    await advance(2500);
    expect(c.figures.bytesDown).toBeGreaterThan(0);
    await stop(c);
    // "Stopped" shows nothing of the mesh it left.
    expect(c.figures).toMatchObject({ partner: null, peersOnline: 0, soloReason: null });
    const priv = c as unknown as { roundLosses: number[] };
    const n = backend.reports.length;
    await advance(15_000);
    c.start();
    await advance(20); // joined (10 ms), no chunk done yet
    expect(priv.roundLosses).toEqual([]);
    await advance(300);
    const after = backend.reports.slice(n);
    expect(after.length).toBeGreaterThan(0);
    for (const r of after) {
      expect(r.bytesIn).toBeGreaterThanOrEqual(0);
      expect(r.bytesOut).toBeGreaterThanOrEqual(0);
    }
    await stop(c);
  });

  it('refuses to start without a usable GPU', async () => {
    const backend = new FakeBackend(FAKE_RUN, { ok: false, code: 'no-webgpu', title: 't', explanation: 'e', advice: 'a' });
    const c = new TrainingController({ backend, sensors: new FakeSensors(), consent: new ConsentStore(new MemoryStorage()) });
    await c.init();
    c.giveConsent();
    expect(c.canHelp).toBe(false);
    expect(() => c.start()).toThrow(/GPU check/);
  });
});
