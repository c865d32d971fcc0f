// How a run's volunteers reach each other, from their reports: exchanges over direct links vs
// through a TURN relay, links that failed to open and why, and the peers whose links keep
// failing (they train alone, and someone should tell them why). Pure functions of reports.
import type { MetricReport } from '../ports.ts';

/** Reports in a row without a partner, while links fail, after which a peer is flagged. */
export const FAILING_AFTER = 3;

export interface ConnectivityView {
  direct: number;
  relayed: number;
  /** relayed / (direct + relayed); null before any exchange named its link. */
  relayFraction: number | null;
  linkFailures: number;
  /** Why links failed, most frequent first (at most 5). */
  reasons: { reason: string; count: number }[];
  /** Peers whose links keep failing: the reason of their last failure. */
  failing: { peerId: string; reason: string }[];
}

/** What the view keeps per peer between reports (a few fields, not the reports). */
export interface PeerLinkState { soloInARow: number; failedSinceLinked: boolean; lastError: string | null }

export function emptyConnectivity(): ConnectivityView {
  return { direct: 0, relayed: 0, relayFraction: null, linkFailures: 0, reasons: [], failing: [] };
}

export function newPeerLinkState(): PeerLinkState {
  return { soloInARow: 0, failedSinceLinked: false, lastError: null };
}

/** One report's link outcome folded into its peer's state (the dashboard's, or the page's own). */
export function notePeerLinks(peer: PeerLinkState, r: Pick<MetricReport, 'partner' | 'linkFailures' | 'linkError'>): void {
  if ((r.linkFailures ?? 0) > 0) {
    peer.failedSinceLinked = true;
    if (r.linkError) peer.lastError = r.linkError;
  }
  if (r.partner) { peer.soloInARow = 0; peer.failedSinceLinked = false; } else peer.soloInARow++;
}

/** Why this peer's links keep failing, or null: links failed and none of its last rounds paired. */
export function failingLinks(peer: PeerLinkState): string | null {
  return peer.failedSinceLinked && peer.soloInARow >= FAILING_AFTER ? (peer.lastError ?? 'links to partners do not open') : null;
}

/** Folds one report into the run's counters and its peer's link state. */
export function ingestLinks(view: ConnectivityView, reasons: Map<string, number>, peer: PeerLinkState, r: MetricReport): void {
  if (r.linkLocal && r.linkRemote) {
    if (r.linkLocal === 'relay' || r.linkRemote === 'relay') view.relayed++; else view.direct++;
  }
  const failures = r.linkFailures ?? 0;
  if (failures > 0) {
    view.linkFailures += failures;
    if (r.linkError) {
      reasons.set(r.linkError, (reasons.get(r.linkError) ?? 0) + failures);
      // Peer-supplied text: the map of reasons stays bounded whatever a client sends.
      if (reasons.size > 200) reasons.delete(reasons.keys().next().value!);
    }
  }
  notePeerLinks(peer, r);
}

/** The view's derived parts: shares, top reasons, flagged peers. */
export function finishConnectivity(view: ConnectivityView, reasons: Map<string, number>, peers: Map<string, PeerLinkState>, live: (id: string) => boolean): ConnectivityView {
  const total = view.direct + view.relayed;
  return {
    ...view,
    relayFraction: total > 0 ? view.relayed / total : null,
    reasons: [...reasons].map(([reason, count]) => ({ reason, count })).sort((a, b) => b.count - a.count || a.reason.localeCompare(b.reason)).slice(0, 5),
    failing: [...peers].filter(([id, p]) => live(id) && failingLinks(p) !== null)
      .map(([peerId, p]) => ({ peerId, reason: failingLinks(p)! })),
  };
}
