// WebGPU for Node (headless peers, benchmarks, GPU tests): Dawn from the npm package `webgpu`.
// Without a GPU driver Dawn runs on SwiftShader, the software Vulkan driver that Debian's
// chromium package ships. Imported dynamically so browser bundles never pull the native addon.
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { isMainThread } from 'node:worker_threads';
import { acquireDevice, type AcquireOptions, type AcquiredDevice } from './device.ts';
import { NoAdapterError } from './errors.ts';
import { SWIFTSHADER_ICD, chooseVulkanDrivers, type VulkanHost } from './vulkan-drivers.ts';

export { SWIFTSHADER_ICD };

export const NODE_NO_ADAPTER_HINT =
  'In Node, Dawn needs the Vulkan loader and a driver: install Debian\'s chromium (its SwiftShader Vulkan ICD, ' +
  `${SWIFTSHADER_ICD}) and libvulkan1 (apt-get install chromium libvulkan1), ` +
  'or on a GPU machine libvulkan1 beside its driver; MURMUR_DEBUG_GPU=1 prints the drivers offered.';

let entry: Promise<GPU> | undefined;

/**
 * The process-wide GPU entry point (one Dawn instance). Unless VK_ICD_FILENAMES already names
 * the drivers, it offers Dawn this machine's GPU drivers first and SwiftShader last
 * (vulkan-drivers.ts), and asks for the high-performance adapter.
 */
export function nodeGpu(): Promise<GPU> {
  entry ??= load();
  return entry;
}

/**
 * Sets VK_ICD_FILENAMES to this machine's drivers (vulkan-drivers.ts) unless it is already set.
 * The Vulkan loader reads the process environment, which only the main thread can change: a
 * program that uses the GPU from worker threads calls this before starting them (they inherit
 * it). Returns why those drivers, or null when the environment already named them.
 */
export function pickVulkanDrivers(): string | null {
  const choice = chooseVulkanDrivers(hostView(), fileURLToPath(new URL('./nvidia-egl-icd.json', import.meta.url)));
  if (!choice) return null;
  if (!isMainThread) {
    throw new Error('the Vulkan drivers must be chosen before worker threads start (a worker\'s process.env does not reach the ' +
      `Vulkan loader): call pickVulkanDrivers() in the main thread, or set VK_ICD_FILENAMES (here: ${choice.files.join(':')})`);
  }
  process.env.VK_ICD_FILENAMES = choice.files.join(':');
  return choice.why;
}

async function load(): Promise<GPU> {
  // The Vulkan loader reads this when Dawn creates its instance, i.e. in create() below.
  const why = pickVulkanDrivers();
  if (process.env.MURMUR_DEBUG_GPU) {
    console.error(`[murmur gpu] Vulkan drivers: ${why ?? `as the environment says (VK_ICD_FILENAMES=${process.env.VK_ICD_FILENAMES ?? ''})`}`);
  }
  const { create, globals } = await import('webgpu');
  // GPUBufferUsage, GPUMapMode, GPUShaderStage... are globals in a browser; kernels use them.
  Object.assign(globalThis, globals);
  const gpu = create([]);
  // Turn Dawn's bare `null` into an error that says which packages to install. An own property
  // on the native object: a wrapper object would break its other methods' `this` checks.
  const requestAdapter = gpu.requestAdapter.bind(gpu);
  Object.defineProperty(gpu, 'requestAdapter', {
    configurable: true,
    // A GPU before SwiftShader when both are offered.
    value: async (options?: GPURequestAdapterOptions): Promise<GPUAdapter> => {
      const adapter = await requestAdapter({ powerPreference: 'high-performance', ...options });
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

/** This machine, as chooseVulkanDrivers sees it. */
function hostView(): VulkanHost {
  return {
    env: process.env,
    exists: existsSync,
    list: (dir) => { try { return readdirSync(dir); } catch { return []; } },
    read: (path) => { try { return readFileSync(path, 'utf8'); } catch { return undefined; } },
    findLibrary,
  };
}

/** Absolute path of a library in the dynamic linker's cache (`ldconfig -p`), if any. */
function findLibrary(soname: string): string | undefined {
  for (const ldconfig of ['/sbin/ldconfig', '/usr/sbin/ldconfig', 'ldconfig']) {
    try {
      const out = execFileSync(ldconfig, ['-p'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'], timeout: 5000 });
      for (const line of out.split('\n')) {
        const m = /^\s*(\S+) \(([^)]*)\) => (\S+)$/.exec(line);
        if (m && m[1] === soname && (process.arch !== 'x64' || m[2].includes('x86-64'))) return m[3];
      }
      return undefined;
    } catch {
      // not at this path; try the next
    }
  }
  return undefined;
}

