// Helpers for the engine's kernel tests: replaying Dispatch lists on the shared test device,
// random inputs and the relative-error measure every kernel tolerance is stated in.
import { encodeDispatches, type Dispatch } from '../../src/gpu/kernels.ts';

/** Encodes `list` into one compute pass, submits, and waits for the queue. */
export async function runDispatches(device: GPUDevice, list: Dispatch[]): Promise<void> {
  const enc = device.createCommandEncoder({ label: 'test.dispatches' });
  const pass = enc.beginComputePass({ label: 'test.dispatches.pass' });
  encodeDispatches(pass, list);
  pass.end();
  device.queue.submit([enc.finish()]);
  await device.queue.onSubmittedWorkDone();
}

/** Deterministic uniform(-scale, scale) floats (xorshift32). */
export function randomArray(n: number, seed: number, scale = 1): Float32Array {
  const out = new Float32Array(n);
  let s = (seed * 2654435761) >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    s ^= s << 13; s >>>= 0; s ^= s >>> 17; s ^= s << 5; s >>>= 0;
    out[i] = ((s / 4294967296) * 2 - 1) * scale;
  }
  return out;
}

/** max |got - want| / max |want|: the measure every kernel tolerance is stated in. NaN counts as Infinity. */
export function relErr(got: ArrayLike<number>, want: ArrayLike<number>): number {
  if (got.length < want.length) throw new Error(`result has ${got.length} values, expected ${want.length}`);
  let scale = 0, err = 0;
  for (let i = 0; i < want.length; i++) {
    scale = Math.max(scale, Math.abs(want[i]));
    const d = Math.abs(got[i] - want[i]);
    err = Number.isNaN(d) ? Infinity : Math.max(err, d);
  }
  return err / Math.max(scale, 1e-30);
}

/** Float32 copy padded with zeros to a multiple of 4 floats, so vec4 bindings see every value. */
export function padded(a: ArrayLike<number>): Float32Array {
  const out = new Float32Array(Math.max(4, Math.ceil(a.length / 4) * 4));
  out.set(a);
  return out;
}
