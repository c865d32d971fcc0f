// The binary frame that carries one replica's slow state (φ and outer momentum, both flat
// Float32Arrays in layout order) between a peer and the coordinator: a peer uploads it for a
// checkpoint, a newcomer downloads it to bootstrap. Flat buffers, not per-tensor records, because
// both ends already share the layout's offset table (src/model/layout.ts).
//
//   0   4 bytes  magic "MRST"
//   4   u32 LE   version (1)
//   8   u32 LE   header length N
//   12  N bytes  JSON StateMeta, then zero padding to a multiple of 4
//   ..  floats * 4 bytes  φ (f32 LE)
//   ..  floats * 4 bytes  outer momentum (f32 LE)
import Type, { type Static } from 'typebox';
import { schemaProblem } from './check.ts';
import { ID_PATTERN } from './messages.ts';

export const STATE_MAGIC = 'MRST';
export const STATE_VERSION = 1;

const count = Type.Integer({ minimum: 0, maximum: Number.MAX_SAFE_INTEGER });
export const StateMeta = Type.Object({
  runId: Type.String({ pattern: ID_PATTERN }),
  /** Inner steps this replica has taken. */
  step: count,
  /** Outer rounds this replica has completed. */
  round: count,
  /** Floats in each of φ and momentum (layout.total). */
  floats: Type.Integer({ minimum: 1, maximum: 2 ** 30 }),
  /** Validation loss of φ if the peer measured it, else null. */
  valLoss: Type.Union([Type.Number({ minimum: 0, maximum: 1e6 }), Type.Null()]),
  /** Tokens this replica has trained on. */
  tokens: count,
}, { additionalProperties: false });
export type StateMeta = Static<typeof StateMeta>;

export interface StateFrame {
  meta: StateMeta;
  phi: Float32Array;
  momentum: Float32Array;
}

/**
 * Largest step or round a state may carry. Counters grow by one round (and H steps) per outer
 * step and cross the wire as uint32 (src/protocol/peer-messages.ts): a state at 0xffffffff would
 * be adopted and then overflow on the next round. 2^31 leaves room for 2^31 more rounds, decades
 * of training at any speed.
 */
export const MAX_STATE_COUNTER = 2 ** 31;

/**
 * How much worse than the newest accepted checkpoint (in nats of validation loss, measured on the
 * run's fixed validation windows) a state may be and still be taken: by the coordinator for a
 * checkpoint, by a newcomer for its starting state. docs/design.md section 6 gives the reasons.
 */
export const STATE_LOSS_MARGIN = 0.5;

/**
 * Fastest inner loop any device could run on any run (steps per second), however small its
 * model: far above real GPUs. A run's own bound is usually lower (stepRate in
 * server/report-bounds.ts: what the fastest device could do on that run's model and batch), and the
 * coordinator announces it in the welcome (`stepRate`).
 */
export const MAX_STEPS_PER_S = 1000;
/** Steps a report may be ahead of the bound besides the rate (a round finishes after the check). */
export const STEP_SLACK = 100;

/**
 * The furthest inner step a peer could have reached by `now` (ms): from `stepBase`, the furthest
 * step it could have started from when it joined at `joinedAt` (the run's newest checkpoint, any
 * live peer's reported step, its own earlier reports), at `rate` steps a second (the run's
 * stepRate, never above MAX_STEPS_PER_S). The coordinator refuses a report or a checkpoint
 * upload past it (server/report-bounds.ts); the welcome gives a newcomer its `stepBase` and the
 * rate, so the newcomer refuses a bootstrap state past it too, since none of its reports from
 * there would be accepted (src/sync/state-check.ts).
 */
export function maxStepNow(x: { now: number; joinedAt: number; stepBase: number; rate: number }): number {
  const sinceJoin = Math.max(0, x.now - x.joinedAt) / 1000;
  return x.stepBase + Math.ceil(sinceJoin * Math.min(x.rate, MAX_STEPS_PER_S)) + STEP_SLACK;
}

/**
 * The step a run's peers agree on: the lower median of their `votes` (the coordinator gives one
 * per address, of peers off probation), so it moves up only when at least half of them claim
 * more (one liar among two honest peers, or among one, cannot raise it); never below `floor`
 * (the newest offered checkpoint's step), so peers that lag or lie low cannot send newcomers
 * back along the schedule past it. Null with neither. The welcome carries it (`stepConsensus`).
 */
export function consensusStep(votes: readonly number[], floor: number | null = null): number | null {
  const s = [...votes].sort((a, b) => a - b);
  const median = s.length > 0 ? s[(s.length - 1) >> 1]! : null;
  return median === null ? floor : floor === null ? median : Math.max(median, floor);
}

/**
 * A state's counters held to the run's consensus (consensusStep; null: as they are), from above
 * and below: a step at most one round past it (`H` inner steps: the peers moved on between the
 * consensus and the adoption, or the upload), with a round at most ⌊step / H⌋; a step more than
 * one round short of it (a slow peer lags a little; a liar at step 0 would send a newcomer back
 * through warm-up to the peak learning rate, its Δ then ~10x its partners') is raised to it, with
 * a round at least ⌊step / H⌋. A round is left as it is otherwise: after a change of the run's H
 * an honest replica's rounds outnumber step / H.
 */
export function holdCounters<C extends { step: number; round: number }>(c: C, consensus: number | null, H: number): C {
  if (consensus === null) return c;
  if (c.step > consensus + H) {
    const step = consensus + H;
    return { ...c, step, round: Math.min(c.round, Math.floor(step / H)) };
  }
  if (c.step < consensus - H) return { ...c, step: consensus, round: Math.max(c.round, Math.floor(consensus / H)) };
  return c;
}

/**
 * Largest ||m|| / ||φ|| an honest state carries. The outer step (docs/design.md section 1.1)
 * m ← α·m + β·Δ̄ + γ·(φ̄ − φ) adds at most β·2D + γ·2.5D, where D is the Δ scale (a partner's Δ is
 * clipped to 3D and its φ moved to within 5D of ours before the step, src/sync/validate.ts), and
 * the decayed sum of those is at most 1/(1 − α) times one: 6.3 D at the defaults (α = 0.5,
 * β = γ = 0.7); a solo step adds β·D, 1.4 D. Honest solo rounds on `micro` from init measured
 * ||m|| / ||φ|| at most 0.19 at the default lr (6e-4, H = 50) and 0.41 at five times it, so D
 * stays within 0.3 ||φ|| and a pair's worst case is 1.9 ||φ||; 4 leaves twice that. Momentum
 * beyond it is no honest replica's: its next outer step moves φ by α·m, more than twice φ itself
 * (a good φ served with m = 1e30 was adopted and moved to 9e29 by one solo step).
 */
export const MAX_MOMENTUM_RATIO = 4;

/** Null when a state's momentum is within MAX_MOMENTUM_RATIO of its φ; otherwise by how much not. */
export function stateMomentumError(phi: Float32Array, momentum: Float32Array): string | null {
  let p = 0, m = 0;
  for (let i = 0; i < phi.length; i++) p += phi[i]! * phi[i]!;
  for (let i = 0; i < momentum.length; i++) m += momentum[i]! * momentum[i]!;
  const ratio = Math.sqrt(m) / Math.sqrt(p);
  if (m === 0 || ratio <= MAX_MOMENTUM_RATIO) return null;
  return `its momentum's norm is ${Number.isFinite(ratio) ? ratio.toPrecision(3) : ratio} times φ's, beyond the ${MAX_MOMENTUM_RATIO} any honest state carries`;
}

/** Null when a state's counters could be true; otherwise what is wrong with them. */
export function stateCounterError(c: { step: number; round: number }): string | null {
  for (const [name, v] of [['step', c.step], ['round', c.round]] as const) {
    if (!(Number.isInteger(v) && v >= 0 && v <= MAX_STATE_COUNTER)) return `${name} ${String(v).slice(0, 24)} is outside [0, ${MAX_STATE_COUNTER}]`;
  }
  if (c.round > c.step + 1) return `round ${c.round} is ahead of step ${c.step}: every outer round takes at least one inner step`;
  return null;
}

/**
 * The validation loss a state may have at most: `margin` above the newest accepted checkpoint's
 * (the coordinator's own measurement), and never above that of guessing uniformly over the
 * vocabulary plus the margin (a fresh init scores about ln(vocab); worse than that is no model).
 */
export function maxStateLoss(newest: number | null, vocab: number, margin = STATE_LOSS_MARGIN): number {
  const uniform = Math.log(vocab);
  return (newest !== null && Number.isFinite(newest) ? Math.min(newest, uniform) : uniform) + margin;
}

const MAX_META = 4096;

export class StateFrameError extends Error {
  override name = 'StateFrameError';
}

function padTo4(n: number): number {
  return (n + 3) & ~3;
}

/** Byte length of a frame for `floats` floats with a header of `headerBytes` bytes. */
/** Room a state frame's JSON header may take: uploads are refused past it, downloads read no further. */
export const STATE_HEADER_MAX = 4096;

export function stateFrameBytes(floats: number, headerBytes: number): number {
  return padTo4(12 + headerBytes) + 8 * floats;
}

export function encodeStateFrame(f: StateFrame): Uint8Array<ArrayBuffer> {
  const { meta, phi, momentum } = f;
  if (phi.length !== meta.floats || momentum.length !== meta.floats) {
    throw new StateFrameError(`state frame: meta.floats=${meta.floats} but phi has ${phi.length} and momentum ${momentum.length}`);
  }
  const json = new TextEncoder().encode(JSON.stringify(meta));
  const head = padTo4(12 + json.length);
  const out = new Uint8Array(head + 8 * meta.floats);
  out.set(new TextEncoder().encode(STATE_MAGIC), 0);
  const dv = new DataView(out.buffer);
  dv.setUint32(4, STATE_VERSION, true);
  dv.setUint32(8, json.length, true);
  out.set(json, 12);
  const f32 = new Float32Array(out.buffer, head, 2 * meta.floats);
  f32.set(phi, 0);
  f32.set(momentum, meta.floats);
  if (!littleEndian()) swap32(out.subarray(head));
  return out;
}

/**
 * Reads only the header: lets the server check a frame before trusting its length. `bytes`: the
 * whole frame's length, as its header gives it.
 */
export function decodeStateMeta(buf: Uint8Array): { meta: StateMeta; dataOffset: number; bytes: number } {
  if (buf.length < 12) throw new StateFrameError(`state frame too short (${buf.length} bytes)`);
  const magic = new TextDecoder().decode(buf.subarray(0, 4));
  if (magic !== STATE_MAGIC) throw new StateFrameError(`not a state frame (magic ${JSON.stringify(magic)}, expected "${STATE_MAGIC}")`);
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const version = dv.getUint32(4, true);
  if (version !== STATE_VERSION) throw new StateFrameError(`state frame version ${version}; this build reads version ${STATE_VERSION}`);
  const n = dv.getUint32(8, true);
  if (n > MAX_META || 12 + n > buf.length) throw new StateFrameError(`state frame header of ${n} bytes is too long`);
  let raw: unknown;
  try {
    raw = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(buf.subarray(12, 12 + n)));
  } catch (err) {
    throw new StateFrameError(`state frame header is not JSON: ${(err as Error).message}`);
  }
  const problem = schemaProblem(StateMeta, raw, 'meta');
  if (problem !== null) throw new StateFrameError(`state frame header: ${problem}`);
  const dataOffset = padTo4(12 + n);
  return { meta: raw as StateMeta, dataOffset, bytes: dataOffset + 8 * (raw as StateMeta).floats };
}

export function decodeStateFrame(buf: Uint8Array): StateFrame {
  const { meta, dataOffset, bytes: expected } = decodeStateMeta(buf);
  if (buf.length !== expected) {
    throw new StateFrameError(`state frame is ${buf.length} bytes; its header (floats=${meta.floats}) needs exactly ${expected}`);
  }
  // Copy into fresh aligned arrays: the input may be a view at any byte offset.
  const data = buf.slice(dataOffset);
  if (!littleEndian()) swap32(data);
  const all = new Float32Array(data.buffer, 0, 2 * meta.floats);
  return { meta, phi: all.subarray(0, meta.floats), momentum: all.subarray(meta.floats) };
}

function littleEndian(): boolean {
  return new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;
}

function swap32(b: Uint8Array): void {
  for (let i = 0; i < b.length; i += 4) {
    let t = b[i]!; b[i] = b[i + 3]!; b[i + 3] = t;
    t = b[i + 1]!; b[i + 1] = b[i + 2]!; b[i + 2] = t;
  }
}
