// The Trainer (src/worker/trainer.ts) in Node on Dawn, as the headless volunteer runs it:
// lifecycle, outer payloads, state export/load, bad input, device-loss recovery and the
// limits check.
import { afterAll, describe, expect, it } from 'vitest';
import { preset } from '../src/model/config.ts';
import { buildLayout } from '../src/model/layout.ts';
import { LimitsTooSmallError } from '../src/gpu/errors.ts';
import { memoryStore } from '../src/gpu/autotune.ts';
import { NODE_NO_ADAPTER_HINT, nodeGpu } from '../src/gpu/node-gpu.ts';
import { Trainer } from '../src/worker/trainer.ts';
import type { TrainerConfig, TrainerEvent } from '../src/worker/types.ts';
import { validationBatches, WindowSampler } from '../src/data/sampler.ts';
import { probeCandidates } from '../src/train/outer.ts';
import { until } from './support/wait.ts';
import { ReferenceGPT } from '../src/model/reference.ts';

const model = preset('micro');
const layout = buildLayout(model);
const text = 'Call me Ishmael. Some years ago, never mind how long precisely, having little or no money in my purse. ';
const data = new TextEncoder().encode(text.repeat(20));
const config: TrainerConfig = { model, train: { batch: 2, seqLen: 16, lr: 3e-3, warmupSteps: 2 }, data, autotune: false, readEvery: 4 };

const trainers: Trainer[] = [];
const make = () => {
  const t = new Trainer({ gpu: nodeGpu, tuningStore: memoryStore(), noAdapterHint: NODE_NO_ADAPTER_HINT });
  trainers.push(t);
  return t;
};
afterAll(() => { for (const t of trainers) t.dispose(); });

const f32 = (x: Float32Array | ArrayBuffer) => (x instanceof Float32Array ? x : new Float32Array(x));

/**
 * Dawn as a driver that misbehaves on cue: the n-th adapter request (from 1) gets a working
 * device ('ok'), a device lost as it is handed over ('lost') or no adapter ('no-adapter').
 */
function scriptedGpu(plan: (n: number) => 'ok' | 'lost' | 'no-adapter') {
  const out = { requests: 0, gpu: async (): Promise<GPU> => ({}) as GPU };
  out.gpu = async () => {
    const g = await nodeGpu();
    return {
      requestAdapter: async (o?: GPURequestAdapterOptions) => {
        const what = plan(++out.requests);
        if (what === 'no-adapter') return null;
        const a = await g.requestAdapter(o);
        if (!a) return a;
        return new Proxy(a, {
          get: (target, key) => {
            if (key === 'requestDevice') {
              return async (d?: GPUDeviceDescriptor) => {
                const dev = await target.requestDevice(d);
                if (what === 'lost') dev.destroy();
                return dev;
              };
            }
            const v = Reflect.get(target, key, target);
            return typeof v === 'function' ? v.bind(target) : v;
          },
        });
      },
    } as unknown as GPU;
  };
  return out;
}

describe('Trainer (Node, Dawn)', () => {
  it('init -> train -> outer step -> export -> load into a second trainer', async () => {
    const a = make();
    const info = await a.init(config, 7);
    expect(info.params).toBe(layout.params);
    expect(info.total).toBe(layout.total);
    expect(info.dispatchesPerStep).toBeGreaterThan(30);
    expect(info.adapter).toMatch(/swiftshader/i);

    const losses = await a.train(6);
    expect(losses).toHaveLength(6);
    for (const l of losses) expect(Number.isFinite(l)).toBe(true);
    expect(Math.abs(losses[0] - Math.log(256))).toBeLessThan(0.1); // uniform predictions at init

    const payload = await a.outerPayload();
    expect(payload.phi).toBeInstanceOf(Float32Array);
    expect(payload.phi.length).toBe(layout.total);
    expect(payload.phi.buffer.byteLength).toBe(layout.total * 4); // owns its buffer: transferable as is
    // phi is still the init (no outer step yet) and delta is what 6 steps moved the weights.
    const before = await a.exportState();
    const delta = f32(payload.delta), phi = f32(payload.phi), theta = f32(before.params);
    for (let i = 0; i < layout.total; i += 97) expect(delta[i]).toBeCloseTo(theta[i] - phi[i], 6);

    await a.applyOuter([]); // solo
    const after = await a.exportState();
    expect(after.step).toBe(6);
    expect(f32(after.params)).toEqual(f32(after.phi)); // θ <- φ
    // Solo NoLoCo: m = β Δ, φ = φ + m.
    const m = f32(after.outerM);
    for (let i = 0; i < layout.total; i += 97) expect(m[i]).toBeCloseTo(0.7 * delta[i], 6);

    // The outer state a newcomer bootstraps from: φ and m of this outer step, no GPU read.
    const snap = await a.outerState();
    expect(snap.step).toBe(6);
    expect(snap.phi).toEqual(f32(after.phi));
    expect(snap.outerM).toEqual(f32(after.outerM));

    const val = validationBatches(data, 2, 16, 2);
    const lossA = await a.evaluate(val);
    const b = make();
    await b.init(config, 99);
    expect(await b.evaluate(val)).not.toBeCloseTo(lossA, 4);
    await b.load(after);
    expect(await b.evaluate(val)).toBeCloseTo(lossA, 5);
    expect((await b.getInfo()).step).toBe(6);

    // Bootstrap from a peer's outer state only: θ = φ, AdamW moments zero.
    const c = make();
    await c.init(config, 123);
    await c.load({ format: 'murmur-trainer-state', version: 1, model, step: snap.step, phi: snap.phi, outerM: snap.outerM });
    const sc = await c.exportState();
    expect(sc.params).toEqual(snap.phi);
    expect(sc.m.every((x) => x === 0) && sc.v.every((x) => x === 0)).toBe(true);
    expect(sc.step).toBe(6);
    expect(await c.evaluate(val)).toBeCloseTo(lossA, 5); // θ = φ here too (a took a solo step)
  });

  it('probe: the solo and paired candidates\' losses on private windows match the CPU reference, and training state is unchanged', async () => {
    const t = make();
    await t.init({ ...config, replica: 1, probeSeed: 42 }, 5);
    await t.train(4);
    await t.applyOuter([]);
    await t.train(4);
    const mine = await t.outerPayload();
    const before = await t.exportState();
    const partner = { phi: f32(mine.phi).map((x, i) => x + (i % 7 === 0 ? 1e-3 : 0)), delta: f32(mine.delta).map((x) => -x) };
    const got = await t.probe({ phi: partner.phi, delta: partner.delta }, 3);
    // The same candidates and windows on the CPU reference (f32; the GPU's sums differ a little).
    const o = await t.outerState();
    const c = probeCandidates(o.phi, o.outerM, { phi: f32(mine.phi), delta: f32(mine.delta) }, partner, { momentum: 0.5, lr: 0.7, consensus: 0.7 });
    const sampler = new WindowSampler(data, { seed: 42, replica: 1 });
    const windows = [0, 1, 2].map(() => sampler.next(2, 16));
    const ref = new ReferenceGPT(layout, 'f32');
    expect(got.solo).toHaveLength(3);
    for (let k = 0; k < 3; k++) {
      expect(got.solo[k]).toBeCloseTo(ref.forward(c.solo, windows[k]!), 3);
      expect(got.paired[k]).toBeCloseTo(ref.forward(c.paired, windows[k]!), 3);
    }
    // A negated Δ makes the paired step worse than solo on this replica's own data.
    expect(got.paired.reduce((a, b) => a + b, 0)).toBeGreaterThan(got.solo.reduce((a, b) => a + b, 0));
    const after = await t.exportState();
    expect(f32(after.params)).toEqual(f32(before.params));
    expect(f32(after.phi)).toEqual(f32(before.phi));
    expect(f32(after.outerM)).toEqual(f32(before.outerM));
    await expect(t.probe({ phi: new ArrayBuffer(8), delta: new ArrayBuffer(8) }, 3)).rejects.toThrow(/the partner's phi must be a Float32Array/);
    await expect(t.probe(partner, 0)).rejects.toThrow(/windows must be a positive integer/);
  });

  it('rejects bad input with a message naming the problem and changes nothing', async () => {
    const t = make();
    await expect(t.train(1)).rejects.toThrow(/call init/);
    await t.init(config, 1);
    await expect(t.init(config, 1)).rejects.toThrow(/already initialised/);
    await expect(t.train(-1)).rejects.toThrow(/non-negative integer/);
    const s0 = await t.exportState();
    await expect(t.applyOuter([{ phi: new ArrayBuffer(8), delta: new ArrayBuffer(8) }])).rejects.toThrow(new RegExp(`partner 0's phi must be a Float32Array \\(or ArrayBuffer\\) of ${layout.total} floats, got 2 floats`));
    const nan = new Float32Array(layout.total); nan[5] = NaN;
    await expect(t.applyOuter([{ phi: nan.buffer, delta: new ArrayBuffer(layout.total * 4) }])).rejects.toThrow(/non-finite value at float 5/);
    await expect(t.load({ ...s0, model: { ...model, d: 64 } })).rejects.toThrow(/d=64/);
    await expect(t.load({ ...s0, phi: nan.slice().buffer })).rejects.toThrow(/phi has a non-finite value at float 5/);
    await expect(t.load({ ...s0, params: new Float32Array(1) })).rejects.toThrow(/params must be a Float32Array \(or ArrayBuffer\) of \d+ floats, got 1 floats/);
    await expect(t.evaluate([{ B: 2, T: 16, tokens: new Uint32Array(32).fill(300), targets: new Uint32Array(32) }])).rejects.toThrow(/outside the vocabulary/);
    await expect(t.evaluate([{ B: 1, T: 16, tokens: new Uint32Array(16), targets: new Uint32Array(16) }])).rejects.toThrow(/B=1, T=16/);
    const s1 = await t.exportState();
    expect(f32(s1.params)).toEqual(f32(s0.params));
    expect(s1.step).toBe(0);
    const bad = new Trainer({ gpu: nodeGpu });
    await expect(bad.init({ ...config, data: new Uint8Array(4) }, 1)).rejects.toThrow(/fewer than one window/);
    await expect(bad.init({ ...config, model: { ...model, d: 33 } }, 1)).rejects.toThrow(/d=33 is not divisible by heads=2/);
    await expect(bad.init({ ...config, train: { ...config.train, outerMomentum: 1.5 } }, 1)).rejects.toThrow(/momentum alpha must be in \[0, 1\), got 1.5/);
    bad.dispose();
  });

  it('a lost device is rebuilt from the last outer state and trains again the steps taken since', async () => {
    const t = make();
    const events: TrainerEvent[] = [];
    const lost = new Promise<void>((r) => t.setEventListener((e) => { events.push(e); if (e.type === 'device-lost') r(); }));
    await t.init(config, 3);
    await t.train(3);
    await t.applyOuter([]);
    const outer = await t.exportState();
    await t.train(2);
    const old = t.device!;
    old.destroy(); // what a driver reset looks like from here
    await lost;
    const losses = await t.train(2);
    expect(losses.every(Number.isFinite)).toBe(true);
    expect(t.device).not.toBe(old);
    expect(events.map((e) => e.type)).toEqual(['device-lost', 'rebuilt']);
    expect(events[1]).toMatchObject({ step: outer.step + 2, retrained: 2 });
    const s = await t.exportState();
    // The caller counted 2 + 2 steps since the outer step: the replica has taken them all.
    expect(s.step).toBe(outer.step + 4);
    expect(f32(s.phi)).toEqual(f32(outer.phi));
    expect(f32(s.outerM)).toEqual(f32(outer.outerM));
    expect(f32(s.params)).not.toEqual(f32(outer.phi));
  });

  it('a device lost during a call with steps before it in the round comes back at the caller\'s count', async () => {
    const t = make();
    const events: TrainerEvent[] = [];
    t.setEventListener((e) => events.push(e));
    await t.init(config, 5);
    await t.train(3); // steps of this round before the call the loss interrupts
    const old = t.device!;
    const run = t.train(4);
    old.destroy(); // before or while the call runs: either way its steps and the 3 before it are trained again
    const losses = await run;
    expect(losses).toHaveLength(4);
    expect(losses.every(Number.isFinite)).toBe(true);
    expect(events.map((e) => e.type)).toEqual(['device-lost', 'rebuilt']);
    expect(events[1]).toMatchObject({ step: 3, retrained: 3 });
    expect((await t.getInfo()).step).toBe(7);
    // The round's Δ is the work of all 7 steps, and the outer step lands on the caller's count.
    const p = await t.outerPayload();
    expect(f32(p.delta).some((x) => x !== 0)).toBe(true);
    await t.applyOuter([]);
    expect((await t.outerState()).step).toBe(7);
  });

  it('a device lost between the inner steps and the outer step: the payload still carries the round\'s work', async () => {
    const t = make();
    const events: TrainerEvent[] = [];
    const lost = new Promise<void>((r) => t.setEventListener((e) => { events.push(e); if (e.type === 'device-lost') r(); }));
    await t.init(config, 6);
    await t.train(5);
    t.device!.destroy();
    await lost;
    const p = await t.outerPayload();
    expect(events.map((e) => e.type)).toEqual(['device-lost', 'rebuilt']);
    expect(events[1]).toMatchObject({ step: 5, retrained: 5 });
    expect(f32(p.delta).some((x) => x !== 0)).toBe(true);
    await t.applyOuter([]);
    expect((await t.outerState()).step).toBe(5);
  });

  it('a device lost again while retraining is rebuilt again, and maxRebuilds losses in a row give up naming the cause', async () => {
    // Every device after the first is lost as it is handed over: no rebuild ever finishes.
    const g = scriptedGpu((n) => (n === 1 ? 'ok' : 'lost'));
    const t = new Trainer({ gpu: g.gpu, tuningStore: memoryStore(), noAdapterHint: NODE_NO_ADAPTER_HINT, maxRebuilds: 2 });
    trainers.push(t);
    const events: TrainerEvent[] = [];
    const lost = new Promise<void>((r) => t.setEventListener((e) => { events.push(e); if (e.type === 'device-lost') r(); }));
    await t.init(config, 8);
    await t.train(2);
    t.device!.destroy();
    await lost;
    await expect(t.train(2)).rejects.toThrow(/gave up after 2 rebuilds/);
    expect(g.requests).toBe(3); // the first device, then two rebuilds, each lost while retraining
    expect(events.map((e) => e.type)).toEqual(['device-lost', 'device-lost', 'device-lost']);
  });

  it('a driver that offers no adapter for a moment after the loss: the rebuild waits and tries again', async () => {
    const g = scriptedGpu((n) => (n === 2 ? 'no-adapter' : 'ok'));
    const t = new Trainer({ gpu: g.gpu, tuningStore: memoryStore(), noAdapterHint: NODE_NO_ADAPTER_HINT });
    trainers.push(t);
    const events: TrainerEvent[] = [];
    const lost = new Promise<void>((r) => t.setEventListener((e) => { events.push(e); if (e.type === 'device-lost') r(); }));
    await t.init(config, 9);
    await t.train(2);
    t.device!.destroy();
    await lost;
    const losses = await t.train(2);
    expect(losses.every(Number.isFinite)).toBe(true);
    expect(g.requests).toBe(3); // the first, the one with no adapter, the one that worked
    expect(events.map((e) => e.type)).toEqual(['device-lost', 'rebuilt']);
    expect(events[1]).toMatchObject({ attempt: 2, step: 2, retrained: 2 });
    expect((await t.getInfo()).step).toBe(4);
  });

  it('dispose() while a rebuild waits for its next attempt: no device is acquired after it and the call fails', async () => {
    // The first rebuild finds no adapter and waits (REBUILD_BACKOFF_MS) before the next attempt;
    // the page disposes the trainer meanwhile (the volunteer stopped, the tab went away).
    const g = scriptedGpu((n) => (n === 2 ? 'no-adapter' : 'ok'));
    const t = new Trainer({ gpu: g.gpu, tuningStore: memoryStore(), noAdapterHint: NODE_NO_ADAPTER_HINT });
    trainers.push(t);
    const lost = new Promise<void>((r) => t.setEventListener((e) => { if (e.type === 'device-lost') r(); }));
    await t.init(config, 10);
    await t.train(2);
    t.device!.destroy();
    await lost;
    const run = t.train(2);
    run.catch(() => {});
    await until(() => g.requests === 2, 10_000, 'the first rebuild to find no adapter', 5);
    t.dispose();
    await expect(run).rejects.toThrow(/dispose/);
    expect(g.requests).toBe(2); // no device acquired (and held) after dispose()
    expect(t.device).toBeUndefined();
  });

  it('a device lost in the middle of train() is rebuilt and the call completes', async () => {
    const t = make();
    const events: string[] = [];
    t.setEventListener((e) => events.push(e.type));
    await t.init({ ...config, readEvery: 2 }, 4);
    const old = t.device!;
    const run = t.train(12);
    await new Promise((r) => setTimeout(r, 30)); // some steps are queued or running
    old.destroy();
    const losses = await run;
    expect(losses).toHaveLength(12);
    expect(losses.every(Number.isFinite)).toBe(true);
    expect(events).toEqual(['device-lost', 'rebuilt']);
    expect((await t.getInfo()).step).toBe(12); // re-run from the last outer state (step 0)
  });

  it('a diverging run throws, naming the step, and is reset to the last outer state', async () => {
    const t = make();
    await t.init({ ...config, train: { ...config.train, lr: 1e30, warmupSteps: 1 } }, 2);
    const start = await t.exportState();
    await expect(t.train(6)).rejects.toThrow(/loss is (NaN|Infinity|-Infinity) at step \d; the weights were reset to the last outer state \(step 0\)/);
    const s = await t.exportState();
    expect(s.step).toBe(0);
    expect(f32(s.params)).toEqual(f32(start.params));
  });

  it('a config too large for the device fails before allocating, naming the limit', async () => {
    const t = make();
    // Attention keeps no T x T matrix, so the logits (B*T x vocab, 68 GB here) are what no binding holds.
    const big: TrainerConfig = { ...config, model: { vocab: 65536, ctx: 4096, layers: 1, d: 32, heads: 2 }, train: { batch: 64, seqLen: 4096 }, data: new Uint8Array(5000) };
    const err = await t.init(big, 1).catch((e) => e);
    expect(err).toBeInstanceOf(LimitsTooSmallError);
    expect(err.message).toMatch(/maxStorageBufferBindingSize/);
  });
});
