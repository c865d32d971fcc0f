// Non-finite losses end to end through the real coordinator: JSON has no NaN, so a diverged
// replica reports trainLoss "NaN" (WireLoss). The report is accepted and acked, stored as such
// in SQLite, streamed live over SSE, returned by REST, flagged in downsampled buckets, and the
// dashboard controller fed by CoordinatorDashboardSource raises its NaN alert from it, both live
// and from history. Any other string is still refused.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { lossFromWire, lossToWire } from '../src/protocol/messages.ts';
import { WebSocket } from 'ws';
import type { WebSocketCtor } from '../src/sync/signaling-client.ts';
import type { TrainerPort } from '../src/ui/ports.ts';
import { CoordinatorDashboardSource } from '../src/ui/browser/coordinator-dashboard.ts';
import { CoordinatorVolunteerBackend, type RunMesh } from '../src/ui/browser/volunteer-backend.ts';
import { DashboardController } from '../src/ui/controllers/dashboard-controller.ts';
import { RawPeer, report, startServer, until, type TestServer } from './support/coordinator.ts';

let s: TestServer;
beforeAll(async () => { s = await startServer(); });
afterAll(async () => { await s?.close(); });

/**
 * The part of EventSource the dashboard source uses, over fetch (Node 20 has no EventSource):
 * `open`, `error`, and named events with `data`, parsed from the text/event-stream body.
 */
class FetchEventSource {
  private readonly listeners = new Map<string, ((e: Event) => void)[]>();
  private readonly abort = new AbortController();
  constructor(url: string) {
    void this.run(url).catch(() => this.emit('error', {}));
  }
  addEventListener(type: string, fn: (e: Event) => void): void {
    this.listeners.set(type, [...(this.listeners.get(type) ?? []), fn]);
  }
  close(): void { this.abort.abort(); }
  private emit(type: string, e: object): void {
    for (const fn of this.listeners.get(type) ?? []) fn(e as Event);
  }
  private async run(url: string): Promise<void> {
    const res = await fetch(url, { signal: this.abort.signal });
    if (!res.ok || !res.body) throw new Error(`GET ${url}: HTTP ${res.status}`);
    this.emit('open', {});
    const dec = new TextDecoder();
    let buf = '';
    const reader = res.body.getReader();
    for (;;) {
      const { done, value } = await reader.read();
      if (done) return;
      buf += dec.decode(value, { stream: true });
      let i: number;
      while ((i = buf.indexOf('\n\n')) >= 0) {
        const block = buf.slice(0, i);
        buf = buf.slice(i + 2);
        let event = 'message', data = '';
        for (const line of block.split('\n')) {
          if (line.startsWith('event: ')) event = line.slice(7);
          else if (line.startsWith('data: ')) data += line.slice(6);
        }
        if (data) this.emit(event, { data });
      }
    }
  }
}

const dashboard = () => new DashboardController({
  source: new CoordinatorDashboardSource({ baseUrl: s.url, runId: 'default', EventSource: FetchEventSource as unknown as typeof EventSource }),
  refreshMs: 100,
});

describe('non-finite losses through the coordinator', () => {
  it('maps NaN and ±Infinity to their wire names and back', () => {
    expect([NaN, Infinity, -Infinity, 2.5, null].map(lossToWire)).toEqual(['NaN', 'Infinity', '-Infinity', 2.5, null]);
    expect(lossFromWire('NaN')).toBeNaN();
    expect([lossFromWire('Infinity'), lossFromWire('-Infinity'), lossFromWire(3), lossFromWire(null)]).toEqual([Infinity, -Infinity, 3, null]);
  });

  it('accepts, stores, streams and returns a "NaN" loss, and the dashboard raises its NaN alert', async () => {
    // Live: a dashboard subscribed before the report arrives sees it on the SSE stream.
    const live = dashboard();
    await live.start();
    await until(() => live.connection === 'live', 15_000, 'the live stream to open', 100);
    const sse = new FetchEventSource(`${s.url}/api/runs/default/stream`);
    const streamed: unknown[] = [];
    sse.addEventListener('report', (e) => streamed.push(JSON.parse((e as MessageEvent<string>).data)));

    const { peer, welcome } = await RawPeer.join(s.wsUrl);
    try {
      peer.send(report(1, { trainLoss: 4.5, valLoss: 4.6 }));
      await peer.next((m) => m.t === 'ack' && m.seq === 1);
      peer.send(report(2, { trainLoss: 'NaN', valLoss: 'Infinity' }));
      const ack = await peer.next((m) => m.t === 'ack' && m.seq === 2);
      expect(ack).toEqual({ t: 'ack', seq: 2 });

      // Stored as TEXT beside the REAL of a healthy report.
      const rows = s.c.db.prepare(`SELECT seq, typeof(train_loss) AS tt, train_loss AS tl, val_loss AS vl FROM reports WHERE peer_id = ? ORDER BY seq`).all(welcome.peerId);
      expect(rows).toEqual([{ seq: 1, tt: 'real', tl: 4.5, vl: 4.6 }, { seq: 2, tt: 'text', tl: 'NaN', vl: 'Infinity' }]);

      // Streamed live.
      await until(() => streamed.some((r) => (r as { seq: number }).seq === 2), 15_000, 'the NaN report on the SSE stream', 100);
      expect(streamed.find((r) => (r as { seq: number }).seq === 2)).toMatchObject({ peerId: welcome.peerId, trainLoss: 'NaN', valLoss: 'Infinity' });

      // Returned by REST, raw.
      const res = await fetch(`${s.url}/api/runs/default/metrics?peer=${welcome.peerId}`);
      const body = await res.json() as { downsampled: boolean; points: { seq: number; trainLoss: unknown; valLoss: unknown }[] };
      expect(body.downsampled).toBe(false);
      expect(body.points.map((p) => [p.seq, p.trainLoss, p.valLoss])).toEqual([[1, 4.5, 4.6], [2, 'NaN', 'Infinity']]);

      // Downsampled into one bucket: the mean ignores the NaN, and the bucket is flagged.
      const q = s.c.metrics.query({ runId: 'default', peerId: welcome.peerId, from: 0, to: Date.now() + 1000, maxPoints: 1 });
      expect(q.downsampled).toBe(true);
      expect(q.points).toHaveLength(1);
      expect(q.points[0]).toMatchObject({ n: 2, trainLoss: 4.5, valLoss: 4.6, nonFinite: 1 });

      // The live dashboard raises the NaN alert from the streamed report.
      const nan = (c: DashboardController) => c.alerts.find((a) => a.kind === 'nan' && a.peerId === welcome.peerId);
      await until(() => nan(live) !== undefined, 15_000, 'the NaN alert on the live dashboard', 100);
      expect(nan(live)!.message).toMatch(new RegExp(`${welcome.peerId} reported a NaN training loss at step 2`));

      // And a dashboard opened afterwards raises it from the stored history.
      const later = dashboard();
      await later.start();
      try {
        await until(() => nan(later) !== undefined, 15_000, 'the NaN alert from history', 100);
        expect(nan(later)!.severity).toBe('critical');
      } finally {
        later.dispose();
      }
    } finally {
      peer.close();
      sse.close();
      live.dispose();
    }
  });

  it('the volunteer page\'s backend sends a NaN loss by name, and it is stored', async () => {
    // The page's real backend and signaling client; training worker and mesh are not needed
    // to report, so their factories return inert stand-ins.
    const backend = new CoordinatorVolunteerBackend({
      baseUrl: s.url, runId: 'default', WebSocket: WebSocket as unknown as WebSocketCtor,
      createTrainer: async () => ({ dispose: async () => {} }) as unknown as TrainerPort,
      // Nobody to copy the run's state from: the session starts fresh and never serves.
      createMesh: async () => ({ destroy: () => {}, bootstrap: async () => null, serveState: () => {}, stats: () => ({ peers: 0, bytesIn: 0, bytesOut: 0 }) }) as unknown as RunMesh,
    });
    const session = await backend.join();
    try {
      session.report({ time: Date.now(), step: 7, round: 1, trainLoss: NaN, valLoss: -Infinity, tokensPerS: 1, bytesIn: 0, bytesOut: 0, partner: null, partnerDist: null, adapter: null });
      const stored = () => s.c.db.prepare(`SELECT train_loss AS tl, val_loss AS vl FROM reports WHERE peer_id = ?`).all(session.peerId);
      await until(() => stored().length === 1, 15_000, 'the report from the page backend in SQLite', 100);
      expect(stored()).toEqual([{ tl: 'NaN', vl: '-Infinity' }]);
    } finally {
      await session.close();
    }
  });

  it('still refuses any other string for a loss', async () => {
    const { peer, welcome } = await RawPeer.join(s.wsUrl);
    try {
      let i = 0;
      for (const bad of ['nan', 'Inf', '1.5', 'NaN ', '', '+Infinity']) {
        for (const field of ['trainLoss', 'valLoss']) {
          peer.frames.length = 0;
          peer.send(report(100 + i++, { [field]: bad }));
          const err = await peer.next((m) => m.t === 'error');
          expect(err).toMatchObject({ t: 'error', code: 'bad-message' });
          expect((err as { message: string }).message).toContain(`report.${field} must be`);
        }
      }
      expect(s.c.db.prepare(`SELECT COUNT(*) AS n FROM reports WHERE peer_id = ?`).get(welcome.peerId)).toEqual({ n: 0 });
    } finally {
      peer.close();
    }
  });
});
