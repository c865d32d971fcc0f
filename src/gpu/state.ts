// The optimizer state on the GPU: one buffer per kind of state (llm.c's flat parameter block),
// every one laid out by the shared Layout offset table, plus the small buffers the step kernels
// keep their counters in. Made once; never resized.
import { ALIGN, type Layout, type TensorSpec } from '../model/layout.ts';
import { writeArray, type Ref } from './kernels.ts';

/** StepState (src/shaders/step-state.wgsl): 12 words. */
export const STEP_STATE_WORDS = 12;
/** Word of StepState.lossScale (an f32). */
export const STEP_STATE_LOSS_SCALE = 8;
/** Word of StepState.skipped (a u32). */
export const STEP_STATE_SKIPPED = 10;

const STORAGE = () => GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST;

export class GpuState {
  /** θ: fast weights, trained by AdamW. */
  readonly params: GPUBuffer;
  /** Gradients; between steps also scratch for Δ = θ - φ and a partner's summed Δ. */
  readonly grads: GPUBuffer;
  /** AdamW first and second moments (local, never exchanged). */
  readonly m: GPUBuffer;
  readonly v: GPUBuffer;
  /** φ: slow weights at the last outer step. */
  readonly phi: GPUBuffer;
  /** Outer momentum. */
  readonly outerM: GPUBuffer;
  /** Partners' φ summed, uploaded for an outer step. */
  readonly partnerPhi: GPUBuffer;
  /** (total / ALIGN) u32: 1 where weight decay applies to that 64-float chunk. */
  readonly decayMask: GPUBuffer;
  /** StepState: step counter, lr, grad norm, clip factor, Adam bias corrections, loss scale. */
  readonly stepState: GPUBuffer;
  readonly bytes: number;

  constructor(readonly device: GPUDevice, readonly layout: Layout) {
    const bytes = layout.total * 4;
    this.bytes = bytes;
    const mk = (member: string, size = bytes, usage = STORAGE()) =>
      device.createBuffer({ label: `GpuState.${member}`, size: Math.max(16, Math.ceil(size / 16) * 16), usage });
    this.params = mk('params');
    this.grads = mk('grads');
    this.m = mk('m');
    this.v = mk('v');
    this.phi = mk('phi');
    this.outerM = mk('outerM');
    this.partnerPhi = mk('partnerPhi');
    this.decayMask = mk('decayMask', (layout.total / ALIGN) * 4);
    this.stepState = mk('stepState', STEP_STATE_WORDS * 4);
    writeArray(device.queue, this.decayMask, decayMask(layout));
    this.writeStepState(0);
  }

  /**
   * Resets StepState to `step` optimizer steps taken, loss scale `lossScale` (1 without f16
   * operands), and no steps skipped.
   */
  writeStepState(step: number, lossScale = 1): void {
    if (!Number.isInteger(step) || step < 0 || step > 0xffffffff) throw new RangeError(`step must be a non-negative integer, got ${step}`);
    if (!(lossScale > 0 && Number.isFinite(lossScale))) throw new RangeError(`loss scale must be a positive finite number, got ${lossScale}`);
    const words = new Uint32Array(STEP_STATE_WORDS);
    words[0] = step;
    new Float32Array(words.buffer)[STEP_STATE_LOSS_SCALE] = lossScale;
    writeArray(this.device.queue, this.stepState, words);
  }

  /** The binding of one tensor inside a state buffer (offsets are 256-byte aligned by the layout). */
  tensor(buf: GPUBuffer, spec: TensorSpec): Ref {
    return { buffer: buf, offset: spec.offset * 4, size: Math.ceil(spec.size / ALIGN) * ALIGN * 4 };
  }

  destroy(): void {
    for (const b of [this.params, this.grads, this.m, this.v, this.phi, this.outerM, this.partnerPhi, this.decayMask, this.stepState]) b.destroy();
  }
}

/** One u32 per ALIGN-float chunk: 1 if the chunk belongs to a tensor with weight decay. */
export function decayMask(layout: Layout): Uint32Array {
  if (layout.total % ALIGN !== 0) throw new Error(`layout total ${layout.total} is not a multiple of ${ALIGN}`);
  const mask = new Uint32Array(layout.total / ALIGN);
  for (const t of layout.tensors) {
    if (t.offset % ALIGN !== 0) throw new Error(`tensor ${t.name} starts at ${t.offset}, not a multiple of ${ALIGN}`);
    if (!t.decay) continue;
    const end = Math.ceil((t.offset + t.size) / ALIGN);
    for (let c = t.offset / ALIGN; c < end; c++) mask[c] = 1;
  }
  return mask;
}
