// A replica that trains on the CPU reference (CpuTrainer) and does NoLoCo outer steps with
// the simulator's pure outer math: the Node side of the mesh <-> trainer glue, used by the
// integration test and the compression benchmark.
import type { TrainConfig } from '../../src/model/config.ts';
import type { Layout } from '../../src/model/layout.ts';
import { CpuTrainer } from '../../src/train/cpu-trainer.ts';
import { nolocoOuterStep, type OuterHyper, type OuterMessage } from '../../src/train/outer.ts';
import { WindowSampler } from '../../src/data/sampler.ts';
import type { Batch } from '../../src/data/batch.ts';
import type { Replica } from '../../src/sync/replica.ts';
import type { OuterPayload, PartnerPayload } from '../../src/sync/types.ts';

export class CpuReplica implements Replica {
  readonly trainer: CpuTrainer;
  /** (P) slow weights φ_i. */
  readonly phi: Float32Array;
  /** (P) outer momentum m_i. */
  readonly momentum: Float32Array;
  private readonly sampler: WindowSampler;
  private sent: OuterMessage | null = null;

  constructor(layout: Layout, readonly cfg: TrainConfig, init: Float32Array, data: Uint8Array, readonly id: number, seed: number, readonly hyper: OuterHyper) {
    this.trainer = new CpuTrainer(layout, cfg, init);
    this.phi = init.slice();
    this.momentum = new Float32Array(layout.total);
    this.sampler = new WindowSampler(data, { seed, replica: id });
  }

  /** H inner AdamW steps on this replica's own windows; yields to the event loop between steps. */
  async innerLoop(H: number): Promise<number> {
    let loss = 0;
    for (let h = 0; h < H; h++) {
      loss += this.trainer.trainStep(this.sampler.next(this.cfg.batch, this.cfg.seqLen));
      await new Promise((r) => setImmediate(r));
    }
    return loss / H;
  }

  outerPayload(): OuterPayload {
    const theta = this.trainer.params;
    const delta = new Float32Array(theta.length);
    for (let k = 0; k < delta.length; k++) delta[k] = theta[k] - this.phi[k];
    this.sent = { phi: this.phi.slice(), delta };
    return this.sent;
  }

  applyOuter(partners: PartnerPayload[]): void {
    if (!this.sent) throw new Error('CpuReplica.applyOuter before outerPayload');
    const group: OuterMessage[] = [this.sent, ...partners.map((p) => ({ phi: p.phi, delta: p.delta }))];
    nolocoOuterStep({ phi: this.phi, momentum: this.momentum, theta: this.trainer.params }, group, this.hyper);
    this.sent = null;
  }

  evaluate(batches: Batch[]): number {
    const keep = this.trainer.params.slice();
    this.trainer.setParams(this.phi);
    const loss = this.trainer.evaluate(batches);
    this.trainer.setParams(keep);
    return loss;
  }
}

/** Mean squared distance of each φ_i from the mean φ, per parameter: how far replicas drifted apart. */
export function weightSpread(phis: Float32Array[]): number {
  const n = phis[0].length;
  let s = 0;
  for (let k = 0; k < n; k++) {
    let mean = 0;
    for (const p of phis) mean += p[k];
    mean /= phis.length;
    for (const p of phis) s += (p[k] - mean) ** 2;
  }
  return s / (phis.length * n);
}
