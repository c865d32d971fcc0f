// Dashboard reads off the event loop. A metrics or connectivity answer on a full run (200,000
// report rows) is 0.1-0.9 s of synchronous SQLite; on the event loop that also relays every
// volunteer's signals and acknowledges their reports, each such read stalled them all that long
// (bench/reads.ts). So the answers the cache lacks (server/metrics.ts, AnswerCache) are computed
// here, in one worker thread holding a read-only connection of its own to the same file: WAL mode
// lets it read while the coordinator writes, and a read asked after a commit sees that commit, so
// every acknowledged report is in the answer. One thread, jobs in turn: reads together take at
// most one core, and the read budget (server/read-budget.ts) shares that core among clients.
// A worker that dies fails its jobs with the reason and the next job starts a new one.
import { isMainThread, parentPort, Worker, workerData } from 'node:worker_threads';
import Database from 'better-sqlite3';
import { answerJob, type Answer, type AnswerJob, type Reader } from './metrics.ts';

type Job = { id: number; job: AnswerJob };
type Reply = { id: number; ok: true; json: string; ms: number } | { id: number; ok: false; error: string };

export class ReadWorker {
  private worker: Worker | null = null;
  private next = 1;
  private readonly pending = new Map<number, { resolve: (a: Answer) => void; reject: (e: Error) => void }>();
  private closed = false;
  readonly stats = { jobs: 0, started: 0 };

  /** `file`: the coordinator's SQLite file (a database in memory has no file to share: use inlineReader). */
  constructor(private readonly file: string) {}

  /** The Reader MetricsStore takes. */
  readonly read: Reader = (job) => {
    if (this.closed) return Promise.reject(new Error('the coordinator is closing'));
    const w = this.worker ?? this.start();
    const id = this.next++;
    this.stats.jobs++;
    return new Promise<Answer>((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      w.postMessage({ id, job } satisfies Job);
    });
  };

  private start(): Worker {
    const w = new Worker(new URL('./read-worker.ts', import.meta.url), {
      workerData: { murmurReads: this.file },
      execArgv: ['--import', new URL('../scripts/node-register.mjs', import.meta.url).href],
    });
    this.stats.started++;
    this.worker = w;
    w.on('message', (r: Reply) => {
      const p = this.pending.get(r.id);
      if (!p) return;
      this.pending.delete(r.id);
      if (r.ok) p.resolve({ json: r.json, ms: r.ms });
      else p.reject(new Error(`reading the reports failed: ${r.error}`));
    });
    const fail = (why: string) => {
      if (this.worker !== w) return;
      this.worker = null;
      for (const p of this.pending.values()) p.reject(new Error(`the read worker ${why}`));
      this.pending.clear();
    };
    w.on('error', (err) => fail(`failed: ${err.message}`));
    w.on('exit', (code) => fail(`exited with code ${code}`));
    // Idle, it does not keep the process alive (the coordinator's server does).
    w.unref();
    return w;
  }

  /** Jobs sent and not answered. */
  get queued(): number {
    return this.pending.size;
  }

  async close(): Promise<void> {
    this.closed = true;
    const w = this.worker;
    if (w) await w.terminate();
  }
}

if (!isMainThread && typeof (workerData as { murmurReads?: unknown } | null)?.murmurReads === 'string') {
  const db = new Database((workerData as { murmurReads: string }).murmurReads, { readonly: true, fileMustExist: true });
  db.pragma('busy_timeout = 5000');
  parentPort!.on('message', ({ id, job }: Job) => {
    const t0 = performance.now();
    let reply: Reply;
    try {
      const json = answerJob(db, job);
      reply = { id, ok: true, json, ms: performance.now() - t0 };
    } catch (err) {
      reply = { id, ok: false, error: (err as Error).message };
    }
    parentPort!.postMessage(reply);
  });
}
