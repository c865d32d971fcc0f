// Every attack of issue 15 against real volunteers (Must-hold 1): two honest CPU volunteers on
// `micro` and one hostile one (tests/support/hostile-backend.ts), all through the real
// coordinator, its pool and WebRTC on loopback, for a fixed number of rounds, against one control
// run of three honest volunteers. Per attack:
// - no honest volunteer is reported by an honest one;
// - the size checks (src/sync/validate.ts) cut off a NaN (non-finite) and a Δ × 100 (delta-norm);
// - a direction attack (sign-flip, scale-flip, phi-bias, combined, camp-mirror, and the rejoining
//   attacker per identity) is reported by each honest volunteer it harmed at or before the 3rd of
//   its harmful exchanges with it (harmful: the probe found the pair step worse than solo beyond
//   that volunteer's honest baseline, excess > 0; a payload the size checks rejected counts as
//   reported at once);
// - the honest volunteers' final validation loss (their mean) is within LOSS_BOUND of the
//   control's: max(0.05, the control's own spread, max − min of its three volunteers' final
//   losses), both ways.
// Each scenario prints its numbers (`attack <name>: ...`), and all of them once more at the end.
// The loss check is soft, so a scenario's report checks are judged even when its loss is not.
// Scenarios marked NOT MET below did not meet Must-hold 1 in the runs that wrote these tests; the
// assertions are kept as the Must-hold states them (the decision is issue 15's).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import wrtc from '@roamhq/wrtc';
import type { WebSocketCtor } from '../src/sync/signaling-client.ts';
import { runVolunteer, type RoundEvent, type Volunteer } from '../src/volunteer/volunteer.ts';
import { startServer, until, whileRunning, type TestServer } from './support/coordinator.ts';
import { hostileFactory, rejoining, webSocketFrom, type Attack, type Rejoiner } from './support/hostile-backend.ts';

/** Rounds each honest volunteer trains; its validation loss is measured after the last one. */
const ROUNDS = 14;
const H = 10;
/**
 * The run's LR schedule spans this many rounds: the test sees the middle of a run, not its end.
 * With the whole cosine decay squeezed into ROUNDS the honest Δ norms fell ~5× within the test,
 * the receivers' median of recent norms (16 kept) lagged behind, and an attacker ahead of them in
 * the schedule (it never stops) got Δ × 100 inside the 30× bound (measured once: honest 1 judged
 * 4 such updates with the probe instead of rejecting them by size).
 */
const SCHEDULE_ROUNDS = 10 * ROUNDS;
/** The rejoining attacker's rounds per identity. */
const REJOIN_EVERY = 3;
/** The Must-hold's tolerance on the final loss, unless the control's own spread is larger. */
const MIN_LOSS_BOUND = 0.05;
/** Harmful exchanges by which a direction attacker must have been reported. */
const REPORT_WITHIN = 3;

let s: TestServer;
const stoppers: (() => Promise<unknown>)[] = [];
const components = { WebSocket: WebSocket as unknown as WebSocketCtor, rtc: wrtc };
/** The control: the mean, each volunteer's and the bound derived from them. */
let control: { mean: number; vals: number[]; bound: number } | null = null;
const summary: string[] = [];

/** peer-offender events the coordinator stored: who reported whom, and why. */
const offences = () => (s.c.db.prepare("SELECT peer_id AS reporter, data_json AS data FROM events WHERE kind = 'peer-offender' ORDER BY id").all() as { reporter: string; data: string }[])
  .map((r) => ({ reporter: r.reporter, ...(JSON.parse(r.data) as { accused: string; reason: string }) }));

beforeAll(async () => {
  s = await startServer();
}, 60_000);

afterAll(async () => {
  await Promise.all(stoppers.map((f) => f()));
  await s?.close();
  if (summary.length > 0) console.log(`attacks, ${ROUNDS} rounds of H=${H}:\n${summary.join('\n')}`);
});

const mean = (xs: readonly number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
const r4 = (x: number) => Math.round(x * 1e4) / 1e4;

type Scenario = { attack: null } | { attack: Attack; rejoin?: boolean };

/**
 * One run of ROUNDS rounds: three honest volunteers (attack null) or two and the attacker (a new
 * identity every REJOIN_EVERY rounds from 127.0.0.2 when `rejoin`). Returns every round of each
 * honest volunteer, their ids and final validation losses, and the attacker's ids.
 */
async function scenario(runId: string, sc: Scenario) {
  const r = await s.c.app.inject({
    method: 'POST', url: '/api/runs', headers: s.admin,
    payload: { id: runId, dataset: 'moby-dick', preset: 'micro', seed: 1, train: { batch: 4, H, lr: 3e-3, warmupSteps: 10, totalSteps: SCHEDULE_ROUNDS * H } },
  });
  expect(r.statusCode).toBe(201);
  const base = { url: s.url, run: runId, backend: 'cpu' as const, evalEveryRounds: ROUNDS, chunkSteps: 5, bootstrapTimeoutMs: 2000 };
  const nHonest = sc.attack ? 2 : 3;
  const events: RoundEvent[][] = [];
  const honest: Volunteer[] = [];
  for (let i = 0; i < nHonest; i++) {
    const v = runVolunteer({ ...base, rounds: ROUNDS }, components);
    // Every round from the first (a volunteer may train rounds before the others have joined).
    const es: RoundEvent[] = [];
    v.onRound((e) => { es.push(e); });
    honest.push(v);
    events.push(es);
    stoppers.push(() => v.stop('test over'));
  }
  let attacker: Volunteer | null = null;
  let rejoiner: Rejoiner | null = null;
  if (sc.attack) {
    const hostileComponents = { ...components, createBackend: hostileFactory(sc.attack) };
    if ('rejoin' in sc && sc.rejoin) {
      const r = rejoining(() => runVolunteer({ ...base, rounds: REJOIN_EVERY }, { ...hostileComponents, WebSocket: webSocketFrom('127.0.0.2') }));
      rejoiner = r;
      stoppers.push(() => r.stop());
    } else {
      const a = runVolunteer(base, hostileComponents);
      attacker = a;
      stoppers.push(() => a.stop('test over'));
    }
  }
  const ended: (null | 'ok' | Error)[] = honest.map(() => null);
  honest.forEach((v, i) => v.done.then(() => { ended[i] = 'ok'; }, (e: unknown) => { ended[i] = e instanceof Error ? e : new Error(String(e)); }));
  const ids = await Promise.all(honest.map(async (v) => (await v.joined).peerId));
  const hostileRunning = whileRunning(attacker ? [attacker] : rejoiner ? [rejoiner] : [], ['attacker']);
  await until(() => {
    const failed = ended.find((e) => e instanceof Error);
    if (failed) throw failed;
    if (ended.every((e) => e === 'ok')) return true;
    hostileRunning();
    return false;
  }, 170_000, `the honest volunteers to finish their ${ROUNDS} rounds`);
  await (attacker ? attacker.stop('test over') : rejoiner?.stop());
  if (attacker) await expect(attacker.done).resolves.toBeDefined();
  const attackers = rejoiner ? [...rejoiner.ids] : attacker ? [(await attacker.joined).peerId] : [];
  const vals = events.map((es, i) => {
    const v = es.at(-1)?.report.valLoss;
    expect(es.length, `honest ${i} rounds`).toBe(ROUNDS);
    expect(typeof v, `honest ${i}'s final validation loss`).toBe('number');
    return v as number;
  });
  return { ids, attackers, events, vals };
}

/** A compact line per exchange with the attacker: round, pair/solo, probe numbers. */
const brief = (e: RoundEvent) => (e.exchange.outcome !== 'paired' ? `r${e.report.round}:rejected(${e.exchange.rejection})`
  : e.probe === null ? `r${e.report.round}:unjudged`
  : `r${e.report.round}:${e.probe.accept ? 'taken' : 'rejected'} excess ${e.probe.excess.toFixed(3)}/margin ${e.probe.margin.toFixed(3)}${e.probe.offence ? ` ${e.probe.offence.code}` : ''}`);

/** Runs `sc` and checks what every scenario must hold; returns the run for the attack's own checks. */
async function attackRun(name: string, sc: Scenario & { attack: Attack }) {
  expect(control, 'the control run (the first test) must have run').not.toBeNull();
  const run = await scenario(name, sc);
  const { ids, attackers, events, vals } = run;
  // Each honest volunteer's exchanges in which an attacker's payload arrived, per attacker identity:
  // validated (paired; then judged by the probe) or rejected by the size checks.
  const met = (i: number, k: string) => events[i]!.filter((e) => e.exchange.partner === k && (e.exchange.outcome === 'paired' || e.exchange.reason === 'rejected'));
  const harmed = (i: number, k: string) => met(i, k).filter((e) => e.exchange.outcome !== 'paired' || (e.probe !== null && e.probe.excess > 0));
  const reportedAt = (i: number, k: string) => { const at = harmed(i, k).findIndex((e) => e.exchange.outcome !== 'paired' || e.probe!.offence); return at >= 0 ? at + 1 : null; };
  const got = mean(vals);
  const diff = got - control!.mean;
  const lines = ids.map((_, i) => attackers.filter((k) => met(i, k).length > 0).map((k) =>
    `${k.slice(-4)}: ${met(i, k).filter((e) => e.exchange.outcome !== 'paired' || !e.probe?.accept).length}/${met(i, k).length} rejected, ${harmed(i, k).length} harmful, reported at ${reportedAt(i, k) ?? '-'} [${met(i, k).map(brief).join('; ')}]`).join(' | ') || 'never met');
  /** Per honest volunteer: rounds whose partner's update was applied (with an honest partner / the attacker) and solo rounds. */
  const rounds = (i: number) => {
    const es = events[i]!;
    const applied = es.filter((e) => e.report.partner !== null);
    return `${applied.filter((e) => ids.includes(e.report.partner!)).length}+${applied.filter((e) => attackers.includes(e.report.partner!)).length} paired (honest+attacker), ${es.length - applied.length} solo`;
  };
  const line = `attack ${name}: honest final val ${vals.map(r4).join(', ')} (mean ${r4(got)}) vs control ${r4(control!.mean)}: ${diff >= 0 ? '+' : ''}${r4(diff)} (bound ±${r4(control!.bound)}); ${attackers.length} attacker id(s)\n  ` +
    lines.map((l, i) => `honest ${i} (${rounds(i)}): ${l}`).join('\n  ');
  console.log(line);
  summary.push(line);
  // No honest volunteer blamed by another (the attacker may report anyone: the coordinator turns
  // its alert critical only on reports from two distinct partners).
  const blamed = offences().filter((o) => ids.includes(o.reporter) && ids.includes(o.accused));
  expect(blamed, JSON.stringify(blamed)).toEqual([]);
  // The attacker met somebody, or the scenario tested nothing.
  expect(ids.some((_, i) => attackers.some((k) => met(i, k).length > 0)), line).toBe(true);
  return { ...run, met, harmed, reportedAt, line, diff };
}

/** The final loss is within the bound of the control's (soft: the report checks are judged too). */
function expectLossWithinBound(r: { diff: number; line: string }) {
  expect.soft(Math.abs(r.diff), `final loss vs control: ${r.line}`).toBeLessThanOrEqual(control!.bound);
}

/** Each honest volunteer the attacker harmed REPORT_WITHIN times or more reported it by then. */
async function expectReportedWithin(r: Awaited<ReturnType<typeof attackRun>>) {
  for (const [i, id] of r.ids.entries()) {
    for (const k of r.attackers) {
      const harmed = r.harmed(i, k);
      if (harmed.length < REPORT_WITHIN && harmed.every((e) => !e.probe?.offence && e.exchange.outcome === 'paired')) continue;
      const at = r.reportedAt(i, k);
      expect(at, `honest ${i} vs ${k}: ${r.line}`).not.toBeNull();
      expect(at!, `honest ${i} vs ${k}: ${r.line}`).toBeLessThanOrEqual(REPORT_WITHIN);
      // The coordinator stored the report, from the probe or the size checks.
      const first = await until(() => offences().find((o) => o.reporter === id && o.accused === k), 10_000, `the coordinator to store honest ${i}'s report of ${k}`);
      expect(first!.reason, `honest ${i} vs ${k}: ${r.line}`).toMatch(/^(probe-(gross|harm): paired .* vs solo|delta-norm: )/);
    }
    // A rejected update is a solo step whose report names no partner.
    for (const e of r.events[i]!.filter((x) => x.probe && !x.probe.accept)) expect(e.report).toMatchObject({ partner: null, probeRejected: true });
  }
}

/** The size checks rejected every payload of the attacker's that arrived, with `code`, and each honest volunteer that met it reported it. */
async function expectCutOffBySizeChecks(r: Awaited<ReturnType<typeof attackRun>>, code: 'non-finite' | 'delta-norm') {
  for (const [i, id] of r.ids.entries()) {
    for (const k of r.attackers) {
      const met = r.met(i, k);
      if (met.length === 0) continue;
      for (const e of met) expect({ outcome: e.exchange.outcome, rejection: e.exchange.rejection }, r.line).toEqual({ outcome: 'solo', rejection: code });
      const first = await until(() => offences().find((o) => o.reporter === id && o.accused === k), 10_000, `the coordinator to store honest ${i}'s report of ${k}`);
      expect(first!.reason, r.line).toMatch(new RegExp(`^${code}: `));
    }
  }
}

describe('every attack of issue 15 against real volunteers (the probe on)', () => {
  it('control: three honest volunteers; their final validation loss and its spread set the bound', async () => {
    const { ids, vals, events } = await scenario('control', { attack: null });
    const spread = Math.max(...vals) - Math.min(...vals);
    control = { mean: mean(vals), vals, bound: Math.max(MIN_LOSS_BOUND, spread) };
    const paired = events.map((es) => es.filter((e) => e.report.partner !== null).length);
    const line = `control: honest final val ${vals.map(r4).join(', ')} (mean ${r4(control.mean)}, spread ${r4(spread)}): bound ±${r4(control.bound)}; rounds paired ${paired.join(', ')} of ${ROUNDS}`;
    console.log(line);
    summary.unshift(line);
    const blamed = offences().filter((o) => ids.includes(o.reporter));
    expect(blamed, JSON.stringify(blamed)).toEqual([]);
    for (const v of vals) expect(Number.isFinite(v)).toBe(true);
  }, 200_000);

  it('a NaN in Δ: cut off by the size checks (non-finite); the honest loss within the bound', async () => {
    const r = await attackRun('nan', { attack: 'nan' });
    expectLossWithinBound(r);
    await expectCutOffBySizeChecks(r, 'non-finite');
  }, 200_000);

  it('Δ × 100: cut off by the size checks (delta-norm); the honest loss within the bound', async () => {
    const r = await attackRun('scale100', { attack: 'scale100' });
    expectLossWithinBound(r);
    await expectCutOffBySizeChecks(r, 'delta-norm');
  }, 200_000);

  // NOT MET in one of the two runs with this schedule (2026-12, 2 loaded cores): honest 0 found
  // 4 exchanges harmful (excess 0.106 rejected but not reported, then 0.042, 0.009, 0.004 taken)
  // and honest 1 found 5 (0.003-0.010 against margins ~0.037, inside the honest scatter); neither
  // reported it: the known gap of docs/design.md section 6.1. Loss +0.039 and +0.020 (met).
  it('Δ negated at the honest norm: reported within 3 harmful exchanges; the honest loss within the bound', async () => {
    const r = await attackRun('sign-flip', { attack: 'sign-flip' });
    expectLossWithinBound(r);
    await expectReportedWithin(r);
  }, 200_000);

  // Met in both runs with this schedule. With the LR decay squeezed into ROUNDS (earlier runs)
  // the final loss was +0.10, +0.06 and +0.15 (clipped updates taken just inside the margin).
  it('Δ × −20 (clipped to 3× by the size checks): reported within 3 harmful exchanges; the honest loss within the bound', async () => {
    const r = await attackRun('scale-flip', { attack: 'scale-flip' });
    expectLossWithinBound(r);
    await expectReportedWithin(r);
  }, 200_000);

  // Met in both runs with this schedule; with the decay squeezed into ROUNDS: +0.022, +0.077, +0.080.
  it('φ shifted against progress inside the φ bound: reported within 3 harmful exchanges; the honest loss within the bound', async () => {
    const r = await attackRun('phi-bias', { attack: 'phi-bias' });
    expectLossWithinBound(r);
    await expectReportedWithin(r);
  }, 200_000);

  // NOT MET in both runs with this schedule (2026-12, 2 loaded cores). Run A: final loss −0.104
  // (better than the control; the bound is two-sided as the Must-hold states it; one honest
  // volunteer ended at 3.05). Run B: loss +0.001, but the two honest volunteers reported EACH
  // OTHER (probe-gross, excess 0.71 and 0.73 early in the run, then probe-harm: vetoed), after one
  // of them had taken a combined update inside the cold-start margin (excess 0.017 < 0.098).
  it('Δ negated and φ shifted against progress: reported within 3 harmful exchanges; the honest loss within the bound', async () => {
    const r = await attackRun('combined', { attack: 'combined' });
    expectLossWithinBound(r);
    await expectReportedWithin(r);
  }, 200_000);

  // Met in both runs with this schedule; with the decay squeezed into ROUNDS: once 6 harmful
  // exchanges (excess 0.003-0.005) never reported, once a final loss of +0.110.
  it('a camper mirroring its last partner\'s Δ negated: reported within 3 harmful exchanges; the honest loss within the bound', async () => {
    const r = await attackRun('camp-mirror', { attack: 'camp-mirror' });
    expectLossWithinBound(r);
    await expectReportedWithin(r);
  }, 200_000);

  it(`Δ × −20 under a new identity every ${REJOIN_EVERY} rounds (from another address): each identity reported within 3 harmful exchanges; the honest loss within the bound`, async () => {
    const r = await attackRun('rejoin', { attack: 'scale-flip', rejoin: true });
    expect(r.attackers.length).toBeGreaterThan(1);
    expectLossWithinBound(r);
    await expectReportedWithin(r);
  }, 200_000);
});
