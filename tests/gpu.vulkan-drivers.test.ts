import { describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { SWIFTSHADER_ICD, chooseVulkanDrivers, type VulkanHost } from '../src/gpu/vulkan-drivers.ts';

const EGL = '/repo/src/gpu/nvidia-egl-icd.json';

// A fake machine: files (path -> text), device nodes and the linker's library cache.
function host(o: { env?: Record<string, string>; files?: Record<string, string>; dev?: string[]; dri?: string[]; libs?: Record<string, string> }): VulkanHost {
  const files = o.files ?? {};
  return {
    env: o.env ?? {},
    exists: (p) => p in files,
    list: (dir) => {
      if (dir === '/dev') return o.dev ?? [];
      if (dir === '/dev/dri') return o.dri ?? [];
      return Object.keys(files).filter((p) => p.startsWith(dir + '/')).map((p) => p.slice(dir.length + 1));
    },
    read: (p) => files[p],
    findLibrary: (so) => o.libs?.[so],
  };
}
const icd = (lib: string) => JSON.stringify({ file_format_version: '1.0.1', ICD: { library_path: lib, api_version: '1.3.0' } });
const MESA = {
  '/usr/share/vulkan/icd.d/intel_icd.x86_64.json': icd('/usr/lib/x86_64-linux-gnu/libvulkan_intel.so'),
  '/usr/share/vulkan/icd.d/lvp_icd.x86_64.json': icd('/usr/lib/x86_64-linux-gnu/libvulkan_lvp.so'),
  '/usr/share/vulkan/icd.d/radeon_icd.x86_64.json': icd('/usr/lib/x86_64-linux-gnu/libvulkan_radeon.so'),
};
const SWIFT = { [SWIFTSHADER_ICD]: icd('./libvk_swiftshader.so') };

describe('chooseVulkanDrivers', () => {
  it('leaves the environment alone when the user named the drivers', () => {
    expect(chooseVulkanDrivers(host({ env: { VK_ICD_FILENAMES: '/x.json' }, files: SWIFT, dev: ['nvidia0'] }), EGL)).toBeNull();
    expect(chooseVulkanDrivers(host({ env: { VK_DRIVER_FILES: '/x.json' }, files: SWIFT }), EGL)).toBeNull();
  });

  it('without a GPU device: SwiftShader only, even with Mesa manifests installed (this CI machine)', () => {
    const c = chooseVulkanDrivers(host({ files: { ...MESA, ...SWIFT } }), EGL)!;
    expect(c.files).toEqual([SWIFTSHADER_ICD]);
  });

  it('an NVIDIA GPU without a display: its EGL entry first, its own manifest next, SwiftShader last', () => {
    const c = chooseVulkanDrivers(host({
      files: { '/usr/share/vulkan/icd.d/nvidia_icd.json': icd('libGLX_nvidia.so.0'), ...MESA, ...SWIFT, [EGL]: icd('libEGL_nvidia.so.0') },
      dev: ['null', 'nvidia0', 'nvidiactl', 'nvidia-uvm'],
      libs: { 'libEGL_nvidia.so.0': '/usr/local/nvidia/lib64/libEGL_nvidia.so.0' },
    }), EGL)!;
    expect(c.files).toEqual([EGL, '/usr/share/vulkan/icd.d/nvidia_icd.json', SWIFTSHADER_ICD]);
    expect(c.why).toMatch(/NVIDIA through \/usr\/local\/nvidia\/lib64\/libEGL_nvidia\.so\.0 \(headless\)/);
  });

  it('an NVIDIA GPU and a render node: EGL, the NVIDIA manifest, then Mesa, each once', () => {
    const c = chooseVulkanDrivers(host({
      files: { '/usr/share/vulkan/icd.d/nvidia_icd.json': icd('libGLX_nvidia.so.0'), ...MESA, [EGL]: icd('libEGL_nvidia.so.0') },
      dev: ['nvidia0'], dri: ['renderD128'],
      libs: { 'libEGL_nvidia.so.0': '/usr/lib/x86_64-linux-gnu/libEGL_nvidia.so.0' },
    }), EGL)!;
    expect(c.files).toEqual([EGL, '/usr/share/vulkan/icd.d/nvidia_icd.json',
      '/usr/share/vulkan/icd.d/intel_icd.x86_64.json', '/usr/share/vulkan/icd.d/radeon_icd.x86_64.json']);
  });

  it('an NVIDIA manifest but no EGL library: the manifest alone', () => {
    const c = chooseVulkanDrivers(host({ files: { '/etc/vulkan/icd.d/nvidia_icd.json': icd('libGLX_nvidia.so.0'), [EGL]: icd('libEGL_nvidia.so.0') }, dev: ['nvidia0'] }), EGL)!;
    expect(c.files).toEqual(['/etc/vulkan/icd.d/nvidia_icd.json']);
  });

  it('the shipped EGL manifest names the library by soname, for the dynamic linker to find', () => {
    const text = readFileSync(new URL('../src/gpu/nvidia-egl-icd.json', import.meta.url), 'utf8');
    expect(JSON.parse(text).ICD.library_path).toBe('libEGL_nvidia.so.0');
  });

  it('an NVIDIA device with no Vulkan driver says so and falls back to SwiftShader', () => {
    const c = chooseVulkanDrivers(host({ files: SWIFT, dev: ['nvidia0'] }), EGL)!;
    expect(c.files).toEqual([SWIFTSHADER_ICD]);
    expect(c.why).toMatch(/an NVIDIA device but no NVIDIA Vulkan driver/);
  });

  it('a render node: the hardware Mesa drivers, not the software ones, then SwiftShader', () => {
    const c = chooseVulkanDrivers(host({ files: { ...MESA, ...SWIFT, '/etc/vulkan/icd.d/broken.json': '{not json' }, dri: ['card0', 'renderD128'] }), EGL)!;
    expect(c.files).toEqual([
      '/usr/share/vulkan/icd.d/intel_icd.x86_64.json', '/usr/share/vulkan/icd.d/radeon_icd.x86_64.json', SWIFTSHADER_ICD,
    ]);
  });

  it('skips a manifest its schema refuses and names the field in the log line', () => {
    const bad = {
      '/etc/vulkan/icd.d/empty.json': icd(''),
      '/etc/vulkan/icd.d/number.json': JSON.stringify({ ICD: { library_path: 7 } }),
      '/etc/vulkan/icd.d/none.json': JSON.stringify({ file_format_version: '1.0.1' }),
    };
    const c = chooseVulkanDrivers(host({ files: { ...MESA, ...SWIFT, ...bad }, dri: ['renderD128'] }), EGL)!;
    expect(c.files).toEqual([
      '/usr/share/vulkan/icd.d/intel_icd.x86_64.json', '/usr/share/vulkan/icd.d/radeon_icd.x86_64.json', SWIFTSHADER_ICD,
    ]);
    expect(c.why).toContain('skipped /etc/vulkan/icd.d/empty.json.ICD.library_path must have at least 1 characters');
    expect(c.why).toContain('skipped /etc/vulkan/icd.d/number.json.ICD.library_path must be string, got 7');
    expect(c.why).toContain('skipped /etc/vulkan/icd.d/none.json.ICD is required');
  });

  it('nothing known: the loader searches as it would by itself', () => {
    expect(chooseVulkanDrivers(host({ files: MESA }), EGL)).toBeNull();
  });
});

describe('choosing drivers from a worker thread', () => {
  // A worker's process.env is its own copy: setting VK_ICD_FILENAMES there never reaches the
  // Vulkan loader, so Dawn would see the default drivers. bench:sim picks them in the main thread.
  it('fails with what to do instead of choosing silently in vain', async () => {
    const { Worker } = await import('node:worker_threads');
    const register = new URL('../scripts/node-register.mjs', import.meta.url).href;
    const nodeGpu = new URL('../src/gpu/node-gpu.ts', import.meta.url).href;
    const env: Record<string, string> = { ...process.env } as Record<string, string>;
    delete env.VK_ICD_FILENAMES;
    const w = new Worker(`const { parentPort } = require('node:worker_threads');
      import('${register}').then(() => import('${nodeGpu}')).then((m) => { m.pickVulkanDrivers(); parentPort.postMessage('chose'); })
        .catch((e) => parentPort.postMessage(e.message));`, { eval: true, env });
    const msg = await new Promise<string>((resolve, reject) => { w.once('message', resolve); w.once('error', reject); });
    await w.terminate();
    expect(msg).toMatch(/must be chosen before worker threads start.*call pickVulkanDrivers\(\) in the main thread, or set VK_ICD_FILENAMES/);
  });
});
