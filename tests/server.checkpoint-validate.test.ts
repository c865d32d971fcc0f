// Checkpoints the coordinator checks itself (issue 15, docs/design.md section 6): an upload is
// stored only after its counters are judged against what the peer could have trained and its
// validation loss is MEASURED by the coordinator; the stored loss is that measurement, never
// the peer's claim; only eligible peers (off probation, no id of their client refused) are asked;
// a rejected upload is never listed, served as bootstrap state or exported, and neither is any
// earlier checkpoint of the client (address, IPv6 /48) that made it.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readdirSync, existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { WebSocket } from 'ws';
import { SignalingClient, memorySessionStore, type WebSocketCtor } from '../src/sync/signaling-client.ts';
import { PROBATION_EXCHANGES } from '../server/peers.ts';
import { STATE_LOSS_MARGIN, type StateFrame } from '../src/protocol/state-frame.ts';
import type { RunInfo } from '../src/protocol/messages.ts';
import { earnTrust, RawPeer, reportedStep, startServer, until, webSocketFrom, type TestServer } from './support/coordinator.ts';
import { fittedToCheckWindows, fittedToText, honestState, negated, valLoss } from './support/states.ts';
import { datasetFromCorpus, loadDataset, prepareDataset } from '../src/data/dataset.ts';
import { stateCheckBatchCount } from '../src/data/sampler.ts';

let s: TestServer;
const clients: SignalingClient[] = [];
beforeAll(async () => {
  // Raw witnesses have no inner loop for the pool to learn a cadence from: the plain rule.
  s = await startServer({ stateRequestTimeoutMs: 60_000, hub: { pairPrediction: false } });
});
afterAll(async () => {
  for (const c of clients) c.stop();
  await s?.close();
});

async function newRun(id: string): Promise<RunInfo> {
  const r = await s.c.app.inject({ method: 'POST', url: '/api/runs', headers: s.admin, payload: { id, dataset: 'moby-dick', preset: 'micro', train: { H: 10 } } });
  expect(r.statusCode).toBe(201);
  return r.json() as RunInfo;
}

/** A scripted peer of `run` that serves whatever `state()` returns, off probation unless told. */
async function peer(run: string, state: () => StateFrame, trusted = true, from?: string): Promise<SignalingClient> {
  const ws = from === undefined ? WebSocket as unknown as WebSocketCtor : webSocketFrom(from);
  const c = new SignalingClient({ url: s.url, run, WebSocket: ws, session: memorySessionStore() });
  clients.push(c);
  c.setStateProvider(() => state());
  c.start();
  await until(() => c.connected, 5000, 'the peer to join');
  if (trusted) {
    await earnTrust(s.url, run, c, { exchanges: PROBATION_EXCHANGES, H: 10 });
    await until(() => s.c.hub.eligibleForDuty(c.peerId!), 5000, 'the peer to be eligible for duty');
  }
  return c;
}

/** Asks the coordinator for a checkpoint of `run` from `c`; what the upload answered. */
async function pull(run: string, c: SignalingClient): Promise<{ ok: boolean; error?: string }> {
  const served = new Promise<{ ok: boolean; error?: string }>((resolve) => { const off = c.on('state-served', (e) => { off(); resolve(e); }); });
  const r = await s.c.app.inject({ method: 'POST', url: `/api/runs/${run}/checkpoints`, headers: s.admin });
  expect(r.statusCode, JSON.stringify(r.json())).toBe(202);
  expect(r.json().peerId).toBe(c.peerId);
  return served;
}

const failed = (run: string) => (s.c.db.prepare("SELECT peer_id AS peerId, data_json AS data FROM events WHERE run_id = ? AND kind = 'checkpoint-failed' ORDER BY id").all(run) as { peerId: string; data: string }[])
  .map((e) => ({ peerId: e.peerId, ...JSON.parse(e.data) as { reason: string; rejected?: boolean } }));

/** Nothing of `run` is listed, stored on disk, or offered to a newcomer. */
async function nothingServed(run: string): Promise<void> {
  expect((await s.c.app.inject({ method: 'GET', url: `/api/runs/${run}/checkpoints` })).json().checkpoints).toEqual([]);
  const dir = join(s.dataDir, 'checkpoints', run);
  expect(existsSync(dir) ? readdirSync(dir) : []).toEqual([]);
  const { peer: p, welcome } = await RawPeer.join(s.wsUrl, { run });
  p.close();
  expect(welcome.checkpoint).toBeNull();
}

describe('checkpoints the coordinator checks itself', () => {
  it('refuses a garbage upload after a huge claimed step, and garbage at a plausible step by its measured loss; nothing is listed, served or exported', async () => {
    const run = await newRun('garbage');
    const honest = honestState(run, 0);
    let state: StateFrame = { ...honest, meta: { ...honest.meta, step: 2 ** 53 - 1, round: 2 ** 32 - 1, valLoss: 0.001 } };
    const c = await peer('garbage', () => state);
    const first = await pull('garbage', c);
    expect(first.ok).toBe(false);
    expect(first.error).toMatch(/422.*counters: step 9007199254740991 is outside/);
    await nothingServed('garbage');

    // The peer that served it, and its address, are never asked again; a second one, from another
    // address, serves finite garbage at step 20.
    expect((await s.c.app.inject({ method: 'POST', url: '/api/runs/garbage/checkpoints', headers: s.admin })).statusCode).toBe(409);
    const garbage = new Float32Array(honest.phi.length);
    for (let i = 0; i < garbage.length; i++) garbage[i] = 3 * Math.sin(i * 12.9898);
    state = { meta: { ...honest.meta, step: 20, round: 2, valLoss: 0.001 }, phi: garbage, momentum: honest.momentum };
    const c2 = await peer('garbage', () => state, true, '127.0.0.2');
    const second = await pull('garbage', c2);
    expect(second.ok).toBe(false);
    expect(second.error).toMatch(/422.*the coordinator measured a validation loss of/);
    await nothingServed('garbage');
    expect(failed('garbage')).toEqual([
      expect.objectContaining({ peerId: c.peerId, rejected: true, reason: expect.stringMatching(/counters/) }),
      expect.objectContaining({ peerId: c2.peerId, rejected: true, reason: expect.stringMatching(/measured a validation loss/) }),
    ]);
  });

  it('stores an honest upload with the loss it measured, not the claim; refuses the same state with φ negated and withdraws the peer\'s earlier checkpoint', async () => {
    const run = await newRun('honest');
    const good = honestState(run, 60);
    const want = valLoss(run, good.phi);
    expect(want).toBeLessThan(Math.log(256) - 1); // it did learn: the test means something
    let state: StateFrame = { ...good, meta: { ...good.meta, valLoss: 0.001 } };
    const c = await peer('honest', () => state);
    await reportedStep(s, c, 60, 10);
    expect(await pull('honest', c)).toMatchObject({ ok: true });
    const [info] = (await s.c.app.inject({ method: 'GET', url: '/api/runs/honest/checkpoints' })).json().checkpoints;
    expect(info).toMatchObject({ step: 60, peerId: c.peerId });
    expect(info.valLoss).toBe(want);
    const saved = s.c.db.prepare("SELECT data_json AS d FROM events WHERE run_id = 'honest' AND kind = 'checkpoint-saved'").get() as { d: string };
    expect(JSON.parse(saved.d)).toMatchObject({ valLoss: want, claimedValLoss: 0.001 });
    // A newcomer is told the coordinator's figure for the state it may bootstrap from.
    const { peer: p, welcome } = await RawPeer.join(s.wsUrl, { run: 'honest' });
    p.close();
    expect(welcome.checkpoint).toMatchObject({ id: info.id, valLoss: want });

    // φ negated: finite, the right shape, plausible counters; only its loss gives it away.
    const bad = negated(good);
    bad.meta.step = 70;
    const badLoss = valLoss(run, bad.phi);
    console.log(`coordinator's measurement: honest φ ${want.toFixed(4)}, φ negated ${badLoss.toFixed(4)} (bound ${(want + STATE_LOSS_MARGIN).toFixed(4)})`);
    expect(badLoss).toBeGreaterThan(want + STATE_LOSS_MARGIN);
    state = bad;
    const r = await pull('honest', c);
    expect(r.ok).toBe(false);
    expect(r.error).toMatch(/above the bound/);
    expect(failed('honest').at(-1)).toMatchObject({ peerId: c.peerId, rejected: true });
    // The peer served a bad state: its earlier checkpoint is withdrawn with it (a first upload
    // is judged only against ln(vocab) + margin, under which a poisoned state can measure).
    await nothingServed('honest');
    const deleted = s.c.db.prepare("SELECT peer_id AS peerId, data_json AS d FROM events WHERE run_id = 'honest' AND kind = 'checkpoint-deleted'").all() as { peerId: string; d: string }[];
    expect(deleted.map((e) => ({ peerId: e.peerId, ...JSON.parse(e.d) }))).toEqual([{ peerId: c.peerId, id: info.id, reason: expect.stringMatching(/withdrawn/) }]);
  });

  it('a refusal is per client: the refused id\'s other ids (one address) are asked no more and their earlier checkpoint is withdrawn', async () => {
    // Per id, a host's other ids stayed eligible for duty and their checkpoints stayed offered.
    const run = await newRun('one-client');
    const good = honestState(run, 60);
    let state: StateFrame = good;
    const first = await peer('one-client', () => state);
    await reportedStep(s, first, 60, 10);
    expect(await pull('one-client', first)).toMatchObject({ ok: true });
    const [info] = (await s.c.app.inject({ method: 'GET', url: '/api/runs/one-client/checkpoints' })).json().checkpoints;
    expect(info).toMatchObject({ peerId: first.peerId });
    // A second id of the same address (127.0.0.1), off probation too; both now serve φ negated,
    // so whichever of the two the scheduler draws is refused.
    const second = await peer('one-client', () => state);
    const bad = negated(good);
    bad.meta.step = 60;
    state = bad;
    const served = new Promise<{ ok: boolean; error?: string }>((resolve) => {
      for (const c of [first, second]) { const off = c.on('state-served', (e) => { off(); resolve(e); }); }
    });
    const r = await s.c.app.inject({ method: 'POST', url: '/api/runs/one-client/checkpoints', headers: s.admin });
    expect(r.statusCode, JSON.stringify(r.json())).toBe(202);
    const drawn = r.json().peerId as string;
    expect((await served).error).toMatch(/422.*above the bound/);
    const other = drawn === first.peerId ? second : first;
    expect(s.c.hub.eligibleForDuty(other.peerId!)).toBe(true);
    expect(s.c.scheduler.eligible('one-client')).toEqual([]);
    const again = await s.c.app.inject({ method: 'POST', url: '/api/runs/one-client/checkpoints', headers: s.admin });
    expect(again.statusCode).toBe(409);
    // The first id's checkpoint goes with its client's refusal, whichever id served the bad state.
    await nothingServed('one-client');
  });

  it('refuses a state fitted to the run\'s public check windows: the coordinator measures windows of its own', async () => {
    // Before: the coordinator measured the run's check windows, a function of public data. A
    // state trained on them alone (400 CPU steps) measured 0.03, became the newest checkpoint,
    // and set a bound of 0.53 that every honest upload failed, withdrawing the honest peers'
    // checkpoints with it; every newcomer was offered it.
    const run = await newRun('fitted');
    const fitted = fittedToCheckWindows(run, 400, 20);
    const c = await peer('fitted', () => fitted);
    await reportedStep(s, c, 20, 10);
    const r = await pull('fitted', c);
    expect(r.ok).toBe(false);
    expect(r.error).toMatch(/422.*the coordinator measured a validation loss of \d+\.\d+, above the bound/);
    await nothingServed('fitted');
    expect(failed('fitted')).toEqual([expect.objectContaining({ peerId: c.peerId, rejected: true })]);
  });

  it('refuses a state fitted to the whole validation text (public as well), by its loss on the training text; an honest state of the same run passes', async () => {
    // A run whose validation text is short (1,200 bytes of the book), so that micro learns it in
    // a thousand CPU steps; on the default run a larger model could learn all 66,000 bytes.
    const book = datasetFromCorpus().train;
    let end = 100_000;
    while (book[end - 1] !== 0x0a) end--; // a whole line: the text stays valid UTF-8
    const src = join(s.dataDir, 'short-val.txt');
    writeFileSync(src, book.subarray(0, end));
    const dir = join(s.dataDir, 'datasets', 'short-val');
    await prepareDataset([src], dir, { valFraction: 1200 / end });
    const { val } = loadDataset(dir);
    const created = await s.c.app.inject({ method: 'POST', url: '/api/runs', headers: s.admin, payload: { id: 'memorised', dataset: 'short-val', preset: 'micro', train: { H: 10 } } });
    expect(created.statusCode).toBe(201);
    const run = created.json() as RunInfo;

    const fitted = fittedToText(run, val, 1000, 20);
    let state = fitted;
    const c = await peer('memorised', () => state);
    await reportedStep(s, c, 60, 10);
    const r = await pull('memorised', c);
    expect(r.ok).toBe(false);
    // Its validation loss is within the bound (ln 256 + margin): only the training text shows it.
    expect(r.error).toMatch(/422.*measured (\d+\.\d+) on the training text and (\d+\.\d+) on the validation text: (\d+\.\d+) apart, more than 0\.5/);
    const [, train, v] = /measured (\d+\.\d+) on the training text and (\d+\.\d+)/.exec(r.error!)!.map(Number);
    console.log(`a state fitted to the validation text: ${v!.toFixed(4)} there, ${train!.toFixed(4)} on the training text`);
    expect(v).toBeLessThan(Math.log(256));
    await nothingServed('memorised');

    // An honest state (trained on the book) scores both texts alike, and is stored; it comes
    // from another address (a refusal ends the duty of every id of the refused one's).
    const honest = honestState(run, 60);
    state = honest;
    const c2 = await peer('memorised', () => state, true, '127.0.0.2');
    await reportedStep(s, c2, 60, 10);
    expect(await pull('memorised', c2)).toMatchObject({ ok: true });
    expect(failed('memorised')).toEqual([expect.objectContaining({ peerId: c.peerId, rejected: true, reason: expect.stringMatching(/on the training text/) })]);
  });

  it('refuses an upload whose φ is honest and whose momentum is 1e30, before measuring it: the next outer step would throw φ out', async () => {
    const run = await newRun('momentum');
    const good = honestState(run, 0);
    const c = await peer('momentum', () => ({ ...good, momentum: new Float32Array(good.phi.length).fill(1e30) }));
    const evaluations = s.c.evaluator.stats.evaluations;
    const r = await pull('momentum', c);
    expect(r.ok).toBe(false);
    expect(r.error).toMatch(/422.*momentum/);
    expect(s.c.evaluator.stats.evaluations).toBe(evaluations);
    expect(failed('momentum')).toEqual([expect.objectContaining({ peerId: c.peerId, rejected: true, reason: expect.stringMatching(/momentum/) })]);
    await nothingServed('momentum');
  });

  it('never offers a loss measured on windows the run changed while it was measured: the checkpoint waits to be measured on the new ones', async () => {
    // Before: an upload measured on seqLen 32 while the admin stopped the run and set seqLen 16 (a
    // run's windows change only while it is stopped or has no peers) was stored as
    // measured on the new windows (the same number of batches), after the change had forgotten
    // every other measurement; the run's bound and every newcomer's used its old-window figure.
    const run = await newRun('rewindow');
    const good = honestState(run, 60);
    const c = await peer('rewindow', () => good);
    await reportedStep(s, c, 60, 10);
    const ev = s.c.evaluator;
    const measure = ev.measure.bind(ev);
    let entered!: () => void;
    const measuring = new Promise<void>((r) => { entered = r; });
    let release!: () => void;
    const gate = new Promise<void>((r) => { release = r; });
    ev.measure = async (...a: Parameters<typeof measure>) => {
      ev.measure = measure;
      entered();
      await gate;
      return measure(...a);
    };
    const served = pull('rewindow', c);
    await measuring;
    const patched = await s.c.app.inject({ method: 'PATCH', url: '/api/runs/rewindow', headers: s.admin, payload: { status: 'stopped', train: { seqLen: 16 } } });
    expect(patched.statusCode, patched.body).toBe(200);
    const now = patched.json() as RunInfo;
    expect(stateCheckBatchCount(now.model, now.train)).toBe(stateCheckBatchCount(run.model, run.train));
    release();
    expect(await served).toMatchObject({ ok: true });
    const want = valLoss(now, good.phi);
    expect(want).not.toBe(valLoss(run, good.phi));
    expect((await s.c.app.inject({ method: 'PATCH', url: '/api/runs/rewindow', headers: s.admin, payload: { status: 'running' } })).statusCode).toBe(200);
    // Offered only with its loss on the run's windows as they are now.
    const offered = async () => (await RawPeer.join(s.wsUrl, { run: 'rewindow' }).then(({ peer: p, welcome }) => { p.close(); return welcome.checkpoint; }));
    const first = await offered();
    expect(first === null || first.valLoss === want, `offered with ${first?.valLoss}; measured on the new windows ${want}`).toBe(true);
    await until(() => s.c.checkpoints.current(s.c.runs.get('rewindow')!) !== null, 60_000, 'the checkpoint to be measured on the new windows');
    expect((await offered())?.valLoss).toBe(want);
  });

  it('asks only peers eligible for duty: none while the only peer is on probation', async () => {
    await newRun('duty');
    const good = honestState({ ...(await s.c.app.inject({ method: 'GET', url: '/api/runs/duty' })).json() as RunInfo }, 0);
    const c = await peer('duty', () => good, false);
    expect(s.c.hub.onProbation(c.peerId!)).toBe(true);
    const r = await s.c.app.inject({ method: 'POST', url: '/api/runs/duty/checkpoints', headers: s.admin });
    expect(r.statusCode).toBe(409);
    expect(r.json().error).toMatch(/no peer eligible/);
    await earnTrust(s.url, 'duty', c, { exchanges: PROBATION_EXCHANGES, H: 10 });
    await until(() => s.c.hub.eligibleForDuty(c.peerId!), 5000, 'the peer to leave probation');
    expect(await pull('duty', c)).toMatchObject({ ok: true });
  });
});
