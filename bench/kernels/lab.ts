// Shared helpers for the kernel lab (llm.c dev/cuda style): a Dawn device in Node, a naive CPU
// reference, max-relative-error validation and wall-clock timing of a dispatch. Lab code only:
// the trainer never imports it.
import { optionalFeatures } from '../../src/gpu/device.ts';

// dawn.node lives only as long as the object create() returned is referenced: keep it here.
let gpuRef: GPU | undefined;

/** The adapter the lab ran on, for the results file (set by labDevice). */
export let labAdapter: { vendor: string; architecture: string; device: string; description: string } | undefined;

export async function labDevice(): Promise<GPUDevice> {
  process.env.VK_ICD_FILENAMES ??= '/usr/lib/chromium/vk_swiftshader_icd.json';
  const { create, globals } = await import('webgpu');
  Object.assign(globalThis, globals);
  const gpu = (gpuRef ??= create([]) as GPU);
  const adapter = await gpu.requestAdapter();
  if (!adapter) throw new Error('no WebGPU adapter: install chromium (SwiftShader Vulkan ICD) and libvulkan1');
  const { vendor, architecture, device, description } = adapter.info;
  labAdapter = { vendor, architecture, device, description };
  return adapter.requestDevice({
    label: 'lab.device',
    requiredFeatures: optionalFeatures(adapter),
    requiredLimits: { maxStorageBufferBindingSize: adapter.limits.maxStorageBufferBindingSize, maxBufferSize: adapter.limits.maxBufferSize },
  });
}

export function randn(n: number, seed: number): Float32Array {
  const out = new Float32Array(n);
  let s = seed >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    s ^= s << 13; s >>>= 0; s ^= s >>> 17; s ^= s << 5; s >>>= 0;
    out[i] = (s / 4294967296) * 2 - 1;
  }
  return out;
}

export function storage(device: GPUDevice, data: Float32Array | number, label: string): GPUBuffer {
  const size = typeof data === 'number' ? data * 4 : data.byteLength;
  const buf = device.createBuffer({ label, size: Math.max(16, Math.ceil(size / 16) * 16), usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST });
  if (typeof data !== 'number') device.queue.writeBuffer(buf, 0, data.buffer as ArrayBuffer, data.byteOffset, data.byteLength);
  return buf;
}

export function uniform(device: GPUDevice, words: number[], label: string): GPUBuffer {
  const buf = device.createBuffer({ label, size: Math.max(16, Math.ceil(words.length / 4) * 16), usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST });
  device.queue.writeBuffer(buf, 0, new Uint32Array(words));
  return buf;
}

export async function readBack(device: GPUDevice, buf: GPUBuffer, floats: number): Promise<Float32Array> {
  const staging = device.createBuffer({ label: 'lab.staging', size: Math.ceil(floats * 4 / 16) * 16, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
  const enc = device.createCommandEncoder();
  enc.copyBufferToBuffer(buf, 0, staging, 0, staging.size);
  device.queue.submit([enc.finish()]);
  await staging.mapAsync(GPUMapMode.READ);
  const out = new Float32Array(staging.getMappedRange().slice(0, floats * 4));
  staging.destroy();
  return out;
}

export function maxRelErr(got: Float32Array, want: Float32Array | Float64Array): number {
  let scale = 0;
  for (let i = 0; i < want.length; i++) scale = Math.max(scale, Math.abs(want[i]));
  let err = 0;
  for (let i = 0; i < want.length; i++) err = Math.max(err, Math.abs(got[i] - want[i]));
  return err / Math.max(scale, 1e-30);
}

/** Median wall time in ms of `reps` single submits of `encode`, after one warm-up. */
export async function timeIt(device: GPUDevice, encode: (enc: GPUCommandEncoder) => void, reps: number): Promise<number> {
  // `n` runs in one submit, so that the submit and its completion callback (tens to hundreds
  // of microseconds in Dawn) do not count as kernel time on a fast GPU; n grows until a submit
  // takes >= 20 ms. The median of `reps` such submits, per run.
  const batch = async (n: number) => {
    const enc = device.createCommandEncoder();
    for (let i = 0; i < n; i++) encode(enc);
    const t0 = performance.now();
    device.queue.submit([enc.finish()]);
    await device.queue.onSubmittedWorkDone();
    return (performance.now() - t0) / n;
  };
  await batch(1);
  let n = 1;
  while (n < 256 && n * await batch(n) < 20) n *= 4;
  const ts: number[] = [];
  for (let i = 0; i < reps; i++) ts.push(await batch(n));
  ts.sort((a, b) => a - b);
  return ts[Math.floor(ts.length / 2)];
}
