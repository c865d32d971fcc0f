import { describe, expect, it } from 'vitest';
import { linePlot } from '../src/sim/svg.ts';

describe('SVG line plot', () => {
  it('draws one line, band and legend entry per series, with escaped labels', () => {
    const svg = linePlot({
      title: 'loss <vs> time', xLabel: 'seconds', yLabel: 'loss',
      series: [
        { label: 'a & b', x: [0, 1, 2], y: [3, 2, 1], lo: [2.5, 1.5, 0.5], hi: [3.5, 2.5, 1.5] },
        { label: 'c', x: [0, 2], y: [3, 2.5], dashed: true },
      ],
    });
    expect(svg.startsWith('<svg')).toBe(true);
    expect(svg.trim().endsWith('</svg>')).toBe(true);
    expect(svg.match(/<polyline/g)).toHaveLength(2);
    expect(svg.match(/<polygon/g)).toHaveLength(1);
    expect(svg).toContain('loss &lt;vs&gt; time');
    expect(svg).toContain('a &amp; b');
    expect(svg).toContain('stroke-dasharray');
  });

  it('maps points inside the plot area on log axes', () => {
    const svg = linePlot({ title: 't', xLabel: 'n', yLabel: 's', logX: true, logY: true,
      series: [{ label: 'x', x: [2, 1024], y: [0.1, 30] }] });
    const pts = svg.match(/<polyline[^>]*points="([^"]+)"/)![1].split(' ').map((p) => p.split(',').map(Number));
    for (const [x, y] of pts) {
      expect(x).toBeGreaterThanOrEqual(70);
      expect(x).toBeLessThanOrEqual(720 - 190);
      expect(y).toBeGreaterThanOrEqual(40);
      expect(y).toBeLessThanOrEqual(440 - 55);
    }
  });

  it('refuses a plot with nothing to draw', () => {
    expect(() => linePlot({ title: 'empty', xLabel: '', yLabel: '', series: [{ label: 'x', x: [1], y: [Number.NaN] }] }))
      .toThrow(/no finite points/);
  });
});
