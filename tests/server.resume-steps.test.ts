// A volunteer that reconnects with its session after an outage (its network, or a coordinator
// restart) trained all the while: its step bound counts the time since its last accepted report,
// so the reports it buffered and flushes at once are stored, not refused as impossible (each
// refusal a strike: past maxStrikes the connection is closed, and at the next reconnect the
// same unacknowledged reports came back). A claim beyond what that time allows is still refused.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RawPeer, report, startServer, type TestServer } from './support/coordinator.ts';
import { FakeClock } from './support/fake-clock.ts';
import { MAX_STEPS_PER_S, STEP_SLACK } from '../src/protocol/state-frame.ts';
import type { RunInfo } from '../src/protocol/messages.ts';

let s: TestServer;
const clock = new FakeClock();

beforeAll(async () => {
  s = await startServer({}, { clock });
});
afterAll(() => s?.close());

describe('step bound of a resumed peer', () => {
  it('credits the time since its last accepted report, and no more', async () => {
    const created = await s.c.app.inject({ method: 'POST', url: '/api/runs', headers: s.admin, payload: { id: 'resume', dataset: 'moby-dick', preset: 'micro', train: { H: 10 } } });
    expect(created.statusCode).toBe(201);
    const run = created.json() as RunInfo;
    const first = await RawPeer.join(s.wsUrl, { run: run.id });
    clock.advance(1000);
    first.peer.send(report(1, { step: 500, round: 50 }));
    expect(await first.peer.next((m) => m.t === 'ack' && m.seq === 1)).toEqual({ t: 'ack', seq: 1 });
    first.peer.close();
    await first.peer.waitClosed();

    // 60 s away, training at a tenth of the run's fastest rate: 50 rounds of 10 steps a second.
    clock.advance(60_000);
    const { peer, welcome } = await RawPeer.join(s.wsUrl, { run: run.id, session: first.welcome.session });
    try {
      expect(welcome).toMatchObject({ resumed: true, peerId: first.welcome.peerId });
      const rate = welcome.stepRate;
      expect(rate).toBe(MAX_STEPS_PER_S);
      const reachable = 500 + Math.ceil(60 * rate);
      // The reports buffered during the outage, flushed at once.
      for (let k = 0; k < 25; k++) peer.send(report(2 + k, { step: 500 + (k + 1) * 240, round: 50 + (k + 1) * 24 }));
      for (let k = 0; k < 25; k++) expect(await peer.next((m) => (m.t === 'ack' && m.seq === 2 + k) || m.t === 'error')).toEqual({ t: 'ack', seq: 2 + k });
      expect(welcome.stepBase).toBeGreaterThanOrEqual(reachable);
      expect(s.c.hub.lastStep(welcome.peerId)).toBe(500 + 25 * 240);
      expect(peer.closed).toBeNull();
      // Past what the time since its last report allows: refused, naming the bound.
      const at = peer.frames.length;
      peer.send(report(30, { step: reachable + STEP_SLACK + 1, round: 10 }));
      expect(await peer.next((m) => m.t === 'error' || m.t === 'ack', 5000, at)).toMatchObject({ t: 'error', code: 'bad-message', ref: 'report', message: expect.stringContaining(`at most ${reachable + STEP_SLACK}`) });
    } finally {
      peer.close();
    }
  });

  it('gives a new id nothing for the time since another peer\'s reports', async () => {
    const { peer, welcome } = await RawPeer.join(s.wsUrl, { run: 'resume' });
    try {
      expect(welcome.resumed).toBe(false);
      // No live peer reported anything: the newcomer starts from 0 (no checkpoint).
      expect(welcome.stepBase).toBe(0);
      const at = peer.frames.length;
      peer.send(report(1, { step: STEP_SLACK + 1, round: 1 }));
      expect(await peer.next((m) => m.t === 'error' || m.t === 'ack', 5000, at)).toMatchObject({ t: 'error', ref: 'report' });
    } finally {
      peer.close();
    }
  });
});
