// FLOPs of the model's matrix products, as the engine computes them: every matmul of the
// forward, and in a training step the backward too (2x the forward: input and weight
// gradients), with the attention products over the full T x T (a fixed convention, so older
// results compare; the fused attention kernels skip the masked half, and PyTorch rows in
// bench:torch count the same way). Benchmarks turn times into GFLOPS with these; the
// coordinator sizes its own validation of an upload with forwardFlops (src/data/sampler.ts).
import type { ModelConfig } from './config.ts';

/** FLOPs of one forward pass over B sequences of T tokens. */
export function forwardFlops(cfg: ModelConfig, B: number, T: number): number {
  const { d: C, layers: L, vocab: V } = cfg;
  const N = B * T;
  const matmulParams = L * 12 * C * C + V * C; // qkv 3C^2, proj C^2, fc 4C^2, fcproj 4C^2; tied head
  return 2 * N * matmulParams + L * 4 * B * T * T * C; // QK^T and att V
}

/** FLOPs of one training step: the forward and a backward of twice its products. */
export function stepFlops(cfg: ModelConfig, B: number, T: number): number {
  return 3 * forwardFlops(cfg, B, T);
}

/**
 * The least arithmetic any implementation of a training step must do, whatever its kernels:
 * every weight takes part in one multiply-add per token forward and two backward (input and
 * weight gradients), 6 FLOPs per token per weight of the products (the tied head included).
 * Attention's T x T products are left out, since an implementation may skip what the causal
 * mask hides. The coordinator bounds how fast a peer could have stepped by it (server/report-bounds.ts).
 */
export function stepFlopsFloor(cfg: ModelConfig, B: number, T: number): number {
  const { d: C, layers: L, vocab: V } = cfg;
  return 6 * B * T * (L * 12 * C * C + V * C);
}
