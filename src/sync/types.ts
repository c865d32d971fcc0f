// Public types of the mesh: its settings, its events, and what an outer exchange returns.
import type { CandidateType } from '../protocol/messages.ts';
import type { CompressionSetting, DeadlineSettings } from '../protocol/exchange-link.ts';
import type { ValidationSettings } from './validate.ts';

export interface MeshInit {
  /** The run every peer of this mesh trains; frames of other runs are refused. */
  runId: string;
  /** configHash() of the model, layout and outer settings: peers exchange only on a match. */
  configHash: string;
  /** Floats in φ and in Δ (the layout's total). */
  elements: number;
  /** Bounded random neighbour set (default 4..8). */
  neighbours?: { min?: number; max?: number };
  /** Replace one random neighbour this often, so partners found without the coordinator stay random. */
  rewireMs?: number;
  /** Housekeeping period: fill up to min neighbours, trim to max, time out stuck connections. */
  maintainMs?: number;
  /** A WebRTC connection not open after this is abandoned. */
  connectTimeoutMs?: number;
  /** Chunk payload bytes (default: the most that keeps a frame within 64 KiB). */
  chunkSize?: number;
  /** A sender waits while its data channel holds more than this (default 1 MiB). */
  highWaterBytes?: number;
  deadline?: Partial<DeadlineSettings>;
  /** How long past the pool wait to wait for the coordinator's answer before going solo. */
  coordinatorGraceMs?: number;
  /** Without the coordinator: how long a pairing request to a neighbour may go unanswered. */
  pairRequestTimeoutMs?: number;
  validation?: Partial<ValidationSettings>;
  /** Rejections before a peer is cut off (default 2: one may be a fluke, two is a pattern). */
  banAfter?: number;
  /** Wire encodings; off (f32) by default. Include it in the config hash so peers agree. */
  compression?: Partial<CompressionSetting>;
  iceServers?: RTCIceServer[];
}

/** What a replica hands to the mesh at an outer step (both are copied before use). */
export interface OuterPayload {
  /** Slow weights φ_i (value at the last outer step). */
  phi: Float32Array;
  /** Local progress Δ_i = θ_i − φ_i. */
  delta: Float32Array;
}

/** A partner's payload that passed every check; safe to hand to the outer step. */
export interface PartnerPayload {
  peer: string;
  /** The partner's own outer round (rounds drift: there is no barrier). */
  round: number;
  phi: Float32Array;
  /** Clipped to κ × the recent median norm when it was larger. */
  delta: Float32Array;
  deltaNorm: number;
  phiDistance: number;
  clipped: boolean;
  /** cos(Δ_j, our own Δ of the round), before clipping; null when either was zero; absent when no validator saw it. */
  deltaCosine?: number | null;
  /** cos(φ_j − φ_i, our own Δ of the round): negative when the partner's φ sits behind us along our progress. */
  phiCosine?: number | null;
  /** How far φ_j sat behind ours along our Δ, in Δ scales, as received; moved forward to the validator's phiLagFactor when more. */
  phiLag?: number | null;
  /** How far φ_j sat behind ours along the partner's own Δ, in Δ scales, as received. */
  phiLagTheirs?: number | null;
}

export type SoloReason =
  | 'no-partner'          // the pool or our neighbours had nobody ready within the wait
  | 'no-identity'         // the coordinator never accepted us, so we have no peer id
  | 'coordinator-timeout' // the coordinator did not answer our ready in time
  | 'banned-partner'      // we were paired with a peer we cut off
  | 'connect-failed'      // no WebRTC connection to the partner in time
  | 'deadline'            // the partner's payload did not arrive before the deadline
  | 'partner-gone'        // the link closed mid-exchange
  | 'partner-aborted'     // the partner gave up (its own deadline, or it rejected us)
  | 'rejected';           // the partner's payload failed validation

export interface ExchangeResult {
  round: number;
  outcome: 'paired' | 'solo';
  /** Who we paired with (even if the exchange then failed); null if nobody. */
  partner: string | null;
  /** The validated payload; non-null exactly when outcome is 'paired'. */
  payload: PartnerPayload | null;
  reason: SoloReason | null;
  /** Error code of the rejection (validator reason or FrameError code), when reason is 'rejected'. */
  rejection: string | null;
  /** A rejection that was no offence (a single Δ mildly against ours from a proven partner, or no Δ scale of ours to judge by): not reported. */
  unreported?: boolean;
  via: 'coordinator' | 'direct' | null;
  /** Time to find a partner, to receive its payload, and in all. */
  pairMs: number;
  transferMs: number;
  elapsedMs: number;
  /** Upper bound this exchange was allowed (pairing wait + connect + transfer deadline). */
  budgetMs: number;
  /** Wire bytes (frames with headers) we queued for the partner and received from it. */
  bytesSent: number;
  bytesReceived: number;
  /** The link to the partner: ICE's chosen candidate types and its time to open (null: none opened). */
  link?: { local: CandidateType; remote: CandidateType; connectMs: number | null } | null;
  /** Why the link to the partner did not open, when reason is 'connect-failed'. */
  linkError?: string | null;
  /** The coordinator said the partner is on probation (judge its update with the strict margin). */
  probation?: boolean;
}

export interface Offence {
  peer: string;
  /** Validator reason ('non-finite', 'delta-norm', ...) or FrameError/hello code. */
  code: string;
  detail: string;
  strikes: number;
  cutOff: boolean;
}

/** State a new peer pulls to join a run mid-way. */
export interface BootState {
  from: string;
  phi: Float32Array;
  /** Outer momentum m. */
  momentum: Float32Array;
  outerRound: number;
  /** Inner step counter: the LR schedule continues from here. */
  innerStep: number;
}

/** Supplies a snapshot of our state when a new peer asks for it (copies: we send them later). */
export type StateProvider = () => Promise<Omit<BootState, 'from'> | null> | Omit<BootState, 'from'> | null;

export interface MeshEvents {
  'neighbour:up': { peer: string };
  'neighbour:down': { peer: string; reason: string };
  exchange: ExchangeResult;
  offence: Offence;
  coordinator: { up: boolean };
  'state:served': { peer: string; bytes: number };
}

export interface MeshStats {
  neighbours: number;
  connecting: number;
  banned: string[];
  exchanges: number;
  paired: number;
  solo: number;
  bytesSent: number;
  bytesReceived: number;
  /** Current transfer-deadline estimate for one exchange, ms. */
  deadlineMs: number;
  /** WebRTC links that opened, and that failed to open (connect timeout, ICE failure). */
  linksOpened: number;
  linkFailures: number;
  /** Why the most recent link failed to open (describeLinkFailure), null if none has. */
  lastLinkError: string | null;
}
