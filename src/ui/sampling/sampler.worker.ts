// The dashboard's sampling worker: downloads a checkpoint's GPT-2 export and generates text with
// the CPU reference model, off the main thread (it takes seconds for the tiny preset).
import * as Comlink from 'comlink';
import { generate, modelFromHfConfig, paramsFromSafetensors } from './generate.ts';
import { buildLayout } from '../../model/layout.ts';

const api = {
  async sample(configUrl: string, modelUrl: string, prompt: string, tokens: number, seed: number): Promise<string> {
    const [cfgRes, modelRes] = await Promise.all([fetch(configUrl), fetch(modelUrl)]);
    if (!cfgRes.ok) throw new Error(`config.json download failed: HTTP ${cfgRes.status}`);
    if (!modelRes.ok) throw new Error(`model.safetensors download failed: HTTP ${modelRes.status}`);
    const model = modelFromHfConfig((await cfgRes.json()) as Record<string, unknown>);
    const params = paramsFromSafetensors(buildLayout(model), new Uint8Array(await modelRes.arrayBuffer()));
    const out = generate(model, params, new TextEncoder().encode(prompt), { tokens, temperature: 0.8, seed });
    // Bytes cut mid-character at the end show as U+FFFD rather than failing.
    return new TextDecoder('utf-8', { fatal: false }).decode(out);
  },
};

export type SamplerApi = typeof api;
Comlink.expose(api);
