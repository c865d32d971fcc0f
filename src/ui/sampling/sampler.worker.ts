// The dashboard's sampling worker: downloads a checkpoint's GPT-2 export and generates text with
// the CPU reference model, off the main thread (it takes seconds for the tiny preset).
import * as Comlink from 'comlink';
import { generate, modelFromHfConfig, paramsFromSafetensors } from './generate.ts';
import { buildLayout } from '../../model/layout.ts';
import { fetchRetrying, refusalText } from '../../protocol/retry-fetch.ts';

const api = {
  async sample(configUrl: string, modelUrl: string, prompt: string, tokens: number, seed: number): Promise<string> {
    // The coordinator may ask this address to wait for its share of downloads (server/download-budget.ts).
    const get = (url: string) => fetchRetrying(fetch, url, {}, { maxWaitMs: 2 * 60_000 });
    const [cfgRes, modelRes] = await Promise.all([get(configUrl), get(modelUrl)]);
    for (const [name, res] of [['config.json', cfgRes], ['model.safetensors', modelRes]] as const) {
      if (!res.ok) throw new Error(`${name} download failed: HTTP ${res.status}${res.status === 429 ? `: ${await refusalText(res)}` : ''}`);
    }
    const model = modelFromHfConfig((await cfgRes.json()) as Record<string, unknown>);
    const params = paramsFromSafetensors(buildLayout(model), new Uint8Array(await modelRes.arrayBuffer()));
    const out = generate(model, params, new TextEncoder().encode(prompt), { tokens, temperature: 0.8, seed });
    // Bytes cut mid-character at the end show as U+FFFD rather than failing.
    return new TextDecoder('utf-8', { fatal: false }).decode(out);
  },
};

export type SamplerApi = typeof api;
Comlink.expose(api);
