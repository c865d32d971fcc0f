// The smoke test's worker: proves WebGPU works off the main thread (where the trainer will run)
// and that comlink calls and transferred buffers cross the boundary.
import * as Comlink from 'comlink';
import vectorAddWgsl from '../../support/vector-add.wgsl?raw';
import { acquireDevice, type AdapterSummary } from '../../../src/gpu/device.ts';

export interface VectorAddRun {
  info: AdapterSummary;
  a: Float32Array; // (N,)
  b: Float32Array; // (N,)
  out: Float32Array; // (N,) computed on the GPU; the test checks it against TypeScript
}

async function vectorAdd(a: Float32Array<ArrayBuffer>, b: Float32Array<ArrayBuffer>): Promise<VectorAddRun> {
  const { device, info } = await acquireDevice({ label: 'smoke' });
  try {
    device.pushErrorScope('validation');
    const n = a.length;
    const usage = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST | GPUBufferUsage.COPY_SRC;
    const mk = (label: string, data?: Float32Array<ArrayBuffer>) => {
      const buf = device.createBuffer({ label, size: n * 4, usage });
      if (data) device.queue.writeBuffer(buf, 0, data);
      return buf;
    };
    const out = mk('smoke.out'), bufA = mk('smoke.a', a), bufB = mk('smoke.b', b);
    const readback = device.createBuffer({ label: 'smoke.readback', size: n * 4, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
    const module = device.createShaderModule({ label: 'smoke.vectorAdd', code: vectorAddWgsl });
    const pipeline = device.createComputePipeline({ label: 'smoke.vectorAdd', layout: 'auto', compute: { module, entryPoint: 'vectorAdd' } });
    const bindGroup = device.createBindGroup({
      layout: pipeline.getBindGroupLayout(0),
      entries: [out, bufA, bufB].map((buffer, binding) => ({ binding, resource: { buffer } })),
    });
    const enc = device.createCommandEncoder({ label: 'smoke.vectorAdd' });
    const pass = enc.beginComputePass();
    pass.setPipeline(pipeline);
    pass.setBindGroup(0, bindGroup);
    pass.dispatchWorkgroups(Math.ceil(n / 64));
    pass.end();
    enc.copyBufferToBuffer(out, 0, readback, 0, n * 4);
    device.queue.submit([enc.finish()]);
    const err = await device.popErrorScope();
    if (err) throw new Error(`WebGPU validation error in the worker: ${err.message}`);
    await readback.mapAsync(GPUMapMode.READ);
    const result = new Float32Array(readback.getMappedRange().slice(0));
    readback.unmap();
    return { info, a, b, out: result };
  } finally {
    device.destroy();
  }
}

const api = {
  vectorAdd,

  /** Takes ownership of `data` (transferred), returns a new transferred buffer of data * factor. */
  scale(data: ArrayBuffer, factor: number, tag: string) {
    const x = new Float32Array(data);
    const y = x.map((v) => v * factor);
    return Comlink.transfer({ tag: `${tag}:worker`, received: x.length, result: y.buffer }, [y.buffer]);
  },

  /** What this global scope offers: the mesh needs RTCPeerConnection, which workers lack. */
  globals() {
    return {
      isWorker: typeof (globalThis as { WorkerGlobalScope?: unknown }).WorkerGlobalScope !== 'undefined',
      hasRTCPeerConnection: typeof (globalThis as { RTCPeerConnection?: unknown }).RTCPeerConnection === 'function',
      hasGpu: typeof navigator !== 'undefined' && 'gpu' in navigator,
      isSecureContext: globalThis.isSecureContext,
    };
  },
};

export type SmokeWorkerApi = typeof api;
Comlink.expose(api);
