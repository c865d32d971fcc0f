// The headless volunteer's small pieces: the peer-list replay for a mesh made after the
// welcome, one outer round's report, and the CPU backend's state round trip.
import { describe, expect, it } from 'vitest';
import type { SignalingEventMap } from '../src/protocol/signaling.ts';
import type { RunInfo, WelcomeMsg } from '../src/protocol/messages.ts';
import { MAX_EARLY_SIGNALS, withPeerReplay, type PeerListSource } from '../src/volunteer/signaling.ts';
import { runOuterRound } from '../src/volunteer/round.ts';
import { createBackend } from '../src/volunteer/backend.ts';
import { runConfigHash } from '../src/volunteer/run-config.ts';
import { DivergedError } from '../src/volunteer/errors.ts';
import { preset, trainConfig } from '../src/model/config.ts';
import type { Mesh } from '../src/sync/mesh.ts';
import type { ExchangeResult, OuterPayload, PartnerPayload } from '../src/sync/types.ts';
import type { Replica } from '../src/sync/replica.ts';

function fakeClient(peers: string[]): PeerListSource & { emit<K extends keyof SignalingEventMap>(k: K, e: SignalingEventMap[K]): void } {
  const subs = new Map<string, Set<(e: unknown) => void>>();
  return {
    welcome: { peers } as unknown as WelcomeMsg,
    peerId: 'p-0000000000000001',
    connected: true,
    sendSignal() {},
    ready() {},
    on(event, fn) {
      if (!subs.has(event)) subs.set(event, new Set());
      subs.get(event)!.add(fn as (e: unknown) => void);
      return () => subs.get(event)!.delete(fn as (e: unknown) => void);
    },
    emit(k, e) { for (const f of subs.get(k) ?? []) f(e); },
  };
}

describe('withPeerReplay', () => {
  it('gives a late peers subscriber the current list, then live updates', async () => {
    const c = fakeClient(['p-0000000000000001', 'p-0000000000000002']);
    const s = withPeerReplay(c);
    c.emit('peers', { peers: ['p-0000000000000002', 'p-0000000000000003'] });
    const got: string[][] = [];
    s.on('peers', (e) => got.push(e.peers));
    expect(got).toEqual([]); // delivered asynchronously, like a frame
    await Promise.resolve();
    expect(got).toEqual([['p-0000000000000002', 'p-0000000000000003']]);
    c.emit('peers', { peers: [] });
    expect(got.at(-1)).toEqual([]);
    // Other events pass through untouched, with no replay.
    const opened: string[] = [];
    s.on('open', (e) => opened.push(e.peerId));
    await Promise.resolve();
    expect(opened).toEqual([]);
  });

  it('gives the first signal subscriber the signals that came before it, in order, the newest MAX_EARLY_SIGNALS of them', async () => {
    // Live peers dial a newcomer as soon as it is listed, before its mesh exists: a lost offer
    // cost the link a whole connect timeout (the glare rule keeps the lost one as the winner).
    const c = fakeClient(['p-0000000000000001']);
    const s = withPeerReplay(c);
    const sig = (k: number) => ({ from: 'p-0000000000000002', data: { mesh: 1, cid: 'x', sig: { k } } });
    for (let k = 0; k < MAX_EARLY_SIGNALS + 3; k++) c.emit('signal', sig(k));
    const got: number[] = [];
    const off = s.on('signal', (e) => got.push((e.data as { sig: { k: number } }).sig.k));
    c.emit('signal', sig(1000)); // before the backlog is delivered: it comes after it
    expect(got).toEqual([]);
    await Promise.resolve();
    c.emit('signal', sig(1001));
    expect(got).toEqual([...Array.from({ length: MAX_EARLY_SIGNALS - 1 }, (_, i) => i + 4), 1000, 1001]);
    off();
    c.emit('signal', sig(1002));
    expect(got.at(-1)).toBe(1001);
    // Later subscribers get live signals only; an unsubscribe before delivery takes nothing.
    const later: number[] = [];
    s.on('signal', (e) => later.push((e.data as { sig: { k: number } }).sig.k));
    const cancelled: number[] = [];
    s.on('signal', (e) => cancelled.push((e.data as { sig: { k: number } }).sig.k))();
    c.emit('signal', sig(1003));
    await Promise.resolve();
    expect(later).toEqual([1003]);
    expect(cancelled).toEqual([]);
  });

  it('a peer flooding a newcomer before its mesh exists pushes out only its own early signals', async () => {
    // Any peer of the run is listed the newcomer when the honest ones are: 64 signals of its own
    // after an honest offer pushed that offer out, and the honest link waited out its connect timeout.
    const c = fakeClient(['p-0000000000000001']);
    const s = withPeerReplay(c);
    const honest = (k: number) => ({ from: 'p-000000000000000a', data: { mesh: 1, cid: 'h', sig: { k } } });
    const other = (k: number) => ({ from: 'p-000000000000000b', data: { mesh: 1, cid: 'o', sig: { k } } });
    for (let k = 0; k < 4; k++) c.emit('signal', honest(k));
    for (let k = 0; k < 3; k++) c.emit('signal', other(k));
    for (let k = 0; k < 5 * MAX_EARLY_SIGNALS; k++) c.emit('signal', { from: 'p-00000000000000ff', data: { mesh: 1, cid: 'x', sig: { k } } });
    c.emit('signal', honest(4));
    const got: { from: string; k: number }[] = [];
    s.on('signal', (e) => got.push({ from: e.from, k: (e.data as { sig: { k: number } }).sig.k }));
    await Promise.resolve();
    expect(got).toHaveLength(MAX_EARLY_SIGNALS);
    expect(got.filter((g) => g.from === 'p-000000000000000a').map((g) => g.k)).toEqual([0, 1, 2, 3, 4]);
    expect(got.filter((g) => g.from === 'p-000000000000000b').map((g) => g.k)).toEqual([0, 1, 2]);
    // The flooder keeps its newest, in order, and everything comes in the order it arrived.
    expect(got.filter((g) => g.from === 'p-00000000000000ff').map((g) => g.k)).toEqual(Array.from({ length: MAX_EARLY_SIGNALS - 8 }, (_, i) => 5 * MAX_EARLY_SIGNALS - (MAX_EARLY_SIGNALS - 8) + i));
    expect(got.at(-1)).toEqual({ from: 'p-000000000000000a', k: 4 });
  });

  it('honest peers dialling a newcomer together past the early limit all keep their offers', async () => {
    // 13 live peers dial a newcomer before its mesh exists, each an offer and 5 candidates (78
    // signals): giving up each holder's oldest threw away every offer, and kept their candidates,
    // useless without it; not one link could open (the plain newest 64 kept 10 of them).
    const c = fakeClient(['p-0000000000000001']);
    const s = withPeerReplay(c);
    const peer = (p: number) => `p-00000000000001${p.toString(16).padStart(2, '0')}`;
    for (let p = 0; p < 13; p++) {
      c.emit('signal', { from: peer(p), data: { mesh: 1, cid: `c${p}`, sig: { type: 'offer', sdp: 'v=0' } } });
      for (let k = 0; k < 5; k++) c.emit('signal', { from: peer(p), data: { mesh: 1, cid: `c${p}`, sig: { type: 'candidate', candidate: { candidate: `candidate:${k}` } } } });
    }
    const got: { from: string; type: string }[] = [];
    s.on('signal', (e) => got.push({ from: e.from, type: (e.data as { sig: { type: string } }).sig.type }));
    await Promise.resolve();
    expect(got).toHaveLength(MAX_EARLY_SIGNALS);
    expect(got.filter((g) => g.type === 'offer').map((g) => g.from)).toEqual(Array.from({ length: 13 }, (_, p) => peer(p)));
    // Each still has candidates, in the order they came, after its offer.
    for (let p = 0; p < 13; p++) {
      const own = got.filter((g) => g.from === peer(p)).map((g) => g.type);
      expect(own[0]).toBe('offer');
      expect(own.length).toBeGreaterThanOrEqual(4);
    }
  });
});

const P = 8;
function fakeMesh(result: Partial<ExchangeResult>): Mesh {
  return {
    exchange: async (round: number) => ({
      round, outcome: 'solo', partner: null, payload: null, reason: 'no-partner', rejection: null, via: null,
      pairMs: 0, transferMs: 0, elapsedMs: 0, budgetMs: 0, bytesSent: 0, bytesReceived: 0, ...result,
    }),
    stats: () => ({ linkFailures: 0, lastLinkError: null }),
  } as unknown as Mesh;
}
class RecordingReplica implements Replica {
  applied: PartnerPayload[][] = [];
  outerPayload(): OuterPayload { return { phi: new Float32Array(P), delta: new Float32Array(P).fill(0.5) }; }
  applyOuter(p: PartnerPayload[]): void { this.applied.push(p); }
}

describe('runOuterRound', () => {
  it('reports a paired round: partner, φ distance, bytes, mean loss, tokens/s over the whole round', async () => {
    const payload: PartnerPayload = { peer: 'p-00000000000000aa', round: 3, phi: new Float32Array(P), delta: new Float32Array(P), deltaNorm: 1, phiDistance: 0.25, clipped: false };
    const rep = new RecordingReplica();
    let t = 1000;
    const out = await runOuterRound(fakeMesh({ outcome: 'paired', partner: payload.peer, payload, reason: null, bytesSent: 300, bytesReceived: 310 }), rep, {
      round: 3, inner: { step: 40, losses: [3, 2], tokens: 256, innerMs: 1000 }, pairWaitFrac: 0.3, adapter: 'test',
      evaluate: async () => { t += 1000; return 1.5; }, now: () => t,
    });
    expect(rep.applied).toEqual([[payload]]);
    expect(out.waitMs).toBe(300);
    expect(out.report).toMatchObject({ step: 40, round: 4, trainLoss: 2.5, valLoss: 1.5, partner: payload.peer, partnerDist: 0.25, bytesIn: 310, bytesOut: 300, adapter: 'test' });
    expect(out.report.tokensPerS).toBeCloseTo(256 / 2, 6); // 1 s inner + 1 s evaluating
  });

  it('reports a solo round with no partner, and "NaN" (JSON-safe) for a diverged loss', async () => {
    const rep = new RecordingReplica();
    const out = await runOuterRound(fakeMesh({}), rep, {
      round: 0, inner: { step: 8, losses: [2, Number.NaN], tokens: 64, innerMs: 10 }, pairWaitFrac: 0.3, adapter: null, evaluate: null,
    });
    expect(rep.applied).toEqual([[]]);
    expect(out.waitMs).toBe(250); // never below the floor: with no wait nobody meets
    expect(out.report).toMatchObject({ round: 1, trainLoss: 'NaN', valLoss: null, partner: null, partnerDist: null });
    // An infinite validation loss travels by name too; a healthy round averages its losses.
    const ok = await runOuterRound(fakeMesh({}), rep, {
      round: 1, inner: { step: 16, losses: [2, 3], tokens: 64, innerMs: 10 }, pairWaitFrac: 0.3, adapter: null, evaluate: async () => Infinity,
    });
    expect(ok.report).toMatchObject({ round: 2, trainLoss: 2.5, valLoss: 'Infinity' });
  });
});

describe('CPU backend', () => {
  const model = preset('micro');
  const run: RunInfo = {
    id: 'unit', name: 'unit', dataset: 'x', preset: 'micro', model, train: trainConfig({ batch: 2, H: 4, lr: 3e-3, warmupSteps: 2 }, model),
    compression: 'none', pairWaitFrac: 0.3, seed: 5, status: 'running', createdAt: 0, updatedAt: 0,
  };
  const text = new TextEncoder().encode('Call me Ishmael. Some years ago, never mind how long precisely. '.repeat(30));

  it('trains, steps solo, and a second replica loaded from its slow state evaluates the same', async () => {
    const a = await createBackend('cpu', { run, train: text, val: text, stream: 0 });
    const b = await createBackend('cpu', { run, train: text, val: text, stream: 1 });
    const fresh = await a.evaluate();
    expect(fresh).toBeCloseTo(await b.evaluate(), 6); // same run seed, same φ_0
    const losses = await a.train(6);
    expect(losses).toHaveLength(6);
    await a.outerPayload();
    await a.applyOuter([]);
    const st = await a.slowState();
    await b.load({ ...st, innerStep: 6 });
    expect(await b.evaluate()).toBe(await a.evaluate());
    expect(await a.evaluate()).toBeLessThan(fresh);
    await expect(b.load({ phi: new Float32Array(3), momentum: new Float32Array(3), innerStep: 0 })).rejects.toThrow(/layout needs/);
    await expect(b.applyOuter([])).rejects.toThrow(/before outerPayload/);
  });

  it('a non-finite loss rejects with DivergedError and puts θ back at φ and the schedule at the last outer step', async () => {
    const a = await createBackend('cpu', { run, train: text, val: text, stream: 0 });
    const st = await a.slowState();
    const phi = st.phi.slice();
    phi[5] = Number.POSITIVE_INFINITY; // a poisoned weight in the token embedding
    await a.load({ phi, momentum: st.momentum, innerStep: 12 });
    const err = await a.train(2).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(DivergedError);
    expect((err as Error).message).toMatch(/reset to the last outer state \(step 12\)/);
    const p = await a.outerPayload();
    expect(Array.from(p.delta).every((x) => x === 0 || Number.isNaN(x))).toBe(true); // θ = φ again
  });

  it('fingerprints the run exactly as the browser volunteer does, so Node and browser peers pair', async () => {
    const { runConfigHash: browserHash } = await import('../src/ui/pages/engine-wiring.ts');
    expect(runConfigHash(run)).toBe(browserHash(run));
    const other = { ...run, compression: 'int8' as const, train: { ...run.train, consensus: 0.5 } };
    expect(runConfigHash(other)).toBe(browserHash(other));
  });

  it('fingerprints the run so only identical configs exchange', () => {
    expect(runConfigHash(run)).toBe(runConfigHash({ ...run, name: 'renamed' }));
    expect(runConfigHash(run)).not.toBe(runConfigHash({ ...run, train: { ...run.train, H: 5 } }));
    expect(runConfigHash(run)).not.toBe(runConfigHash({ ...run, id: 'other' }));
  });
});
