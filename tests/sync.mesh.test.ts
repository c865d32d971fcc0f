import { afterEach, describe, expect, it, vi } from 'vitest';
import { createMesh } from '../src/sync/mesh.ts';
import { ExchangeRun } from '../src/sync/exchange.ts';
import { Assembler } from '../src/sync/transfer.ts';
import type { Link, LinkFactory } from '../src/sync/links.ts';
import { decodeFrame } from '../src/protocol/frame.ts';
import { parseControl, type ControlMessage } from '../src/protocol/peer-messages.ts';
import { chaosLinks } from './support/chaos.ts';
import { Rogue } from './support/rogue.ts';
import { MeshDestroyedError, MeshConfigError, PayloadError, MeshBusyError } from '../src/sync/errors.ts';
import { Swarm, syntheticPayload, sleep, CONFIG_HASH, sameFloats, type SwarmPeer } from './support/swarm.ts';
import { chiSquareUniform } from './support/stats.ts';
import type { ExchangeResult, Offence } from '../src/sync/types.ts';
import { MAX_REMEMBERED } from '../src/sync/validate.ts';
import { decodeTensor, encodeTensor, phiBesideOwn } from '../src/sync/compress.ts';
import { nolocoOuterStep } from '../src/train/outer.ts';
import { DEFAULT_TRAIN } from '../src/model/config.ts';
import type { MeshCore } from '../src/sync/mesh-core.ts';
import { until } from './support/wait.ts';

let swarm: Swarm | null = null;
let rogues: Rogue[] = [];
afterEach(() => { swarm?.destroy(); swarm = null; for (const r of rogues) r.stop(); rogues = []; vi.restoreAllMocks(); });

/** Hostile peers on the swarm's in-memory network that speak the wire protocol by hand. */
function makeRogues(s: Swarm, count: number, elements: number): Rogue[] {
  for (let i = 0; i < count; i++) {
    rogues.push(new Rogue(s.hub, `r${i}`, {
      runId: 'test-run', helloConfigHash: CONFIG_HASH, frameConfigHash: CONFIG_HASH, elements,
      payload: () => syntheticPayload(elements, 1, 0), links: s.net.links(`r${i}`),
    }));
  }
  return rogues;
}

const N = 2000;

/**
 * Announcements (`xchg`) each peer's exchange was handed, by sender, and the most it held back at
 * once for later (its stash, read where it lives: one entry per neighbour is the bound).
 */
function announcementsSeen(): Map<string, number> & { stashPeak: number } {
  const seen = Object.assign(new Map<string, number>(), { stashPeak: 0 });
  const onControl = ExchangeRun.prototype.onControl;
  vi.spyOn(ExchangeRun.prototype, 'onControl').mockImplementation(function (this: ExchangeRun, peer, msg) {
    if (msg.t === 'xchg') seen.set(peer, (seen.get(peer) ?? 0) + 1);
    onControl.call(this, peer, msg);
    seen.stashPeak = Math.max(seen.stashPeak, (this as unknown as { stash: Map<string, unknown> }).stash.size);
  });
  return seen;
}

/** Every peer runs `rounds` exchanges back to back; returns results per peer. */
async function runRounds(s: Swarm, rounds: number, waitMs: number, peers = s.peers): Promise<ExchangeResult[][]> {
  return Promise.all(peers.map(async (p) => {
    const idx = s.peers.indexOf(p);
    const out: ExchangeResult[] = [];
    for (let r = 0; r < rounds; r++) {
      out.push(await p.mesh.exchange(r, syntheticPayload(s.opts.elements, idx, r), { waitMs }));
    }
    return out;
  }));
}

describe('mesh (in-memory links)', () => {
  it('a probe CUSUM report (probe-harm) is reported but is no strike; a gross harm still cuts the partner off at banAfter', async () => {
    swarm = new Swarm({ n: 2, transport: 'memory', elements: N, init: { banAfter: 2 } });
    await swarm.connected(1);
    const [a, b] = swarm.peers as [typeof swarm.peers[0], typeof swarm.peers[0]];
    const seen: { code: string; strikes: number; cutOff: boolean }[] = [];
    a.mesh.on('offence', (e) => seen.push({ code: e.code, strikes: e.strikes, cutOff: e.cutOff }));
    // The round's probe reaches the mesh's offence path as the exchange does (MeshCore).
    const core = a.mesh as unknown as MeshCore;
    for (let k = 0; k < 5; k++) core.offence(b.id, 'probe-harm', `paired 2.08 vs solo 2.09; cusum 4.4 > 4 (${k})`);
    expect(seen.every((e) => e.strikes === 0 && !e.cutOff)).toBe(true);
    expect(a.mesh.neighbours()).toContain(b.id);
    core.offence(b.id, 'probe-gross', 'paired 3.1 vs solo 2.1');
    core.offence(b.id, 'probe-gross', 'paired 3.2 vs solo 2.1');
    expect(seen.slice(-2)).toEqual([{ code: 'probe-gross', strikes: 1, cutOff: false }, { code: 'probe-gross', strikes: 2, cutOff: true }]);
  });

  it('forms a bounded neighbour set and exchanges φ, Δ bit-exactly with one partner', async () => {
    swarm = new Swarm({ n: 4, transport: 'memory', elements: N });
    await swarm.connected(3);
    for (const p of swarm.peers) expect(p.mesh.neighbours().length).toBeLessThanOrEqual(3);
    const results = await runRounds(swarm, 1, 500);
    const byPeer = new Map(swarm.peers.map((p, i) => [p.id, results[i][0]]));
    for (const [id, r] of byPeer) {
      expect(r.outcome, `${id}: ${r.reason}`).toBe('paired');
      expect(r.via).toBe('coordinator');
      const partner = r.partner!;
      // Symmetric: my partner's partner is me.
      expect(byPeer.get(partner)!.partner).toBe(id);
      const sent = syntheticPayload(N, swarm.peers.findIndex((p) => p.id === partner), 0);
      expect(sameFloats(r.payload!.phi, sent.phi)).toBe('same');
      expect(sameFloats(r.payload!.delta, sent.delta)).toBe('same');
      expect(r.payload!.peer).toBe(partner);
      expect(r.bytesSent).toBeGreaterThan(8 * N);
      expect(r.bytesReceived).toBeGreaterThan(8 * N);
    }
  });

  it('partner choice is uniform over 240 rounds via the coordinator (chi-square over all pairs)', async () => {
    swarm = new Swarm({ n: 6, transport: 'memory', elements: 256, seed: 3 });
    await swarm.connected(4);
    const rounds = 240;
    const results = await Promise.all(swarm.peers.map(async (p, idx) => {
      const out: ExchangeResult[] = [];
      for (let r = 0; r < rounds; r++) {
        // H inner steps with timing noise, as in a real run: partners that finished an
        // exchange together reach the pool in random order next time.
        await sleep(Math.floor(Math.random() * 20));
        out.push(await p.mesh.exchange(r, syntheticPayload(256, idx, r), { waitMs: 300 }));
      }
      return out;
    }));
    const counts = pairCounts(swarm.peers.map((p) => p.id), results);
    const total = counts.reduce((a, b) => a + b, 0);
    expect(total).toBeGreaterThan(rounds * 2.5); // nearly every round gives 3 pairs
    const { p } = chiSquareUniform(counts);
    expect(p, `pair counts ${counts.join(',')}`).toBeGreaterThan(0.001);
    // Each outer step exchanged with at most one partner, and pairs agree with each other.
    assertSymmetric(swarm.peers.map((p) => p.id), results);
  });

  it('without the coordinator, pairs through random neighbours; partner choice stays uniform (chi-square)', async () => {
    swarm = new Swarm({ n: 6, transport: 'memory', elements: 256, seed: 5 });
    await swarm.connected(5); // 6 peers, max 5 neighbours: a complete graph
    swarm.hub.stop();
    const rounds = 220;
    const results = await Promise.all(swarm.peers.map(async (p, idx) => {
      const out: ExchangeResult[] = [];
      for (let r = 0; r < rounds; r++) {
        await sleep(Math.floor(Math.random() * 3));
        out.push(await p.mesh.exchange(r, syntheticPayload(256, idx, r), { waitMs: 300 }));
      }
      return out;
    }));
    for (const rs of results) for (const r of rs) if (r.outcome === 'paired') expect(r.via).toBe('direct');
    const counts = pairCounts(swarm.peers.map((p) => p.id), results);
    expect(counts.reduce((a, b) => a + b, 0)).toBeGreaterThan(rounds * 2);
    const { p } = chiSquareUniform(counts);
    expect(p, `pair counts ${counts.join(',')}`).toBeGreaterThan(0.001);
    assertSymmetric(swarm.peers.map((p) => p.id), results);
  });

  it('a peer alone goes solo after its wait, within budget', async () => {
    swarm = new Swarm({ n: 2, transport: 'memory', elements: N });
    await swarm.connected(1);
    const r = await swarm.peers[0].mesh.exchange(0, syntheticPayload(N, 0, 0), { waitMs: 100 });
    expect(r.outcome).toBe('solo');
    expect(r.reason).toBe('no-partner');
    expect(r.elapsedMs).toBeLessThan(r.budgetMs);
    expect(r.elapsedMs).toBeGreaterThanOrEqual(90);
  });

  it('rejects bad arguments, concurrent exchanges and use after destroy(); destroy() twice is safe', async () => {
    expect(() => createMesh({ runId: '', configHash: CONFIG_HASH, elements: 1 })).toThrow(MeshConfigError);
    expect(() => createMesh({ runId: 'r', configHash: 'nope', elements: 1 })).toThrow(/configHash/);
    expect(() => createMesh({ runId: 'r', configHash: CONFIG_HASH, elements: 0 })).toThrow(/elements/);
    expect(() => createMesh({ runId: 'r', configHash: CONFIG_HASH, elements: 1, neighbours: { min: 5, max: 2 } })).toThrow(/neighbours/);
    expect(() => createMesh({ runId: 'r', configHash: CONFIG_HASH, elements: 1, compression: { delta: 'int4' as 'q8' } })).toThrow(/compression/);
    swarm = new Swarm({ n: 2, transport: 'memory', elements: N });
    await swarm.connected(1);
    const m = swarm.peers[0].mesh;
    await expect(m.exchange(0, { phi: new Float32Array(N - 1), delta: new Float32Array(N) }, { waitMs: 10 })).rejects.toThrow(PayloadError);
    const nan = syntheticPayload(N, 0, 0); nan.delta[3] = NaN;
    await expect(m.exchange(0, nan, { waitMs: 10 })).rejects.toThrow(/NaN/);
    const first = m.exchange(0, syntheticPayload(N, 0, 0), { waitMs: 200 });
    await expect(m.exchange(1, syntheticPayload(N, 0, 1), { waitMs: 10 })).rejects.toThrow(MeshBusyError);
    m.destroy();
    m.destroy();
    await expect(first).rejects.toThrow(MeshDestroyedError);
    await expect(m.exchange(2, syntheticPayload(N, 0, 2), { waitMs: 10 })).rejects.toThrow(MeshDestroyedError);
    expect(m.neighbours()).toEqual([]);
  });

  it('rewires: neighbour sets change over time while staying within bounds', async () => {
    const s = (swarm = new Swarm({ n: 8, transport: 'memory', elements: 64, init: { neighbours: { min: 2, max: 3 }, rewireMs: 100 } }));
    await s.connected(2);
    const before = new Map(s.peers.map((p) => [p.id, new Set(p.mesh.neighbours())]));
    const seen = new Map(s.peers.map((p) => [p.id, new Set(p.mesh.neighbours())]));
    let samples = 0, withinMax = 0;
    for (let t = 0; t < 30; t++) {
      await sleep(50);
      for (const p of s.peers) {
        const k = p.mesh.neighbours().length;
        expect(k).toBeLessThanOrEqual(3 + 2); // never past the hard cap (max + 2 for incoming links)
        samples++;
        if (k <= 3) withinMax++;
        for (const q of p.mesh.neighbours()) seen.get(p.id)!.add(q);
      }
    }
    // Incoming links may briefly exceed max until the next housekeeping tick trims them.
    expect(withinMax / samples).toBeGreaterThan(0.8);
    const changed = s.peers.filter((p) => [...seen.get(p.id)!].some((q) => !before.get(p.id)!.has(q))).length;
    expect(changed).toBeGreaterThanOrEqual(6);
  });

  it('uses the coordinator pool to meet non-neighbours, connecting on demand', async () => {
    const s = (swarm = new Swarm({ n: 6, transport: 'memory', elements: 512, init: { neighbours: { min: 1, max: 1 } }, seed: 9 }));
    await s.connected(1);
    const results = await runRounds(s, 6, 400);
    if (process.env.DBG) console.log(JSON.stringify(results.map((rs) => rs.map((r) => `${r.partner}:${r.reason ?? "ok"}`))));
    const partners = new Map(s.peers.map((p, i) => [p.id, new Set(results[i].filter((r) => r.partner).map((r) => r.partner!))]));
    // With one neighbour each, pairing only via neighbours would give one partner per peer.
    expect([...partners.values()].some((set) => set.size >= 2)).toBe(true);
    expect(results.flat().filter((r) => r.outcome === 'paired').length).toBeGreaterThan(6 * 6 * 0.8);
  });
});

describe('mesh: bounded resources towards strangers', () => {
  it(`keeps at most ${MAX_REMEMBERED} bans and strike records, oldest first; a peer that left the run takes its strikes with it, its ban stays`, async () => {
    swarm = new Swarm({ n: 3, transport: 'memory', elements: N, init: { banAfter: 2 } });
    await swarm.connected(2);
    const [a, b, c] = swarm.peers as [typeof swarm.peers[0], typeof swarm.peers[0], typeof swarm.peers[0]];
    const core = a.mesh as unknown as MeshCore;
    const strikes = (a.mesh as unknown as { strikes: Map<string, number> }).strikes;
    const seen: Offence[] = [];
    a.mesh.on('offence', (e) => seen.push(e));
    // What onHello does for each new id that opens a link with a bad hello: a strike and a ban at once.
    const count = MAX_REMEMBERED + 100;
    for (let i = 0; i < count; i++) core.offence(`stranger${i}`, 'ERR_FRAME_CONFIG', `hello from stranger${i} has config ffffffffffffffff, ours is ${CONFIG_HASH}`, true);
    expect(seen.length).toBe(count);
    let banned = a.mesh.stats().banned;
    expect(banned.length).toBe(MAX_REMEMBERED);
    expect(banned).not.toContain('stranger0');
    expect(banned).toContain(`stranger${count - 1}`);
    expect(strikes.size).toBeLessThanOrEqual(MAX_REMEMBERED);
    // Two peers of the run struck: b once, c twice (cut off). Then both leave it.
    core.offence(b.id, 'delta-norm', 'a strike');
    core.offence(c.id, 'delta-norm', 'a strike');
    core.offence(c.id, 'delta-norm', 'a second');
    expect(a.mesh.stats().banned).toContain(c.id);
    expect(strikes.has(b.id) && strikes.has(c.id)).toBe(true);
    let gone = false;
    a.client.on('peers', (e) => { gone = !e.peers.includes(b.id) && !e.peers.includes(c.id); });
    for (const p of [b, c]) { p.mesh.destroy(); p.client.close(); }
    // The mesh listened first: once this listener saw the list without them, so did the mesh.
    await until(() => gone, 5_000, 'a peer list without b and c');
    expect(strikes.has(b.id) || strikes.has(c.id)).toBe(false);
    banned = a.mesh.stats().banned;
    expect(banned).toContain(c.id);
    expect(banned.length).toBe(MAX_REMEMBERED);
    // Back under the same id (a resumed session), b starts again from no strike here.
    core.offence(b.id, 'delta-norm', 'after its return');
    expect(seen.at(-1)).toMatchObject({ peer: b.id, strikes: 1, cutOff: false });
  });

  it("two neighbours announcing before our pool answer do not get the partner's announcement refused: the pair still pairs", async () => {
    const s = (swarm = new Swarm({ n: 2, transport: 'memory', elements: N, init: { neighbours: { min: 1, max: 8 } } }));
    await s.connected(1);
    const [victim, honest] = s.peers;
    const hostile = makeRogues(s, 2, N);
    await Promise.all(hostile.map((r) => r.dial(victim.id)));
    const seen = announcementsSeen();
    // The victim's pool answer is held until its partner's announcement has reached it: the
    // partner heard first (a slower path to the coordinator), the case early announcements are for.
    let answer: (() => void) | null = null;
    const emit = victim.client.emit.bind(victim.client);
    vi.spyOn(victim.client, 'emit').mockImplementation(((event: 'paired', payload: never) => {
      if (event === 'paired') answer = () => emit(event, payload);
      else emit(event, payload);
    }) as typeof emit);
    const mine = victim.mesh.exchange(0, syntheticPayload(N, 0, 0), { waitMs: 5_000 });
    await Promise.all(hostile.map((r) => r.announce(victim.id)));
    await until(() => hostile.every((x) => seen.has(x.client.id)), 20_000, 'both strangers announced', 10);
    const theirs = honest.mesh.exchange(0, syntheticPayload(N, 1, 0), { waitMs: 5_000 });
    await until(() => seen.has(honest.id) && answer, 20_000, "the partner's announcement before the victim's answer", 10);
    answer!();
    const [r, h] = await Promise.all([mine, theirs]);
    expect([r.outcome, r.reason, r.partner]).toEqual(['paired', null, honest.id]);
    expect([h.outcome, h.reason, h.partner]).toEqual(['paired', null, victim.id]);
    expect(sameFloats(r.payload!.delta, syntheticPayload(N, 1, 0).delta)).toBe('same');
    expect(sameFloats(h.payload!.delta, syntheticPayload(N, 0, 0).delta)).toBe('same');
    // Once the pool named the partner the strangers were told no.
    await until(() => hostile.every((x) => x.received.some((m) => m.t === 'abort')), 20_000, 'every stranger aborted', 10);
  });

  it('keeps no buffers for announcements before the pool answers and one message per neighbour however often they announce; only the partner is fed', async () => {
    const s = (swarm = new Swarm({ n: 2, transport: 'memory', elements: N, init: { neighbours: { min: 1, max: 8 } } }));
    await s.connected(1);
    const [victim, honest] = s.peers;
    const hostile = makeRogues(s, 6, N);
    await Promise.all(hostile.map((r) => r.dial(victim.id)));
    // Whose chunks the victim's assemblers were fed: each one it feeds holds a tensor buffer.
    const fed = new Set<string>();
    const add = Assembler.prototype.add;
    vi.spyOn(Assembler.prototype, 'add').mockImplementation(function (this: Assembler, h, payload) {
      fed.add(h.sender);
      return add.call(this, h, payload);
    });
    const seen = announcementsSeen();
    // The victim waits for its pool answer; meanwhile every stranger announces, again and again,
    // streaming its chunks each time.
    const mine = victim.mesh.exchange(0, syntheticPayload(N, 0, 0), { waitMs: 5_000 });
    const times = 10;
    await Promise.all(hostile.map(async (r) => { for (let k = 0; k < times; k++) await r.announce(victim.id); }));
    await until(() => hostile.every((x) => seen.get(x.client.id) === times), 20_000, 'every announcement reached the victim', 10);
    const theirs = honest.mesh.exchange(0, syntheticPayload(N, 1, 0), { waitMs: 5_000 });
    const [r, h] = await Promise.all([mine, theirs]);
    expect([r.outcome, r.reason, r.partner]).toEqual(['paired', null, honest.id]);
    expect(sameFloats(r.payload!.delta, syntheticPayload(N, 1, 0).delta)).toBe('same');
    expect(h.outcome).toBe('paired');
    const strangersFed = [...fed].filter((p) => p.startsWith('r'));
    console.log(`${hostile.length * times} early announcements from ${hostile.length} strangers: at most ${seen.stashPeak} kept at once, ${strangersFed.length} fed to buffers`);
    expect(strangersFed).toEqual([]);
    expect(seen.stashPeak).toBeLessThanOrEqual(hostile.length + 1);
    // Once the pool named the partner every stranger was told no.
    await until(() => hostile.every((x) => x.received.some((m) => m.t === 'abort')), 20_000, 'every stranger aborted', 10);
  });

  it('a φ sent rounded (f16, bf16) reaches the outer step beside ours rounded alike: the pair\'s consensus pulls are equal and opposite, and over 100 rounds the pair keeps its progress as the float64 reference does', async () => {
    for (const dtype of ['f16', 'bf16'] as const) {
      const s = (swarm = new Swarm({ n: 2, transport: 'memory', elements: N, init: { compression: { phi: dtype, delta: 'f32' } } }));
      await s.connected(1);
      // Weights near 1 (norm gains), off the wire's grid, the two φ a few hundredths of an ulp apart.
      const base = Float32Array.from({ length: N }, (_, i) => 1 + 0.1 * Math.sin(i));
      const sent = s.peers.map((_, k) => ({ phi: base.map((x, i) => x + 1e-5 * k * Math.cos(3 * i)), delta: syntheticPayload(N, k, 0).delta }));
      const [r0, r1] = await Promise.all(s.peers.map((p, k) => p.mesh.exchange(0, sent[k]!, { waitMs: 2_000 })));
      expect(r0!.outcome, `${dtype}: ${r0!.reason}`).toBe('paired');
      expect(r1!.outcome, `${dtype}: ${r1!.reason}`).toBe('paired');
      // What the consensus term moves each by (γ/2 × this): equal and opposite, so the pair's mean stays.
      let worst = 0, scale = 0;
      for (let i = 0; i < N; i++) {
        const pull0 = r0!.payload!.phi[i]! - sent[0]!.phi[i]!, pull1 = r1!.payload!.phi[i]! - sent[1]!.phi[i]!;
        worst = Math.max(worst, Math.abs(pull0 + pull1));
        scale = Math.max(scale, Math.abs(pull0));
      }
      expect(worst, dtype).toBeLessThanOrEqual(2 * 2 ** -23); // f32 rounding of each side's own φ plus the difference
      expect(scale, dtype).toBeGreaterThan(0);
      s.destroy();
      swarm = null;
    }
    // What that does over rounds: two replicas on weights near 1, each moving 1e-4 a round (its Δ),
    // exchanging φ through the wire's dtype as the exchange passes it on, against float64 exchanging it exactly.
    const h = { momentum: DEFAULT_TRAIN.outerMomentum, lr: DEFAULT_TRAIN.outerLr, consensus: DEFAULT_TRAIN.consensus };
    const n = 4096, rounds = 100;
    const progress = (dtype: 'f32' | 'f16' | 'bf16') => {
      const phi0 = Float32Array.from({ length: n }, (_, i) => 1 + 0.1 * Math.sin(i));
      const A = { phi: phi0.slice(), momentum: new Float32Array(n), theta: new Float32Array(n) };
      const B = { phi: phi0.map((x, i) => x + 1e-4 * Math.cos(3 * i)), momentum: new Float32Array(n), theta: new Float32Array(n) };
      const start = A.phi.map((x, i) => (x + B.phi[i]!) / 2);
      for (let k = 0; k < rounds; k++) {
        const dA = Float32Array.from({ length: n }, (_, i) => 1e-4 * (1 + 0.5 * Math.sin(i * 7 + k))), dB = Float32Array.from({ length: n }, (_, i) => 1e-4 * (1 + 0.5 * Math.cos(i * 5 + k)));
        const wA = encodeTensor(dtype, A.phi), wB = encodeTensor(dtype, B.phi);
        const atA = phiBesideOwn(dtype, decodeTensor(dtype, wB, n), A.phi, wA), atB = phiBesideOwn(dtype, decodeTensor(dtype, wA, n), B.phi, wB);
        const mA = { phi: A.phi.slice(), delta: dA }, mB = { phi: B.phi.slice(), delta: dB };
        nolocoOuterStep(A, [mA, { phi: atA, delta: dB }], h);
        nolocoOuterStep(B, [mB, { phi: atB, delta: dA }], h);
      }
      let moved = 0;
      for (let i = 0; i < n; i++) moved += (A.phi[i]! + B.phi[i]!) / 2 - start[i]!;
      return moved / n;
    };
    // The float64 reference: the pair's mean moves by β × the mean Δ a round, carried by momentum.
    let ref = 0, m = 0;
    for (let k = 0; k < rounds; k++) { m = h.momentum * m + h.lr * 1e-4; ref += m; }
    for (const dtype of ['f32', 'f16', 'bf16'] as const) expect(Math.abs(progress(dtype) / ref - 1), dtype).toBeLessThan(0.01);
  });

  it("an announcement in another dtype than the run's compression is rejected, never decoded", async () => {
    const s = (swarm = new Swarm({ n: 1, transport: 'memory', elements: N, init: { compression: { delta: 'q8' } } }));
    const [victim] = s.peers;
    const [rogue] = makeRogues(s, 1, N); // announces f32 φ and f32 Δ: four times the bytes a q8 Δ takes
    await until(() => victim.client.connected && rogue.client.connected, 20_000, 'both joined', 10);
    const decoded = vi.spyOn(Assembler.prototype, 'add');
    const mine = victim.mesh.exchange(0, syntheticPayload(N, 0, 0), { waitMs: 3_000 });
    rogue.client.ready(0, 3_000);
    const r = await mine;
    expect(r.partner).toBe(rogue.client.id);
    expect(r.outcome).toBe('solo');
    expect(r.reason).toBe('rejected');
    expect(r.rejection).toBe('ERR_FRAME_DTYPE');
    expect(r.payload).toBeNull();
    expect(decoded).not.toHaveBeenCalled();
    expect(s.hub.reports.some((x) => x.peer === rogue.client.id && x.reason.startsWith('ERR_FRAME_DTYPE'))).toBe(true);
  });

  it('never passes its hard neighbour cap while pairing, however many strangers dial; still pairs with its partner', async () => {
    const max = 1, hardCap = max + 2;
    let live = 0, peak = 0;
    // Count the victim's links to strangers that are alive at once.
    const counting = (links: LinkFactory): LinkFactory => (o) => {
      const link = links(o);
      if (o.remote.startsWith('a')) {
        live++;
        peak = Math.max(peak, live);
        link.on('close', () => { live--; });
      }
      return link;
    };
    const s = (swarm = new Swarm({
      n: 2, transport: 'memory', elements: 256, init: { neighbours: { min: max, max }, connectTimeoutMs: 1_000 },
      wrap: (id, links) => (id === 'p0' ? counting(links) : links),
    }));
    await s.connected(1);
    const [victim, honest] = s.peers;
    const attackers = Array.from({ length: 8 }, (_, i) => s.hub.client(`a${i}`));
    await until(() => attackers.every((a) => a.connected), 20_000, 'attackers joined', 10);
    let flooding = true;
    const flood = (async () => {
      for (let k = 0; flooding; k++) {
        // Offers that never complete: each one accepted is a link held until its connect timeout.
        for (const a of attackers) a.sendSignal(victim.id, { mesh: 1, cid: `x${k}${a.id}`, sig: { type: 'offer', token: 'none' } });
        await sleep(5);
      }
    })();
    const rounds = 8;
    const results = await runRounds(s, rounds, 1_500);
    flooding = false;
    await flood;
    console.log(`victim's links to 8 flooding strangers at once: peak ${peak} (hard cap ${hardCap})`);
    expect(peak).toBeLessThanOrEqual(hardCap);
    const paired = results[0].filter((r) => r.outcome === 'paired' && r.partner === honest.id).length;
    expect(paired, JSON.stringify(results[0].map((r) => r.reason))).toBeGreaterThanOrEqual(rounds - 2);
  });
});

function pairCounts(ids: string[], results: ExchangeResult[][]): number[] {
  const idx = (a: string, b: string) => {
    const [i, j] = [ids.indexOf(a), ids.indexOf(b)].sort((x, y) => x - y);
    return i * ids.length - (i * (i + 1)) / 2 + (j - i - 1);
  };
  const counts = new Array((ids.length * (ids.length - 1)) / 2).fill(0);
  // Count each pair once, from the lexicographically smaller side.
  results.forEach((rs, i) => {
    for (const r of rs) if (r.outcome === 'paired' && ids[i] < r.partner!) counts[idx(ids[i], r.partner!)]++;
  });
  return counts;
}

/** A paired result of A with B at A's round rA must be matched by B's result at B's round. */
function assertSymmetric(ids: string[], results: ExchangeResult[][]): void {
  results.forEach((rs, i) => {
    for (const r of rs) {
      if (r.outcome !== 'paired') continue;
      const j = ids.indexOf(r.partner!);
      const theirs = results[j][r.payload!.round];
      // Their round-rB exchange was with us (it may have failed on their side: never with someone else).
      expect(theirs.partner, `${ids[i]} r${r.round} paired with ${ids[j]} r${r.payload!.round}`).toBe(ids[i]);
    }
  });
}

describe('mesh: a late announcement of a round given up on', () => {
  it("a partner's xchg that crossed our deadline abort is not taken as its announcement of the next round: the pair pairs again", async () => {
    // p1's announcement of round 0 is held on the wire (a channel queueing an earlier round's
    // chunks delays it so) until p0 has given that round up at its deadline and is waiting for
    // its next pool answer; p1 took p0's abort then, so nothing from p1 follows it for round 0.
    let hold = false;
    const held: Uint8Array[] = [];
    let p1Link: Link | null = null;
    let staleArrived = false;
    const s = (swarm = new Swarm({
      n: 2, transport: 'memory', elements: 256,
      initFor: (id) => ({ deadline: id === 'p0' ? { minMs: 50, initialMs: 200, maxMs: 5_000 } : { minMs: 5_000, initialMs: 10_000, maxMs: 20_000 } }),
      wrap: (id, links) => {
        if (id === 'p0') {
          return chaosLinks(links, (f) => [f], (remote, bytes) => {
            const f = decodeFrame(bytes);
            if (remote === 'p1' && f.type === 'control' && parseControl(f.message).t === 'xchg' && !hold) staleArrived = true;
          });
        }
        return chaosLinks((o) => (p1Link = links(o)), (f, { chunk }) => {
          if (!hold) return [f];
          if (!chunk) held.push(f); // round 0's chunks are lost with the held announcement
          return [];
        });
      },
    }));
    await s.connected(1);
    const [p0, p1] = s.peers as [typeof s.peers[0], typeof s.peers[0]];
    // The test is the pool: each round's pairing is told to both, in order.
    for (const p of [p0, p1]) vi.spyOn(p.client, 'ready').mockImplementation(() => {});
    hold = true;
    const pair = (round: number) => {
      p0.client.emit('paired', { round, partner: p1.id, partnerRound: round, initiator: true });
      p1.client.emit('paired', { round, partner: p0.id, partnerRound: round, initiator: false });
    };
    const r0 = [p0.mesh.exchange(0, syntheticPayload(256, 0, 0), { waitMs: 5_000 }), p1.mesh.exchange(0, syntheticPayload(256, 1, 0), { waitMs: 5_000 })];
    pair(0);
    const [a0, b0] = await Promise.all(r0);
    expect([a0.reason, b0.reason]).toEqual(['deadline', 'partner-aborted']);
    expect(held.map((f) => { const d = decodeFrame(f); return d.type === 'control' ? parseControl(d.message).t : 'chunk'; })).toEqual(['xchg']);

    // Round 1: p0 waits for its pool answer when p1's round-0 announcement finally arrives.
    const mine = p0.mesh.exchange(1, syntheticPayload(256, 0, 1), { waitMs: 5_000 });
    await until(() => (p0.mesh as unknown as { run: ExchangeRun | null }).run?.phase === 'pairing', 5_000, 'p0 pairing round 1', 5);
    hold = false;
    for (const f of held.splice(0)) p1Link!.send(f);
    await until(() => staleArrived, 5_000, "p1's round-0 announcement at p0", 5);
    const theirs = p1.mesh.exchange(1, syntheticPayload(256, 1, 1), { waitMs: 5_000 });
    pair(1);
    const [a1, b1] = await Promise.all([mine, theirs]);
    expect([a1.outcome, a1.reason, a1.partner]).toEqual(['paired', null, p1.id]);
    expect([b1.outcome, b1.reason, b1.partner]).toEqual(['paired', null, p0.id]);
    expect(a1.payload!.round).toBe(1);
    expect(sameFloats(a1.payload!.delta, syntheticPayload(256, 1, 1).delta)).toBe('same');
    expect(sameFloats(b1.payload!.delta, syntheticPayload(256, 0, 1).delta)).toBe('same');
  });
});

/** The tag of a frame on the wire: a control message's `t`, or 'chunk'. */
function frameKind(bytes: Uint8Array): string {
  const f = decodeFrame(bytes);
  return f.type === 'control' ? parseControl(f.message).t : 'chunk';
}

/**
 * One direction of an ordered channel the test can stall: from the first frame `holdFrom`
 * accepts on, every frame is held in order (a channel still carrying an earlier round's chunks
 * delays what follows so), until `release` sends them all on; `dropChunks` loses chunk frames.
 */
class Valve {
  holdFrom: ((kind: string) => boolean) | null = null;
  dropChunks = false;
  readonly held: Uint8Array[] = [];
  link: Link | null = null;

  pass(frame: Uint8Array, chunk: boolean): Uint8Array[] {
    if (this.held.length > 0 || this.holdFrom?.(frameKind(frame))) { this.held.push(frame); return []; }
    return chunk && this.dropChunks ? [] : [frame];
  }

  kinds(): string[] {
    return this.held.map(frameKind);
  }

  control(i: number): ControlMessage {
    const f = decodeFrame(this.held[i]!);
    if (f.type !== 'control') throw new Error(`held frame ${i} is a chunk`);
    return parseControl(f.message);
  }

  /** Sends what was held, in order, and holds nothing more (synchronously: nothing overtakes it). */
  release(): void {
    this.holdFrom = null;
    for (const f of this.held.splice(0)) this.link!.send(f);
  }
}

/** Two peers on stallable channels, each with its own transfer deadline; the test is the pool. */
function stallablePair(deadlines: { p0: number; p1: number }) {
  const valves = { p0: new Valve(), p1: new Valve() };
  const s = (swarm = new Swarm({
    n: 2, transport: 'memory', elements: 256,
    initFor: (id) => ({ deadline: { minMs: 50, initialMs: id === 'p0' ? deadlines.p0 : deadlines.p1, maxMs: 20_000 } }),
    wrap: (id, links) => {
      const v = valves[id as 'p0' | 'p1'];
      return chaosLinks((o) => (v.link = links(o)), (f, { chunk }) => v.pass(f, chunk !== null));
    },
  }));
  const pair = (round: number) => {
    const [p0, p1] = s.peers as [SwarmPeer, SwarmPeer];
    p0.client.emit('paired', { round, partner: p1.id, partnerRound: round, initiator: true });
    p1.client.emit('paired', { round, partner: p0.id, partnerRound: round, initiator: false });
  };
  const phase = (p: SwarmPeer) => (p.mesh as unknown as { run: ExchangeRun | null }).run?.phase;
  return { s, valves, pair, phase };
}

describe('mesh: a late abort of an earlier pairing with the same peer', () => {
  it("a partner's abort of round 0, delivered after the pool paired the two again, does not end round 1: it completes as paired", async () => {
    // p0 gives round 0 up at its deadline (p1's chunks never reach it), while p1 had all of p0's
    // payload and paired. p0's abort is held on the wire until both are in round 1's transfer.
    const { s, valves, pair, phase } = stallablePair({ p0: 300, p1: 10_000 });
    await s.connected(1);
    const [p0, p1] = s.peers as [SwarmPeer, SwarmPeer];
    for (const p of [p0, p1]) vi.spyOn(p.client, 'ready').mockImplementation(() => {});
    valves.p0.holdFrom = (kind) => kind === 'abort';
    valves.p1.dropChunks = true;
    const r0 = [p0.mesh.exchange(0, syntheticPayload(256, 0, 0), { waitMs: 5_000 }), p1.mesh.exchange(0, syntheticPayload(256, 1, 0), { waitMs: 5_000 })];
    pair(0);
    const [a0, b0] = await Promise.all(r0);
    expect([a0.outcome, a0.reason, b0.outcome, b0.reason]).toEqual(['solo', 'deadline', 'paired', null]);
    expect(valves.p0.kinds()).toEqual(['abort']);
    const stale = valves.p0.control(0);
    expect(stale).toMatchObject({ t: 'abort', round: 0, reason: 'deadline' });
    valves.p1.dropChunks = false;

    const r1 = [p0.mesh.exchange(1, syntheticPayload(256, 0, 1), { waitMs: 5_000 }), p1.mesh.exchange(1, syntheticPayload(256, 1, 1), { waitMs: 5_000 })];
    pair(1);
    // p1 waits for p0's round-1 announcement, which is on the wire behind the old abort.
    await until(() => phase(p1) === 'transfer' && valves.p0.kinds().includes('xchg'), 5_000, "p1 in round 1's transfer, p0's announcement behind its abort", 5);
    valves.p0.release();
    const [a1, b1] = await Promise.all(r1);
    expect([[a1.outcome, a1.reason, a1.partner], [b1.outcome, b1.reason, b1.partner]]).toEqual([['paired', null, p1.id], ['paired', null, p0.id]]);
    expect(b1.payload!.round).toBe(1);
    expect(sameFloats(a1.payload!.delta, syntheticPayload(256, 1, 1).delta)).toBe('same');
    expect(sameFloats(b1.payload!.delta, syntheticPayload(256, 0, 1).delta)).toBe('same');
    // The old abort carried p0's round 0; p1 was told p0's round 1 for this pairing.
    expect(stale).toEqual({ t: 'abort', round: 0, reason: 'deadline' });
  });

  it("aborts of round 0 that cross both ways, and p1's round-0 announcement that p0 never had, are all left out of round 1: it completes as paired", async () => {
    // Everything p1 sends in round 0 is held, so p0 never has p1's xchg: p0 gives up first; p1
    // gives up at its own deadline. Both aborts (and p1's round-0 xchg and chunks) arrive in round
    // 1's transfer, before each partner's round-1 announcement.
    const { s, valves, pair, phase } = stallablePair({ p0: 300, p1: 600 });
    await s.connected(1);
    const [p0, p1] = s.peers as [SwarmPeer, SwarmPeer];
    for (const p of [p0, p1]) vi.spyOn(p.client, 'ready').mockImplementation(() => {});
    valves.p0.holdFrom = (kind) => kind === 'abort';
    valves.p1.holdFrom = () => true;
    const r0 = [p0.mesh.exchange(0, syntheticPayload(256, 0, 0), { waitMs: 5_000 }), p1.mesh.exchange(0, syntheticPayload(256, 1, 0), { waitMs: 5_000 })];
    pair(0);
    const [a0, b0] = await Promise.all(r0);
    expect([a0.reason, b0.reason]).toEqual(['deadline', 'deadline']);
    expect(valves.p0.kinds()).toEqual(['abort']);
    expect(valves.p0.control(0)).toEqual({ t: 'abort', round: 0, reason: 'deadline' });
    // p1 had p0's xchg, so its chunks of round 0 are held between the two as well.
    expect(valves.p1.kinds().filter((k) => k !== 'chunk')).toEqual(['xchg', 'abort']);
    const staleOfP1 = valves.p1.control(valves.p1.kinds().indexOf('abort'));
    expect(staleOfP1).toMatchObject({ t: 'abort', round: 0, reason: 'deadline' });

    const r1 = [p0.mesh.exchange(1, syntheticPayload(256, 0, 1), { waitMs: 5_000 }), p1.mesh.exchange(1, syntheticPayload(256, 1, 1), { waitMs: 5_000 })];
    pair(1);
    await until(
      () => phase(p0) === 'transfer' && phase(p1) === 'transfer' && valves.p0.kinds().includes('xchg') && valves.p1.kinds().filter((k) => k === 'xchg').length === 2,
      5_000, "both in round 1's transfer, each announcement behind its sender's old abort", 5);
    valves.p0.release();
    valves.p1.release();
    const [a1, b1] = await Promise.all(r1);
    expect([[a1.outcome, a1.reason, a1.partner], [b1.outcome, b1.reason, b1.partner]]).toEqual([['paired', null, p1.id], ['paired', null, p0.id]]);
    expect([a1.payload!.round, b1.payload!.round]).toEqual([1, 1]);
    expect(sameFloats(a1.payload!.delta, syntheticPayload(256, 1, 1).delta)).toBe('same');
    expect(sameFloats(b1.payload!.delta, syntheticPayload(256, 0, 1).delta)).toBe('same');
    // Each old abort carried its sender's round 0; each side was told the other's round 1.
    expect(staleOfP1).toEqual({ t: 'abort', round: 0, reason: 'deadline' });
  });
});

describe('mesh: a round given up on that the partner never announced', () => {
  it("the partner's next announcement on the same link is taken as this pairing's: the two pair again", async () => {
    // p0 gives its round 0 up at its deadline while p1, whose pool answer has not come, has sent
    // nothing for that pairing; p1's answer then says solo, so no announcement of p1's for it
    // ever comes, and the link stays open. Each peer counts its own rounds (p1's are 10, 11).
    // Before the pairing named the partner's round, p0 dropped the next announcement from p1 on
    // that link as the late one of the round it gave up on, and the pair lost round 1 as well.
    const { s, phase } = stallablePair({ p0: 300, p1: 2_000 });
    await s.connected(1);
    const [p0, p1] = s.peers as [SwarmPeer, SwarmPeer];
    for (const p of [p0, p1]) vi.spyOn(p.client, 'ready').mockImplementation(() => {});
    const stash = (p: SwarmPeer) => ((p.mesh as unknown as { run: ExchangeRun | null }).run as unknown as { stash: Map<string, unknown> } | null)?.stash;

    const mine0 = p0.mesh.exchange(0, syntheticPayload(256, 0, 0), { waitMs: 5_000 });
    const theirs0 = p1.mesh.exchange(10, syntheticPayload(256, 1, 10), { waitMs: 5_000 });
    p0.client.emit('paired', { round: 0, partner: p1.id, partnerRound: 10, initiator: true });
    // p1, still waiting for its own answer, keeps p0's announcement for later.
    await until(() => stash(p1)?.has(p0.id) === true, 5_000, "p0's round-0 announcement kept at p1", 5);
    const a0 = await mine0;
    expect([a0.outcome, a0.reason, a0.partner]).toEqual(['solo', 'deadline', p1.id]);
    // p0's abort of its round 0 reached p1 and released that announcement.
    await until(() => stash(p1)?.size === 0, 5_000, "p0's abort at p1", 5);
    p1.client.emit('paired', { round: 10, partner: null, initiator: false });
    const b0 = await theirs0;
    expect([b0.outcome, b0.reason]).toEqual(['solo', 'no-partner']);
    expect(p0.mesh.neighbours()).toContain(p1.id);

    const mine1 = p0.mesh.exchange(1, syntheticPayload(256, 0, 1), { waitMs: 5_000 });
    const theirs1 = p1.mesh.exchange(11, syntheticPayload(256, 1, 11), { waitMs: 5_000 });
    expect([phase(p0), phase(p1)]).toEqual(['pairing', 'pairing']);
    p0.client.emit('paired', { round: 1, partner: p1.id, partnerRound: 11, initiator: true });
    p1.client.emit('paired', { round: 11, partner: p0.id, partnerRound: 1, initiator: false });
    const [a1, b1] = await Promise.all([mine1, theirs1]);
    expect([[a1.outcome, a1.reason, a1.partner], [b1.outcome, b1.reason, b1.partner]]).toEqual([['paired', null, p1.id], ['paired', null, p0.id]]);
    expect([a1.payload!.round, b1.payload!.round]).toEqual([11, 1]);
    expect(sameFloats(a1.payload!.delta, syntheticPayload(256, 1, 11).delta)).toBe('same');
    expect(sameFloats(b1.payload!.delta, syntheticPayload(256, 0, 1).delta)).toBe('same');
  });
});

describe('mesh: a late announcement kept before the pool answered, then the coordinator went down', () => {
  it("the partner's announcement of an earlier pairing, kept while waiting for the pool, is not taken for the direct pairing's: the two pair", async () => {
    // Round 0 (p0's 0, p1's 10): everything p1 sends is held on the wire, so p0 never has p1's
    // announcement and gives the round up at its deadline. p1's round-0 announcement arrives while
    // p0 waits for its round-1 pool answer, and is kept. Then the coordinator goes down and the two
    // pair directly (p0's 1, p1's 11): the kept announcement carries p1's round 10, not 11.
    const { s, valves, phase } = stallablePair({ p0: 300, p1: 10_000 });
    await s.connected(1);
    const [p0, p1] = s.peers as [SwarmPeer, SwarmPeer];
    for (const p of [p0, p1]) vi.spyOn(p.client, 'ready').mockImplementation(() => {});
    const stash = (p: SwarmPeer) => ((p.mesh as unknown as { run: ExchangeRun | null }).run as unknown as { stash: Map<string, ControlMessage> } | null)?.stash;
    valves.p1.holdFrom = () => true;
    const r0 = [p0.mesh.exchange(0, syntheticPayload(256, 0, 0), { waitMs: 5_000 }), p1.mesh.exchange(10, syntheticPayload(256, 1, 10), { waitMs: 5_000 })];
    p0.client.emit('paired', { round: 0, partner: p1.id, partnerRound: 10, initiator: true });
    p1.client.emit('paired', { round: 10, partner: p0.id, partnerRound: 0, initiator: false });
    const [a0, b0] = await Promise.all(r0);
    expect([a0.reason, b0.reason]).toEqual(['deadline', 'partner-aborted']);
    expect(valves.p1.kinds()[0]).toBe('xchg');

    const r1 = [p0.mesh.exchange(1, syntheticPayload(256, 0, 1), { waitMs: 5_000 }), p1.mesh.exchange(11, syntheticPayload(256, 1, 11), { waitMs: 5_000 })];
    expect([phase(p0), phase(p1)]).toEqual(['pairing', 'pairing']);
    valves.p1.release();
    await until(() => stash(p0)?.get(p1.id)?.t === 'xchg', 5_000, "p1's round-0 announcement kept at p0", 5);
    expect(stash(p0)!.get(p1.id)).toMatchObject({ round: 10 });
    s.hub.stop(); // the coordinator goes down: both pair through their neighbours
    const [a1, b1] = await Promise.all(r1);
    expect([[a1.outcome, a1.reason, a1.via, a1.partner], [b1.outcome, b1.reason, b1.via, b1.partner]])
      .toEqual([['paired', null, 'direct', p1.id], ['paired', null, 'direct', p0.id]]);
    expect([a1.payload!.round, b1.payload!.round]).toEqual([11, 1]);
    expect(sameFloats(a1.payload!.delta, syntheticPayload(256, 1, 11).delta)).toBe('same');
  });
});

describe('mesh: offers held at the hard cap', () => {
  it("another dialler's offer while the partner's is held does not displace it: the pool names the partner and the pair pairs", async () => {
    // max 1: a hard cap of 3 links. The victim's own dial and two offers that never complete fill it.
    const s = (swarm = new Swarm({ n: 1, transport: 'memory', elements: N, init: { neighbours: { min: 1, max: 1 }, connectTimeoutMs: 10_000 } }));
    const [victim] = s.peers;
    const strangers = Array.from({ length: 3 }, (_, i) => s.hub.client(`a${i}`));
    const late = s.hub.client('b0'); // no link to the victim: its offer meets the hard cap
    await until(() => victim.client.connected && [...strangers, late].every((a) => a.connected), 20_000, 'strangers joined', 10);
    const links = () => victim.mesh.stats().neighbours + victim.mesh.stats().connecting;
    for (let k = 0; links() < 3; k++) {
      expect(k, 'offers needed to reach the hard cap').toBeLessThan(200);
      for (const a of strangers) a.sendSignal(victim.id, { mesh: 1, cid: `fill${k}${a.id}`, sig: { type: 'offer', token: 'none' } });
      await sleep(5);
    }
    const [partner] = makeRogues(s, 1, N);
    await until(() => partner.client.connected, 20_000, 'the partner joined', 10);
    const offers: string[] = [];
    victim.client.on('signal', (e) => { if ((e.data as { sig?: { type?: string } }).sig?.type === 'offer') offers.push(e.from); });
    // The pool answer is the test's to give.
    vi.spyOn(victim.client, 'ready').mockImplementation(() => {});
    const mine = victim.mesh.exchange(0, syntheticPayload(N, 0, 0), { waitMs: 5_000 });
    await until(() => (victim.mesh as unknown as { run: ExchangeRun | null }).run?.phase === 'pairing', 5_000, 'the victim pairing', 5);
    // The partner heard first and dials; then a stranger offers as well.
    const dialled = partner.dial(victim.id, 20_000);
    dialled.catch(() => {}); // judged below, after the exchange's own result
    await until(() => offers.includes(partner.client.id), 5_000, "the partner's offer at the victim", 5);
    expect(links()).toBe(3);
    expect(victim.mesh.stats().connecting + victim.mesh.neighbours().length).toBe(3);
    late.sendSignal(victim.id, { mesh: 1, cid: 'after', sig: { type: 'offer', token: 'none' } });
    await until(() => offers.includes(late.id), 5_000, "the stranger's offer at the victim", 5);
    victim.client.emit('paired', { round: 0, partner: partner.client.id, partnerRound: 0, initiator: false });
    const r = await mine;
    expect([r.outcome, r.reason, r.partner]).toEqual(['paired', null, partner.client.id]);
    await dialled;
  });
});

describe('mesh: a partner the pool names that never dials us', () => {
  it('leaves nothing behind once the connect timeout ends the wait, however many such rounds', async () => {
    // Named as its responder, we wait for the partner's offer; one that never sends it (a new id
    // every round) left its wait in the mesh for good: one per round, for ids that never return.
    const s = (swarm = new Swarm({ n: 1, transport: 'memory', elements: 256, init: { connectTimeoutMs: 50 } }));
    const [p0] = s.peers as [SwarmPeer];
    await until(() => p0.mesh.peerId !== null, 5_000, 'p0 to join', 5);
    vi.spyOn(p0.client, 'ready').mockImplementation(() => {});
    const waiters = () => (p0.mesh as unknown as { waiters: Map<string, Set<unknown>> }).waiters;
    for (let round = 0; round < 5; round++) {
      const r = p0.mesh.exchange(round, syntheticPayload(256, 0, round), { waitMs: 1_000 });
      p0.client.emit('paired', { round, partner: `ghost-${round}`, partnerRound: 7, initiator: false });
      expect((await r).reason).toBe('connect-failed');
    }
    expect([...waiters().keys()]).toEqual([]);
  });
});
