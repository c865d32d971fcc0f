// Replay check calibration (docs/design.md section 6, "Replayed updates"): how alike honest Δs
// are, as full vectors and as the replay memory's sketches (src/sync/replay.ts), in honest
// simulated swarms on the micro GPT (bench/lag-claims.ts's setups), and how alike a replay with
// noise is to the Δ it replays. Per judge, every check of a partner's payload is compared with:
// our own Δ of the round (different peers, same round), and every sketch the judge's memory holds
// then (our earlier Δs and partners' earlier Δs, the same partner's included); and each replica's
// Δ with its own of the round before (consecutive rounds of one peer). The validator in the loop
// is the real one: its refusals by reason are listed, 'delta-replay' among them.
// Usage: npx tsx bench/replay.ts [--steps N] [--seeds 1,2] [--only 0,2] (setups by index) [--buckets k] [--out file]
import { mkdirSync, writeFileSync } from 'node:fs';
import { prepare } from '../src/sim/setup.ts';
import { DEFAULT_REPLAY, ReplayMemory, type Sketch } from '../src/sync/replay.ts';
import { flagValue } from './args.ts';
import { claimOptions, claimSpec } from './claim-setups.ts';

const { steps: STEPS, seeds: SEEDS, setups: SETUPS } = claimOptions(2000);
const NOISE = [0.01, 0.05, 0.1, 0.15, 0.2];
/** --buckets k: sketches of k buckets instead of the default (to compare). */
const REPLAY = { ...DEFAULT_REPLAY, buckets: Number(flagValue('--buckets') ?? DEFAULT_REPLAY.buckets) };
const OUT = flagValue('--out') ?? 'bench/results/replay.json';

function cos(a: Float32Array, b: Float32Array): number {
  let dot = 0, aa = 0, bb = 0;
  for (let i = 0; i < a.length; i++) { dot += a[i] * b[i]; aa += a[i] * a[i]; bb += b[i] * b[i]; }
  return dot / Math.sqrt(aa * bb);
}

/** A standard normal draw (Box–Muller) from a seeded LCG, so the noise rows repeat. */
function gauss(state: { s: number }): number {
  const u = () => { state.s = (Math.imul(state.s, 1664525) + 1013904223) >>> 0; return (state.s + 1) / 4294967297; };
  return Math.sqrt(-2 * Math.log(u())) * Math.cos(2 * Math.PI * u());
}

/** Pairs compared, the most alike by full cosine and by sketch cosine, and the sketch's largest error. */
type Stat = { n: number; maxFull: number; maxSketch: number; maxError: number };
const stat = (): Stat => ({ n: 0, maxFull: -1, maxSketch: -1, maxError: 0 });
const add = (s: Stat, full: number, sketch: number) => {
  s.n++; s.maxFull = Math.max(s.maxFull, full); s.maxSketch = Math.max(s.maxSketch, sketch); s.maxError = Math.max(s.maxError, Math.abs(sketch - full));
};

const rows: Record<string, unknown>[] = [];
const totals = { consecutive: stat(), sameRound: stat(), remembered: stat() };
const noiseMin = new Map<number, number>(NOISE.map((x) => [x, 1]));
for (const [i, setup] of SETUPS) {
  const { n, speeds, H, batch } = setup;
  for (const seed of SEEDS) {
    const sim = await prepare(claimSpec(setup, seed, STEPS));
    const row = { consecutive: stat(), sameRound: stat(), remembered: stat() };
    // Per judge: a memory as its validator keeps one (own seed), with the full vectors beside.
    const memories = new Map<number, { mem: ReplayMemory; full: { s: Sketch; d: Float32Array }[] }>();
    const lastOwn = new Map<number, Float32Array>();
    const noise = { s: seed };
    const observe = sim.observeOwn.bind(sim);
    sim.observeOwn = (r) => {
      observe(r);
      if (!r.msg) return;
      const prev = lastOwn.get(r.slot);
      if (prev) {
        const m = memoryOf(r.slot);
        add(row.consecutive, cos(prev, r.msg.delta), ReplayMemory.cosine(m.mem.sketch(prev), m.mem.sketch(r.msg.delta))!);
      }
      lastOwn.set(r.slot, r.msg.delta.slice());
    };
    const memoryOf = (slot: number) => {
      let m = memories.get(slot);
      if (!m) memories.set(slot, (m = { mem: new ReplayMemory(REPLAY, () => ((slot * 2654435761 + seed) >>> 0) / 2 ** 32), full: [] }));
      return m;
    };
    // Beside the memory, the full vectors of what it holds, oldest dropped first as its ring does.
    const keep = (m: { mem: ReplayMemory; full: { s: Sketch; d: Float32Array }[] }, d: Float32Array, round: number, peer: string | null) => {
      const s = m.mem.sketch(d);
      m.mem.remember(s, round, peer);
      m.full.push({ s, d: d.slice() });
      if (m.full.length > DEFAULT_REPLAY.kept) m.full.shift();
    };
    const check = sim.checkPartner.bind(sim);
    sim.checkPartner = (r, partnerId, partner, behind) => {
      if (r.msg) {
        const m = memoryOf(r.slot);
        const theirs = m.mem.sketch(partner.delta);
        // Everything remembered before this round (earlier Δs, ours and partners').
        for (const { s, d } of m.full) add(row.remembered, cos(partner.delta, d), ReplayMemory.cosine(theirs, s)!);
        add(row.sameRound, cos(partner.delta, r.msg.delta), ReplayMemory.cosine(theirs, m.mem.sketch(r.msg.delta))!);
        // A replay of this Δ with Gaussian noise of x × its norm, against the Δ itself.
        const norm = Math.sqrt(partner.delta.reduce((a, v) => a + v * v, 0));
        for (const x of NOISE) {
          const sd = (x * norm) / Math.sqrt(partner.delta.length);
          const replayed = partner.delta.map((v) => v + sd * gauss(noise));
          noiseMin.set(x, Math.min(noiseMin.get(x)!, ReplayMemory.cosine(theirs, m.mem.sketch(replayed))!));
        }
        keep(m, r.msg.delta, r.outerSteps, null);
        keep(m, partner.delta, r.outerSteps, partnerId);
      }
      return check(r, partnerId, partner, behind);
    };
    try { await sim.run(); } finally { sim.dispose(); }
    const reasons = (sim as unknown as { checkTotals: { checked: number; reasons: Record<string, number> } }).checkTotals;
    for (const k of ['consecutive', 'sameRound', 'remembered'] as const) {
      const t = totals[k], s = row[k];
      t.n += s.n; t.maxFull = Math.max(t.maxFull, s.maxFull); t.maxSketch = Math.max(t.maxSketch, s.maxSketch); t.maxError = Math.max(t.maxError, s.maxError);
    }
    const out = { setup: i, n, speeds, H, batch, seed, steps: STEPS, checked: reasons.checked, refused: reasons.reasons, ...row };
    rows.push(out);
    console.log(JSON.stringify(out));
  }
}

const honestMax = Math.max(totals.consecutive.maxSketch, totals.sameRound.maxSketch, totals.remembered.maxSketch);
const replayRefusals = rows.reduce((a, r) => a + (((r.refused as Record<string, number>)['delta-replay']) ?? 0), 0);
const summary = {
  buckets: REPLAY.buckets, kept: DEFAULT_REPLAY.kept, threshold: DEFAULT_REPLAY.cosine,
  honestMaxSketch: honestMax, margin: DEFAULT_REPLAY.cosine - honestMax, honestReplayRefusals: replayRefusals,
  totals, noisyReplayMinSketch: Object.fromEntries(noiseMin),
};
console.log(`\n${REPLAY.buckets} buckets; what was compared           pairs   max cos (full)   max cos (sketch)   max |error|`);
for (const [k, label] of [['consecutive', 'one peer, consecutive rounds'], ['sameRound', 'partner vs ours, same round'], ['remembered', 'partner vs every remembered Δ']] as const) {
  const t = totals[k];
  console.log(`${label.padEnd(38)} ${String(t.n).padStart(6)}   ${t.maxFull.toFixed(4).padStart(14)}   ${t.maxSketch.toFixed(4).padStart(16)}   ${t.maxError.toFixed(4).padStart(11)}`);
}
console.log('\nreplay + noise (x of its norm)         least sketch cos');
for (const [x, c] of noiseMin) console.log(`${`${x * 100}%`.padEnd(38)} ${c.toFixed(5).padStart(16)}`);
console.log(`\nthreshold ${DEFAULT_REPLAY.cosine}: honest max ${honestMax.toFixed(4)}, margin ${(DEFAULT_REPLAY.cosine - honestMax).toFixed(4)}; honest payloads refused as replays: ${replayRefusals}`);
mkdirSync('bench/results', { recursive: true });
writeFileSync(OUT, `${JSON.stringify({ summary, rows }, null, 2)}\n`);
