// The glue between the mesh and whatever trains: a Replica hands over φ and Δ at an outer step
// and applies the outer update with the partner payloads the mesh validated. The CPU trainer,
// the GPU trainer in a Web Worker (worker-bridge.ts) and the tests all implement this one
// interface; the mesh itself never sees a model.
import type { Mesh } from './mesh.ts';
import type { BootState, ExchangeResult, OuterPayload, PartnerPayload } from './types.ts';
import { StateCheckError } from './errors.ts';
import { checkState, type StateCheck } from './state-check.ts';

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

export type JoinSource = 'peer' | 'checkpoint' | 'fresh';

/**
 * Where a new peer's state comes from: a random live peer (φ, outer momentum and step
 * counters over the mesh, verified), else the coordinator's newest checkpoint, else a fresh
 * start. With `check` (state-check.ts) each source must pass it first: a peer that fails is
 * reported and the next asked, a checkpoint that fails is skipped with `onRefused`. Never
 * throws for what a source served. The caller continues its LR schedule from `state.innerStep`.
 */
export async function joinRun(
  mesh: Pick<Mesh, 'bootstrap'>,
  opts: {
    checkpoint: () => Promise<Omit<BootState, 'from'> | null>; timeoutMs?: number; tries?: number;
    check?: StateCheck; onRefused?: (source: string, err: Error) => void;
  },
): Promise<{ source: JoinSource; state: BootState | null }> {
  const fromPeer = await mesh.bootstrap({ timeoutMs: opts.timeoutMs, tries: opts.tries, ...(opts.check ? { check: opts.check } : {}) });
  if (fromPeer) return { source: 'peer', state: fromPeer };
  const ckpt = await opts.checkpoint();
  if (ckpt) {
    try {
      if (opts.check) await checkState(ckpt, opts.check, 'the newest checkpoint');
      return { source: 'checkpoint', state: { ...ckpt, from: 'checkpoint' } };
    } catch (err) {
      if (!(err instanceof StateCheckError)) throw err;
      opts.onRefused?.('checkpoint', err);
    }
  }
  return { source: 'fresh', state: null };
}
