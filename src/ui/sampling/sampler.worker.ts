// The dashboard's sampling worker: downloads a checkpoint's GPT-2 export and generates text with
// the CPU reference model, off the main thread (it takes seconds for the tiny preset).
import * as Comlink from 'comlink';
import { generate, modelFromHfConfig, paramsFromSafetensors } from './generate.ts';
import { buildLayout } from '../../model/layout.ts';
import { fetchRetrying, fetchWhole, HttpRefusal, refusalText } from '../../protocol/retry-fetch.ts';

const api = {
  async sample(configUrl: string, modelUrl: string, prompt: string, tokens: number, seed: number): Promise<string> {
    // The coordinator may ask this address to wait for its share of downloads (server/download-budget.ts).
    // The weights, the larger download, are taken up where they stopped if the transfer breaks off.
    const wait = { maxWaitMs: 2 * 60_000 };
    const failed = (name: string) => (err: Error): never => {
      throw new Error(`${name} download failed: ${err instanceof HttpRefusal ? err.detail : err.message}`);
    };
    const [cfgRes, weights] = await Promise.all([fetchRetrying(fetch, configUrl, {}, wait), fetchWhole(fetch, modelUrl, wait).catch(failed('model.safetensors'))]);
    if (!cfgRes.ok) failed('config.json')(new HttpRefusal(cfgRes.status, await refusalText(cfgRes), configUrl));
    const model = modelFromHfConfig((await cfgRes.json()) as Record<string, unknown>);
    const params = paramsFromSafetensors(buildLayout(model), weights);
    const out = generate(model, params, new TextEncoder().encode(prompt), { tokens, temperature: 0.8, seed });
    // Bytes cut mid-character at the end show as U+FFFD rather than failing.
    return new TextDecoder('utf-8', { fatal: false }).decode(out);
  },
};

export type SamplerApi = typeof api;
Comlink.expose(api);
