// AdamW, gradient norm and clipping against values worked out by hand.
import { describe, expect, it } from 'vitest';
import { preset } from '../src/model/config.ts';
import { buildLayout, tensor } from '../src/model/layout.ts';
import { adamwUpdate, clipGrads, gradNorm } from '../src/model/adamw.ts';

const layout = buildLayout(preset('micro'));
const cfg = { beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0.1 };
const W = tensor(layout, 'transformer.h.0.mlp.c_fc.weight'); // decayed
const G = tensor(layout, 'transformer.h.0.ln_1.weight'); // not decayed

describe('adamwUpdate', () => {
  it('matches two hand-computed steps, with decay only where the layout says so', () => {
    const p = new Float32Array(layout.total), g = new Float32Array(layout.total);
    const m = new Float32Array(layout.total), v = new Float32Array(layout.total);
    const w = W.offset + 5, n = G.offset + 3;
    p[w] = 1; p[n] = 1;
    const lr = 0.1;

    g[w] = 0.5; g[n] = 0.5;
    adamwUpdate(p, g, m, v, layout, 1, lr, cfg);
    // m = 0.1*0.5 = 0.05; v = 0.05*0.25 = 0.0125; m^ = 0.05/0.1 = 0.5; v^ = 0.0125/0.05 = 0.25
    // decayed: 1*(1 - 0.1*0.1) - 0.1 * 0.5/(0.5 + 1e-8);  not decayed: 1 - 0.1 * 0.5/(0.5 + 1e-8)
    expect(m[w]).toBeCloseTo(0.05, 7);
    expect(v[w]).toBeCloseTo(0.0125, 8);
    const step1 = 0.1 * 0.5 / (0.5 + 1e-8);
    expect(p[w]).toBeCloseTo(0.99 - step1, 6);
    expect(p[n]).toBeCloseTo(1 - step1, 6);

    g[w] = -0.25; g[n] = -0.25;
    const pw1 = p[w]!, pn1 = p[n]!;
    adamwUpdate(p, g, m, v, layout, 2, lr, cfg);
    // m = 0.9*0.05 - 0.1*0.25 = 0.02; v = 0.95*0.0125 + 0.05*0.0625 = 0.015
    // bias corrections 1 - 0.9^2 = 0.19 and 1 - 0.95^2 = 0.0975
    expect(m[w]).toBeCloseTo(0.02, 7);
    expect(v[w]).toBeCloseTo(0.015, 8);
    const step2 = (0.1 / 0.19) * 0.02 / (Math.sqrt(0.015) / Math.sqrt(0.0975) + 1e-8);
    expect(p[w]).toBeCloseTo(pw1 * 0.99 - step2, 6);
    expect(p[n]).toBeCloseTo(pn1 - step2, 6);
  });

  it('leaves the padding between tensors alone and checks its arguments', () => {
    const p = new Float32Array(layout.total).fill(2), g = new Float32Array(layout.total).fill(1);
    const m = new Float32Array(layout.total), v = new Float32Array(layout.total);
    const pad = G.offset + G.size; // ln_1.weight has 32 floats in a 64-float slot
    expect(tensor(layout, 'transformer.h.0.ln_1.bias').offset).toBeGreaterThan(pad);
    adamwUpdate(p, g, m, v, layout, 1, 0.01, cfg);
    expect(p[pad]).toBe(2);
    expect(m[pad]).toBe(0);
    expect(p[G.offset]).not.toBe(2);
    expect(() => adamwUpdate(p, g, m, v, layout, 0, 0.01, cfg)).toThrow(/step counts from 1/);
    expect(() => adamwUpdate(p, g.subarray(1), m, v, layout, 1, 0.01, cfg)).toThrow(/grads has/);
  });
});

describe('gradNorm and clipGrads', () => {
  it('computes the global L2 norm', () => {
    expect(gradNorm(new Float32Array([3, 0, 4]))).toBe(5);
    expect(gradNorm(new Float32Array(10))).toBe(0);
  });

  it('scales by maxNorm / (norm + 1e-6) above the limit and returns the pre-clip norm', () => {
    const g = new Float32Array([3, 0, 4]);
    expect(clipGrads(g, 1)).toBe(5);
    const c = 1 / (5 + 1e-6);
    expect(g[0]).toBeCloseTo(3 * c, 7);
    expect(g[2]).toBeCloseTo(4 * c, 7);
    expect(gradNorm(g)).toBeCloseTo(1, 6);
  });

  it('leaves gradients below the limit untouched', () => {
    const g = new Float32Array([0.3, 0.4]);
    expect(clipGrads(g, 1)).toBeCloseTo(0.5, 7);
    expect([...g]).toEqual([Math.fround(0.3), Math.fround(0.4)]);
    expect(() => clipGrads(g, 0)).toThrow(/maxNorm/);
  });
});
