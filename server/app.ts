// Builds the coordinator as one Fastify instance from injected dependencies, so tests start it
// in-process on port 0 with a temp data dir and a fake clock, and `murmur serve` starts the same
// thing on a real port. HTTP and WebSocket share the port.
import { mkdirSync } from 'node:fs';
import type { Socket } from 'node:net';
import { join } from 'node:path';
import Fastify, { type FastifyBaseLogger, type FastifyInstance, type FastifyReply } from 'fastify';
import websocket from '@fastify/websocket';
import type { Db } from './db.ts';
import { openDb } from './db.ts';
import { backgroundClock, type Clock } from '../src/protocol/clock.ts';
import { ADMIN_TOKEN_FILE, DEFAULT_SESSION_TTL_MS, SessionSigner, loadOrCreateSecret, startSessionKeys } from './auth.ts';
import { RunStore } from './runs.ts';
import { DEFAULT_METRICS_OPTIONS, inlineReader, MetricsStore, type MetricsOptions } from './metrics.ts';
import { ReadWorker } from './read-worker.ts';
import { DEFAULT_LIVE_LIMITS, LiveHub, type LiveLimits } from './live.ts';
import { DEFAULT_MAX_OFFENDER_EVENTS_PER_RUN, DEFAULT_MAX_PEER_EVENTS_PER_RUN, EventLog } from './events.ts';
import { DirDatasetSource, prepareMobyDick, type DatasetSource } from './datasets.ts';
import { CheckpointStore } from './checkpoints.ts';
import { DEFAULT_HUB_OPTIONS, PeerHub, type PeerHubOptions } from './peers.ts';
import { iceFor, iceSettings, type IceSettings } from './ice.ts';
import { ANON_BODY_BYTES, requireAdmin } from './routes/guard.ts';
import { randomBytes } from 'node:crypto';
import { CheckpointScheduler } from './checkpoint-scheduler.ts';
import Ajv, { type ValidateFunction } from 'ajv';
import { describeIssues, type SchemaIssue } from '../src/protocol/check.ts';
import { CheckpointEvaluator } from './checkpoint-validate.ts';
import { remeasureCheckpoints, type RemeasureResult } from './checkpoint-remeasure.ts';
import type { AppContext } from './context.ts';
import { registerRunRoutes } from './routes/runs.ts';
import { DEFAULT_READ_LIMITS, ReadBudget, type ReadLimits } from './read-budget.ts';
import { DEFAULT_DOWNLOAD_LIMITS, DownloadBudget, type DownloadLimits } from './download-budget.ts';
import { registerMetricRoutes } from './routes/metrics.ts';
import { registerCheckpointRoutes } from './routes/checkpoints.ts';
import { registerDataRoutes } from './routes/data.ts';
import { registerOpsRoute } from './ops.ts';
import { registerWsRoute } from './routes/ws.ts';
import { answerClientError, registerSecurityHeaders, registerWebRoutes } from './routes/web.ts';
import { DEFAULT_LIMITS } from '../src/protocol/messages.ts';
import { ConsentRequests, ConsentTable, DEFAULT_CONSENT_LIMITS, loadConsents, saveConsents, type ConsentLimits } from './consent.ts';
import { registerConsentRoutes } from './routes/consent.ts';
import { ConnectionCap, DEFAULT_CONNECTION_LIMITS, proxyMatcher, type ConnectionLimits } from './address-budget.ts';

export interface AppDeps {
  dataDir: string;
  /** Defaults to `<dataDir>/murmur.sqlite`. */
  db?: Db;
  clock?: Clock;
  /** Pino-compatible logger; defaults to Fastify's JSON logger at `logLevel`, or silence. */
  logger?: FastifyBaseLogger;
  logLevel?: string | false;
  /** Where the default logger writes (stdout if unset); `murmur serve` keeps stdout for people. */
  logStream?: NodeJS.WritableStream;
  /** Uniform [0, 1): pairing and checkpoint peer choice. */
  rng?: () => number;
  /** Data sets; defaults to `<dataDir>/datasets/` (the default run's Moby Dick is prepared there). */
  datasets?: DatasetSource;
  /** STUN/TURN servers for volunteers (server/ice.ts); none by default. */
  ice?: IceSettings;
  /** Serve HTTPS (and WSS) with this certificate: browsers give WebGPU only to secure contexts. */
  tls?: { key: Buffer; cert: Buffer };
}

export interface AppOptions {
  /** Scheduled checkpoint interval per run (0: only on request). */
  checkpointEveryMs: number;
  /** Newest checkpoints kept per run. */
  checkpointKeep: number;
  stateRequestTimeoutMs: number;
  hub: Partial<PeerHubOptions>;
  /** How long a volunteer's session token stays valid after it was issued (each welcome renews it). */
  sessionTtlMs: number;
  /** Caps on dashboard event streams (global, per client address, per run). */
  live: Partial<LiveLimits>;
  /** Metric retention: report rows per run before the oldest are thinned (server/metrics.ts). */
  metrics: Partial<MetricsOptions>;
  /** Join and leave events kept per run before the oldest go (server/events.ts). */
  maxPeerEventsPerRun: number;
  /** Offender reports kept per run before the oldest go (server/events.ts). */
  maxOffenderEventsPerRun: number;
  /** Built web app (volunteer page, dashboard, embed script); served when it exists. */
  webRoot: string;
  /** Create the default run (tiny on Moby Dick) when absent. */
  defaultRun: boolean;
  /** Worker threads that measure an uploaded state (default: every core but one, at most 8). */
  evalThreads?: number;
  /** The seed of each checkpoint measurement's windows (default: secret and fresh); tests fix it to compare exactly. */
  evalWindowSeed?: () => number;
  /**
   * Reverse proxies whose X-Forwarded-For is believed (addresses, CIDRs, or proxy-addr's names
   * `loopback`, `linklocal`, `uniquelocal`): a request whose socket peer is one of them has the
   * client address the header names (its rightmost untrusted entry), so per-address budgets and
   * votes count clients, not the proxy. None by default: the header is then ignored, since any
   * client can send it.
   */
  trustProxy?: string[];
  /** What anonymous metric, connectivity, event, peer-list and run reads may cost the event loop (server/read-budget.ts). */
  reads: Partial<ReadLimits>;
  /** What anonymous downloads (data, checkpoints, states, exports) may hold and send (server/download-budget.ts). */
  downloads: Partial<DownloadLimits>;
  /**
   * Compute metric and connectivity answers in a worker thread on a connection of its own
   * (server/read-worker.ts), off the event loop; false: on the event loop, as before it had one
   * (for comparison, and for tests that count the statements the coordinator's connection runs).
   * A database in memory is always read on the event loop.
   */
  readWorker: boolean;
  /** How long the widget's consent requests live, and how many may be open (server/consent.ts). */
  consent: Partial<ConsentLimits>;
  /** TCP connections one client address, and one IPv6 /48, may hold open (server/address-budget.ts, ConnectionCap). */
  connections: Partial<ConnectionLimits>;
}

/** How long a closing coordinator lets the requests in flight finish before it closes every connection left. */
export const SHUTDOWN_GRACE_MS = 2000;

export const DEFAULT_APP_OPTIONS: AppOptions = {
  checkpointEveryMs: 10 * 60_000,
  checkpointKeep: 5,
  stateRequestTimeoutMs: 120_000,
  hub: {},
  live: {},
  metrics: {},
  maxPeerEventsPerRun: DEFAULT_MAX_PEER_EVENTS_PER_RUN,
  maxOffenderEventsPerRun: DEFAULT_MAX_OFFENDER_EVENTS_PER_RUN,
  sessionTtlMs: DEFAULT_SESSION_TTL_MS,
  webRoot: join(import.meta.dirname, '..', 'dist', 'web'),
  defaultRun: true,
  reads: {},
  downloads: {},
  readWorker: true,
  consent: {},
  connections: {},
};

export interface Coordinator {
  app: FastifyInstance;
  db: Db;
  hub: PeerHub;
  runs: RunStore;
  metrics: MetricsStore;
  live: LiveHub;
  events: EventLog;
  checkpoints: CheckpointStore;
  scheduler: CheckpointScheduler;
  evaluator: CheckpointEvaluator;
  datasets: DatasetSource;
  /** What anonymous reads have cost and been refused (server/read-budget.ts). */
  reads: ReadBudget;
  /** What anonymous downloads have taken, been refused and been cut (server/download-budget.ts). */
  downloads: DownloadBudget;
  /** The widget's open consent requests (server/consent.ts). */
  consents: ConsentRequests;
  /** Connections open per client, and those refused (server/address-budget.ts). */
  connections: ConnectionCap;
  /** The thread computing metric and connectivity answers (null: they are computed on the event loop). */
  readWorker: ReadWorker | null;
  /** Stored checkpoints not measured by this coordinator on their run's windows, measured at start (server/checkpoint-remeasure.ts). */
  remeasured: Promise<RemeasureResult>;
  adminToken: string;
  /** True on the first start of this data dir: the caller prints the token once. */
  adminTokenCreated: boolean;
  close(): Promise<void>;
}

/**
 * Fastify's Ajv, set per part of the request as Fastify's documentation shows: nothing is ever
 * removed (an unknown field is refused, not dropped) and a JSON body is taken as sent ("5" is
 * not 5). Query strings and path parameters are text, so only they convert "5" to a number.
 * Stopping at the first error keeps a hostile body from costing more than one error.
 */
const ajvOptions = { removeAdditional: false, useDefaults: false, allErrors: false } as const;
const strictAjv = new Ajv({ ...ajvOptions, coerceTypes: false });
const textAjv = new Ajv({ ...ajvOptions, coerceTypes: true });

/**
 * `validate` (Ajv, coercing text) refusing what it coerced to a non-finite number. Ajv takes
 * "Infinity", "-Infinity" and "1e400" as numbers (integers, even) and then checks minimum and
 * maximum only against finite ones, so ?maxPoints=Infinity passed as within 1..20000: a raw
 * answer of every row of a run (70 MB), and ?limit=Infinity reached SQLite as a LIMIT it refuses
 * (500). No query field means a non-finite number, so every one is refused, naming the field.
 */
function finiteOnly(validate: ValidateFunction): ValidateFunction {
  const checked = ((data: unknown, ctx?: Parameters<ValidateFunction>[1]) => {
    if (!validate(data, ctx)) {
      checked.errors = validate.errors;
      return false;
    }
    const at = nonFinite(data, '');
    checked.errors = at === null ? null : [{ keyword: 'finite', instancePath: at, schemaPath: '#', params: {}, message: 'must be a finite number' }];
    return at === null;
  }) as ValidateFunction;
  // Fastify passes the parent (so Ajv may coerce a root value) to a function that has one.
  return Object.assign(checked, { schema: validate.schema, schemaEnv: validate.schemaEnv });
}

/** JSON pointer of the first non-finite number in `v` (values of a query string or path: a few), or null. */
function nonFinite(v: unknown, at: string): string | null {
  if (typeof v === 'number') return Number.isFinite(v) ? null : at;
  if (v === null || typeof v !== 'object') return null;
  for (const [k, x] of Object.entries(v)) {
    const found = nonFinite(x, `${at}/${k.replace(/~/g, '~0').replace(/\//g, '~1')}`);
    if (found !== null) return found;
  }
  return null;
}

export async function buildApp(deps: AppDeps, opts: Partial<AppOptions> = {}): Promise<Coordinator> {
  const o: AppOptions = { ...DEFAULT_APP_OPTIONS, ...opts };
  const clock = deps.clock ?? backgroundClock;
  const rng = deps.rng ?? Math.random;
  mkdirSync(deps.dataDir, { recursive: true, mode: 0o700 });
  const db = deps.db ?? openDb(join(deps.dataDir, 'murmur.sqlite'));
  const admin = loadOrCreateSecret(deps.dataDir, ADMIN_TOKEN_FILE);
  const signer = new SessionSigner(startSessionKeys(deps.dataDir), () => clock.now(), o.sessionTtlMs);
  const hubOptions: PeerHubOptions = { ...DEFAULT_HUB_OPTIONS, ...o.hub, limits: { ...DEFAULT_LIMITS, ...(o.hub.limits ?? {}) } };

  const app = Fastify({
    // Node's own refusal of an HTTP/1.1 request without Host was a bare 400 with no body; an
    // onRequest hook refuses it by name instead (below, after the WebSocket plugin's).
    ...(deps.tls ? { https: { key: deps.tls.key, cert: deps.tls.cert, requireHostHeader: false } } : { http: { requireHostHeader: false } }),
    ...(deps.logger ? { loggerInstance: deps.logger } : { logger: deps.logLevel ? { level: deps.logLevel, ...(deps.logStream ? { stream: deps.logStream } : {}) } : false }),
    // Any anonymous client may send a body (the consent routes take one, and an unknown route or
    // method still reads what it was sent), which waits in memory until it is whole, for up to
    // requestTimeout: so the default is what an anonymous body needs. The admin's run configs
    // (ADMIN_BODY_BYTES) and state uploads set their own limits, checked after their token.
    bodyLimit: ANON_BODY_BYTES,
    // A slow request cannot hold a socket for ever, yet a `small` checkpoint upload (~80 MB)
    // still fits through a slow home uplink; headers must arrive within Node's 60 s anyway.
    requestTimeout: 600_000,
    return503OnClosing: true,
    // req.ip (every per-address budget: server/routes/ws.ts, server/routes/metrics.ts) is the
    // socket peer unless that peer is a proxy the operator named (`murmur serve --trust-proxy`).
    ...(o.trustProxy && o.trustProxy.length > 0 ? { trustProxy: o.trustProxy } : {}),
    // Routes declare TypeBox schemas; a refused request names the field in the words the
    // WebSocket and peer messages use (src/protocol/check.ts).
    schemaErrorFormatter: (errors, dataVar) => new Error(describeIssues(errors as unknown as SchemaIssue[], dataVar)),
    // A request the HTTP parser refused is answered by name too (answerClientError).
    clientErrorHandler: answerClientError,
    // A path Fastify cannot route (a bad percent-escape, a parameter past maxParamLength) is
    // answered here, before any hook: named like every other refusal (onSend adds the security
    // headers), and, for an Upgrade request, its socket closed once answered. No hook of
    // @fastify/websocket's runs to close it, and it is no longer Node's HTTP server's: it stayed
    // open for as long as its client kept it, and the coordinator's close waited on it.
    frameworkErrors: (err, req, reply) => {
      if (req.raw.headers.upgrade !== undefined) reply.raw.once('finish', () => req.raw.socket.destroy());
      void (reply as FastifyReply).code(err.statusCode ?? 400).send({ error: err.message.slice(0, 300), code: err.code });
    },
  });
  // Connections per client, counted at the socket before a request is read (ConnectionCap). A
  // connection from a proxy named by --trust-proxy holds many clients' requests, so the proxy's
  // own limits apply there; any other peer, behind --trust-proxy too, reached the port itself and
  // is capped like any client (naming a proxy used to lift the cap from every connection).
  const connections = new ConnectionCap({ ...DEFAULT_CONNECTION_LIMITS, ...o.connections });
  const fromProxy = proxyMatcher(o.trustProxy ?? []);
  app.server.on('connection', (socket: Socket) => {
    if (socket.destroyed) return;
    const remote = socket.remoteAddress ?? '';
    if (fromProxy(remote)) return;
    const release = connections.admit(remote);
    if (release === null) {
      socket.destroy();
      return;
    }
    socket.once('close', release);
  });
  app.setValidatorCompiler(({ schema, httpPart }) => (httpPart === 'body' ? strictAjv.compile(schema) : finiteOnly(textAjv.compile(schema))));
  app.setErrorHandler((err: Error & { statusCode?: number; validationContext?: string; code?: string }, req, reply) => {
    const status = err.statusCode && err.statusCode >= 400 ? err.statusCode : 500;
    if (status >= 500) req.log.error({ err }, 'request failed');
    void reply.code(status).send({ error: status >= 500 ? 'internal error' : err.message, ...(err.code ? { code: err.code } : {}) });
  });
  app.setNotFoundHandler((req, reply) => {
    void reply.code(404).send({ error: `no route ${req.method} ${req.url.split('?')[0]!.slice(0, 200)}` });
  });

  const now = () => clock.now();
  const runs = new RunStore(db, now);
  const dbFile = db.name !== ':memory:' && db.name !== '' ? db.name : null;
  const readWorker = o.readWorker && dbFile ? new ReadWorker(dbFile) : null;
  const metricsOptions = { ...DEFAULT_METRICS_OPTIONS, ...o.metrics };
  const metrics = new MetricsStore(db, metricsOptions, readWorker?.read ?? inlineReader(db, metricsOptions.now));
  const live = new LiveHub(undefined, undefined, { ...DEFAULT_LIVE_LIMITS, ...o.live });
  const events = new EventLog(db, live, now, o.maxPeerEventsPerRun, (problem) => app.log.warn({ problem }, 'stored event skipped'), o.maxOffenderEventsPerRun);
  const datasets = deps.datasets ?? new DirDatasetSource(join(deps.dataDir, 'datasets'));
  const checkpoints = new CheckpointStore(db, join(deps.dataDir, 'checkpoints'), o.checkpointKeep);
  const logger = app.log;

  if (o.defaultRun && !runs.get('default')) {
    if (!deps.datasets) prepareMobyDick(join(deps.dataDir, 'datasets'));
    const run = runs.ensureDefault();
    events.append(run.id, 'run-created', null, { run });
  }
  const fixed = checkpoints.reconcile();
  if (fixed.indexed + fixed.dropped + fixed.temps + fixed.orphans + fixed.rederived + fixed.unreadable.length > 0) logger.warn(fixed, 'checkpoint store repaired after an unclean stop');

  const hub = new PeerHub({ db, clock, rng, logger, signer, runs, metrics, events, live, datasets, checkpoints, ice: deps.ice }, hubOptions);
  const scheduler = new CheckpointScheduler({ hub, runs, events, clock, rng, logger }, {
    intervalMs: o.checkpointEveryMs, requestTimeoutMs: o.stateRequestTimeoutMs,
  });
  const evaluator = new CheckpointEvaluator(datasets, {
    ...(o.evalThreads !== undefined ? { threads: o.evalThreads } : {}), ...(o.evalWindowSeed ? { windowSeed: o.evalWindowSeed } : {}),
  });
  // Checkpoints an older coordinator stored with a peer's claimed loss, or whose loss was measured
  // on other windows (a run whose batch or sequence length changed), are measured in the
  // background, one pass after another, and offered only once measured.
  let remeasuring: Promise<RemeasureResult> = Promise.resolve({ measured: 0, refused: 0 });
  const remeasure = (): Promise<RemeasureResult> => (remeasuring = remeasuring.then(() => remeasureCheckpoints({ runs, checkpoints, evaluator, logger: app.log }))
    .catch((err: Error) => {
      app.log.error({ err: err.message }, 'measuring stored checkpoints again failed; those not measured stay unoffered');
      return { measured: 0, refused: 0 };
    }));
  const remeasured = remeasure();

  await app.register(websocket, {
    options: { maxPayload: hubOptions.limits.maxMessageBytes },
  });
  // HTTP/1.1 requires a Host; Node's own check (off above) answered a bare 400 with no body. After
  // @fastify/websocket's hooks: an answer before them to an Upgrade request left its socket, no
  // longer Node's HTTP server's, open for good, and the coordinator's close waited on it.
  app.addHook('onRequest', async (req, reply) => {
    if (req.raw.httpVersion === '1.1' && req.headers.host === undefined) {
      return reply.code(400).send({ error: 'an HTTP/1.1 request must carry a Host header (RFC 9112, section 3.2); this one has none' });
    }
  });
  const reads = new ReadBudget({ ...DEFAULT_READ_LIMITS, ...o.reads }, admin.value);
  const downloads = new DownloadBudget({ ...DEFAULT_DOWNLOAD_LIMITS, ...o.downloads }, admin.value);
  const ctx: AppContext = { app, db, hub, runs, metrics, live, events, checkpoints, scheduler, evaluator, remeasure, datasets, signer, reads, downloads, adminToken: admin.value, clock };
  registerSecurityHeaders(app, (run) => runs.embedSites(run));
  app.get('/health', { schema: {} }, async () => ({ ok: true, peers: hub.connectionCount(), time: clock.now() }));
  // Operators check a deployment's TURN with credentials of their own (`murmur ice-check`).
  app.post('/api/ice-check', { onRequest: requireAdmin(admin.value), schema: {} }, async (req) =>
    iceFor(deps.ice ?? iceSettings({}), req.ip, clock.now()));
  registerRunRoutes(ctx);
  registerMetricRoutes(ctx);
  registerCheckpointRoutes(ctx);
  registerDataRoutes(ctx);
  registerOpsRoute(ctx, { evaluator, readWorker, dbFile });
  registerWsRoute(ctx);
  const consents = new ConsentRequests({ ...DEFAULT_CONSENT_LIMITS, ...o.consent }, now);
  {
    // The sessions the last coordinator on this data dir held as it closed or crashed, for runs still training.
    const { saved, unreadable } = loadConsents(db, consents.limits.total);
    const taken = consents.restore(saved.filter((s) => runs.get(s.run)?.status === 'running'));
    if (saved.length + unreadable > 0) logger.info({ saved: saved.length, taken, unreadable }, 'consent sessions taken back from the last coordinator');
    // From here on each change is written as it happens, so a crash keeps them too; a failed write
    // is said (the first of a streak, then every 100th) and the sessions go on in memory.
    consents.persistTo(new ConsentTable(db), (err, streak) => {
      if (streak === 1 || streak % 100 === 0) logger.error({ err, streak }, 'consent sessions not written to the database: they go on in memory, and a crash now would lose them');
    });
  }
  registerConsentRoutes(ctx, consents);
  await registerWebRoutes(app, o.webRoot);

  // Long-lived connections (volunteer WebSockets, dashboard event streams, downloads) end before the HTTP
  // server closes: server.close() waits for every open connection, so an open dashboard tab
  // would otherwise keep `murmur start` from exiting on Ctrl-C.
  app.addHook('preClose', async () => {
    hub.shutdown();
    live.close();
    downloads.closeAll();
    // A connection that never sends a request (a browser's spare preconnect, a client that opens
    // one and waits) holds server.close() until Node's header timeout, a minute or more: after a
    // grace for the requests in flight, every connection left is closed.
    setTimeout(() => app.server.closeAllConnections(), SHUTDOWN_GRACE_MS).unref();
  });
  app.addHook('onClose', async () => {
    // Served no more: the widget's sessions go to the next start, whose first claims find them
    // (written as they changed; written whole once more here).
    try {
      saveConsents(db, consents.saved());
    } catch (err) {
      logger.error({ err }, 'consent sessions not written as the coordinator closed: the next start has those last written');
    }
    scheduler.stop();
    await evaluator.close();
    await remeasuring;
    await readWorker?.close();
    metrics.flush();
  });
  scheduler.start();

  return {
    app, db, hub, runs, metrics, live, events, checkpoints, scheduler, evaluator, datasets, reads, downloads, readWorker, remeasured, consents, connections,
    adminToken: admin.value, adminTokenCreated: admin.created,
    close: async () => {
      await app.close();
      if (!deps.db) db.close();
    },
  };
}
