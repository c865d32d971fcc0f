// An attacker in the test suite (issue 15): each scenario is its own test, with two honest CPU
// volunteers on `micro` and a third built from Murmur's own volunteer code with what it sends
// altered (tests/support/hostile-backend.ts), all through the real coordinator, its pool and
// WebRTC on loopback; the control, three honest volunteers, runs first in this file.
//
// What each test shows is the mechanism a scenario is stopped by: the mesh's checks refuse the
// payload (src/sync/validate.ts), or the honest peers' probe judges it by its own rule
// (src/round/probe.ts), and the attacker is reported within REPORT_WITHIN of the exchanges that
// did harm; the φ of the anti-progress attack is clipped; a poisoned state is refused by a
// newcomer and by the coordinator's checkpoint check. What the attacks cost the honest
// volunteers' final validation loss is measured by `npm run bench:probe` over five seeds of 60
// rounds (bench/results/probe.json, docs/design.md section 6.1): a single run's final loss
// scatters by up to 0.24 between runs in which the attacker was refused outright, so a loss
// bound of 0.05 in a test would fail by chance.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import wrtc from '@roamhq/wrtc';
import type { WebSocketCtor } from '../src/sync/signaling-client.ts';
import { DEFAULT_VALIDATION, lagAllowance } from '../src/sync/validate.ts';
import { isSoftOffence, isStallReport } from '../src/protocol/messages.ts';
import { runVolunteer, type RoundEvent, type Volunteer, type VolunteerOptions } from '../src/volunteer/volunteer.ts';
import { VETO_AFTER } from '../server/peers.ts';
import { startServer, until, webSocketFrom, whileRunning, type TestServer } from './support/coordinator.ts';
import { harmfulExchanges, hostileFactory, rejoining, reportedIn, type Attack, type Rejoiner } from './support/hostile-backend.ts';

let s: TestServer;
/**
 * Each honest volunteer must have reported the attacker by its 3rd exchange with it that did
 * harm or could have (issue 15; harmfulExchanges in tests/support/hostile-backend.ts says which).
 */
const REPORT_WITHIN = 3;
/** rejoin: the attacker's rounds per identity, and the identities it must have had. */
const REJOIN_EVERY = 3;
const REJOIN_IDENTITIES = 4;
const volunteers: Volunteer[] = [];
const rejoiners: Rejoiner[] = [];
const components = { WebSocket: WebSocket as unknown as WebSocketCtor, rtc: wrtc };

/**
 * peer-offender events the coordinator stored that judge an update: who reported whom, and why.
 * Not `stall` (a payload that missed the deadline twice in a row): on a loaded machine honest
 * partners and the attackers file those too, and none of these runs is about a staller.
 */
const offences = () => (s.c.db.prepare("SELECT peer_id AS reporter, data_json AS data FROM events WHERE kind = 'peer-offender' ORDER BY id").all() as { reporter: string; data: string }[])
  .map((r) => ({ reporter: r.reporter, ...(JSON.parse(r.data) as { accused: string; reason: string }) }))
  .filter((o) => !isStallReport(o.reason));

/** The control's figures, for the attack runs to be read against. */
let control: { judged: number; rejected: number } | null = null;

beforeAll(async () => {
  s = await startServer();
});

afterAll(async () => {
  await Promise.all(rejoiners.map((r) => r.stop()));
  await Promise.all(volunteers.map((v) => v.stop('test over')));
  await s?.close();
});

async function createRun(runId: string): Promise<VolunteerOptions> {
  const r = await s.c.app.inject({
    method: 'POST', url: '/api/runs', headers: s.admin,
    payload: { id: runId, dataset: 'moby-dick', preset: 'micro', train: { batch: 4, H: 10, lr: 3e-3, warmupSteps: 4 } },
  });
  expect(r.statusCode).toBe(201);
  return { url: s.url, run: runId, backend: 'cpu' as const, evalEveryRounds: 0, chunkSteps: 5, bootstrapTimeoutMs: 2000 };
}

const brief = (e: RoundEvent) => (e.probe === null ? { round: e.report.round, judged: false, refused: e.exchange.rejection ?? null } : {
  round: e.report.round, accept: e.probe.accept, cos: +(e.exchange.payload?.deltaCosine ?? NaN).toFixed(3), lag: +(e.exchange.payload?.phiLag ?? NaN).toFixed(2), lagJ: +(e.exchange.payload?.phiLagTheirs ?? NaN).toFixed(2),
  d: +(e.probe.paired - e.probe.solo).toFixed(4), excess: +e.probe.excess.toFixed(4), margin: +e.probe.margin.toFixed(4), offence: e.probe.offence?.code ?? null,
});

interface Honest {
  id: string;
  arrived: RoundEvent[];
  line: string;
  /**
   * The attacker's own strikes against this volunteer reached VETO_AFTER, so the pool never
   * pairs the two again: the attacker runs Murmur's checks too, and reports an honest Δ that
   * points against its own (a camper's). It can abort its send as it reports, so this volunteer
   * may never have had one of its payloads: out of its reach, it has nothing to report.
   */
  shielded: boolean;
}

/** What a run's end condition can look at; i is an honest volunteer (0 or 1). */
interface Progress {
  /** Rounds in which an attacker's payload arrived: refused by the mesh's checks, or validated. */
  arrived(i: number): RoundEvent[];
  /** Those validated whose paired step the probe judged worse than solo beyond the baseline. */
  harmed(i: number): RoundEvent[];
  reportedBy(i: number): boolean;
  /** The attacker's strikes vetoed its pairing with i (Honest.shielded). */
  shielded(i: number): boolean;
  /** Reports by i of the attacker that are strikes (a probe CUSUM report is evidence only). */
  strikesBy(i: number): number;
  honestJudged(): RoundEvent[];
  attackers(): string[];
}

/**
 * Two honest CPU volunteers and a third (`attack`, a rejoiner, or honest for the control), until
 * `done` holds or a volunteer ends; then all stop. Per honest volunteer: the rounds in which an
 * attacker's payload arrived (refused by the mesh's checks, or validated and judged by the probe).
 */
async function attackRun(runId: string, third: { attack: Attack } | { rejoin: Attack } | { honest: true },
  done: (r: Progress) => boolean, what: string) {
  const base = await createRun(runId);
  // Each honest volunteer is a client of its own (127.0.0.3, .4): exchanges within one address
  // never take a peer off probation.
  const honest = [3, 4].map((k) => runVolunteer(base, { ...components, WebSocket: webSocketFrom(`127.0.0.${k}`) }));
  let rejoiner: Rejoiner | null = null;
  let attacker: Volunteer | null = null;
  if ('rejoin' in third) {
    // A new identity every REJOIN_EVERY rounds, from another client address (127.0.0.2).
    rejoiner = rejoining(() => runVolunteer({ ...base, rounds: REJOIN_EVERY }, { ...components, createBackend: hostileFactory(third.rejoin), WebSocket: webSocketFrom('127.0.0.2') }));
    rejoiners.push(rejoiner);
  } else {
    // A camper never trains, so it has no Δ scale of its own and its mesh would refuse every
    // payload ('no-scale'): it would never see a partner's Δ to mirror. An attacker's own code
    // checks nothing, so its checks take any size (minScale).
    const camper = 'attack' in third && (third.attack === 'camp-mirror' || third.attack === 'camp-null');
    const own = camper ? { ...base, validation: { minScale: 1e30 } } : base;
    attacker = runVolunteer(own, 'attack' in third ? { ...components, createBackend: hostileFactory(third.attack) } : components);
  }
  const all = [...honest, ...(attacker ? [attacker] : [])];
  volunteers.push(...all);
  // Every round from the first (a volunteer may train rounds before the others have joined).
  const events: RoundEvent[][] = [[], []];
  honest.forEach((v, i) => v.onRound((e) => { events[i]!.push(e); }));
  const [ia, ib] = await Promise.all(honest.map(async (v) => (await v.joined).peerId)) as [string, string];
  const attackers = () => ('honest' in third ? [] : rejoiner ? rejoiner.ids : []);
  const ik = attacker ? (await attacker.joined).peerId : null;
  const isAttacker = (id: string | null) => id !== null && ('honest' in third ? false : id === ik || attackers().includes(id));
  const arrived = (i: number) => events[i]!.filter((e) => isAttacker(e.exchange.partner) && (e.exchange.outcome === 'paired' || e.exchange.reason === 'rejected'));
  const harmed = (i: number) => harmfulExchanges(arrived(i));
  const reportedBy = (i: number) => offences().some((o) => o.reporter === [ia, ib][i] && isAttacker(o.accused));
  const strikesBy = (i: number) => offences().filter((o) => o.reporter === [ia, ib][i] && isAttacker(o.accused) && !isSoftOffence(o.reason)).length;
  const shielded = (i: number) => offences().filter((o) => isAttacker(o.reporter) && o.accused === [ia, ib][i] && !isSoftOffence(o.reason)).length >= VETO_AFTER;
  /** Exchanges between the two honest volunteers (and, in the control, with the third) that their probe judged. */
  const honestJudged = () => [0, 1].flatMap((i) => events[i]!.filter((e) => e.probe !== null && !isAttacker(e.exchange.partner)));
  const running = whileRunning(all, ['honest 0', 'honest 1', 'attacker']);
  try {
    // On a timeout, say what was seen: each honest volunteer's rounds, its exchanges with the
    // attacker, whether it reported it, and the honest exchanges judged so far.
    const outcomes = (i: number) => {
      const n = new Map<string, number>();
      for (const e of events[i]!) if (isAttacker(e.exchange.partner)) { const k = e.exchange.outcome === 'paired' ? 'paired' : `${e.exchange.reason}${e.exchange.linkError ? ` (${e.exchange.linkError})` : ''}`; n.set(k, (n.get(k) ?? 0) + 1); }
      return JSON.stringify(Object.fromEntries(n));
    };
    const seen = () => `${what} (saw: ${[0, 1].map((i) => `honest ${i}: ${events[i]!.length} rounds, ${arrived(i).length} attacker exchanges ${outcomes(i)}, ${harmed(i).length} harmful, reported ${reportedBy(i)}, shielded ${shielded(i)}`).join('; ')}; ${honestJudged().length} honest exchanges judged; pairable with the attacker: ${ik ? [ia, ib].map((h) => s.c.hub.canPair(runId, h, ik)).join(', ') : 'n/a'}; the attacker's reports: ${JSON.stringify(offences().filter((o) => isAttacker(o.reporter)))})`;
    await until(() => done({ arrived, harmed, reportedBy, shielded, strikesBy, honestJudged, attackers: () => (ik ? [ik] : attackers()) }) || running(), 400_000, seen);
  } finally {
    await rejoiner?.stop();
    await Promise.all(all.map((v) => v.stop('test over')));
  }
  const peers: Honest[] = [0, 1].map((i) => ({ id: [ia, ib][i]!, arrived: arrived(i), shielded: shielded(i), line: `honest ${i} vs ${JSON.stringify(third)}${shielded(i) ? ' (shielded by the attacker\'s own reports)' : ''}: ${JSON.stringify(arrived(i).map(brief))}` }));
  for (const p of peers) console.log(p.line);
  console.log(`the attacker's reports: ${JSON.stringify(offences().filter((o) => isAttacker(o.reporter)))}`);
  const honestPairs = honestJudged();
  console.log(`honest exchanges: ${honestPairs.filter((e) => !e.probe!.accept).length}/${honestPairs.length} rejected by the probe ${JSON.stringify(honestPairs.map(brief))}`);
  return { ids: { ia, ib, attackers: ik ? [ik] : [...attackers()] }, events, peers, honestPairs, isAttacker, strikesBy };
}

/**
 * Until each honest volunteer reported the attacker, was shielded from it, or had `meetings`
 * exchanges with it that did harm, or 3 × `meetings` in all; and the two honest ones were judged twice.
 */
const reportedOrHarmed = (meetings = REPORT_WITHIN) => (r: Progress) =>
  [0, 1].every((i) => r.reportedBy(i) || r.shielded(i) || r.harmed(i).length >= meetings || r.arrived(i).length >= 3 * meetings) && r.honestJudged().length >= 2;

/**
 * Each honest volunteer reported the attacker within REPORT_WITHIN of its harmful exchanges
 * with it (harmfulExchanges: refused by the checks, or beyond the probe's margin); every payload
 * of its that passed the checks was judged by the probe's own rule, and only an accepted one is
 * named in a report. One that never reported it (the attacker's own reports shielded it, or
 * every meeting fell within honest noise) had fewer than REPORT_WITHIN harmful exchanges, never
 * more; and at least one honest volunteer reported it.
 */
function reportedWithin(attackers: readonly string[], peers: readonly Honest[]) {
  const reporters = peers.filter((p) => offences().some((o) => o.reporter === p.id && attackers.includes(o.accused)));
  expect(reporters.length, peers.map((p) => p.line).join('\n')).toBeGreaterThan(0);
  for (const p of peers) {
    const first = offences().find((o) => o.reporter === p.id && attackers.includes(o.accused));
    judgedByTheRule(p);
    const harmful = harmfulExchanges(p.arrived);
    if (!first) {
      console.log(`honest volunteer never reported the attacker${p.shielded ? ' (its reports vetoed the pair)' : ''}: ${harmful.length} harmful exchanges of ${p.arrived.length} with it`);
      expect(harmful.length, p.line).toBeLessThan(REPORT_WITHIN);
      continue;
    }
    // The report leaves in the round of the exchange that made it (a refusal by the checks, or
    // the probe's offence): that exchange's place among the harmful ones.
    const at = harmful.findIndex(reportedIn);
    console.log(`honest volunteer reported the attacker at its harmful exchange ${at + 1} of ${harmful.length}, exchange ${p.arrived.indexOf(harmful[at]!) + 1} of ${p.arrived.length} with it (${first!.reason.split(':')[0]})`);
    expect(at, p.line).toBeGreaterThanOrEqual(0);
    expect(at + 1, p.line).toBeLessThanOrEqual(REPORT_WITHIN);
  }
}


/** Every payload of the attacker that passed the mesh's checks was taken exactly when the probe's rule says. */
function judgedByTheRule(p: Honest) {
  for (const e of p.arrived) {
    if (e.exchange.outcome !== 'paired') {
      expect(e.report.partner, p.line).toBeNull();
      continue;
    }
    expect(e.probe, p.line).not.toBeNull();
    expect(e.probe!.accept, p.line).toBe(e.probe!.excess <= e.probe!.margin && e.probe!.offence === null);
    expect(e.report.partner, p.line).toBe(e.probe!.accept ? e.exchange.partner : null);
  }
}

/**
 * Every payload that arrived was refused by the mesh's checks for `reason`, but one whose size
 * the checks could not yet judge: early in a run Δ norms still grow through the warm-up, so a
 * Δ × 100 of an attacker's first rounds can sit inside 30× of ours; that one was clipped to the
 * stranger's 1.5× and judged by the probe.
 */
function allRefused(peers: readonly Honest[], reason: RegExp) {
  for (const p of peers) {
    if (p.arrived.length === 0 && p.shielded) continue; // none of its payloads reached this one
    expect(p.arrived.length, p.line).toBeGreaterThan(0);
    judgedByTheRule(p);
    for (const e of p.arrived) {
      if (e.exchange.outcome === 'paired') expect(e.exchange.payload!.clipped, p.line).toBe(true);
      else expect(e.exchange.rejection, p.line).toMatch(reason);
    }
    expect(p.arrived.some((e) => e.exchange.outcome === 'solo'), p.line).toBe(true);
  }
}

/**
 * Neither honest volunteer vetoed the other (VETO_AFTER strikes), so they still pair. A single
 * report between them can happen by chance: a probe CUSUM report (evidence, no strike) about once
 * in a hundred honest exchanges, a gross one about once in 700 (bench/results/probe.json); the
 * attacker may report anyone (the coordinator's alert needs two distinct partners).
 */
function noHonestVetoed(ids: { ia: string; ib: string; attackers: readonly string[] }) {
  const between = offences().filter((o) => (o.reporter === ids.ia && o.accused === ids.ib) || (o.reporter === ids.ib && o.accused === ids.ia));
  if (between.length > 0) console.log(`reports between the honest volunteers: ${JSON.stringify(between)}`);
  for (const [r, a] of [[ids.ia, ids.ib], [ids.ib, ids.ia]] as const) {
    expect(between.filter((o) => o.reporter === r && o.accused === a && !isSoftOffence(o.reason)).length, JSON.stringify(between)).toBeLessThan(VETO_AFTER);
  }
}

/**
 * The honest volunteers kept pairing with each other and judging what they got (how often the
 * probe rejects an honest update is the control's, and bench:probe's, to measure).
 */
function honestStillPair(honestPairs: readonly RoundEvent[]) {
  expect(honestPairs.length).toBeGreaterThanOrEqual(2);
  console.log(`${honestPairs.filter((e) => !e.probe!.accept).length} of ${honestPairs.length} honest exchanges rejected by the probe (control: ${control?.rejected}/${control?.judged})`);
}

describe('an attacker in the test suite: two honest volunteers and a third', () => {
  it('control: three honest volunteers pair and judge each other; no pair is vetoed, nearly every update is taken', async () => {
    const { events, honestPairs } = await attackRun('control', { honest: true }, (r) => r.honestJudged().length >= 12, 'twelve judged honest exchanges');
    const ids = new Set(events.flat().map((e) => e.exchange.partner).filter((p) => p !== null));
    const reports = offences().filter((o) => ids.has(o.accused) && ids.has(o.reporter));
    console.log(`control reports: ${JSON.stringify(reports)}`);
    // A report by chance is possible (see noHonestVetoed); no honest pair is vetoed.
    for (const r of ids) for (const a of ids) expect(reports.filter((o) => o.reporter === r && o.accused === a && !isSoftOffence(o.reason)).length, JSON.stringify(reports)).toBeLessThan(VETO_AFTER);
    const rejected = honestPairs.filter((e) => !e.probe!.accept).length;
    control = { judged: honestPairs.length, rejected };
    // Issue 15 asks at most 2% rejected: bench:probe measures that rate over five seeds of 60
    // rounds; in a dozen exchanges here, 3 or more would be a rate of 25%.
    expect(rejected, `${rejected}/${honestPairs.length}`).toBeLessThanOrEqual(2);
    // Each judged round's report carries the probe's figures, and the coordinator stored them.
    for (const e of events.flat().filter((x) => x.probe)) {
      expect(e.report.probeMs).toBeGreaterThanOrEqual(0);
      expect([e.report.probeSolo, e.report.probePaired]).toEqual([e.probe!.solo, e.probe!.paired]);
    }
    const rows = s.c.db.prepare("SELECT COUNT(*) AS n FROM reports WHERE run_id = 'control' AND probe_ms IS NOT NULL").get() as { n: number };
    expect(rows.n).toBeGreaterThan(0);
  });

  it('nan (a NaN in Δ on the wire): refused as non-finite at its first exchange and reported', async () => {
    const { ids, peers, honestPairs } = await attackRun('nan', { attack: 'nan' }, reportedOrHarmed(), 'each honest volunteer to report the attacker');
    allRefused(peers, /^non-finite$/);
    reportedWithin(ids.attackers, peers);
    noHonestVetoed(ids);
    honestStillPair(honestPairs);
  });

  it('scale100 (Δ × 100, past the 30× bound): refused on its norm at its first exchange and reported', async () => {
    const { ids, peers, honestPairs } = await attackRun('scale100', { attack: 'scale100' }, reportedOrHarmed(), 'each honest volunteer to report the attacker');
    allRefused(peers, /^delta-norm$/);
    reportedWithin(ids.attackers, peers);
    noHonestVetoed(ids);
    honestStillPair(honestPairs);
  });

  it('sign-flip at the honest norm (which the probe alone could not tell from honest): refused on its direction, reported within 3 of its harmful exchanges; what passes is judged by the probe', async () => {
    const { ids, peers, honestPairs } = await attackRun('sign-flip', { attack: 'sign-flip' }, reportedOrHarmed(), 'each honest volunteer to report the attacker');
    reportedWithin(ids.attackers, peers);
    for (const p of peers) {
      for (const e of p.arrived) {
        // Refused on direction; only a negated Δ whose cosine with ours stayed above −0.2 (its
        // own Δ nearly orthogonal to ours) passes the check, to the probe.
        if (e.exchange.outcome !== 'paired') expect(e.exchange.rejection, p.line).toBe('delta-direction');
        else expect(e.exchange.payload!.deltaCosine!, p.line).toBeGreaterThanOrEqual(-0.2);
      }
    }
    noHonestVetoed(ids);
    honestStillPair(honestPairs);
  });

  it('scale-flip (Δ × −20, inside the 30× bound): refused on its direction (or its size) or by the probe, reported within 3 of its harmful exchanges', async () => {
    const { ids, peers, honestPairs } = await attackRun('scale-flip', { attack: 'scale-flip' }, reportedOrHarmed(), 'each honest volunteer to report the attacker');
    reportedWithin(ids.attackers, peers);
    for (const p of peers) for (const e of p.arrived) if (e.exchange.outcome !== 'paired') expect(e.exchange.rejection, p.line).toMatch(/^(delta-direction|delta-norm)$/);
    noHonestVetoed(ids);
    honestStillPair(honestPairs);
  });

  it('phi-bias (an honest Δ with φ − 4Δ, inside every distance bound): its φ is moved forward to one Δ scale behind along its Δ and ours, and it is reported (phi-lag) within 3 of the exchanges in which its φ sat behind', async () => {
    // The lag clip bounds what this φ can pull an honest peer back; the lag sum reports it
    // (src/sync/validate.ts, lagLimit); what passes is judged by the probe. Its φ − 4Δ sits behind
    // ours only as far as its own φ was not ahead already: a replica ahead of ours along the
    // attacker's Δ (lags of 0.2 were seen early in a run) loses nothing to it. So the exchanges
    // that count are those whose φ sat more than LAG_COUNTS Δ scales behind along its Δ: each
    // adds more than a third of the limit to the sum, so the third of them is a report at the latest.
    // A payload from a round behind ours has the allowance for it on top (lagAllowance).
    const { lagSlack, lagLimit } = DEFAULT_VALIDATION;
    const LAG_COUNTS = lagSlack + lagLimit / REPORT_WITHIN;
    const lagOf = (e: RoundEvent) => (e.exchange.outcome === 'paired' ? e.exchange.payload!.phiLagTheirs ?? 0 : 0);
    const countsAt = (e: RoundEvent) => LAG_COUNTS + (e.exchange.payload ? lagAllowance(DEFAULT_VALIDATION, e.exchange.round, e.exchange.payload.round) : 0);
    const counted = (es: RoundEvent[]) => es.filter((e) => reportedIn(e) || lagOf(e) > countsAt(e));
    const { ids, peers, honestPairs } = await attackRun('phi-bias', { attack: 'phi-bias' },
      (r) => [0, 1].every((i) => r.reportedBy(i) || counted(r.arrived(i)).length >= REPORT_WITHIN || r.arrived(i).length >= 3 * REPORT_WITHIN) && r.honestJudged().length >= 2,
      'each honest volunteer to report the attacker, or to get REPORT_WITHIN of its payloads well behind');
    const lags = peers.flatMap((p) => p.arrived.filter((e) => e.exchange.outcome === 'paired').map(lagOf));
    console.log(`phi-bias lags along its own Δ as received, in Δ scales: ${lags.map((x) => x.toFixed(2)).join(', ')}`);
    for (const p of peers) {
      judgedByTheRule(p);
      const behind = counted(p.arrived);
      const at = behind.findIndex(reportedIn);
      console.log(`honest volunteer: ${behind.length} of ${p.arrived.length} exchanges with the attacker had its φ behind by more than ${LAG_COUNTS.toFixed(2)} (plus the allowance for rounds behind); reported at ${at + 1}`);
      if (behind.length >= REPORT_WITHIN) {
        expect(at, p.line).toBeGreaterThanOrEqual(0);
        expect(at + 1, p.line).toBeLessThanOrEqual(REPORT_WITHIN);
      }
      // What was refused was its lag (or a Δ of its that pointed against ours by chance).
      for (const e of p.arrived) if (e.exchange.outcome !== 'paired') expect(e.exchange.rejection, p.line).toMatch(/^(phi-lag|delta-direction)$/);
    }
    // The attack is real: some of its φ arrived more than the clip's one Δ scale behind.
    expect(lags.some((x) => x > DEFAULT_VALIDATION.phiLagFactor) || lags.length === 0, lags.join(', ')).toBe(true);
    // A lag report is evidence, not a strike.
    for (const o of offences().filter((x) => ids.attackers.includes(x.accused) && x.reason.startsWith('phi-lag'))) expect(isSoftOffence(o.reason)).toBe(true);
    noHonestVetoed(ids);
    honestStillPair(honestPairs);
  });

  it('combined (Δ negated and φ − 4Δ): refused on its direction at its first exchange and reported', async () => {
    const { ids, peers, honestPairs } = await attackRun('combined', { attack: 'combined' }, reportedOrHarmed(), 'each honest volunteer to report the attacker');
    reportedWithin(ids.attackers, peers);
    for (const p of peers) for (const e of p.arrived) if (e.exchange.outcome !== 'paired') expect(e.exchange.rejection, p.line).toBe('delta-direction');
    noHonestVetoed(ids);
    honestStillPair(honestPairs);
  });

  /**
   * Judged honest exchanges a camper run waits for before it compares the camper's rounds with the
   * honest peers' rounds together. The camper meets each honest peer until its reports veto the
   * pair (a few harmful exchanges, and any of its payloads that passed), and never after; at 8
   * that could still be about even when one honest peer loaded late and met the camper alone
   * (a full-suite run under load had it so once). At 16 the honest pairs that follow the veto
   * decide it, as they would in a run of any length.
   */
  const CAMP_HONEST_JUDGED = 16;

  it('camp-mirror (never trains, always waits, sends the last partner\'s Δ negated): reported within 3 of its harmful exchanges, and paired no more often than the honest peers pair with each other', async () => {
    const { ids, peers, events, honestPairs, isAttacker } = await attackRun('camp-mirror', { attack: 'camp-mirror' }, (r) => reportedOrHarmed()(r) && r.honestJudged().length >= CAMP_HONEST_JUDGED,
      `each honest volunteer to report the camper, and ${CAMP_HONEST_JUDGED} judged honest exchanges`);
    reportedWithin(ids.attackers, peers);
    noHonestVetoed(ids);
    honestStillPair(honestPairs);
    // The camper got no more of the honest volunteers' rounds than they gave each other (the
    // issue's camper had 58 of 60 with each).
    const withCamper = events.flat().filter((e) => isAttacker(e.exchange.partner)).length;
    const withEachOther = events.flat().filter((e) => e.exchange.partner === ids.ia || e.exchange.partner === ids.ib).length;
    console.log(`${withCamper} rounds with the camper, ${withEachOther} with each other; each honest volunteer's rounds: ${JSON.stringify(events.map((es) => es.map((e) => `${e.report.round}:${isAttacker(e.exchange.partner) ? 'camper' : e.exchange.partner === null ? 'solo' : 'honest'}:${e.exchange.outcome}${e.exchange.reason ? `/${e.exchange.reason}` : ''}`)))}`);
    expect(withCamper, `${withCamper} rounds with the camper, ${withEachOther} with each other`).toBeLessThanOrEqual(withEachOther);
  });

  it('camp-null (never trains, sends its own Δ, zero, while it claims a round\'s training): refused as delta-null at every exchange, a strike reported within 3 of them (at once unless it says it is behind in rounds), and paired less than the honest peers pair with each other', async () => {
    // Before delta-null it was judged by the probe alone (a zero Δ has no cosine to refuse), and
    // in one run the honest peers had 10 rounds with it against 8 with each other.
    const { ids, peers, events, honestPairs, isAttacker } = await attackRun('camp-null', { attack: 'camp-null' }, (r) => reportedOrHarmed()(r) && r.honestJudged().length >= CAMP_HONEST_JUDGED,
      `each honest volunteer to report the camper, and ${CAMP_HONEST_JUDGED} judged honest exchanges`);
    allRefused(peers, /^delta-null$/);
    reportedWithin(ids.attackers, peers);
    const reports = offences().filter((o) => ids.attackers.includes(o.accused) && (o.reporter === ids.ia || o.reporter === ids.ib));
    console.log(`reports of the camper: ${JSON.stringify(reports)}`);
    expect(reports.length).toBeGreaterThan(0);
    // Each a strike (the pool then pairs it less, and the coordinator's veto never again), naming the bound.
    for (const o of reports) {
      expect(o.reason).toMatch(/^delta-null: \|\|Δ\|\| = 0\.00 < 0\.01 × our Δ scale /);
      expect(isSoftOffence(o.reason)).toBe(false);
    }
    noHonestVetoed(ids);
    honestStillPair(honestPairs);
    const withCamper = events.flat().filter((e) => isAttacker(e.exchange.partner)).length;
    const withEachOther = events.flat().filter((e) => e.exchange.partner === ids.ia || e.exchange.partner === ids.ib).length;
    expect(withCamper, `${withCamper} rounds with the camper, ${withEachOther} with each other`).toBeLessThan(withEachOther);
  });

  it('rejoin (Δ × −20 under a new identity every 3 rounds, from another address): each identity is refused; after VETO_AFTER reports from an address an honest volunteer meets none of its new ids', async () => {
    const { ids, peers, honestPairs } = await attackRun('rejoin', { rejoin: 'scale-flip' }, (r) => r.attackers().length >= REJOIN_IDENTITIES && r.honestJudged().length >= 2,
      `the attacker to have taken ${REJOIN_IDENTITIES} identities`);
    for (const p of peers) {
      judgedByTheRule(p);
      for (const e of p.arrived) if (e.exchange.outcome !== 'paired') expect(e.exchange.rejection, p.line).toMatch(/^(delta-direction|delta-norm)$/);
      // Its identities' payloads reached this volunteer at most VETO_AFTER times before the
      // address veto, and one more whose pairing was made before the last report arrived.
      const identities = new Set(p.arrived.map((e) => e.exchange.partner));
      console.log(`honest volunteer met ${identities.size} of the attacker's ${ids.attackers.length} identities, ${p.arrived.length} payloads`);
      expect(p.arrived.length, p.line).toBeLessThanOrEqual(VETO_AFTER + 1);
      const reports = offences().filter((o) => o.reporter === p.id && ids.attackers.includes(o.accused));
      expect(reports.length, p.line).toBe(p.arrived.filter(reportedIn).length);
    }
    noHonestVetoed(ids);
    honestStillPair(honestPairs);
  });

  it('poison-state (trains honestly, serves φ negated plus noise to newcomers and to the checkpoint pull): a newcomer refuses it, reports it and joins from a good source; the coordinator refuses its upload and lists only honest ones', async () => {
    // A newcomer waits up to 20 s for a neighbour's state: time for its link to the poisoner to
    // open (a link that fails to open within 10 s is tried again).
    const base = { ...(await createRun('poison')), bootstrapTimeoutMs: 20_000 };
    const poisoner = runVolunteer(base, { ...components, createBackend: hostileFactory('poison-state') });
    volunteers.push(poisoner);
    const ik = (await poisoner.joined).peerId;
    let kRounds = 0;
    poisoner.onRound(() => { kRounds++; });
    const events = () => s.c.db.prepare("SELECT kind, peer_id AS peerId, data_json AS data FROM events WHERE run_id = 'poison' AND kind IN ('checkpoint-saved', 'checkpoint-failed') ORDER BY id").all() as { kind: string; peerId: string; data: string }[];
    const badState = (reporter: string) => offences().some((o) => o.reporter === reporter && o.accused === ik && o.reason.startsWith('bad-state'));
    // Alone first (60 inner steps; its poisoned φ measures 21 to 32 against a bound of
    // ln 256 + 0.5 = 6.05), so the first honest newcomer has only it to ask.
    await until(() => kRounds >= 6 || whileRunning([poisoner], ['poisoner'])(), 120_000, 'the poisoner to train six rounds alone');
    // Three clients (127.0.0.1, .3, .4): exchanges within one address never take a peer off probation.
    const a = runVolunteer(base, { ...components, WebSocket: webSocketFrom('127.0.0.3') });
    volunteers.push(a);
    const ja = await a.joined;
    // Refused and reported; with no other peer and no checkpoint yet, a fresh start.
    expect(ja.source).toBe('fresh');
    await until(() => badState(ja.peerId), 30_000, 'the newcomer to report the poisoned state');
    const b = runVolunteer(base, { ...components, WebSocket: webSocketFrom('127.0.0.4') });
    volunteers.push(b);
    const jb = await b.joined;
    const running = whileRunning([poisoner, a, b], ['poisoner', 'honest a', 'honest b']);
    // The three train until all are off probation (accepted exchanges), eligible for checkpoint duty.
    const rounds = { poisoner: 0, a: 0, b: 0 };
    poisoner.onRound(() => { rounds.poisoner++; });
    a.onRound(() => { rounds.a++; });
    b.onRound(() => { rounds.b++; });
    const three = { poisoner: ik, a: ja.peerId, b: jb.peerId };
    await until(() => Object.values(three).every((p) => s.c.hub.eligibleForDuty(p)) || running(), 300_000,
      () => `all three to be eligible for checkpoint duty: accepted exchanges ${JSON.stringify(Object.fromEntries(Object.entries(three).map(([k, p]) => [k, s.c.hub.acceptedExchanges(p)])))}, rounds since ${JSON.stringify(rounds)}, reports ${JSON.stringify(offences().filter((o) => Object.values(three).includes(o.reporter)))}`);
    // The coordinator asks a random eligible peer each time: until it refused the poisoner's
    // upload, and one honest upload is listed (a refused peer is never asked again). A state of
    // its that measured within the bound (φ negated alone did, 5.44 against ln 256 + 0.5 with no
    // checkpoint yet and 3.67 against an honest 3.22 + 0.5) would have been saved; the refusal
    // withdraws whatever it saved before (server.checkpoint-validate tests that on its own).
    const listed = async () => (await s.c.app.inject({ method: 'GET', url: '/api/runs/poison/checkpoints' })).json().checkpoints as { id: string; peerId: string; valLoss: number }[];
    const refused = () => events().some((e) => e.peerId === ik && e.kind === 'checkpoint-failed' && (JSON.parse(e.data) as { rejected?: boolean }).rejected === true);
    for (let k = 0; k < 40 && !(refused() && (await listed()).some((c) => c.peerId !== ik)); k++) {
      const n = events().length;
      const r = await s.c.app.inject({ method: 'POST', url: '/api/runs/poison/checkpoints', headers: s.admin });
      expect(r.statusCode, r.body).toBe(202);
      await until(() => events().length > n || running(), 60_000, 'the checkpoint pull to end');
    }
    const all = events().map((e) => ({ kind: e.kind, peerId: e.peerId, ...(JSON.parse(e.data) as { id?: string; reason?: string; rejected?: boolean; valLoss?: number }) }));
    console.log(`checkpoint pulls: ${JSON.stringify(all)}`);
    // The poisoner's last upload was refused, and it was asked no more.
    const fromPoisoner = all.filter((e) => e.peerId === ik);
    expect(fromPoisoner.at(-1), JSON.stringify(all)).toEqual(expect.objectContaining({ kind: 'checkpoint-failed', rejected: true }));
    expect(fromPoisoner.filter((e) => e.kind === 'checkpoint-failed' && e.rejected === true)).toHaveLength(1);
    // Anything of it saved before was withdrawn; the list holds honest uploads only.
    const withdrawn = (s.c.db.prepare("SELECT data_json AS d FROM events WHERE run_id = 'poison' AND kind = 'checkpoint-deleted'").all() as { d: string }[]).map((e) => (JSON.parse(e.d) as { id: string }).id);
    for (const e of fromPoisoner.filter((x) => x.kind === 'checkpoint-saved')) expect(withdrawn).toContain(e.id);
    const list = await listed();
    for (const c of list) expect([ja.peerId, jb.peerId]).toContain(c.peerId);
    expect(list.length, JSON.stringify(all)).toBeGreaterThan(0);
    // The next newcomer meets only the poisoner live (the honest two leave): it refuses the state,
    // reports it, and joins from the newest checkpoint (an honest upload).
    await Promise.all([a.stop('test over'), b.stop('test over')]);
    await until(() => s.c.hub.livePeers('poison').length === 1, 30_000, 'the honest two to leave');
    const log: string[] = [];
    const keep = (level: string) => (msg: string, f?: Record<string, unknown>) => { log.push(`${level} ${msg} ${JSON.stringify(f ?? {})}`); };
    const c = runVolunteer(base, { ...components, logger: { debug() {}, info: keep('info'), warn: keep('warn'), error: keep('error') } });
    volunteers.push(c);
    const jc = await c.joined;
    expect(jc.source, log.join('\n')).toBe('checkpoint');
    await until(() => badState(jc.peerId), 30_000, `the second newcomer to report the poisoned state; its log:\n${log.join('\n')}`);
    // And it trains on, never crashed.
    let cRounds = 0;
    c.onRound(() => { cRounds++; });
    await until(() => cRounds >= 1 || whileRunning([c], ['newcomer'])(), 120_000, 'the newcomer to finish a round');
    await Promise.all([poisoner.stop('test over'), c.stop('test over')]);
    expect((await c.done).reason).toMatch(/test over/);
  });
});
