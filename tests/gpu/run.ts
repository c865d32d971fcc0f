// Runs Dispatch lists inside a validation error scope, so a kernel that fails validation fails
// its test with WebGPU's message instead of silently producing zeros.
import { encodeDispatches, type Dispatch } from '../../src/gpu/kernels.ts';

export async function run(device: GPUDevice, list: Dispatch[]): Promise<void> {
  device.pushErrorScope('validation');
  const enc = device.createCommandEncoder({ label: 'test.run' });
  const pass = enc.beginComputePass({ label: 'test.run.pass' });
  encodeDispatches(pass, list);
  pass.end();
  device.queue.submit([enc.finish()]);
  const err = await device.popErrorScope();
  if (err) throw new Error(`WebGPU validation error: ${err.message}`);
  await device.queue.onSubmittedWorkDone();
}
