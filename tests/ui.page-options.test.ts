import { describe, expect, it } from 'vitest';
import { pageOptions } from '../src/ui/browser/page-options.ts';

describe('volunteer page URL options', () => {
  it('reads ?evalEvery= and ignores bad values with a warning', () => {
    expect(pageOptions('?run=x&evalEvery=2', () => { throw new Error('no warning expected'); })).toEqual({ evalEveryRounds: 2 });
    expect(pageOptions('?evalEvery=0')).toEqual({ evalEveryRounds: 0 });
    expect(pageOptions('?run=x')).toEqual({});
    for (const bad of ['-1', '1.5', 'abc', '', '1001', '99999']) {
      const warnings: string[] = [];
      expect(pageOptions(`?evalEvery=${bad}`, (m) => warnings.push(m))).toEqual({});
      expect(warnings[0]).toMatch(/evalEvery.*0 to 1000/);
    }
  });
});
