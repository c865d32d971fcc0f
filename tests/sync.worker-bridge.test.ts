import { afterAll, describe, expect, it } from 'vitest';
import { Worker } from 'node:worker_threads';
import { wrap, type Remote } from 'comlink';
import nodeEndpoint from 'comlink/dist/esm/node-adapter.mjs';
import { workerReplica, type WorkerOuterApi } from '../src/sync/worker-bridge.ts';
import { outerRound } from '../src/sync/replica.ts';
import { pairWaitMs } from '../src/round/outer-round.ts';
import type { Mesh } from '../src/sync/mesh.ts';
import type { ExchangeResult, PartnerPayload } from '../src/sync/types.ts';

const worker = new Worker(new URL('./fixtures/outer-worker.mjs', import.meta.url));
afterAll(() => worker.terminate());

type TestApi = WorkerOuterApi & { detachedAfterSend(): boolean; getReceived(): { peer: string; round: number; phiSum: number; deltaLen: number; isF32: boolean }[] };

describe('worker bridge: tensors cross as transferred buffers', () => {
  const api = wrap<TestApi>(nodeEndpoint(worker)) as Remote<TestApi>;
  const replica = workerReplica(api);

  it('moves φ and Δ out of the worker without copying', async () => {
    const p = await replica.outerPayload();
    expect(p.phi).toBeInstanceOf(Float32Array);
    expect(p.phi.length).toBe(1000);
    expect(p.phi[10]).toBe(5);
    expect(p.delta[10]).toBe(-2.5);
    expect(await api.detachedAfterSend()).toBe(true);
  });

  it('moves the partner payload into the worker; the page gives up the buffers', async () => {
    const phi = new Float32Array(1000).fill(2);
    const delta = new Float32Array(1000).fill(1);
    const partner: PartnerPayload = { peer: 'p-1', round: 4, phi, delta, deltaNorm: 1, phiDistance: 0, clipped: false };
    await replica.applyOuter([partner]);
    expect(phi.byteLength).toBe(0); // transferred, not copied
    expect(delta.byteLength).toBe(0);
    expect(await api.getReceived()).toEqual([{ peer: 'p-1', round: 4, phiSum: 2000, deltaLen: 1000, isF32: true }]);
  });

  it('a view into a larger buffer is copied tight first (never ships its neighbours)', async () => {
    const big = new Float32Array(3000).fill(7);
    const view = big.subarray(1000, 2000);
    await replica.applyOuter([{ peer: 'p-2', round: 1, phi: view, delta: view, deltaNorm: 1, phiDistance: 0, clipped: false }]);
    expect(big.byteLength).toBe(12000); // untouched
    expect(await api.getReceived()).toEqual([{ peer: 'p-2', round: 1, phiSum: 7000, deltaLen: 1000, isF32: true }]);
  });

  it('outerRound: payload out, exchange, outer step in (solo: no partners)', async () => {
    const calls: string[] = [];
    const result = { outcome: 'solo', payload: null } as unknown as ExchangeResult;
    const mesh = { exchange: async (round: number, p: { phi: Float32Array }, o: { waitMs: number }) => { calls.push(`exchange ${round} ${p.phi.length} ${o.waitMs}`); return result; } } as unknown as Mesh;
    expect(await outerRound(mesh, replica, 3, 120)).toBe(result);
    expect(calls).toEqual(['exchange 3 1000 120']);
    expect(await api.getReceived()).toEqual([]);
  });

  it('pairWaitMs is a fraction of the inner loop (half by default), never below 250 ms', () => {
    expect(pairWaitMs(1000)).toBe(500);
    expect(pairWaitMs(1000, 0.3)).toBe(300);
    expect(pairWaitMs(0)).toBe(250);
    expect(pairWaitMs(1e9)).toBe(60_000);
    expect(() => pairWaitMs(-1)).toThrow(RangeError);
  });
});
