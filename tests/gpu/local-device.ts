// Temporary: a Dawn device for the engine tests until tests/support/gpu.ts lands from `harness`.
import { Kernels, type Tuning } from '../../src/gpu/kernels.ts';

let gpuRef: GPU | undefined;

export async function localDevice(): Promise<GPUDevice> {
  process.env.VK_ICD_FILENAMES ??= '/usr/lib/chromium/vk_swiftshader_icd.json';
  const { create, globals } = await import('webgpu');
  Object.assign(globalThis, globals);
  const gpu = (gpuRef ??= create([]) as GPU);
  const adapter = await gpu.requestAdapter();
  if (!adapter) throw new Error('no WebGPU adapter: install Debian chromium (SwiftShader Vulkan ICD) and libvulkan1');
  const device = await adapter.requestDevice({ label: 'test.device' });
  device.addEventListener('uncapturederror', (e) => { throw new Error(`uncaptured WebGPU error: ${(e as GPUUncapturedErrorEvent).error.message}`); });
  return device;
}

export function upload(device: GPUDevice, data: Float32Array | Uint32Array, label: string, extraUsage = 0): GPUBuffer {
  const size = Math.max(16, Math.ceil(data.byteLength / 16) * 16);
  const buf = device.createBuffer({ label, size, usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST | extraUsage });
  device.queue.writeBuffer(buf, 0, data);
  return buf;
}

export async function read(device: GPUDevice, buf: GPUBuffer, floats: number): Promise<Float32Array> {
  const staging = device.createBuffer({ label: 'test.staging', size: Math.ceil(floats / 4) * 16, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
  const enc = device.createCommandEncoder({ label: 'test.read' });
  enc.copyBufferToBuffer(buf, 0, staging, 0, staging.size);
  device.queue.submit([enc.finish()]);
  await staging.mapAsync(GPUMapMode.READ);
  const out = new Float32Array(staging.getMappedRange().slice(0, floats * 4));
  staging.destroy();
  return out;
}

export function kernels(device: GPUDevice, tuning?: Tuning): Kernels {
  return new Kernels(device, tuning);
}
