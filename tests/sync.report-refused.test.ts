// A report the coordinator refuses (a claim it judges impossible: here a finite training loss
// past MAX_LOSS, which volunteers send as "Infinity" since lossToWire maps it) is dropped
// by the volunteer, never sent again. Kept with the unacknowledged ones, every reconnect sent it
// again, each refusal an invalid frame: past maxStrikes of them the coordinator closed the
// connection, and the volunteer came back with the same reports, for good.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import { SignalingClient, memorySessionStore, type WebSocketCtor } from '../src/sync/signaling-client.ts';
import { MAX_LOSS, reportRefusal, refusedReportSeq, type ReportFields } from '../src/protocol/messages.ts';
import { startServer, until, type TestServer } from './support/coordinator.ts';

let s: TestServer;

beforeAll(async () => {
  s = await startServer();
});
afterAll(() => s?.close());

const fields = (step: number, trainLoss: number): ReportFields => ({
  time: Date.now(), step, round: step, trainLoss, valLoss: null, tokensPerS: 100, bytesIn: 0, bytesOut: 0, partner: null, partnerDist: null, adapter: null,
});

describe('a report the coordinator refuses', () => {
  it('names its seq, and the volunteer drops it rather than send it at every reconnect', async () => {
    expect(refusedReportSeq({ ref: 'report', message: reportRefusal(1_765_000_000_123, 'why') })).toBe(1_765_000_000_123);
    expect(refusedReportSeq({ ref: 'signal', message: reportRefusal(5, 'why') })).toBeNull();
    expect(refusedReportSeq({ ref: 'report', message: 'frame is not JSON' })).toBeNull();

    const strikes = s.c.hub.o.maxStrikes;
    const client = new SignalingClient({
      url: s.url, WebSocket: WebSocket as unknown as WebSocketCtor, session: memorySessionStore(),
      backoff: { initialMs: 50, maxMs: 200, jitter: 0.5 },
    });
    const opens: string[] = [];
    const acked = new Set<number>();
    client.on('open', (e) => opens.push(e.peerId));
    client.on('ack', (e) => acked.add(e.seq));
    client.start();
    try {
      await until(() => client.connected, 10_000, 'the volunteer to join');
      const ok = client.report(fields(1, 5));
      await until(() => acked.has(ok), 5000, 'the honest report to be acknowledged');
      // More refusals than the coordinator takes on one connection: it closes it once.
      const bad = strikes + 5;
      for (let k = 0; k < bad; k++) client.report(fields(2 + k, 2 * MAX_LOSS));
      await until(() => client.refusedReports === bad && client.pendingReports === 0 && client.connected, 20_000,
        `all ${bad} refused reports dropped and the volunteer connected`);
      // One reconnect after the strikes, the same peer, and nothing refused came back.
      expect(opens).toHaveLength(2);
      expect(new Set(opens).size).toBe(1);
      const after = client.report(fields(50, 4));
      await until(() => acked.has(after), 5000, 'a report after them to be acknowledged');
      expect(client.connected).toBe(true);
      expect(opens).toHaveLength(2);
      expect(s.c.db.prepare('SELECT COUNT(*) AS n FROM reports WHERE peer_id = ?').get(client.peerId)).toEqual({ n: 2 });
    } finally {
      client.stop();
    }
  });
});
