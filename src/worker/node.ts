// The Trainer for Node (the headless volunteer): Dawn as the GPU, a JSON file as the autotune
// cache. Same class as in the browser worker, called directly (no comlink needed in-process).
import { fileStore } from '../gpu/autotune-node.ts';
import { NODE_NO_ADAPTER_HINT, nodeGpu } from '../gpu/node-gpu.ts';
import type { TuningStore } from '../gpu/autotune.ts';
import { Trainer } from './trainer.ts';

export function createNodeTrainer(opts: { tuningStore?: TuningStore } = {}): Trainer {
  return new Trainer({ gpu: nodeGpu, tuningStore: opts.tuningStore ?? fileStore(), noAdapterHint: NODE_NO_ADAPTER_HINT });
}
