// What crosses the comlink boundary between the page and the training worker: plain objects
// and ArrayBuffers (transferred, never copied).
import type { ModelConfig, TrainConfig } from '../model/config.ts';
import type { Tuning } from '../gpu/kernels.ts';
import type { MatmulRates } from '../gpu/autotune.ts';

export interface TrainerConfig {
  model: ModelConfig;
  /** Inner/outer hyper-parameters; missing fields take DEFAULT_TRAIN (seqLen: the model's ctx). */
  train?: Partial<TrainConfig>;
  /** Training-split tokens (byte-level); windows are drawn by WindowSampler(seed, replica). */
  data: Uint8Array;
  /** This replica's data stream (replicas share the init seed, not their windows). */
  replica?: number;
  /** Steps between asynchronous loss read-backs. */
  readEvery?: number;
  /** Measure kernel shapes for this adapter (cached); false uses the defaults. Default true. */
  autotune?: boolean;
  /** Seed of the probe's private windows; default: random on this device (tests fix it). */
  probeSeed?: number;
}

export interface TrainerInfo {
  adapter: string;
  isSoftware: boolean;
  /** Parameters (no padding) and floats per state buffer (padding included). */
  params: number;
  total: number;
  dispatchesPerStep: number;
  /** GPU memory the engine allocated: state buffers plus activations, bytes. */
  gpuBytes: number;
  tuning: Tuning;
  tuningFromCache: boolean;
  /** What the tuning's matmul shapes ran when measured, against the GPU's fp32 peak where known. */
  matmulRates: MatmulRates;
  /** Optimizer steps taken. */
  step: number;
}

/**
 * What a replica sends its partner at an outer step: φ and Δ = θ - φ, (total) float32 each.
 * Each array is the whole of its own ArrayBuffer, so comlink can transfer it without copying
 * (the shape src/sync/worker-bridge.ts expects).
 */
export interface OuterPayload {
  phi: Float32Array;
  delta: Float32Array;
}

/** A partner's payload as applyOuter takes it (extra fields such as peer and round are ignored). */
export interface PartnerInput {
  phi: Float32Array | ArrayBuffer;
  delta: Float32Array | ArrayBuffer;
}

/** φ, outer momentum and step at the last outer step: what a new peer bootstraps from. */
export interface OuterSnapshot {
  phi: Float32Array;
  outerM: Float32Array;
  /** Optimizer (inner) steps at that outer step: the LR schedule continues from here. */
  step: number;
}

export const STATE_FORMAT = 'murmur-trainer-state';
export const STATE_VERSION = 1;

/** Every kind of replica state, for checkpoints and bootstrapping a new peer. */
export interface TrainerState {
  format: typeof STATE_FORMAT;
  version: typeof STATE_VERSION;
  model: ModelConfig;
  train: TrainConfig;
  /** Optimizer steps taken (the LR schedule's position). */
  step: number;
  /** (total) float32 each: θ, AdamW m and v, φ, outer momentum. */
  params: Float32Array;
  m: Float32Array;
  v: Float32Array;
  phi: Float32Array;
  outerM: Float32Array;
}

/**
 * What load() takes: a full TrainerState, or just the outer state (a peer's bootstrap or a
 * checkpoint of φ and m): missing θ starts at φ, missing AdamW moments at zero. Arrays may be
 * Float32Arrays or their ArrayBuffers.
 */
export interface LoadState {
  format: typeof STATE_FORMAT;
  version: typeof STATE_VERSION;
  model: ModelConfig;
  step: number;
  phi: Float32Array | ArrayBuffer;
  outerM: Float32Array | ArrayBuffer;
  params?: Float32Array | ArrayBuffer;
  m?: Float32Array | ArrayBuffer;
  v?: Float32Array | ArrayBuffer;
}

export type TrainerEvent =
  | { type: 'autotune'; fromCache: boolean; tuning: Tuning }
  | { type: 'device-lost'; message: string }
  /** A new device took over at `step`; `retrained` inner steps since the last outer step were trained again. */
  | { type: 'rebuilt'; step: number; attempt: number; retrained: number };
