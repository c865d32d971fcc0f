// Which Vulkan drivers Dawn may use in Node. The Vulkan loader reads VK_ICD_FILENAMES when Dawn
// creates its instance; we set it unless the user did, so that:
// - a machine with an NVIDIA GPU uses it even without a display. The driver's own manifest names
//   libGLX_nvidia, whose Vulkan entry fails on a headless server ("Could not get
//   'vkCreateInstance'", seen on an H100 image); the same driver's libEGL_nvidia works there, so
//   its manifest (nvidia-egl-icd.json, shipped beside this file, naming the library by soname)
//   comes first;
// - a machine with a Mesa render node (/dev/dri/renderD*) uses its hardware drivers;
// - SwiftShader (Debian's chromium) comes last, so a machine without a GPU still trains.
// Pure over a small view of the host, so every case is tested without the hardware.
import Type from 'typebox';
import { schemaProblem } from '../protocol/check.ts';

export interface VulkanHost {
  env: Record<string, string | undefined>;
  exists(path: string): boolean;
  /** File names in a directory ([] when it does not exist). */
  list(dir: string): string[];
  /** A file's text, or undefined when it cannot be read. */
  read(path: string): string | undefined;
  /** Absolute path of a shared library the dynamic linker can load, e.g. from `ldconfig -p`. */
  findLibrary(soname: string): string | undefined;
}

export interface DriverChoice {
  /** Manifests for VK_ICD_FILENAMES, in order of preference. */
  files: string[];
  /** One line for logs. */
  why: string;
}

export const SWIFTSHADER_ICD = '/usr/lib/chromium/vk_swiftshader_icd.json';
/** Where the loader looks for driver manifests by itself on Linux. */
export const ICD_DIRS = ['/etc/vulkan/icd.d', '/usr/local/share/vulkan/icd.d', '/usr/share/vulkan/icd.d'];
const SOFTWARE_LIB = /swiftshader|lvp|lavapipe|llvmpipe/i;

/**
 * The driver list to use, or null to leave the environment as it is (the user chose).
 * `eglManifest`: the path of nvidia-egl-icd.json.
 */
export function chooseVulkanDrivers(host: VulkanHost, eglManifest: string): DriverChoice | null {
  if (host.env.VK_ICD_FILENAMES || host.env.VK_DRIVER_FILES) return null;
  const read = ICD_DIRS.flatMap((dir) => host.list(dir).filter((f) => f.endsWith('.json')).map((f) => `${dir}/${f}`))
    .map((path) => ({ path, ...libraryOf(path, host.read(path)) }));
  const manifests = read.filter((m): m is { path: string; lib: string } => m.lib !== undefined && !SOFTWARE_LIB.test(m.lib));
  const files: string[] = [];
  const why: string[] = [];
  // A broken manifest is the loader's to skip, not ours to fail on; the log line names it.
  for (const m of read) if (m.problem !== undefined) why.push(`skipped ${m.problem}`);

  const nvidiaDevice = host.list('/dev').some((f) => /^nvidia\d+$/.test(f));
  if (nvidiaDevice) {
    const egl = host.findLibrary('libEGL_nvidia.so.0');
    if (egl && host.exists(eglManifest)) {
      files.push(eglManifest);
      why.push(`NVIDIA through ${egl} (headless)`);
    }
    const own = manifests.filter((m) => /nvidia/i.test(m.lib));
    files.push(...own.map((m) => m.path));
    if (own.length) why.push(`NVIDIA manifest ${own.map((m) => m.path).join(', ')}`);
    if (!egl && !own.length) why.push('an NVIDIA device but no NVIDIA Vulkan driver (libEGL_nvidia.so.0 or a manifest)');
  }
  if (host.list('/dev/dri').some((f) => f.startsWith('renderD'))) {
    const mesa = manifests.filter((m) => !/nvidia/i.test(m.lib));
    files.push(...mesa.map((m) => m.path));
    if (mesa.length) why.push(`render node drivers ${mesa.map((m) => m.path).join(', ')}`);
  }
  if (host.exists(SWIFTSHADER_ICD)) {
    files.push(SWIFTSHADER_ICD);
    why.push('SwiftShader last');
  }
  if (!files.length) return null; // nothing known: let the loader search as it would
  return { files, why: why.join('; ') };
}

/** The one field of a driver manifest read here: the library the loader would open. */
const IcdManifest = Type.Object({ ICD: Type.Object({ library_path: Type.String({ minLength: 1, maxLength: 4096 }) }) });

function libraryOf(path: string, text: string | undefined): { lib?: string; problem?: string } {
  if (text === undefined) return {};
  let v: unknown;
  try { v = JSON.parse(text); } catch { return { problem: `${path} (not JSON)` }; }
  const problem = schemaProblem(IcdManifest, v, path);
  return problem === null ? { lib: (v as { ICD: { library_path: string } }).ICD.library_path } : { problem };
}
