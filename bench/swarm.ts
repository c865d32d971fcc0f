// Swarm benchmark (issue 14): do real volunteers pair? N headless CPU volunteers, each its own
// process running `murmur volunteer --backend cpu --json` exactly as a donor would, train one
// `micro` run against the real coordinator (in this process, 127.0.0.1) and exchange over WebRTC
// (@roamhq/wrtc) on loopback, at equal speeds or speeds drawn from U[1,4] (`--throttle`).
// The window measured starts once every volunteer has finished its first round (all joined and
// training) and lasts --seconds; rounds whose report falls inside it count.
// Beside each row: the same number of inner steps trained alone (local_val_loss), and the
// simulator's prediction for the same setup (sim_*: the same pool rule, speeds, H, measured step
// time, the measured time a paired round takes for its transfer and probe, and start phases
// spread over a loop, as real volunteers start whenever they are ready):
// its pairing on the toy learner, and its validation loss on the real model (sim_val_loss: the
// same micro GPT, batch, learning rate and schedule, read where its replicas have trained as many
// steps on average as the volunteers; --no-sim-loss leaves it out, a few minutes a row).
// Prints a table and writes bench/results/swarm.json. Usage: npm run bench:swarm [-- --quick]
// [--seconds S] [--H N] [--only 2,4] [--batch B --lr X --warmup W] [--out name.json] [--no-sim-loss]
// `--resim` runs no volunteers: it recomputes the simulator's columns for the live rows recorded
// in the results file (after a change to the simulator), printing the old prediction beside the new;
// `--no-checks` leaves the mesh's checks of a partner's payload out of the simulator.
import { fork } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { measuredVal, type RoundLine } from './swarm-rounds.ts';
import { Rng } from '../src/model/rng.ts';
import { trainLocal } from '../src/commands/train.ts';
import { startLocalVolunteers, type LocalVolunteers } from '../src/volunteer/local.ts';
import { SPEC_DEFAULTS, runSpec, specOfRun, type RunShape } from '../src/sim/setup.ts';
import { preset, trainConfig } from '../src/model/config.ts';
import type { EvalRow } from '../src/sim/simulator.ts';
import { startServer } from '../tests/support/coordinator.ts';
import { isSoftOffence } from '../src/protocol/messages.ts';
import { RUN_VAL_BATCHES } from '../src/data/sampler.ts';

const quick = process.argv.includes('--quick');
const arg = (name: string) => { const i = process.argv.indexOf(name); return i >= 0 ? process.argv[i + 1] : undefined; };
const SECONDS = Number(arg('--seconds') ?? (quick ? 40 : 150));
const H = Number(arg('--H') ?? (quick ? 10 : 20));
// The run's batch, LR and warm-up: by default a quick-learning setup; `--batch 2 --lr 6e-4
// --warmup 100 --H 4` is the browser end-to-end test's run (the run defaults but batch and H),
// where rounds are short and a fast peer races through the warm-up alone while a slow one loads.
const BATCH = Number(arg('--batch') ?? 4), LR = Number(arg('--lr') ?? 3e-3), WARMUP = Number(arg('--warmup') ?? 10);
/** Where the JSON goes (bench/results/); another setup than the default keeps its own file. */
const OUT_NAME = arg('--out') ?? 'swarm.json';
const SIM_LOSS = !process.argv.includes('--no-sim-loss');
/** --no-checks: the simulator without the mesh's checks of a partner's payload (SimConfig.checks; before 2026-12-06). */
const SIM_CHECKS = !process.argv.includes('--no-checks');
/**
 * --sim-seeds K: the simulator's loss is the mean of K runs, seeds s..s+K−1 from the run's seed s
 * (the first draws the volunteers' starting weights and data streams; each seed its own
 * starting weights, data streams, pairing and jitter draws), and its spread is recorded: one
 * live run is one draw of the same process, and the gap to it is read against that spread.
 */
const SIM_SEEDS = Number(arg('--sim-seeds') ?? 4);
/** The run's cosine length, in steps (the volunteers' schedule, and the simulator's). */
const TOTAL_STEPS = 100_000;
if (!(Number.isInteger(SIM_SEEDS) && SIM_SEEDS >= 1 && SIM_SEEDS <= 16)) throw new Error(`bench:swarm: --sim-seeds must be an integer from 1 to 16, got ${arg('--sim-seeds')}`);
if (!(BATCH >= 1 && LR > 0 && WARMUP >= 0) || !/^[\w.-]+\.json$/.test(OUT_NAME)) throw new Error(`bench:swarm: bad --batch ${BATCH}, --lr ${LR}, --warmup ${WARMUP} or --out ${OUT_NAME} (a file name ending .json)`);
const SETUPS: { n: number; speeds: 'equal' | 'uniform:1:4' }[] = [
  { n: 2, speeds: 'equal' }, { n: 4, speeds: 'equal' }, { n: 8, speeds: 'uniform:1:4' },
];
const round = (x: number, d: number) => Math.round(x * 10 ** d) / 10 ** d;

interface Row {
  /** When this row was measured (an --only rerun keeps the other rows of the last run). */
  when?: string;
  n: number; speeds: string; speed_list: number[]; H: number; batch: number; lr: number; warmup_steps: number; seconds: number;
  rounds: number; pair_fraction: number; solo_fraction: number; idle_fraction: number; exchanges_per_min: number;
  final_val_loss: number | null; local_val_loss: number | null; mean_steps: number; step_ms: number;
  /** The mean step of the rounds whose losses final_val_loss averages (measuredVal): where
   *  local_val_loss and sim_val_loss are read. Absent in rows recorded before 2026-12-07, which
   *  read them at mean_steps, the mean of the volunteers' last steps. */
  val_step?: number | null;
  /** Each volunteer's last step, and its median loop time (ms, exchange and probe left out): the
   *  speeds it really trained at, beside `speed_list`, the throttles it was given (on a shared
   *  machine the two can differ; the simulator is given speed_list). */
  steps_list?: number[]; loop_ms_list?: number[];
  /** The run's seed: the simulator's first seed and the replica alone's (absent before 2026-12-07: the coordinator's default, RUN_SEED). */
  run_seed?: number;
  /** The simulator's mean validation loss over its replicas at the volunteers' mean step (the real
   *  micro GPT on the same data, batch, rate, schedule, H, speeds and pool rule; null with
   *  --no-sim-loss), and the simulated seconds it took to get there. */
  sim_val_loss: number | null; sim_val_seconds: number | null;
  /** Each seed's loss (sim_val_loss is their mean) and their sample standard deviation; absent
   *  in rows simulated with one seed (before 2026-12-06 evening). */
  sim_val_loss_seeds?: number[]; sim_val_loss_sd?: number | null;
  /** The least mean step of its replicas' φ (EvalRow.meanRoundStep) a seed's simulation reached: at or past mean_steps, or sim_val_loss was not read at the volunteers' step. */
  sim_reached_step?: number | null;
  /** The same simulation's mean loss of its replicas' fast weights (part-way into a loop) there. */
  sim_fast_val_loss: number | null;
  /** The same simulation's probe (pair steps judged and refused, reports by code) and the mesh's
   *  checks there (payloads refused, Δ clipped, φ moved in), over its whole run. */
  sim_probe?: { judged: number; rejected: number; offences: Record<string, number> } | null;
  sim_checks?: { checked: number; refused: number; delta_clipped: number; phi_moved: number; reasons: Record<string, number> } | null;
  /** When the sim_* columns were last recomputed from the recorded live row (`--resim`). */
  resim_when?: string;
  sim_pair_fraction: number; sim_idle_fraction: number; load_avg_1m: number;
  /** Coefficient of variation of a volunteer's loop time (inner loop and evaluation), and the
   *  per-step jitter σ given to the simulator so that its loops vary as much (see below). */
  loop_cv: number; sim_jitter: number; pair_wait_frac: number;
  /** The run's offender reports among these honest volunteers, by reason ("(veto)": the one that parted a pair). */
  offences: Record<string, number>;
  /** The first hard reports (strikes) in full, seconds into the window: what parted a pair, if anything did. */
  strikes?: { s: number; reporter: string; accused: string; reason: string }[];
  /** Mean correlation of two volunteers' loop times at the same moment (the machine's shared
   *  load); the simulator gets the independent part of loop_cv, loop_cv·√(1 − loop_corr). */
  loop_corr: number;
  /** Why rounds were solo (the mesh's reasons), and what the coordinator's pool decided. */
  solo_reasons: Record<string, number>; pool: { pairs: number; solos: number; leftAtOnce: number };
  /** The probe (docs/design.md section 6.1), on in every volunteer: its time per outer round
   *  (solo rounds included, as 0), the pair steps it judged and those it rejected. */
  probe_ms_per_round: number; probe_judged: number; probe_rejected: number;
  /** Medians over paired rounds: the transfer after the pool paired them (the exchange less its
   *  time in the pool) and the probe. The simulator's pair exchanges are set to take as long. */
  exchange_ms: number; paired_probe_ms: number;
}

/** The live run's seed (the coordinator's default, given explicitly: the simulator's first seed and the replica alone's). */
const RUN_SEED = 1337;
/** The run every setup creates. */
const RUN_REQUEST = { dataset: 'moby-dick', preset: 'micro', seed: RUN_SEED, train: { batch: BATCH, H, lr: LR, warmupSteps: WARMUP, totalSteps: TOTAL_STEPS } } as const;

/** A swarm's setup as the simulator is given it. */
interface SimSetup {
  n: number; speeds: number[];
  /** The live run (its model, seed and train config, as the coordinator sent it): what the simulator's replicas train as (specOfRun). */
  run: RunShape;
  /** Seconds a step at the fastest speed, and the per-step jitter σ (see loop_cv). */
  stepTime: number; jitter: number;
  wait: number;
  /** Seconds a paired round spends on the transfer and on the probe (medians, measured). */
  exchangeS: number; probeS: number;
}

/** Relative speeds: all 1, or U[1,4] from a fixed seed. */
function drawSpeeds(n: number, spec: string): number[] {
  if (spec === 'equal') return new Array(n).fill(1);
  const rng = new Rng(14, n);
  return Array.from({ length: n }, () => round(1 + 3 * rng.uniform(), 3));
}

async function swarm(n: number, speedSpec: string): Promise<Row> {
  const s = await startServer();
  const runId = 'swarm';
  const r = await s.c.app.inject({
    method: 'POST', url: '/api/runs', headers: s.admin,
    payload: { id: runId, ...RUN_REQUEST },
  });
  if (r.statusCode !== 201) throw new Error(`creating the run failed: ${r.statusCode} ${r.body}`);
  const created = r.json() as RunShape & { pairWaitFrac: number };
  const wait = created.pairWaitFrac;
  const run: RunShape = { preset: created.preset, seed: created.seed, train: created.train };
  const speeds = drawSpeeds(n, speedSpec);
  const fastest = Math.max(...speeds);
  const rounds: RoundLine[][] = speeds.map(() => []);
  const procs: LocalVolunteers[] = [];
  let started!: () => void;
  const allStarted = new Promise<void>((res) => { started = res; });
  try {
    for (let i = 0; i < n; i++) {
      const p = startLocalVolunteers(s.url, 1, { run: runId, backend: 'cpu', evalEvery: 3, throttle: fastest / speeds[i]!, json: true, output: 'pipe' });
      procs.push(p);
      const child = p.children[0]!;
      let err = '';
      child.stderr!.on('data', (b: Buffer) => { err = (err + b.toString()).slice(-2000); });
      void p.exited.then(([code]) => { if (code !== 0) console.error(`volunteer ${i} exited ${code}: ${err}`); });
      createInterface({ input: child.stdout! }).on('line', (line) => {
        let m: { kind?: string } & Partial<RoundLine>;
        try { m = JSON.parse(line); } catch { return; }
        if (m.kind !== 'round') return;
        rounds[i]!.push(m as RoundLine);
        if (rounds.every((r) => r.length > 0)) started();
      });
    }
    const exited = Promise.all(procs.map((p) => p.exited));
    await Promise.race([allStarted, exited.then(() => { throw new Error('every volunteer exited before training'); })]);
    const t0 = Date.now();
    const firsts = rounds.map((r) => r.length);
    await new Promise((res) => setTimeout(res, SECONDS * 1000));
    const t1 = Date.now();
    const load = loadavg()[0]!;
    const poolStats = (await s.c.app.inject({ method: 'GET', url: `/api/runs/${runId}/peers` })).json().pairs as { pairs: number; solos: number; leftAtOnce: number };
    // Honest volunteers report each other too (the probe judges noisy losses): each report is a
    // strike, and VETO_AFTER strikes of one pair part the two for the run.
    const offences: Record<string, number> = {};
    const strikes: NonNullable<Row['strikes']> = [];
    for (const e of s.c.events.list(runId, 0, Date.now(), 10_000)) {
      if (e.kind !== 'peer-offender') continue;
      const d = e.data as { reason: string; vetoed: boolean };
      const key = `${d.reason.split(':')[0]}${d.vetoed ? ' (veto)' : ''}`;
      offences[key] = (offences[key] ?? 0) + 1;
      if (!isSoftOffence(d.reason) && strikes.length < 10) strikes.push({ s: round((e.t - t0) / 1000, 1), reporter: e.peerId ?? '?', accused: (e.data as { accused: string }).accused, reason: d.reason.slice(0, 240) });
    }
    await Promise.all(procs.map((p) => p.stop()));
    const wallMs = t1 - t0;
    // Rounds that began inside the window: the first round of each (bootstrap) is left out.
    for (let i = 0; i < n; i++) rounds[i] = rounds[i]!.slice(firsts[i]).filter((e) => e.report.time <= t1);
    const all = rounds.flat();
    const paired = all.filter((e) => e.exchange.outcome === 'paired').length;
    const pooledMs = all.reduce((a, e) => a + e.exchange.pairMs, 0);
    const judged = all.filter((e) => typeof e.report.probeMs === 'number');
    const probeMs = judged.reduce((a, e) => a + e.report.probeMs!, 0);
    // What a paired round spends together after the pool let it go: the transfer (the exchange
    // less its time in the pool) and the probe. The simulator's network model is set to take
    // as long (its default loopback link took 6 ms, where volunteers took about 0.1 s).
    const pairedRounds = all.filter((e) => e.exchange.outcome === 'paired');
    const exchangeMs = median(pairedRounds.map((e) => Math.max(0, e.exchange.elapsedMs - e.exchange.pairMs)));
    const pairedProbeMs = median(pairedRounds.map((e) => e.report.probeMs ?? 0));
    const soloReasons: Record<string, number> = {};
    for (const e of all) if (e.exchange.outcome !== 'paired') soloReasons[e.exchange.reason ?? '?'] = (soloReasons[e.exchange.reason ?? '?'] ?? 0) + 1;
    const val = measuredVal(rounds);
    const steps = rounds.map((rs) => rs.at(-1)?.report.step ?? 0);
    const meanSteps = steps.reduce((a, b) => a + b, 0) / n;
    // Compute time per inner step at the fastest speed: the fastest volunteers' rounds minus
    // their exchange time, over H.
    const fast = rounds.filter((_, i) => speeds[i] === fastest).flat();
    const loopMs = loopTimes(fast, run);
    const stepMs = loopMs.length > 0 ? loopMs.reduce((a, b) => a + b, 0) / loopMs.length / H : NaN;
    // The simulator and the replica alone are read where the volunteers' losses were measured.
    const valStep = val?.step ?? meanSteps;
    const local = await localLoss(Math.max(1, Math.round(valStep)), run);
    // How much each volunteer's loop time varies round to round (a loaded machine): the
    // simulator's per-step jitter is set so that its loops of H steps vary as much as the part
    // of the measured variation that is each volunteer's own. Rounds that measured the
    // validation loss (every third) are left out: that time is the same fixed extra for every
    // volunteer. Most of the rest is shared: when the machine is busy every volunteer slows at
    // once (loop times of two volunteers at the same moment correlate by 0.5-0.7 on 2 cores),
    // which moves nobody's phase against the others'. The simulator draws every replica's steps
    // independently, so it gets only the independent part, cv·√(1 − corr); given the whole cv it
    // predicted 0.72 paired where 4 volunteers paired 0.91.
    const series = rounds.map((rs) => rs.filter((e) => e.report.valLoss === null)
      .map((e) => ({ t: e.report.time, ms: loopTimes([e], run)[0] })).filter((x): x is { t: number; ms: number } => x.ms !== undefined));
    const cvs = series.filter((xs) => xs.length >= 3).map((xs) => cv(xs.map((x) => x.ms)));
    const loopCv = cvs.length > 0 ? cvs.reduce((a, b) => a + b, 0) / cvs.length : 0.1 / Math.sqrt(H);
    const loopCorr = sharedFraction(series);
    const indepCv = loopCv * Math.sqrt(1 - loopCorr);
    // The simulator draws each step's time as stepTime × exp(σ·N(0,1)): a loop of H such steps
    // has CV √((e^σ² − 1)/H) and mean stepTime × e^(σ²/2), so σ = √ln(1 + H·cv²) and stepTime
    // is divided by e^(σ²/2) to keep the measured mean.
    const jitter = Math.sqrt(Math.log(1 + H * indepCv * indepCv));
    const setup: SimSetup = { n, speeds, run, stepTime: stepMs / 1000 / Math.exp((jitter * jitter) / 2), jitter, wait, exchangeS: exchangeMs / 1000, probeS: pairedProbeMs / 1000 };
    const sim = await simulate(setup);
    const idle = pooledMs / (n * wallMs);
    const simLoss = SIM_LOSS ? await simulateLoss(setup, valStep, idle) : null;
    return {
      n, speeds: speedSpec, speed_list: speeds, H, batch: BATCH, lr: LR, warmup_steps: WARMUP, seconds: round(wallMs / 1000, 1), rounds: all.length,
      pair_fraction: round(all.length ? paired / all.length : 0, 4), solo_fraction: round(all.length ? 1 - paired / all.length : 0, 4),
      idle_fraction: round(idle, 4), exchanges_per_min: round(paired / 2 / (wallMs / 60_000), 2),
      final_val_loss: val && round(val.loss, 4), val_step: val && round(val.step, 1), local_val_loss: local,
      mean_steps: round(meanSteps, 1), step_ms: round(stepMs, 1),
      steps_list: steps, loop_ms_list: rounds.map((rs) => round(median(loopTimes(rs, run)), 1)), run_seed: run.seed,
      sim_val_loss: simLoss && round(simLoss.loss, 4), sim_val_loss_seeds: simLoss?.seeds, sim_val_loss_sd: simLoss?.sd == null ? null : round(simLoss.sd, 4), sim_reached_step: simLoss && round(simLoss.reached, 1), sim_fast_val_loss: simLoss && round(simLoss.fastLoss, 4), sim_val_seconds: simLoss && round(simLoss.t, 1),
      sim_probe: simLoss?.probe ?? null, sim_checks: simLoss?.checks ?? null,
      sim_pair_fraction: round(sim.pair, 4), sim_idle_fraction: round(sim.idle, 4), load_avg_1m: round(load, 2),
      exchange_ms: round(exchangeMs, 1), paired_probe_ms: round(pairedProbeMs, 1),
      loop_cv: round(loopCv, 3), loop_corr: round(loopCorr, 3), sim_jitter: round(jitter, 3), pair_wait_frac: wait,
      solo_reasons: soloReasons, pool: poolStats, offences, strikes,
      probe_ms_per_round: round(all.length ? probeMs / all.length : 0, 2), probe_judged: judged.length,
      probe_rejected: judged.filter((e) => e.report.probeRejected === true).length,
    };
  } finally {
    await Promise.all(procs.map((p) => p.stop(1_000)));
    await s.close();
  }
}

/**
 * One replica alone for `steps` inner steps on the run's schedule: what the swarm's replicas would
 * reach without gossip. From the run's seed: the starting weights and data stream of its first
 * volunteer (stream 0), where it used seed 1, weights and data no volunteer had (before 2026-12-07).
 */
async function localLoss(steps: number, run: RunShape): Promise<number | null> {
  const t = run.train;
  let last: number | null = null;
  for await (const p of trainLocal({ preset: run.preset, steps, batch: t.batch, seqLen: t.seqLen, lr: t.lr, evalEvery: steps, evalBatches: RUN_VAL_BATCHES, seed: run.seed, schedule: { warmupSteps: t.warmupSteps, totalSteps: t.totalSteps } })) last = p.valLoss;
  return last === null ? null : round(last, 4);
}

/** Each round's loop time, ms: the round's whole time (from tokens/s) less its exchange. */
function loopTimes(rs: RoundLine[], run: RunShape): number[] {
  const tokens = run.train.H * run.train.batch * run.train.seqLen;
  return rs.map((e) => (e.report.tokensPerS > 0 ? (tokens * 1000) / e.report.tokensPerS - e.exchange.elapsedMs - (e.report.probeMs ?? 0) : NaN)).filter(Number.isFinite);
}

/**
 * Mean over pairs of volunteers of the correlation between one's loop times and the other's loop
 * nearest in time, clamped to [0, 1): how much of the variation all share. 0 with one volunteer.
 */
function sharedFraction(series: { t: number; ms: number }[][]): number {
  const cs: number[] = [];
  for (let i = 0; i < series.length; i++) for (let j = i + 1; j < series.length; j++) {
    const a = series[i]!, b = series[j]!;
    if (a.length < 3 || b.length < 3) continue;
    let k = 0;
    const xs: number[] = [], ys: number[] = [];
    for (const p of a) {
      while (k + 1 < b.length && Math.abs(b[k + 1]!.t - p.t) <= Math.abs(b[k]!.t - p.t)) k++;
      xs.push(p.ms); ys.push(b[k]!.ms);
    }
    const mx = xs.reduce((s, x) => s + x, 0) / xs.length, my = ys.reduce((s, y) => s + y, 0) / ys.length;
    let sxy = 0, sxx = 0, syy = 0;
    for (let m = 0; m < xs.length; m++) { sxy += (xs[m]! - mx) * (ys[m]! - my); sxx += (xs[m]! - mx) ** 2; syy += (ys[m]! - my) ** 2; }
    if (sxx > 0 && syy > 0) cs.push(sxy / Math.sqrt(sxx * syy));
  }
  const c = cs.length > 0 ? cs.reduce((s, x) => s + x, 0) / cs.length : 0;
  return Math.min(0.95, Math.max(0, c));
}

function median(xs: number[]): number {
  if (xs.length === 0) return 0;
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
}

function cv(xs: number[]): number {
  const m = xs.reduce((a, b) => a + b, 0) / xs.length;
  const v = xs.reduce((a, b) => a + (b - m) ** 2, 0) / (xs.length - 1);
  return m > 0 ? Math.sqrt(v) / m : 0;
}

/**
 * The simulator on the same setup (the toy learner: only the pairing figures are used). The toy
 * has no probe, so each pair exchange takes the measured transfer and probe together.
 */
async function simulate(x: SimSetup): Promise<{ pair: number; idle: number }> {
  if (!(x.stepTime > 0)) return { pair: NaN, idle: NaN };
  const res = await runSpec({
    ...SPEC_DEFAULTS, method: 'noloco-async', seed: 1, replicas: x.n, H: x.run.train.H, speeds: x.speeds.join(','), stepTime: x.stepTime * Math.max(...x.speeds),
    jitter: x.jitter, wait: x.wait, startSpread: 1, time: SECONDS, learner: 'quadratic', network: exchangeNetwork(x.exchangeS + x.probeS),
  });
  return { pair: 1 - res.final.soloFraction, idle: res.final.idleFraction };
}

/** A link on which a pair exchange takes `seconds`, every time: the measured median. */
function exchangeNetwork(seconds: number): { latency: number; upBps: number; sigma: number } {
  return { latency: Math.max(0.001, seconds), upBps: 1e12, sigma: 0 };
}

/**
 * The simulator's validation loss for the same setup on the real model: the micro GPT on the
 * CPU reference, from the run's data with the volunteers' validation windows (RUN_VAL_BATCHES
 * batches of the run's batch), the run's rate and schedule on each replica's own step, the same
 * speeds, H, pool rule and probe, scored as volunteers score themselves: each replica's weights
 * at the end of its last outer round (φ; `roundLoss`); the loss of its fast weights part-way into
 * a loop, what the simulator's own tables report, is kept beside it. It runs past the
 * volunteers' mean step (at the speed they trained, less the time they spent in the pool) and
 * reads the mean losses at that step. null when the live run gave no step time.
 */
interface SimLoss {
  /** The seeds' mean, each seed's, and their sample standard deviation (null with one seed). */
  loss: number; seeds: number[]; sd: number | null; fastLoss: number; t: number;
  /** The mean step of φ each seed's last evaluation reached (past the volunteers' mean step, or the run was extended). */
  reached: number;
  /** Summed over the seeds. */
  probe: NonNullable<Row['sim_probe']>; checks: NonNullable<Row['sim_checks']>;
}

async function simulateLoss(x: SimSetup, meanSteps: number, idle: number): Promise<SimLoss | null> {
  if (!(x.stepTime > 0 && meanSteps > 0)) return null;
  // The seeds run side by side, each its own process (one core each).
  const seeds = Array.from({ length: SIM_SEEDS }, (_, i) => x.run.seed + i);
  const runs: SimLossRun[] = new Array(seeds.length);
  let next = 0;
  await Promise.all(Array.from({ length: Math.min(seeds.length, cpus().length) }, async () => {
    while (next < seeds.length) { const k = next++; runs[k] = await simulateLossJob({ x, meanSteps, idle, seed: seeds[k]! }); }
  }));
  const mean = (f: (r: SimLossRun) => number) => runs.reduce((a, r) => a + f(r), 0) / runs.length;
  const loss = mean((r) => r.loss);
  const sd = runs.length > 1 ? Math.sqrt(runs.reduce((a, r) => a + (r.loss - loss) ** 2, 0) / (runs.length - 1)) : null;
  const add = (a: Record<string, number>, b: Record<string, number>) => { for (const [k, v] of Object.entries(b)) a[k] = (a[k] ?? 0) + v; return a; };
  return {
    loss, seeds: runs.map((r) => round(r.loss, 4)), sd, fastLoss: mean((r) => r.fastLoss), t: mean((r) => r.t), reached: Math.min(...runs.map((r) => r.reached)),
    probe: runs.reduce((a, r) => ({ judged: a.judged + r.probe.judged, rejected: a.rejected + r.probe.rejected, offences: add(a.offences, r.probe.offences) }),
      { judged: 0, rejected: 0, offences: {} as Record<string, number> }),
    checks: runs.reduce((a, r) => ({ checked: a.checked + r.checks.checked, refused: a.refused + r.checks.refused, delta_clipped: a.delta_clipped + r.checks.delta_clipped,
      phi_moved: a.phi_moved + r.checks.phi_moved, reasons: add(a.reasons, r.checks.reasons) }),
    { checked: 0, refused: 0, delta_clipped: 0, phi_moved: 0, reasons: {} as Record<string, number> }),
  };
}

type SimLossRun = Omit<SimLoss, 'seeds' | 'sd'>;
interface SimLossJob { x: SimSetup; meanSteps: number; idle: number; seed: number }

/** One seed of simulateLoss in a child process (this script with --sim-job and the same flags). */
function simulateLossJob(job: SimLossJob): Promise<SimLossRun> {
  return new Promise((resolve, reject) => {
    const child = fork(fileURLToPath(import.meta.url), [...process.argv.slice(2).filter((a) => a !== '--resim'), '--sim-job', JSON.stringify(job)], { execArgv: process.execArgv, stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    let result: SimLossRun | null = null;
    child.on('message', (m) => { result = m as SimLossRun; });
    child.on('error', reject);
    child.on('exit', (code) => (result ? resolve(result) : reject(new Error(`the simulator's seed ${job.seed} exited ${code} with no result`))));
  });
}

/**
 * One seed of simulateLoss. The simulated time is the volunteers' mean step at the replicas'
 * mean pace (a step's mean time is stepTime × e^(σ²/2) with jitter σ, its idle share and each
 * pair step's probe on top), with room to spare; a run that still ends short of that step is run
 * again for longer: its last evaluation is not the loss at the volunteers' step (it read n = 8's
 * 2.098 at step 1,997 where the volunteers stood at 2,450, before 2026-12-06 evening).
 */
async function simulateLossSeed({ x, meanSteps, idle, seed }: SimLossJob): Promise<SimLossRun> {
  const { n, speeds, stepTime } = x;
  const fastest = Math.max(...speeds);
  const stepsPerS = speeds.reduce((a, v) => a + 1 / (((stepTime * fastest) / v) * Math.exp((x.jitter * x.jitter) / 2) + x.probeS / x.run.train.H), 0) / n;
  let time = (1.25 * meanSteps) / stepsPerS / Math.max(0.5, 1 - idle);
  for (let attempt = 0; ; attempt++) {
    const res = await runSpec({
      // The run's model, H, outer rule, batch, rate, schedule, AdamW and validation windows.
      ...SPEC_DEFAULTS, method: 'noloco-async', ...specOfRun(x.run), seed, replicas: n, speeds: speeds.join(','), stepTime: stepTime * fastest,
      jitter: x.jitter, wait: x.wait, startSpread: 1, time, evals: 24, learner: 'gpt',
      // This simulator runs the probe and charges each the volunteers' measured median (they probe
      // at full speed, throttled or not; before 2026-12-07 it charged 2 × PROBE_WINDOWS modelled
      // forward passes at each replica's speed): the link takes the transfer only.
      network: exchangeNetwork(x.exchangeS), probeTime: x.probeS, roundLoss: true, checks: SIM_CHECKS,
    });
    // Each loss at the volunteers' mean step, between the two evaluations around it: the loss of
    // the replicas' φ at the mean step those φ stand at (their last outer step's, as a
    // volunteer's report gives it; before 2026-12-07 it was read at the fast weights' mean step,
    // up to H steps further on), the fast weights' loss at theirs.
    const reached = res.evals.at(-1)!.meanRoundStep!;
    if (reached < meanSteps) {
      if (attempt >= 2) throw new Error(`the simulator (n = ${n}, seed ${seed}) reached mean step ${reached.toFixed(0)} in ${time.toFixed(0)} s, short of the volunteers' ${meanSteps}`);
      time *= 1.2 * (meanSteps / Math.max(1, reached));
      continue;
    }
    const phi = atStep(res.evals, meanSteps, (e) => e.meanRoundStep!), fast = atStep(res.evals, meanSteps, (e) => e.meanStep);
    return {
      loss: phi((e) => e.meanRoundLoss!), fastLoss: fast((e) => e.meanLoss), t: phi((e) => e.t), reached,
      probe: { judged: res.probe.judged, rejected: res.probe.rejected, offences: res.probe.offences },
      checks: { checked: res.checks.checked, refused: res.checks.refused, delta_clipped: res.checks.deltaClipped, phi_moved: res.checks.phiMoved, reasons: res.checks.reasons },
    };
  }
}

/** A figure of the evaluations at `step` of `stepOf`, linear between the two around it (the first evaluation's before it). */
function atStep(evals: EvalRow[], step: number, stepOf: (e: EvalRow) => number): (value: (e: EvalRow) => number) => number {
  const at = evals.findIndex((e) => stepOf(e) >= step);
  if (at < 0) throw new Error(`no evaluation at or past step ${step}`);
  const [a, b] = at === 0 ? [evals[0]!, evals[0]!] : [evals[at - 1]!, evals[at]!];
  const f = stepOf(b) > stepOf(a) ? (step - stepOf(a)) / (stepOf(b) - stepOf(a)) : 0;
  return (value) => value(a) + f * (value(b) - value(a));
}

function table(rows: Row[]): string {
  const head = ['n', 'speeds', 'H', 's', 'rounds', 'paired', 'sim paired', 'idle', 'sim idle', 'exch/min', 'val', 'sim val', 'local val', 'loop cv', 'shared', 'load', 'probe ms/round', 'paired ms', 'rejected'];
  const body = rows.map((r) => [String(r.n), r.speeds, String(r.H), r.seconds.toFixed(0), String(r.rounds), r.pair_fraction.toFixed(3), r.sim_pair_fraction.toFixed(3),
    r.idle_fraction.toFixed(3), r.sim_idle_fraction.toFixed(3), r.exchanges_per_min.toFixed(1), r.final_val_loss?.toFixed(3) ?? '-', r.sim_val_loss?.toFixed(3) ?? '-', r.local_val_loss?.toFixed(3) ?? '-', r.loop_cv.toFixed(2), r.loop_corr.toFixed(2), r.load_avg_1m.toFixed(1),
    r.probe_ms_per_round.toFixed(1), r.exchange_ms === undefined ? '-' : `${r.exchange_ms.toFixed(0)}+${r.paired_probe_ms.toFixed(0)}`, `${r.probe_rejected}/${r.probe_judged}`]);
  const w = head.map((h, i) => Math.max(h.length, ...body.map((b) => b[i]!.length)));
  return [head, ...body].map((cells) => cells.map((c, i) => c.padStart(w[i]!)).join('  ')).join('\n');
}

/** The simulator's setup for a recorded live row, as `swarm` built it from the measurements. */
function recordedSetup(r: Row): SimSetup {
  // The run as the coordinator made it from RUN_REQUEST (DEFAULT_TRAIN, the preset's ctx, the
  // row's overrides); rows before 2026-12-07 ran on the coordinator's default seed, RUN_SEED.
  const run: RunShape = { preset: 'micro', seed: r.run_seed ?? RUN_SEED, train: trainConfig({ batch: r.batch, H: r.H, lr: r.lr, warmupSteps: r.warmup_steps, totalSteps: TOTAL_STEPS }, preset('micro')) };
  return {
    n: r.n, speeds: r.speed_list, run, stepTime: r.step_ms / 1000 / Math.exp((r.sim_jitter * r.sim_jitter) / 2), jitter: r.sim_jitter,
    wait: r.pair_wait_frac, exchangeS: r.exchange_ms / 1000, probeS: r.paired_probe_ms / 1000,
  };
}

/**
 * --resim: the simulator's columns again for the live rows recorded in the results file, with no
 * volunteers run: a change to the simulator measured against the same live runs. Prints each
 * row's live figures beside the recorded and the new predictions, and rewrites the sim columns.
 */
async function resim(): Promise<void> {
  const out = join(dirname(fileURLToPath(import.meta.url)), 'results', OUT_NAME);
  const file = JSON.parse(readFileSync(out, 'utf8')) as { rows: Row[] } & Record<string, unknown>;
  const only = arg('--only');
  const when = new Date().toISOString();
  const lines = [['n', 'val', 'sim val was', 'sim val now', 'sim sd', 'paired', 'sim paired was', 'now', 'idle', 'sim idle was', 'now', 'refused', 'sim refused now', 'sim checks refused', 'Δ clipped', 'φ moved']];
  for (const r of file.rows.filter((x) => !only || only.split(',').includes(String(x.n)))) {
    if (r.exchange_ms === undefined) throw new Error(`row n = ${r.n} has no exchange_ms: recorded before the exchange's time was measured; rerun it live`);
    const x = recordedSetup(r);
    const sim = await simulate(x);
    const loss = SIM_LOSS ? await simulateLoss(x, r.val_step ?? r.mean_steps, r.idle_fraction) : null;
    const f = (v: number | null | undefined) => (v == null ? '-' : v.toFixed(3));
    lines.push([String(r.n), f(r.final_val_loss), f(r.sim_val_loss), f(loss?.loss), f(loss?.sd), f(r.pair_fraction), f(r.sim_pair_fraction), f(sim.pair), f(r.idle_fraction), f(r.sim_idle_fraction), f(sim.idle),
      `${r.probe_rejected}/${r.probe_judged}`, loss ? `${loss.probe.rejected}/${loss.probe.judged}` : '-', loss ? `${loss.checks.refused}/${loss.checks.checked}` : '-',
      loss ? String(loss.checks.delta_clipped) : '-', loss ? String(loss.checks.phi_moved) : '-']);
    console.log(lines.slice(-1)[0]!.join('  '));
    Object.assign(r, {
      sim_pair_fraction: round(sim.pair, 4), sim_idle_fraction: round(sim.idle, 4), resim_when: when,
      ...(loss && { sim_val_loss: round(loss.loss, 4), sim_val_loss_seeds: loss.seeds, sim_val_loss_sd: loss.sd == null ? null : round(loss.sd, 4), sim_reached_step: round(loss.reached, 1), sim_fast_val_loss: round(loss.fastLoss, 4), sim_val_seconds: round(loss.t, 1), sim_probe: loss.probe, sim_checks: loss.checks }),
    });
  }
  const w = lines[0]!.map((_, i) => Math.max(...lines.map((l) => l[i]!.length)));
  console.log('\n' + lines.map((l) => l.map((c, i) => c.padStart(w[i]!)).join('  ')).join('\n'));
  writeFileSync(out, JSON.stringify(file, null, 2) + '\n');
  console.log(`wrote ${out}`);
}

async function main(): Promise<void> {
  const job = arg('--sim-job');
  if (job !== undefined) { const r = await simulateLossSeed(JSON.parse(job) as SimLossJob); process.send!(r, () => process.exit(0)); return; }
  if (process.argv.includes('--resim')) { await resim(); process.exit(0); }
  console.log(`swarm benchmark: ${quick ? 'quick, ' : ''}${SECONDS} s per setup, micro, H=${H}, batch ${BATCH}, lr ${LR}, warm-up ${WARMUP} steps, each CPU volunteer its own murmur volunteer process, ${cpus().length} cores, load ${loadavg().map((x) => x.toFixed(1)).join(' ')}`);
  const rows: Row[] = [];
  const only = arg('--only');
  for (const s of SETUPS.filter((x) => !only || only.split(',').includes(String(x.n)))) {
    rows.push(await swarm(s.n, s.speeds));
    console.log(table(rows.slice(-1)));
    console.log(`  solo reasons ${JSON.stringify(rows.at(-1)!.solo_reasons)}, coordinator pool ${JSON.stringify(rows.at(-1)!.pool)}, offender reports ${JSON.stringify(rows.at(-1)!.offences)}`);
    for (const x of rows.at(-1)!.strikes ?? []) console.log(`  strike at ${x.s} s: ${x.reporter} reported ${x.accused}: ${x.reason}`);
  }
  console.log('\n' + table(rows));
  const out = join(dirname(fileURLToPath(import.meta.url)), 'results', OUT_NAME);
  mkdirSync(dirname(out), { recursive: true });
  // --only reruns some setups: the other rows of the last full run stay, each with its own `when`.
  const when = new Date().toISOString();
  for (const r of rows) r.when = when;
  if (only && existsSync(out)) {
    const kept = (JSON.parse(readFileSync(out, 'utf8')) as { rows?: Row[] }).rows ?? [];
    rows.push(...kept.filter((k) => !rows.some((r) => r.n === k.n)));
    rows.sort((a, b) => a.n - b.n);
  }
  writeFileSync(out, JSON.stringify({
    when, quick, cores: cpus().length,
    note: 'each volunteer is its own `murmur volunteer --backend cpu` process (all share this machine\'s cores); the window starts once every volunteer finished its first round; idle = time in the ready pool / wall time; final_val_loss = mean of each volunteer\'s last measured validation loss (every 3 rounds), val_step = the mean step of the rounds that measured them; local_val_loss = one replica trained alone for val_step steps on the run\'s schedule; sim_val_loss = the simulator on the real micro GPT (same data, batch, rate, schedule, H, speeds, pool rule and probe), its replicas\' mean validation loss of φ where their φ stand at val_step on average; all three on the same validation windows (RUN_VAL_BATCHES batches of the run\'s batch)',
    rows,
  }, null, 2) + '\n');
  console.log(`wrote ${out}`);
  process.exit(0);
}

void main();
