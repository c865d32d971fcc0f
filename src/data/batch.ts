// A training or validation batch as every backend takes it. Tokens are u32 so the arrays map
// directly onto WGSL `array<u32>` storage buffers.
export interface Batch {
  /** Sequences (B). */
  B: number;
  /** Tokens per sequence (T). */
  T: number;
  /** (B, T) input tokens, row-major. */
  tokens: Uint32Array;
  /** (B, T) next-token targets: tokens shifted left by one within each window. */
  targets: Uint32Array;
}
