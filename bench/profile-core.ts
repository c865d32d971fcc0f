// One training step of a GpuEngine timed per dispatch with timestamp queries (one compute pass
// per dispatch), grouped by kernel kind with the layers folded together, slowest first. Shared
// by `npm run bench:profile` (Node, Dawn) and `npm run bench:step -- --profile` (Chromium), so
// the two runtimes' SwiftShader can be compared kernel by kernel. The device must have been
// created with the 'timestamp-query' feature.
import { GpuEngine, type EngineOptions } from '../src/gpu/engine.ts';
import type { Tuning } from '../src/gpu/kernels.ts';
import type { ModelConfig, TrainConfig } from '../src/model/config.ts';
import { initParams } from '../src/model/init.ts';
import { buildLayout } from '../src/model/layout.ts';
import type { ProfileRow } from './profile-table.ts';


export interface BatchLike { tokens: Uint32Array; targets: Uint32Array }

/** What profileModel measured: one step per kernel, and whole steps on the wall clock. */
export interface ModelProfile { totalMs: number; dispatches: number; rows: ProfileRow[]; wallMsPerStep: number; tuning: Tuning }

/**
 * A GpuEngine of `model` with `tuning` on `device`, from the seed-1 init on a fixed batch: one
 * warm-up step (compiles), one profiled step, then `steps` whole steps as the trainer runs them
 * (one submit each, losses read back in chunks) on the wall clock.
 */
export async function profileModel(device: GPUDevice, model: ModelConfig, cfg: TrainConfig, tuning: Tuning, steps: number, build?: (opts: EngineOptions) => Promise<GpuEngine>): Promise<ModelProfile> {
  const layout = buildLayout(model);
  const opts: EngineOptions = { layout, train: cfg, B: cfg.batch, T: cfg.seqLen, tuning };
  const engine = build ? await build(opts) : new GpuEngine(device, opts);
  try {
    const theta = initParams(layout, 1), zeros = new Float32Array(layout.total);
    engine.writeState({ params: theta, m: zeros, v: zeros, phi: theta, outerM: zeros, step: 0 });
    const tokens = Uint32Array.from({ length: cfg.batch * cfg.seqLen }, (_, i) => (i * 31) % model.vocab);
    const batch = { B: cfg.batch, T: cfg.seqLen, tokens, targets: tokens.map((t) => (t + 1) % model.vocab) };
    await engine.train(1, () => batch); // compile and warm up
    const p = await profileStep(device, engine, batch);
    const t0 = performance.now();
    await engine.train(steps, () => batch);
    return { ...p, wallMsPerStep: (performance.now() - t0) / steps, tuning: engine.kernels.tuning };
  } finally {
    engine.destroy();
  }
}

export async function profileStep(device: GPUDevice, engine: GpuEngine, batch: BatchLike): Promise<{ totalMs: number; dispatches: number; rows: ProfileRow[] }> {
  const list = engine.stepDispatches;
  const querySet = device.createQuerySet({ label: 'profile.querySet', type: 'timestamp', count: 2 * list.length });
  const resolve = device.createBuffer({ label: 'profile.resolve', size: 16 * list.length, usage: GPUBufferUsage.QUERY_RESOLVE | GPUBufferUsage.COPY_SRC });
  const read = device.createBuffer({ label: 'profile.read', size: 16 * list.length, usage: GPUBufferUsage.COPY_DST | GPUBufferUsage.MAP_READ });
  try {
    engine.model.writeBatch(batch.tokens, batch.targets);
    const enc = device.createCommandEncoder({ label: 'profile.step' });
    enc.clearBuffer(engine.state.grads);
    enc.clearBuffer(engine.model.dres);
    list.forEach((d, i) => {
      const pass = enc.beginComputePass({ label: `profile.${d.label}`, timestampWrites: { querySet, beginningOfPassWriteIndex: 2 * i, endOfPassWriteIndex: 2 * i + 1 } });
      pass.setPipeline(d.pipeline);
      pass.setBindGroup(0, d.bindGroup);
      pass.dispatchWorkgroups(...d.workgroups);
      pass.end();
    });
    enc.resolveQuerySet(querySet, 0, 2 * list.length, resolve, 0);
    enc.copyBufferToBuffer(resolve, 0, read, 0, read.size);
    device.queue.submit([enc.finish()]);
    await read.mapAsync(GPUMapMode.READ);
    const ts = new BigInt64Array(read.getMappedRange().slice(0));
    read.unmap();
    const kinds = new Map<string, { ms: number; count: number }>();
    let total = 0;
    list.forEach((d, i) => {
      const ms = Number(ts[2 * i + 1]! - ts[2 * i]!) / 1e6;
      total += ms;
      const kind = d.label.replace(/\.h\d+\./, '.h*.');
      const k = kinds.get(kind) ?? { ms: 0, count: 0 };
      k.ms += ms; k.count++;
      kinds.set(kind, k);
    });
    const rows = [...kinds.entries()].map(([kernel, v]) => ({ kernel, dispatches: v.count, ms: v.ms, share: v.ms / total })).sort((a, b) => b.ms - a.ms);
    return { totalMs: total, dispatches: list.length, rows };
  } finally {
    querySet.destroy(); resolve.destroy(); read.destroy();
  }
}
