// Page side of the sampler: one worker, started on first use; samples are generated one at a
// time (each is seconds of CPU).
import * as Comlink from 'comlink';
import type { CheckpointItem, TextSample } from '../ports.ts';
import type { SamplerApi } from './sampler.worker.ts';

export const SAMPLE_PROMPT = 'The whale ';

export function createSampler(tokens = 96): (c: CheckpointItem) => Promise<TextSample> {
  let remote: Comlink.Remote<SamplerApi> | null = null;
  let queue: Promise<unknown> = Promise.resolve();
  return (c) => {
    remote ??= Comlink.wrap<SamplerApi>(new Worker(new URL('./sampler.worker.ts', import.meta.url), { type: 'module', name: 'murmur-sampler' }));
    const r = remote;
    const run = queue.then(async () => {
      // Same seed for every checkpoint: the slider compares models, not random draws.
      const text = await r.sample(c.exportConfigUrl, c.exportUrl, SAMPLE_PROMPT, tokens, 1234);
      return { checkpointId: c.id, step: c.step, prompt: SAMPLE_PROMPT, text };
    });
    queue = run.catch(() => {});
    return run;
  };
}
