// joinRunState / serveRunState (src/sync/join.ts) against a fake mesh and a fake coordinator
// client: the order live peer -> checkpoint -> fresh, what is skipped (and why), the wait
// settings, and what newcomers and checkpoint requests are served.
import { describe, expect, it } from 'vitest';
import { consensusStep, decodeStateFrame, encodeStateFrame, MAX_STATE_COUNTER, MAX_STEPS_PER_S, STEP_SLACK, type StateFrame } from '../src/protocol/state-frame.ts';
import type { Logger } from '../src/sync/components.ts';
import { joinRunState, serveRunState, welcomeMaxStep, welcomeRoundsPerS, welcomeStepCap, type ServedState } from '../src/sync/join.ts';
import type { BootState, StateProvider } from '../src/sync/types.ts';
import { checkState, type StateCheck } from '../src/sync/state-check.ts';
import type { StateProvider as CheckpointProvider } from '../src/sync/signaling-client.ts';

const FLOATS = 6;
const vec = (x: number) => Float32Array.from({ length: FLOATS }, (_, i) => x + i / 10);

class FakeMesh {
  asked: { timeoutMs?: number; tries?: number }[] = [];
  provider: StateProvider | null = null;
  constructor(private readonly answer: BootState | null = null) {}
  /** Like the mesh: the answer only if it passes the check (state-check.ts). */
  async bootstrap(o: { timeoutMs?: number; tries?: number; check?: StateCheck } = {}): Promise<BootState | null> {
    this.asked.push({ timeoutMs: o.timeoutMs, tries: o.tries });
    if (!this.answer) return null;
    try {
      if (o.check) await checkState(this.answer, o.check, this.answer.from);
      return this.answer;
    } catch {
      return null;
    }
  }
  serveState(p: StateProvider | null): void { this.provider = p; }
}

class FakeClient {
  fetched = 0;
  provider: CheckpointProvider | null = null;
  constructor(private readonly frame: StateFrame | null | Error = null) {}
  async fetchCheckpointState(): Promise<StateFrame | null> {
    this.fetched++;
    if (this.frame instanceof Error) throw this.frame;
    // Through the wire format, as the real client returns it (views into one buffer).
    return this.frame && decodeStateFrame(encodeStateFrame(this.frame));
  }
  setStateProvider(p: CheckpointProvider | null): void { this.provider = p; }
}

function recorder(): Logger & { warnings: string[] } {
  const warnings: string[] = [];
  return { warnings, debug() {}, info() {}, warn: (m) => { warnings.push(m); }, error() {} };
}

const checkpoint = (over: Partial<StateFrame['meta']> = {}): StateFrame => ({
  meta: { runId: 'r1', step: 800, round: 100, floats: FLOATS, valLoss: 2.5, tokens: 1000, ...over },
  phi: vec(3), momentum: vec(-1),
});

describe('joinRunState', () => {
  it('takes a live peer\'s state first, without asking the coordinator', async () => {
    const peer: BootState = { from: 'p-1', phi: vec(1), momentum: vec(0), outerRound: 7, innerStep: 56 };
    const mesh = new FakeMesh(peer), client = new FakeClient(checkpoint());
    const got = await joinRunState(mesh, client, { runId: 'r1', floats: FLOATS, others: 5, timeoutMs: 4000 });
    expect(got).toEqual({ source: 'peer', state: peer });
    expect(client.fetched).toBe(0);
    // At most three peers asked, each once; the caller's timeout.
    expect(mesh.asked).toEqual([{ timeoutMs: 4000, tries: 3 }]);
  });

  it('does not wait for a neighbour when nobody else is in the run', async () => {
    const mesh = new FakeMesh();
    await joinRunState(mesh, new FakeClient(), { runId: 'r1', floats: FLOATS, others: 0 });
    expect(mesh.asked).toEqual([{ timeoutMs: 1, tries: 1 }]);
    const two = new FakeMesh();
    await joinRunState(two, new FakeClient(), { runId: 'r1', floats: FLOATS, others: 2 });
    expect(two.asked).toEqual([{ timeoutMs: 15_000, tries: 2 }]);
  });

  it('falls back to the newest checkpoint, with its counters', async () => {
    const got = await joinRunState(new FakeMesh(), new FakeClient(checkpoint()), { runId: 'r1', floats: FLOATS, others: 1 });
    expect(got.source).toBe('checkpoint');
    expect(got.state).toMatchObject({ from: 'checkpoint', outerRound: 100, innerStep: 800 });
    expect([...got.state!.phi]).toEqual([...vec(3)]);
    expect([...got.state!.momentum]).toEqual([...vec(-1)]);
  });

  it('starts fresh when there is no checkpoint, or one it cannot use, saying why', async () => {
    const cases: [StateFrame | null | Error, RegExp | null][] = [
      [null, null],
      [new Error('GET /state answered 500'), /could not download/],
      [{ ...checkpoint({ floats: FLOATS + 1 }), phi: new Float32Array(FLOATS + 1), momentum: new Float32Array(FLOATS + 1) }, /does not fit/],
      [checkpoint({ runId: 'other' }), /another run/],
    ];
    for (const [frame, why] of cases) {
      const log = recorder();
      const client = new FakeClient(frame);
      expect(await joinRunState(new FakeMesh(), client, { runId: 'r1', floats: FLOATS, others: 0, logger: log })).toEqual({ source: 'fresh', state: null });
      expect(client.fetched).toBe(1);
      if (why) expect(log.warnings.join('; ')).toMatch(why);
      else expect(log.warnings).toEqual([]);
    }
  });
});

/** A measure whose losses are `loss` of φ on both texts (train: `train` of φ when given). */
const measureBy = (loss: (phi: Float32Array) => number, train = loss) => async (s: { phi: Float32Array }) => ({ val: loss(s.phi), train: train(s.phi) });

describe('joinRunState checks every source before adopting it', () => {
  it('a peer\'s state with round 0xffffffff or a worse measured loss is refused; the checkpoint is taken', async () => {
    const overflow: BootState = { from: 'p-1', phi: vec(1), momentum: vec(0), outerRound: 0xffffffff, innerStep: 0xffffffff };
    const negated: BootState = { from: 'p-2', phi: vec(-1), momentum: vec(0), outerRound: 7, innerStep: 56 };
    for (const peer of [overflow, negated]) {
      const client = new FakeClient(checkpoint());
      const got = await joinRunState(new FakeMesh(peer), client, {
        runId: 'r1', floats: FLOATS, others: 1, maxLoss: 3, measure: measureBy((phi) => (phi[0]! < 0 ? 7.98 : 2.5)),
      });
      expect(got.source).toBe('checkpoint');
      expect(got.state).toMatchObject({ from: 'checkpoint', outerRound: 100, innerStep: 800 });
      expect(client.fetched).toBe(1);
    }
  });

  it('a checkpoint with impossible counters, non-finite values or a worse measured loss is skipped: a fresh start, never a throw', async () => {
    const nan = checkpoint();
    nan.phi[2] = NaN;
    const cases: [StateFrame, RegExp][] = [
      [checkpoint({ round: 2 ** 53 - 1, step: 2 ** 53 - 1 }), /step 9007199254740991 is outside/],
      [checkpoint({ round: 0xffffffff, step: 0xffffffff }), /step 4294967295 is outside/],
      [checkpoint({ round: 900, step: 800 }), /round 900 is ahead of step 800/],
      [nan, /non-finite/],
      [checkpoint(), /validation loss 9\.0000, worse than the bound 3\.0000/],
    ];
    for (const [frame, why] of cases) {
      const log = recorder();
      const got = await joinRunState(new FakeMesh(), new FakeClient(frame), {
        runId: 'r1', floats: FLOATS, others: 0, logger: log, maxLoss: 3, measure: measureBy(() => 9),
      });
      expect(got).toEqual({ source: 'fresh', state: null });
      expect(log.warnings.join('; '), why.source).toMatch(why);
    }
  });

  it('a state far better on the validation text than on the training text (fitted to the public validation text) is refused from a peer and from a checkpoint', async () => {
    const memorised: BootState = { from: 'p-1', phi: vec(-1), momentum: vec(0), outerRound: 7, innerStep: 56 };
    // The memorised φ (negative here) scores 1.2 on the validation text, under the bound, and 2.9
    // on the newcomer's own training windows; the honest one 2.5 on both.
    const measure = measureBy((phi) => (phi[0]! < 0 ? 1.2 : 2.5), (phi) => (phi[0]! < 0 ? 2.9 : 2.5));
    await expect(checkState(memorised, { floats: FLOATS, maxLoss: 3, measure }, 'p-1')).rejects.toThrow(/state from p-1: measured 2\.9000 on the training text and 1\.2000 on the validation text: 1\.7000 apart, more than 0\.5/);
    const client = new FakeClient(checkpoint());
    const got = await joinRunState(new FakeMesh(memorised), client, { runId: 'r1', floats: FLOATS, others: 1, maxLoss: 3, measure });
    expect(got.source).toBe('checkpoint');
    const bad = checkpoint();
    bad.phi.fill(-1);
    const log2 = recorder();
    expect(await joinRunState(new FakeMesh(), new FakeClient(bad), { runId: 'r1', floats: FLOATS, others: 0, logger: log2, maxLoss: 3, measure })).toEqual({ source: 'fresh', state: null });
    expect(log2.warnings.join('; ')).toMatch(/on the training text/);
  });
});

describe('a state whose momentum would throw φ off at the next outer step', () => {
  it('is refused from a peer and from a checkpoint, by its norm against φ (1e30) or by the loss where φ + α·m lands (reversed, 50x); an honest one is taken', async () => {
    const honestPhi = vec(1), honestM = Float32Array.from({ length: FLOATS }, (_, i) => 0.01 * (i + 1));
    // Stands in for the trainer: the loss grows with the distance from the honest φ.
    const measure = measureBy((phi) => 2.5 + 10 * Math.hypot(...phi.map((x, i) => x - honestPhi[i]!)) / Math.hypot(...honestPhi));
    const o = { runId: 'r1', floats: FLOATS, others: 1, maxLoss: 3, outerMomentum: 0.5, measure };
    const huge: BootState = { from: 'p-1', phi: honestPhi, momentum: new Float32Array(FLOATS).fill(1e30), outerRound: 7, innerStep: 56 };
    const reversed: BootState = { ...huge, from: 'p-2', momentum: honestM.map((x) => -50 * x) };
    for (const peer of [huge, reversed]) {
      const got = await joinRunState(new FakeMesh(peer), new FakeClient(), o);
      expect(got, peer.from).toEqual({ source: 'fresh', state: null });
    }
    const cases: [StateFrame, RegExp][] = [
      [{ ...checkpoint(), phi: honestPhi, momentum: huge.momentum }, /momentum/],
      [{ ...checkpoint(), phi: honestPhi, momentum: reversed.momentum }, /where the next outer step would carry φ/],
    ];
    for (const [frame, why] of cases) {
      const log = recorder();
      expect(await joinRunState(new FakeMesh(), new FakeClient(frame), { ...o, others: 0, logger: log })).toEqual({ source: 'fresh', state: null });
      expect(log.warnings.join('; '), why.source).toMatch(why);
    }
    const honest: BootState = { ...huge, from: 'p-3', momentum: honestM };
    expect(await joinRunState(new FakeMesh(honest), new FakeClient(), o)).toEqual({ source: 'peer', state: honest });
  });
});

describe('a state beyond the coordinator\'s bound on this peer\'s steps', () => {
  it('is refused from a peer and from a checkpoint; the bound grows from the welcome\'s stepBase at its stepRate', async () => {
    let t = 5000;
    const bound = (receivedAt: number) => welcomeMaxStep({ stepBase: 1000, stepRate: MAX_STEPS_PER_S }, receivedAt, () => t)!;
    // The coordinator would accept reports up to stepBase + STEP_SLACK now.
    const edge = 1000 + STEP_SLACK;
    const peer: BootState = { from: 'p-1', phi: vec(1), momentum: vec(0), outerRound: 20, innerStep: edge + 1 };
    const log = recorder();
    const got = await joinRunState(new FakeMesh(peer), new FakeClient(checkpoint({ step: edge + 100, round: 24 })), {
      runId: 'r1', floats: FLOATS, others: 1, logger: log, maxStep: bound(5000),
    });
    expect(got).toEqual({ source: 'fresh', state: null });
    expect(log.warnings.join('; ')).toContain(`state from the newest checkpoint is at step ${edge + 100}, beyond any this run has reached (the coordinator's bound is ${edge})`);
    // At the bound it is taken; a second after the welcome the bound is MAX_STEPS_PER_S higher.
    const at = await joinRunState(new FakeMesh({ ...peer, innerStep: edge }), new FakeClient(), { runId: 'r1', floats: FLOATS, others: 1, maxStep: bound(5000) });
    expect(at.source).toBe('peer');
    t = 6000;
    const later = await joinRunState(new FakeMesh({ ...peer, innerStep: edge + MAX_STEPS_PER_S }), new FakeClient(), { runId: 'r1', floats: FLOATS, others: 1, maxStep: bound(5000) });
    expect(later.source).toBe('peer');
    await expect(checkState({ ...peer, innerStep: edge + MAX_STEPS_PER_S + 1 }, { floats: FLOATS, maxStep: bound(5000) }, 'p-1'))
      .rejects.toThrow(`is at step ${edge + MAX_STEPS_PER_S + 1}, beyond any this run has reached`);
    // A run whose model is too big to step that fast: the welcome's slower rate is the bound,
    // and a rate above MAX_STEPS_PER_S counts as MAX_STEPS_PER_S.
    const slow = welcomeMaxStep({ stepBase: 1000, stepRate: 42.5 }, 5000, () => t)!;
    expect(slow()).toBe(edge + 43);
    await expect(checkState({ ...peer, innerStep: edge + 44 }, { floats: FLOATS, maxStep: slow }, 'p-1'))
      .rejects.toThrow(`is at step ${edge + 44}, beyond any this run has reached`);
    expect(welcomeMaxStep({ stepBase: 1000, stepRate: 1e6 }, 5000, () => t)!()).toBe(edge + MAX_STEPS_PER_S);
    // A coordinator that sent no stepBase: no bound.
    expect(welcomeMaxStep({ stepRate: MAX_STEPS_PER_S }, 0)).toBeUndefined();
  });
});

describe('the run\'s pace in rounds (welcomeRoundsPerS, the validator\'s roundsPerS)', () => {
  it('is the welcome\'s stepRate, at most MAX_STEPS_PER_S, over the run\'s H; 0 (unknown) for an H that is no positive integer', () => {
    expect(welcomeRoundsPerS({ stepRate: 170, run: { train: { H: 50 } } })).toBe(3.4);
    expect(welcomeRoundsPerS({ stepRate: 1e6, run: { train: { H: 4 } } })).toBe(MAX_STEPS_PER_S / 4);
    for (const H of [0, -1, 1.5, NaN]) expect(welcomeRoundsPerS({ stepRate: 170, run: { train: { H } } })).toBe(0);
  });
});

describe('a state further on than the run\'s live peers agree on', () => {
  it('is adopted one round past the welcome\'s stepConsensus, φ and momentum as served, from a peer or a checkpoint', async () => {
    const cap = welcomeStepCap({ stepConsensus: 400, run: { train: { H: 8 } } })!;
    expect(cap).toEqual({ step: 400, H: 8 });
    const peer: BootState = { from: 'p-1', phi: vec(1), momentum: vec(0), outerRound: 125, innerStep: 1000 };
    const got = await joinRunState(new FakeMesh(peer), new FakeClient(), { runId: 'r1', floats: FLOATS, others: 1, stepCap: cap });
    // Step 400 + H = 408 (the peers moved on since the welcome) and round 408 / 8 = 51.
    expect(got).toEqual({ source: 'peer', state: { ...peer, innerStep: 408, outerRound: 51 } });
    expect(got.state!.phi).toBe(peer.phi);
    const ck = await joinRunState(new FakeMesh(), new FakeClient(checkpoint({ step: 800, round: 100 })), { runId: 'r1', floats: FLOATS, others: 0, stepCap: cap });
    expect(ck.source).toBe('checkpoint');
    expect(ck.state).toMatchObject({ innerStep: 408, outerRound: 51 });
    // Within a round of the consensus the counters are the source's; a held one keeps a lower
    // round going down, a higher one going up (holdCounters).
    for (const [st, want] of [
      [{ innerStep: 408, outerRound: 51 }, { innerStep: 408, outerRound: 51 }],
      [{ innerStep: 392, outerRound: 48 }, { innerStep: 392, outerRound: 48 }],
      [{ innerStep: 1000, outerRound: 20 }, { innerStep: 408, outerRound: 20 }],
      [{ innerStep: 390, outerRound: 48 }, { innerStep: 400, outerRound: 50 }],
      [{ innerStep: 100, outerRound: 90 }, { innerStep: 400, outerRound: 90 }],
    ]) {
      const r = await joinRunState(new FakeMesh({ ...peer, ...st }), new FakeClient(), { runId: 'r1', floats: FLOATS, others: 1, stepCap: cap });
      expect(r.state).toMatchObject(want!);
    }
    // A coordinator with nothing to agree on sends none: no cap.
    expect(welcomeStepCap({ run: { train: { H: 8 } } })).toBeUndefined();
  });

  it('a welcome\'s stepConsensus past the coordinator\'s own bound raises a state no further than that bound', async () => {
    // Before: the consensus was taken as is, after every check of the state had passed: 2^53 − 1
    // put the newcomer there, and its first outer round threw (round must be a uint32).
    const peer: BootState = { from: 'p-1', phi: vec(1), momentum: vec(0), outerRound: 1, innerStep: 10 };
    const cap = welcomeStepCap({ stepConsensus: 2 ** 53 - 1, run: { train: { H: 10 } } })!;
    const bounded = await joinRunState(new FakeMesh(peer), new FakeClient(), { runId: 'r1', floats: FLOATS, others: 1, stepCap: cap, maxStep: () => 1105 });
    expect(bounded.state).toMatchObject({ innerStep: 1105, outerRound: 110 });
    const unbounded = await joinRunState(new FakeMesh(peer), new FakeClient(), { runId: 'r1', floats: FLOATS, others: 1, stepCap: cap });
    expect(unbounded.state!.innerStep).toBe(MAX_STATE_COUNTER);
    expect(unbounded.state!.outerRound).toBeLessThan(2 ** 32);
  });

  it('a state that claims too few steps is raised to the welcome\'s stepConsensus, from a peer or a checkpoint: no lie sends a newcomer back through warm-up', async () => {
    const cap = { step: 50_000, H: 50 };
    const peer: BootState = { from: 'p-1', phi: vec(1), momentum: vec(0), outerRound: 0, innerStep: 0 };
    const got = await joinRunState(new FakeMesh(peer), new FakeClient(), { runId: 'r1', floats: FLOATS, others: 1, stepCap: cap });
    expect(got.source).toBe('peer');
    expect(got.state!.innerStep).toBeGreaterThanOrEqual(50_000 - 50);
    expect(got.state).toEqual({ ...peer, innerStep: 50_000, outerRound: 1000 });
    const ck = await joinRunState(new FakeMesh(), new FakeClient(checkpoint({ step: 10, round: 1 })), { runId: 'r1', floats: FLOATS, others: 0, stepCap: cap });
    expect(ck.state).toMatchObject({ innerStep: 50_000, outerRound: 1000 });
    // Within a round below the consensus (a peer that lags a little) the counters are the source's.
    const near = await joinRunState(new FakeMesh({ ...peer, innerStep: 49_950, outerRound: 999 }), new FakeClient(), { runId: 'r1', floats: FLOATS, others: 1, stepCap: cap });
    expect(near.state).toMatchObject({ innerStep: 49_950, outerRound: 999 });
  });

  it('consensusStep is the lower median, never below the floor: it moves up only when half the peers claim more', () => {
    expect(consensusStep([])).toBeNull();
    expect(consensusStep([], 40)).toBe(40);
    expect(consensusStep([10, 100_000], 40)).toBe(40);
    expect(consensusStep([60, 100_000], 40)).toBe(60);
    expect(consensusStep([70])).toBe(70);
    expect(consensusStep([60, 100_000])).toBe(60);
    expect(consensusStep([100_000, 60, 65])).toBe(65);
    expect(consensusStep([100_000, 90_000, 60, 65])).toBe(65);
    expect(consensusStep([100_000, 90_000, 60])).toBe(90_000);
  });
});

describe('serveRunState', () => {
  const served = (x: number): ServedState => ({ phi: vec(x), momentum: vec(-x), outerRound: 12, innerStep: 96, valLoss: 2.25, tokens: 4096 });

  it('answers newcomers with φ, momentum and both counters, and the coordinator with a checkpoint frame', async () => {
    const mesh = new FakeMesh(), client = new FakeClient();
    let calls = 0;
    serveRunState(mesh, client, { runId: 'r1', floats: FLOATS }, async () => served(++calls));
    const boot = await mesh.provider!();
    expect(boot).toEqual({ phi: vec(1), momentum: vec(-1), outerRound: 12, innerStep: 96 });
    // The frame must encode (its header is checked against the schema on both ends).
    const frame = decodeStateFrame(encodeStateFrame(await client.provider!()));
    expect(frame.meta).toEqual({ runId: 'r1', step: 96, round: 12, floats: FLOATS, valLoss: 2.25, tokens: 4096 });
    expect([...frame.phi]).toEqual([...vec(2)]);
    expect([...frame.momentum]).toEqual([...vec(-2)]);
    expect(calls).toBe(2); // a fresh snapshot per request
  });

  it('declines while there is no state, sends a diverged loss as "not measured", and stops serving', async () => {
    const mesh = new FakeMesh(), client = new FakeClient();
    let state: ServedState | null = null;
    const stop = serveRunState(mesh, client, { runId: 'r1', floats: FLOATS }, async () => state);
    expect(await mesh.provider!()).toBeNull();
    await expect(Promise.resolve(client.provider!())).rejects.toThrow(/no state to serve yet/);
    state = { ...served(1), valLoss: NaN };
    expect((await client.provider!()).meta.valLoss).toBeNull();
    stop();
    expect(mesh.provider).toBeNull();
    expect(client.provider).toBeNull();
  });
});
