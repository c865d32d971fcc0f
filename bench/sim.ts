// npm run bench:sim [-- --quick] [--workers N] [--lr X | --lrs X,Y,...] [--time S] [--seeds N]
//                    [--d N] [--layers N] [--heads N] [--data shared|sharded]
//                    [--learner gpt|webgpu] [--preset NAME] [--batch N] [--seq-len N]
//                    [--tag NAME] [--out DIR] [--replot] [--from A.json,B.json,...]
//   full:    bench/results/sim.json + sim-*.svg   (3 seeds x 600 simulated s; < 45 min on 2 cores)
//   --quick: bench/results/sim-quick.json + svgs (2 seeds x 120 simulated s; < 5 min on 2 cores)
//   --lrs:   every method at every rate; each is judged and plotted at its own best rate
//   --d/--layers/--heads: a wider or deeper model than micro (cost grows with its size)
//   --from:  no runs here: the benchmark's tables, plots and claims from `murmur sim --json` files
//            whose runs have exactly this setup (a long budget split over processes or machines)
//   --learner webgpu: every replica on the WGSL engine (Dawn in Node): with a GPU, presets the CPU
//            reference cannot reach in time (e.g. --preset tiny --batch 8 --seq-len 128)
//
// NoLoCo (ready pool and lockstep), DiLoCo, data-parallel AdamW and no communication, side by
// side on the simulated wall clock: 8 replicas with speeds drawn from U[1,4], the same simulated
// time for every method, the NoLoCo paper's hyper-parameters, several seeds. Also Monte-Carlo
// sync times of tree / ring all-reduce vs a pair exchange for n = 2..1024.
// Writes the JSON and SVG plots next to it, and prints the tables and whether each claim of
// issue 4 holds on this run (it reports; it does not assert). `npm run bench:bundle` packs it as
// plain JavaScript for a machine with more cores (scripts/device-run.sh).
import { Worker } from 'node:worker_threads';
import { mkdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import os from 'node:os';
import { METHODS, methodDefaults } from '../src/sim/config.ts';
import { DATA_MODES, LEARNERS, SPEC_DEFAULTS, simModel, type DataMode, type LearnerKind, type SimSpec } from '../src/sim/setup.ts';
import { groupRuns, mean, runLabel, runsTable, sd, summaryTable, table, type RunRecord } from '../src/sim/report.ts';
import { linePlot, type Series } from '../src/sim/svg.ts';
import { DEFAULT_SYNC_TRIALS, HOME_LINK, syncTable, type SyncRow } from '../src/train/network.ts';
import { buildLayout } from '../src/model/layout.ts';
import { pickVulkanDrivers } from '../src/gpu/node-gpu.ts';
import { preset } from '../src/model/config.ts';
import { atomicWrite, gitCommit } from './provenance.ts';
import { flagValue } from './args.ts';

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, '..');
const args = process.argv.slice(2);
const quick = args.includes('--quick');
const arg = flagValue;
const workers = Number(arg('--workers') ?? Math.min(2, os.availableParallelism()));
if (!(Number.isInteger(workers) && workers >= 1)) throw new Error(`--workers must be a positive integer, got ${arg('--workers')}`);
// --lr runs the same comparison at another common inner rate; --tag names its output files
// (sim-TAG.json, sim-TAG-*.svg) so it does not overwrite the main result.
const LR = Number(arg('--lr') ?? 2e-3);
if (!(LR > 0)) throw new Error(`--lr must be a positive number, got ${arg('--lr')}`);
// --lrs a,b,c runs every method at each inner rate and judges each method at its own best rate
// (lowest mean final loss over the seeds), the way a tuned baseline is reported.
if (arg('--lr') !== undefined && arg('--lrs') !== undefined) throw new Error('give --lr or --lrs, not both');
const LRS = (arg('--lrs') ?? String(LR)).split(',').map((x) => Number(x));
for (const x of LRS) if (!(x > 0)) throw new Error(`--lrs must be positive numbers separated by commas, got ${arg('--lrs')}`);
if (new Set(LRS).size !== LRS.length) throw new Error(`--lrs lists a rate twice: ${arg('--lrs')}`);
// --time S and --seeds N override the simulated budget and the number of seeds (1..N).
const TIME = Number(arg('--time') ?? (quick ? 120 : 600));
if (!(TIME > 0)) throw new Error(`--time must be a positive number of simulated seconds, got ${arg('--time')}`);
// --d N / --layers N / --heads N widen or deepen the micro preset (the averaging methods' gain
// over local training grows with the model's size; see README).
const MODEL: NonNullable<SimSpec['model']> = {};
for (const k of ['d', 'layers', 'heads'] as const) {
  const v = arg(`--${k}`);
  if (v !== undefined) {
    MODEL[k] = Number(v);
    if (!(Number.isInteger(MODEL[k]) && MODEL[k]! >= 1)) throw new Error(`--${k} must be a positive integer, got ${v}`);
  }
}
const NSEEDS = Number(arg('--seeds') ?? (quick ? 2 : 3));
if (!(Number.isInteger(NSEEDS) && NSEEDS >= 1)) throw new Error(`--seeds must be a positive integer, got ${arg('--seeds')}`);
// --data sharded gives replica k only the k-th slice of the training text (see SimSpec.data).
const DATA = (arg('--data') ?? 'shared') as DataMode;
if (!DATA_MODES.includes(DATA)) throw new Error(`--data must be ${DATA_MODES.join(' or ')}, got ${DATA}`);
// --learner webgpu runs the replicas on the WGSL engine; --preset/--batch/--seq-len size the run for it.
const LEARNER = (arg('--learner') ?? 'gpt') as LearnerKind;
if (!LEARNERS.includes(LEARNER) || LEARNER === 'quadratic') throw new Error(`--learner must be gpt or webgpu, got ${LEARNER}`);
const PRESET = arg('--preset') ?? 'micro';
const posInt = (name: string, dflt: number) => {
  const v = Number(arg(name) ?? dflt);
  if (!(Number.isInteger(v) && v >= 1)) throw new Error(`${name} must be a positive integer, got ${arg(name)}`);
  return v;
};
const BATCH = posInt('--batch', 2);
const SEQ_LEN = posInt('--seq-len', 32);
// The worker threads inherit the GPU drivers chosen here: only the main thread can set them.
if (LEARNER === 'webgpu') pickVulkanDrivers();
// --quick writes sim-quick.* so a smoke run never overwrites the committed full result.
const TAG = arg('--tag') ?? (quick ? 'quick' : undefined);
if (TAG !== undefined && !/^[\w.-]+$/.test(TAG)) throw new Error(`--tag "${TAG}": use letters, digits, dot, dash or underscore`);
const stem = TAG ? `sim-${TAG}` : 'sim';
// bench/results/sim.json is the committed full result: another setup must name its own files.
const FROM = arg('--from')?.split(',');
const changed = ['--from', '--lr', '--lrs', '--time', '--seeds', '--d', '--layers', '--heads', '--data', '--learner', '--preset', '--batch', '--seq-len'].filter((o) => args.includes(o));
if (!TAG && changed.length && !args.includes('--replot')) throw new Error(`${changed.join(', ')} change the setup: add --tag NAME so bench/results/sim.json is not overwritten`);
// --out DIR writes the results elsewhere (default bench/results).
const outDir = arg('--out') ?? join(here, 'results');
// Bundled into one file (scripts/bundle-bench.mjs, to run where only Node is installed) the worker
// is the bundled sim-worker.mjs next to it, and needs no TypeScript loader.
const bundled = import.meta.url.endsWith('.mjs');

// ---- the setup, and why ------------------------------------------------------------------------
// The CPU reference runs at roughly 1 GFLOPS, so the model is the `micro` preset (35K parameters)
// with 2 x 32 tokens per step: ~8-15 ms a step on one busy core. One step takes 1 s of simulated
// time at speed 1 (the issue's unit: replica i's step takes 1/speed_i). A budget of 600 simulated
// seconds gives the barrier methods ~900 steps (~18 NoLoCo / ~9 DiLoCo rounds) and the ready
// pool ~1400 steps per replica; 3 seeds x 5 methods is ~75K inner steps on the CPU.
// The common inner rate 2e-3 is the better of {2e-3, 6e-3} for both baselines (data-parallel,
// which the papers tune on, and local), over 3 seeds; every method uses it. The rate matters:
// the methods that average local progress gain from 6e-3 (more gradient noise to average away)
// while local and ddp lose (`--lr 6e-3 --tag lr6e-3`, bench/results/sim-lr6e-3.json).
// --quick: 2 seeds of 120 s, enough to check the machinery and the direction of the results.
const SEEDS = Array.from({ length: NSEEDS }, (_, i) => i + 1);
const EVALS = quick ? 4 : 10;
const base: Omit<SimSpec, 'method' | 'seed'> = {
  ...SPEC_DEFAULTS,
  replicas: 8,
  speeds: 'uniform:1:4',
  stepTime: 1,
  time: TIME,
  evals: EVALS,
  learner: LEARNER,
  preset: PRESET,
  batch: BATCH,
  seqLen: SEQ_LEN,
  lr: LRS[0],
  ...(Object.keys(MODEL).length ? { model: MODEL } : {}),
  data: DATA,
  warmup: 0.05,
  valBatches: 4,
  valBatch: 16,
  network: HOME_LINK,
  allReduce: 'tree',
};

function specs(): SimSpec[] {
  const out: SimSpec[] = [];
  for (const lr of LRS) {
    for (const seed of SEEDS) {
      for (const method of METHODS) {
        const d = methodDefaults(method);
        out.push({ ...base, method, seed, lr, H: d.H, alpha: d.outer.momentum, beta: d.outer.lr, gamma: d.outer.consensus, wait: 0.3 });
      }
    }
  }
  // Longest first (the ready pool and local run the most steps), so two workers finish together.
  const cost: Record<string, number> = { 'noloco-async': 5, local: 5, 'noloco-lockstep': 3, diloco: 3, ddp: 1 };
  return out.sort((a, b) => cost[b.method] - cost[a.method]);
}

async function runAll(list: SimSpec[]): Promise<RunRecord[]> {
  const register = pathToFileURL(join(root, 'scripts', 'node-register.mjs')).href;
  const results: RunRecord[] = new Array(list.length);
  let next = 0, done = 0;
  const t0 = performance.now();
  await Promise.all(Array.from({ length: Math.min(workers, list.length) }, () => new Promise<void>((resolve, reject) => {
    const w = bundled
      ? new Worker(new URL('./sim-worker.mjs', import.meta.url))
      : new Worker(new URL('./sim-worker.ts', import.meta.url), { execArgv: ['--import', register] });
    const feed = () => {
      if (next >= list.length) { void w.terminate(); resolve(); return; }
      const id = next++;
      w.postMessage({ id, spec: list[id] });
    };
    w.on('message', (m: { id: number; record?: RunRecord; error?: string }) => {
      if (m.error) { void w.terminate(); reject(new Error(`run ${list[m.id].method} seed ${list[m.id].seed} failed: ${m.error}`)); return; }
      results[m.id] = m.record!;
      done++;
      const r = m.record!;
      console.log(`  [${done}/${list.length}] ${runLabel(r).padEnd(24)}${LRS.length > 1 ? ` lr ${r.lr}` : ''} seed ${r.seed}  val ${r.final_val_loss.toFixed(4)}  steps ${r.steps.toFixed(0).padStart(5)}  idle ${(100 * r.idle_fraction).toFixed(1)}%  (${r.wall_s.toFixed(0)} s; ${((performance.now() - t0) / 1000).toFixed(0)} s elapsed)`);
      feed();
    });
    w.on('error', reject);
    feed();
  })));
  return results;
}

// ---- the rate grid -----------------------------------------------------------------------------

/** Each method's best inner rate: the lowest mean final loss over seeds (with one rate, that one). */
function bestRates(runs: RunRecord[]): Map<string, number> {
  const losses = new Map<string, Map<number, number[]>>();
  for (const r of runs) {
    const byLr = losses.get(r.method) ?? new Map<number, number[]>();
    losses.set(r.method, byLr);
    byLr.set(r.lr, [...(byLr.get(r.lr) ?? []), r.final_val_loss]);
  }
  const best = new Map<string, number>();
  for (const [method, byLr] of losses) {
    // A rate that diverged (NaN or infinite loss) is never the best.
    const score = (l: number[]) => { const m = mean(l); return Number.isFinite(m) ? m : Infinity; };
    const [lr] = [...byLr].map(([x, l]) => [x, score(l)] as const).sort((a, b) => a[1] - b[1])[0];
    best.set(method, lr);
  }
  return best;
}

/** Mean final loss over seeds for every method at every rate, the best marked with *. */
function rateTable(runs: RunRecord[], best: Map<string, number>): string {
  return table(['method', ...LRS.map((lr) => `lr ${lr}`)], METHODS.map((m) => [m, ...LRS.map((lr) => {
    const g = runs.filter((r) => r.method === m && r.lr === lr).map((r) => r.final_val_loss);
    return g.length ? `${mean(g).toFixed(4)}${best.get(m) === lr ? '*' : ' '}` : '-';
  })]));
}

// ---- plots ------------------------------------------------------------------------------------

function curveSeries(runs: RunRecord[], x: 't' | 'step'): Series[] {
  return groupRuns(runs).map(({ label, runs: g }) => {
    const n = Math.min(...g.map((r) => r.curve.length));
    const idx = Array.from({ length: n }, (_, i) => i);
    const at = (i: number) => g.map((r) => r.curve[i]);
    return {
      label,
      x: idx.map((i) => mean(at(i).map((p) => p[x]))),
      y: idx.map((i) => mean(at(i).map((p) => p.loss))),
      lo: idx.map((i) => Math.min(...at(i).map((p) => p.loss))),
      hi: idx.map((i) => Math.max(...at(i).map((p) => p.loss))),
    };
  });
}

function writePlots(runs: RunRecord[], sync: (SyncRow & { bytes: number })[]): string[] {
  const files: [string, string][] = [];
  const byTime = curveSeries(runs, 't');
  const yAll = byTime.flatMap((s) => s.y.slice(1)); // the shared starting loss squashes the rest
  const yRange: [number, number] = [Math.min(...byTime.flatMap((s) => s.lo!.slice(1))) - 0.05, Math.max(...yAll) + 0.05];
  const seeds = `${SEEDS.length} seeds, band = min..max`;
  files.push([`${stem}-loss-time.svg`, linePlot({
    title: `Validation loss vs simulated time: 8 replicas, speeds U[1,4] (${seeds})`,
    xLabel: 'simulated seconds', yLabel: 'mean validation loss over replicas', series: byTime, yRange,
  })]);
  files.push([`${stem}-loss-step.svg`, linePlot({
    title: `Validation loss vs inner steps per replica (${seeds})`,
    xLabel: 'mean inner steps per replica', yLabel: 'mean validation loss over replicas', series: curveSeries(runs, 'step'), yRange,
  })]);
  files.push([`${stem}-sync.svg`, linePlot({
    title: `Modelled sync time vs replicas (${(sync[0].bytes / 1e3).toFixed(0)} KB tensor, 20 Mbit/s up, 50 ms)`,
    xLabel: 'replicas n', yLabel: 'seconds (mean of Monte-Carlo draws)', logX: true, logY: true, xTicks: sync.map((r) => r.n),
    series: [
      { label: 'tree all-reduce', x: sync.map((r) => r.n), y: sync.map((r) => r.allreduce_s) },
      { label: 'ring all-reduce', x: sync.map((r) => r.n), y: sync.map((r) => r.ring_s) },
      { label: 'pair exchange', x: sync.map((r) => r.n), y: sync.map((r) => r.pair_s) },
    ],
  })]);
  for (const [name, svg] of files) atomicWrite(join(outDir, name), svg);
  return files.map(([n]) => n);
}

// ---- the claims of issue 4, checked on this run ----------------------------------------------

function claims(runs: RunRecord[], sync: SyncRow[]): string[] {
  const g = new Map(groupRuns(runs).map(({ runs: r }) => [r[0].method, r]));
  const loss = (m: string) => mean(g.get(m)!.map((r) => r.final_val_loss));
  const f = (x: number) => x.toFixed(4);
  const verdict = (ok: boolean) => (ok ? 'holds' : 'DOES NOT HOLD');
  const a = loss('noloco-async'), l = loss('noloco-lockstep'), d = loss('diloco'), p = loss('ddp'), z = loss('local');
  const asyncRuns = g.get('noloco-async')!;
  const idle = mean(asyncRuns.map((r) => r.idle_fraction)), solo = mean(asyncRuns.map((r) => r.solo_fraction));
  const maxIdle = Math.max(...asyncRuns.map((r) => r.idle_fraction)), maxSolo = Math.max(...asyncRuns.map((r) => r.solo_fraction));
  const row256 = sync.find((r) => r.n === 256)!;
  const grows = sync.every((r, i) => i === 0 || r.ratio > sync[i - 1].ratio);
  const others = ['noloco-async', 'noloco-lockstep', 'diloco', 'ddp'].filter((m) => loss(m) <= z);
  const barrierIdle = ['noloco-lockstep', 'diloco', 'ddp'].map((m) => `${m} ${(100 * mean(g.get(m)!.map((r) => r.idle_fraction))).toFixed(1)}%`).join(', ');
  const steps = (m: string) => mean(g.get(m)!.map((r) => r.steps));
  return [
    `noloco-async < noloco-lockstep: ${f(a)} vs ${f(l)} (by ${f(l - a)} nats): ${verdict(a < l)}`,
    `noloco-async < diloco: ${f(a)} vs ${f(d)} (by ${f(d - a)} nats): ${verdict(a < d)}`,
    `local is worst: local ${f(z)}; methods at or below it: ${others.length === 4 ? 'all four' : others.join(', ') || 'none'}: ${verdict(others.length === 4)}`,
    `ddp (all-reduce charged every step) ${f(p)} vs noloco-async ${f(a)}: ddp ${p < a ? 'better' : 'worse'} by ${f(Math.abs(p - a))} nats, with ${steps('ddp').toFixed(0)} steps vs ${steps('noloco-async').toFixed(0)}`,
    `noloco-async idle ${(100 * idle).toFixed(1)}% (max ${(100 * maxIdle).toFixed(1)}%) <= 8%: ${verdict(maxIdle <= 0.08)}; solo ${(100 * solo).toFixed(1)}% (max ${(100 * maxSolo).toFixed(1)}%) <= 10%: ${verdict(maxSolo <= 0.1)}`,
    `barrier idle: ${barrierIdle}`,
    `noloco-async ran ${(steps('noloco-async') / steps('noloco-lockstep')).toFixed(2)}x the inner steps of noloco-lockstep and ${(steps('noloco-async') / steps('diloco')).toFixed(2)}x those of diloco`,
    `tree all-reduce / pair at n=256: ${row256.ratio.toFixed(1)}x >= 5x: ${verdict(row256.ratio >= 5)}; grows with n: ${verdict(grows)} (log2 n = 8)`,
  ];
}

/**
 * The runs of `murmur sim --json` files ({specs, runs}) that make up this benchmark: every spec
 * must be one of `wanted` (this setup) up to the number of evaluations, which does not change
 * training, and every wanted run must be there once.
 */
function collectRuns(files: string[], wanted: SimSpec[]): RunRecord[] {
  const key = (s: SimSpec) => `${s.method} seed ${s.seed} lr ${s.lr}`;
  const byKey = new Map(wanted.map((s) => [key(s), s]));
  const found = new Map<string, RunRecord>();
  for (const f of files) {
    const j = JSON.parse(readFileSync(f, 'utf8')) as { specs?: SimSpec[]; runs?: RunRecord[] };
    const runs = j.runs;
    if (!Array.isArray(j.specs) || !Array.isArray(runs) || j.specs.length !== runs.length) throw new Error(`--from ${f}: not a murmur sim --json file (specs and runs side by side)`);
    j.specs.forEach((spec, i) => {
      const want = byKey.get(key(spec));
      if (!want) throw new Error(`--from ${f}: run ${i} (${key(spec)}) is not part of this setup (methods ${METHODS.join(', ')}, seeds ${SEEDS.join(',')}, lr ${LRS.join(',')})`);
      const d = methodDefaults(spec.method);
      // Unset outer hyper-parameters are the method's defaults; the evaluation count does not matter.
      const norm = (x: SimSpec): Record<string, unknown> => ({ ...x, evals: 0, H: x.H ?? d.H, alpha: x.alpha ?? d.outer.momentum, beta: x.beta ?? d.outer.lr, gamma: x.gamma ?? d.outer.consensus, steps: x.steps ?? null, model: x.model ?? null });
      const got = norm(spec), exp = norm(want);
      const diff = Object.keys({ ...got, ...exp }).filter((k) => canonical(got[k]) !== canonical(exp[k]));
      if (diff.length) throw new Error(`--from ${f}: run ${i} (${key(spec)}) differs from this setup in ${diff.map((k) => `${k} (${canonical(got[k])}, wanted ${canonical(exp[k])})`).join(', ')}`);
      if (found.has(key(spec))) throw new Error(`--from ${f}: run ${key(spec)} appears twice`);
      found.set(key(spec), runs[i]);
    });
  }
  const missing = wanted.filter((s) => !found.has(key(s))).map(key);
  if (missing.length) throw new Error(`--from: ${missing.length} run(s) of this setup missing: ${missing.join('; ')}`);
  console.log(`  ${found.size} runs read from ${files.join(', ')} (none run here)`);
  return [...found.values()];
}

/** JSON with every object's keys sorted: equal values give equal strings. */
function canonical(v: unknown): string {
  return JSON.stringify(v, (_k, x) => (x && typeof x === 'object' && !Array.isArray(x) ? Object.fromEntries(Object.entries(x).sort(([a], [b]) => a.localeCompare(b))) : x));
}

async function main(): Promise<void> {
  if (args.includes('--replot')) {
    // Re-draw the figures from an existing sim.json (e.g. after a change to the plot code).
    const j = JSON.parse(readFileSync(join(outDir, `${stem}.json`), 'utf8'));
    SEEDS.splice(0, SEEDS.length, ...j.setup.seeds);
    const best: Record<string, number> | undefined = j.best_lr;
    const runs = (j.runs as RunRecord[]).filter((r) => !best || r.lr === best[r.method]);
    console.log(`re-drew ${writePlots(runs, j.sync).join(', ')} from bench/results/${stem}.json`);
    return;
  }
  const t0 = performance.now();
  const commit = gitCommit(); // before the run: the code the results come from
  mkdirSync(outDir, { recursive: true });
  const simulated = simModel(base);
  const layout = buildLayout(simulated);
  const bytes = 4 * layout.total;
  const list = specs();
  console.log(`bench:sim ${quick ? '--quick' : '(full)'}: ${list.length} runs on ${workers} worker thread(s)`);
  console.log(`  model ${base.preset}${base.model ? ` with ${JSON.stringify(base.model)}` : ''} (L${simulated.layers} d${simulated.d}, ${layout.params} params, ${(bytes / 1e3).toFixed(1)} KB per tensor on the wire), batch ${base.batch}x${base.seqLen}, on ${LEARNER === 'webgpu' ? 'the WGSL engine (WebGPU)' : 'the CPU reference'}, inner AdamW lr ${LRS.join(', ')}${LRS.length > 1 ? ' (each method judged at its best)' : ''} (warm-up ${base.warmup * 100}% then cosine on the clock)`);
  console.log(`  8 replicas, speeds ${base.speeds}, ${base.stepTime} s per step at speed 1, ${TIME} simulated s for every method, seeds ${SEEDS.join(',')}`);
  console.log(`  network: ${HOME_LINK.upBps / 1e6} Mbit/s up, ${HOME_LINK.latency * 1e3} ms, log-normal sigma ${HOME_LINK.sigma}; DiLoCo and ddp pay a ${base.allReduce} all-reduce`);
  console.log(`  NoLoCo H=50 alpha=0.5 beta=gamma=0.7 (ready-pool wait 0.3 of own loop time); DiLoCo H=100 alpha=0.3 beta=0.7`);
  if (LEARNER === 'gpt') {
    console.log('  why: the CPU reference runs ~1 GFLOPS on a shared core, so a 35K-parameter model with 64 tokens a step (~10 ms);');
    console.log(`  ${TIME} simulated s gives barrier methods ~${Math.round(TIME * 1.5)} steps and the ready pool ~${Math.round(TIME * 2.3)} per replica within the time limit.`);
  }
  if (LRS.length === 1) {
    console.log(`  inner lr ${LRS[0]} for every method (2e-3, the default, is the better of {2e-3, 6e-3} for ddp and local;`);
    console.log('  --lrs 2e-3,6e-3 judges each method at its own best rate).');
  }
  console.log('');

  const syncT0 = performance.now();
  const ns = [2, 4, 8, 16, 32, 64, 128, 256, 512, 1024];
  const trials = quick ? { tree: 200, pair: 2000, ring: (n: number) => (n <= 64 ? 100 : n <= 256 ? 30 : 5) } : DEFAULT_SYNC_TRIALS;
  const sync = syncTable(ns, bytes, HOME_LINK, 1, trials).map((r) => ({ ...r, bytes }));
  const tinyBytes = 4 * buildLayout(preset('tiny')).total;
  const syncTiny = syncTable(ns, tinyBytes, HOME_LINK, 1, trials).map((r) => ({ ...r, bytes: tinyBytes }));
  const syncSeconds = (performance.now() - syncT0) / 1000;

  const runs = FROM ? collectRuns(FROM, list) : await runAll(list);
  runs.sort((a, b) => METHODS.indexOf(a.method as never) - METHODS.indexOf(b.method as never) || a.seed - b.seed);
  // With a rate grid every method is plotted and judged at its own best rate.
  const best = bestRates(runs);
  const tuned = runs.filter((r) => r.lr === best.get(r.method));
  const plots = writePlots(tuned, sync);
  const verdicts = claims(tuned, sync);
  const wall = (performance.now() - t0) / 1000;
  const probe = probeCost(runs);
  const result = {
    generated: new Date().toISOString(),
    quick,
    wall_s: Math.round(wall),
    // With --from the runs were made elsewhere: their files, and the seconds they took in all.
    ...(FROM ? { from: FROM, runs_wall_s: Math.round(runs.reduce((a, r) => a + r.wall_s, 0)) } : {}),
    machine: { cpus: os.cpus().length, model: os.cpus()[0]?.model, node: process.version, workers, loadavg: os.loadavg() },
    commit,
    setup: { ...base, lrs: LRS, network: HOME_LINK, methods: METHODS, seeds: SEEDS, H: { noloco: 50, diloco: 100 }, wait: 0.3 },
    // Every run, each with its lr; the plots, the summary and the claims use each method's best_lr.
    best_lr: Object.fromEntries(best),
    runs,
    sync: sync.map(({ n, allreduce_s, ring_s, pair_s, ratio, ring_ratio, trials: t, bytes: b }) => ({ n, allreduce_s, pair_s, ratio, ring_s, ring_ratio, trials: t, bytes: b })),
    sync_tiny: syncTiny,
    claims: verdicts,
    // The defence every NoLoCo run ran with (docs/design.md section 6.1): its cost per outer round.
    probe,
  };
  atomicWrite(join(outDir, `${stem}.json`), JSON.stringify(result, null, 1) + '\n');

  console.log('\nEvery run:\n' + runsTable(runs));
  for (const [m, p] of Object.entries(probe)) {
    console.log(`probe (${m}): ${p.on ? 'on' : 'off'}, ${p.judged} pair steps judged, ${p.rejected} rejected (${(100 * p.rejected_fraction).toFixed(2)}%), ` +
      `${p.seconds_per_outer_round.toFixed(3)} simulated s per outer round = ${(100 * p.fraction_of_inner_loop).toFixed(1)}% of an inner loop`);
  }
  if (LRS.length > 1) console.log('\nMean final validation loss over seeds per inner rate (* = the method\'s best, used below):\n' + rateTable(runs, best));
  console.log(`\nMean over seeds${LRS.length > 1 ? ', each method at its best rate' : ''}:\n` + summaryTable(tuned));
  const syncRows = (rows: (SyncRow & { bytes: number })[]) => table(['n', 'tree s', 'ring s', 'pair s', 'tree/pair', 'ring/pair', 'log2 n'],
    rows.map((r) => [String(r.n), r.allreduce_s.toFixed(3), r.ring_s.toFixed(3), r.pair_s.toFixed(3), r.ratio.toFixed(1), r.ring_ratio.toFixed(1), Math.log2(r.n).toFixed(0)]));
  console.log(`\nModelled sync time, ${(bytes / 1e3).toFixed(1)} KB per tensor (the simulated model; all-reduce moves delta, the pair moves phi and delta):\n` + syncRows(sync));
  console.log(`\nThe same for the tiny preset (${(tinyBytes / 1e6).toFixed(2)} MB per tensor):\n` + syncRows(syncTiny));
  console.log('\nClaims (issue 4) on this run:\n' + verdicts.map((v) => '  - ' + v).join('\n'));
  const spread = groupRuns(tuned).map(({ label, runs: g }) => `${label} ${sd(g.map((r) => r.final_val_loss)).toFixed(4)}`).join(', ');
  console.log(`\nSeed-to-seed sd of the final loss: ${spread}`);
  const shown = relative(process.cwd(), outDir) || '.';
  console.log(`\nwrote ${join(shown, stem + '.json')} and ${plots.map((p) => join(shown, p)).join(', ')} in ${wall.toFixed(0)} s (sync tables ${syncSeconds.toFixed(1)} s)`);
}

main().catch((e) => { console.error(`bench:sim failed: ${(e as Error).message}`); process.exit(1); });

/** The probe's figures per NoLoCo method over all its runs (other methods have no pair steps to judge). */
function probeCost(runs: RunRecord[]): Record<string, { on: boolean; judged: number; rejected: number; rejected_fraction: number; seconds_per_outer_round: number; fraction_of_inner_loop: number }> {
  const out: ReturnType<typeof probeCost> = {};
  for (const m of ['noloco-async', 'noloco-lockstep']) {
    const g = runs.filter((r) => r.method === m && r.probe);
    if (g.length === 0) continue;
    const judged = g.reduce((a, r) => a + r.probe!.judged, 0), rejected = g.reduce((a, r) => a + r.probe!.rejected, 0);
    out[m] = {
      on: g.every((r) => r.probe!.on), judged, rejected, rejected_fraction: judged > 0 ? rejected / judged : 0,
      seconds_per_outer_round: g.reduce((a, r) => a + r.probe!.seconds_per_outer_round, 0) / g.length,
      fraction_of_inner_loop: g.reduce((a, r) => a + r.probe!.fraction_of_inner_loop, 0) / g.length,
    };
  }
  return out;
}
