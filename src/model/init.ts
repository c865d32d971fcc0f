// Deterministic GPT-2 initialisation of the flat parameter buffer from a seed.
import type { Layout } from './layout.ts';
import { Rng } from './rng.ts';

/** Fresh parameters: normal(0, std) weights in layout order, ones for LN gains, zeros elsewhere. */
export function initParams(layout: Layout, seed: number): Float32Array {
  const flat = new Float32Array(layout.total);
  const rng = new Rng(seed, 0x1417);
  for (const t of layout.tensors) {
    const v = flat.subarray(t.offset, t.offset + t.size);
    if (t.init.kind === 'ones') v.fill(1);
    else if (t.init.kind === 'normal') for (let i = 0; i < v.length; i++) v[i] = rng.normal() * t.init.std;
  }
  return flat;
}
