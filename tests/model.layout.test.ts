import { describe, expect, it } from 'vitest';
import { PRESETS, preset } from '../src/model/config.ts';
import { ALIGN, buildLayout, tensor } from '../src/model/layout.ts';
import { initParams } from '../src/model/init.ts';

describe('parameter layout', () => {
  it('aligns every tensor to 256 bytes and never overlaps', () => {
    for (const c of Object.values(PRESETS)) {
      const l = buildLayout(c);
      let end = 0;
      for (const t of l.tensors) {
        expect(t.offset % ALIGN).toBe(0);
        expect(t.offset).toBeGreaterThanOrEqual(end);
        end = t.offset + t.size;
      }
      expect(l.total).toBeGreaterThanOrEqual(end);
    }
  });

  it('has the Hugging Face GPT-2 names and (in, out) shapes', () => {
    const l = buildLayout(preset('micro'));
    expect(tensor(l, 'transformer.wte.weight').shape).toEqual([256, 32]);
    expect(tensor(l, 'transformer.h.1.attn.c_attn.weight').shape).toEqual([32, 96]);
    expect(tensor(l, 'transformer.h.0.mlp.c_proj.weight').shape).toEqual([128, 32]);
    expect(l.tensors.at(-1)!.name).toBe('transformer.ln_f.bias');
  });

  it('presets are about the sizes their reasons claim', () => {
    const p = (n: keyof typeof PRESETS) => buildLayout(PRESETS[n]).params;
    expect(p('micro')).toBeLessThan(50_000);
    expect(p('tiny')).toBeGreaterThan(0.8e6); expect(p('tiny')).toBeLessThan(1.2e6);
    expect(p('small')).toBeGreaterThan(8e6); expect(p('small')).toBeLessThan(12e6);
    expect(p('base')).toBeGreaterThan(40e6); expect(p('base')).toBeLessThan(60e6);
  });

  it('initialises deterministically with GPT-2 statistics', () => {
    const l = buildLayout(preset('micro'));
    const a = initParams(l, 7), b = initParams(l, 7), c = initParams(l, 8);
    expect(a).toEqual(b);
    expect(a).not.toEqual(c);
    const wte = tensor(l, 'transformer.wte.weight');
    let s = 0, s2 = 0;
    for (let i = 0; i < wte.size; i++) { const x = a[wte.offset + i]!; s += x; s2 += x * x; }
    const std = Math.sqrt(s2 / wte.size - (s / wte.size) ** 2);
    expect(std).toBeGreaterThan(0.018); expect(std).toBeLessThan(0.022);
    const ln = tensor(l, 'transformer.h.0.ln_1.weight');
    expect([...a.subarray(ln.offset, ln.offset + ln.size)].every((x) => x === 1)).toBe(true);
  });
});
