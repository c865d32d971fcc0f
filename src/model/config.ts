// Model and training configuration: one documented place for every default (nanoGPT's
// GPTConfig habit). Configs are plain JSON-able objects: they travel in metric rows,
// checkpoints and the wire format's config hash.

/** GPT-2-style decoder: learned positions, pre-LayerNorm, GELU MLP 4x, tied embeddings. */
export interface ModelConfig {
  /** Vocabulary size. 256: byte-level tokens, so any UTF-8 text works with no tokenizer files. */
  vocab: number;
  /** Context length T (the number of learned positions). */
  ctx: number;
  /** Number of transformer blocks L. */
  layers: number;
  /** Model width C. Must be divisible by `heads`. */
  d: number;
  /** Attention heads NH; head size is d / heads. */
  heads: number;
}

export type PresetName = 'micro' | 'tiny' | 'small' | 'base';

export const PRESETS: Record<PresetName, ModelConfig> = {
  // Tests on a software GPU (SwiftShader runs ~100x slower than a laptop GPU): every tensor is
  // small enough that a full step takes milliseconds, yet it has 2 layers and 2 heads so that
  // cross-layer and cross-head bugs still show. ~35K parameters.
  micro: { vocab: 256, ctx: 32, layers: 2, d: 32, heads: 2 },
  // The default run: ~1M parameters learns visible English structure from Moby Dick in minutes
  // on an integrated GPU, and a full f32 state (phi + delta, 8 MB) crosses a home uplink fast.
  tiny: { vocab: 256, ctx: 128, layers: 5, d: 128, heads: 4 },
  // ~10M: fills a mid-range laptop GPU; the size where NoLoCo's saving over all-reduce starts to
  // matter on home links (40 MB of phi per exchange).
  small: { vocab: 256, ctx: 256, layers: 6, d: 384, heads: 6 },
  // ~48M: a discrete desktop GPU's worth (head size 64 like GPT-2); f32 state ~190 MB.
  base: { vocab: 256, ctx: 512, layers: 12, d: 576, heads: 9 },
};

export function preset(name: string): ModelConfig {
  const p = (PRESETS as Record<string, ModelConfig>)[name];
  if (!p) throw new Error(`unknown model preset "${name}"; choose one of ${Object.keys(PRESETS).join(', ')}`);
  return { ...p };
}

export function validateModelConfig(c: ModelConfig): void {
  const ints: (keyof ModelConfig)[] = ['vocab', 'ctx', 'layers', 'd', 'heads'];
  for (const k of ints) {
    if (!Number.isInteger(c[k]) || c[k] <= 0) throw new Error(`model config: ${k} must be a positive integer, got ${c[k]}`);
  }
  if (c.d % c.heads !== 0) throw new Error(`model config: d=${c.d} is not divisible by heads=${c.heads}`);
}

/** Inner optimiser and outer (NoLoCo) settings. Defaults: the NoLoCo paper's 8-replica config. */
export interface TrainConfig {
  /** Sequences per inner step (B). */
  batch: number;
  /** Tokens per sequence (T); at most the model's ctx. */
  seqLen: number;
  /** Peak inner AdamW learning rate (NoLoCo reference config). */
  lr: number;
  /** Linear warm-up steps from 0 to `lr`. */
  warmupSteps: number;
  /** Steps of the cosine schedule; after it the rate stays at lr * minLrFrac. */
  totalSteps: number;
  /** Cosine decays to this fraction of the peak (10%, as in nanoGPT / Chinchilla practice). */
  minLrFrac: number;
  /** Decoupled weight decay, on 2-D weights only (not biases, not LayerNorm). */
  weightDecay: number;
  /** AdamW first-moment decay. */
  beta1: number;
  /** AdamW second-moment decay; 0.95 as in GPT-style training, steadier than 0.999 at small batch. */
  beta2: number;
  /** AdamW epsilon. */
  eps: number;
  /** Global gradient-norm clip; 0 disables. */
  gradClip: number;
  /** Inner steps between outer steps (NoLoCo H). */
  H: number;
  /** Outer momentum α. */
  outerMomentum: number;
  /** Outer learning rate β. */
  outerLr: number;
  /** Consensus pull γ towards the partner's slow weights (0 for DiLoCo). */
  consensus: number;
}

export const DEFAULT_TRAIN: TrainConfig = {
  batch: 8,
  seqLen: 128,
  lr: 6e-4,
  warmupSteps: 100,
  totalSteps: 20000,
  minLrFrac: 0.1,
  weightDecay: 0.1,
  beta1: 0.9,
  beta2: 0.95,
  eps: 1e-8,
  gradClip: 1.0,
  H: 50,
  outerMomentum: 0.5,
  outerLr: 0.7,
  consensus: 0.7,
};

export function trainConfig(overrides: Partial<TrainConfig> = {}, model?: ModelConfig): TrainConfig {
  const t = { ...DEFAULT_TRAIN, ...overrides };
  if (model && overrides.seqLen === undefined) t.seqLen = model.ctx;
  if (model && t.seqLen > model.ctx) throw new Error(`train config: seqLen=${t.seqLen} exceeds the model's ctx=${model.ctx}`);
  if (!(t.batch >= 1 && Number.isInteger(t.batch))) throw new Error(`train config: batch must be a positive integer, got ${t.batch}`);
  if (!(t.H >= 1 && Number.isInteger(t.H))) throw new Error(`train config: H must be a positive integer, got ${t.H}`);
  return t;
}
