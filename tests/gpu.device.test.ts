// acquireDevice on Dawn: limits are checked before requestDevice, loss is reported as a typed
// error, and a machine without a Vulkan driver gets an error that says what to install.
import { execFile } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { acquireDevice, checkLimits } from '../src/gpu/device.ts';
import { DeviceLostError, GpuError, InsecureContextError, LimitsTooSmallError, NoWebGPUError } from '../src/gpu/errors.ts';
import { acquireNodeDevice, nodeGpu } from '../src/gpu/node-gpu.ts';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');

describe('acquireDevice', () => {
  it('grants requested limits the adapter has', async () => {
    const adapter = await (await nodeGpu()).requestAdapter();
    const want = Math.min(adapter!.limits.maxStorageBufferBindingSize, 256 << 20);
    const g = await acquireNodeDevice({ label: 'limits', requiredLimits: { maxStorageBufferBindingSize: want } });
    expect(g.limits.maxStorageBufferBindingSize).toBeGreaterThanOrEqual(want);
    expect(g.device.label).toBe('limits');
    g.device.destroy();
  });

  it('names the limit the adapter cannot give, before requesting a device', async () => {
    const adapter = (await (await nodeGpu()).requestAdapter())!;
    const available = adapter.limits.maxComputeWorkgroupStorageSize;
    const err = await acquireNodeDevice({ requiredLimits: { maxComputeWorkgroupStorageSize: available + 1 } }).catch((e) => e);
    expect(err).toBeInstanceOf(LimitsTooSmallError);
    expect(err).toMatchObject({ limit: 'maxComputeWorkgroupStorageSize', needed: available + 1, available, code: 'limits-too-small' });
    expect(err.message).toMatch(/maxComputeWorkgroupStorageSize = \d+, but \d+ is needed.*smaller model preset/);
  });

  it('treats min*Alignment limits as "at least the adapter value"', async () => {
    const adapter = (await (await nodeGpu()).requestAdapter())!;
    const align = adapter.limits.minStorageBufferOffsetAlignment;
    expect(() => checkLimits(adapter, { minStorageBufferOffsetAlignment: align * 2 })).not.toThrow();
    if (align > 1) expect(() => checkLimits(adapter, { minStorageBufferOffsetAlignment: align / 2 })).toThrow(LimitsTooSmallError);
  });

  it('rejects a misspelt limit by name', async () => {
    const adapter = (await (await nodeGpu()).requestAdapter())!;
    expect(() => checkLimits(adapter, { maxStorageBufferSize: 1 })).toThrow(/unknown WebGPU limit "maxStorageBufferSize"/);
  });

  it('reports loss as DeviceLostError; onLost is not called for our own destroy()', async () => {
    let called = false;
    const g = await acquireNodeDevice({ onLost: () => { called = true; } });
    g.device.destroy();
    const err = await g.lost;
    expect(err).toBeInstanceOf(DeviceLostError);
    expect(err.reason).toBe('destroyed');
    expect(called).toBe(false);
  });

  it('routes uncaptured errors to onUncapturedError', async () => {
    const seen: string[] = [];
    const g = await acquireNodeDevice({ onUncapturedError: (e) => seen.push(e.message) });
    g.device.createBuffer({ size: 5, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.MAP_WRITE });
    await g.device.queue.onSubmittedWorkDone();
    for (let i = 0; i < 50 && seen.length === 0; i++) await new Promise((r) => setTimeout(r, 10));
    expect(seen.join('\n')).toMatch(/MapRead|MapWrite|usage/i);
    g.device.destroy();
  });

  it('without navigator.gpu throws NoWebGPUError', async () => {
    // Node has no navigator.gpu: exactly the "browser without WebGPU" case.
    const err = await acquireDevice().catch((e) => e);
    expect(err).toBeInstanceOf(NoWebGPUError);
    expect(err).toBeInstanceOf(GpuError);
    expect(err.message).toMatch(/navigator\.gpu is missing/);
  });

  it('outside a secure context throws InsecureContextError', async () => {
    const g = globalThis as { isSecureContext?: boolean };
    g.isSecureContext = false;
    try {
      const err = await acquireNodeDevice().catch((e) => e);
      expect(err).toBeInstanceOf(InsecureContextError);
      expect(err.message).toMatch(/WebGPU needs https: .*https:\/\/ or from http:\/\/localhost/);
    } finally {
      delete g.isSecureContext;
    }
  });

  it('with no Vulkan driver fails with what to install', async () => {
    // A child process, because the Vulkan loader reads VK_ICD_FILENAMES once per process.
    const script = "const { acquireNodeDevice } = await import('./src/gpu/node-gpu.ts');" +
      'await acquireNodeDevice().then(() => console.log("GOT A DEVICE"), (e) => console.log(e.name + ": " + e.message));';
    const { stdout } = await promisify(execFile)(process.execPath,
      ['--import', './scripts/node-register.mjs', '--input-type=module', '-e', script],
      { cwd: ROOT, env: { ...process.env, VK_ICD_FILENAMES: '/nonexistent/icd.json' }, timeout: 60_000 });
    expect(stdout).toMatch(/NoAdapterError: .*apt-get install chromium libvulkan1/);
  });
});
