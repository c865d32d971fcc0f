// The training worker and the WebRTC mesh as the volunteer backend needs them: the comlink
// Trainer (src/worker/worker.ts) fed with this replica's data shard, and the mesh
// (src/sync/mesh.ts) over the coordinator's signaling. Tensors cross to and from the worker as
// transferred ArrayBuffers.
import * as Comlink from 'comlink';
import type { TrainerApi } from '../../worker/worker.ts';
import { STATE_FORMAT, STATE_VERSION, type LoadState, type TrainerEvent } from '../../worker/types.ts';
import { privateCheckBatches, randomSeed, validationBatches } from '../../data/sampler.ts';
import { buildLayout } from '../../model/layout.ts';
import { compressionForRun } from '../../protocol/exchange-link.ts';
import { consoleLogger } from '../../sync/components.ts';
import { welcomeRoundsPerS, welcomeRunRound } from '../../sync/join.ts';
import { createMesh as makeMesh } from '../../sync/mesh.ts';
import { downloadAssignment } from '../../volunteer/data.ts';
import { runConfigHash, VAL_BATCHES } from '../../volunteer/run-config.ts';
import { withPeerReplay } from '../../volunteer/signaling.ts';
// The report's connectivity fields, measured as the headless volunteer measures them.
import { linkFields } from '../../volunteer/round.ts';
import { PROBE_WINDOWS } from '../../round/probe.ts';
import type { MeshFactoryArgs, RunMesh, TrainerFactoryArgs } from '../browser/volunteer-backend.ts';
import type { GpuEvent, OuterPayload, OuterState, TrainerPort } from '../ports.ts';

// The same data download and run fingerprint as the headless volunteer (src/volunteer), so
// browser and Node peers of one run train on identical tokens and pair with each other.
export { runConfigHash };

export async function createTrainer({ run, welcome, baseUrl, signal }: TrainerFactoryArgs): Promise<TrainerPort> {
  const a = welcome.assignment;
  // A crowd behind this page's address waits its turn for the coordinator's download budget;
  // Stop ends the download, its waits included. The welcome's session goes with it (baseUrl is this
  // page's own origin, the coordinator's): a live peer's data is not an anonymous download.
  const { train: data, val: valTokens } = await downloadAssignment(baseUrl, a, fetch, {
    ...(signal ? { signal } : {}), session: welcome.session,
    onWait: (w) => consoleLogger('murmur data', true).info('the coordinator asks this address to wait before downloading the data', { status: w.status, waitMs: w.waitMs, reason: w.reason }),
  });
  signal?.throwIfAborted();
  const val = validationBatches(valTokens, run.train.batch, run.train.seqLen, VAL_BATCHES);
  // Windows of this page's own (a seed nobody else knows): a peer serving a state fitted to any
  // windows it could know would pass a check on those.
  // Of both texts: the validation text is public, and a state fitted to all of it shows only on
  // training text (src/sync/state-check.ts).
  const seed = randomSeed();
  const check = { val: privateCheckBatches(valTokens, run.model, run.train, seed), train: privateCheckBatches(data, run.model, run.train, seed) };
  const worker = new Worker(new URL('../../worker/worker.ts', import.meta.url), { type: 'module', name: 'murmur-trainer' });
  const api = Comlink.wrap<TrainerApi>(worker);
  // A worker whose script fails (a redeploy renamed its chunk, a syntax error, an uncaught throw)
  // fires "error" and never answers again: every call made of it fails with that instead of
  // waiting for ever, and so does the join when Stop comes while the worker starts.
  const failed = new Promise<never>((_, reject) => {
    worker.addEventListener('error', (ev) => reject(new Error(`the training worker failed: ${(ev as ErrorEvent).message || 'its script could not be loaded or threw'}`)));
    worker.addEventListener('messageerror', () => reject(new Error('the training worker sent a message this page cannot read')));
    signal?.addEventListener('abort', () => reject(signal.reason), { once: true });
  });
  failed.catch(() => {});
  const call = <T>(p: Promise<T>): Promise<T> => Promise.race([p, failed]);
  // The worker's GPU events (a lost device, its rebuild) reach whoever listens on the page.
  const gpuListeners = new Set<(e: GpuEvent) => void>();
  try {
    await call(api.setEventListener(Comlink.proxy((e: TrainerEvent) => {
      if (e.type !== 'device-lost' && e.type !== 'rebuilt') return;
      for (const fn of gpuListeners) fn(e);
    })));
    await call(api.init({ model: run.model, train: run.train, data, replica: a.replica }, run.seed));
  } catch (e) {
    worker.terminate();
    throw e;
  }
  let disposed = false;
  return {
    onGpuEvent(fn) {
      gpuListeners.add(fn);
      return () => { gpuListeners.delete(fn); };
    },
    train: (steps) => call(api.train(steps)),
    evaluate: () => call(api.evaluate(val)),
    checkLoss: async () => ({ val: await call(api.evaluate(check.val)), train: await call(api.evaluate(check.train)) }),
    async outerPayload(): Promise<OuterPayload> {
      const p = await call(api.outerPayload());
      return { phi: new Float32Array(p.phi), delta: new Float32Array(p.delta) };
    },
    probe(partner: OuterPayload) {
      // Copies, as for applyOuter: the partner's arrays stay with the mesh until the step.
      const plain = { phi: partner.phi.slice().buffer, delta: partner.delta.slice().buffer };
      return call(api.probe(Comlink.transfer(plain, [plain.phi, plain.delta]), PROBE_WINDOWS));
    },
    applyOuter(partners: OuterPayload[]) {
      // Copies: the mesh may still hold the partner's arrays; ours move to the worker.
      const plain = partners.map((p) => ({ phi: p.phi.slice().buffer, delta: p.delta.slice().buffer }));
      return call(api.applyOuter(Comlink.transfer(plain, plain.flatMap((p) => [p.phi, p.delta]))));
    },
    async outerState(): Promise<OuterState> {
      // A copy the worker keeps on the CPU after every outer step; its buffers are transferred.
      const o = await call(api.outerState());
      return { phi: o.phi, momentum: o.outerM, innerStep: o.step };
    },
    async load(s: OuterState) {
      // Only the outer state: the worker starts θ at φ with zero AdamW moments.
      const phi = s.phi.slice().buffer, outerM = s.momentum.slice().buffer;
      const state: LoadState = { format: STATE_FORMAT, version: STATE_VERSION, model: run.model, step: s.innerStep, phi, outerM };
      await call(api.load(Comlink.transfer(state, [phi, outerM])));
    },
    async dispose() {
      if (disposed) return;
      disposed = true;
      try { await call(api.dispose()); } catch { /* a failed worker is ended all the same */ } finally { worker.terminate(); }
    },
  };
}

/** What peers must agree on to exchange weights: the run, the model, the layout and the outer rule. */
const SOLO_TEXT: Record<string, string> = {
  'no-partner': 'no partner was ready',
  'no-identity': 'not registered with the coordinator yet',
  'coordinator-timeout': 'the coordinator did not answer in time',
  'banned-partner': 'the partner had sent bad updates before',
  'connect-failed': 'could not connect to the partner',
  deadline: 'the partner was too slow',
  'partner-gone': 'the partner left',
  'partner-aborted': 'the partner gave up',
  rejected: "the partner's update failed the checks",
};

export async function createMesh({ run, signaling, welcome, otherPeers, welcomedAt }: MeshFactoryArgs): Promise<RunMesh> {
  // The mesh is made after the welcome: replay the peer list it would otherwise have missed.
  // Warnings (a rejected partner with the validator's numbers, a silent coordinator) go to the
  // console, where a browser test or a volunteer's devtools can see why a pair failed.
  const mesh = makeMesh({
    runId: run.id, configHash: runConfigHash(run), elements: buildLayout(run.model).total, compression: compressionForRun(run.compression),
    // A partner's claimed lead counts only as far as the run's pace and age allow (validate.ts,
    // roundsPerS and runRound).
    validation: { roundsPerS: welcomeRoundsPerS(welcome), runRound: welcomeRunRound(welcome, welcomedAt) },
  })({ signaling: withPeerReplay(signaling), logger: consoleLogger('[murmur mesh]') });
  let bytesIn = 0, bytesOut = 0;
  let lastSolo: string | null = null;
  return {
    async exchange(round, mine, waitMs) {
      const r = await mesh.exchange(round, mine, { waitMs });
      bytesIn += r.bytesReceived;
      bytesOut += r.bytesSent;
      if (!r.payload || !r.partner) {
        lastSolo = r.reason ? SOLO_TEXT[r.reason] ?? r.reason : 'no partner';
        return { partner: null, payload: null, partnerDist: null, bytesIn: r.bytesReceived, bytesOut: r.bytesSent, solo: lastSolo, link: linkFields(mesh, r) };
      }
      lastSolo = null;
      // The validator's distance, measured before it clips a far φ (src/round/outer-round.ts).
      return {
        partner: r.partner, payload: { phi: r.payload.phi, delta: r.payload.delta }, partnerDist: r.payload.phiDistance,
        bytesIn: r.bytesReceived, bytesOut: r.bytesSent, solo: null, link: linkFields(mesh, r), ...(r.probation ? { probation: true } : {}),
        partnerRound: r.payload.round,
      };
    },
    reportOffence: (peer, code, detail) => mesh.reportOffence(peer, code, detail),
    stats: () => ({ peers: otherPeers(), bytesIn, bytesOut, lastSolo }),
    bootstrap: (opts) => mesh.bootstrap(opts),
    serveState: (provider) => mesh.serveState(provider),
    destroy() { mesh.destroy(); },
  };
}
