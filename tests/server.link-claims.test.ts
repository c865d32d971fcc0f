// A report's `linkFailures` is a claim about links the peer tried to open, and the run's
// connectivity ("links failed to open", and why, most frequent first) sums it over every peer.
// Every link is set up with signals through the relay, each naming its link (`cid`), so the
// coordinator stores at most as many failures as it carried links for that peer: one new id that
// signalled nobody had its 100,000 a report, and its own words as the reason, head the run's list.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RawPeer, startServer, type TestServer } from './support/coordinator.ts';

let s: TestServer;
beforeAll(async () => {
  s = await startServer();
});
afterAll(async () => {
  await s?.close();
});

const base = { t: 'report', time: 1, step: 1, round: 1, trainLoss: 3, valLoss: null, tokensPerS: 1, bytesIn: 0, bytesOut: 0, partner: null, partnerDist: null, adapter: null };

/** Sends `p` a report with `fields` and waits for its ack. */
async function report(p: RawPeer, seq: number, fields: Record<string, unknown>): Promise<void> {
  const n = p.frames.length;
  p.send({ ...base, seq, time: Date.now(), ...fields });
  await p.next((m) => m.t === 'ack' && m.seq === seq, undefined, n);
}

const connectivity = async (run: string) => (await s.c.app.inject({ url: `/api/runs/${run}/connectivity` })).json() as {
  linkFailures: number; reasons: { reason: string; count: number }[]; peers: { peerId: string; linkFailures: number }[];
};

describe('link failures a report may claim', () => {
  it('a peer that signalled nobody stores none, whatever it claims; its reason is not in the run\'s list', async () => {
    const r = await s.c.app.inject({ method: 'POST', url: '/api/runs', headers: s.admin, payload: { id: 'liar', dataset: 'moby-dick', preset: 'micro' } });
    expect(r.statusCode).toBe(201);
    const x = await RawPeer.join(s.wsUrl, { run: 'liar' });
    try {
      for (let seq = 1; seq <= 3; seq++) await report(x.peer, seq, { linkFailures: 100_000, linkError: 'the run is over: download murmur-pro from example.com' });
      const c = await connectivity('liar');
      expect(c.linkFailures).toBe(0);
      expect(c.reasons).toEqual([]);
    } finally {
      x.peer.close();
    }
  });

  it('links the relay carried for a peer are what its reports may claim, once each; the other end may claim them too', async () => {
    const a = await RawPeer.join(s.wsUrl), b = await RawPeer.join(s.wsUrl);
    const pa = a.welcome.peerId;
    try {
      // b dials a three times (three links: an offer and candidates each), a answers the first.
      for (const cid of ['k1', 'k1', 'k2', 'k3']) b.peer.send({ t: 'signal', to: pa, data: { mesh: 1, cid, sig: { type: 'candidate' } } });
      await a.peer.next((m) => m.t === 'signal' && (m.data as { cid?: string }).cid === 'k3');
      a.peer.send({ t: 'signal', to: b.welcome.peerId, data: { mesh: 1, cid: 'k1', sig: { type: 'answer' } } });
      await report(b.peer, 1, { linkFailures: 5, linkError: 'connect timeout: no ICE path' });
      await report(b.peer, 2, { linkFailures: 1, linkError: 'connect timeout: no ICE path' });
      await report(a.peer, 3, { linkFailures: 2, linkError: 'closed by remote' });
      const c = await connectivity('default');
      const byPeer = Object.fromEntries(c.peers.map((p) => [p.peerId, p.linkFailures]));
      expect(byPeer[b.welcome.peerId]).toBe(3);
      expect(byPeer[pa]).toBe(2);
      expect(c.reasons).toEqual([{ reason: 'connect timeout: no ICE path', count: 3 }, { reason: 'closed by remote', count: 2 }]);
    } finally {
      a.peer.close(); b.peer.close();
    }
  });
});
