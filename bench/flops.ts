// FLOPs of one training step as the engine computes it (for GFLOPS in benchmarks): every
// matmul of forward and backward (backward = 2x forward: input and weight gradients), with the
// attention products over the full T x T (a fixed convention, so older results compare; the fused
// attention kernels skip the masked half, and PyTorch rows in bench:torch count the same way).
import type { ModelConfig } from '../src/model/config.ts';

export function stepFlops(cfg: ModelConfig, B: number, T: number): number {
  const { d: C, layers: L, vocab: V } = cfg;
  const N = B * T;
  const matmulParams = L * 12 * C * C + V * C; // qkv 3C^2, proj C^2, fc 4C^2, fcproj 4C^2; tied head
  const forward = 2 * N * matmulParams + L * 4 * B * T * T * C; // QK^T and att V
  return 3 * forward;
}
