// Export to the Hugging Face GPT-2 layout, so a researcher continues in PyTorch with
//   GPT2LMHeadModel.from_pretrained(dir)
// Our layout already uses HF names and Conv1D (in, out) shapes (layout.ts), so the export is
// the tensors of φ under their own names. The LM head is tied to transformer.wte.weight:
// like HF's own save_pretrained with safetensors, the file holds the shared tensor once and
// `tie_word_embeddings: true` makes from_pretrained point lm_head.weight at it.
import type { ModelConfig } from './config.ts';
import type { Layout } from './layout.ts';
import { view } from './layout.ts';
import { writeSafetensors, type SafeTensorIn } from './safetensors.ts';
import Type from 'typebox';

/** LayerNorm epsilon our reference and kernels use (HF GPT-2's default too). */
export const LAYER_NORM_EPS = 1e-5;

/** config.json for transformers' GPT2LMHeadModel. */
export function hfGpt2Config(c: ModelConfig): Record<string, unknown> {
  return {
    architectures: ['GPT2LMHeadModel'],
    model_type: 'gpt2',
    vocab_size: c.vocab,
    n_positions: c.ctx,
    n_ctx: c.ctx,
    n_embd: c.d,
    n_layer: c.layers,
    n_head: c.heads,
    n_inner: null,
    // The tanh approximation of GELU, as in GPT-2 and llm.c.
    activation_function: 'gelu_new',
    layer_norm_epsilon: LAYER_NORM_EPS,
    // Murmur trains without dropout; keep inference and fine-tuning identical by default.
    resid_pdrop: 0.0,
    embd_pdrop: 0.0,
    attn_pdrop: 0.0,
    initializer_range: 0.02,
    scale_attn_weights: true,
    scale_attn_by_inverse_layer_idx: false,
    reorder_and_upcast_attn: false,
    tie_word_embeddings: true,
    // Byte-level vocabulary: no special tokens (GPT-2's 50256 does not exist here).
    bos_token_id: null,
    eos_token_id: null,
    torch_dtype: 'float32',
    use_cache: true,
  };
}

const dim = Type.Integer({ minimum: 1 });
/** What a config.json hfGpt2Config wrote says of its model (its other fields are transformers' defaults). */
export const HfGpt2ConfigModel = Type.Object({
  model_type: Type.Literal('gpt2'), vocab_size: dim, n_positions: dim, n_layer: dim, n_embd: dim, n_head: dim,
});

/** model.safetensors bytes for the weights `params` (flat, laid out by `layout`). */
export function hfModelSafetensors(layout: Layout, params: Float32Array, extraMeta: Record<string, string> = {}): Uint8Array {
  if (params.length !== layout.total) throw new Error(`export: params have ${params.length} floats, the layout needs ${layout.total}`);
  const tensors: SafeTensorIn[] = layout.tensors.map((t) => ({ name: t.name, shape: t.shape, data: view(params, t) }));
  // "format": "pt" is what transformers checks before loading a safetensors archive.
  return writeSafetensors(tensors, { format: 'pt', ...extraMeta });
}
