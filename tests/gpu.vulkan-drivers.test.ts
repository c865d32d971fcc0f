import { describe, expect, it } from 'vitest';
import { SWIFTSHADER_ICD, chooseVulkanDrivers, type VulkanHost } from '../src/gpu/vulkan-drivers.ts';

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
    expect(chooseVulkanDrivers(host({ env: { VK_ICD_FILENAMES: '/x.json' }, files: SWIFT, dev: ['nvidia0'] }), '/tmp')).toBeNull();
    expect(chooseVulkanDrivers(host({ env: { VK_DRIVER_FILES: '/x.json' }, files: SWIFT }), '/tmp')).toBeNull();
  });

  it('without a GPU device: SwiftShader only, even with Mesa manifests installed (this CI machine)', () => {
    const c = chooseVulkanDrivers(host({ files: { ...MESA, ...SWIFT } }), '/tmp')!;
    expect(c.files).toEqual([SWIFTSHADER_ICD]);
    expect(c.write).toBeUndefined();
  });

  it('an NVIDIA GPU without a display: its EGL entry first, its own manifest next, SwiftShader last', () => {
    const c = chooseVulkanDrivers(host({
      files: { '/usr/share/vulkan/icd.d/nvidia_icd.json': icd('libGLX_nvidia.so.0'), ...MESA, ...SWIFT },
      dev: ['null', 'nvidia0', 'nvidiactl', 'nvidia-uvm'],
      libs: { 'libEGL_nvidia.so.0': '/usr/local/nvidia/lib64/libEGL_nvidia.so.0' },
    }), '/tmp/x')!;
    expect(c.files).toEqual(['/tmp/x/murmur-nvidia-egl-icd.json', '/usr/share/vulkan/icd.d/nvidia_icd.json', SWIFTSHADER_ICD]);
    expect(c.write!.path).toBe('/tmp/x/murmur-nvidia-egl-icd.json');
    expect(JSON.parse(c.write!.text).ICD.library_path).toBe('/usr/local/nvidia/lib64/libEGL_nvidia.so.0');
    expect(c.why).toMatch(/NVIDIA through \/usr\/local\/nvidia\/lib64\/libEGL_nvidia\.so\.0 \(headless\)/);
  });

  it('an NVIDIA device with no Vulkan driver says so and falls back to SwiftShader', () => {
    const c = chooseVulkanDrivers(host({ files: SWIFT, dev: ['nvidia0'] }), '/tmp')!;
    expect(c.files).toEqual([SWIFTSHADER_ICD]);
    expect(c.why).toMatch(/an NVIDIA device but no NVIDIA Vulkan driver/);
  });

  it('a render node: the hardware Mesa drivers, not the software ones, then SwiftShader', () => {
    const c = chooseVulkanDrivers(host({ files: { ...MESA, ...SWIFT, '/etc/vulkan/icd.d/broken.json': '{not json' }, dri: ['card0', 'renderD128'] }), '/tmp')!;
    expect(c.files).toEqual([
      '/usr/share/vulkan/icd.d/intel_icd.x86_64.json', '/usr/share/vulkan/icd.d/radeon_icd.x86_64.json', SWIFTSHADER_ICD,
    ]);
  });

  it('nothing known: the loader searches as it would by itself', () => {
    expect(chooseVulkanDrivers(host({ files: MESA }), '/tmp')).toBeNull();
  });
});
