// GPU test harness (Node, Dawn on SwiftShader unless VK_ICD_FILENAMES names another driver).
//
//   import { gpuTest, uploadF32, emptyF32, readF32, runCompute } from './support/gpu.ts';
//   gpuTest('adds', async (device) => {
//     const a = uploadF32(device, x), out = emptyF32(device, n);
//     await runCompute(device, wgsl, 'main', [out, a], Math.ceil(n / 64));
//     expect(await readF32(device, out, n)).toEqual(want);
//   });
//
// - getTestDevice(): one device per test file (vitest gives each file its own module registry).
//   No adapter -> the test FAILS with what to install; it never skips.
// - withGpuScope()/gpuTest(): pushes validation, out-of-memory and internal error scopes, runs the
//   body, pops them and fails on any GPU error, then destroys every buffer the helpers below made
//   inside it. Scopes are per device, so do not use these with it.concurrent.
import { it } from 'vitest';
import { describeAdapter, type AcquiredDevice } from '../../src/gpu/device.ts';
import { acquireNodeDevice } from '../../src/gpu/node-gpu.ts';

let shared: Promise<AcquiredDevice> | undefined;

/** The file's shared device with its adapter summary (printed once, so CI logs show the GPU). */
export function getTestGpu(): Promise<AcquiredDevice> {
  shared ??= acquireNodeDevice({ label: 'test' }).then((g) => {
    console.log(`[gpu] adapter: ${describeAdapter(g.info)}`);
    return g;
  });
  return shared;
}

export async function getTestDevice(): Promise<GPUDevice> {
  return (await getTestGpu()).device;
}

// Buffers made by the helpers while a scope is open; the innermost scope owns them.
const scopes: GPUBuffer[][] = [];
function track(buffer: GPUBuffer): GPUBuffer {
  scopes.at(-1)?.push(buffer);
  return buffer;
}

const SCOPES: GPUErrorFilter[] = ['validation', 'out-of-memory', 'internal'];

/**
 * Runs fn inside error scopes and throws the first GPU error it caused (with the filter that caught
 * it); buffers made through the helpers during fn are destroyed afterwards, pass or fail.
 */
export async function withGpuScope<T>(device: GPUDevice, fn: () => T | Promise<T>): Promise<T> {
  for (const f of SCOPES) device.pushErrorScope(f);
  const owned: GPUBuffer[] = [];
  scopes.push(owned);
  let result: T | undefined, thrown: unknown, threw = false;
  try {
    result = await fn();
  } catch (e) {
    thrown = e;
    threw = true;
  } finally {
    scopes.splice(scopes.indexOf(owned), 1);
  }
  const gpuErrors: string[] = [];
  for (const f of [...SCOPES].reverse()) {
    const err = await device.popErrorScope();
    if (err) gpuErrors.push(`${f} error: ${err.message}`);
  }
  for (const b of owned) b.destroy();
  // A GPU error usually explains a wrong result, so it wins over the body's own failure.
  if (gpuErrors.length > 0) {
    const also = threw ? `\n(the test body also threw: ${(thrown as Error)?.message ?? thrown})` : '';
    throw new Error(`WebGPU ${gpuErrors.join('\n')}${also}`, threw ? { cause: thrown } : undefined);
  }
  if (threw) throw thrown;
  return result as T;
}

/** A vitest test that runs on the shared device inside withGpuScope. */
export function gpuTest(name: string, fn: (device: GPUDevice) => unknown, timeout?: number): void {
  it(name, async () => {
    const device = await getTestDevice();
    await withGpuScope(device, () => fn(device));
  }, timeout);
}

const DEFAULT_USAGE = () => GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST;

function upload(device: GPUDevice, bytes: Uint8Array, usage: number, label: string): GPUBuffer {
  // WebGPU sizes are multiples of 4 and at least 4 (an empty binding is invalid).
  const size = Math.max(4, Math.ceil(bytes.byteLength / 4) * 4);
  const buffer = track(device.createBuffer({ label, size, usage, mappedAtCreation: true }));
  new Uint8Array(buffer.getMappedRange()).set(bytes);
  buffer.unmap();
  return buffer;
}

export function uploadF32(device: GPUDevice, data: ArrayLike<number>, usage = DEFAULT_USAGE(), label = 'test.f32'): GPUBuffer {
  const a = data instanceof Float32Array ? data : Float32Array.from(data);
  return upload(device, new Uint8Array(a.buffer, a.byteOffset, a.byteLength), usage, label);
}

export function uploadU32(device: GPUDevice, data: ArrayLike<number>, usage = DEFAULT_USAGE(), label = 'test.u32'): GPUBuffer {
  const a = data instanceof Uint32Array ? data : Uint32Array.from(data);
  return upload(device, new Uint8Array(a.buffer, a.byteOffset, a.byteLength), usage, label);
}

/** A zero-filled buffer of `count` 32-bit elements (outputs, gradients). */
export function emptyF32(device: GPUDevice, count: number, usage = DEFAULT_USAGE(), label = 'test.out'): GPUBuffer {
  return track(device.createBuffer({ label, size: Math.max(4, count * 4), usage }));
}

async function readBytes(device: GPUDevice, buffer: GPUBuffer, bytes: number): Promise<ArrayBuffer> {
  const size = Math.max(4, Math.ceil(bytes / 4) * 4);
  if (size > buffer.size) throw new Error(`read of ${bytes} bytes from "${buffer.label}" which has only ${buffer.size}`);
  const staging = device.createBuffer({ label: 'test.readback', size, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
  try {
    const enc = device.createCommandEncoder({ label: 'test.readback' });
    enc.copyBufferToBuffer(buffer, 0, staging, 0, size);
    device.queue.submit([enc.finish()]);
    await staging.mapAsync(GPUMapMode.READ);
    return staging.getMappedRange().slice(0, bytes);
  } finally {
    staging.destroy();
  }
}

/** The first `count` floats of a buffer (which needs COPY_SRC usage). */
export async function readF32(device: GPUDevice, buffer: GPUBuffer, count: number): Promise<Float32Array> {
  return new Float32Array(await readBytes(device, buffer, count * 4));
}

export async function readU32(device: GPUDevice, buffer: GPUBuffer, count: number): Promise<Uint32Array> {
  return new Uint32Array(await readBytes(device, buffer, count * 4));
}

/**
 * Compiles `code`, binds `bindings[i]` to @group(0) @binding(i), dispatches and submits.
 * WGSL compile errors throw with line:column (clearer than the scope's one-line message).
 * `constants` fill WGSL `override`s (tile sizes).
 */
export async function runCompute(
  device: GPUDevice,
  code: string,
  entry: string,
  bindings: (GPUBuffer | GPUBufferBinding)[],
  dispatch: number | [number, number?, number?],
  constants?: Record<string, number>,
): Promise<void> {
  const module = device.createShaderModule({ label: `test.${entry}`, code });
  const info = await module.getCompilationInfo();
  const errors = info.messages.filter((m) => m.type === 'error');
  if (errors.length > 0) {
    throw new Error(`WGSL for "${entry}" does not compile:\n` +
      errors.map((m) => `  ${m.lineNum}:${m.linePos} ${m.message}`).join('\n'));
  }
  const pipeline = device.createComputePipeline({
    label: `test.${entry}`,
    layout: 'auto',
    compute: { module, entryPoint: entry, constants },
  });
  const bindGroup = device.createBindGroup({
    label: `test.${entry}`,
    layout: pipeline.getBindGroupLayout(0),
    entries: bindings.map((b, binding) => ({ binding, resource: 'buffer' in b ? b : { buffer: b } })),
  });
  const [x, y = 1, z = 1] = typeof dispatch === 'number' ? [dispatch] : dispatch;
  const enc = device.createCommandEncoder({ label: `test.${entry}` });
  const pass = enc.beginComputePass({ label: `test.${entry}` });
  pass.setPipeline(pipeline);
  pass.setBindGroup(0, bindGroup);
  pass.dispatchWorkgroups(x, y, z);
  pass.end();
  device.queue.submit([enc.finish()]);
}
