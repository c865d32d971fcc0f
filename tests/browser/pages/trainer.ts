// Page side of the trainer browser test: the real training worker (src/worker/worker.ts) behind
// comlink, driven as the volunteer page will drive it.
import * as Comlink from 'comlink';
import type { Remote } from 'comlink';
import { workerReplica, type WorkerOuterApi } from '../../../src/sync/worker-bridge.ts';
import type { TrainerApi } from '../../../src/worker/worker.ts';
import { preset } from '../../../src/model/config.ts';
import { indexedDbStore } from '../../../src/gpu/autotune.ts';
import { DEFAULT_TUNING } from '../../../src/gpu/kernels.ts';

const worker = new Worker(new URL('../../../src/worker/worker.ts', import.meta.url), { type: 'module', name: 'trainer' });
const trainer = Comlink.wrap<TrainerApi>(worker);

const trainerPage = {
  /** init micro, train `steps` through comlink, then one outer step through the mesh's worker bridge. */
  async run(steps: number) {
    const text = 'It is a way I have of driving off the spleen and regulating the circulation. ';
    const data = new TextEncoder().encode(text.repeat(30));
    const events: string[] = [];
    await trainer.setEventListener(Comlink.proxy((e: { type: string }) => { events.push(e.type); }));
    const info = await trainer.init({ model: preset('micro'), train: { batch: 2, seqLen: 32, lr: 3e-3, warmupSteps: 2 }, data, autotune: false, readEvery: 4 }, 5);
    const losses = await trainer.train(steps);
    // The outer step as the mesh drives it: through src/sync/worker-bridge.ts, tensors moving
    // as transferred buffers in both directions.
    const replica = workerReplica(trainer as unknown as Remote<WorkerOuterApi>);
    const payload = await replica.outerPayload();
    const partner = { peer: 'self-copy', round: 1, phi: payload.phi.slice(), delta: payload.delta.slice(), deltaNorm: 0, phiDistance: 0, clipped: false };
    const sent = partner.phi;
    await replica.applyOuter([partner]);
    const snap = await trainer.outerState();
    const after = await trainer.getInfo();
    return {
      info, losses, payloadLengths: [payload.phi.length, payload.delta.length], stepAfter: after.step, events,
      partnerDetached: sent.byteLength === 0, outerStep: snap.step, phiMoved: snap.phi.some((x, i) => x !== payload.phi[i]),
    };
  },

  /** A model too large for the adapter: the typed error as the page receives it. */
  async tooLarge() {
    const big = new Worker(new URL('../../../src/worker/worker.ts', import.meta.url), { type: 'module', name: 'trainer-big' });
    const t = Comlink.wrap<TrainerApi>(big);
    try {
      // Attention keeps no T x T matrix: the logits (B*T x vocab, 68 GB) are what no binding holds.
      await t.init({ model: { vocab: 65536, ctx: 4096, layers: 1, d: 32, heads: 2 }, train: { batch: 64, seqLen: 4096 }, data: new Uint8Array(5000), autotune: false }, 1);
      return null;
    } catch (e) {
      const err = e as Error & { code?: string; limit?: string; needed?: number; available?: number };
      return { name: err.name, code: err.code, limit: err.limit, needed: err.needed, available: err.available, message: err.message };
    } finally {
      big.terminate();
    }
  },

  /** The browser autotune cache: an IndexedDB round trip. */
  async idbRoundTrip() {
    const store = indexedDbStore('murmur-test');
    await store.save('k', DEFAULT_TUNING);
    return { got: await store.load('k'), missing: await store.load('nope') };
  },

  dispose() {
    return trainer.dispose();
  },
};

declare global {
  interface Window { trainerPage: typeof trainerPage }
}
window.trainerPage = trainerPage;
