// The dashboard's view of a real coordinator: REST for the run, stored metrics and checkpoints,
// Server-Sent Events (/api/runs/:run/stream) for everything live. EventSource reconnects by
// itself; after a reconnect the history is fetched again, so a gap is filled (reports are keyed
// by peer and time in the controller's views; duplicates only thicken a line, never move it), and
// so are the run events (the controller drops those it holds by id).
//
// Every reply and stream frame is checked against its one schema (src/protocol/api.ts, the same
// the coordinator's stores are typed by): a bad reply fails its request with the field named, a
// bad stream frame is dropped (a proxy's page, a version skew), never plotted, with a console
// warning that names the field. A run event's data is checked against its kind's schema
// (RUN_EVENT_DATA, what the coordinator's event log takes) before the controller reads a field of
// it; one that fails is dropped the same way, from the stream or from a page of stored events
// (where the rest of the page is kept: an older coordinator may have stored it).
import { fetchRetrying, refusalText, READ_RETRIES } from '../../protocol/retry-fetch.ts';
import type { TSchema, Static } from 'typebox';
import { CheckpointList, EventsPage, LiveReport, MetricsPage, PeerList, RUN_EVENT_DATA, RunReply, type MetricPoint } from '../../protocol/api.ts';
import { schemaProblem } from '../../protocol/check.ts';
import { RunEvent } from '../../protocol/events.ts';
import { lossFromWire } from '../../protocol/messages.ts';
import { buildLayout } from '../../model/layout.ts';
import { exchangeLink } from '../../protocol/exchange-link.ts';
import type { CheckpointItem, DashboardHandlers, DashboardRun, DashboardSource, MetricReport, PeerStandingItem, RunEventItem, TextSample } from '../ports.ts';

/** Largest page the coordinator returns raw (its maxPoints limit). */
const MAX_POINTS = 20_000;

/** Dropped frames a page warns about before it goes quiet: a stream of junk must not flood the console. */
const MAX_DROP_WARNINGS = 20;

export interface CoordinatorDashboardInit {
  /** Coordinator origin, e.g. location.origin. */
  baseUrl: string;
  runId: string;
  fetch?: typeof fetch;
  EventSource?: typeof EventSource;
  /** Generates text from a checkpoint (the in-browser sampler); null: samples unavailable. */
  sampler?: ((c: CheckpointItem) => Promise<TextSample>) | null;
}

export class CoordinatorDashboardSource implements DashboardSource {
  private readonly fetch: typeof fetch;
  private readonly ES: typeof EventSource;
  private dropped = 0;

  constructor(private readonly init: CoordinatorDashboardInit) {
    this.fetch = init.fetch ?? globalThis.fetch.bind(globalThis);
    this.ES = init.EventSource ?? globalThis.EventSource;
  }

  private url(path: string): string {
    return `${this.init.baseUrl.replace(/\/$/, '')}/api/runs/${encodeURIComponent(this.init.runId)}${path}`;
  }

  private async get<S extends TSchema>(path: string, schema: S): Promise<Static<S>> {
    // The coordinator refuses reads past this address's share of its time (server/read-budget.ts)
    // and says when to come back: wait that long (a minute at most) and ask again, twice at most.
    const res = await fetchRetrying(this.fetch, this.url(path), {}, { retries: READ_RETRIES });
    if (!res.ok) {
      const detail = await refusalText(res);
      throw new Error(`GET ${path || '/'} on the coordinator gave HTTP ${res.status}${detail ? `: ${detail}` : ''}`);
    }
    const body: unknown = await res.json();
    const problem = schemaProblem(schema, body, 'reply');
    if (problem !== null) throw new Error(`GET ${path || '/'} on the coordinator gave a reply this page cannot read: ${problem}`);
    return body as Static<S>;
  }

  async run(): Promise<DashboardRun> {
    const r = await this.get('', RunReply);
    // Computed here from the run's model and compression, as the volunteer page does: RunReply carries no rate.
    const link = exchangeLink(r.compression, buildLayout(r.model).total);
    return {
      id: r.id, name: r.name, preset: r.preset, dataset: r.dataset, status: r.status, createdAt: r.createdAt, livePeers: r.livePeers,
      tokensPerStep: r.train.batch * r.train.seqLen, warmupSteps: r.train.warmupSteps, totalSteps: r.train.totalSteps, H: r.train.H,
      stepConsensus: r.stepConsensus ?? null,
      linkBytesPerS: link.leastBytesPerS,
      firstLinkBytesPerS: link.firstBytesPerS,
    };
  }

  async standings(): Promise<PeerStandingItem[]> {
    const r = await this.get('/peers', PeerList);
    return r.peers.map((p) => ({ id: p.id, probation: p.probation, client: p.client, site: p.site }));
  }

  /**
   * The run's reports from `since` (ms) on, oldest first, raw: when there are more than
   * MAX_POINTS, each peer's newest, at most a fair share of MAX_POINTS each (the coordinator
   * would otherwise answer with time buckets without peer ids), so every peer keeps its own
   * line and one fast reporter cannot push the others' out. One request, indexed walks on the
   * coordinator.
   */
  async history(since = 0): Promise<MetricReport[]> {
    const page = await this.get(`/metrics?from=${since}&to=${Date.now()}&maxPoints=${MAX_POINTS}&newest=true`, MetricsPage);
    if (page.downsampled) throw new Error('GET /metrics on the coordinator gave time buckets where the newest raw reports were asked');
    return page.points.map(toReport);
  }

  async events(limit: number): Promise<RunEventItem[]> {
    const r = await this.get(`/events?order=desc&limit=${Math.max(1, Math.min(10_000, Math.floor(limit)))}`, EventsPage);
    return r.events.flatMap((e, i) => this.checkEvent(e, `events[${i}]`) ?? []).reverse();
  }

  async checkpoints(): Promise<CheckpointItem[]> {
    const r = await this.get('/checkpoints', CheckpointList);
    return r.checkpoints.map((c) => ({
      id: c.id, step: c.step, round: c.round, valLoss: c.valLoss, measured: c.valBatches !== undefined, tokens: c.tokens, peerId: c.peerId, bytes: c.bytes, createdAt: c.createdAt,
      fileUrl: this.url(`/checkpoints/${encodeURIComponent(c.id)}/file`),
      exportUrl: this.url(`/checkpoints/${encodeURIComponent(c.id)}/export/model.safetensors`),
      exportConfigUrl: this.url(`/checkpoints/${encodeURIComponent(c.id)}/export/config.json`),
    }));
  }

  sample(c: CheckpointItem): Promise<TextSample> {
    if (!this.init.sampler) return Promise.reject(new Error('text sampling is not available on this page'));
    return this.init.sampler(c);
  }

  subscribe(h: DashboardHandlers): () => void {
    const es = new this.ES(this.url('/stream'));
    let opened = false;
    /** The newest report time this stream gave: after a reconnect, history from there on. */
    let lastT = 0;
    es.addEventListener('open', () => {
      h.connection('live');
      // After a reconnect, reports and events published while we were away are only in the store.
      // Asked from the last report seen, not from the start: a question of this tab's own, which
      // no other dashboard's answer serves (the coordinator may answer a whole-run question on a
      // large run from one up to a second old), and fewer rows.
      if (opened) {
        void this.history(lastT).then((rows) => rows.forEach((r) => h.report(r)), () => {});
        void this.events(RECONNECT_EVENTS).then((rows) => rows.forEach((e) => h.event(e)), () => {});
      }
      opened = true;
    });
    es.addEventListener('error', () => h.connection('reconnecting'));
    es.addEventListener('report', (e) => {
      const r = this.parse(e, LiveReport);
      if (r) { const report = toReport(r); lastT = Math.max(lastT, report.t); h.report(report); }
    });
    // Every run event comes on one of three channels; the controller tells them apart by kind.
    for (const channel of ['peer', 'checkpoint', 'run']) {
      es.addEventListener(channel, (e) => {
        const ev = this.parse(e, RunEvent);
        const item = ev && this.checkEvent(ev, e.type);
        if (item) h.event(item);
      });
    }
    return () => es.close();
  }

  /** A stream frame's data, or null when it is not JSON or not what its schema says. */
  private parse<S extends TSchema>(e: Event, schema: S): Static<S> | null {
    let v: unknown;
    try { v = JSON.parse((e as MessageEvent<string>).data); } catch { return this.drop(`a "${e.type}" frame: it is not JSON`); }
    const problem = schemaProblem(schema, v, e.type);
    return problem === null ? v as Static<S> : this.drop(`a "${e.type}" frame: ${problem}`);
  }

  /** A run event as the dashboard holds it (the run is the page's own), or null when its data is not its kind's. */
  private checkEvent(e: RunEvent, where: string): RunEventItem | null {
    const problem = schemaProblem(RUN_EVENT_DATA[e.kind], e.data, `${where}.data`);
    if (problem !== null) return this.drop(`a ${e.kind} event: ${problem}`);
    // Checked just above against the schema of e.kind, which TypeScript cannot pair with e.data.
    return { id: e.id, t: e.t, kind: e.kind, peerId: e.peerId, data: e.data } as RunEventItem;
  }

  /** Says what was dropped and which field was wrong, for the first MAX_DROP_WARNINGS; then drops quietly. */
  private drop(what: string): null {
    this.dropped++;
    if (this.dropped <= MAX_DROP_WARNINGS) console.warn(`[murmur] the dashboard dropped ${what}`);
    if (this.dropped === MAX_DROP_WARNINGS) console.warn(`[murmur] ${MAX_DROP_WARNINGS} malformed frames dropped; any more are dropped without a warning`);
    return null;
  }
}

/** Events refetched after a reconnect: more than a short outage writes, fewer than a page. */
const RECONNECT_EVENTS = 1000;

function toReport(p: MetricPoint | LiveReport): MetricReport {
  return {
    t: p.t, peerId: p.peerId, step: p.step, round: p.round, trainLoss: lossFromWire(p.trainLoss), valLoss: lossFromWire(p.valLoss), tokensPerS: p.tokensPerS,
    bytesIn: p.bytesIn, bytesOut: p.bytesOut, partner: p.partner, partnerDist: p.partnerDist, adapter: p.adapter,
    linkLocal: p.linkLocal ?? null, linkRemote: p.linkRemote ?? null, linkFailures: p.linkFailures ?? 0, linkError: p.linkError ?? null,
  };
}
