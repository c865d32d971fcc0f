// Replay memory: catches a partner that sends an update it did not compute this round (a Δ it
// sent before, one it got from another peer, or ours sent back). Such a Δ passes every size and
// direction check, since it was honest once. Each Δ is reduced to a sketch: k signed bucket sums
// (a CountSketch: coordinate i adds ±Δ[i] to one bucket, both drawn from a hash of i and a seed),
// that is, k sparse random projections, in one pass. Cosines between sketches estimate cosines
// between the full vectors. The last few sketches are kept in a fixed ring, whoever sent them.
// The seed is drawn per validator and never sent: a partner that knew the buckets could move a
// replay's sketch past the bound with noise laid along them, √(k/n) of what random noise needs
// (0.07% of the norm instead of 4.5% for a million elements at k = 256).

/**
 * Buckets per sketch (k). The most alike honest pair of the bench read 0.9920 as sketches of 256
 * buckets against 0.9918 in full; 64 buckets read 0.9939 on a shorter run (bench/replay.ts
 * --buckets 64 --only 2 --seeds 1 --steps 1000), a quarter of the margin gone. The pass costs the
 * same at any k.
 */
export const REPLAY_BUCKETS = 256;
/** Sketches kept: ours and the partner's for each of the last 32 exchanges (128 KB at k = 256). */
export const REPLAY_KEPT = 64;
/**
 * A received Δ whose sketch has a cosine above this with a remembered one is that Δ again.
 * Measured on honest swarms of the micro GPT (bench/replay.ts, bench/results/replay.json,
 * docs/design.md section 6): a peer's Δ and its own of the round before reached 0.9918 (sketch
 * 0.9920; H = 4 in the LR warm-up, where AdamW's momentum carries each inner loop along the last),
 * so 1 − cos of an honest pair was 0.008 at the least, 8× this bound's 0.001. A replay with noise of
 * 1% of its norm reads 0.99992 at the least, one of 5% 0.998: noise of about 4.5% of the norm or
 * more passes, and is then the probe's to judge.
 */
export const REPLAY_COSINE = 0.999;

/**
 * Where honest Δs are more alike than the bench's (H = 1: each Δ one AdamW step, which momentum
 * carries along the last; micro read 0.99873 between consecutive Δs, 0.99901 as sketches), the
 * bound sits this many times closer to 1 than the most alike pair of our own recent Δs, as
 * REPLAY_COSINE sits 8× closer than the bench's honest extreme (PartnerValidator.replayBound).
 */
export const REPLAY_MARGIN = 8;

export interface ReplaySettings {
  buckets: number;
  kept: number;
  cosine: number;
}

export const DEFAULT_REPLAY: ReplaySettings = { buckets: REPLAY_BUCKETS, kept: REPLAY_KEPT, cosine: REPLAY_COSINE };

/** A Δ's sketch: its bucket sums and the squared norm of those. */
export interface Sketch {
  sums: Float64Array;
  /** Σ sums², so a cosine costs one dot product. */
  sq: number;
  /** ||Δ|| of the full vector, for the report. */
  norm: number;
}

/** One remembered update: whose it was (null: our own), our round when it passed, its sketch. */
export interface Remembered {
  peer: string | null;
  round: number;
  sketch: Sketch;
}

export interface ReplayMatch {
  entry: Remembered;
  cosine: number;
}

/** A 32-bit mix of i under `seed` (the finaliser of MurmurHash3, a public-domain constant set). */
function mix(i: number, seed: number): number {
  let h = Math.imul(i ^ seed, 0x9e3779b1);
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

export class ReplayMemory {
  private readonly ring: Remembered[] = [];
  private next = 0;
  private readonly seed: number;

  /** `random` (uniform in [0, 1)) draws the seed of the buckets. */
  constructor(readonly settings: ReplaySettings = DEFAULT_REPLAY, random: () => number = Math.random) {
    if (!(Number.isInteger(settings.buckets) && settings.buckets >= 2 && settings.buckets <= 4096)) {
      throw new RangeError(`replay: buckets must be an integer in [2, 4096], got ${settings.buckets}`);
    }
    if (!(Number.isInteger(settings.kept) && settings.kept >= 1 && settings.kept <= 4096)) {
      throw new RangeError(`replay: kept must be an integer in [1, 4096], got ${settings.kept}`);
    }
    if (!(settings.cosine > 0 && settings.cosine <= 1)) throw new RangeError(`replay: cosine must be in (0, 1], got ${settings.cosine}`);
    this.seed = Math.floor(random() * 0x100000000) >>> 0;
  }

  /** Sketches remembered now (at most settings.kept). */
  get size(): number {
    return this.ring.length;
  }

  /** The sketch of `delta`: one pass. */
  sketch(delta: Float32Array): Sketch {
    const k = this.settings.buckets;
    const sums = new Float64Array(k);
    let dd = 0;
    for (let i = 0; i < delta.length; i++) {
      const h = mix(i, this.seed);
      const d = delta[i];
      dd += d * d;
      sums[(h >>> 1) % k] += h & 1 ? d : -d;
    }
    let sq = 0;
    for (let b = 0; b < k; b++) sq += sums[b] * sums[b];
    return { sums, sq, norm: Math.sqrt(dd) };
  }

  /** Cosine of two sketches; null when either is zero. */
  static cosine(a: Sketch, b: Sketch): number | null {
    if (!(a.sq > 0 && b.sq > 0) || a.sums.length !== b.sums.length) return null;
    let dot = 0;
    for (let i = 0; i < a.sums.length; i++) dot += a.sums[i] * b.sums[i];
    const c = dot / Math.sqrt(a.sq * b.sq);
    return Number.isFinite(c) ? c : null;
  }

  /** The remembered sketch nearest to `s` by cosine, whatever the cosine; null when none. */
  nearest(s: Sketch): ReplayMatch | null {
    let best: ReplayMatch | null = null;
    for (const entry of this.ring) {
      const c = ReplayMemory.cosine(s, entry.sketch);
      if (c !== null && (best === null || c > best.cosine)) best = { entry, cosine: c };
    }
    return best;
  }

  /** The highest cosine of `s` with our own remembered sketches of rounds other than `round`; null when none. */
  nearestOwn(s: Sketch, round: number): number | null {
    let best: number | null = null;
    for (const e of this.ring) {
      if (e.peer !== null || e.round === round) continue;
      const c = ReplayMemory.cosine(s, e.sketch);
      if (c !== null && (best === null || c > best)) best = c;
    }
    return best;
  }

  /** The nearest remembered sketch when its cosine with `s` is above settings.cosine: `s` is a replay of it. */
  match(s: Sketch): ReplayMatch | null {
    const best = this.nearest(s);
    return best !== null && best.cosine > this.settings.cosine ? best : null;
  }

  /**
   * Keeps `s` as `peer`'s update at our `round` (peer null: our own), over the oldest once full.
   * Our own update of a round is kept once: a second one of the same round replaces it.
   */
  remember(s: Sketch, round: number, peer: string | null): void {
    if (peer === null) {
      const same = this.ring.findIndex((e) => e.peer === null && e.round === round);
      if (same >= 0) { this.ring[same] = { peer, round, sketch: s }; return; }
    }
    const entry = { peer, round, sketch: s };
    if (this.ring.length < this.settings.kept) this.ring.push(entry);
    else this.ring[this.next] = entry;
    this.next = (this.next + 1) % this.settings.kept;
  }
}
