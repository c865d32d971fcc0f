// Deterministic random numbers: the same seed gives the same weights and the same data windows
// on every machine and backend (Math.random is neither seedable nor portable).

/** SplitMix64-derived 32-bit generator with a 64-bit state held in two uint32 halves. */
export class Rng {
  private hi: number;
  private lo: number;
  private spare: number | null = null;

  constructor(seed: number, stream = 0) {
    // Mix seed and stream so (seed, replica) pairs give unrelated sequences.
    this.hi = (Math.imul(seed | 0, 0x9e3779b9) ^ 0x85ebca6b ^ Math.imul(stream | 0, 0xc2b2ae35)) >>> 0;
    this.lo = (Math.imul((stream | 0) + 0x632be5ab, 0x27d4eb2f) ^ (seed >>> 0)) >>> 0;
    for (let i = 0; i < 4; i++) this.nextU32();
  }

  /** Uniform uint32. */
  nextU32(): number {
    // xorshift64* on two 32-bit halves, then a murmur3 finaliser on the output.
    let hi = this.hi, lo = this.lo;
    // x ^= x >> 12
    lo ^= (lo >>> 12) | (hi << 20); hi ^= hi >>> 12;
    // x ^= x << 25
    hi ^= (hi << 25) | (lo >>> 7); lo ^= lo << 25;
    // x ^= x >> 27
    lo ^= (lo >>> 27) | (hi << 5); hi ^= hi >>> 27;
    this.hi = hi >>> 0; this.lo = lo >>> 0;
    let z = (this.hi ^ Math.imul(this.lo, 0x2545f491)) >>> 0;
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
    return (z ^ (z >>> 16)) >>> 0;
  }

  /** Uniform in [0, 1) with 32 bits of resolution. */
  uniform(): number {
    return this.nextU32() / 4294967296;
  }

  /** Uniform integer in [0, n). */
  int(n: number): number {
    return Math.floor(this.uniform() * n);
  }

  /** Standard normal (Box-Muller, caching the second value). */
  normal(): number {
    if (this.spare !== null) { const s = this.spare; this.spare = null; return s; }
    let u = 0;
    while (u === 0) u = this.uniform();
    const v = this.uniform();
    const r = Math.sqrt(-2 * Math.log(u));
    this.spare = r * Math.sin(2 * Math.PI * v);
    return r * Math.cos(2 * Math.PI * v);
  }
}
