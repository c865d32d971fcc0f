import { describe, expect, it } from 'vitest';
import { mkdtempSync, readFileSync, rmSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { main } from '../src/cli.ts';
import { buildSpecs } from '../src/commands/sim.ts';

const defaults = {
  method: 'noloco-async', replicas: 8, wait: 0.3, stepTime: 1, speeds: 'uniform:1:4', jitter: 0, seeds: [1], evals: 10,
  latency: 0.05, up: 20, netSigma: 0.5, allreduce: 'tree', learner: 'gpt', preset: 'micro', batch: 4, seqLen: 32,
  lr: 2e-3, warmup: 0.05, valBatches: 4, valBatch: 16,
};

describe('murmur sim', () => {
  it('makes one spec per method and seed, with the paper defaults per method', () => {
    const specs = buildSpecs({ ...defaults, method: 'all', seeds: [1, 2] });
    expect(specs).toHaveLength(10);
    expect(specs[0]).toMatchObject({ method: 'noloco-async', seed: 1, time: 600, network: { upBps: 20e6 } });
    expect(buildSpecs({ ...defaults, steps: 100 })[0]).toMatchObject({ steps: 100, time: undefined });
    expect(buildSpecs({ ...defaults, churn: '600:60' })[0].churn).toEqual({ session: 600, offline: 60 });
    expect(buildSpecs(defaults)[0].model).toBeUndefined();
    expect(buildSpecs({ ...defaults, d: 64, layers: 3 })[0].model).toEqual({ d: 64, layers: 3 });
  });

  it('names what is wrong before running anything', () => {
    expect(() => buildSpecs({ ...defaults, method: 'gossip' })).toThrow(/unknown method "gossip"/);
    expect(() => buildSpecs({ ...defaults, time: 10, steps: 5 })).toThrow(/either --time or --steps/);
    expect(() => buildSpecs({ ...defaults, churn: 'often' })).toThrow(/SESSION:OFFLINE/);
    expect(() => buildSpecs({ ...defaults, seqLen: 64 })).toThrow(/exceeds preset micro's context of 32/);
    expect(() => buildSpecs({ ...defaults, preset: 'huge' })).toThrow(/unknown model preset "huge"/);
    expect(() => buildSpecs({ ...defaults, d: 50, heads: 4 })).toThrow(/d=50 is not divisible by heads=4/);
  });

  it('runs every method and writes the runs as JSON', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'murmur-sim-'));
    try {
      const out = join(dir, 'runs.json');
      await main(['node', 'murmur', 'sim', '-m', 'all', '--learner', 'quadratic', '--time', '60', '--H', '5', '--seeds', '4,5', '-q', '--json', out]);
      const j = JSON.parse(readFileSync(out, 'utf8'));
      expect(j.runs).toHaveLength(10);
      expect(j.runs[0]).toMatchObject({ method: 'noloco-async', seed: 4, H: 5, wait: 1, sim_time: 60, diloco_momentum: null });
      // Which DiLoCo momentum ran is in every record (heavy-ball unless --diloco-momentum says otherwise).
      expect(j.runs.filter((r: { method: string }) => r.method === 'diloco').map((r: { diloco_momentum: string }) => r.diloco_momentum)).toEqual(['heavy-ball', 'heavy-ball']);
      for (const k of ['final_val_loss', 'avg_model_val_loss', 'final_spread', 'idle_fraction', 'solo_fraction', 'bytes_per_replica']) {
        expect(Number.isFinite(j.runs[0][k])).toBe(true);
      }
      expect(existsSync(out + '.tmp')).toBe(false);
      const nest = join(dir, 'nesterov.json');
      await main(['node', 'murmur', 'sim', '-m', 'diloco', '--diloco-momentum', 'nesterov', '--learner', 'quadratic', '--time', '60', '--H', '5', '--seeds', '4', '-q', '--json', nest]);
      const jn = JSON.parse(readFileSync(nest, 'utf8'));
      expect(jn.runs[0]).toMatchObject({ method: 'diloco', diloco_momentum: 'nesterov' });
      expect(jn.runs[0].final_val_loss).not.toBe(j.runs.find((r: { method: string; seed: number }) => r.method === 'diloco' && r.seed === 4)!.final_val_loss);
      expect(j.runs[0].final_round_val_loss).toBeUndefined();
      // --round-loss: each replica also scored at its last outer step, the way a volunteer reports.
      const rounds = join(dir, 'round.json');
      await main(['node', 'murmur', 'sim', '-m', 'noloco-async,local', '--learner', 'quadratic', '--time', '60', '--H', '5', '--seeds', '4', '-q', '--round-loss', '--json', rounds]);
      const [noloco, local] = JSON.parse(readFileSync(rounds, 'utf8')).runs;
      expect(noloco.final_val_loss).toBe(j.runs[0].final_val_loss); // training is unchanged
      expect(Number.isFinite(noloco.final_round_val_loss)).toBe(true);
      expect(noloco.final_round_val_loss).not.toBe(noloco.final_val_loss);
      expect(noloco.curve.every((c: { round?: number }) => Number.isFinite(c.round))).toBe(true);
      expect(local.final_round_val_loss).toBeUndefined(); // no outer step, no φ of a round
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
