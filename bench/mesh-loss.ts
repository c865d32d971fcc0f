// Compression on vs off in a NoLoCo simulation on the CPU reference (micro): the same replicas,
// data, seeds and pairings, with what each partner receives encoded as the run setting says
// (Δ int8 with the sender's error feedback, φ f16, ...). The own φ and Δ stay exact, as in the
// mesh. Reports bytes each peer sent and the final validation loss of the replicas' φ.
import { preset, trainConfig } from '../src/model/config.ts';
import { buildLayout } from '../src/model/layout.ts';
import { initParams } from '../src/model/init.ts';
import { datasetFromCorpus } from '../src/data/dataset.ts';
import { validationBatches } from '../src/data/sampler.ts';
import { payloadBytes } from '../src/protocol/frame.ts';
import { compressionForRun } from '../src/protocol/exchange-link.ts';
import { decodeTensor, encodeTensor } from '../src/sync/compress.ts';
import { wireBytes } from '../src/sync/exchange.ts';
import type { PartnerPayload } from '../src/sync/types.ts';
import { CpuReplica, weightSpread } from '../tests/support/cpu-replica.ts';
import { seededRandom } from '../tests/support/stats.ts';

export interface LossRow {
  compression: string;
  seeds: number[];
  replicas: number;
  rounds: number;
  H: number;
  bytes_per_peer: number;
  final_val_loss: number;
  vs_none: number;
  weight_spread: number;
}

/** Mean over seeds: one seed's difference is partly chaos (tiny changes grow over training). */
export async function lossRows(quick: boolean): Promise<LossRow[]> {
  const seeds = quick ? [11] : [11, 12];
  const perSeed: LossRow[][] = [];
  for (const seed of seeds) perSeed.push(await lossRowsForSeed(quick, seed));
  return perSeed[0].map((row, k) => {
    const mean = (f: (r: LossRow) => number) => perSeed.reduce((s, rows) => s + f(rows[k]), 0) / seeds.length;
    return { ...row, seeds, final_val_loss: mean((r) => r.final_val_loss), vs_none: mean((r) => r.vs_none), weight_spread: mean((r) => r.weight_spread) };
  });
}

async function lossRowsForSeed(quick: boolean, seed: number): Promise<LossRow[]> {
  const R = 4, H = 20, rounds = quick ? 8 : 30;
  const model = preset('micro');
  const layout = buildLayout(model);
  const cfg = trainConfig({ batch: 4, seqLen: 32, lr: 2e-3, warmupSteps: H, totalSteps: rounds * H, H }, model);
  const hyper = { momentum: cfg.outerMomentum, lr: cfg.outerLr, consensus: cfg.consensus };
  const data = datasetFromCorpus();
  const val = validationBatches(data.val, 16, 32, 4);
  const init = initParams(layout, seed);
  const rows: LossRow[] = [];
  for (const name of ['none', 'fp16', 'bf16', 'int8']) {
    const c = compressionForRun(name);
    const reps = Array.from({ length: R }, (_, i) => new CpuReplica(layout, cfg, init, data.train, i, seed, hyper));
    const residuals = reps.map(() => new Float32Array(layout.total));
    const shuffleRandom = seededRandom(seed); // the same pairings for every setting
    let sent = 0;
    for (let round = 0; round < rounds; round++) {
      for (const r of reps) await r.innerLoop(H);
      const own = reps.map((r) => r.outerPayload());
      // What each replica's partner receives from it.
      const wire = own.map((p, i): PartnerPayload => {
        const phi = decodeTensor(c.phi, encodeTensor(c.phi, p.phi), layout.total);
        const delta = decodeTensor(c.delta, encodeTensor(c.delta, p.delta, c.delta === 'q8' ? residuals[i] : undefined), layout.total);
        return { peer: String(i), round, phi, delta, deltaNorm: 0, phiDistance: 0, clipped: false };
      });
      const order = reps.map((_, i) => i);
      for (let i = order.length - 1; i > 0; i--) { const j = Math.floor(shuffleRandom() * (i + 1)); [order[i], order[j]] = [order[j], order[i]]; }
      for (let k = 0; k + 1 < order.length; k += 2) {
        const [a, b] = [order[k], order[k + 1]];
        reps[a].applyOuter([wire[b]]);
        reps[b].applyOuter([wire[a]]);
        sent += 2 * (wireBytes('default', 'p-0123456789abcdef', payloadBytes(c.phi, layout.total), undefined) + wireBytes('default', 'p-0123456789abcdef', payloadBytes(c.delta, layout.total), undefined));
      }
      if (order.length % 2 === 1) reps[order[order.length - 1]].applyOuter([]);
    }
    const loss = reps.reduce((s, r) => s + r.evaluate(val), 0) / R;
    rows.push({
      compression: name, seeds: [seed], replicas: R, rounds, H, bytes_per_peer: sent / R, final_val_loss: loss, vs_none: 0,
      weight_spread: weightSpread(reps.map((r) => r.phi)),
    });
  }
  const base = rows[0].final_val_loss;
  for (const r of rows) r.vs_none = r.final_val_loss - base;
  return rows;
}
