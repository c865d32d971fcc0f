// The headless volunteer's side of the one outer round (src/round/outer-round.ts, which the
// page's TrainingController runs too): the mesh and a Replica as RoundPorts. The mesh's full
// ExchangeResult (outcome, reason, timings) stays available to the caller's log.
import { MAX_LINK_ERROR, type ReportFields } from '../protocol/messages.ts';
import type { Mesh } from '../sync/mesh.ts';
import type { Replica } from '../sync/replica.ts';
import type { ExchangeResult, OuterPayload, PartnerPayload } from '../sync/types.ts';
import { runOuterRound as outerRound, type LinkFields, type RoundInput } from '../round/outer-round.ts';
import type { ProbeLosses, ProbeVerdict } from '../round/probe.ts';

export type { InnerLoopStats, RoundInput as RoundContext } from '../round/outer-round.ts';

export interface RoundOutcome {
  exchange: ExchangeResult;
  waitMs: number;
  report: ReportFields;
  /** The probe's verdict on the partner's update; null: no partner (or no probe). */
  probe: ProbeVerdict | null;
}

/** A replica that can also evaluate the probe's two candidates (src/volunteer/backend.ts). */
export interface ProbingReplica extends Replica {
  probe?(partner: PartnerPayload): Promise<ProbeLosses>;
}

/** Link failures of each mesh already counted in a report: each report carries the new ones. */
const reportedFailures = new WeakMap<Pick<Mesh, 'stats'>, number>();

/** The report's connectivity fields: the exchange's link, and links that failed since the last report. */
export function linkFields(mesh: Pick<Mesh, 'stats'>, exchange: Pick<ExchangeResult, 'link' | 'linkError'>): LinkFields {
  const s = mesh.stats();
  const failures = s.linkFailures - (reportedFailures.get(mesh) ?? 0);
  reportedFailures.set(mesh, s.linkFailures);
  const error = exchange.linkError ?? (failures > 0 ? s.lastLinkError : null);
  return {
    linkLocal: exchange.link?.local ?? null,
    linkRemote: exchange.link?.remote ?? null,
    connectMs: exchange.link?.connectMs ?? null,
    linkFailures: Math.min(failures, 100_000),
    linkError: error === null ? null : error.slice(0, MAX_LINK_ERROR),
  };
}

export async function runOuterRound(mesh: Mesh, replica: ProbingReplica, ctx: RoundInput): Promise<RoundOutcome> {
  let full: ExchangeResult | null = null;
  const out = await outerRound<OuterPayload | PartnerPayload>({
    outerPayload: () => replica.outerPayload(),
    exchange: async (round, mine, waitMs) => {
      const r = full = await mesh.exchange(round, mine, { waitMs });
      return {
        partner: r.payload ? r.partner : null, payload: r.payload, partnerDist: r.payload ? r.payload.phiDistance : null,
        bytesIn: r.bytesReceived, bytesOut: r.bytesSent, solo: r.payload ? null : r.reason ?? 'no-partner', link: linkFields(mesh, r),
        ...(r.probation ? { probation: true } : {}), ...(r.payload ? { partnerRound: r.payload.round } : {}),
      };
    },
    // Only the exchange's own payloads come back here: validated partner payloads.
    applyOuter: (partners) => replica.applyOuter(partners as PartnerPayload[]),
    ...(replica.probe ? { probe: (p: OuterPayload | PartnerPayload) => replica.probe!(p as PartnerPayload) } : {}),
    reportOffence: (peer, code, detail) => mesh.reportOffence(peer, code, detail),
  }, ctx);
  return { exchange: full!, waitMs: out.waitMs, report: out.report, probe: out.probe };
}
