// The training worker and the WebRTC mesh as the volunteer backend needs them: the comlink
// Trainer (src/worker/worker.ts) fed with this replica's data shard, and the mesh
// (src/sync/mesh.ts) over the coordinator's signaling. Tensors cross to and from the worker as
// transferred ArrayBuffers.
import * as Comlink from 'comlink';
import type { TrainerApi } from '../../worker/worker.ts';
import { validationBatches } from '../../data/sampler.ts';
import { sha256Hex } from '../../data/manifest.ts';
import { buildLayout, layoutSignature } from '../../model/layout.ts';
import type { DataFileRef, RunInfo } from '../../protocol/messages.ts';
import { configHash } from '../../protocol/hash.ts';
import { createMesh as makeMesh } from '../../sync/mesh.ts';
import type { MeshFactoryArgs, TrainerFactoryArgs } from '../browser/volunteer-backend.ts';
import type { MeshPort, OuterPayload, TrainerPort } from '../ports.ts';

/** Validation batches each replica evaluates (a fixed set, so every replica's loss compares). */
const VAL_BATCHES = 4;

async function download(baseUrl: string, f: DataFileRef): Promise<Uint8Array> {
  const res = await fetch(new URL(f.url, baseUrl));
  if (!res.ok) throw new Error(`downloading ${f.name} from the coordinator failed: HTTP ${res.status}`);
  const bytes = new Uint8Array(await res.arrayBuffer());
  if (bytes.length !== f.bytes) throw new Error(`${f.name}: got ${bytes.length} bytes, the coordinator announced ${f.bytes}`);
  const hash = await sha256Hex(bytes);
  if (hash !== f.sha256) throw new Error(`${f.name}: sha256 ${hash} does not match the coordinator's ${f.sha256}; refusing the data`);
  if (f.dtype !== 'u8') throw new Error(`${f.name}: token type ${f.dtype} is not supported by the browser trainer (byte-level only)`);
  return bytes;
}

export async function createTrainer({ run, welcome, baseUrl }: TrainerFactoryArgs): Promise<TrainerPort> {
  const a = welcome.assignment;
  const shards = await Promise.all(a.shards.map((i) => download(baseUrl, a.train[i]!)));
  const data = new Uint8Array(shards.reduce((n, s) => n + s.length, 0));
  shards.reduce((at, s) => (data.set(s, at), at + s.length), 0);
  const val = validationBatches(await download(baseUrl, a.val), run.train.batch, run.train.seqLen, VAL_BATCHES);
  const worker = new Worker(new URL('../../worker/worker.ts', import.meta.url), { type: 'module', name: 'murmur-trainer' });
  const api = Comlink.wrap<TrainerApi>(worker);
  try {
    await api.init({ model: run.model, train: run.train, data, replica: a.replica }, run.seed);
  } catch (e) {
    worker.terminate();
    throw e;
  }
  let disposed = false;
  return {
    train: (steps) => api.train(steps),
    evaluate: () => api.evaluate(val),
    async outerPayload(): Promise<OuterPayload> {
      const p = await api.outerPayload();
      return { phi: new Float32Array(p.phi), delta: new Float32Array(p.delta) };
    },
    applyOuter(partners: OuterPayload[]) {
      // Copies: the mesh may still hold the partner's arrays; ours move to the worker.
      const plain = partners.map((p) => ({ phi: p.phi.slice().buffer, delta: p.delta.slice().buffer }));
      return api.applyOuter(Comlink.transfer(plain, plain.flatMap((p) => [p.phi, p.delta])));
    },
    async dispose() {
      if (disposed) return;
      disposed = true;
      try { await api.dispose(); } finally { worker.terminate(); }
    },
  };
}

/** What peers must agree on to exchange weights: the run, the model, the layout and the outer rule. */
export function runConfigHash(run: RunInfo): string {
  const { H, outerMomentum, outerLr, consensus } = run.train;
  return configHash({ run: run.id, model: run.model, layout: layoutSignature(buildLayout(run.model)), H, outerMomentum, outerLr, consensus, compression: run.compression });
}

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

export async function createMesh({ run, signaling, otherPeers }: MeshFactoryArgs): Promise<MeshPort & { destroy(): void }> {
  const mesh = makeMesh({ runId: run.id, configHash: runConfigHash(run), elements: buildLayout(run.model).total })({ signaling });
  let bytesIn = 0, bytesOut = 0;
  let lastSolo: string | null = null;
  return {
    async exchange(round, mine, waitMs) {
      const r = await mesh.exchange(round, mine, { waitMs });
      bytesIn += r.bytesReceived;
      bytesOut += r.bytesSent;
      if (!r.payload || !r.partner) {
        lastSolo = r.reason ? SOLO_TEXT[r.reason] ?? r.reason : 'no partner';
        return null;
      }
      lastSolo = null;
      return { partner: r.partner, payload: { phi: r.payload.phi, delta: r.payload.delta }, accepted: r.outcome === 'paired' };
    },
    stats: () => ({ peers: otherPeers(), bytesIn, bytesOut, lastSolo }),
    destroy() { mesh.destroy(); },
  };
}
