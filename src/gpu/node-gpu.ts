// WebGPU for Node (headless peers, benchmarks, GPU tests): Dawn from the npm package `webgpu`.
// Without a GPU driver Dawn runs on SwiftShader, the software Vulkan driver that Debian's
// chromium package ships. Imported dynamically so browser bundles never pull the native addon.
import { existsSync } from 'node:fs';
import { acquireDevice, type AcquireOptions, type AcquiredDevice } from './device.ts';
import { NoAdapterError } from './errors.ts';

export const SWIFTSHADER_ICD = '/usr/lib/chromium/vk_swiftshader_icd.json';

export const NODE_NO_ADAPTER_HINT =
  'In Node, Dawn needs a Vulkan driver: install Debian\'s chromium (its SwiftShader Vulkan ICD, ' +
  `${SWIFTSHADER_ICD}) and libvulkan1 (apt-get install chromium libvulkan1), ` +
  'or run on a machine with a GPU driver.';

let entry: Promise<GPU> | undefined;

/**
 * The process-wide GPU entry point (one Dawn instance). Uses SwiftShader unless
 * VK_ICD_FILENAMES already names a driver; set it yourself to pick a hardware driver.
 */
export function nodeGpu(): Promise<GPU> {
  entry ??= load();
  return entry;
}

async function load(): Promise<GPU> {
  // The Vulkan loader reads this when Dawn creates its instance, i.e. in create() below.
  if (!process.env.VK_ICD_FILENAMES && existsSync(SWIFTSHADER_ICD)) process.env.VK_ICD_FILENAMES = SWIFTSHADER_ICD;
  const { create, globals } = await import('webgpu');
  // GPUBufferUsage, GPUMapMode, GPUShaderStage... are globals in a browser; kernels use them.
  Object.assign(globalThis, globals);
  const gpu = create([]);
  // Turn Dawn's bare `null` into an error that says which packages to install. An own property
  // on the native object: a wrapper object would break its other methods' `this` checks.
  const requestAdapter = gpu.requestAdapter.bind(gpu);
  Object.defineProperty(gpu, 'requestAdapter', {
    configurable: true,
    value: async (options?: GPURequestAdapterOptions): Promise<GPUAdapter> => {
      const adapter = await requestAdapter(options);
      if (!adapter) throw new NoAdapterError(NODE_NO_ADAPTER_HINT);
      return adapter;
    },
  });
  return gpu;
}

/** acquireDevice() on Dawn, with the install hint when there is no adapter. */
export async function acquireNodeDevice(opts: Omit<AcquireOptions, 'gpu'> = {}): Promise<AcquiredDevice> {
  return acquireDevice({ noAdapterHint: NODE_NO_ADAPTER_HINT, ...opts, gpu: await nodeGpu() });
}
