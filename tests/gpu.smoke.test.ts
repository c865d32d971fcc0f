// Proves the Node GPU harness really runs WGSL (Dawn on SwiftShader here) and that its error
// scopes really catch GPU errors, so kernel tests built on it cannot pass vacuously.
import { describe, expect, it } from 'vitest';
import vectorAddWgsl from './support/vector-add.wgsl?raw';
import { emptyF32, getTestDevice, getTestGpu, gpuTest, readF32, runCompute, uploadF32, withGpuScope } from './support/gpu.ts';
import { Rng } from '../src/model/rng.ts';

function vectorAddReference(a: Float32Array, b: Float32Array): Float32Array {
  const out = new Float32Array(a.length);
  for (let i = 0; i < a.length; i++) out[i] = Math.fround(a[i] + b[i]);
  return out;
}

describe('Node WebGPU harness', () => {
  it('reports which adapter runs the tests', async () => {
    const { info, limits } = await getTestGpu();
    console.log(`[gpu] vendor=${info.vendor} architecture=${info.architecture} description="${info.description}" software=${info.isSoftware}`);
    expect(info.vendor + info.architecture + info.description).not.toBe('');
    expect(limits.maxStorageBufferBindingSize).toBeGreaterThan(0);
  });

  gpuTest('vectorAdd matches TypeScript exactly on random inputs', async (device) => {
    const rng = new Rng(1234, 0);
    const n = 1000 + rng.int(100); // deliberately not a multiple of the workgroup size
    const a = new Float32Array(n).map(() => rng.normal() * 100);
    const b = new Float32Array(n).map(() => rng.normal());
    const out = emptyF32(device, n);
    await runCompute(device, vectorAddWgsl, 'vectorAdd', [out, uploadF32(device, a), uploadF32(device, b)], Math.ceil(n / 64));
    const got = await readF32(device, out, n);
    expect(got).toEqual(vectorAddReference(a, b));
  });

  gpuTest('workgroup size is an override constant', async (device) => {
    const a = Float32Array.from({ length: 300 }, (_, i) => i), b = new Float32Array(300).fill(0.5);
    const out = emptyF32(device, 300);
    await runCompute(device, vectorAddWgsl, 'vectorAdd', [out, uploadF32(device, a), uploadF32(device, b)], Math.ceil(300 / 128), { WG: 128 });
    expect(await readF32(device, out, 300)).toEqual(vectorAddReference(a, b));
  });

  it('error scope catches an invalid binding (storage binding of a MAP_READ buffer)', async () => {
    const device = await getTestDevice();
    const run = withGpuScope(device, async () => {
      const module = device.createShaderModule({ code: vectorAddWgsl });
      const pipeline = device.createComputePipeline({ layout: 'auto', compute: { module, entryPoint: 'vectorAdd' } });
      const notStorage = device.createBuffer({ size: 64, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
      const ok = uploadF32(device, new Float32Array(16));
      device.createBindGroup({
        layout: pipeline.getBindGroupLayout(0),
        entries: [{ binding: 0, resource: { buffer: notStorage } }, { binding: 1, resource: { buffer: ok } }, { binding: 2, resource: { buffer: ok } }],
      });
      notStorage.destroy();
    });
    await expect(run).rejects.toThrow(/validation error: .*usage/is);
  });

  it('error scope catches a shader that does not compile', async () => {
    const device = await getTestDevice();
    const run = withGpuScope(device, () => {
      device.createShaderModule({ label: 'broken', code: 'fn main( { this is not wgsl' });
    });
    await expect(run).rejects.toThrow(/validation error/);
  });

  it('runCompute names the line of a WGSL compile error', async () => {
    const device = await getTestDevice();
    const bad = vectorAddWgsl.replace('out[i] = a[i] + b[i];', 'out[i] = a[i] + missing[i];');
    const run = withGpuScope(device, () => runCompute(device, bad, 'vectorAdd', [], 1));
    await expect(run).rejects.toThrow(/15:\d+ .*missing/);
  });

  it('the scope is clean again after a caught error', async () => {
    const device = await getTestDevice();
    await expect(withGpuScope(device, () => 42)).resolves.toBe(42);
  });
});
