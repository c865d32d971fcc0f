// `murmur sim`: N replicas in one process on a simulated clock, comparing NoLoCo (ready pool or
// lockstep), DiLoCo, data-parallel and no communication on the wall time volunteers live by.
import { writeFileSync, renameSync, mkdirSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { Command, InvalidArgumentError, Option } from 'commander';
import { METHODS, parseMethod, type Method } from '../sim/config.ts';
import { DATA_MODES, LEARNERS, SPEC_DEFAULTS, checkSpec, prepare, simModel, type SimSpec } from '../sim/setup.ts';
import { runRecord, runsTable, summaryTable, type RunRecord } from '../sim/report.ts';
import { parseSpeeds } from '../sim/speeds.ts';
import { DILOCO_MOMENTA, type DilocoMomentum } from '../train/outer.ts';

const num = (what: string, check: (v: number) => boolean = Number.isFinite) => (s: string) => {
  const v = Number(s);
  if (s.trim() === '' || !check(v)) throw new InvalidArgumentError(`${what}: "${s}" is not valid`);
  return v;
};
const int = (what: string, min = 1) => num(`${what} (an integer >= ${min})`, (v) => Number.isInteger(v) && v >= min);
const pos = (what: string) => num(`${what} (a number > 0)`, (v) => Number.isFinite(v) && v > 0);
const nonneg = (what: string) => num(`${what} (a number >= 0)`, (v) => Number.isFinite(v) && v >= 0);

function listOf<T>(parse: (s: string) => T) {
  return (s: string) => s.split(',').map((x) => x.trim()).filter(Boolean).map(parse);
}

export function register(program: Command): void {
  program
    .command('sim')
    .description('simulate N replicas training together on a simulated clock (NoLoCo, DiLoCo, data-parallel, local)')
    .addOption(new Option('-m, --method <list>', `methods, comma-separated, or "all" (${METHODS.join(', ')})`).default('noloco-async'))
    .option('-n, --replicas <n>', 'replicas', int('replicas'), SPEC_DEFAULTS.replicas)
    .option('--H <n>', 'inner steps per outer step (default: 50 for NoLoCo, 100 for DiLoCo)', int('H'))
    .option('--alpha <a>', 'outer momentum (default 0.5 NoLoCo, 0.3 DiLoCo)', nonneg('alpha'))
    .option('--beta <b>', 'outer learning rate (default 0.7)', pos('beta'))
    .option('--gamma <g>', 'NoLoCo consensus (default 0.7)', nonneg('gamma'))
    .option('--wait <f>', 'noloco-async: wait for a partner up to this fraction of own inner-loop time',
      num('wait (a fraction > 0: with no wait nobody is ever in the pool and every outer step is solo)', (v) => Number.isFinite(v) && v > 0), SPEC_DEFAULTS.wait)
    .addOption(new Option('--diloco-momentum <kind>', 'DiLoCo outer momentum: heavy-ball (the NoLoCo authors\' baseline) or nesterov (Douillard et al.)').choices(DILOCO_MOMENTA).default('heavy-ball'))
    .option('--time <s>', 'simulated-time budget in seconds (default 600 unless --steps)', pos('time'))
    .option('--steps <n>', 'step budget: each replica stops after n inner steps', int('steps'))
    .option('--start-spread <f>', 'replicas start late by a uniform [0, f) of their own inner loop, each round still H steps (real volunteers: 1)', num('start-spread (in [0, 1])', (v) => Number.isFinite(v) && v >= 0 && v <= 1), 0)
    .option('--step-time <s>', 'seconds per inner step at speed 1', pos('step-time'), SPEC_DEFAULTS.stepTime)
    .option('--speeds <spec>', 'speed distribution: uniform:LO:HI, lognormal:SIGMA, equal, or a list 1,2,4', SPEC_DEFAULTS.speeds)
    .option('--jitter <sigma>', 'log-normal spread of each step time around 1/speed', nonneg('jitter'), 0)
    .option('--seeds <list>', 'seeds, comma-separated (one run per seed and method)', listOf(int('seed', 0)), [1])
    .option('--evals <n>', 'evaluations over the run', int('evals'), SPEC_DEFAULTS.evals)
    .option('--latency <s>', 'median one-way message latency, seconds', nonneg('latency'), SPEC_DEFAULTS.network.latency)
    .option('--up <mbit>', 'uplink bandwidth, Mbit/s', pos('up'), SPEC_DEFAULTS.network.upBps / 1e6)
    .option('--net-sigma <s>', 'log-normal spread of message times (0: every message takes the nominal time)', nonneg('net-sigma'), SPEC_DEFAULTS.network.sigma)
    .addOption(new Option('--allreduce <kind>', 'the collective DiLoCo and ddp pay for').choices(['tree', 'ring']).default('tree'))
    .option('--churn <session:offline>', 'replicas leave after ~session s (exponential) and a replacement joins ~offline s later')
    .addOption(new Option('--learner <kind>', 'gpt: the CPU reference model; webgpu: the same model on the WGSL engine (this machine\'s GPU through Dawn, else SwiftShader); quadratic: a toy for fast what-ifs').choices([...LEARNERS]).default('gpt'))
    .addOption(new Option('--data <mode>', 'shared: every replica samples the whole training text; sharded: replica k only the k-th of n contiguous slices').choices([...DATA_MODES]).default('shared'))
    .option('--preset <name>', 'model preset', SPEC_DEFAULTS.preset)
    .option('--d <n>', "model width instead of the preset's", int('d'))
    .option('--layers <n>', "transformer blocks instead of the preset's", int('layers'))
    .option('--heads <n>', "attention heads instead of the preset's", int('heads'))
    .option('--batch <n>', 'sequences per inner step', int('batch'), SPEC_DEFAULTS.batch)
    .option('--seq-len <n>', 'tokens per sequence', int('seq-len'), SPEC_DEFAULTS.seqLen)
    .option('--lr <x>', 'peak inner AdamW learning rate', pos('lr'), SPEC_DEFAULTS.lr)
    .option('--warmup <f>', 'warm-up as a fraction of the budget', nonneg('warmup'), SPEC_DEFAULTS.warmup)
    .option('--val-batches <n>', 'validation batches', int('val-batches'), SPEC_DEFAULTS.valBatches)
    .option('--val-batch <n>', 'sequences per validation batch', int('val-batch'), SPEC_DEFAULTS.valBatch)
    .option('--no-probe', 'NoLoCo: take every pair step unjudged (the probe, docs/design.md section 6.1, is on by default)')
    .option('--round-loss', 'also score each replica at its last outer step (its φ: what a volunteer reports), not only its fast weights mid-loop')
    .option('--json <file>', 'also write every run (summary and curves) to this JSON file')
    .option('-q, --quiet', 'print only the tables')
    .action(async (o) => {
      const specs = buildSpecs(o);
      // Check everything before the first (slow) run: a bad option fails at once, nothing is written.
      for (const s of specs) for (const w of checkSpec(s)) console.warn(`warning (${s.method}): ${w}`);
      const runs: RunRecord[] = [];
      for (const spec of specs) {
        const t0 = performance.now();
        if (!o.quiet) console.log(`\n== ${spec.method}, seed ${spec.seed}`);
        const sim = await prepare(spec);
        let res;
        try {
          if (!o.quiet && runs.length === 0) console.log(`learner: ${sim.factory.describe()}`);
          res = await sim.run((row) => {
            if (!o.quiet) {
              const roundVal = row.meanRoundLoss === undefined ? '' : `  round-val ${row.meanRoundLoss.toFixed(4)}`;
              console.log(`  t=${row.t.toFixed(1).padStart(8)}s  step ${row.meanStep.toFixed(0).padStart(6)}  val ${row.meanLoss.toFixed(4)}${roundVal}  avg-model ${row.avgModelLoss.toFixed(4)}  spread ${row.spread.toExponential(2)}  idle ${(100 * row.idleFraction).toFixed(1)}%  solo ${(100 * row.soloFraction).toFixed(1)}%`);
            }
          });
        } finally {
          sim.dispose();
        }
        runs.push(runRecord(spec, res, (performance.now() - t0) / 1000));
      }
      console.log('\n' + runsTable(runs));
      if (runs.length > 1) console.log('\n' + summaryTable(runs));
      if (o.json) {
        const path = resolve(o.json);
        mkdirSync(dirname(path), { recursive: true });
        writeFileSync(path + '.tmp', JSON.stringify({ specs, runs }, null, 1));
        renameSync(path + '.tmp', path); // never leave a half-written file
        console.log(`\nwrote ${path}`);
      }
    });
}

/** One spec per (method, seed). Exported for tests. */
export function buildSpecs(o: Record<string, any>): SimSpec[] {
  const methods: Method[] = o.method === 'all' ? [...METHODS] : String(o.method).split(',').map((s) => parseMethod(s.trim()));
  parseSpeeds(o.speeds); // fail early with the parser's message
  const shape = Object.fromEntries((['d', 'layers', 'heads'] as const).filter((k) => o[k] !== undefined).map((k) => [k, o[k] as number]));
  const modelChange = Object.keys(shape).length ? { model: shape } : {};
  if (o.learner !== 'quadratic') {
    const model = simModel({ preset: o.preset, ...modelChange });
    if (o.seqLen > model.ctx) throw new Error(`--seq-len ${o.seqLen} exceeds preset ${o.preset}'s context of ${model.ctx}`);
  }
  if (o.time !== undefined && o.steps !== undefined) throw new Error('give either --time or --steps, not both');
  const churn = o.churn === undefined ? null : parseChurn(o.churn);
  const budget = o.steps !== undefined ? { steps: o.steps, time: undefined } : { time: o.time ?? SPEC_DEFAULTS.time };
  const specs: SimSpec[] = [];
  for (const method of methods) {
    for (const seed of o.seeds as number[]) {
      specs.push({
        ...SPEC_DEFAULTS, method, seed, ...budget,
        replicas: o.replicas, H: o.H, alpha: o.alpha, beta: o.beta, gamma: o.gamma, wait: o.wait, dilocoMomentum: o.dilocoMomentum as DilocoMomentum, startSpread: o.startSpread,
        stepTime: o.stepTime, speeds: o.speeds, jitter: o.jitter, evals: o.evals,
        network: { latency: o.latency, upBps: o.up * 1e6, sigma: o.netSigma }, allReduce: o.allreduce, churn,
        learner: o.learner, data: o.data ?? 'shared', preset: o.preset, ...modelChange, batch: o.batch, seqLen: o.seqLen, lr: o.lr, warmup: o.warmup,
        valBatches: o.valBatches, valBatch: o.valBatch, ...(o.probe === false ? { probe: false } : {}), ...(o.roundLoss ? { roundLoss: true } : {}),
      });
    }
  }
  return specs;
}

function parseChurn(s: string): { session: number; offline: number } {
  const m = /^([\d.]+):([\d.]+)$/.exec(String(s));
  const session = m ? Number(m[1]) : Number.NaN, offline = m ? Number(m[2]) : Number.NaN;
  if (!(session > 0 && offline > 0)) throw new Error(`--churn "${s}": expected SESSION:OFFLINE in seconds, both > 0 (e.g. 600:60)`);
  return { session, offline };
}
