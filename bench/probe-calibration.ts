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
// Detection: each judge's replay again with a steady harm added to one partner's paired losses
// (every window) from that judge's HARM_FROM-th exchange on, at 1, 2, 3 and 5 times the honest
// scatter of the excess (the robust spread of (paired − solo) against the median of the 8 before
// it, over the whole trace). Reported: the share of the harmed exchanges refused, and at which of
// them the judge reported the partner. In a swarm of two the harmed partner is the only one, so its
// own accepted exchanges are the history it is judged against.
// Prints a table and writes bench/results/probe-calibration.json.
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
const SEEDS = (arg('--seeds') ?? '1').split(',').map(Number);
const ONLY = arg('--only')?.split(',').map(Number);
const OUT_NAME = arg('--out') ?? 'probe-calibration.json';
/** bench:swarm's measured step time of a CPU volunteer (micro, batch 4), s. */
const STEP_S = 0.0155;
const SETUPS = [{ n: 2, speeds: 'equal' }, { n: 4, speeds: 'equal' }, { n: 8, speeds: 'uniform:1:4' }] as const;
const SPREADS = [0, 16, 32, 64];
const HARM_UNITS = [1, 2, 3, 5];
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
}
interface Variant {
  spread_history: number; default: boolean;
  judged: number; refused: number; refused_rate: number;
  /** Reports among honest partners: CUSUM and proven partners' gross harms (probe-harm), strikes (probe-gross). */
  probe_harm: number; probe_gross: number;
  detection: Detection[];
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

/** One judge's exchanges through a fresh judge with `settings`; a harm added to `harmed`'s paired losses from exchange `from` on. */
function replay(seen: readonly Seen[], settings: Partial<ProbeSettings>, harm?: { partner: string; from: number; by: number }) {
  const j = new ProbeJudge(settings);
  const out = { judged: 0, refused: 0, harm: 0, gross: 0, harmed: 0, harmedRefused: 0, reportedAt: null as number | null, verdicts: [] as { accept: boolean; offence: string | null }[] };
  seen.forEach((e, i) => {
    const hit = harm !== undefined && e.partner === harm.partner && i >= harm.from;
    const paired = hit ? e.losses.paired.map((x) => x + harm.by) : e.losses.paired;
    const v = j.judge(e.partner, { solo: e.losses.solo, paired }, { behind: e.behind });
    out.verdicts.push({ accept: v.accept, offence: v.offence?.code ?? null });
    if (hit) {
      out.harmed++;
      if (!v.accept) out.harmedRefused++;
      if (v.offence && out.reportedAt === null) out.reportedAt = out.harmed;
      return;
    }
    out.judged++;
    if (!v.accept) out.refused++;
    if (v.offence?.code === 'probe-harm') out.harm++;
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
  const variants: Variant[] = SPREADS.map((spreadHistory) => {
    const honest = judges.map((seen) => replay(seen, { spreadHistory }));
    const judged = honest.reduce((a, x) => a + x.judged, 0), refused = honest.reduce((a, x) => a + x.refused, 0);
    const detection = HARM_UNITS.map((k) => {
      const runs = judges.filter((seen) => seen.length > HARM_FROM).map((seen) => replay(seen, { spreadHistory }, { partner: seen[HARM_FROM]!.partner, from: HARM_FROM, by: k * unit }));
      const harmed = runs.reduce((a, x) => a + x.harmed, 0);
      return {
        harm_units: k, harm: round(k * unit, 5), exchanges: harmed,
        refused_share: round(runs.reduce((a, x) => a + x.harmedRefused, 0) / Math.max(1, harmed), 4), reported_at: runs.map((x) => x.reportedAt),
      };
    });
    return {
      spread_history: spreadHistory, default: spreadHistory === DEFAULT_PROBE.spreadHistory, judged, refused, refused_rate: round(refused / Math.max(1, judged), 5),
      probe_harm: honest.reduce((a, x) => a + x.harm, 0), probe_gross: honest.reduce((a, x) => a + x.gross, 0), detection,
    };
  });
  return {
    n, speeds, seed, steps: STEPS, judges: judges.length, judged: res.probe.judged, honest_scatter: round(unit, 5),
    run_refused: res.probe.rejected, run_offences: res.probe.offences, variants, wall_s: round((performance.now() - t0) / 1000, 1),
  };
}

function table(rows: readonly Row[]): string {
  const head = ['n', 'seed', 'judged', 'scatter', 'spread', 'refused', 'rate', 'vs 0', 'harm', 'gross', ...HARM_UNITS.map((k) => `${k}u refused/reported`)];
  const body: string[][] = [];
  for (const r of rows) {
    const base = r.variants.find((v) => v.spread_history === 0)!;
    for (const v of r.variants) {
      body.push([String(r.n), String(r.seed), String(v.judged), r.honest_scatter.toFixed(4), `${v.spread_history}${v.default ? '*' : ''}`, String(v.refused), `${(100 * v.refused_rate).toFixed(2)}%`,
        base.refused > 0 ? (v.refused / base.refused).toFixed(2) : '-', String(v.probe_harm), String(v.probe_gross),
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
    }
  }
  // Pooled over the setups: each variant's honest refusals against the judge before (spread 0).
  const pooled = SPREADS.map((spread) => {
    const vs = rows.map((r) => r.variants.find((v) => v.spread_history === spread)!);
    const judged = vs.reduce((a, v) => a + v.judged, 0), refused = vs.reduce((a, v) => a + v.refused, 0);
    return { spread_history: spread, judged, refused, refused_rate: round(refused / Math.max(1, judged), 5), probe_harm: vs.reduce((a, v) => a + v.probe_harm, 0), probe_gross: vs.reduce((a, v) => a + v.probe_gross, 0) };
  });
  console.log('\n' + table(rows) + '\n\npooled:');
  const base = pooled.find((p) => p.spread_history === 0)!;
  for (const p of pooled) console.log(`  spread ${String(p.spread_history).padStart(2)}${p.spread_history === DEFAULT_PROBE.spreadHistory ? '*' : ' '}  ${p.refused}/${p.judged} refused (${(100 * p.refused_rate).toFixed(2)}%, ${base.refused ? (p.refused / base.refused).toFixed(2) : '-'}× the judge before), ${p.probe_harm} probe-harm, ${p.probe_gross} probe-gross`);
  const out = resolve(dirname(fileURLToPath(import.meta.url)), 'results', OUT_NAME);
  mkdirSync(dirname(out), { recursive: true });
  writeFileSync(out, JSON.stringify({
    when: new Date().toISOString(), cores: cpus().length, steps: STEPS, harm_from: HARM_FROM, default_spread_history: DEFAULT_PROBE.spreadHistory,
    note: 'honest swarms simulated on the micro GPT with the default judge, every judged exchange recorded and replayed (open loop) through judges differing only in spreadHistory (0: the judge before 2026-12-06); refused/probe_harm/probe_gross count honest exchanges; detection adds harm_units × honest_scatter to one partner\'s paired losses from each judge\'s exchange harm_from on: refused_share of those exchanges refused, reported_at = at which of them the judge reported it (null: never)',
    pooled, rows,
  }, null, 2) + '\n');
  console.log(`wrote ${out}`);
}

void main();
