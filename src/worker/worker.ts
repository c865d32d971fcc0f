// The training Web Worker: one Trainer exposed through comlink. Results that carry weights
// (payloads, exported state) are transferred, not copied; so is what the page sends in.
//   const trainer = Comlink.wrap<TrainerApi>(new Worker(new URL('./worker.ts', import.meta.url), { type: 'module' }));
import * as Comlink from 'comlink';
import { indexedDbStore, memoryStore } from '../gpu/autotune.ts';
import { installErrorTransfer } from './errors-transfer.ts';
import { Trainer } from './trainer.ts';
import type { OuterPayload, OuterSnapshot, TrainerState } from './types.ts';

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
  probe: trainer.probe.bind(trainer),
  setEventListener: trainer.setEventListener.bind(trainer),
  /** φ and Δ, their buffers transferred to the page (src/sync/worker-bridge.ts's shape). */
  async outerPayload(): Promise<OuterPayload> {
    const p = await trainer.outerPayload();
    return Comlink.transfer(p, [p.phi.buffer, p.delta.buffer]);
  },
  async outerState(): Promise<OuterSnapshot> {
    const o = await trainer.outerState();
    return Comlink.transfer(o, [o.phi.buffer, o.outerM.buffer]);
  },
  async exportState(): Promise<TrainerState> {
    const s = await trainer.exportState();
    return Comlink.transfer(s, [s.params.buffer, s.m.buffer, s.v.buffer, s.phi.buffer, s.outerM.buffer]);
  },
  dispose(): void {
    trainer.dispose();
  },
};

export type TrainerApi = typeof api;
Comlink.expose(api);
