// Chaos over real WebRTC (@roamhq/wrtc): dead partners, damaged chunks, hostile payloads.
// Honest peers must never apply a corrupt update, never wait past their deadline, and keep
// going; offenders are reported and cut off.
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { chaosLinks, corruptPayload, type Tamper } from './support/chaos.ts';
import { Rogue } from './support/rogue.ts';
import { CONFIG_HASH, Swarm, gaussian, lagMonitor, sameFloats, sleep, syntheticPayload, type SwarmPeer } from './support/swarm.ts';
import { MeshDestroyedError } from '../src/sync/errors.ts';
import type { ExchangeResult } from '../src/sync/types.ts';

const DEADLINE = { minMs: 800, initialMs: 1500, maxMs: 4000 };
const N = 100_000; // 400 KB per tensor: 7 chunks each

let swarm: Swarm | null = null;
let rogue: Rogue | null = null;
let lag = lagMonitor();
beforeEach(() => { lag = lagMonitor(); });
afterEach(() => { swarm?.destroy(); swarm = null; rogue?.stop(); rogue = null; lag.stop(); });

/** Run `rounds` exchanges on each peer with a short "inner loop" in between. */
async function train(s: Swarm, rounds: number, opts: { gapMs?: number; waitMs?: number; peers?: SwarmPeer[] } = {}): Promise<Map<string, ExchangeResult[]>> {
  const out = new Map<string, ExchangeResult[]>();
  await Promise.all((opts.peers ?? s.peers).map(async (p) => {
    const idx = s.peers.indexOf(p);
    const rs: ExchangeResult[] = [];
    out.set(p.id, rs);
    for (let r = 0; r < rounds; r++) {
      await sleep(opts.gapMs ?? 20);
      try {
        const start = Date.now();
        const res = await p.mesh.exchange(r, syntheticPayload(s.opts.elements, idx, r), { waitMs: opts.waitMs ?? 400 });
        started.set(res, start);
        rs.push(res);
      } catch (err) {
        if (err instanceof MeshDestroyedError) return;
        throw err;
      }
    }
  }));
  return out;
}

/** When each exchange of train() started (Date.now()). */
const started = new WeakMap<ExchangeResult, number>();

/** Within the deadline plus the event loop's stalls while it ran (a timer cannot fire earlier). */
function overshootAllowed(r: ExchangeResult): number {
  const start = started.get(r);
  return start === undefined ? lag.max : lag.during(start, start + r.elapsedMs);
}

function withinBudget(results: Iterable<ExchangeResult[]>): void {
  for (const rs of results) for (const r of rs) {
    const allowed = overshootAllowed(r);
    expect(r.elapsedMs, `round ${r.round} ${r.reason} stalls ${allowed.toFixed(0)} ms`).toBeLessThanOrEqual(r.budgetMs + allowed + 20);
  }
}

describe('chaos: a partner killed mid-transfer', () => {
  it('its partner goes solo (at once, or at worst at its deadline), applies nothing, and pairs with a survivor next round', async () => {
    let victim: string | null = null;
    let noticed: string | null = null;
    const chunksTo = new Map<string, number>();
    // A longer deadline than the other chaos tests: on a loaded machine the link's close event
    // can take over a second to arrive, and this test is about noticing it before the deadline.
    const deadline = { minMs: 4000, initialMs: 8000, maxMs: 12000 };
    const elements = 400_000;
    // The victim dies on the sender's side, as a closed tab does: after its first tensor chunk
    // to the partner nothing more leaves it, and its mesh is torn down. (Killing it when the
    // receiver saw a chunk raced: on a loaded machine the whole payload could already be on
    // its way, and the receiver then rightly paired.)
    const s = (swarm = new Swarm({
      n: 3, transport: 'wrtc', elements, init: { deadline },
      wrap: (id, links) => chaosLinks(links, (f, { remote, chunk }) => {
        if (victim === id) return [];
        if (victim || !chunk) return [f];
        const k = (chunksTo.get(id + remote) ?? 0) + 1;
        chunksTo.set(id + remote, k);
        if (k < 2) return [f];
        victim = id;
        noticed = remote;
        setTimeout(() => s.peer(id).mesh.destroy(), 0);
        return [];
      }),
    }));
    await s.connected(2);
    // A pool wait longer than the deadline, so the survivor is still waiting when the noticing
    // peer comes back from its round 0 by either path.
    const results = await train(s, 2, { waitMs: 10_000 });
    expect(victim).not.toBeNull();
    const first = results.get(noticed!)![0];
    expect(first.partner).toBe(victim);
    expect(first.outcome).toBe('solo');
    expect(first.payload).toBeNull();
    // wrtc usually reports the closed channel within milliseconds (partner-gone, well before the
    // deadline); now and then on a loaded machine it reports nothing, and the deadline ends the
    // wait instead. Either way nothing from the dead partner is applied.
    expect(['partner-gone', 'deadline']).toContain(first.reason);
    if (first.reason === 'partner-gone') expect(first.transferMs).toBeLessThan(deadline.initialMs);
    const survivor = s.peers.find((p) => p.id !== victim && p.id !== noticed)!.id;
    const second = results.get(noticed!)![1];
    expect(second.outcome, String(second.reason)).toBe('paired');
    expect(second.partner).toBe(survivor);
    // Rounds drift: the survivor may have sent its round 0 (it waited alone while we lost ours).
    expect(sameFloats(second.payload!.delta, syntheticPayload(elements, s.peers.findIndex((p) => p.id === survivor), second.payload!.round).delta)).toBe('same');
    withinBudget(results.values());
  });
});

describe('chaos: damaged chunks', () => {
  /** p0 tampers with its round-0 Δ; p1 is honest. Returns p1's results. */
  async function scenario(
    tamper: (f: Uint8Array, index: number, count: number) => Uint8Array[],
    deadline = DEADLINE,
  ): Promise<{ honest: ExchangeResult[]; sender: ExchangeResult[]; s: Swarm }> {
    let deltaTid: number | null = null;
    const t: Tamper = (f, { chunk }) => {
      if (!chunk || chunk.kind !== 'delta' || chunk.round !== 0) return [f];
      if (deltaTid === null) deltaTid = chunk.transferId;
      if (chunk.transferId !== deltaTid) return [f];
      return tamper(f, chunk.chunkIndex, chunk.chunkCount);
    };
    const s = (swarm = new Swarm({ n: 2, transport: 'wrtc', elements: N, init: { deadline }, wrap: (id, links) => (id === 'p0' ? chaosLinks(links, t) : links) }));
    await s.connected(1);
    // A pool wait long enough that the two meet again after round 0 even when one of them came
    // back from it seconds before the other (a loaded machine): the later rounds must pair.
    const results = await train(s, 4, { waitMs: 5000 });
    withinBudget(results.values());
    return { honest: results.get('p1')!, sender: results.get('p0')!, s };
  }

  // Where the damage is caught before the deadline, the deadline is long: on a loaded machine
  // (CI) moving 800 KB over wrtc can take longer than DEADLINE (once even 8 s, with two test
  // files and Chromium sharing 2 cores), and the test is about the catch.
  const PATIENT = { minMs: 10_000, initialMs: 25_000, maxMs: 40_000 };

  it('a dropped middle chunk is caught on the next chunk: solo, reported, nothing applied', async () => {
    const { honest, s } = await scenario((f, i) => (i === 3 ? [] : [f]), PATIENT);
    expect(honest[0]).toMatchObject({ outcome: 'solo', reason: 'rejected', rejection: 'ERR_FRAME_MISSING_CHUNK', payload: null });
    expect(honest[0].transferMs).toBeLessThan(PATIENT.initialMs);
    expect(s.hub.reports.some((r) => r.from === 'p1' && r.peer === 'p0' && r.reason.startsWith('ERR_FRAME_MISSING_CHUNK'))).toBe(true);
    // One strike is not a ban: later rounds pair again and succeed.
    expect(honest.slice(1).some((r) => r.outcome === 'paired')).toBe(true);
  });

  it('a dropped last chunk ends in the deadline, not a hang', async () => {
    const { honest } = await scenario((f, i, count) => (i === count - 1 ? [] : [f]));
    expect(honest[0]).toMatchObject({ outcome: 'solo', reason: 'deadline', payload: null });
    expect(honest[0].transferMs).toBeGreaterThanOrEqual(DEADLINE.initialMs - 20);
    expect(honest[0].elapsedMs).toBeLessThanOrEqual(honest[0].budgetMs + overshootAllowed(honest[0]) + 20);
    expect(honest.slice(1).some((r) => r.outcome === 'paired')).toBe(true);
  });

  it('a duplicated chunk is ignored and the payload is still exact', async () => {
    const { honest } = await scenario((f, i) => (i === 2 ? [f, f] : [f]), PATIENT);
    expect(honest[0].outcome).toBe('paired');
    expect(sameFloats(honest[0].payload!.delta, syntheticPayload(N, 0, 0).delta)).toBe('same');
  });

  it('a corrupted payload byte fails the tensor checksum: solo, reported', async () => {
    const { honest, s } = await scenario((f, i) => (i === 1 ? [corruptPayload(f)] : [f]), PATIENT);
    expect(honest[0]).toMatchObject({ outcome: 'solo', reason: 'rejected', rejection: 'ERR_FRAME_CHECKSUM', payload: null });
    expect(s.hub.judged.filter((r) => r.peer === 'p0').length).toBe(1);
  });
});

describe('chaos: a malicious peer', () => {
  const n = 20_000;
  const honestPhi = syntheticPayload(n, 0, 0).phi;
  const kinds: [string, () => { phi: Float32Array; delta: Float32Array }, Partial<{ frameConfigHash: string; helloConfigHash: string; elements: number }>, string][] = [
    ['NaN', () => { const d = gaussian(n, 5, 1e-3); d[123] = NaN; return { phi: honestPhi.slice(), delta: d }; }, {}, 'non-finite'],
    ['huge-norm Δ', () => ({ phi: honestPhi.slice(), delta: gaussian(n, 6, 1e3) }), {}, 'delta-norm'],
    ['far-away φ', () => ({ phi: gaussian(n, 7, 5), delta: gaussian(n, 8, 1e-3) }), {}, 'phi-distance'],
    ['wrong shape', () => ({ phi: new Float32Array(n + 64), delta: new Float32Array(n + 64) }), {}, 'ERR_FRAME_SIZE'],
    ['wrong config hash in frames', () => ({ phi: honestPhi.slice(), delta: gaussian(n, 9, 1e-3) }), { frameConfigHash: 'ffffffffffffffff' }, 'ERR_FRAME_CONFIG'],
  ];

  for (const [name, payload, over, code] of kinds) {
    it(`${name}: rejected (${code}) and reported each time, cut off after two strikes, never applied`, async () => {
      const s = (swarm = new Swarm({ n: 1, transport: 'wrtc', elements: n, init: { deadline: DEADLINE, banAfter: 2 } }));
      rogue = new Rogue(s.hub, 'rogue', {
        runId: 'test-run', helloConfigHash: CONFIG_HASH, frameConfigHash: CONFIG_HASH, elements: n, payload, ...over,
      });
      const honest = s.peers[0];
      const cutOff = new Promise((r) => honest.mesh.on('offence', (e) => { if (e.cutOff) r(e); }));
      void rogue.loop(20, 150, 600);
      const results = await train(s, 4, { gapMs: 100, waitMs: 600 });
      await cutOff;
      const rs = results.get(honest.id)!;
      const withRogue = rs.filter((r) => r.partner === 'rogue');
      expect(withRogue.length).toBeGreaterThanOrEqual(3);
      for (const r of rs) expect(r.payload).toBeNull(); // nothing from the rogue was ever applied
      expect(withRogue.slice(0, 2).map((r) => [r.reason, r.rejection])).toEqual([['rejected', code], ['rejected', code]]);
      expect(withRogue.slice(2).every((r) => r.reason === 'banned-partner')).toBe(true);
      expect(s.hub.judged.filter((r) => r.peer === 'rogue' && r.from === honest.id).map((r) => r.reason.split(':')[0])).toEqual([code, code]);
      expect(honest.mesh.stats().banned).toEqual(['rogue']);
      expect(honest.mesh.neighbours()).not.toContain('rogue');
      withinBudget(results.values());
    });
  }

  it('a hello with another config hash is cut off at once, before any tensor', async () => {
    const s = (swarm = new Swarm({ n: 1, transport: 'wrtc', elements: n, init: { deadline: DEADLINE } }));
    rogue = new Rogue(s.hub, 'rogue', {
      runId: 'test-run', helloConfigHash: 'ffffffffffffffff', frameConfigHash: 'ffffffffffffffff', elements: n,
      payload: () => ({ phi: honestPhi.slice(), delta: gaussian(n, 1, 1e-3) }),
    });
    void rogue.loop(10, 150, 600);
    const results = await train(s, 3, { gapMs: 100, waitMs: 600 });
    const rs = results.get(s.peers[0].id)!;
    for (const r of rs) expect(r.payload).toBeNull();
    expect(s.peers[0].mesh.stats().banned).toEqual(['rogue']);
    expect(s.hub.judged.filter((r) => r.peer === 'rogue').length).toBe(1);
    expect(s.hub.judged[0].reason).toMatch(/^ERR_FRAME_CONFIG/);
    withinBudget(results.values());
  });

  it('among three honest peers, the rogue is cut off by those it met twice and honest pairs keep working', async () => {
    const s = (swarm = new Swarm({ n: 3, transport: 'wrtc', elements: n, init: { deadline: DEADLINE, banAfter: 2 }, seed: 4 }));
    rogue = new Rogue(s.hub, 'rogue', {
      runId: 'test-run', helloConfigHash: CONFIG_HASH, frameConfigHash: CONFIG_HASH, elements: n,
      payload: () => { const d = gaussian(n, 5, 1e-3); d[7] = Infinity; return { phi: honestPhi.slice(), delta: d }; },
    });
    await s.connected(2);
    void rogue.loop(60, 80, 500);
    const results = await train(s, 12, { gapMs: 60, waitMs: 500 });
    let honestPairs = 0;
    for (const p of s.peers) {
      const rs = results.get(p.id)!;
      const met = rs.filter((r) => r.partner === 'rogue');
      for (const r of met) expect(r.payload).toBeNull();
      for (const r of rs) if (r.partner && r.partner !== 'rogue' && r.outcome === 'paired') honestPairs++;
      const rejected = met.filter((r) => r.reason === 'rejected').length;
      expect(rejected).toBeLessThanOrEqual(2);
      if (rejected === 2) expect(p.mesh.stats().banned).toContain('rogue');
      expect(s.hub.judged.filter((x) => x.from === p.id).length).toBe(rejected);
    }
    expect(honestPairs).toBeGreaterThanOrEqual(6);
    expect(s.hub.reports.length).toBeGreaterThanOrEqual(1);
    withinBudget(results.values());
  });
});
