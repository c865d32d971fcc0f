// The coordinator's WebSocket protocol: every frame is one JSON object with a type tag `t`.
// Types, JSON schemas and the validators live together so the server, the browser client and
// the headless client accept exactly the same frames. Imports nothing outside src/protocol.
//
// Session (client → server, server → client):
//   hello  → welcome            first frame; `session` resumes an earlier peer id
//   hb                          heartbeat (every welcome.heartbeatMs); the server drops silent peers
//   signal → signal             simple-peer signal; the server stamps `from`, never the client
//   ready  → paired             enter the ready pool for an outer round (docs/design.md section 3)
//   report → ack                one metric row; acked only after it is committed to SQLite
//            state-request      the coordinator wants φ and momentum for a checkpoint (HTTP upload)
//   state-fail                  the peer cannot serve a state request
//   offender                    a partner sent a payload that failed validation; the coordinator
//                               records it and never pairs the two again in this run
//            ice                fresh ICE servers (TURN credentials) before the old ones expire
//            peers-change       peers that joined and left since the last change (the full
//                               list comes only in welcome)
//            config / error
import { jsonDepth, validateSchema, type Schema, type Validation } from './schema.ts';

export const PROTOCOL_VERSION = 1;

/** Limits every connection lives under; the server announces its values in `welcome`. */
export const DEFAULT_LIMITS = {
  /** Largest WebSocket frame; a simple-peer offer with many candidates is ~4-8 KB. */
  maxMessageBytes: 64 * 1024,
  /** Sustained frames per second per connection (token bucket refill). */
  messagesPerSecond: 50,
  /** Burst allowance of the token bucket. */
  burst: 200,
  /** Deepest nesting accepted in a signal's free-form `data`. */
  maxSignalDepth: 8,
};

export const ID_PATTERN = '^[a-z0-9][a-z0-9-]{0,39}$';
export const PEER_ID_PATTERN = '^p-[0-9a-f]{16}$';
export const COMPRESSIONS = ['none', 'fp16', 'bf16', 'int8'] as const;
export type Compression = (typeof COMPRESSIONS)[number];

// ---------- shared shapes (structurally equal to src/model's types; protocol imports nothing) ----

export interface WireModelConfig { vocab: number; ctx: number; layers: number; d: number; heads: number }

export interface WireTrainConfig {
  batch: number; seqLen: number; lr: number; warmupSteps: number; totalSteps: number; minLrFrac: number;
  weightDecay: number; beta1: number; beta2: number; eps: number; gradClip: number;
  H: number; outerMomentum: number; outerLr: number; consensus: number;
}

export type RunStatus = 'running' | 'stopped';

/**
 * Which ICE candidates a run's volunteers may use: 'all', or 'relay' (only TURN relays, so no
 * peer ever learns another's address; every exchange then goes through the TURN server).
 */
export const ICE_POLICIES = ['all', 'relay'] as const;
export type IcePolicy = (typeof ICE_POLICIES)[number];

/** An RTCIceServer as the coordinator hands it out (TURN entries carry REST credentials). */
export interface WireIceServer { urls: string[]; username?: string; credential?: string }

/** ICE servers for one peer; `expiresAt` (ms) is when its TURN credential stops working. */
export interface WireIce { iceServers: WireIceServer[]; expiresAt: number | null }

/** The kinds of ICE candidate (RTCIceCandidateType). */
export const CANDIDATE_TYPES = ['host', 'srflx', 'prflx', 'relay'] as const;
export type CandidateType = (typeof CANDIDATE_TYPES)[number];

/** What a volunteer needs to train on a run. */
export interface RunInfo {
  id: string;
  name: string;
  dataset: string;
  preset: string;
  model: WireModelConfig;
  train: WireTrainConfig;
  compression: Compression;
  /** Ready-pool wait as a fraction of the peer's own inner-loop time (docs/design.md section 3). */
  pairWaitFrac: number;
  /** Which ICE candidates the run's links may use (relay: TURN only, addresses stay hidden); absent = 'all'. */
  icePolicy?: IcePolicy;
  seed: number;
  status: RunStatus;
  createdAt: number;
  updatedAt: number;
}

export interface DataFileRef {
  name: string;
  /** Path on the coordinator (relative URL). */
  url: string;
  sha256: string;
  bytes: number;
  /** Token element type of the file. */
  dtype: 'u8' | 'u16' | 'u32';
}

/** Which data a replica trains on: its own shard(s) and its own window seed. */
export interface DataAssignment {
  dataset: string;
  train: DataFileRef[];
  val: DataFileRef;
  /** Indices into `train` this replica reads. */
  shards: number[];
  /** Seed of this replica's own window sampler. */
  seed: number;
  /** Replica number within the run (order of first join). */
  replica: number;
}

export interface CheckpointRef {
  id: string;
  step: number;
  round: number;
  sha256: string;
  /** State-frame download (src/protocol/state-frame.ts) for bootstrapping. */
  stateUrl: string;
}

// ---------- client → server ----------

export interface HelloMsg {
  t: 'hello';
  v: number;
  run?: string;
  session?: string;
  client?: { kind: 'browser' | 'node'; adapter?: string; version?: string };
}
export interface HeartbeatMsg { t: 'hb' }
export interface SignalOutMsg { t: 'signal'; to: string; data: Record<string, unknown> }
export interface ReadyMsg { t: 'ready'; round: number; waitMs: number }
/**
 * A loss on the wire. JSON has no NaN or Infinity, and a diverged replica must still be seen
 * (the dashboard's NaN alert), so a non-finite loss travels as its name; null = not measured.
 */
export type NonFiniteLoss = 'NaN' | 'Infinity' | '-Infinity';
export type WireLoss = number | NonFiniteLoss | null;

/** A measured loss (possibly NaN or ±Infinity) as it goes into a report. */
export function lossToWire(x: number | null): WireLoss {
  if (x === null || Number.isFinite(x)) return x;
  return Number.isNaN(x) ? 'NaN' : x > 0 ? 'Infinity' : '-Infinity';
}

/** The inverse of lossToWire, for readers of reports (dashboards, progress lines). */
export function lossFromWire(x: WireLoss): number | null {
  if (x === 'NaN') return NaN;
  if (x === 'Infinity') return Infinity;
  if (x === '-Infinity') return -Infinity;
  return x;
}

export interface ReportFields {
  /** Client time of the measurement (ms since epoch). */
  time: number;
  step: number;
  round: number;
  trainLoss: WireLoss;
  valLoss: WireLoss;
  tokensPerS: number;
  bytesIn: number;
  bytesOut: number;
  partner: string | null;
  /** L2 distance between our φ and the partner's φ at the last outer step. */
  partnerDist: number | null;
  adapter: string | null;
  // Connectivity (optional on the wire: absent reads as null / 0).
  /** Candidate types of the link this round's exchange used (ours, the partner's); null: none. */
  linkLocal?: CandidateType | null;
  linkRemote?: CandidateType | null;
  /** Time that link took to open, ms (null: no link). */
  connectMs?: number | null;
  /** WebRTC links that failed to open since the previous report, and why the last one did. */
  linkFailures?: number;
  linkError?: string | null;
  // The probe (src/round/probe.ts; optional on the wire: absent when no partner was judged).
  /** Time the probe took this round, ms. */
  probeMs?: number | null;
  /** Mean probe loss of the solo and of the paired candidate (null: not finite). */
  probeSolo?: number | null;
  probePaired?: number | null;
  /** The partner's update was rejected this round: a solo step was taken. */
  probeRejected?: boolean;
}
export interface ReportMsg extends ReportFields { t: 'report'; seq: number }
export interface StateFailMsg { t: 'state-fail'; id: string; reason: string }
/** Longest `linkError` of a report; the mesh's reason is cut to fit. */
export const MAX_LINK_ERROR = 300;
/** Longest `reason` of an offender report; the mesh's "code: detail" is cut to fit. */
export const MAX_OFFENDER_REASON = 300;
/** `peer` (never the sender itself) sent us a payload that failed validation. */
export interface OffenderMsg { t: 'offender'; peer: string; reason: string }

export type ClientMessage = HelloMsg | HeartbeatMsg | SignalOutMsg | ReadyMsg | ReportMsg | StateFailMsg | OffenderMsg;

// ---------- server → client ----------

export type ErrorCode =
  | 'bad-json' | 'bad-message' | 'too-large' | 'rate-limited' | 'not-joined' | 'already-joined'
  | 'bad-session' | 'unknown-run' | 'run-stopped' | 'unknown-peer' | 'bad-version' | 'server-full'
  | 'timeout' | 'internal';

export interface WelcomeMsg {
  t: 'welcome';
  peerId: string;
  session: string;
  resumed: boolean;
  run: RunInfo;
  assignment: DataAssignment;
  checkpoint: CheckpointRef | null;
  peers: string[];
  /** Those of `peers` still on probation (a new id; no bootstrap source). */
  probation?: string[];
  heartbeatMs: number;
  limits: { maxMessageBytes: number; messagesPerSecond: number; burst: number };
  /** ICE servers for this peer's WebRTC links (STUN, TURN with short-lived credentials). */
  ice?: WireIce;
}
export interface ErrorMsg { t: 'error'; code: ErrorCode; message: string; ref?: string; fatal?: boolean }
export interface SignalInMsg { t: 'signal'; from: string; data: Record<string, unknown> }
/**
 * Live peers of the run that joined and left since the last change (the full list comes in
 * welcome); `probation`: ids now on probation (a new id; no bootstrap source), `trusted`: ids
 * that left it.
 */
export interface PeersChangeMsg { t: 'peers-change'; joined: string[]; left: string[]; probation?: string[]; trusted?: string[] }
/** `probation`: the partner is a new id on probation (judge its update with the stricter margin). */
export interface PairedMsg { t: 'paired'; round: number; partner: string | null; initiator: boolean; probation?: boolean }
export interface AckMsg { t: 'ack'; seq: number; duplicate?: boolean }
export interface ConfigMsg { t: 'config'; run: RunInfo }
export interface StateRequestMsg { t: 'state-request'; id: string; url: string }
export interface IceMsg { t: 'ice'; ice: WireIce }

export type ServerMessage =
  | WelcomeMsg | ErrorMsg | SignalInMsg | PeersChangeMsg | PairedMsg | AckMsg | ConfigMsg | StateRequestMsg | IceMsg;

// ---------- schemas ----------

const finite = (min: number, max: number): Schema => ({ type: 'number', minimum: min, maximum: max });
/** A WireLoss: a number in [0, 1e6], null, or exactly "NaN", "Infinity" or "-Infinity". */
const wireLoss: Schema = { type: ['number', 'string', 'null'], minimum: 0, maximum: 1e6, pattern: '^(?:NaN|-?Infinity)$' };
const count: Schema = { type: 'integer', minimum: 0, maximum: Number.MAX_SAFE_INTEGER };
const peerId: Schema = { type: 'string', pattern: PEER_ID_PATTERN };

export const CLIENT_SCHEMAS: Record<ClientMessage['t'], Schema> = {
  hello: {
    type: 'object', additionalProperties: false, required: ['t', 'v'],
    properties: {
      t: { const: 'hello' },
      v: { type: 'integer', minimum: 0, maximum: 1000 },
      run: { type: 'string', pattern: ID_PATTERN },
      session: { type: 'string', minLength: 1, maxLength: 512 },
      client: {
        type: 'object', additionalProperties: false, required: ['kind'],
        properties: {
          kind: { enum: ['browser', 'node'] },
          adapter: { type: 'string', maxLength: 200 },
          version: { type: 'string', maxLength: 40 },
        },
      },
    },
  },
  hb: { type: 'object', additionalProperties: false, required: ['t'], properties: { t: { const: 'hb' } } },
  signal: {
    type: 'object', additionalProperties: false, required: ['t', 'to', 'data'],
    properties: { t: { const: 'signal' }, to: peerId, data: { type: 'object' } },
  },
  ready: {
    type: 'object', additionalProperties: false, required: ['t', 'round', 'waitMs'],
    properties: { t: { const: 'ready' }, round: count, waitMs: finite(1, 600_000) },
  },
  report: {
    type: 'object', additionalProperties: false,
    required: ['t', 'seq', 'time', 'step', 'round', 'trainLoss', 'valLoss', 'tokensPerS', 'bytesIn', 'bytesOut', 'partner', 'partnerDist', 'adapter'],
    properties: {
      t: { const: 'report' },
      seq: count,
      time: finite(0, 1e14),
      step: count,
      round: count,
      trainLoss: wireLoss,
      valLoss: wireLoss,
      tokensPerS: finite(0, 1e12),
      bytesIn: count,
      bytesOut: count,
      partner: { type: ['string', 'null'], pattern: PEER_ID_PATTERN },
      partnerDist: { type: ['number', 'null'], minimum: 0, maximum: 1e12 },
      adapter: { type: ['string', 'null'], maxLength: 200 },
      linkLocal: { enum: [...CANDIDATE_TYPES, null] },
      linkRemote: { enum: [...CANDIDATE_TYPES, null] },
      connectMs: { type: ['number', 'null'], minimum: 0, maximum: 3_600_000 },
      linkFailures: { type: 'integer', minimum: 0, maximum: 100_000 },
      linkError: { type: ['string', 'null'], maxLength: MAX_LINK_ERROR },
      probeMs: { type: ['number', 'null'], minimum: 0, maximum: 3_600_000 },
      probeSolo: { type: ['number', 'null'], minimum: 0, maximum: 1e4 },
      probePaired: { type: ['number', 'null'], minimum: 0, maximum: 1e4 },
      probeRejected: { type: 'boolean' },
    },
  },
  'state-fail': {
    type: 'object', additionalProperties: false, required: ['t', 'id', 'reason'],
    properties: { t: { const: 'state-fail' }, id: { type: 'string', maxLength: 64 }, reason: { type: 'string', maxLength: 500 } },
  },
  offender: {
    type: 'object', additionalProperties: false, required: ['t', 'peer', 'reason'],
    properties: { t: { const: 'offender' }, peer: peerId, reason: { type: 'string', minLength: 1, maxLength: MAX_OFFENDER_REASON } },
  },
};

/**
 * Parses and validates one client frame. Never throws: bad input gives an error code and a
 * message that names the field, which the server sends back verbatim.
 */
export function parseClientMessage(
  raw: string,
  limits: { maxMessageBytes: number; maxSignalDepth: number } = DEFAULT_LIMITS,
): { ok: true; msg: ClientMessage } | { ok: false; code: ErrorCode; error: string } {
  if (raw.length > limits.maxMessageBytes) return { ok: false, code: 'too-large', error: `frame of ${raw.length} bytes exceeds ${limits.maxMessageBytes}` };
  let v: unknown;
  try {
    v = JSON.parse(raw);
  } catch (err) {
    return { ok: false, code: 'bad-json', error: `frame is not JSON: ${(err as Error).message.slice(0, 120)}` };
  }
  if (v === null || typeof v !== 'object' || Array.isArray(v)) return { ok: false, code: 'bad-message', error: 'frame must be a JSON object' };
  const t = (v as { t?: unknown }).t;
  if (typeof t !== 'string' || !Object.prototype.hasOwnProperty.call(CLIENT_SCHEMAS, t)) {
    return { ok: false, code: 'bad-message', error: `unknown message type ${JSON.stringify(t)?.slice(0, 40) ?? 'undefined'}; expected one of ${Object.keys(CLIENT_SCHEMAS).join(', ')}` };
  }
  const r: Validation<ClientMessage> = validateSchema(CLIENT_SCHEMAS[t as ClientMessage['t']], v);
  if (!r.ok) return { ok: false, code: 'bad-message', error: `${t}: ${r.error}` };
  if (r.value.t === 'signal' && jsonDepth(r.value.data, limits.maxSignalDepth) > limits.maxSignalDepth) {
    return { ok: false, code: 'bad-message', error: `signal: data nests deeper than ${limits.maxSignalDepth}` };
  }
  return { ok: true, msg: r.value };
}

const SERVER_TYPES = new Set(['welcome', 'error', 'signal', 'peers-change', 'paired', 'ack', 'config', 'state-request', 'ice']);

/**
 * Light check of a server frame for clients: the coordinator is trusted, but a proxy or a
 * version skew must fail with a message rather than a TypeError deep in the mesh.
 */
export function parseServerMessage(raw: string): { ok: true; msg: ServerMessage } | { ok: false; error: string } {
  let v: unknown;
  try {
    v = JSON.parse(raw);
  } catch (err) {
    return { ok: false, error: `server frame is not JSON: ${(err as Error).message}` };
  }
  if (v === null || typeof v !== 'object' || !SERVER_TYPES.has((v as { t?: string }).t as string)) {
    return { ok: false, error: `unknown server frame ${raw.slice(0, 80)}` };
  }
  return { ok: true, msg: v as ServerMessage };
}
