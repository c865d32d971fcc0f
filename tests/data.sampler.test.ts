import { describe, expect, it } from 'vitest';
import type { Batch } from '../src/data/batch.ts';
import { Rng } from '../src/model/rng.ts';
import { WindowSampler, validationBatches } from '../src/data/sampler.ts';

// Random bytes: a window of 8+ tokens occurs once in the text, so its start can be found.
const N = 5000;
const noise = new Rng(2024, 7);
const text = Uint8Array.from({ length: N }, () => noise.int(256));

/** Checks every row is a contiguous slice of `data` with targets shifted by one; returns starts. */
function windowStarts(batch: Batch, data: Uint8Array): number[] {
  const starts: number[] = [];
  for (let b = 0; b < batch.B; b++) {
    const row = Array.from(batch.tokens.subarray(b * batch.T, (b + 1) * batch.T));
    const tgt = Array.from(batch.targets.subarray(b * batch.T, (b + 1) * batch.T));
    expect(tgt.slice(0, -1)).toEqual(row.slice(1));
    const found: number[] = [];
    for (let s = 0; s + batch.T < data.length; s++) {
      if (row.every((v, t) => data[s + t] === v) && tgt.every((v, t) => data[s + t + 1] === v)) found.push(s);
    }
    expect(found.length, `row ${b} is not exactly one window of the text`).toBe(1);
    starts.push(found[0]);
  }
  return starts;
}

describe('WindowSampler', () => {
  it('gives tokens and next-token targets from T+1 windows inside the text', () => {
    const s = new WindowSampler(text, { seed: 1, replica: 0 });
    for (let k = 0; k < 5; k++) {
      const batch = s.next(4, 16);
      expect(batch.B).toBe(4);
      expect(batch.T).toBe(16);
      expect(batch.tokens).toBeInstanceOf(Uint32Array);
      expect(batch.tokens.length).toBe(64);
      windowStarts(batch, text);
    }
    expect(s.windows).toBe(20);
  });

  it('is deterministic per (seed, replica), and replicas differ', () => {
    const draw = (seed: number, replica: number) => {
      const s = new WindowSampler(text, { seed, replica });
      return [s.next(8, 32), s.next(8, 32)].map((b) => Array.from(b.tokens));
    };
    expect(draw(7, 3)).toEqual(draw(7, 3));
    expect(draw(7, 3)).not.toEqual(draw(7, 4));
    expect(draw(7, 3)).not.toEqual(draw(8, 3));
  });

  it('reaches both ends of the text and spreads windows across it', () => {
    const small = Uint8Array.from({ length: 40 }, (_, i) => i);
    const T = 8;
    const s = new WindowSampler(small, { seed: 3, replica: 0 });
    const seen = new Set<number>();
    for (let k = 0; k < 200; k++) {
      const b = s.next(4, T);
      for (let r = 0; r < 4; r++) seen.add(b.tokens[r * T]);
    }
    // Starts 0 .. N-T-1 are all possible (the last window's target is the last token).
    expect([...seen].sort((a, b) => a - b)).toEqual(Array.from({ length: 40 - T }, (_, i) => i));
  });

  it('refills a reused batch and checks its shape', () => {
    const s = new WindowSampler(text, { seed: 5, replica: 1 });
    const fresh = new WindowSampler(text, { seed: 5, replica: 1 }).next(2, 8);
    const out: Batch = { B: 2, T: 8, tokens: new Uint32Array(16), targets: new Uint32Array(16) };
    expect(s.next(2, 8, out)).toBe(out);
    expect(out.tokens).toEqual(fresh.tokens);
    expect(() => s.next(3, 8, out)).toThrow(/reused batch is \(2, 8\) but next\(\) was asked for \(3, 8\)/);
  });

  it('rejects text shorter than one window and bad shapes', () => {
    const s = new WindowSampler(new Uint8Array(16), { seed: 1, replica: 0 });
    expect(() => s.next(1, 16)).toThrow(/training text is 16 tokens, shorter than one window of T\+1 = 17/);
    expect(s.next(1, 15).tokens.length).toBe(15);
    expect(() => s.next(0, 4)).toThrow(/B=0/);
    expect(() => new WindowSampler(text, { seed: 1.5, replica: 0 })).toThrow(/integer seed/);
  });
});

describe('validationBatches', () => {
  it('is a fixed, evenly spaced list of windows covering the text', () => {
    const a = validationBatches(text, 4, 32, 3);
    const b = validationBatches(text, 4, 32, 3);
    expect(a).toEqual(b);
    expect(a.length).toBe(3);
    const starts = a.flatMap((batch) => windowStarts(batch, text));
    expect(starts[0]).toBe(0);
    expect(starts.at(-1)).toBe(N - 32 - 1); // the last window ends on the last token
    const gaps = starts.slice(1).map((s, i) => s - starts[i]);
    expect(Math.max(...gaps) - Math.min(...gaps)).toBeLessThanOrEqual(1);
  });

  it('does not depend on any random state', () => {
    // Drawing training batches in between changes nothing.
    const before = validationBatches(text, 2, 8, 2);
    new WindowSampler(text, { seed: 9, replica: 0 }).next(8, 8);
    expect(validationBatches(text, 2, 8, 2)).toEqual(before);
  });

  it('handles a single window and rejects text shorter than T+1', () => {
    const [one] = validationBatches(text, 1, 10, 1);
    expect(Array.from(one.tokens)).toEqual(Array.from(text.subarray(0, 10)));
    expect(() => validationBatches(new Uint8Array(10), 1, 10, 1)).toThrow(/validation text is 10 tokens, shorter than one window of T\+1 = 11/);
    expect(() => validationBatches(text, 1, 10, 0)).toThrow(/count must be a positive integer/);
  });
});
