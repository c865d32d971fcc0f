// What the dashboard counts of the peers' claims about their own speed and progress, by what
// the coordinator knows of each id (GET /peers: PeerStanding). A report's tokensPerS and step
// are the peer's own claims, checked by nobody: one new id inside the report bounds
// (server/report-bounds.ts) claimed 1,024,000 tokens/s beside three honest peers' 6,300 and made
// the run's total 1,030,300, and its steps stretched the loss charts' x-axis to 16 times the
// honest peers'. The coordinator cannot measure a peer's speed (and fast GPUs honestly run 20
// times a laptop's), but it knows which ids are off probation (accepted exchanges with partners
// of other addresses, server/peers.ts), which ids share a client address, and the step the run
// agrees on (stepConsensus). So (docs/design.md section 6, "Claims the dashboard counts"):
// - the run's tokens/s sums the claims of ids off probation, each client address once (the
//   lower median of its ids' claims), unless every one of them is at one address (a lab or a
//   local run, where the coordinator lets ids vouch for each other too); ids on probation, and
//   ids the coordinator never listed, are shown beside it, not in it;
// - while nobody is off probation, every site (an IPv6 /48, whose /64s are cheap to have many
//   of; an IPv4 address) counts once, at the lower median of the sites' claims: the total is
//   that times the number of sites, an estimate one liar moves by one rank at most (as
//   stepVotes has every site vote then);
// - the loss charts' step (and tokens) axis reaches the furthest step of an id off probation and
//   two rounds past the agreed step (with nobody off probation yet, twice the agreed step); a
//   claim past that is left out of the chart and counted beside it, never allowed to set the axis.

/** A peer's standing as the coordinator last listed it. */
export interface Standing {
  /** Off probation: the coordinator counted its accepted exchanges. */
  vouched: boolean;
  /** Opaque: ids of one client address share it. */
  client: string;
  /** Opaque: ids of one site (an IPv6 /48; an IPv4 address is its own) share it. */
  site: string;
}

export interface Claim {
  tokensPerS: number;
  vouched: boolean;
  client: string;
  site: string;
}

export type ThroughputBasis = 'vouched' | 'every-client';

export interface ThroughputCount {
  basis: ThroughputBasis;
  /** The run's tokens/s as counted (with basis 'every-client', an estimate). */
  tokensPerS: number;
  /** Ids and client addresses counted. */
  peers: number;
  clients: number;
  /** Ids whose claims were left out (on probation, or never listed by the coordinator), and what they claim together. */
  unvouched: { peers: number; tokensPerS: number };
}

export const EMPTY_COUNT: ThroughputCount = { basis: 'every-client', tokensPerS: 0, peers: 0, clients: 0, unvouched: { peers: 0, tokensPerS: 0 } };

function lowerMedian(xs: number[]): number {
  xs.sort((a, b) => a - b);
  return xs[(xs.length - 1) >> 1]!;
}

/**
 * The run's throughput from the claims of its live peers. `basis` 'vouched' when the coordinator
 * lists anyone off probation (whether or not that peer has reported lately), else 'every-client'.
 */
export function countThroughput(claims: readonly Claim[], basis: ThroughputBasis): ThroughputCount {
  const byClient = new Map<string, number[]>();
  let peers = 0, unvouchedPeers = 0, unvouchedTps = 0;
  for (const c of claims) {
    if (basis === 'vouched' && !c.vouched) { unvouchedPeers++; unvouchedTps += c.tokensPerS; continue; }
    peers++;
    // The estimate groups by site: a /48's many /64s would otherwise set both its median and
    // its multiplier. Vouched claims group by client address (one site may hold many honest users).
    const key = basis === 'every-client' ? c.site : c.client;
    const list = byClient.get(key);
    if (list) list.push(c.tokensPerS); else byClient.set(key, [c.tokensPerS]);
  }
  const unvouched = { peers: unvouchedPeers, tokensPerS: unvouchedTps };
  if (byClient.size === 0) return { basis, tokensPerS: 0, peers: 0, clients: 0, unvouched };
  if (basis === 'every-client') {
    const perClient = [...byClient.values()].map(lowerMedian);
    return { basis, tokensPerS: byClient.size * lowerMedian(perClient), peers, clients: byClient.size, unvouched };
  }
  // One address only: a lab or a local run, whose ids the coordinator lets vouch for each other.
  if (byClient.size === 1) {
    const [only] = byClient.values();
    return { basis, tokensPerS: only!.reduce((a, b) => a + b, 0), peers, clients: 1, unvouched };
  }
  let total = 0;
  for (const list of byClient.values()) total += lowerMedian(list);
  return { basis, tokensPerS: total, peers, clients: byClient.size, unvouched };
}

/**
 * The furthest step the loss charts' step and tokens axes reach. With an id off probation: its
 * furthest step (fast GPUs honestly run far ahead of the agreed step, and those that do are off
 * probation after a few rounds), and at least two rounds (2H) past the agreed step, which the
 * dashboard asks again only every 15 s. With none yet (the first rounds of a run):
 * max(2 × agreed, agreed + 2H), room for the faster honest peers then. Infinity with neither:
 * nothing to bound by.
 */
export function stepDomainEnd(furthestVouched: number | null, agreed: number | null, H: number): number {
  if (furthestVouched !== null) return agreed === null ? furthestVouched : Math.max(furthestVouched, agreed + 2 * H);
  return agreed === null ? Infinity : Math.max(2 * agreed, agreed + 2 * H);
}
