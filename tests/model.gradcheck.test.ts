// Gradient check of the whole reference model: the analytic backward pass against fourth-order
// central finite differences of the mean loss, in float64, for every parameter tensor of the
// micro preset. Sampled coordinates include wte rows of tokens in the batch (encoder + LM head
// paths), a wte row absent from the batch (LM head path only), and wpe rows of the first and
// last positions.
import { describe, expect, it } from 'vitest';
import { preset } from '../src/model/config.ts';
import { buildLayout, tensor } from '../src/model/layout.ts';
import { initParams } from '../src/model/init.ts';
import { Rng } from '../src/model/rng.ts';
import { ReferenceGPT } from '../src/model/reference.ts';
import { randomBatch } from './support/batches.ts';
import { centralDiff } from './support/numeric.ts';

// |analytic - numeric| / max(|analytic|, |numeric|, 1e-4) < 1e-6. The floor: with h = 1e-4 the
// difference carries ~1e-11 of float64 rounding, meaningless relative to a gradient of ~0, so
// gradients below 1e-4 are held to 1e-10 absolute instead.
const REL_TOL = 1e-6;
const FLOOR = 1e-4;

describe('gradient check (micro preset, float64)', () => {
  const layout = buildLayout(preset('micro'));
  const { d: C } = layout.config;
  const B = 2, T = 16;
  const batch = randomBatch(B, T, 11);
  const params = Float64Array.from(initParams(layout, 3));
  // Break the symmetry of the initial LayerNorm gains and zero biases, so their gradients are
  // checked at a generic point rather than at 1 and 0.
  const rng = new Rng(5, 1);
  for (const t of layout.tensors) {
    if (t.init.kind !== 'normal') for (let i = 0; i < t.size; i++) params[t.offset + i] += 0.1 * rng.normal();
  }
  const model = new ReferenceGPT(layout, 'f64');
  const grads = new Float64Array(layout.total);
  model.forward(params, batch);
  model.backward(params, grads);
  const loss = () => model.forward(params, batch);

  function coordinates(name: string): number[] {
    const t = tensor(layout, name);
    const picks = new Set<number>();
    for (let k = 0; k < 4; k++) picks.add(rng.int(t.size));
    if (name === 'transformer.wte.weight') {
      const present = new Set(batch.tokens);
      const absent = [...Array(layout.config.vocab).keys()].find((v) => !present.has(v) && !batch.targets.includes(v))!;
      for (const row of [batch.tokens[0]!, batch.tokens[B * T - 1]!, absent]) picks.add(row * C + rng.int(C));
    }
    if (name === 'transformer.wpe.weight') for (const pos of [0, T - 1]) picks.add(pos * C + rng.int(C));
    return [...picks].map((i) => t.offset + i);
  }

  for (const spec of layout.tensors) {
    it(spec.name, () => {
      for (const i of coordinates(spec.name)) {
        const numeric = centralDiff(params, i, loss);
        const err = Math.abs(grads[i]! - numeric) / Math.max(Math.abs(grads[i]!), Math.abs(numeric), FLOOR);
        expect(err, `${spec.name}[${i - spec.offset}]: analytic ${grads[i]} vs numeric ${numeric}`).toBeLessThan(REL_TOL);
      }
    });
  }

  it('the checked gradients are not trivially zero', () => {
    let nonzero = 0;
    for (const t of layout.tensors) {
      let m = 0;
      for (let i = 0; i < t.size; i++) m = Math.max(m, Math.abs(grads[t.offset + i]!));
      if (m > 1e-4) nonzero++;
    }
    expect(nonzero).toBe(layout.tensors.length);
  });
});
