// The coordinator's WebSocket protocol: every frame is one JSON object with a type tag `t`.
// One schema per message for the server, the browser client and the headless client, so all
// accept exactly the same frames. Imports nothing of ours outside src/protocol.
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
//
// Each message is one TypeBox schema below and its TypeScript type is derived from it
// (Static), so the type, the coordinator's check and the clients' check cannot drift apart
// (docs/design.md section 5.4). What a schema cannot state (signal nesting) is checked right
// after it, in the parse function.
import Type, { type Static, type TProperties, type TSchema } from 'typebox';
import { jsonDepth, schemaProblem, shownTag } from './check.ts';

/**
 * The version of every schema a client and the coordinator exchange, and of the peer-to-peer
 * control messages (peer-messages.ts) that only peers admitted under it exchange. The schemas are
 * strict, so a client of another version cannot read what it is sent: the coordinator refuses
 * its hello with `bad-version`, a fatal error that tells the page to reload and the headless
 * volunteer to update, rather than welcoming it with a frame it would drop. Any change to these
 * schemas is a new version (tests/protocol.version.test.ts holds each version's digest).
 *   1: the first.
 *   2: `welcome` carries `stepBase` (a newcomer's bound on the step of a state it adopts) and
 *      `stepConsensus` (the step it takes when the state it adopts claims more).
 *   3: `welcome` carries `stepRate`, the run's bound on steps a second (it was one constant for
 *      every run, MAX_STEPS_PER_S). Between peers, an `xchg`'s chunks follow only once the
 *      partner's own `xchg` arrived, and a peer keeps no buffers for an announcement before its
 *      pool answer, so the chunks a version-2 peer streamed at once would be lost.
 *   4: a run's train config, model and `pairWaitFrac` (in `welcome` and `config`) carry the
 *      bounds a researcher's input has (WireTrainConfig), where any number passed before.
 *   5: each side of a pairing is told its partner's round: the pool's `paired` names it
 *      (`partnerRound`), and between peers a direct pairing's yes (`pair-ack` ok) names the
 *      responder's round as the question (`pair-req`) names the asker's; a peer's `abort` that
 *      answers a message (an `xchg`, a yes) names the receiver's round that message carried
 *      (`yourRound`). Rounds are each peer's own, so a receiver could not tell an `xchg` or an
 *      `abort` of an earlier pairing of the same two peers, come late, from this pairing's: now
 *      it compares the round each carries with the partner's round of this pairing.
 *   6: a checkpoint's `stateUrl` (in `welcome`) and a `state-request`'s `url` are paths on the
 *      coordinator (coordinatorPath): the peer sends its session, and its state, where they point.
 */
export const PROTOCOL_VERSION = 6;

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
export const Compression = Type.Enum(COMPRESSIONS);
export type Compression = Static<typeof Compression>;

// ---------- building blocks ----------

/** An object that refuses fields it does not name (no field is silently dropped or ignored). */
function strict<P extends TProperties>(properties: P) {
  return Type.Object(properties, { additionalProperties: false });
}
const nullable = <T extends TSchema>(t: T) => Type.Union([t, Type.Null()]);
const count = Type.Integer({ minimum: 0, maximum: Number.MAX_SAFE_INTEGER });
const finite = (minimum: number, maximum: number) => Type.Number({ minimum, maximum });
const peerId = Type.String({ pattern: PEER_ID_PATTERN });
const text = (maxLength: number) => Type.String({ maxLength });
/**
 * A path on the coordinator itself ('/api/…'): what a volunteer uploads its state to or fetches a
 * checkpoint from, with its session. Not '//host' (another host) and nothing a URL parser reads
 * as another origin once appended to the coordinator's address ('@host/…' made it userinfo).
 */
const coordinatorPath = (maxLength: number) => Type.String({ maxLength, pattern: '^/(?![/\\\\])[^\\s\\\\#]*$' });

// ---------- shared shapes (structurally equal to src/model's types; protocol imports nothing) ----

const int = (minimum: number, maximum: number) => Type.Integer({ minimum, maximum });

/**
 * A run's model, as far as a volunteer takes one. The coordinator gives only its presets
 * (src/model/config.ts), all well inside; a bound keeps a hostile or broken one from having a
 * volunteer build a layout or batches of any size before its device's limits are asked (a
 * batch of 2^25 held 40 GB of host memory, a million layers ran V8 out of heap).
 */
export const WireModelConfig = strict({ vocab: int(2, 65_536), ctx: int(1, 4096), layers: int(1, 64), d: int(1, 4096), heads: int(1, 64) });
export type WireModelConfig = Static<typeof WireModelConfig>;

/**
 * Every hyper-parameter of a run and its bounds: what a researcher may set (api.ts
 * TrainOverrides, anything outside is a 400) and what a volunteer takes in a welcome or config.
 */
export const WireTrainConfig = strict({
  batch: int(1, 4096),
  seqLen: int(2, 65_536),
  lr: finite(0, 1),
  warmupSteps: int(0, 1e9),
  totalSteps: int(1, 1e12),
  minLrFrac: finite(0, 1),
  weightDecay: finite(0, 10),
  beta1: finite(0, 0.99999),
  beta2: finite(0, 0.99999),
  eps: finite(0, 1),
  gradClip: finite(0, 1e6),
  H: int(1, 1e6),
  outerMomentum: finite(0, 0.9999),
  outerLr: finite(0, 10),
  consensus: finite(0, 1),
});
export type WireTrainConfig = Static<typeof WireTrainConfig>;

/** Bounds of a run's ready-pool wait, a fraction of the peer's inner-loop time. */
export const PAIR_WAIT_FRAC = { minimum: 0.01, maximum: 10 } as const;

export const RunStatus = Type.Enum(['running', 'stopped']);
export type RunStatus = Static<typeof RunStatus>;

/**
 * Which ICE candidates a run's volunteers may use: 'all', or 'relay' (only TURN relays, so no
 * peer ever learns another's address; every exchange then goes through the TURN server).
 */
export const ICE_POLICIES = ['all', 'relay'] as const;
export const IcePolicy = Type.Enum(ICE_POLICIES);
export type IcePolicy = Static<typeof IcePolicy>;

/** An RTCIceServer as the coordinator hands it out (TURN entries carry REST credentials). */
const WireIceServer = strict({
  urls: Type.Array(text(500), { maxItems: 32 }),
  username: Type.Optional(text(500)),
  credential: Type.Optional(text(500)),
});
export type WireIceServer = Static<typeof WireIceServer>;

/** ICE servers for one peer; `expiresAt` (ms) is when its TURN credential stops working. */
export const WireIce = strict({ iceServers: Type.Array(WireIceServer, { maxItems: 32 }), expiresAt: nullable(count) });
export type WireIce = Static<typeof WireIce>;

/** The kinds of ICE candidate (RTCIceCandidateType). */
export const CANDIDATE_TYPES = ['host', 'srflx', 'prflx', 'relay'] as const;
export const CandidateType = Type.Enum(CANDIDATE_TYPES);
export type CandidateType = Static<typeof CandidateType>;

/** What a volunteer needs to train on a run. */
export const RunInfo = strict({
  id: Type.String({ pattern: ID_PATTERN }),
  name: text(200),
  dataset: Type.String({ pattern: ID_PATTERN }),
  preset: text(40),
  model: WireModelConfig,
  train: WireTrainConfig,
  compression: Compression,
  /** Ready-pool wait as a fraction of the peer's own inner-loop time (docs/design.md section 3). */
  pairWaitFrac: Type.Number(PAIR_WAIT_FRAC),
  /** Which ICE candidates the run's links may use (relay: TURN only, addresses stay hidden); absent = 'all'. */
  icePolicy: Type.Optional(IcePolicy),
  seed: count,
  status: RunStatus,
  createdAt: count,
  updatedAt: count,
});
export type RunInfo = Static<typeof RunInfo>;

const DataFileRef = strict({
  name: text(100),
  /** Path on the coordinator (relative URL). */
  url: text(300),
  sha256: Type.String({ pattern: '^[0-9a-f]{64}$' }),
  bytes: count,
  /** Token element type of the file. */
  dtype: Type.Enum(['u8', 'u16', 'u32']),
});
export type DataFileRef = Static<typeof DataFileRef>;

/** Which data a replica trains on: its own shard(s) and its own window seed. */
const DataAssignment = strict({
  dataset: Type.String({ pattern: ID_PATTERN }),
  train: Type.Array(DataFileRef, { maxItems: 10_000 }),
  val: DataFileRef,
  /** Indices into `train` this replica reads. */
  shards: Type.Array(count, { maxItems: 10_000 }),
  /** Seed of this replica's own window sampler. */
  seed: count,
  /** Replica number within the run (order of first join). */
  replica: count,
});
export type DataAssignment = Static<typeof DataAssignment>;

const CheckpointRef = strict({
  id: text(64),
  step: count,
  round: count,
  sha256: Type.String({ pattern: '^[0-9a-f]{64}$' }),
  /**
   * Validation loss of its φ as the coordinator measured it on the run's validation windows
   * (server/checkpoint-validate.ts), never a peer's claim; a newcomer judges bootstrap states
   * against it (maxStateLoss). Null: not known.
   */
  valLoss: nullable(finite(0, 1e6)),
  /** State-frame download (src/protocol/state-frame.ts) for bootstrapping: a path on the coordinator. */
  stateUrl: coordinatorPath(300),
});
export type CheckpointRef = Static<typeof CheckpointRef>;

// ---------- client → server ----------

/** What a volunteer says of itself in its hello (also the data of its peer-joined event). */
export const HelloClient = strict({
  kind: Type.Enum(['browser', 'node']),
  adapter: Type.Optional(text(200)),
  version: Type.Optional(text(40)),
});

const HelloMsg = strict({
  t: Type.Literal('hello'),
  v: Type.Integer({ minimum: 0, maximum: 1000 }),
  run: Type.Optional(Type.String({ pattern: ID_PATTERN })),
  session: Type.Optional(Type.String({ minLength: 1, maxLength: 512 })),
  client: Type.Optional(HelloClient),
});
export type HelloMsg = Static<typeof HelloMsg>;
const HeartbeatMsg = strict({ t: Type.Literal('hb') });
/** Free-form JSON (a simple-peer signal), bounded by the frame size and by maxSignalDepth. */
const SignalData = Type.Record(Type.String(), Type.Unknown());
const SignalOutMsg = strict({ t: Type.Literal('signal'), to: peerId, data: SignalData });
/** What the mesh puts in a signal's `data`: the link it belongs to, and simple-peer's own signal. */
export const MeshSignal = strict({ mesh: Type.Literal(1), cid: text(64), sig: Type.Unknown() });
export type MeshSignal = Static<typeof MeshSignal>;
const ReadyMsg = strict({ t: Type.Literal('ready'), round: count, waitMs: finite(1, 600_000) });

/**
 * The finite losses the coordinator stores (server/report-bounds.ts refuses a report past them).
 * A cross-entropy over 256 bytes starts near ln 256 = 5.5; a run that blows up passes 1e4 on its
 * way to NaN (a softmax whose logits grew apart gives 1e4 to 1e6), which says only "diverged",
 * and a number that size would stretch every loss chart's axis. At the other end a run that
 * memorised a small dataset honestly goes below MIN_LOSS (a cross-entropy can reach 0), where a
 * log axis has no room: volunteers send such a loss as MIN_LOSS itself (lossToWire), and the
 * charts draw it on the floor rather than lose the report.
 */
export const MIN_LOSS = 1e-4;
export const MAX_LOSS = 1e4;

/**
 * A loss on the wire. JSON has no NaN or Infinity, and a diverged replica must still be seen
 * (the dashboard's NaN alert), so a non-finite loss travels as its name; null = not measured.
 */
const NonFiniteLoss = Type.Enum(['NaN', 'Infinity', '-Infinity']);
export type NonFiniteLoss = Static<typeof NonFiniteLoss>;
export const WireLoss = Type.Union([finite(0, 1e6), NonFiniteLoss, Type.Null()]);
export type WireLoss = Static<typeof WireLoss>;

/**
 * A measured loss (possibly NaN or ±Infinity) as it goes into a report. A finite loss past
 * MAX_LOSS is a diverged replica too and travels as "Infinity": sent as a number, the coordinator
 * refused the report and the volunteer dropped it, so the run vanished from the dashboard just as
 * it diverged. One in [0, MIN_LOSS) travels as MIN_LOSS, for the same reason: a run that learned
 * its data by heart vanished from the dashboard as its loss fell past the floor.
 */
export function lossToWire(x: number | null): WireLoss {
  if (x !== null && x >= 0 && x < MIN_LOSS) return MIN_LOSS;
  if (x === null || (Number.isFinite(x) && x <= MAX_LOSS)) return x;
  return Number.isNaN(x) ? 'NaN' : x > 0 ? 'Infinity' : '-Infinity';
}

/**
 * A probe's loss as it goes into a report (probeSolo, probePaired): MIN_LOSS for one in [0,
 * MIN_LOSS) (lossToWire), null past MAX_LOSS or not a loss at all. A partner's harmful update can
 * put the paired loss past MAX_LOSS, and the schema (finite up to MAX_LOSS) failed the whole
 * report: with no seq to refuse, the volunteer sent it again at every reconnect. probeRejected
 * still says what the probe decided.
 */
export function probeLossToWire(x: number): number | null {
  if (x >= 0 && x < MIN_LOSS) return MIN_LOSS;
  return x >= MIN_LOSS && x <= MAX_LOSS ? x : null;
}

/** The inverse of lossToWire, for readers of reports (dashboards, progress lines). */
export function lossFromWire(x: WireLoss): number | null {
  if (x === 'NaN') return NaN;
  if (x === 'Infinity') return Infinity;
  if (x === '-Infinity') return -Infinity;
  return x;
}

/**
 * The message of the coordinator's refusal of report `seq` (an `error` with ref 'report'): it
 * names the seq first, so the client knows which report it refused and drops it (refusedReportSeq).
 */
export function reportRefusal(seq: number, why: string): string {
  return `report ${seq}: ${why}`;
}

/** The seq of the report an `error` refused (reportRefusal), or null when it refused none. */
export function refusedReportSeq(e: { ref?: string; message: string }): number | null {
  if (e.ref !== 'report') return null;
  const m = /^report (\d{1,16}): /.exec(e.message);
  return m ? Number(m[1]) : null;
}

/** Longest `linkError` of a report; the mesh's reason is cut to fit. */
export const MAX_LINK_ERROR = 300;
/** Longest `reason` of an offender report; the mesh's "code: detail" is cut to fit. */
export const MAX_OFFENDER_REASON = 300;

/**
 * Whether an offence (its code, or a report's "code: detail") is evidence only, no strike: the
 * probe's CUSUM report (`probe-harm`) adds up noisy losses, and honest partners in a swarm of two
 * reached one about once per hundred exchanges; the lag report (`phi-lag`, src/sync/validate.ts)
 * adds up how far a partner's φ sat behind along its own progress, which a peer that fell behind
 * honestly also does for a while; the stall report (`stall`, src/sync/mesh.ts noteStall) says a
 * pool partner's payload missed our deadline twice in a row, which an honest partner on a slow
 * or briefly broken link also does. Neither the mesh's cut-off nor the coordinator's veto counts
 * it (docs/design.md, section 6.1); a gross harm or a failed size check does.
 */
export const SOFT_OFFENCES = ['probe-harm', 'phi-lag', 'stall'] as const;

export function isSoftOffence(reason: string): boolean {
  return SOFT_OFFENCES.some((code) => reason === code || reason.startsWith(`${code}:`));
}

/**
 * Whether an offence is about a state a peer served (a newcomer's bootstrap source whose state
 * failed its check, src/sync/state-check.ts): reportable about a peer that was no pool partner.
 */
/**
 * Whether a report is the lag report (`phi-lag`). Its rest never grows past REST_READIES
 * (server/peers.ts, rest): a peer that is behind honestly (a newcomer that started fresh or from
 * an old checkpoint, next to peers far along) catches up only by pairing with the peers ahead of
 * it, taking their φ while they refuse its lag. With rests doubling to 64 rounds, the leader
 * trained on alone and the gap closed too slowly: in a fresh-clone run of volunteer.attacks'
 * poisoned-state test the three were not all off probation after 300 s. With no rest at all, an
 * anti-progress φ took twice the honest volunteers' rounds (bench:probe phibias-on, seeds 1–5:
 * +0.070 against the control, was +0.056).
 */
export function isLagReport(reason: string): boolean {
  return reason === 'phi-lag' || reason.startsWith('phi-lag:');
}

/**
 * Whether a report is the stall report (`stall`): it is sent only at a partner's second stall in
 * a row, so it rests the pair at once (server/peers.ts, rest), where another report's first is free.
 */
export function isStallReport(reason: string): boolean {
  return reason === 'stall' || reason.startsWith('stall:');
}

export function isStateOffence(reason: string): boolean {
  return reason === 'bad-state' || reason.startsWith('bad-state:');
}

/** The fields of one metric row (a report is these plus `t` and `seq`). */
export const REPORT_FIELDS = {
  /** Client time of the measurement (ms since epoch). */
  time: finite(0, 1e14),
  step: count,
  round: count,
  trainLoss: WireLoss,
  valLoss: WireLoss,
  tokensPerS: finite(0, 1e12),
  bytesIn: count,
  bytesOut: count,
  partner: nullable(peerId),
  /** L2 distance between our φ and the partner's φ at the last outer step. */
  partnerDist: nullable(finite(0, 1e12)),
  adapter: nullable(text(200)),
  // Connectivity (optional on the wire: absent reads as null / 0).
  /** Candidate types of the link this round's exchange used (ours, the partner's); null: none. */
  linkLocal: Type.Optional(nullable(CandidateType)),
  linkRemote: Type.Optional(nullable(CandidateType)),
  /** Time that link took to open, ms (null: no link). */
  connectMs: Type.Optional(nullable(finite(0, 3_600_000))),
  /** WebRTC links that failed to open since the previous report, and why the last one did. */
  linkFailures: Type.Optional(Type.Integer({ minimum: 0, maximum: 100_000 })),
  linkError: Type.Optional(nullable(text(MAX_LINK_ERROR))),
  // The probe (src/round/probe.ts; optional on the wire: absent when no partner was judged).
  /** Time the probe took this round, ms. */
  probeMs: Type.Optional(nullable(finite(0, 3_600_000))),
  /** Mean probe loss of the solo and of the paired candidate (null: outside [MIN_LOSS, MAX_LOSS], probeLossToWire). */
  probeSolo: Type.Optional(nullable(finite(0, MAX_LOSS))),
  probePaired: Type.Optional(nullable(finite(0, MAX_LOSS))),
  probeRejected: Type.Optional(Type.Boolean()),
};
const ReportFields = strict(REPORT_FIELDS);
export type ReportFields = Static<typeof ReportFields>;
const ReportMsg = strict({ t: Type.Literal('report'), seq: count, ...REPORT_FIELDS });
export type ReportMsg = Static<typeof ReportMsg>;
const StateFailMsg = strict({ t: Type.Literal('state-fail'), id: text(64), reason: text(500) });
/** `peer` (never the sender itself) sent us a payload that failed validation. */
const OffenderMsg = strict({ t: Type.Literal('offender'), peer: peerId, reason: Type.String({ minLength: 1, maxLength: MAX_OFFENDER_REASON }) });
export type OffenderMsg = Static<typeof OffenderMsg>;

/** The schema of each client message, by its tag. */
export const CLIENT_SCHEMAS = {
  hello: HelloMsg, hb: HeartbeatMsg, signal: SignalOutMsg, ready: ReadyMsg, report: ReportMsg,
  'state-fail': StateFailMsg, offender: OffenderMsg,
};
type ClientSchemas = typeof CLIENT_SCHEMAS;
export type ClientMessage = { [K in keyof ClientSchemas]: Static<ClientSchemas[K]> }[keyof ClientSchemas];

// ---------- server → client ----------

const ErrorCode = Type.Enum([
  'bad-json', 'bad-message', 'too-large', 'rate-limited', 'not-joined', 'already-joined',
  'bad-session', 'unknown-run', 'run-stopped', 'unknown-peer', 'bad-version', 'server-full',
  'timeout', 'internal',
]);
export type ErrorCode = Static<typeof ErrorCode>;

const peerList = Type.Array(peerId, { maxItems: 100_000 });
const WelcomeMsg = strict({
  t: Type.Literal('welcome'),
  peerId,
  session: Type.String({ minLength: 1, maxLength: 512 }),
  resumed: Type.Boolean(),
  run: RunInfo,
  assignment: DataAssignment,
  checkpoint: nullable(CheckpointRef),
  peers: peerList,
  /** Those of `peers` still on probation (a new id; no bootstrap source). */
  probation: Type.Optional(peerList),
  heartbeatMs: count,
  limits: strict({ maxMessageBytes: count, messagesPerSecond: count, burst: count }),
  /** ICE servers for this peer's WebRTC links (STUN, TURN with short-lived credentials). */
  ice: Type.Optional(WireIce),
  /**
   * The furthest inner step this peer could start from now (the newest checkpoint's, any live
   * peer's reported step, its own earlier reports): its reports are judged by maxStepNow from
   * here, so it adopts no bootstrap state beyond that bound (src/sync/state-check.ts).
   */
  stepBase: Type.Optional(count),
  /**
   * The fastest this run could step (steps a second): what the fastest device could do on its
   * model and batch, at most MAX_STEPS_PER_S (stepRate, server/report-bounds.ts). The coordinator
   * bounds this peer's reports by it from `stepBase`, and so does the peer a state it adopts.
   */
  stepRate: Type.Number({ exclusiveMinimum: 0, maximum: 1e6 }),
  /**
   * The step the run's live peers agree on (consensusStep in state-frame.ts: the lower median of
   * one vote per address of peers off probation, never below the newest checkpoint's step). A
   * newcomer that adopts a state more than a round from it, ahead or behind, holds it to this
   * (holdCounters, src/sync/join.ts), so
   * one peer lying about its steps cannot move a newcomer along the learning-rate schedule.
   * Absent when there is nothing to agree on yet.
   */
  stepConsensus: Type.Optional(count),
});
export type WelcomeMsg = Static<typeof WelcomeMsg>;
const ErrorMsg = strict({
  t: Type.Literal('error'), code: ErrorCode, message: text(2000), ref: Type.Optional(text(100)), fatal: Type.Optional(Type.Boolean()),
});
export type ErrorMsg = Static<typeof ErrorMsg>;
const SignalInMsg = strict({ t: Type.Literal('signal'), from: peerId, data: SignalData });
/**
 * Live peers of the run that joined and left since the last change (the full list comes in
 * welcome); `probation`: ids now on probation (a new id; no bootstrap source), `trusted`: ids
 * that left it.
 */
const PeersChangeMsg = strict({
  t: Type.Literal('peers-change'), joined: peerList, left: peerList,
  probation: Type.Optional(peerList), trusted: Type.Optional(peerList),
});
/**
 * The pool's answer to `ready` for `round`: a partner, the round that partner entered the pool with
 * (`partnerRound`; each peer counts its own rounds, so the two differ: the round its `xchg` and its
 * `abort` of this pairing carry, src/sync/exchange.ts), and `probation`: it is a new id on
 * probation (judge its update with the stricter margin). Or no partner: a solo step.
 */
const PairedMsg = Type.Union([
  strict({
    t: Type.Literal('paired'), round: count, partner: peerId, partnerRound: count, initiator: Type.Boolean(), probation: Type.Optional(Type.Boolean()),
  }),
  strict({ t: Type.Literal('paired'), round: count, partner: Type.Null(), initiator: Type.Boolean() }),
]);
export type PairedMsg = Static<typeof PairedMsg>;
const AckMsg = strict({ t: Type.Literal('ack'), seq: count, duplicate: Type.Optional(Type.Boolean()) });
const ConfigMsg = strict({ t: Type.Literal('config'), run: RunInfo });
const StateRequestMsg = strict({ t: Type.Literal('state-request'), id: text(64), url: coordinatorPath(300) });
const IceMsg = strict({ t: Type.Literal('ice'), ice: WireIce });

/** The schema of each server message, by its tag. */
export const SERVER_SCHEMAS = {
  welcome: WelcomeMsg, error: ErrorMsg, signal: SignalInMsg, 'peers-change': PeersChangeMsg, paired: PairedMsg,
  ack: AckMsg, config: ConfigMsg, 'state-request': StateRequestMsg, ice: IceMsg,
};
type ServerSchemas = typeof SERVER_SCHEMAS;
export type ServerMessage = { [K in keyof ServerSchemas]: Static<ServerSchemas[K]> }[keyof ServerSchemas];

// ---------- parsing ----------

/** JSON text → the tagged message its schema accepts, or what was wrong. */
function parseTagged<S extends Record<string, TSchema>>(
  raw: string, schemas: S, what: string,
): { ok: true; value: Static<S[keyof S]> } | { ok: false; code: 'bad-json' | 'bad-message'; error: string } {
  let v: unknown;
  try {
    v = JSON.parse(raw);
  } catch (err) {
    return { ok: false, code: 'bad-json', error: `${what} is not JSON: ${(err as Error).message.slice(0, 120)}` };
  }
  if (v === null || typeof v !== 'object' || Array.isArray(v)) return { ok: false, code: 'bad-message', error: `${what} must be a JSON object` };
  const t = (v as { t?: unknown }).t;
  if (typeof t !== 'string' || !Object.prototype.hasOwnProperty.call(schemas, t)) {
    return { ok: false, code: 'bad-message', error: `unknown message type ${shownTag(t)}; expected one of ${Object.keys(schemas).join(', ')}` };
  }
  const problem = schemaProblem(schemas[t]!, v, t);
  if (problem !== null) return { ok: false, code: 'bad-message', error: problem };
  return { ok: true, value: v as Static<S[keyof S]> };
}

/**
 * Parses and validates one client frame. Never throws: bad input gives an error code and a
 * message that names the field ("ready.round must be >= 0, got -1"), which the server sends
 * back verbatim.
 */
export function parseClientMessage(
  raw: string,
  limits: { maxMessageBytes: number; maxSignalDepth: number } = DEFAULT_LIMITS,
): { ok: true; msg: ClientMessage } | { ok: false; code: ErrorCode; error: string } {
  if (raw.length > limits.maxMessageBytes) return { ok: false, code: 'too-large', error: `frame of ${raw.length} bytes exceeds ${limits.maxMessageBytes}` };
  const r = parseTagged(raw, CLIENT_SCHEMAS, 'frame');
  if (!r.ok) return r;
  const msg = r.value as ClientMessage;
  if (msg.t === 'signal' && jsonDepth(msg.data, limits.maxSignalDepth) > limits.maxSignalDepth) {
    return { ok: false, code: 'bad-message', error: `signal.data nests deeper than ${limits.maxSignalDepth}` };
  }
  return { ok: true, msg };
}

/** A relayed signal's `data` as the receiving mesh reads it, or what was wrong with it. */
export function parseMeshSignal(data: unknown): { ok: true; value: MeshSignal } | { ok: false; error: string } {
  const problem = schemaProblem(MeshSignal, data, 'signal.data');
  return problem === null ? { ok: true, value: data as MeshSignal } : { ok: false, error: problem };
}

/**
 * Checks a server frame for clients against the same schemas: the coordinator is trusted, but
 * a proxy or a version skew must fail with a message rather than a TypeError deep in the mesh.
 */
export function parseServerMessage(raw: string): { ok: true; msg: ServerMessage } | { ok: false; error: string } {
  const r = parseTagged(raw, SERVER_SCHEMAS, 'server frame');
  if (!r.ok) return { ok: false, error: r.error };
  const msg = r.value as ServerMessage;
  // The coordinator relays no signal deeper than this; one that is came from something else, and
  // a client that took it held a value no JSON.stringify (a log line, a re-send) could write.
  if (msg.t === 'signal' && jsonDepth(msg.data, DEFAULT_LIMITS.maxSignalDepth) > DEFAULT_LIMITS.maxSignalDepth) {
    return { ok: false, error: `signal.data nests deeper than ${DEFAULT_LIMITS.maxSignalDepth}` };
  }
  return { ok: true, msg };
}
