// The dashboard's view of a real coordinator: REST for the run, stored metrics and checkpoints,
// Server-Sent Events (/api/runs/:run/stream) for everything live. EventSource reconnects by
// itself; after a reconnect the history is fetched again, so a gap is filled (reports are keyed
// by peer and time in the controller's views; duplicates only thicken a line, never move it), and
// so are the run events (the controller drops those it holds by id).
import { RUN_EVENT_KINDS } from '../../protocol/events.ts';
import type { CheckpointItem, DashboardHandlers, DashboardRun, DashboardSource, MetricReport, RunEventItem, RunEventKind, TextSample } from '../ports.ts';

/** Largest page the coordinator returns raw (its maxPoints limit). */
const MAX_POINTS = 20_000;

export interface CoordinatorDashboardInit {
  /** Coordinator origin, e.g. location.origin. */
  baseUrl: string;
  runId: string;
  fetch?: typeof fetch;
  EventSource?: typeof EventSource;
  /** Generates text from a checkpoint (the in-browser sampler); null: samples unavailable. */
  sampler?: ((c: CheckpointItem) => Promise<TextSample>) | null;
}

interface RawPoint {
  t: number; peerId: string; step: number; round: number; trainLoss: unknown; valLoss: unknown; tokensPerS: number;
  bytesIn: number; bytesOut: number; partner: string | null; partnerDist: number | null; adapter: string | null;
  linkLocal?: string | null; linkRemote?: string | null; linkFailures?: number; linkError?: string | null;
}

export class CoordinatorDashboardSource implements DashboardSource {
  private readonly fetch: typeof fetch;
  private readonly ES: typeof EventSource;

  constructor(private readonly init: CoordinatorDashboardInit) {
    this.fetch = init.fetch ?? globalThis.fetch.bind(globalThis);
    this.ES = init.EventSource ?? globalThis.EventSource;
  }

  private url(path: string): string {
    return `${this.init.baseUrl.replace(/\/$/, '')}/api/runs/${encodeURIComponent(this.init.runId)}${path}`;
  }

  private async get<T>(path: string): Promise<T> {
    const res = await this.fetch(this.url(path));
    if (!res.ok) {
      let detail = '';
      try { detail = ((await res.json()) as { error?: string; message?: string }).message ?? ''; } catch { /* not JSON */ }
      throw new Error(`GET ${path || '/'} on the coordinator gave HTTP ${res.status}${detail ? `: ${detail}` : ''}`);
    }
    return (await res.json()) as T;
  }

  async run(): Promise<DashboardRun> {
    const r = await this.get<{
      id: string; name: string; preset: string; dataset: string; status: 'running' | 'stopped'; createdAt: number; livePeers?: number;
      train: { batch: number; seqLen: number; warmupSteps: number; totalSteps: number; H: number };
    }>('');
    return {
      id: r.id, name: r.name, preset: r.preset, dataset: r.dataset, status: r.status, createdAt: r.createdAt, livePeers: r.livePeers ?? 0,
      tokensPerStep: r.train.batch * r.train.seqLen, warmupSteps: r.train.warmupSteps, totalSteps: r.train.totalSteps, H: r.train.H,
    };
  }

  /**
   * Raw reports, oldest first. When the run holds more than one page, the coordinator would
   * return time buckets without peer ids; we narrow to the most recent span that fits instead,
   * so every peer keeps its own line.
   */
  async history(): Promise<MetricReport[]> {
    let from = 0;
    const to = Date.now();
    for (let attempt = 0; attempt < 12; attempt++) {
      const page = await this.get<{ downsampled: boolean; total: number; points: RawPoint[] }>(`/metrics?from=${from}&to=${to}&maxPoints=${MAX_POINTS}`);
      if (!page.downsampled) return page.points.map(toReport);
      const first = page.points[0]?.t ?? from;
      from = Math.floor(first + (to - first) / 2);
    }
    return [];
  }

  async events(limit: number): Promise<RunEventItem[]> {
    const r = await this.get<{ events: unknown[] }>(`/events?order=desc&limit=${Math.max(1, Math.min(10_000, Math.floor(limit)))}`);
    return r.events.map(toEvent).filter((e): e is RunEventItem => e !== null).reverse();
  }

  async checkpoints(): Promise<CheckpointItem[]> {
    const r = await this.get<{ checkpoints: { id: string; step: number; round: number; valLoss: number | null; tokens: number; peerId: string | null; bytes: number; createdAt: number }[] }>('/checkpoints');
    return r.checkpoints.map((c) => ({
      id: c.id, step: c.step, round: c.round, valLoss: c.valLoss, tokens: c.tokens, peerId: c.peerId, bytes: c.bytes, createdAt: c.createdAt,
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
    es.addEventListener('open', () => {
      h.connection('live');
      // After a reconnect, reports and events published while we were away are only in the store.
      if (opened) {
        void this.history().then((rows) => rows.forEach((r) => h.report(r)), () => {});
        void this.events(RECONNECT_EVENTS).then((rows) => rows.forEach((e) => h.event(e)), () => {});
      }
      opened = true;
    });
    es.addEventListener('error', () => h.connection('reconnecting'));
    es.addEventListener('report', (e) => {
      const r = parse<RawPoint>(e);
      // A frame that is not a report (a proxy's page, a version skew) is dropped, not plotted.
      if (r && typeof r === 'object' && typeof r.peerId === 'string' && Number.isFinite(r.t) && Number.isFinite(r.step)) h.report(toReport(r));
    });
    // Every run event comes on one of three channels; the controller tells them apart by kind.
    for (const channel of ['peer', 'checkpoint', 'run']) {
      es.addEventListener(channel, (e) => {
        const ev = toEvent(parse<unknown>(e));
        if (ev) h.event(ev);
      });
    }
    return () => es.close();
  }
}

/** Events refetched after a reconnect: more than a short outage writes, fewer than a page. */
const RECONNECT_EVENTS = 1000;

const EVENT_KINDS = new Set<RunEventKind>(RUN_EVENT_KINDS);

/** A run event as the coordinator sends it, or null for anything else (a version skew, a proxy's page). */
function toEvent(v: unknown): RunEventItem | null {
  if (!v || typeof v !== 'object') return null;
  const o = v as Record<string, unknown>;
  if (typeof o.id !== 'number' || typeof o.t !== 'number' || !Number.isFinite(o.t) || !EVENT_KINDS.has(o.kind as RunEventKind)) return null;
  if (o.peerId !== null && typeof o.peerId !== 'string') return null;
  return { id: o.id, t: o.t, kind: o.kind as RunEventKind, peerId: o.peerId, data: o.data ?? null };
}

function parse<T>(e: Event): T | null {
  try { return JSON.parse((e as MessageEvent<string>).data) as T; } catch { return null; }
}

/** JSON has no NaN: a coordinator that keeps non-finite losses sends them as strings. */
function loss(v: unknown): number | null {
  if (typeof v === 'number') return v;
  if (v === 'NaN') return NaN;
  if (v === 'Infinity') return Infinity;
  if (v === '-Infinity') return -Infinity;
  return null;
}

function toReport(p: RawPoint): MetricReport {
  return {
    t: p.t, peerId: p.peerId, step: p.step, round: p.round, trainLoss: loss(p.trainLoss), valLoss: loss(p.valLoss), tokensPerS: p.tokensPerS,
    bytesIn: p.bytesIn, bytesOut: p.bytesOut, partner: p.partner, partnerDist: p.partnerDist, adapter: p.adapter,
    linkLocal: p.linkLocal ?? null, linkRemote: p.linkRemote ?? null, linkFailures: p.linkFailures ?? 0, linkError: p.linkError ?? null,
  };
}
