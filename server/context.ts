// What every route module gets from the app: the stores, the hub and the secrets. In its own
// module so the routes depend on these types and not on server/app.ts, which imports them.
import type { FastifyInstance } from 'fastify';
import type { Clock } from '../src/protocol/clock.ts';
import type { SessionSigner } from './auth.ts';
import type { CheckpointScheduler } from './checkpoint-scheduler.ts';
import type { CheckpointStore } from './checkpoints.ts';
import type { CheckpointEvaluator } from './checkpoint-validate.ts';
import type { DatasetSource } from './datasets.ts';
import type { Db } from './db.ts';
import type { EventLog } from './events.ts';
import type { LiveHub } from './live.ts';
import type { MetricsStore } from './metrics.ts';
import type { PeerHub } from './peers.ts';
import type { RunStore } from './runs.ts';
import type { RemeasureResult } from './checkpoint-remeasure.ts';
import type { ReadBudget } from './read-budget.ts';
import type { DownloadBudget } from './download-budget.ts';

export type AppContext = {
  app: FastifyInstance; db: Db; hub: PeerHub; runs: RunStore; metrics: MetricsStore; live: LiveHub; events: EventLog;
  checkpoints: CheckpointStore; scheduler: CheckpointScheduler; evaluator: CheckpointEvaluator; datasets: DatasetSource; signer: SessionSigner;
  /** Anonymous reads' share of the event loop (server/read-budget.ts). */
  reads: ReadBudget;
  /** Anonymous downloads' places and share of the uplink (server/download-budget.ts). */
  downloads: DownloadBudget;
  /** Starts one more pass of server/checkpoint-remeasure.ts (after any under way); resolves with its totals. */
  remeasure: () => Promise<RemeasureResult>;
  adminToken: string; clock: Clock;
};
