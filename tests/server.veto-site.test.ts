// The address veto binds the accused's client as duty and the TURN budgets count it: an IPv4
// address, or an IPv6 /48. Bound to the /64, an attacker vetoed by a reporter came back with a new
// id from the next /64 of its /48 (65,536 of them for one tunnel broker's form) and was paired
// with that reporter again.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { PairedMsg } from '../src/protocol/messages.ts';
import { VETO_AFTER } from '../server/peers.ts';
import { RawPeer, startServer, until, type TestServer } from './support/coordinator.ts';

let s: TestServer;
beforeAll(async () => {
  s = await startServer({ trustProxy: ['127.0.0.1'], hub: { pairPrediction: false, offenderReportsPerMinute: 1e6, offenderReportBurst: 1e6 } });
  const r = await s.c.app.inject({ method: 'POST', url: '/api/runs', headers: s.admin, payload: { id: 'site', dataset: 'moby-dick', preset: 'micro' } });
  expect(r.statusCode).toBe(201);
});
const open: RawPeer[] = [];
afterAll(async () => {
  for (const p of open) p.close();
  await s?.close();
});

/** A peer of run `site` whose proxy (127.0.0.1, trusted) says it is `from`. */
async function join(from: string): Promise<{ peer: RawPeer; id: string }> {
  const { peer, welcome } = await RawPeer.join(s.wsUrl, { run: 'site' }, { headers: { 'x-forwarded-for': from } });
  open.push(peer);
  return { peer, id: welcome.peerId };
}

const offenderRows = () => (s.c.db.prepare("SELECT COUNT(*) AS n FROM events WHERE kind = 'peer-offender'").get() as { n: number }).n;

describe('the address veto and IPv6', () => {
  it('an attacker vetoed by a reporter is not paired with it from another /64 of its /48; a peer of another /48 is', async () => {
    const reporter = await join('198.51.100.7');
    const attacker = await join('2001:db8:1:1::9');
    // The pool pairs the two (a report names only a pool partner), then the reporter strikes it twice.
    const [nr, na] = [reporter.peer.frames.length, attacker.peer.frames.length];
    reporter.peer.send({ t: 'ready', round: 1, waitMs: 3000 });
    attacker.peer.send({ t: 'ready', round: 1, waitMs: 3000 });
    const [mr] = await Promise.all([reporter.peer.next<PairedMsg>((m) => m.t === 'paired', undefined, nr), attacker.peer.next<PairedMsg>((m) => m.t === 'paired', undefined, na)]);
    expect(mr.partner).toBe(attacker.id);
    for (let k = 1; k <= VETO_AFTER; k++) {
      const n = offenderRows();
      reporter.peer.send({ t: 'offender', peer: attacker.id, reason: `norm: its Δ is ${k}0 times ours` });
      await until(() => offenderRows() > n, undefined, `strike ${k}`);
    }
    expect(s.c.hub.canPair('site', reporter.id, attacker.id)).toBe(false);
    attacker.peer.close();
    await until(() => !s.c.hub.isLive(attacker.id), undefined, 'the attacker to leave');
    // Its next id, from the /64 beside the first: the same client.
    const moved = await join('2001:db8:1:2::9');
    const elsewhere = await join('2001:db8:2:1::9');
    expect(s.c.hub.canPair('site', reporter.id, moved.id)).toBe(false);
    expect(s.c.hub.canPair('site', reporter.id, elsewhere.id)).toBe(true);
  });
});
