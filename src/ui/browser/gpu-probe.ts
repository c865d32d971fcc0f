// "Can this device help?" without taking the GPU: requestAdapter() only, limits compared with
// what the run's model needs. Every failure becomes a plain explanation and something to do.
import { checkLimits, describeAdapter, summarizeAdapter } from '../../gpu/device.ts';
import { GpuError, InsecureContextError, NoAdapterError, NoWebGPUError } from '../../gpu/errors.ts';
import type { GpuProbe } from '../ports.ts';

export interface ProbeEnv {
  isSecureContext: boolean;
  origin: string;
  gpu: GPU | undefined;
}

export function browserProbeEnv(): ProbeEnv {
  return { isSecureContext: globalThis.isSecureContext, origin: location.origin, gpu: (navigator as Navigator).gpu };
}

const TITLES: Record<string, string> = {
  'no-webgpu': 'This browser has no WebGPU',
  'insecure-context': 'WebGPU needs https',
  'no-adapter': 'WebGPU found no usable GPU',
  'limits-too-small': 'This GPU has too little memory for this run',
  'bad-limit': 'This run asks for an unknown GPU limit',
  'request-device-failed': 'The GPU refused to start',
  'device-lost': 'The GPU stopped responding',
};

const ADVICE: Record<string, string> = {
  'no-webgpu': 'Open this page in a current Chrome or Edge (113+), Safari 26+, or Firefox 141+ on Windows. Nothing else is needed: no install, no account.',
  // The volunteer cannot fix this; the operator can, so say exactly what they must do.
  'insecure-context': "Open the run's https:// address if it has one. This coordinator serves plain http, where browsers hide the GPU: " +
    'whoever runs it must serve it over https, with `murmur serve --tls-cert FILE --tls-key FILE` or behind a TLS reverse proxy (see docs/deploy.md).',
  'no-adapter': 'The browser may block your GPU or its driver (see chrome://gpu), or WebGPU is switched off. Update the browser and the GPU driver, or try another browser.',
  'limits-too-small': 'A device with more GPU memory can help with this run; a run with a smaller model would fit this one.',
  'bad-limit': 'This is a bug in the run configuration; the operator has to fix it.',
  'request-device-failed': 'Close other GPU-heavy tabs or apps and reload this page.',
  'device-lost': 'Reload the page. If it happens again, the GPU driver may be unstable: update it.',
};

export function explain(err: GpuError): GpuProbe {
  return { ok: false, code: err.code, title: TITLES[err.code] ?? 'The GPU cannot be used', explanation: err.message, advice: ADVICE[err.code] ?? '' };
}

/** requiredLimits: what the run's model needs, e.g. { maxStorageBufferBindingSize: bytes }. */
export async function probeGpu(env: ProbeEnv, requiredLimits: Record<string, number>): Promise<GpuProbe> {
  try {
    if (!env.isSecureContext) throw new InsecureContextError(env.origin);
    if (!env.gpu) throw new NoWebGPUError('this browser');
    const adapter = await env.gpu.requestAdapter({ powerPreference: 'high-performance' });
    if (!adapter) throw new NoAdapterError();
    const info = summarizeAdapter(adapter);
    const name = describeAdapter(info);
    checkLimits(adapter, requiredLimits, name);
    return { ok: true, adapter: info, name };
  } catch (e) {
    if (e instanceof GpuError) return explain(e);
    throw e;
  }
}
