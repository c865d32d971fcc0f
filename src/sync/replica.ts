// The glue between the mesh and whatever trains: a Replica hands over φ and Δ at an outer step
// and applies the outer update with the partner payloads the mesh validated. The CPU trainer,
// the GPU trainer in a Web Worker (worker-bridge.ts) and the tests all implement this one
// interface; the mesh itself never sees a model.
import type { Mesh } from './mesh.ts';
import type { ExchangeResult, OuterPayload, PartnerPayload } from './types.ts';

export interface Replica {
  /** φ_i and Δ_i = θ_i − φ_i after the inner loop (the mesh copies them before sending). */
  outerPayload(): OuterPayload | Promise<OuterPayload>;
  /**
   * The NoLoCo outer step with these validated partner payloads: one for a pair, none for a
   * solo step. θ_i ← φ_i afterwards.
   */
  applyOuter(partners: PartnerPayload[]): void | Promise<void>;
}

/** One outer round: payload out, one partner's (or none) back in, outer step applied. */
export async function outerRound(mesh: Mesh, replica: Replica, round: number, waitMs: number): Promise<ExchangeResult> {
  const payload = await replica.outerPayload();
  const result = await mesh.exchange(round, payload, { waitMs });
  await replica.applyOuter(result.payload ? [result.payload] : []);
  return result;
}

/**
 * How long a ready peer waits in the pool: a fraction of its own inner-loop time (DESIGN.md
 * section 3, default 0.3), never below `minMs`: with no wait nobody is ever in the pool together.
 */
export function pairWaitMs(innerLoopMs: number, frac = 0.3, minMs = 50, maxMs = 60_000): number {
  if (!(innerLoopMs >= 0) || !(frac > 0)) throw new RangeError(`pairWaitMs: need innerLoopMs >= 0 and frac > 0, got ${innerLoopMs}, ${frac}`);
  return Math.min(maxMs, Math.max(minMs, frac * innerLoopMs));
}
