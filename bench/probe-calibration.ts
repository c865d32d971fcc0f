// Probe calibration benchmark (docs/design.md section 6.1): how often the probe refuses an honest
// partner's update, and how soon it reports a steady harm, for each way of setting its noise unit.
// The simulator trains honest swarms on the real micro GPT (the run's data, batch 4, rate 3e-3 on
// the run's schedule, H = 20, bench:swarm's step time; n = 2 and 4 at equal speeds, n = 8 at
// speeds from U[1,4]) with the default judge, and records every exchange each judge saw (its
// solo and paired losses on the probe windows, and how many rounds behind the partner was). The
// recorded exchanges are then replayed through judges that differ only in `spreadHistory`
// (0: the judge before 2026-12-06, the spread of the last `history` differences; 16, 32, 64:
// the spread of that many residuals), side by side on the same exchanges. The replay is open
// loop: what a judge decides does not change what the swarm trains next. Replayed with the
// default settings, it gives back the run's own verdicts; the benchmark checks that.
// The slow CUSUM (slowSlack, slowCap, slowLimit) side by side too: the default judge against the
// same judge with it off (slowLimit Infinity: the judge before 2026-12-07) and with a few other
// settings of it, each one's honest reports split by which sum made them (probe_harm_fast,
// probe_harm_slow; probe_harm_gross: a gross harm reported as evidence).
// Detection: each judge's replay again with a steady harm added to one partner's paired losses
// (every window) from that judge's HARM_FROM-th exchange on, at 0.2, 0.3, 1, 2, 3 and 5 times the honest
// scatter of the excess (the robust spread of (paired − solo) against the median of the 8 before
// it, over the whole trace). Reported: the share of the harmed exchanges refused, and at which of
// them the judge reported the partner, and by which sum (0.2 and 0.3 are under the fast CUSUM's
// slack of 0.5: only the slow one can add them up). In a swarm of two the harmed partner is the only one, so its
// own accepted exchanges are the history it is judged against.
// Prints a table and writes bench/results/probe-calibration.json, after every row (complete:
// false until the last one, so a run cut short keeps what it measured).
// Usage: npm run bench:probe-calibration [-- --steps N] [--seeds 1,2] [--only 2,4] [--out name.json]
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { RUN_VAL_BATCHES } from '../src/data/sampler.ts';
import { DEFAULT_PROBE, ProbeJudge, type ProbeLosses, type ProbeSettings } from '../src/round/probe.ts';
import { SPEC_DEFAULTS, prepare, type SimSpec } from '../src/sim/setup.ts';
import type { ProbeEvent } from '../src/sim/simulator.ts';

const arg = (name: string) => { const i = process.argv.indexOf(name); return i >= 0 ? process.argv[i + 1] : undefined; };
/** Inner steps the fastest replica could train in the simulated time, were it never idle (bench:swarm's volunteers reached 2,000 to 7,000 in 150 s). */
const STEPS = Number(arg('--steps') ?? 8000);
/** Two seeds: docs/design.md section 6.1 quotes the pooled counts of both. */
const SEEDS = (arg('--seeds') ?? '1,2').split(',').map(Number);
const ONLY = arg('--only')?.split(',').map(Number);
const OUT_NAME = arg('--out') ?? 'probe-calibration.json';
/** bench:swarm's measured step time of a CPU volunteer (micro, batch 4), s. */
const STEP_S = 0.0155;
const SETUPS = [{ n: 2, speeds: 'equal' }, { n: 4, speeds: 'equal' }, { n: 8, speeds: 'uniform:1:4' }] as const;
const SPREADS = [0, 16, 32, 64];
const HARM_UNITS = [0.2, 0.3, 1, 2, 3, 5];
/**
 * Slow CUSUM settings replayed at the default spreadHistory beside the default judge: off (the
 * judge before 2026-12-07), and a few that alarm less often on honest noise, should the default
 * alarm more often than the fast CUSUM does.
 */
const SLOW_VARIANTS: readonly { slowSlack: number; slowCap: number; slowLimit: number }[] = [
  { slowSlack: DEFAULT_PROBE.slowSlack, slowCap: DEFAULT_PROBE.slowCap, slowLimit: Infinity },
  { slowSlack: 0.1, slowCap: 2.5, slowLimit: 15 },
  { slowSlack: 0.1, slowCap: 2.5, slowLimit: 20 },
  { slowSlack: 0.15, slowCap: 2.5, slowLimit: 9 },
  { slowSlack: 0.15, slowCap: 2.5, slowLimit: 15 },
  { slowSlack: 0.1, slowCap: 1.5, slowLimit: 11 },
];
/** A judge's exchanges before the harm starts: past a run's fast early phase. */
const HARM_FROM = 100;
const round = (x: number, d: number) => Math.round(x * 10 ** d) / 10 ** d;

interface Seen { partner: string; behind: number | undefined; losses: ProbeLosses; accept: boolean; offence: string | null }

interface Detection {
  harm_units: number; harm: number;
  /** Harmed exchanges replayed (over every judge), and the share refused (solo steps instead). */
  exchanges: number; refused_share: number;
  /** Per judge: at which of its harmed exchanges it reported the partner; null: never. */
  reported_at: (number | null)[];
  /** Per judge: which sum made that report (fast, slow, gross); null: never. */
  reported_by: (Report | null)[];
}
type Report = 'fast' | 'slow' | 'gross';
interface Variant {
  spread_history: number;
  /** The slow CUSUM's settings; slow_limit null: off (Infinity). */
  slow_slack: number; slow_cap: number; slow_limit: number | null;
  default: boolean;
  judged: number; refused: number; refused_rate: number;
  /** Reports among honest partners: CUSUM and proven partners' gross harms (probe-harm), strikes (probe-gross). */
  probe_harm: number; probe_gross: number;
  /** probe_harm by what made it: the fast CUSUM, the slow one, a gross harm reported as evidence. */
  probe_harm_fast: number; probe_harm_slow: number; probe_harm_gross: number;
  detection: Detection[];
}
interface Pooled {
  spread_history: number; slow_slack: number; slow_cap: number; slow_limit: number | null; default: boolean;
  judged: number; refused: number; refused_rate: number; probe_harm: number; probe_gross: number;
  probe_harm_fast: number; probe_harm_slow: number; probe_harm_gross: number;
}
interface Row {
  n: number; speeds: string; seed: number; steps: number; judges: number; judged: number;
  /** The honest scatter of the excess, median over judges. */
  honest_scatter: number;
  /** The run's own verdicts (the default judge, closed loop). */
  run_refused: number; run_offences: Record<string, number>;
  variants: Variant[]; wall_s: number;
}

function median(a: readonly number[]): number {
  const s = [...a].sort((x, y) => x - y);
  const h = s.length >> 1;
  return s.length === 0 ? NaN : s.length % 2 ? s[h]! : (s[h - 1]! + s[h]!) / 2;
}
const mean = (a: readonly number[]) => a.reduce((x, y) => x + y, 0) / a.length;

/** The robust spread of each exchange's (paired − solo) against the median of the 8 before it. */
function scatter(seen: readonly Seen[]): number {
  const d = seen.map((e) => mean(e.losses.paired) - mean(e.losses.solo));
  const r: number[] = [];
  for (let i = 8; i < d.length; i++) r.push(Math.abs(d[i]! - median(d.slice(i - 8, i))));
  return 1.4826 * median(r);
}

/** Which part of the judge made a report, from its detail (src/round/probe.ts). */
function reportOf(offence: { code: string; detail: string }): Report {
  if (offence.code !== 'probe-harm') return 'gross';
  if (/; slow cusum /.test(offence.detail)) return 'slow';
  if (/; cusum /.test(offence.detail)) return 'fast';
  return 'gross';
}

/** One judge's exchanges through a fresh judge with `settings`; a harm added to `harmed`'s paired losses from exchange `from` on. */
function replay(seen: readonly Seen[], settings: Partial<ProbeSettings>, harm?: { partner: string; from: number; by: number }) {
  const j = new ProbeJudge(settings);
  const out = { judged: 0, refused: 0, harm: 0, gross: 0, harmFast: 0, harmSlow: 0, harmGross: 0, harmed: 0, harmedRefused: 0, reportedAt: null as number | null, reportedBy: null as Report | null, verdicts: [] as { accept: boolean; offence: string | null }[] };
  seen.forEach((e, i) => {
    const hit = harm !== undefined && e.partner === harm.partner && i >= harm.from;
    const paired = hit ? e.losses.paired.map((x) => x + harm.by) : e.losses.paired;
    const v = j.judge(e.partner, { solo: e.losses.solo, paired }, { behind: e.behind });
    out.verdicts.push({ accept: v.accept, offence: v.offence?.code ?? null });
    if (hit) {
      out.harmed++;
      if (!v.accept) out.harmedRefused++;
      if (v.offence && out.reportedAt === null) {
        out.reportedAt = out.harmed;
        out.reportedBy = reportOf(v.offence);
      }
      return;
    }
    out.judged++;
    if (!v.accept) out.refused++;
    if (v.offence?.code === 'probe-harm') {
      out.harm++;
      const by = reportOf(v.offence);
      if (by === 'fast') out.harmFast++;
      else if (by === 'slow') out.harmSlow++;
      else out.harmGross++;
    }
    if (v.offence?.code === 'probe-gross') out.gross++;
  });
  return out;
}

async function setup(n: number, speeds: string, seed: number): Promise<Row> {
  const t0 = performance.now();
  // The fastest replica (U[1,4]: a speed of 4) steps in STEP_S and trains up to STEPS steps.
  const fastest = speeds === 'equal' ? 1 : 4;
  const spec: SimSpec = {
    ...SPEC_DEFAULTS, method: 'noloco-async', seed, replicas: n, H: 20, speeds, stepTime: STEP_S * fastest,
    jitter: 0.5, wait: 0.5, startSpread: 1, time: STEPS * STEP_S, evals: 2,
    learner: 'gpt', preset: 'micro', batch: 4, seqLen: 32, lr: 3e-3, schedule: { warmupSteps: 10, totalSteps: 100_000 },
    valBatches: RUN_VAL_BATCHES, valBatch: 4,
  };
  const sim = await prepare(spec);
  const bySlot = new Map<number, Seen[]>();
  sim.onProbe = (e: ProbeEvent) => {
    const list = bySlot.get(e.slot) ?? [];
    bySlot.set(e.slot, list);
    list.push({ partner: e.partner, behind: e.behind, losses: { solo: [...e.losses.solo], paired: [...e.losses.paired] }, accept: e.verdict.accept, offence: e.verdict.offence?.code ?? null });
  };
  let res;
  try {
    res = await sim.run();
  } finally {
    sim.dispose();
  }
  const judges = [...bySlot.values()];
  // Replayed with the default settings, each judge says what it said in the run.
  for (const seen of judges) {
    const again = replay(seen, {}).verdicts;
    seen.forEach((e, i) => {
      if (again[i]!.accept !== e.accept || again[i]!.offence !== e.offence) throw new Error(`replay of exchange ${i} differs from the run: ${JSON.stringify(again[i])} vs ${JSON.stringify({ accept: e.accept, offence: e.offence })}`);
    });
  }
  const unit = median(judges.map(scatter));
  const slowDefault = { slowSlack: DEFAULT_PROBE.slowSlack, slowCap: DEFAULT_PROBE.slowCap, slowLimit: DEFAULT_PROBE.slowLimit };
  const settings = [
    ...SPREADS.map((spreadHistory) => ({ spreadHistory, ...slowDefault })),
    ...SLOW_VARIANTS.map((slow) => ({ spreadHistory: DEFAULT_PROBE.spreadHistory, ...slow })),
  ];
  const variants: Variant[] = settings.map((set) => {
    const honest = judges.map((seen) => replay(seen, set));
    const judged = honest.reduce((a, x) => a + x.judged, 0), refused = honest.reduce((a, x) => a + x.refused, 0);
    const detection = HARM_UNITS.map((k) => {
      const runs = judges.filter((seen) => seen.length > HARM_FROM).map((seen) => replay(seen, set, { partner: seen[HARM_FROM]!.partner, from: HARM_FROM, by: k * unit }));
      const harmed = runs.reduce((a, x) => a + x.harmed, 0);
      return {
        harm_units: k, harm: round(k * unit, 5), exchanges: harmed,
        refused_share: round(runs.reduce((a, x) => a + x.harmedRefused, 0) / Math.max(1, harmed), 4), reported_at: runs.map((x) => x.reportedAt), reported_by: runs.map((x) => x.reportedBy),
      };
    });
    const sum = (f: (x: (typeof honest)[number]) => number) => honest.reduce((a, x) => a + f(x), 0);
    return {
      spread_history: set.spreadHistory, slow_slack: set.slowSlack, slow_cap: set.slowCap, slow_limit: Number.isFinite(set.slowLimit) ? set.slowLimit : null,
      default: set.spreadHistory === DEFAULT_PROBE.spreadHistory && set.slowSlack === slowDefault.slowSlack && set.slowCap === slowDefault.slowCap && set.slowLimit === slowDefault.slowLimit,
      judged, refused, refused_rate: round(refused / Math.max(1, judged), 5),
      probe_harm: sum((x) => x.harm), probe_gross: sum((x) => x.gross), probe_harm_fast: sum((x) => x.harmFast), probe_harm_slow: sum((x) => x.harmSlow), probe_harm_gross: sum((x) => x.harmGross), detection,
    };
  });
  return {
    n, speeds, seed, steps: STEPS, judges: judges.length, judged: res.probe.judged, honest_scatter: round(unit, 5),
    run_refused: res.probe.rejected, run_offences: res.probe.offences, variants, wall_s: round((performance.now() - t0) / 1000, 1),
  };
}

/** A variant's name in the tables: its spreadHistory and slow CUSUM (slack/cap/limit, or off). */
const label = (v: { spread_history: number; slow_slack: number; slow_cap: number; slow_limit: number | null }) =>
  `${v.spread_history} ${v.slow_limit === null ? 'slow off' : `slow ${v.slow_slack}/${v.slow_cap}/${v.slow_limit}`}`;
/** The judge before 2026-12-06 (spreadHistory 0) with today's slow CUSUM: the base the spreads are compared with. */
const isSpreadBase = (v: Variant | Pooled) => v.spread_history === 0;

function table(rows: readonly Row[]): string {
  const head = ['n', 'seed', 'judged', 'scatter', 'judge', 'refused', 'rate', 'vs 0', 'harm', 'fast', 'slow', 'gross', ...HARM_UNITS.map((k) => `${k}u refused/reported`)];
  const body: string[][] = [];
  for (const r of rows) {
    const base = r.variants.find(isSpreadBase)!;
    for (const v of r.variants) {
      body.push([String(r.n), String(r.seed), String(v.judged), r.honest_scatter.toFixed(4), `${label(v)}${v.default ? '*' : ''}`, String(v.refused), `${(100 * v.refused_rate).toFixed(2)}%`,
        base.refused > 0 ? (v.refused / base.refused).toFixed(2) : '-', String(v.probe_harm), String(v.probe_harm_fast), String(v.probe_harm_slow), String(v.probe_gross),
        ...v.detection.map((d) => `${(100 * d.refused_share).toFixed(0)}% ${d.reported_at.filter((x) => x !== null).length}/${d.reported_at.length} med ${median(d.reported_at.filter((x): x is number => x !== null)) || '-'}`)]);
    }
  }
  const w = head.map((h, i) => Math.max(h.length, ...body.map((b) => b[i]!.length)));
  return [head, ...body].map((cells) => cells.map((c, i) => c.padStart(w[i]!)).join('  ')).join('\n');
}

async function main(): Promise<void> {
  console.log(`probe calibration: honest swarms in the simulator on the micro GPT, up to ${STEPS} steps a replica, H = 20, ${cpus().length} cores, load ${loadavg().map((x) => x.toFixed(1)).join(' ')}`);
  const rows: Row[] = [];
  for (const seed of SEEDS) {
    for (const s of SETUPS.filter((x) => !ONLY || ONLY.includes(x.n))) {
      rows.push(await setup(s.n, s.speeds, seed));
      console.log(table(rows.slice(-1)) + `\n  (${rows.at(-1)!.wall_s} s; the run's own offences ${JSON.stringify(rows.at(-1)!.run_offences)})`);
      // Written after every row, so a run cut short keeps the rows it finished (complete: false).
      write(rows, false);
    }
  }
  write(rows, true);
}

/** Pools the rows, prints the summary when `complete`, and writes the JSON. */
function write(rows: readonly Row[], complete: boolean): void {
  // Pooled over the setups: each variant's honest refusals and reports (the variants are in the same order in every row).
  const pooled: Pooled[] = rows[0]!.variants.map((v0, i) => {
    const vs = rows.map((r) => r.variants[i]!);
    const judged = vs.reduce((a, v) => a + v.judged, 0), refused = vs.reduce((a, v) => a + v.refused, 0);
    const sum = (f: (v: Variant) => number) => vs.reduce((a, v) => a + f(v), 0);
    return {
      spread_history: v0.spread_history, slow_slack: v0.slow_slack, slow_cap: v0.slow_cap, slow_limit: v0.slow_limit, default: v0.default,
      judged, refused, refused_rate: round(refused / Math.max(1, judged), 5), probe_harm: sum((v) => v.probe_harm), probe_gross: sum((v) => v.probe_gross),
      probe_harm_fast: sum((v) => v.probe_harm_fast), probe_harm_slow: sum((v) => v.probe_harm_slow), probe_harm_gross: sum((v) => v.probe_harm_gross),
    };
  });
  // Detection by swarm size, over the rows (seeds) of each n: for the judges at the default spreadHistory (the slow CUSUM's variants).
  const detectionByN = [...new Set(rows.map((r) => r.n))].flatMap((n) => rows[0]!.variants.flatMap((v0, i) => v0.spread_history !== DEFAULT_PROBE.spreadHistory ? [] : HARM_UNITS.map((k) => {
    const ds = rows.filter((r) => r.n === n).map((r) => r.variants[i]!.detection.find((d) => d.harm_units === k)!);
    const at = ds.flatMap((d) => d.reported_at), by = ds.flatMap((d) => d.reported_by);
    const reported = at.filter((x): x is number => x !== null);
    const exchanges = ds.reduce((a, d) => a + d.exchanges, 0);
    return {
      n, slow_slack: v0.slow_slack, slow_cap: v0.slow_cap, slow_limit: v0.slow_limit, default: v0.default, harm_units: k, judges: at.length, reported: reported.length,
      reported_slow: by.filter((x) => x === 'slow').length, reported_fast: by.filter((x) => x === 'fast').length,
      median_reported_at: reported.length ? median(reported) : null, exchanges, refused_share: round(ds.reduce((a, d) => a + d.refused_share * d.exchanges, 0) / Math.max(1, exchanges), 4),
    };
  })));
  const base = pooled.find(isSpreadBase)!;
  if (complete) console.log('\n' + table(rows) + '\n\npooled:');
  for (const p of complete ? pooled : []) {
    console.log(`  ${label(p).padEnd(22)}${p.default ? '*' : ' '}  ${p.refused}/${p.judged} refused (${(100 * p.refused_rate).toFixed(2)}%, ${base.refused ? (p.refused / base.refused).toFixed(2) : '-'}× spread 0), ${p.probe_harm} probe-harm (${p.probe_harm_fast} fast, ${p.probe_harm_slow} slow, ${p.probe_harm_gross} gross), ${p.probe_gross} probe-gross`);
  }
  if (complete) console.log('\nreported (judges), median exchange of the report, by n:');
  for (const d of complete ? detectionByN : []) console.log(`  n = ${d.n} ${label({ spread_history: DEFAULT_PROBE.spreadHistory, ...d }).padEnd(22)}${d.default ? '*' : ' '} ${String(d.harm_units).padStart(3)}u: ${d.reported}/${d.judges} (${d.reported_slow} slow, ${d.reported_fast} fast) at ${d.median_reported_at ?? '-'}, ${(100 * d.refused_share).toFixed(1)}% refused`);
  const out = resolve(dirname(fileURLToPath(import.meta.url)), 'results', OUT_NAME);
  mkdirSync(dirname(out), { recursive: true });
  writeFileSync(out, JSON.stringify({
    when: new Date().toISOString(), complete, seeds: SEEDS, cores: cpus().length, steps: STEPS, harm_from: HARM_FROM, default_spread_history: DEFAULT_PROBE.spreadHistory,
    default_slow: { slow_slack: DEFAULT_PROBE.slowSlack, slow_cap: DEFAULT_PROBE.slowCap, slow_limit: DEFAULT_PROBE.slowLimit },
    note: 'honest swarms simulated on the micro GPT with the default judge, every judged exchange recorded and replayed (open loop) through judges differing only in spreadHistory (0: the judge before 2026-12-06) or in the slow CUSUM (slow_limit null: off, the judge before 2026-12-07); refused/probe_harm/probe_gross count honest exchanges, probe_harm split by the sum that reported (fast, slow, gross: a gross harm as evidence); detection adds harm_units × honest_scatter to one partner\'s paired losses from each judge\'s exchange harm_from on: refused_share of those exchanges refused, reported_at = at which of them the judge reported it (null: never), reported_by = which sum; detection_by_n pools a swarm size\'s judges over the seeds (median_reported_at over the judges that reported)',
    pooled, detection_by_n: detectionByN, rows,
  }, null, 2) + '\n');
  console.log(`wrote ${out}${complete ? '' : ` (${rows.length} rows so far)`}`);
}

void main();
