// Getting a GPUDevice, the same way in a browser Worker, on a page, and in Node (Dawn).
// Every failure is one of the typed errors in ./errors.ts so the UI can show it as is; limits
// are checked against the adapter BEFORE requestDevice, because requestDevice's own rejection
// ("OperationError") does not say which limit was too big.
import { DeviceLostError, GpuError, InsecureContextError, LimitsTooSmallError, NoAdapterError, NoWebGPUError } from './errors.ts';

export interface AcquireOptions {
  /** The GPU entry point. Browser code leaves it out (navigator.gpu); Node passes nodeGpu(). */
  gpu?: GPU;
  /** Limits the model needs, e.g. { maxStorageBufferBindingSize: 64 << 20 }. */
  requiredLimits?: Record<string, number>;
  powerPreference?: GPUPowerPreference;
  /** Device label; queue and errors are labelled after it. */
  label?: string;
  /** Hint appended to NoAdapterError (Node says which packages give it a software driver). */
  noAdapterHint?: string;
  /** Called once if the device is lost for any reason but our own destroy(). */
  onLost?: (err: DeviceLostError) => void;
  /** Errors nobody captured in an error scope; default: console.error with the device label. */
  onUncapturedError?: (err: GPUError) => void;
}

export interface AdapterSummary {
  vendor: string;
  architecture: string;
  description: string;
  /** The adapter's device name where it gives one (Dawn: "nvidia-h200"; browsers often none). */
  device?: string;
  /** A CPU rasteriser (SwiftShader, llvmpipe, WARP): ~100x slower, fine for tests only. */
  isSoftware: boolean;
}

export interface AcquiredDevice {
  adapter: GPUAdapter;
  device: GPUDevice;
  info: AdapterSummary;
  /** The device's limits (what was granted, not what the adapter could give). */
  limits: GPUSupportedLimits;
  /** Resolves when the device is lost, including by destroy() (reason 'destroyed'). */
  lost: Promise<DeviceLostError>;
}

const SOFTWARE = /swiftshader|llvmpipe|lavapipe|softpipe|microsoft basic render|\bwarp\b/i;

export function summarizeAdapter(adapter: GPUAdapter): AdapterSummary {
  const info = adapter.info;
  const text = `${info.vendor} ${info.architecture} ${info.device} ${info.description}`;
  // isFallbackAdapter moved from GPUAdapter to GPUAdapterInfo; read whichever exists.
  const fallback = (info as { isFallbackAdapter?: boolean }).isFallbackAdapter
    ?? (adapter as { isFallbackAdapter?: boolean }).isFallbackAdapter ?? false;
  return {
    vendor: info.vendor,
    architecture: info.architecture,
    description: info.description,
    device: info.device,
    isSoftware: fallback || SOFTWARE.test(text),
  };
}

/** One line for logs: "google swiftshader (SwiftShader driver 5.0.0), software". */
export function describeAdapter(s: AdapterSummary): string {
  const name = [s.vendor, s.architecture].filter(Boolean).join(' ') || 'unknown GPU';
  return `${name}${s.description ? ` (${s.description})` : ''}${s.isSoftware ? ', software' : ''}`;
}

/**
 * Checks each requested limit against the adapter and throws LimitsTooSmallError for the first
 * it cannot give. "max*" limits must not exceed the adapter's; "min*Alignment" limits must not
 * be below it (a smaller alignment is the stronger demand).
 */
export function checkLimits(adapter: GPUAdapter, required: Record<string, number>, adapterName?: string): void {
  const have = adapter.limits as unknown as Record<string, number>;
  for (const [limit, needed] of Object.entries(required)) {
    const available = have[limit];
    if (typeof available !== 'number') {
      throw new GpuError('bad-limit', `unknown WebGPU limit "${limit}" requested; check the spelling (e.g. maxStorageBufferBindingSize).`);
    }
    if (!Number.isFinite(needed) || needed < 0) {
      throw new GpuError('bad-limit', `requested WebGPU limit ${limit} = ${needed} is not a non-negative number.`);
    }
    const ok = limit.startsWith('min') ? needed >= available : needed <= available;
    if (!ok) throw new LimitsTooSmallError(limit, needed, available, adapterName);
  }
}

function gpuEntry(gpu: GPU | undefined): GPU {
  // Browsers hide navigator.gpu outside secure contexts: say that, not "no WebGPU". Node has no
  // isSecureContext at all, so only an explicit false counts.
  if ((globalThis as { isSecureContext?: boolean }).isSecureContext === false) {
    throw new InsecureContextError((globalThis as { location?: Location }).location?.origin);
  }
  if (gpu) return gpu;
  const nav = (globalThis as { navigator?: Navigator }).navigator;
  if (!nav?.gpu) throw new NoWebGPUError(typeof document === 'undefined' ? 'this worker' : 'this browser');
  return nav.gpu;
}

/**
 * Features the kernels use where the adapter has them: `subgroups` (quad-shared loads in the
 * matrix products, Kernels.quads). Nothing here is required; without it the kernels run plain.
 */
export const OPTIONAL_FEATURES: readonly GPUFeatureName[] = ['subgroups'];

/** The optional features this adapter has, for requestDevice's requiredFeatures. */
export function optionalFeatures(adapter: GPUAdapter): GPUFeatureName[] {
  return OPTIONAL_FEATURES.filter((f) => adapter.features.has(f));
}

export async function acquireDevice(opts: AcquireOptions = {}): Promise<AcquiredDevice> {
  const label = opts.label ?? 'murmur';
  const gpu = gpuEntry(opts.gpu);
  const adapter = await gpu.requestAdapter(opts.powerPreference ? { powerPreference: opts.powerPreference } : undefined);
  if (!adapter) throw new NoAdapterError(opts.noAdapterHint);
  const info = summarizeAdapter(adapter);

  const requiredLimits = opts.requiredLimits ?? {};
  checkLimits(adapter, requiredLimits, describeAdapter(info));

  let device: GPUDevice;
  try {
    device = await adapter.requestDevice({ label, requiredLimits, requiredFeatures: optionalFeatures(adapter), defaultQueue: { label: `${label}.queue` } });
  } catch (cause) {
    throw new GpuError('request-device-failed',
      `requestDevice failed on ${describeAdapter(info)}: ${(cause as Error)?.message ?? cause}. ` +
      'Close other GPU-heavy tabs and reload; if it persists, update the GPU driver.', { cause });
  }

  const lost = device.lost.then((l) => {
    const err = new DeviceLostError(l.reason ?? 'unknown', l.message);
    if (l.reason !== 'destroyed') opts.onLost?.(err);
    return err;
  });
  const onError = opts.onUncapturedError
    ?? ((e: GPUError) => console.error(`[${label}] uncaptured WebGPU ${e.constructor?.name ?? 'error'}: ${e.message}`));
  device.addEventListener('uncapturederror', (ev) => onError((ev as GPUUncapturedErrorEvent).error));

  return { adapter, device, info, limits: device.limits, lost };
}
