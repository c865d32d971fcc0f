// The training Web Worker: one Trainer exposed through comlink. Results that carry weights
// (payloads, exported state) are transferred, not copied; so is what the page sends in.
//   const trainer = Comlink.wrap<TrainerApi>(new Worker(new URL('./worker.ts', import.meta.url), { type: 'module' }));
import * as Comlink from 'comlink';
import { indexedDbStore, memoryStore } from '../gpu/autotune.ts';
import { installErrorTransfer } from './errors-transfer.ts';
import { Trainer } from './trainer.ts';
import type { OuterPayload, TrainerState } from './types.ts';

// Typed errors (GpuError.code, LimitsTooSmallError.limit, ...) reach the page intact.
installErrorTransfer();

const trainer = new Trainer({ tuningStore: typeof indexedDB !== 'undefined' ? indexedDbStore() : memoryStore() });

const api = {
  init: trainer.init.bind(trainer),
  load: trainer.load.bind(trainer),
  train: trainer.train.bind(trainer),
  evaluate: trainer.evaluate.bind(trainer),
  getInfo: trainer.getInfo.bind(trainer),
  applyOuter: trainer.applyOuter.bind(trainer),
  setEventListener: trainer.setEventListener.bind(trainer),
  async outerPayload(): Promise<OuterPayload> {
    const p = await trainer.outerPayload();
    return Comlink.transfer(p, [p.phi, p.delta]);
  },
  async exportState(): Promise<TrainerState> {
    const s = await trainer.exportState();
    return Comlink.transfer(s, [s.params, s.m, s.v, s.phi, s.outerM]);
  },
  dispose(): void {
    trainer.dispose();
  },
};

export type TrainerApi = typeof api;
Comlink.expose(api);
