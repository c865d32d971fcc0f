// The page side of an outer step. RTCPeerConnection does not exist in Workers, so the mesh runs
// on the page's main thread while the weights live in the training worker. Tensors cross the
// boundary as transferred ArrayBuffers (ownership moves, nothing is copied): the worker
// transfers φ and Δ out, the page transfers the partner's validated φ and Δ in.
//
//   worker: θ, φ on the GPU --readback--> φ, Δ (Float32Array) --transfer--> page
//   page:   mesh.exchange: encode + chunk + send; receive + verify + validate the partner's
//   page:   partner φ, Δ --transfer--> worker --upload--> outer step kernel on the GPU
import { transfer, type Remote } from 'comlink';
import type { Replica } from './replica.ts';
import type { OuterPayload, PartnerPayload } from './types.ts';

/** A partner payload as it crosses to the worker (plain data: structured-clone safe). */
export interface WorkerPartner {
  peer: string;
  round: number;
  phi: Float32Array;
  delta: Float32Array;
}

/** What the training worker exposes (through comlink) for outer steps. */
export interface WorkerOuterApi {
  /** φ and Δ after the inner loop; the worker should return them with `transferOut`. */
  outerPayload(): OuterPayload | Promise<OuterPayload>;
  /** Apply the NoLoCo outer step with these partners (none: solo) and reset θ ← φ. */
  applyOuter(partners: WorkerPartner[]): void | Promise<void>;
}

/** A Replica whose state lives in a worker reached through comlink. */
export function workerReplica(api: Remote<WorkerOuterApi>): Replica {
  return {
    outerPayload: () => api.outerPayload() as Promise<OuterPayload>,
    applyOuter: (partners: PartnerPayload[]) => {
      const plain = partners.map((p) => ({ peer: p.peer, round: p.round, phi: owned(p.phi), delta: owned(p.delta) }));
      // After this call the page no longer owns these buffers: the worker does.
      return api.applyOuter(transfer(plain, plain.flatMap((p) => [p.phi.buffer, p.delta.buffer]))) as Promise<void>;
    },
  };
}

/** Worker side: return φ and Δ so that comlink moves their buffers to the page instead of copying. */
export function transferOut(p: OuterPayload): OuterPayload {
  const phi = owned(p.phi), delta = owned(p.delta);
  return transfer({ phi, delta }, [phi.buffer, delta.buffer]);
}

/**
 * `x` itself when it is the whole of its own ArrayBuffer (transferring it moves exactly these
 * bytes), else a tight copy: transferring a view's larger buffer would take its neighbours too.
 */
function owned(x: Float32Array): Float32Array {
  return x.byteOffset === 0 && x.buffer.byteLength === x.byteLength && x.buffer instanceof ArrayBuffer ? x : x.slice();
}
