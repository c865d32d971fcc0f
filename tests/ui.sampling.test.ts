// Text sampling from a checkpoint export: the export's config.json and model.safetensors load
// back into the same flat params, and generation is reproducible and causal (padding after the
// window changes nothing).
import { describe, expect, it } from 'vitest';
import { preset } from '../src/model/config.ts';
import { buildLayout } from '../src/model/layout.ts';
import { initParams } from '../src/model/init.ts';
import { hfGpt2Config, hfModelSafetensors } from '../src/model/hf-export.ts';
import { ReferenceGPT } from '../src/model/reference.ts';
import { generate, modelFromHfConfig, paramsFromSafetensors } from '../src/ui/sampling/generate.ts';

const model = preset('micro');
const layout = buildLayout(model);
const params = initParams(layout, 7);

describe('sampling from a checkpoint export', () => {
  it('loads the GPT-2 export back into the flat params', () => {
    expect(modelFromHfConfig(hfGpt2Config(model))).toEqual(model);
    const back = paramsFromSafetensors(layout, hfModelSafetensors(layout, params));
    expect(back).toEqual(params);
    expect(() => modelFromHfConfig({ vocab_size: 256 })).toThrow(/n_positions must be a positive integer/);
  });

  it('generates reproducibly with a seed, and differently with another', () => {
    const prompt = new TextEncoder().encode('The whale ');
    const a = generate(model, params, prompt, { tokens: 20, temperature: 0.8, seed: 1 });
    const b = generate(model, params, prompt, { tokens: 20, temperature: 0.8, seed: 1 });
    const c = generate(model, params, prompt, { tokens: 20, temperature: 0.8, seed: 2 });
    expect(a).toHaveLength(20);
    expect(a).toEqual(b);
    expect(a).not.toEqual(c);
    expect(() => generate(model, params, new Uint8Array(), { tokens: 1, temperature: 1, seed: 1 })).toThrow(/at least one token/);
  });

  it('pads causally: the next-token distribution matches an unpadded forward', () => {
    const prompt = [84, 104, 101, 32, 119];
    const T = model.ctx;
    const gpt = new ReferenceGPT(layout, 'f32');
    const padded = new Uint32Array(T);
    padded.set(prompt);
    gpt.forward(params, { B: 1, T, tokens: padded, targets: new Uint32Array(T) });
    const a = gpt.logits().slice((prompt.length - 1) * 256, prompt.length * 256);
    const exact = new ReferenceGPT(layout, 'f32');
    exact.forward(params, { B: 1, T: prompt.length, tokens: Uint32Array.from(prompt), targets: new Uint32Array(prompt.length) });
    const b = exact.logits().slice((prompt.length - 1) * 256, prompt.length * 256);
    for (let v = 0; v < 256; v++) expect(a[v]).toBeCloseTo(b[v]!, 4);
  });
});
