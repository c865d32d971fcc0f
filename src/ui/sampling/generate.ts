// Text from a checkpoint, for the dashboard: the CPU reference GPT (src/model/reference.ts, the
// oracle the kernels are tested against) run token by token. The window is right-padded to the
// model's context: attention is causal, so padding after the last real token changes nothing
// before it, and one activation shape serves every step.
import type { ModelConfig } from '../../model/config.ts';
import { buildLayout, view, zerosLike, type Layout } from '../../model/layout.ts';
import { ReferenceGPT } from '../../model/reference.ts';
import { Rng } from '../../model/rng.ts';
import { readSafetensors, tensorF32 } from '../../model/safetensors.ts';

/** ModelConfig from a Hugging Face GPT-2 config.json (what the checkpoint export serves). */
export function modelFromHfConfig(c: Record<string, unknown>): ModelConfig {
  const get = (k: string) => {
    const v = c[k];
    if (!Number.isInteger(v) || (v as number) <= 0) throw new Error(`config.json: ${k} must be a positive integer, got ${JSON.stringify(v)}`);
    return v as number;
  };
  return { vocab: get('vocab_size'), ctx: get('n_positions'), layers: get('n_layer'), d: get('n_embd'), heads: get('n_head') };
}

/** Flat params (layout order) from the export's model.safetensors. */
export function paramsFromSafetensors(layout: Layout, bytes: Uint8Array): Float32Array {
  const file = readSafetensors(bytes);
  const params = zerosLike(layout);
  for (const t of layout.tensors) {
    const src = tensorF32(file, t.name);
    if (src.length !== t.size) throw new Error(`model.safetensors: ${t.name} has ${src.length} values, the model needs ${t.size}`);
    view(params, t).set(src);
  }
  return params;
}

export interface GenerateOptions {
  /** New tokens (bytes) to produce. */
  tokens: number;
  temperature: number;
  seed: number;
}

/** Continues `prompt` (byte tokens); returns only the new tokens. */
export function generate(model: ModelConfig, params: Float32Array, prompt: Uint8Array, o: GenerateOptions): Uint8Array {
  if (prompt.length === 0) throw new Error('generate: the prompt must hold at least one token');
  if (!(o.temperature > 0)) throw new Error(`generate: temperature must be positive, got ${o.temperature}`);
  const layout = buildLayout(model);
  const gpt = new ReferenceGPT(layout, 'f32');
  const T = model.ctx;
  const tokens = new Uint32Array(T); // (1, T) the window, right-padded with 0
  const targets = new Uint32Array(T); // unused by sampling; forward() needs it
  const rng = new Rng(o.seed, 0x5a3e);
  const seq = Array.from(prompt);
  const out = new Uint8Array(o.tokens);
  const probs = new Float64Array(model.vocab);
  for (let k = 0; k < o.tokens; k++) {
    const win = seq.slice(-T);
    tokens.fill(0);
    tokens.set(win);
    gpt.forward(params, { B: 1, T, tokens, targets });
    const logits = gpt.logits(); // (1, T, V)
    const at = (win.length - 1) * model.vocab;
    let max = -Infinity;
    for (let v = 0; v < model.vocab; v++) max = Math.max(max, logits[at + v]! / o.temperature);
    let sum = 0;
    for (let v = 0; v < model.vocab; v++) sum += probs[v] = Math.exp(logits[at + v]! / o.temperature - max);
    let r = rng.uniform() * sum, next = model.vocab - 1;
    for (let v = 0; v < model.vocab; v++) { r -= probs[v]!; if (r <= 0) { next = v; break; } }
    out[k] = next;
    seq.push(next);
  }
  return out;
}
