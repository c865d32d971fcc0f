// Probe benchmark (issue 15, docs/design.md section 6.1): what judging partners' updates by
// their effect on the loss costs honest volunteers and what it saves them from. Three CPU
// volunteers train one `micro` run in this process against the real coordinator (127.0.0.1),
// exchanging over WebRTC on loopback, in these scenarios (attacks: tests/support/hostile-backend.ts):
//   honest-off    three honest volunteers, probe off: the system as it was
//   honest-on     three honest volunteers, probe on: the false-rejection rate and its cost; the
//                 control every attack row is compared with ("Δ vs control", same seed)
//   duo-on        two honest volunteers and no third, probe on: what the honest pair reaches when
//                 every exchange with an attacker is refused (its rounds become solo steps)
//   attack-on     two honest + one whose Δ is negated at the honest norm, probe on
//   attack-off    the same attack with the probe off (what it did before)
//   scale-on      two honest + one sending its Δ × −20 (the size checks clip it to 3×), probe on
//   scale-off     the same attack with the probe off
//   nan-on        two honest + one sending a NaN in Δ (the size checks reject it), probe on
//   scale100-on   two honest + one sending Δ × 100 (beyond the 30× bound: rejected), probe on
//   phibias-on    two honest + one sending its honest Δ and φ − 4Δ (anti-progress φ inside the φ bound), probe on
//   phibias-off   the same with the probe off
//   combined-on   Δ negated and φ − 4Δ, probe on; combined-off with the probe off
//   mirror-on     a camper (never trains) sending the last partner's Δ it received, negated, probe on;
//                 mirror-off with the probe off
//   rejoin-on     Δ × −20 from an attacker that takes a new identity every REJOIN_EVERY rounds,
//                 connecting from 127.0.0.2 (another client address to the coordinator), probe on
// Prints a table and writes bench/results/probe.json: per scenario the honest volunteers'
// final validation loss, their exchanges judged and rejected (honest partners only / the
// attacker), the probe's time per round, and at which of its exchanges the attacker was reported.
// Usage: npm run bench:probe [-- --rounds N] [--H N] [--only honest-on,attack-on] [--seeds 1,2] [--out file.json] [--trace]
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { WebSocket } from 'ws';
import wrtc from '@roamhq/wrtc';
import type { WebSocketCtor } from '../src/sync/signaling-client.ts';
import { runVolunteer, type RoundEvent, type Volunteer } from '../src/volunteer/volunteer.ts';
import { startServer, webSocketFrom } from '../tests/support/coordinator.ts';

import { hostileFactory, rejoining, reportedAtHarmful, reportedIn, type Attack, type Rejoiner } from '../tests/support/hostile-backend.ts';

const arg = (name: string) => { const i = process.argv.indexOf(name); return i >= 0 ? process.argv[i + 1] : undefined; };
const ROUNDS = Number(arg('--rounds') ?? 30);
const H = Number(arg('--H') ?? 20);
const SEEDS = (arg('--seeds') ?? '1').split(',').map(Number);
const SCENARIOS = ['honest-off', 'honest-on', 'duo-on', 'attack-on', 'attack-off', 'scale-on', 'scale-off', 'nan-on', 'scale100-on', 'phibias-on', 'phibias-off',
  'combined-on', 'combined-off', 'mirror-on', 'mirror-off', 'rejoin-on'] as const;
type Scenario = (typeof SCENARIOS)[number];
/** The third volunteer's attack in each scenario; null: it is honest. */
const ATTACK: Record<Scenario, Attack | null> = {
  'honest-off': null, 'honest-on': null, 'duo-on': null, 'attack-on': 'sign-flip', 'attack-off': 'sign-flip', 'scale-on': 'scale-flip', 'scale-off': 'scale-flip',
  'nan-on': 'nan', 'scale100-on': 'scale100', 'phibias-on': 'phi-bias', 'phibias-off': 'phi-bias', 'combined-on': 'combined', 'combined-off': 'combined',
  'mirror-on': 'camp-mirror', 'mirror-off': 'camp-mirror', 'rejoin-on': 'scale-flip',
};
/** rejoin-*: the attacker's rounds per identity. */
const REJOIN_EVERY = 3;
/** The control an attack row is compared with (same seed, rounds and H). */
const CONTROL: Scenario = 'honest-on';
const only = arg('--only')?.split(',');
/** --trace: print each honest volunteer's rounds (partner h0/h1/A, x: refused by the probe, /reason: solo, @ms to pair, ~its probe's solo loss or its train loss) and the reports. */
const TRACE = process.argv.includes('--trace');
const round = (x: number, d: number) => Math.round(x * 10 ** d) / 10 ** d;
const components = { WebSocket: WebSocket as unknown as WebSocketCtor, rtc: wrtc };

interface Row {
  scenario: Scenario; seed: number; rounds: number; H: number;
  /** Mean over the honest volunteers of their validation loss after their last round. */
  honest_final_val_loss: number;
  honest_val_losses: number[];
  /** Honest volunteers' exchanges with honest partners that reached the probe, and those rejected. */
  honest_judged: number; honest_rejected: number; honest_rejection_rate: number | null;
  /** Honest volunteers' exchanges with the attacker that reached a partner's update (judged or not), rejected. */
  attacker_exchanges: number; attacker_rejected: number;
  /** Per honest volunteer that met the attacker: at which of its exchanges with it the report came (null: never). */
  reported_at: (number | null)[];
  /** The same, counting only the exchanges that did harm or could have (harmfulExchanges, as tests/volunteer.attacks.test.ts counts). */
  reported_at_harmful: (number | null)[];
  /** Mean probe time per outer round (all rounds, solo ones as 0), ms; and per judged exchange. */
  probe_ms_per_round: number; probe_ms_per_judged: number;
  /** Mean inner-loop time, ms (what the probe is a fraction of). */
  inner_ms: number;
  wall_s: number;
  /** Every judged exchange of the honest volunteers: its partner's kind, paired − solo, excess, noise unit, taken or not. */
  verdicts: { partner: 'honest' | 'attacker'; round: number; d: number; excess: number; noise: number; accept: boolean; offence: string | null; cos: number | null; phi_cos: number | null; phi_lag: number | null; phi_lag_theirs: number | null }[];
  /** Honest volunteers' exchanges with honest partners refused by the mesh's checks (a direction or size false alarm). */
  honest_refused: number;
  /** Honest volunteers' exchanges with the attacker refused by the mesh's checks, by reason (delta-direction, delta-norm, ...). */
  attacker_refused_by: Record<string, number>;
}

async function scenario(name: Scenario, seed: number): Promise<Row> {
  const t0 = performance.now();
  const s = await startServer();
  const vs: Volunteer[] = [];
  let rejoiner: Rejoiner | null = null;
  try {
    const r = await s.c.app.inject({
      method: 'POST', url: '/api/runs', headers: s.admin,
      payload: { id: 'probe', dataset: 'moby-dick', preset: 'micro', seed, train: { batch: 4, H, lr: 3e-3, warmupSteps: 10, totalSteps: ROUNDS * H } },
    });
    if (r.statusCode !== 201) throw new Error(`creating the run failed: ${r.statusCode} ${r.body}`);
    const probe = name.endsWith('-on');
    const base = { url: s.url, run: 'probe', backend: 'cpu' as const, evalEveryRounds: ROUNDS, chunkSteps: 10, bootstrapTimeoutMs: 2000, rounds: ROUNDS, probe };
    const honest = [runVolunteer(base, components), runVolunteer(base, components)];
    const attack = ATTACK[name];
    const hostileComponents = attack ? { ...components, createBackend: hostileFactory(attack) } : components;
    let third: Volunteer | null = null;
    /** The rejoiner's rounds, all its identities (--trace). */
    const attackerRounds: RoundEvent[] = [];
    if (name.startsWith('rejoin-')) {
      rejoiner = rejoining(() => {
        const v = runVolunteer({ ...base, rounds: REJOIN_EVERY }, { ...hostileComponents, WebSocket: webSocketFrom('127.0.0.2') });
        v.onRound((e) => { attackerRounds.push(e); });
        return v;
      });
    } else if (name !== 'duo-on') {
      third = runVolunteer(attack ? { ...base, rounds: undefined } : base, hostileComponents);
    }
    vs.push(...honest, ...(third ? [third] : []));
    // Every round from the first: a volunteer may train rounds before the others have joined.
    const events: RoundEvent[][] = [[], []];
    const innerMs: number[] = [];
    honest.forEach((v, i) => v.onRound((e) => { events[i]!.push(e); }));
    if (!attack) third?.onRound((e) => { (events[2] ??= []).push(e); });
    const ids = await Promise.all([...honest, ...(third ? [third] : [])].map(async (v) => (await v.joined).peerId));
    try {
      await Promise.all(honest.map((v) => v.done));
      if (!attack) await third?.done;
    } finally {
      await rejoiner?.stop();
    }
    const attackers = rejoiner ? rejoiner.ids : attack ? [ids[2]!] : [];
    const honestIds = attack ? ids.slice(0, 2) : ids;
    if (TRACE) {
      const who = (p: string | null) => p === null ? '-' : attackers.includes(p) ? 'A' : honestIds.includes(p) ? `h${honestIds.indexOf(p)}` : '?';
      events.slice(0, 2).forEach((es, i) => console.log(`h${i} ${ids[i]}: ` + es.map((e) => `${e.report.round}:${who(e.exchange.partner)}${e.exchange.outcome === 'paired' ? (e.probe && !e.probe.accept ? 'x' : '') : '/' + (e.exchange.reason ?? '?')}@${Math.round(e.exchange.pairMs)}~${Number(e.probe?.solo ?? e.report.trainLoss).toFixed(2)}`).join(' ')));
      if (attackerRounds.length > 0) console.log('A: ' + attackerRounds.map((e) => `${e.report.round}:${who(e.exchange.partner)}${e.exchange.outcome === 'paired' ? '' : '/' + (e.exchange.reason ?? '?')}@${Math.round(e.exchange.pairMs)}`).join(' '));
      events.slice(0, 2).forEach((es, i) => { for (const e of es) if (e.exchange.reason === 'connect-failed') console.log(`  h${i} round ${e.report.round}: no link to ${who(e.exchange.partner)}: ${e.exchange.linkError ?? '?'}`); });
      for (const ev of s.c.events.list('probe', 0, Date.now() + 1, 1000).filter((x) => x.kind === 'peer-offender')) {
        const d = ev.data as { accused: string; reason: string; strike: number };
        console.log(`  report @${new Date(ev.t).toISOString().slice(14, 21)} ${who(ev.peerId ?? null)} -> ${who(d.accused)} ${d.reason} #${d.strike}`);
      }
    }
    const all = events.flat();
    const withHonest = all.filter((e) => e.exchange.outcome === 'paired' && honestIds.includes(e.exchange.partner!) && e.probe);
    // Exchanges in which an attacker's payload arrived: validated (paired) or rejected by the size checks.
    const withAttacker = events.slice(0, 2).map((es) => es.filter((e) => attackers.includes(e.exchange.partner!) && (e.exchange.outcome === 'paired' || e.exchange.reason === 'rejected')));
    const refused = (e: RoundEvent) => e.exchange.reason === 'rejected' || (e.probe !== null && !e.probe.accept);
    const vals = events.slice(0, honestIds.length).map((es) => [...es].reverse().find((e) => typeof e.report.valLoss === 'number')!.report.valLoss as number);
    const probeMs = all.reduce((a, e) => a + (e.report.probeMs ?? 0), 0);
    const judged = all.filter((e) => e.probe).length;
    for (const e of all) innerMs.push((H * 4 * 32 * 1000) / e.report.tokensPerS - e.exchange.elapsedMs - (e.report.probeMs ?? 0));
    const rejectedH = withHonest.filter((e) => !e.probe!.accept).length;
    return {
      scenario: name, seed, rounds: ROUNDS, H,
      honest_final_val_loss: round(vals.reduce((a, b) => a + b, 0) / vals.length, 4), honest_val_losses: vals.map((v) => round(v, 4)),
      honest_judged: withHonest.length, honest_refused: all.filter((e) => e.exchange.reason === 'rejected' && honestIds.includes(e.exchange.partner!)).length, honest_rejected: rejectedH, honest_rejection_rate: withHonest.length ? round(rejectedH / withHonest.length, 4) : null,
      attacker_exchanges: withAttacker.flat().length, attacker_rejected: withAttacker.flat().filter(refused).length,
      attacker_refused_by: withAttacker.flat().reduce<Record<string, number>>((m, e) => { const k = e.exchange.rejection; if (e.exchange.reason === 'rejected' && k) m[k] = (m[k] ?? 0) + 1; return m; }, {}),
      reported_at: attack ? withAttacker.filter((es) => es.length > 0).map((es) => { const k = es.findIndex(reportedIn); return k >= 0 ? k + 1 : null; }) : [],
      reported_at_harmful: attack ? withAttacker.filter((es) => es.length > 0).map(reportedAtHarmful) : [],
      probe_ms_per_round: round(all.length ? probeMs / all.length : 0, 2), probe_ms_per_judged: round(judged ? probeMs / judged : 0, 2),
      inner_ms: round(innerMs.filter(Number.isFinite).reduce((a, b) => a + b, 0) / innerMs.length, 1),
      wall_s: round((performance.now() - t0) / 1000, 1),
      verdicts: events.slice(0, honestIds.length).flat().filter((e) => e.probe).map((e) => ({
        partner: attackers.includes(e.exchange.partner!) ? 'attacker' as const : 'honest' as const, round: e.report.round,
        d: round(e.probe!.paired - e.probe!.solo, 5), excess: round(e.probe!.excess, 5), noise: round(e.probe!.noise, 5), accept: e.probe!.accept, offence: e.probe!.offence?.code ?? null,
        cos: e.exchange.payload?.deltaCosine == null ? null : round(e.exchange.payload.deltaCosine, 3),
        phi_cos: e.exchange.payload?.phiCosine == null ? null : round(e.exchange.payload.phiCosine, 3),
        phi_lag: e.exchange.payload?.phiLag == null ? null : round(e.exchange.payload.phiLag, 3),
        phi_lag_theirs: e.exchange.payload?.phiLagTheirs == null ? null : round(e.exchange.payload.phiLagTheirs, 3),
      })),
    };
  } finally {
    await rejoiner?.stop();
    await Promise.all(vs.map((v) => v.stop('benchmark over')));
    await s.close();
  }
}

/** The honest final val loss of `r` less its control's (same seed, rounds and H, among `pool`); null without one. */
function vsControl(r: Row, pool: readonly Row[]): number | null {
  if (!ATTACK[r.scenario]) return null;
  const c = pool.find((x) => x.scenario === CONTROL && x.seed === r.seed && x.rounds === r.rounds && x.H === r.H);
  return c ? r.honest_final_val_loss - c.honest_final_val_loss : null;
}

function table(rows: Row[], pool: readonly Row[] = rows): string {
  const head = ['scenario', 'seed', 'val (honest)', 'Δ vs control', 'honest rejected', 'attacker rejected', 'reported at (all / harmful)', 'probe ms/round', 'inner ms', 's'];
  const body = rows.map((r) => {
    const dc = vsControl(r, pool);
    return [r.scenario, String(r.seed), r.honest_final_val_loss.toFixed(4), dc === null ? '-' : (dc >= 0 ? '+' : '') + dc.toFixed(4), `${r.honest_rejected}/${r.honest_judged}`,
      `${r.attacker_rejected}/${r.attacker_exchanges}`, [r.reported_at, r.reported_at_harmful ?? []].map((xs) => xs.map((x) => x ?? '-').join(',') || '-').join(' / '), r.probe_ms_per_round.toFixed(1), r.inner_ms.toFixed(0), r.wall_s.toFixed(0)];
  });
  const w = head.map((h, i) => Math.max(h.length, ...body.map((b) => b[i]!.length)));
  return [head, ...body].map((cells) => cells.map((c, i) => c.padStart(w[i]!)).join('  ')).join('\n');
}

async function main(): Promise<void> {
  console.log(`probe benchmark: micro, ${ROUNDS} rounds of H=${H}, 3 CPU volunteers in this process, seeds ${SEEDS.join(',')}, ${cpus().length} cores, load ${loadavg().map((x) => x.toFixed(1)).join(' ')}`);
  const out = arg('--out') ?? join(dirname(fileURLToPath(import.meta.url)), 'results', 'probe.json');
  mkdirSync(dirname(out), { recursive: true });
  // With --only, the other scenarios' rows of the last run stay (one run of all of them takes long);
  // the control of an attack row may be one of them.
  const previous = only && existsSync(out) ? (JSON.parse(readFileSync(out, 'utf8')) as { rows: Row[] }).rows.filter((r) => r.rounds === ROUNDS && r.H === H) : [];
  const rows: Row[] = [];
  const pool = () => [...rows, ...previous.filter((r) => !rows.some((x) => x.scenario === r.scenario && x.seed === r.seed))];
  for (const seed of SEEDS) {
    for (const sc of SCENARIOS.filter((x) => !only || only.includes(x))) {
      rows.push(await scenario(sc, seed));
      console.log(table(rows.slice(-1), pool()));
    }
  }
  console.log('\n' + table(rows, pool()));
  const kept = pool().filter((r) => !rows.includes(r));
  rows.unshift(...kept);
  writeFileSync(out, JSON.stringify({
    when: new Date().toISOString(), cores: cpus().length, load_avg_1m: round(loadavg()[0]!, 2),
    note: 'three CPU volunteers in one process through the real coordinator (duo-on: only the two honest ones; attack-*: two honest + one sending its Δ negated at the honest norm; scale-*: its Δ × −20, clipped to 3× by the size checks; nan-*: a NaN in Δ; scale100-*: Δ × 100; phibias-*: its honest Δ and φ − 4Δ; combined-*: Δ negated and φ − 4Δ; mirror-*: a camper sending the last partner\'s Δ negated; rejoin-*: Δ × −20 under a new identity every ' + REJOIN_EVERY + ' rounds from 127.0.0.2); honest_* counts only honest volunteers\' exchanges with honest partners; attacker_* and reported_at count exchanges whose payload was validated or rejected by the size checks (any identity of a rejoining attacker), reported_at_harmful only those that did harm or could have (refused, probe excess beyond its margin, or reported: tests/support/hostile-backend.ts harmfulExchanges); val losses are each honest volunteer\'s own after its last round; compare an attack row with honest-on of the same seed',
    rows,
  }, null, 2) + '\n');
  console.log(`wrote ${out}`);
  process.exit(0);
}

void main();
