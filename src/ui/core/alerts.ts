// Alert rules for the research dashboard, as pure functions of what the dashboard already
// holds. Each rule returns the alerts active now; the controller keeps them keyed by `key`, so
// an alert is raised once and cleared when its condition goes away (except NaN, which stays
// until dismissed: a NaN once seen means the run's weights may be poisoned; and offender reports,
// which are facts about the past: a peer that sent junk once is not cleared by going quiet).
import { offenderReason } from './events.ts';

export type AlertKind = 'nan' | 'divergence' | 'stall' | 'throughput' | 'offender' | 'checkpoint' | 'connectivity';
export type Severity = 'critical' | 'warning';

export interface Alert {
  key: string;
  kind: AlertKind;
  severity: Severity;
  peerId: string | null;
  /** When the condition was first seen (ms since epoch). */
  t: number;
  message: string;
}

export interface LossPoint { t: number; step: number; trainLoss: number | null; valLoss: number | null }

export const ALERT_DEFAULTS = {
  /** A peer diverges when its smoothed loss stays this many times above its best for `divergeReports`. */
  divergeFactor: 1.5,
  /** ... and at least this much above it in absolute terms (nats), so a loss near 0 is not flagged. */
  divergeMin: 0.5,
  divergeReports: 3,
  divergeSmoothing: 0.6,
  /** A live peer whose step has not moved for this long is stalled. */
  stallMs: 120_000,
  /** Total tokens/s below this fraction of its recent median is a throughput drop. */
  dropFraction: 0.5,
  /** Window the recent median is taken over, and the recent window compared against it. */
  dropBaselineMs: 300_000,
  dropRecentMs: 30_000,
};
export type AlertConfig = typeof ALERT_DEFAULTS;

/** A non-finite loss in any report (a finite loss past MAX_LOSS arrives as Infinity). */
export function nanAlerts(peerId: string, points: LossPoint[]): Alert[] {
  for (const p of points) {
    for (const [name, v] of [['training', p.trainLoss], ['validation', p.valLoss]] as const) {
      if (v !== null && !Number.isFinite(v)) {
        return [{
          key: `nan:${peerId}`, kind: 'nan', severity: 'critical', peerId, t: p.t,
          // Volunteers send a finite loss past 10,000 as Infinity too (lossToWire): it diverged all the same.
          message: `${peerId} reported ${Number.isNaN(v) ? `a NaN ${name} loss` : `an infinite ${name} loss (or one past 10,000, sent as Infinity)`} at step ${p.step}. ` +
            'Its weights may be corrupt and can spread to partners at the next exchange; check its adapter and the learning rate.',
        }];
      }
    }
  }
  return [];
}

/** The peer's smoothed training loss has risen well above its best for several reports in a row. */
export function divergenceAlerts(peerId: string, points: LossPoint[], cfg: AlertConfig = ALERT_DEFAULTS): Alert[] {
  let ema: number | null = null;
  let best = Infinity;
  let above = 0;
  let since = 0;
  for (const p of points) {
    const v = p.trainLoss;
    if (v === null || !Number.isFinite(v)) continue;
    ema = ema === null ? v : cfg.divergeSmoothing * ema + (1 - cfg.divergeSmoothing) * v;
    const bad = ema > best * cfg.divergeFactor && ema - best > cfg.divergeMin;
    if (bad) { if (above++ === 0) since = p.t; } else above = 0;
    best = Math.min(best, ema);
  }
  if (above < cfg.divergeReports || ema === null) return [];
  return [{
    key: `divergence:${peerId}`, kind: 'divergence', severity: 'warning', peerId, t: since,
    message: `${peerId} is diverging: smoothed training loss ${ema.toFixed(3)} vs its best ${best.toFixed(3)} ` +
      `for ${above} reports. Lower the learning rate or check its data.`,
  }];
}

export interface PeerProgress { peerId: string; step: number; lastSeen: number; stepChangedAt: number }

/** Peers still reporting whose step has not moved for stallMs. */
export function stallAlerts(peers: PeerProgress[], now: number, liveMs: number, cfg: AlertConfig = ALERT_DEFAULTS): Alert[] {
  const out: Alert[] = [];
  for (const p of peers) {
    if (now - p.lastSeen > liveMs) continue; // gone, not stalled: the grid shows it as stale
    if (now - p.stepChangedAt < cfg.stallMs) continue;
    out.push({
      key: `stall:${p.peerId}`, kind: 'stall', severity: 'warning', peerId: p.peerId, t: p.stepChangedAt + cfg.stallMs,
      message: `${p.peerId} is connected but stuck at step ${p.step} for ${Math.round((now - p.stepChangedAt) / 1000)} s ` +
        '(paused by its volunteer, waiting for a partner, or its GPU hung).',
    });
  }
  return out;
}

export interface RatePoint { t: number; tokensPerS: number }

/** Total tokens/s over the last dropRecentMs is below dropFraction of its median over dropBaselineMs before. */
export function throughputAlerts(total: RatePoint[], now: number, cfg: AlertConfig = ALERT_DEFAULTS): Alert[] {
  const recent = total.filter((p) => p.t > now - cfg.dropRecentMs);
  const base = total.filter((p) => p.t <= now - cfg.dropRecentMs && p.t > now - cfg.dropRecentMs - cfg.dropBaselineMs);
  // Too little history is no baseline: a run that just started has nothing to drop from.
  if (recent.length < 2 || base.length < 5) return [];
  const sorted = base.map((p) => p.tokensPerS).sort((a, b) => a - b);
  const baseline = sorted[sorted.length >> 1]!;
  const now_ = recent.reduce((s, p) => s + p.tokensPerS, 0) / recent.length;
  if (baseline <= 0 || now_ >= baseline * cfg.dropFraction) return [];
  return [{
    key: 'throughput', kind: 'throughput', severity: 'warning', peerId: null, t: recent[0]!.t,
    message: `Throughput dropped to ${Math.round(now_)} tokens/s, ${Math.round((100 * now_) / baseline)}% of the ` +
      `recent median ${Math.round(baseline)} tokens/s: volunteers left, paused, or are throttled.`,
  }];
}

/**
 * A peer-offender event: `reporter` rejected a payload from `accused` (reason "code: detail").
 * `paired`: the coordinator checked the reporter was one of the accused's partners.
 */
export interface OffenderReport { t: number; reporter: string; accused: string; reason: string; paired?: boolean }

const cut = (s: string, n: number) => (s.length > n ? `${s.slice(0, n - 1)}…` : s);

/**
 * How many distinct reasons an offender alert names, and how long each may be: the known codes'
 * words are under 50 characters; an unknown code (up to 300) is the reporter's own text, and 40
 * ids of one client, each with a sentence, made one critical alert of 12 KB.
 */
const REASONS_SHOWN = 3;
const REASON_CHARS = 80;

/**
 * One alert per peer reported for a bad update, naming it and why. One report can be a glitch
 * (a bit flip, a driver hiccup); reports from two or more peers are independent evidence of a
 * broken GPU or a hostile volunteer, and raise it to critical, but only from peers the
 * coordinator checked were paired with the accused: ids that never met it prove nothing.
 */
export function offenderAlerts(reports: OffenderReport[]): Alert[] {
  const byAccused = new Map<string, OffenderReport[]>();
  for (const r of reports) {
    const list = byAccused.get(r.accused);
    if (list) list.push(r); else byAccused.set(r.accused, [r]);
  }
  const out: Alert[] = [];
  for (const [accused, list] of byAccused) {
    const isStall = (r: OffenderReport) => offenderReason(r.reason).code === 'stall';
    // A stall judged no update (no payload came): its reporter is no witness of a bad one, so the
    // alert's count, names and reasons are those of the reports that judged an update.
    const judged = list.filter((r) => !isStall(r));
    const first = list.reduce((a, b) => (b.t < a.t ? b : a));
    const stallers = [...new Set(list.filter(isStall).map((r) => r.reporter))];
    // What each reporter said, in the words of a known code, or an unknown one as it came: a
    // reporter is any peer, so a few of them, each cut, and a count of the rest (REASONS_SHOWN).
    const sayOf = (rs: OffenderReport[]) => {
      const words = [...new Set(rs.map((r) => cut(offenderReason(r.reason).words, REASON_CHARS)))];
      const said = words.length > REASONS_SHOWN
        ? `${words.slice(0, REASONS_SHOWN).join('; ')}; and ${words.length - REASONS_SHOWN} other reason${words.length - REASONS_SHOWN === 1 ? '' : 's'}`
        : words.join('; ');
      return { words, said };
    };
    // Only stalls (no payload by the deadline, twice in a row): no update was judged, and an
    // honest slow link stalls too, so a warning that says so, however many partners report it.
    if (judged.length === 0) {
      out.push({
        key: `offender:${accused}`, kind: 'offender', severity: 'warning', peerId: accused, t: first.t,
        message: `${accused} stalled ${stallers.length === 1 ? stallers[0] : `${stallers.length} peers`}: ${sayOf(list).said}. ` +
          'No update of it was judged; the pool pairs them elsewhere for a while. A slow link does this; a peer that keeps it up holds its partners back.',
      });
      continue;
    }
    const reporters = [...new Set(judged.map((r) => r.reporter))];
    const { words, said } = sayOf(judged);
    const detail = offenderReason(judged[judged.length - 1]!.reason).detail;
    const many = new Set(judged.filter((r) => r.paired === true).map((r) => r.reporter)).size >= 2;
    const stalled = stallers.length === 0 ? ''
      : ` ${stallers.length === 1 ? stallers[0] : `${stallers.length} peers`} reported it stalling too.`;
    out.push({
      key: `offender:${accused}`, kind: 'offender', severity: many ? 'critical' : 'warning', peerId: accused, t: first.t,
      message: (many
        ? `${accused} sent bad updates to ${reporters.length} peers (${reporters.slice(0, 3).join(', ')}${reporters.length > 3 ? ', …' : ''}): ` +
          `${said}. They rejected them and no longer pair with it. Independent reports point to a broken GPU or a hostile volunteer.`
        : `${accused} sent ${reporters[0]} a bad update: ${words[0]}${detail ? ` (${cut(detail, 120)})` : ''}. ` +
          'It was rejected and the two are no longer paired; more reports about this peer would mean a broken GPU or a hostile volunteer.') + stalled,
    });
  }
  return out;
}

/** A checkpoint attempt as the run events tell it: saved (with its step) or failed (with why). */
export interface CheckpointOutcome { t: number; ok: boolean; peerId: string | null; step: number | null; reason: string | null }

/**
 * Checkpoints that failed since the last one saved; cleared once a newer one is saved.
 * `outcomes` in time order. Three failures in a row are critical: a restart would lose
 * everything since the last saved one.
 */
export function checkpointAlerts(outcomes: CheckpointOutcome[]): Alert[] {
  let lastOk = -1;
  for (let i = outcomes.length - 1; i >= 0; i--) if (outcomes[i]!.ok) { lastOk = i; break; }
  const fails = outcomes.slice(lastOk + 1);
  if (fails.length === 0) return [];
  const first = fails[0]!, last = fails[fails.length - 1]!;
  const saved = lastOk >= 0 ? outcomes[lastOk]! : null;
  return [{
    key: `checkpoint:${first.t}`, kind: 'checkpoint', severity: fails.length >= 3 ? 'critical' : 'warning', peerId: last.peerId, t: first.t,
    message: `Checkpoint from ${last.peerId ?? 'a peer'} failed: ${cut(last.reason ?? 'no reason given', 160)}. ` +
      (fails.length > 1 ? `${fails.length} failures in a row. ` : '') +
      (saved ? `The newest saved checkpoint is at step ${saved.step ?? '?'}: a peer joining with no live peer to copy would start there. `
        : 'No checkpoint has been saved yet: a peer joining with no live peer to copy would start from scratch. ') +
      'Training goes on; the next scheduled checkpoint asks a peer chosen at random among the eligible ones.',
  }];
}

/**
 * Peers whose WebRTC links keep failing: every outer step they take is a solo step, which is
 * local training, and nothing in their losses shows it. One warning per peer, with the reason
 * the volunteer itself measured (e.g. "no TURN server is configured").
 */
export function connectivityAlerts(failing: { peerId: string; reason: string }[], now: number): Alert[] {
  return failing.map(({ peerId, reason }) => ({
    key: `connectivity:${peerId}`, kind: 'connectivity', severity: 'warning', peerId, t: now,
    message: `${peerId} cannot open WebRTC links to its partners, so it trains alone: ${cut(reason, 240)}`,
  }));
}
