// What a (model, batch) needs from the device, computed before anything is allocated, so a
// config too large for this GPU fails with the name of the limit instead of a validation error
// halfway through building.
import type { Layout } from '../model/layout.ts';
import { LimitsTooSmallError } from './errors.ts';
import { activationBytes } from './gpt.ts';
import { allMatmulShapes, type Tuning } from './kernels.ts';
import { ATT_TILE } from './ops.ts';

/** WebGPU's default limits: asking for no more than these works on every adapter. */
const DEFAULTS: Record<string, number> = {
  maxStorageBufferBindingSize: 134217728,
  maxBufferSize: 268435456,
};

export interface Requirements {
  /** Limits to pass as requiredLimits (only those above the defaults are requested). */
  requested: Record<string, number>;
  /** Every limit the engine depends on, with the value it needs. */
  needs: Record<string, number>;
}

export function requirements(layout: Layout, B: number, T: number, tuning: Tuning): Requirements {
  const { d: C, heads: NH } = layout.config;
  const N = B * T;
  const acts = activationBytes(layout, B, T);
  const largestBinding = Math.max(layout.total * 4, acts.largest);
  const shapes = allMatmulShapes(tuning);
  const wgInvocations = Math.max(256, ...shapes.map((s) => s.wgX * s.wgY));
  const wgX = Math.max(256, ...shapes.map((s) => s.wgX));
  const wgY = Math.max(1, ...shapes.map((s) => s.wgY));
  // Largest grid dimension: matmul rows N / 8 (or V / 8) over wgY, columns up to max(V, 4C) / 4
  // over wgX; attention's B * NH heads and T / ATT_TILE tiles.
  const minWg = Math.min(...shapes.map((s) => Math.min(s.wgX, s.wgY)));
  const minTm = Math.min(...shapes.map((s) => s.tm));
  const grid = Math.max(
    Math.ceil(Math.max(N, layout.config.vocab, 4 * C) / minTm / minWg),
    Math.ceil(Math.max(layout.config.vocab, 4 * C) / 4 / minWg),
    B * NH,
    Math.ceil(T / ATT_TILE),
  );
  const needs: Record<string, number> = {
    maxStorageBufferBindingSize: largestBinding,
    maxBufferSize: largestBinding,
    maxStorageBuffersPerShaderStage: 8, // matmul: A and B as vec4 and f32, bias, R, C, dbias
    maxComputeInvocationsPerWorkgroup: wgInvocations,
    maxComputeWorkgroupSizeX: wgX,
    maxComputeWorkgroupSizeY: wgY,
    maxComputeWorkgroupStorageSize: 16384, // tiled attention's tiles (16 KiB); the matmul tiles take 16 KiB too
    maxComputeWorkgroupsPerDimension: grid,
  };
  const requested: Record<string, number> = {};
  for (const [k, v] of Object.entries(DEFAULTS)) if (needs[k] > v) requested[k] = needs[k];
  return { requested, needs };
}

/** Throws LimitsTooSmallError for the first limit `limits` does not meet. */
export function checkDeviceLimits(limits: GPUSupportedLimits, needs: Record<string, number>, deviceName?: string): void {
  const have = limits as unknown as Record<string, number>;
  for (const [limit, needed] of Object.entries(needs)) {
    if (have[limit] < needed) throw new LimitsTooSmallError(limit, needed, have[limit], deviceName);
  }
}
