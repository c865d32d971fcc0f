// Typed WebGPU errors the UI can show as they are: each message names what went wrong and
// what the volunteer (or developer) can do about it. `code` is stable for programmatic use
// (the UI picks an icon or help link by code; messages may change).
import { CodedError } from '../protocol/errors.ts';

export type GpuErrorCode =
  | 'no-webgpu' | 'insecure-context' | 'no-adapter' | 'limits-too-small' | 'bad-limit'
  | 'request-device-failed' | 'device-lost';

export class GpuError extends CodedError<GpuErrorCode> {
  // Spelled out (here and in each subclass): the UI shows these names, and a minified bundle
  // would otherwise rename the classes.
  override name = 'GpuError';
}

/** `navigator.gpu` is missing: the browser has no WebGPU (or it is switched off). */
export class NoWebGPUError extends GpuError {
  constructor(where = 'this browser') {
    super('no-webgpu',
      `WebGPU is not available in ${where} (navigator.gpu is missing). ` +
      'Use a current Chrome, Edge or Safari 26+, or Firefox 141+ on Windows; ' +
      'if WebGPU is switched off, enable it (chrome://flags/#enable-unsafe-webgpu).');
    this.name = 'NoWebGPUError';
  }
}

/** The page is not a secure context (plain http off localhost), so browsers hide navigator.gpu. */
export class InsecureContextError extends GpuError {
  constructor(origin?: string) {
    super('insecure-context',
      `WebGPU needs https: browsers give the GPU only to pages opened over https:// or from http://localhost, ` +
      `and ${origin ? `"${origin}"` : 'this page'} is neither.`);
    this.name = 'InsecureContextError';
  }
}

/** requestAdapter() gave null: WebGPU exists but no usable GPU (driver blocklisted, none present). */
export class NoAdapterError extends GpuError {
  constructor(hint = 'Update the GPU driver or the browser, or check chrome://gpu for a blocklisted GPU.') {
    super('no-adapter', `WebGPU found no GPU adapter (requestAdapter() returned null). ${hint}`);
    this.name = 'NoAdapterError';
  }
}

/** The adapter cannot give a limit the model needs (e.g. a storage buffer too big for this GPU). */
export class LimitsTooSmallError extends GpuError {
  readonly limit: string;
  readonly needed: number;
  readonly available: number;
  constructor(limit: string, needed: number, available: number, adapterName = 'this GPU') {
    super('limits-too-small',
      `${adapterName} supports ${limit} = ${available}, but ${needed} is needed. ` +
      'Choose a smaller model preset, or use a device with a larger GPU.');
    this.name = 'LimitsTooSmallError';
    this.limit = limit;
    this.needed = needed;
    this.available = available;
  }
}

/** The device went away (driver reset, tab backgrounded too long, destroy()). */
export class DeviceLostError extends GpuError {
  readonly reason: GPUDeviceLostReason | 'unknown';
  constructor(reason: GPUDeviceLostReason | 'unknown', detail = '') {
    super('device-lost',
      `The GPU device was lost (reason: ${reason}${detail ? `; ${detail}` : ''}). ` +
      (reason === 'destroyed'
        ? 'It was released on purpose; start training again to get a new one.'
        : 'The GPU driver may have reset; reload the page to start again from the last shared weights.'));
    this.name = 'DeviceLostError';
    this.reason = reason;
  }
}
