// The browser volunteer's join and serve (CoordinatorVolunteerBackend.join) against the real
// coordinator in-process, with a fake worker trainer and a fake mesh: a session starts fresh,
// from a live peer's state or from the newest checkpoint, loads it into the trainer and
// continues its counters; and from then on it serves its LAST OUTER state (with the round and
// step it belongs to) to newcomers and to the coordinator, which stores it as a checkpoint.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import { decodeStateFrame } from '../src/protocol/state-frame.ts';
import type { RunInfo } from '../src/protocol/messages.ts';
import { buildLayout, type Layout } from '../src/model/layout.ts';
import type { Logger } from '../src/sync/components.ts';
import type { SignalingClient, WebSocketCtor } from '../src/sync/signaling-client.ts';
import type { BootState, StateProvider } from '../src/sync/types.ts';
import { CoordinatorVolunteerBackend, type RunMesh } from '../src/ui/browser/volunteer-backend.ts';
import type { ExchangeResult, MeshStats, VolunteerSession } from '../src/ui/ports.ts';
import { earnTrust, startServer, until, type TestServer } from './support/coordinator.ts';
import { PROBATION_EXCHANGES } from '../server/peers.ts';
import { initParams } from '../src/model/init.ts';
import { valLoss } from './support/states.ts';
import { FakeTrainer } from './support/ui-fakes.ts';

const RUN = 'join';
let s: TestServer;
let run: RunInfo;
let P: number;
let layout: Layout;
const sessions: VolunteerSession[] = [];

beforeAll(async () => {
  // The trust witness has no inner loop for the pool to learn a cadence from: the plain rule.
  s = await startServer({ hub: { pairPrediction: false } });
  const r = await s.c.app.inject({
    method: 'POST', url: '/api/runs', headers: s.admin,
    payload: { id: RUN, dataset: 'moby-dick', preset: 'micro', train: { H: 4, batch: 2 } },
  });
  expect(r.statusCode).toBe(201);
  run = (await s.c.app.inject({ method: 'GET', url: `/api/runs/${RUN}` })).json() as RunInfo;
  layout = buildLayout(run.model);
  P = layout.total;
});

afterAll(async () => {
  for (const x of sessions) await x.close().catch(() => {});
  await s?.close();
});

/** The mesh as the backend uses it: records bootstrap requests, holds the state provider. */
class FakeRunMesh implements RunMesh {
  asked: { timeoutMs?: number; tries?: number }[] = [];
  provider: StateProvider | null = null;
  destroyed = false;
  constructor(private readonly answer: BootState | null) {}
  async exchange(): Promise<ExchangeResult> { return { partner: null, payload: null, partnerDist: null, bytesIn: 0, bytesOut: 0, solo: 'no-partner' }; }
  stats(): MeshStats { return { peers: 0, bytesIn: 0, bytesOut: 0 }; }
  async bootstrap(o: { timeoutMs?: number; tries?: number } = {}): Promise<BootState | null> {
    this.asked.push({ timeoutMs: o.timeoutMs, tries: o.tries });
    return this.answer;
  }
  serveState(p: StateProvider | null): void { this.provider = p; }
  destroy(): void { this.destroyed = true; }
}

const quiet: Logger = { debug() {}, info() {}, warn() {}, error() {} };

/**
 * A fake trainer whose φ is a real model's (the GPT-2 init, nudged at each outer step), so the
 * coordinator's own measurement of what it serves is a real validation loss.
 */
class ModelTrainer extends FakeTrainer {
  constructor() {
    super(0, P);
    this.phi = initParams(layout, 1);
  }
  override async applyOuter(partners: Parameters<FakeTrainer['applyOuter']>[0]): Promise<void> {
    await super.applyOuter(partners);
    this.phi = this.phi.map((v) => v - 1 + 1e-4); // undo the fake's +1: a small, real step
    // And the fake's -0.25 on the momentum: a real one is a fraction of φ's norm, and the
    // coordinator refuses an upload whose momentum is over 4 times it (stateMomentumError).
    this.momentum = this.momentum.map((v) => v + 0.25 - 1e-5);
  }
}

async function joinWith(answer: BootState | null, trainer: FakeTrainer = new ModelTrainer()) {
  const mesh = new FakeRunMesh(answer);
  let signaling: SignalingClient | null = null;
  const backend = new CoordinatorVolunteerBackend({
    baseUrl: s.url, runId: RUN, WebSocket: WebSocket as unknown as WebSocketCtor, bootstrapTimeoutMs: 500, logger: quiet,
    createTrainer: async () => trainer,
    createMesh: async (a) => { signaling = a.signaling; return mesh; },
  });
  const session = await backend.join();
  sessions.push(session);
  return { session, mesh, trainer, signaling: signaling! as SignalingClient };
}

/** One outer round as the TrainingController drives it (H inner steps, then a solo outer step). */
async function round(x: VolunteerSession): Promise<void> {
  await x.trainer.train(run.train.H);
  await x.trainer.outerPayload();
  await x.trainer.applyOuter([]);
}

/** The floats a checkpoint keeps: every tensor, without the alignment padding between them. */
const tensors = (a: Float32Array) => layout.tensors.flatMap((t) => [...a.subarray(t.offset, t.offset + t.size)]);

const gaussian = (n: number, seed: number) => Float32Array.from({ length: n }, (_, i) => Math.sin(seed * 1000 + i) * 0.02);

let first: Awaited<ReturnType<typeof joinWith>>;
let ckpt: { id: string; step: number; round: number; tokens: number; valLoss: number | null; peerId: string };

describe('the browser volunteer joins a run and serves its state', () => {
  it('starts fresh when alone (no wait for a neighbour) and serves its last outer state, never a half-done inner loop', async () => {
    first = await joinWith(null);
    const { session, mesh, trainer } = first;
    expect(session.start).toEqual({ source: 'fresh', from: null, step: 0, round: 0 });
    expect(mesh.asked).toEqual([{ timeoutMs: 1, tries: 1 }]);
    expect(trainer.loads).toEqual([]);
    expect(await mesh.provider!()).toMatchObject({ outerRound: 0, innerStep: 0 });

    await round(session);
    await session.trainer.train(2); // mid inner loop: φ, m and the counters stay at the outer step
    const a = (await mesh.provider!())!;
    expect(a).toMatchObject({ outerRound: 1, innerStep: run.train.H });
    expect(a.phi).toEqual(trainer.phi);
    expect(a.momentum).toEqual(trainer.momentum);

    // Asked while an outer step is in flight: the answer pairs the new φ with the new round.
    await session.trainer.train(run.train.H - 2);
    const applying = session.trainer.applyOuter([]);
    const during = await mesh.provider!();
    await applying;
    expect(during).toMatchObject({ outerRound: 2, innerStep: 2 * run.train.H });
    expect(during!.phi).toEqual(trainer.phi);
    expect(during!.phi).not.toEqual(a.phi);
  });

  it('uploads its last outer state when the coordinator pulls a checkpoint', async () => {
    const { session, trainer, signaling } = first;
    // Only a peer off probation gets checkpoint duty: the page earns it through its own client.
    await earnTrust(s.url, RUN, signaling, { exchanges: PROBATION_EXCHANGES, H: run.train.H });
    await until(() => s.c.hub.eligibleForDuty(session.peerId), 5000, 'the page to leave probation');
    const req = await s.c.app.inject({ method: 'POST', url: `/api/runs/${RUN}/checkpoints`, headers: s.admin });
    expect(req.statusCode).toBe(202);
    expect(req.json().peerId).toBe(session.peerId);
    ckpt = await until(async () => {
      const list = (await s.c.app.inject({ method: 'GET', url: `/api/runs/${RUN}/checkpoints` })).json() as { checkpoints: typeof ckpt[] };
      return list.checkpoints[0];
    }, 10_000, 'the checkpoint upload');
    expect(ckpt).toMatchObject({ peerId: session.peerId, step: 2 * run.train.H, round: 2, tokens: 2 * run.train.H * run.train.batch * run.train.seqLen });
    // The stored loss is the coordinator's measurement of the φ served.
    expect(ckpt.valLoss).toBe(valLoss(run, trainer.phi));
    const res = await s.c.app.inject({ method: 'GET', url: `/api/runs/${RUN}/checkpoints/${ckpt.id}/state` });
    const frame = decodeStateFrame(new Uint8Array(res.rawPayload));
    expect(tensors(frame.phi)).toEqual(tensors(trainer.phi));
    expect(tensors(frame.momentum)).toEqual(tensors(trainer.momentum));
  });

  it('a later page copies a live peer\'s state into its trainer and continues its counters', async () => {
    // The step the live pages reported, which the welcome gives as the consensus.
    const H = run.train.H, agreed = s.c.hub.stepConsensus(RUN)!;
    expect(agreed).toBeGreaterThan(0);
    const served: BootState = { from: 'p-00000000000000f1', phi: gaussian(P, 1), momentum: gaussian(P, 2), outerRound: agreed / H, innerStep: agreed };
    const { session, mesh, trainer } = await joinWith(served);
    // The first page is live: look for a neighbour (the backend's timeout), ask one peer.
    expect(mesh.asked).toEqual([{ timeoutMs: 500, tries: 1 }]);
    expect(session.start).toEqual({ source: 'peer', from: served.from, step: agreed, round: agreed / H });
    // Measured in the trainer, then kept there: one load.
    expect(trainer.loads).toHaveLength(1);
    expect(trainer.loads[0]).toEqual({ phi: served.phi, momentum: served.momentum, innerStep: agreed });
    // And serves on from there: its next outer state is one round and H steps on.
    await round(session);
    expect(await mesh.provider!()).toMatchObject({ outerRound: agreed / H + 1, innerStep: agreed + H });
  });

  it('a state served at more steps than the live pages agree on is copied at no more than a round past their step, and its trainer told so', async () => {
    const H = run.train.H, agreed = s.c.hub.stepConsensus(RUN)!;
    const served: BootState = { from: 'p-00000000000000f2', phi: gaussian(P, 3), momentum: gaussian(P, 4), outerRound: 37, innerStep: 148 };
    expect(agreed + H).toBeLessThan(148);
    const { session, trainer } = await joinWith(served);
    // Held to one round past the agreed step.
    expect(session.start).toEqual({ source: 'peer', from: served.from, step: agreed + H, round: agreed / H + 1 });
    // Loaded at that step: the trainer's learning-rate schedule follows the step it was loaded with.
    expect(trainer.loads).toEqual([{ phi: served.phi, momentum: served.momentum, innerStep: agreed + H }]);
  });

  it('with no live peer answering, starts from the newest checkpoint', async () => {
    const { session, trainer } = await joinWith(null);
    expect(session.start).toEqual({ source: 'checkpoint', from: null, step: ckpt.step, round: ckpt.round });
    // Measured where the next outer step would carry φ (φ + α·m), then at φ, which the trainer
    // keeps: two loads, the last the checkpoint as stored.
    expect(trainer.loads).toHaveLength(2);
    const kept = trainer.loads[1]!;
    expect(kept.innerStep).toBe(ckpt.step);
    expect(tensors(kept.phi)).toEqual(tensors(first.trainer.phi));
    expect(tensors(kept.momentum)).toEqual(tensors(first.trainer.momentum));
  });

  it('releases the worker, the mesh and the connection when loading the state fails', async () => {
    const trainer = new FakeTrainer(0, P);
    trainer.load = async () => { throw new RangeError('Trainer.load: phi has a non-finite value at float 3'); };
    const mesh = new FakeRunMesh({ from: 'p-00000000000000f2', phi: gaussian(P, 3), momentum: gaussian(P, 4), outerRound: 1, innerStep: 4 });
    const live = () => s.c.hub.livePeers(RUN).length;
    const before = live();
    const backend = new CoordinatorVolunteerBackend({
      baseUrl: s.url, runId: RUN, WebSocket: WebSocket as unknown as WebSocketCtor, bootstrapTimeoutMs: 500, logger: quiet,
      createTrainer: async () => trainer, createMesh: async () => mesh,
    });
    await expect(backend.join()).rejects.toThrow(/non-finite value/);
    expect(trainer.disposed).toBe(true);
    expect(mesh.destroyed).toBe(true);
    await until(() => live() === before, 5000, 'the failed page to leave the run');
  });
});
