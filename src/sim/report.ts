// Turning simulation results into records (the rows of bench/results/sim.json and of
// `murmur sim --json`) and into tables a person can read.
import type { SimResult } from './simulator.ts';
import type { SimSpec } from './setup.ts';

export interface CurvePoint {
  /** Simulated seconds. */
  t: number;
  /** Mean inner steps per replica. */
  step: number;
  /** Mean over replicas of each one's validation loss. */
  loss: number;
  /** Validation loss of the replicas' averaged weights. */
  avg: number;
  spread: number;
  /** Per-replica validation losses (null: slot empty). */
  losses: (number | null)[];
  /** With --round-loss: the mean loss of the replicas' weights at their last outer step (φ). */
  round?: number;
}

export interface RunRecord {
  method: string;
  replicas: number;
  H: number;
  wait: number;
  /** DiLoCo's outer momentum; null for the other methods. */
  diloco_momentum?: 'heavy-ball' | 'nesterov' | null;
  seed: number;
  /** Peak inner learning rate. */
  lr: number;
  /** Mean inner steps per replica at the end. */
  steps: number;
  sim_time: number;
  final_val_loss: number;
  /** With --round-loss (methods with outer steps): the same, of each replica's φ at its last outer step. */
  final_round_val_loss?: number;
  avg_model_val_loss: number;
  final_spread: number;
  idle_fraction: number;
  solo_fraction: number;
  bytes_per_replica: number;
  comm_fraction: number;
  exchanges: number;
  speeds: number[];
  steps_per_replica: number[];
  joins: number;
  leaves: number;
  /**
   * The probe (NoLoCo; docs/design.md section 6.1): on or off, pair steps it judged and
   * rejected, the reports its judges would have sent by code, and its cost per outer round in
   * simulated seconds and as a share of an inner loop.
   */
  probe?: { on: boolean; judged: number; rejected: number; offences: Record<string, number>; seconds_per_outer_round: number; fraction_of_inner_loop: number };
  wall_s: number;
  curve: CurvePoint[];
}

export function runRecord(spec: SimSpec, r: SimResult, wallSeconds: number): RunRecord {
  const f = r.final;
  return {
    method: r.method, replicas: r.replicas, H: usesH(spec) ? r.H : 1, wait: spec.method === 'noloco-async' ? r.wait : 0,
    diloco_momentum: spec.method === 'diloco' ? spec.dilocoMomentum ?? 'heavy-ball' : null,
    seed: r.seed, lr: spec.lr, steps: f.meanStep, sim_time: r.simTime,
    final_val_loss: f.meanLoss, ...(f.meanRoundLoss !== undefined && { final_round_val_loss: f.meanRoundLoss }), avg_model_val_loss: f.avgModelLoss, final_spread: f.spread,
    idle_fraction: f.idleFraction, solo_fraction: f.soloFraction, bytes_per_replica: f.bytesPerReplica,
    comm_fraction: f.commFraction, exchanges: f.exchanges,
    speeds: r.perReplica.map((p) => round(p.speed, 4)),
    steps_per_replica: r.perReplica.map((p) => p.steps),
    joins: r.joins, leaves: r.leaves,
    probe: {
      on: r.probe.on, judged: r.probe.judged, rejected: r.probe.rejected, offences: r.probe.offences,
      seconds_per_outer_round: round(r.probe.secondsPerOuterRound, 4), fraction_of_inner_loop: round(r.probe.fractionOfInnerLoop, 4),
    },
    wall_s: round(wallSeconds, 2),
    curve: r.evals.map((e) => ({
      t: round(e.t, 3), step: round(e.meanStep, 2), loss: e.meanLoss, avg: e.avgModelLoss, spread: e.spread, losses: e.losses,
      ...(e.meanRoundLoss !== undefined && { round: e.meanRoundLoss }),
    })),
  };
}

function usesH(spec: SimSpec): boolean {
  return spec.method !== 'ddp';
}

function round(x: number, d: number): number {
  const k = 10 ** d;
  return Math.round(x * k) / k;
}

export function mean(xs: number[]): number {
  return xs.reduce((a, b) => a + b, 0) / xs.length;
}

export function sd(xs: number[]): number {
  if (xs.length < 2) return 0;
  const m = mean(xs);
  return Math.sqrt(xs.reduce((a, b) => a + (b - m) ** 2, 0) / (xs.length - 1));
}

/** Fixed-width table with a header row. */
export function table(header: string[], rows: string[][]): string {
  const w = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (cells: string[]) => cells.map((c, i) => (i === 0 ? c.padEnd(w[i]) : c.padStart(w[i]))).join('  ');
  return [line(header), w.map((n) => '-'.repeat(n)).join('  '), ...rows.map(line)].join('\n');
}

/** One row per run (with joins and leaves when there was churn). */
export function runsTable(runs: RunRecord[]): string {
  const churn = runs.some((r) => r.joins + r.leaves > 0);
  return table(
    ['method', 'seed', 'lr', 'H', 'steps', 'sim s', 'val loss', 'avg-model', 'spread', 'idle', 'comm', 'solo', 'MB/replica', 'syncs',
      ...(churn ? ['left', 'joined'] : [])],
    runs.map((r) => [
      runLabel(r), String(r.seed), String(r.lr), String(r.H), r.steps.toFixed(0), r.sim_time.toFixed(0),
      r.final_val_loss.toFixed(4), r.avg_model_val_loss.toFixed(4), r.final_spread.toExponential(2),
      pct(r.idle_fraction), pct(r.comm_fraction), pct(r.solo_fraction), (r.bytes_per_replica / 1e6).toFixed(2), String(r.exchanges),
      ...(churn ? [String(r.leaves), String(r.joins)] : []),
    ]),
  );
}

/** Mean (and sd) over seeds per configuration. */
export function summaryTable(runs: RunRecord[]): string {
  const groups = groupRuns(runs);
  return table(
    ['method', 'seeds', 'steps', 'val loss (mean ± sd)', 'avg-model', 'spread', 'idle', 'comm', 'solo', 'MB/replica'],
    groups.map(({ label, runs: g }) => [
      label, String(g.length), mean(g.map((r) => r.steps)).toFixed(0),
      `${mean(g.map((r) => r.final_val_loss)).toFixed(4)} ± ${sd(g.map((r) => r.final_val_loss)).toFixed(4)}`,
      mean(g.map((r) => r.avg_model_val_loss)).toFixed(4), mean(g.map((r) => r.final_spread)).toExponential(2),
      pct(mean(g.map((r) => r.idle_fraction))), pct(mean(g.map((r) => r.comm_fraction))),
      pct(mean(g.map((r) => r.solo_fraction))), (mean(g.map((r) => r.bytes_per_replica)) / 1e6).toFixed(2),
    ]),
  );
}

/** Runs grouped by method (and wait for the ready pool), in first-seen order. */
export function groupRuns(runs: RunRecord[]): { label: string; runs: RunRecord[] }[] {
  const out: { label: string; runs: RunRecord[] }[] = [];
  for (const r of runs) {
    const label = runLabel(r);
    let g = out.find((x) => x.label === label);
    if (!g) out.push((g = { label, runs: [] }));
    g.runs.push(r);
  }
  return out;
}

export function runLabel(r: Pick<RunRecord, 'method' | 'wait' | 'diloco_momentum'>): string {
  if (r.method === 'noloco-async') return `noloco-async (wait ${r.wait})`;
  // Records written before the option existed ran heavy-ball.
  if (r.method === 'diloco') return `diloco (${r.diloco_momentum ?? 'heavy-ball'})`;
  return r.method;
}

const pct = (x: number) => `${(100 * x).toFixed(1)}%`;
