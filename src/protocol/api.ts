// The coordinator's HTTP replies and live-stream frames that the dashboard reads. Each has one
// TypeBox schema here: the coordinator's stores derive their types from it (server/metrics.ts,
// server/checkpoints.ts) and the dashboard checks what arrives against it
// (src/ui/browser/coordinator-dashboard.ts), so the two cannot drift apart. So does the data of
// each kind of run event (RUN_EVENT_DATA): the coordinator's event log takes only what these
// schemas describe, and the dashboard checks each event's data against its kind's. Pages import
// this file, so it imports nothing that needs Node.
import Type, { type Static, type TProperties, type TSchema } from 'typebox';
import { CandidateType, Compression, HelloClient, ID_PATTERN, IcePolicy, PAIR_WAIT_FRAC, PEER_ID_PATTERN, REPORT_FIELDS, RunInfo, RunStatus, WireLoss, WireTrainConfig } from './messages.ts';
import { OffenderEventData, RunEvent, type RunEventKind } from './events.ts';

const strict = <P extends TProperties>(properties: P) => Type.Object(properties, { additionalProperties: false });
const nullable = <T extends TSchema>(t: T) => Type.Union([t, Type.Null()]);
const count = Type.Integer({ minimum: 0, maximum: Number.MAX_SAFE_INTEGER });
/** Stored values that retention may have averaged (a merged row's time, rate or distance). */
const amount = Type.Number({ minimum: 0 });
const time = Type.Number({ minimum: 0, maximum: 1e14 });
const runId = Type.String({ pattern: ID_PATTERN });
const peerId = Type.String({ pattern: PEER_ID_PATTERN });

/**
 * An embedding site is one web origin (scheme, host, optional port; no path), lower case, as a
 * browser writes `location.origin`: it goes verbatim into a CSP header, so nothing else passes.
 */
const EMBED_SITE_PATTERN = '^https?://[a-z0-9]([a-z0-9-]*[a-z0-9])?(\\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*(:[0-9]{1,5})?$';
const MAX_EMBED_SITES = 100;
export const EmbedSites = Type.Array(Type.String({ maxLength: 200, pattern: EMBED_SITE_PATTERN }), { maxItems: MAX_EMBED_SITES });

/**
 * GET /api/runs/:run (and each of GET /api/runs): the run, its live peers and embedding sites, and
 * the step its peers agree on (`stepConsensus`, as in the welcome: consensusStep in
 * src/protocol/state-frame.ts; absent with nothing to agree on). That is the run's step the
 * dashboard shows: each peer's reported step is its own claim, and one new id may claim up to its
 * report bound (1,000 steps a second on small models) and once put the run past its schedule.
 */
export const RunReply = strict({
  ...RunInfo.properties,
  livePeers: count,
  embedSites: EmbedSites,
  stepConsensus: Type.Optional(count),
});
export type RunReply = Static<typeof RunReply>;

/**
 * POST /api/runs and PATCH /api/runs/:run: the run, with a warning when its exchange needs more
 * than a home uplink carries (src/protocol/exchange-link.ts linkWarning). The run is made all the same.
 */
export const RunWriteReply = strict({ ...RunReply.properties, warning: Type.Optional(Type.String({ maxLength: 2000 })) });
export type RunWriteReply = Static<typeof RunWriteReply>;

/** The hyper-parameters a researcher may set, each within WireTrainConfig's bounds (anything outside is a 400). */
export const TrainOverrides = Type.Partial(WireTrainConfig, { additionalProperties: false });

/** PATCH /api/runs/:run (server/routes/runs.ts); the run-updated event carries it as `change`. */
export const UpdateRun = strict({
  name: Type.Optional(Type.String({ minLength: 1, maxLength: 200 })),
  train: Type.Optional(TrainOverrides),
  compression: Type.Optional(Compression),
  pairWaitFrac: Type.Optional(Type.Number(PAIR_WAIT_FRAC)),
  /** Applies to links opened after the change (live peers get it with the next config). */
  icePolicy: Type.Optional(IcePolicy),
  status: Type.Optional(RunStatus),
  /** Replaces the whole list (send [] to allow none). */
  embedSites: Type.Optional(EmbedSites),
});
export type UpdateRun = Static<typeof UpdateRun>;

/** GET /api/runs: every run, oldest first. */
export const RunList = strict({ runs: Type.Array(RunReply) });
export type RunList = Static<typeof RunList>;

/** A committed report as the live stream pushes it: the peer's fields, stamped by the coordinator. */
export const LiveReport = strict({
  ...REPORT_FIELDS,
  runId,
  peerId,
  seq: count,
  /** Time the point is plotted at: when the coordinator received it (a client's clock is not trusted). */
  t: time,
  receivedAt: time,
});
export type LiveReport = Static<typeof LiveReport>;

/** One stored report row of a raw metrics page (a merged row stands for `weight` reports). */
export const MetricPoint = strict({
  t: time, peerId, seq: count, step: count, round: count, trainLoss: WireLoss, valLoss: WireLoss,
  tokensPerS: amount, bytesIn: amount, bytesOut: amount, partner: nullable(peerId), partnerDist: nullable(amount), adapter: nullable(Type.String()),
  linkLocal: nullable(CandidateType), linkRemote: nullable(CandidateType), connectMs: nullable(amount), linkFailures: amount, linkError: nullable(Type.String()),
  /** Reports this point stands for: 1, or more once retention merged older ones into it. */
  weight: Type.Integer({ minimum: 1 }),
  probeMs: nullable(amount), probeSolo: nullable(amount), probePaired: nullable(amount), probeRejected: nullable(Type.Boolean()),
});
export type MetricPoint = Static<typeof MetricPoint>;

/** One time bucket of a downsampled page: means over numeric losses, `nonFinite` counts the rest. */
export const BucketPoint = strict({
  t: time, n: amount, peers: count, step: amount, round: amount, trainLoss: nullable(Type.Number()), valLoss: nullable(Type.Number()), nonFinite: amount,
  tokensPerS: amount, bytesIn: amount, bytesOut: amount, partnerDist: nullable(amount),
});
export type BucketPoint = Static<typeof BucketPoint>;

const pageOf = { run: runId, peer: nullable(peerId), from: time, to: time, total: count };
/** GET /api/runs/:run/metrics: raw rows when the range holds few enough, time buckets otherwise. */
export const MetricsPage = Type.Union([
  strict({ ...pageOf, downsampled: Type.Literal(false), points: Type.Array(MetricPoint) }),
  strict({ ...pageOf, downsampled: Type.Literal(true), bucketMs: amount, points: Type.Array(BucketPoint) }),
]);

/**
 * One live peer of GET /api/runs/:run/peers (PeerHub.standings): its furthest reported step (-1:
 * none yet; its own claim), whether it is on probation (fewer than PROBATION_EXCHANGES accepted
 * exchanges: its claims are vouched for by nobody), and `client`, an opaque tag its client
 * address (addressKey) shares with every other id of that address, keyed by a secret of the
 * coordinator's process: it says which ids are one client, never the address. The dashboard
 * counts the run's throughput by these (src/ui/core/throughput.ts).
 */
export const PeerStanding = strict({
  id: peerId,
  step: Type.Integer({ minimum: -1, maximum: Number.MAX_SAFE_INTEGER }),
  probation: Type.Boolean(),
  client: Type.String({ pattern: '^[0-9a-f]{12}$' }),
  /** The same for its site: an IPv6 /48 (whose /64s are cheap to have many of); an IPv4 address is its own. */
  site: Type.String({ pattern: '^[0-9a-f]{12}$' }),
});
export type PeerStanding = Static<typeof PeerStanding>;

/** GET /api/runs/:run/peers: the run's live peers, the ready pool's size and its pairings so far. */
export const PeerList = strict({
  peers: Type.Array(PeerStanding),
  pool: count,
  pairs: strict({ pairs: count, solos: count, leftAtOnce: count }),
});
export type PeerList = Static<typeof PeerList>;

/** GET /api/runs/:run/events. */
export const EventsPage = strict({ events: Type.Array(RunEvent) });

/** A saved checkpoint: its row in the index, and the `<id>.json` beside its file (re-read at start). */
export const CheckpointInfo = strict({
  id: Type.String({ pattern: '^[a-z0-9][a-z0-9-]{0,63}$' }),
  runId,
  step: count,
  round: count,
  valLoss: nullable(Type.Number()),
  tokens: count,
  peerId: nullable(Type.String({ maxLength: 64 })),
  sha256: Type.String({ pattern: '^[0-9a-f]{64}$' }),
  bytes: count,
  /**
   * Its file's name in the run's directory: `<id>.safetensors`, as the coordinator names it
   * (server/checkpoints.ts). Never a path, nor `.` or `..`: a row or record read back from a
   * restored backup is joined to the run's directory.
   */
  file: Type.String({ pattern: '^s[0-9]{1,16}-[0-9a-f]{8}\\.safetensors$' }),
  createdAt: time,
  /**
   * How many of the run's validation batches the coordinator measured valLoss on (the run's
   * stateCheckBatchCount then). Absent: saved by a coordinator that stored the peer's claim, or
   * measured on other windows; such a checkpoint is measured again before it is offered.
   */
  valBatches: Type.Optional(Type.Integer({ minimum: 1, maximum: 64 })),
});
export type CheckpointInfo = Static<typeof CheckpointInfo>;

/** GET /api/runs/:run/checkpoints: the saved ones and the request in flight, if any. */
export const CheckpointList = strict({
  checkpoints: Type.Array(CheckpointInfo),
  pending: nullable(strict({ id: Type.String({ maxLength: 64 }), peerId: Type.String({ maxLength: 64 }), requestedAt: time })),
});

// ---------- run events ----------

const RunChange = strict({ change: UpdateRun });
/** A reason in the coordinator's words (a close reason, a failed check); a peer's part of it is bounded where it arrives. */
const reason = (maxLength: number) => Type.String({ maxLength });

/**
 * The `data` of each kind of run event, as the coordinator writes it (EventLog.append takes
 * nothing else) and the dashboard checks it before it reads a field.
 */
export const RUN_EVENT_DATA = {
  'run-created': strict({ run: RunInfo }),
  'run-updated': RunChange,
  // POST /stop writes no data; a PATCH that stops the run, its change.
  'run-stopped': nullable(RunChange),
  'peer-joined': strict({ replica: count, resumed: Type.Boolean(), client: nullable(HelloClient) }),
  'peer-left': strict({ reason: reason(500) }),
  'peer-offender': OffenderEventData,
  // The peer's own loss figure is kept beside the coordinator's measurement (valLoss).
  'checkpoint-saved': strict({ ...CheckpointInfo.properties, claimedValLoss: nullable(Type.Number()) }),
  // `reason`: why the coordinator withdrew it itself (absent: an admin deleted it).
  'checkpoint-deleted': strict({ id: CheckpointInfo.properties.id, reason: Type.Optional(reason(500)) }),
  // `rejected`: the upload failed the coordinator's checks and the peer gets no duty again.
  'checkpoint-failed': strict({ request: Type.String({ maxLength: 64 }), reason: reason(4000), rejected: Type.Optional(Type.Literal(true)) }),
} satisfies Record<RunEventKind, TSchema>;
export type RunEventData = { [K in RunEventKind]: Static<(typeof RUN_EVENT_DATA)[K]> };

/**
 * The widget's consent window (server/consent.ts, server/routes/consent.ts). A nonce is 16 to 64
 * random bytes in base64url, made by the widget's frame for one click on its Start or Resume.
 */
export const CONSENT_NONCE_PATTERN = '^[A-Za-z0-9_-]{22,86}$';
const consentNonce = Type.String({ pattern: CONSENT_NONCE_PATTERN });
const embedSite = Type.String({ maxLength: 200, pattern: EMBED_SITE_PATTERN });

/**
 * The most of the visitor's GPU time the widget may use: the site's cap when its frame connected,
 * which the frame never lets the page raise (src/ui/embed/frame-bridge.ts, hostIntensity).
 */
const intensityCeiling = Type.Number({ minimum: 0.1, maximum: 1 });

/**
 * POST /api/consent: the frame registers its nonce, the run it would train, the site it is on
 * (location.ancestorOrigins) and its intensity ceiling (absent: 1), which the window states.
 */
export const ConsentRequest = strict({ nonce: consentNonce, run: runId, site: embedSite, maxIntensity: Type.Optional(intensityCeiling) });
export type ConsentRequest = Static<typeof ConsentRequest>;

/**
 * The path parameter of /api/consent/:nonce and its POSTs: /decision (the window's answer), /claim
 * (the frame asks for it, and then holds the session it trains under by claiming on), /release
 * (the frame ends it), /watch and /stop (the window keeps watching it, or ends it: its Stop, or
 * its closing). Only /decision and /stop take a body; each answers a ConsentReply.
 */
export const ConsentParams = strict({ nonce: consentNonce });
export type ConsentParams = Static<typeof ConsentParams>;

/** POST /api/consent/:nonce/decision: the consent window's Allow (true) or Don't allow (false). */
export const ConsentDecision = strict({ allow: Type.Boolean() });
export type ConsentDecision = Static<typeof ConsentDecision>;

/** POST /api/consent/:nonce/stop: the consent window ends the session, by its Stop donating (false) or by closing (true). */
export const ConsentStop = strict({ closed: Type.Boolean() });
export type ConsentStop = Static<typeof ConsentStop>;

/**
 * A request's state: 'pending' until the window's answer; 'allowed' is then the live session the
 * frame trains under; 'stopped' once the window's Stop ended it, 'closed' once the window was
 * closed, 'released' once the frame ended it (its Stop, or training ended), 'withdrawn' once the
 * frame took back a request still pending (its Stop, or its page going, while the window asked),
 * each kept until the other side has heard.
 */
export const ConsentState = Type.Enum(['pending', 'allowed', 'denied', 'stopped', 'closed', 'released', 'withdrawn']);
export type ConsentState = Static<typeof ConsentState>;

/**
 * What a run's exchange asks of the visitor's link, as the consent window states it (the
 * coordinator's exchangeLink of the run's model and compression, src/protocol/exchange-link.ts):
 * bytes sent and as many received each outer round, the least rate each way at which an exchange
 * ends inside the longest wait (60 s), and the first exchange's (15 s, before the wait is fitted to
 * the link), with those two waits in seconds.
 */
export const ConsentLink = strict({
  bytes: Type.Integer({ minimum: 0, maximum: 1e13 }),
  leastBytesPerS: Type.Integer({ minimum: 0, maximum: 1e13 }),
  firstBytesPerS: Type.Integer({ minimum: 0, maximum: 1e13 }),
  waitS: Type.Number({ minimum: 0, maximum: 3600 }),
  firstWaitS: Type.Number({ minimum: 0, maximum: 3600 }),
});
export type ConsentLink = Static<typeof ConsentLink>;

/**
 * GET /api/consent/:nonce (what the consent window names), and the answer of each POST: the run
 * (its name too, for the window), the site, the state and when the nonce expires (ms since the
 * epoch), and what the run asks of the visitor's link (absent when the coordinator no longer has the run), and the
 * widget's intensity ceiling.
 */
export const ConsentReply = strict({
  run: runId, runName: Type.String({ maxLength: 200 }), site: embedSite, state: ConsentState, expiresAt: time, link: Type.Optional(ConsentLink),
  /** The widget's intensity ceiling, as its frame registered it. */
  maxIntensity: Type.Optional(intensityCeiling),
});
export type ConsentReply = Static<typeof ConsentReply>;
