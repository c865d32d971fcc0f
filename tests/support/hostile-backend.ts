// A hostile volunteer's trainer for tests and benchmarks: Murmur's own backend with its payload
// altered just before it is sent, as an attacker would build it from our code (issue 15). The
// volunteer takes it through its createBackend component, so everything else (signaling, mesh,
// pool, reports) is the honest code path.
import { createBackend, type BackendInit, type BackendKind, type ReplicaBackend } from '../../src/volunteer/backend.ts';
import type { OuterPayload, PartnerPayload } from '../../src/sync/types.ts';
import type { RoundEvent, Volunteer } from '../../src/volunteer/volunteer.ts';
import { Rng } from '../../src/model/rng.ts';
import { camping } from './camper.ts';

/**
 * The attacks of issue 15 on what a volunteer sends its partner (Δ_i = θ_i − φ_i is its progress):
 * - 'sign-flip'   Δ negated at the honest norm (passes the size checks of src/sync/validate.ts)
 * - 'scale-flip'  Δ × −20: inside the 30× reject bound, clipped to 3× by the receiver
 * - 'nan'         one element of Δ is NaN on the wire (the size checks reject it: non-finite)
 * - 'scale100'    Δ × 100: beyond the 30× bound (the size checks reject it: delta-norm)
 * - 'phi-bias'    its own honest Δ, and φ shifted against its progress: φ − PHI_BIAS × Δ, a
 *                 distance of PHI_BIAS Δ norms, inside the φ bound (last distance + 10 Δ scales
 *                 a round) and the receiver's clip (5 Δ scales)
 * - 'combined'    Δ negated and φ shifted as in 'phi-bias'
 * - 'camp-mirror' never trains (camper.ts) and sends the last partner's Δ it received, negated;
 *                 until it has met a partner, its own Δ (zero: θ never leaves φ). Mirroring the
 *                 partner's Δ is exact here, not approximated: the backend sees each partner's
 *                 validated payload in probe() and applyOuter(). That Δ has the honest norm (it
 *                 is an honest peer's, clipped by our own validator if it was large).
 * - 'camp-null'   never trains (camper.ts) and sends what that leaves: its own Δ, zero (θ never
 *                 leaves φ), while its step counter and reports claim a round's training. Averaged
 *                 with it, an honest partner's progress of the round is halved.
 * - 'poison-state' trains and exchanges honestly, but the state it serves (to a newcomer's
 *                 bootstrap and to the coordinator's checkpoint pull) has φ negated plus unit
 *                 Gaussian noise (seeded): the right shape, finite, plausible counters; only its
 *                 loss gives it away (21 to 32 on `micro`). φ negated alone is no reliable
 *                 poison: the signs cancel through LayerNorm and the products often enough that
 *                 it measured 3.70 beside an honest 3.17, within the 0.5 a state may be worse.
 */
export type Attack = 'sign-flip' | 'scale-flip' | 'nan' | 'scale100' | 'phi-bias' | 'combined' | 'camp-mirror' | 'camp-null' | 'poison-state';

/** φ shift of the phi-bias attacks, in the sender's own Δ norms (see Attack). */
const PHI_BIAS = 4;

/** What an attack remembers between rounds: the last partner's Δ (camp-mirror). */
interface Memory { partnerDelta: Float32Array | null }

const negate = (x: Float32Array) => x.map((v) => -v);
/** φ negated plus unit Gaussian noise, the same each time for the same φ ('poison-state'). */
const poisoned = (phi: Float32Array) => { const rng = new Rng(7, 9); return phi.map((v) => -v + rng.normal()); };
/** φ moved PHI_BIAS × Δ against the direction of progress. */
const antiProgress = (p: OuterPayload) => p.phi.map((v, k) => v - PHI_BIAS * p.delta[k]!);

function signFlip(p: OuterPayload): OuterPayload {
  return { phi: p.phi, delta: negate(p.delta) };
}

function scaleFlip(p: OuterPayload): OuterPayload {
  return { phi: p.phi, delta: p.delta.map((x) => -20 * x) };
}

/**
 * A Δ that is finite when read and carries a NaN in the bytes sent. The sender's own guard
 * (src/sync/exchange.ts) refuses to send a non-finite payload, and an attacker runs its own code
 * without it; here the guard reads the honest values, and the copy encodeTensor
 * (src/sync/compress.ts) takes with slice() has its middle element NaN, so the wire carries it.
 */
class NaNOnTheWire extends Float32Array {
  override slice(start?: number, end?: number): Float32Array<ArrayBuffer> {
    const copy = new Float32Array(this.length);
    copy.set(this);
    copy[copy.length >> 1] = NaN;
    return copy.slice(start, end);
  }
}

function nan(p: OuterPayload): OuterPayload {
  const delta = new NaNOnTheWire(p.delta.length);
  delta.set(p.delta);
  return { phi: p.phi, delta };
}

function scale100(p: OuterPayload): OuterPayload {
  return { phi: p.phi, delta: p.delta.map((x) => 100 * x) };
}

function phiBias(p: OuterPayload): OuterPayload {
  return { phi: antiProgress(p), delta: p.delta };
}

function combined(p: OuterPayload): OuterPayload {
  return { phi: antiProgress(p), delta: negate(p.delta) };
}

function campMirror(p: OuterPayload, m: Memory): OuterPayload {
  return { phi: p.phi, delta: m.partnerDelta ? negate(m.partnerDelta) : p.delta };
}

function alter(attack: Attack, p: OuterPayload, m: Memory): OuterPayload {
  switch (attack) {
    case 'sign-flip': return signFlip(p);
    case 'scale-flip': return scaleFlip(p);
    case 'nan': return nan(p);
    case 'scale100': return scale100(p);
    case 'phi-bias': return phiBias(p);
    case 'combined': return combined(p);
    case 'camp-mirror': return campMirror(p, m);
    case 'camp-null': return p;
    case 'poison-state': return p;
  }
}

/** The backend with `attack` applied to every payload it sends; its own outer step stays honest. */
export function hostile(b: ReplicaBackend, attack: Attack): ReplicaBackend {
  const memory: Memory = { partnerDelta: null };
  const inner = attack === 'camp-mirror' || attack === 'camp-null' ? camping(b) : b;
  // The partner's validated payload reaches the backend in probe() (probe on) and applyOuter()
  // (accepted, or probe off); the mirror keeps a copy of its Δ.
  const see = (p: PartnerPayload | undefined) => { if (p && attack === 'camp-mirror') memory.partnerDelta = p.delta.slice(); };
  return new Proxy(inner, {
    get(target, prop, receiver) {
      if (prop === 'outerPayload') return async () => alter(attack, await target.outerPayload(), memory);
      if (prop === 'probe') return async (p: PartnerPayload) => { see(p); return target.probe(p); };
      if (prop === 'applyOuter') return async (ps: PartnerPayload[]) => { see(ps[0]); return target.applyOuter(ps); };
      if (prop === 'slowState' && attack === 'poison-state') return async () => { const st = await target.slowState(); return { ...st, phi: poisoned(st.phi) }; };
      const v = Reflect.get(target, prop, receiver) as unknown;
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
    },
  });
}

/** A createBackend for VolunteerComponents that makes a hostile backend. */
export function hostileFactory(attack: Attack): (kind: BackendKind, init: BackendInit) => Promise<ReplicaBackend> {
  return async (kind, init) => hostile(await createBackend(kind, init), attack);
}

/** An attacker that takes a new identity again and again (issue 15): see rejoining(). */
export interface Rejoiner {
  /** Peer id of each identity, in order (pushed once it joined). */
  readonly ids: string[];
  /** The identity training now. */
  readonly current: Volunteer | null;
  /** Resolves once stopped; rejects if an identity failed. */
  readonly done: Promise<void>;
  stop(): Promise<void>;
}

/**
 * Runs `start()` (a runVolunteer bounded to k rounds, with a fresh session so a new peer id) and,
 * each time it ends, starts it again: a new identity every k rounds, until stop().
 */
export function rejoining(start: () => Volunteer): Rejoiner {
  const ids: string[] = [];
  let current: Volunteer | null = null;
  let stopped = false;
  const done = (async () => {
    while (!stopped) {
      const v = start();
      current = v;
      void v.joined.then((j) => { ids.push(j.peerId); }, () => {});
      await v.done;
    }
  })();
  return {
    ids, done,
    get current() { return current; },
    async stop() {
      stopped = true;
      await current?.stop('rejoiner stopped');
      await done.catch(() => {});
    },
  };
}

/** Whether a volunteer reported its partner in that round: the checks' refusal (unless not yet an offence), or the probe's offence. */
export const reportedIn = (e: RoundEvent): boolean => (e.exchange.reason === 'rejected' && !e.exchange.unreported) || e.probe?.offence != null;

/**
 * Of one honest volunteer's exchanges in which the attacker's payload arrived (validated or
 * refused by the checks), those that did harm or could have (issue 15's "reported within 3 of
 * its exchanges"): refused by the mesh's checks, judged by the probe worse than solo by more
 * than its margin (the harm honest partners stay under: the control's honest exchanges are
 * nearly all within it), or reported. A reversed Δ from an attacker whose own Δ happens to be
 * nearly orthogonal to ours is none of these: the probe finds it no worse than an honest one.
 * Counting every excess above 0 as harm (as this did) called noise harm: in one run an honest
 * volunteer met a sign-flip attacker three times at cosines of -0.19, -0.03 and -0.002, with
 * excesses of 0.015, 0.009 and 0.008 under a margin of 0.024, while honest pairs in the same run
 * showed excesses up to 0.016; it took them, rightly, and the test failed for want of a report.
 */
export function harmfulExchanges(arrived: readonly RoundEvent[]): RoundEvent[] {
  return arrived.filter((e) => e.exchange.reason === 'rejected' || (e.probe !== null && e.probe.excess > e.probe.margin) || reportedIn(e));
}

/** At which of its harmful exchanges (harmfulExchanges, from 1) the volunteer reported the attacker; null: never. */
export function reportedAtHarmful(arrived: readonly RoundEvent[]): number | null {
  const k = harmfulExchanges(arrived).findIndex(reportedIn);
  return k >= 0 ? k + 1 : null;
}
