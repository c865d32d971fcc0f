// One training step of a GpuEngine timed per dispatch with timestamp queries (one compute pass
// per dispatch), grouped by kernel kind with the layers folded together, slowest first. Shared
// by `npm run bench:profile` (Node, Dawn) and `npm run bench:step -- --profile` (Chromium), so
// the two runtimes' SwiftShader can be compared kernel by kernel. The device must have been
// created with the 'timestamp-query' feature.
import type { GpuEngine } from '../src/gpu/engine.ts';

export interface ProfileRow { kernel: string; dispatches: number; ms: number; share: number }

export interface BatchLike { tokens: Uint32Array; targets: Uint32Array }

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

/** The rows as a table, one line each. */
export function profileLines(rows: ProfileRow[]): string[] {
  return [`${'kernel'.padEnd(44)} ${'n'.padStart(3)} ${'ms'.padStart(9)} ${'share'.padStart(6)}`,
    ...rows.map((r) => `${r.kernel.padEnd(44)} ${String(r.dispatches).padStart(3)} ${r.ms.toFixed(2).padStart(9)} ${(100 * r.share).toFixed(1).padStart(5)}%`)];
}
