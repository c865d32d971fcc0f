// Pure logic behind the three faces: consent, duty cycle, back-off policy, series for charts,
// alert rules, CSV. No browser needed.
import { describe, expect, it } from 'vitest';
import { CONSENT_DAYS, CONSENT_KEY, CONSENT_TEXT_VERSION, ConsentStore, type ConsentStorage } from '../src/ui/core/consent.ts';
import { chunkSteps, clampIntensity, DutyMeter, restMs } from '../src/ui/core/duty.ts';
import { HOLD_MS, initialPolicy, nextRecheck, stepPolicy, type PolicyState, type Sensors } from '../src/ui/core/policy.ts';
import { binMean, binMedian, binRange, downsampleMinMax, fillGaps, makeGrid, median, smoothEma } from '../src/ui/core/series.ts';
import { divergenceAlerts, nanAlerts, stallAlerts, throughputAlerts, type LossPoint } from '../src/ui/core/alerts.ts';
import { csvCell, toCsv } from '../src/ui/core/csv.ts';

class MemStorage implements ConsentStorage {
  m = new Map<string, string>();
  getItem(k: string) { return this.m.get(k) ?? null; }
  setItem(k: string, v: string) { this.m.set(k, v); }
  removeItem(k: string) { this.m.delete(k); }
}
const blocked: ConsentStorage = {
  getItem() { throw new Error('SecurityError'); },
  setItem() { throw new Error('SecurityError'); },
  removeItem() { throw new Error('SecurityError'); },
};

describe('consent', () => {
  it('is absent until granted, then remembered across stores on the same storage', () => {
    let now = 1_000_000;
    const storage = new MemStorage();
    const a = new ConsentStore(storage, () => now);
    expect(a.get('default')).toBeNull();
    const rec = a.grant('default');
    expect(rec.expiresAt - rec.grantedAt).toBe(CONSENT_DAYS * 86_400_000);
    const b = new ConsentStore(storage, () => now);
    expect(b.get('default')).toEqual(rec);
    expect(b.persistent).toBe(true);
  });

  it('expires, is per run, and is revocable', () => {
    let now = 0;
    const storage = new MemStorage();
    const s = new ConsentStore(storage, () => now);
    s.grant('default', 2);
    expect(s.get('other-run')).toBeNull();
    now = 2 * 86_400_000 - 1;
    expect(s.get('default')).not.toBeNull();
    now += 1;
    expect(s.get('default')).toBeNull();
    s.grant('default');
    s.revoke();
    expect(s.get('default')).toBeNull();
    expect(storage.getItem(CONSENT_KEY)).toBeNull();
  });

  it('treats a malformed or older-text record as no consent', () => {
    const storage = new MemStorage();
    const s = new ConsentStore(storage, () => 5);
    storage.setItem(CONSENT_KEY, '{not json');
    expect(s.get('default')).toBeNull();
    storage.setItem(CONSENT_KEY, JSON.stringify({ runId: 'default', textVersion: '0', grantedAt: 0, expiresAt: 1e15 }));
    expect(s.get('default')).toBeNull();
  });

  it('checks the stored record against its schema: a record grant() never writes is no consent', () => {
    // Issue 16: each of these passed the old hand check (strings and finite numbers).
    const storage = new MemStorage();
    const s = new ConsentStore(storage, () => 5);
    const good = { runId: 'default', textVersion: CONSENT_TEXT_VERSION, grantedAt: 1, expiresAt: 1e13 };
    storage.setItem(CONSENT_KEY, JSON.stringify(good));
    expect(s.get('default')).toEqual(good);
    for (const bad of [
      { ...good, expiresAt: 1e300 }, // never lapses
      { ...good, grantedAt: -1 },
      { ...good, expiresAt: 1e13 + 0.5 },
      { ...good, forever: true },
      [good],
    ]) {
      storage.setItem(CONSENT_KEY, JSON.stringify(bad));
      expect(s.get('default'), JSON.stringify(bad)).toBeNull();
    }
  });

  it('writes nothing before consent is given', () => {
    const storage = new MemStorage();
    const s = new ConsentStore(storage, () => 1);
    expect(s.get('default')).toBeNull();
    expect([...storage.m.keys()]).toEqual([]);
  });

  it('keeps consent for the page when writing is refused', () => {
    const readOnly: ConsentStorage = { getItem: () => null, setItem() { throw new Error('QuotaExceededError'); }, removeItem() {} };
    const s = new ConsentStore(readOnly, () => 1);
    expect(s.persistent).toBe(true);
    s.grant('default');
    expect(s.persistent).toBe(false);
    expect(s.get('default')).not.toBeNull();
  });

  it('falls back to page-lifetime consent when storage is blocked', () => {
    const s = new ConsentStore(blocked, () => 1);
    expect(s.persistent).toBe(false);
    s.grant('default');
    expect(s.get('default')).not.toBeNull();
    expect(new ConsentStore(blocked, () => 1).get('default')).toBeNull();
    expect(() => s.grant('default', 0)).toThrow(/positive number of days/);
  });
});

describe('duty cycle', () => {
  it('rests so that busy / (busy + rest) equals the intensity', () => {
    for (const d of [0.1, 0.25, 0.5, 0.9, 1]) {
      const rest = restMs(200, d);
      expect(200 / (200 + rest)).toBeCloseTo(d, 12);
    }
    expect(() => restMs(100, 0)).toThrow(/positive/);
  });

  it('clamps intensity to [0.1, cap]', () => {
    expect(clampIntensity(0.01)).toBe(0.1);
    expect(clampIntensity(2)).toBe(1);
    expect(clampIntensity(0.8, 0.5)).toBe(0.5);
    expect(clampIntensity(0.3, 0.5)).toBe(0.3);
    expect(() => clampIntensity(NaN)).toThrow(/intensity must be a number/);
  });

  it('sizes chunks to the target time and never past the outer step', () => {
    expect(chunkSteps(null, 50)).toBe(1);
    expect(chunkSteps(10, 50, 250)).toBe(25);
    expect(chunkSteps(10, 7, 250)).toBe(7);
    expect(chunkSteps(1000, 50, 250)).toBe(1);
    expect(chunkSteps(10, 0)).toBe(0);
  });

  it('measures the duty cycle over a sliding window', () => {
    const m = new DutyMeter(1000);
    // 100 ms busy, 300 ms idle, repeated: 25%
    for (let t = 0; t < 4000; t += 400) m.busy(t, t + 100);
    expect(m.value(4000)).toBeCloseTo(0.25, 2);
    expect(m.value(10_000)).toBe(0);
  });
});

describe('back-off policy', () => {
  const quiet: Sensors = { hidden: false, battery: null, pressure: null };
  const settings = { pauseWhenHidden: true };
  const run = (steps: [number, Partial<Sensors>][], s = settings): PolicyState[] => {
    let st = initialPolicy();
    return steps.map(([t, sens]) => (st = stepPolicy(st, { ...quiet, ...sens }, s, t)));
  };

  it('runs at full power with no sensors', () => {
    expect(run([[0, {}]])[0]).toMatchObject({ level: 2, reasons: [] });
  });

  it('pauses while hidden and resumes at once when visible, unless background work is allowed', () => {
    const [a, b] = run([[0, { hidden: true }], [1, { hidden: false }]]);
    expect(a).toMatchObject({ level: 0, reasons: ['hidden'] });
    expect(b!.level).toBe(2);
    expect(run([[0, { hidden: true }]], { pauseWhenHidden: false })[0]!.level).toBe(2);
  });

  it('backs off on battery with hysteresis on the charge level', () => {
    const bat = (level: number, charging = false) => ({ battery: { level, charging } });
    const states = run([
      [0, bat(0.8)], // discharging: reduced
      [1, bat(0.15)], // below 20%: pause
      [2, bat(0.25)], // above 20% but below 30%: still paused
      [3, bat(0.31)], // wants reduced, must hold 30 s
      [3 + HOLD_MS, bat(0.31)], // held: reduced
      [4 + HOLD_MS, bat(0.31, true)], // plugged in: wants full, must hold
      [4 + 2 * HOLD_MS, bat(0.31, true)],
    ]);
    expect(states.map((s) => s.level)).toEqual([1, 0, 0, 0, 1, 1, 2]);
    expect(states[1]!.reasons).toEqual(['battery']);
  });

  it('backs off on serious / critical compute pressure and recovers only after the hold', () => {
    const states = run([
      [0, { pressure: 'fair' }],
      [1000, { pressure: 'serious' }],
      [2000, { pressure: 'critical' }],
      [3000, { pressure: 'nominal' }],
      [3000 + HOLD_MS - 1, { pressure: 'nominal' }],
      [3000 + HOLD_MS + 10, { pressure: 'critical' }], // flaps back: the hold starts again
      [3000 + HOLD_MS + 20, { pressure: 'serious' }],
      [3000 + 2 * HOLD_MS + 19, { pressure: 'serious' }],
      [3000 + 2 * HOLD_MS + 20, { pressure: 'serious' }], // better than critical for a full hold
    ]);
    expect(states.map((s) => s.level)).toEqual([2, 1, 0, 0, 0, 0, 0, 0, 1]);
    expect(nextRecheck(states[3]!, 3000)).toBe(HOLD_MS);
    expect(nextRecheck(states[0]!, 0)).toBeNull();
  });

  it('takes the lowest level over all sources and names each', () => {
    const [s] = run([[0, { hidden: true, pressure: 'serious', battery: { level: 0.5, charging: false } }]]);
    expect(s).toMatchObject({ level: 0, reasons: ['hidden', 'battery', 'pressure'] });
  });
});

describe('series for charts', () => {
  it('smooths with a debiased EMA and skips non-finite values', () => {
    expect(smoothEma([1, 1, 1], 0.9)).toEqual([1, 1, 1].map(() => expect.closeTo(1, 12)));
    const s = smoothEma([2, NaN, null, 4], 0.5);
    expect(s[1]).toBeNull();
    expect(s[2]).toBeNull();
    // acc: 1 -> 0.5*1 + 0.5*4 = 2.5, debias 1 - 0.25 = 0.75
    expect(s[3]).toBeCloseTo(2.5 / 0.75, 12);
    expect(() => smoothEma([1], 1)).toThrow(/\[0, 1\)/);
  });

  it('builds linear and log grids and bins values into them', () => {
    const lin = makeGrid(0, 10, 5, false);
    expect(lin.x).toEqual([1, 3, 5, 7, 9]);
    const log = makeGrid(1, 1000, 3, true);
    expect(log.x.map((v) => Math.round(Math.log10(v) * 100) / 100)).toEqual([0.5, 1.5, 2.5]);
    expect(() => makeGrid(0, 10, 3, true)).toThrow(/positive lower bound/);
    const mean = binMean(lin, { x: [0.5, 1.5, 9.9, 11], y: [1, 3, 7, 100] });
    expect(mean).toEqual([2, null, null, null, 7]);
  });

  it('gives the median across peers and the raw min/max band per bin', () => {
    const g = makeGrid(0, 2, 2, false);
    const a = { x: [0.5, 1.5], y: [1, 4] }, b = { x: [0.5, 1.5], y: [3, null] }, c = { x: [0.5], y: [10] };
    const binned = [a, b, c].map((s) => binMean(g, s));
    expect(binMedian(binned, 2)).toEqual([3, 4]);
    expect(binRange(g, [a, b, c])).toEqual({ min: [1, 4], max: [10, 4] });
    expect(median([])).toBeNull();
    expect(median([4, 1, 3, 2])).toBe(2.5);
    // quickselect against a sort, with duplicates
    for (let n = 1; n < 60; n++) {
      const v = Array.from({ length: n }, (_, i) => ((i * 7919) % 13) - 6);
      const s = [...v].sort((a, b) => a - b);
      const want = n % 2 ? s[n >> 1] : (s[(n >> 1) - 1]! + s[n >> 1]!) / 2;
      expect(median(v)).toBe(want);
    }
  });

  it('fills interior gaps by interpolation, never extrapolates', () => {
    expect(fillGaps([null, 1, null, null, 4, null])).toEqual([null, 1, 2, 3, 4, null]);
    expect(fillGaps([null, null])).toEqual([null, null]);
  });

  it('downsamples long series keeping extremes and non-finite spikes', () => {
    const n = 10_000;
    const x = Array.from({ length: n }, (_, i) => i);
    const y: (number | null)[] = x.map((i) => Math.sin(i / 100));
    y[5000] = 50;
    y[7000] = NaN;
    const d = downsampleMinMax(x, y, 300);
    expect(d.x.length).toBeLessThanOrEqual(302);
    expect(d.y).toContain(50);
    expect(d.y.some((v) => v !== null && Number.isNaN(v))).toBe(true);
    expect(d.x[0]).toBe(0);
    expect(d.x[d.x.length - 1]).toBe(n - 1);
    expect(downsampleMinMax([1, 2], [3, 4], 10)).toEqual({ x: [1, 2], y: [3, 4] });
  });
});

describe('alert rules', () => {
  const pts = (losses: (number | null)[], t0 = 0): LossPoint[] =>
    losses.map((l, i) => ({ t: t0 + i * 1000, step: i * 10, trainLoss: l, valLoss: null }));

  it('flags a NaN or infinite loss', () => {
    expect(nanAlerts('p-1', pts([5, 4, 3]))).toEqual([]);
    const [a] = nanAlerts('p-1', pts([5, NaN]));
    expect(a).toMatchObject({ kind: 'nan', severity: 'critical', peerId: 'p-1', t: 1000 });
    expect(a!.message).toMatch(/NaN training loss at step 10/);
    expect(nanAlerts('p-2', [{ t: 0, step: 3, trainLoss: 2, valLoss: Infinity }])[0]!.message).toMatch(/infinite validation/);
  });

  it('flags divergence only when the rise is sustained', () => {
    expect(divergenceAlerts('p-1', pts([5, 4, 3, 2.5, 2.4, 2.3]))).toEqual([]);
    expect(divergenceAlerts('p-1', pts([5, 3, 2, 2, 9, 2, 2]))).toEqual([]); // one spike
    const [a] = divergenceAlerts('p-1', pts([5, 3, 2, 2, 9, 9, 9, 9]));
    expect(a).toMatchObject({ kind: 'divergence', peerId: 'p-1' });
  });

  it('flags a live peer whose step stopped moving, not a departed one', () => {
    const now = 1_000_000;
    const peers = [
      { peerId: 'p-a', step: 10, lastSeen: now - 1000, stepChangedAt: now - 200_000 },
      { peerId: 'p-b', step: 10, lastSeen: now - 1000, stepChangedAt: now - 5000 },
      { peerId: 'p-c', step: 10, lastSeen: now - 600_000, stepChangedAt: now - 700_000 },
    ];
    expect(stallAlerts(peers, now, 30_000).map((a) => a.peerId)).toEqual(['p-a']);
  });

  it('flags a throughput drop against the recent median', () => {
    const now = 1_000_000;
    const steady = Array.from({ length: 27 }, (_, i) => ({ t: now - 300_000 + i * 10_000, tokensPerS: 1000 }));
    expect(throughputAlerts([...steady, { t: now - 5000, tokensPerS: 900 }, { t: now, tokensPerS: 950 }], now)).toEqual([]);
    const [a] = throughputAlerts([...steady, { t: now - 5000, tokensPerS: 300 }, { t: now, tokensPerS: 200 }], now);
    expect(a).toMatchObject({ kind: 'throughput', peerId: null });
    expect(a!.message).toMatch(/250 tokens\/s, 25%/);
    expect(throughputAlerts([{ t: now, tokensPerS: 1 }, { t: now, tokensPerS: 1 }], now)).toEqual([]); // no baseline
  });
});

describe('CSV', () => {
  it('quotes, escapes and keeps non-finite numbers readable', () => {
    expect(csvCell('a,b')).toBe('"a,b"');
    expect(csvCell('say "hi"')).toBe('"say ""hi"""');
    expect(csvCell(null)).toBe('');
    expect(csvCell(NaN)).toBe('NaN');
    expect(csvCell(-Infinity)).toBe('-Infinity');
    expect(csvCell('=HYPERLINK("x")')).toBe(`"'=HYPERLINK(""x"")"`);
    const csv = toCsv([{ a: 1, b: 'x' }, { a: 2.5, b: null }], [{ name: 'a', get: (r) => r.a }, { name: 'b', get: (r) => r.b }]);
    expect(csv).toBe('a,b\r\n1,x\r\n2.5,\r\n');
  });

  /**
   * The fields a spreadsheet reads from `text` when it splits on `sep`: Excel takes a .csv by the
   * locale's list separator (';' in much of Europe), and a quote opens a quoted field only at the
   * field's start. Records end at a line break outside quotes.
   */
  const spreadsheetFields = (text: string, sep: string): string[] => {
    const out: string[] = [];
    let i = 0;
    while (i < text.length) {
      let f = '';
      if (text[i] === '"') {
        for (i++; i < text.length; i++) {
          if (text[i] === '"' && text[i + 1] === '"') { f += '"'; i++; } else if (text[i] === '"') { i++; break; } else f += text[i];
        }
      }
      for (; i < text.length && text[i] !== sep && text[i] !== '\r' && text[i] !== '\n'; i++) f += text[i];
      out.push(f);
      i += text[i] === '\r' && text[i + 1] === '\n' ? 2 : 1;
    }
    return out;
  };

  it('leaves no field that starts a formula, whichever separator the spreadsheet splits on', () => {
    // A volunteer names its own adapter (200 characters of anything): the rows are read by researchers.
    const adapters = ['GPU;=1+cmd|\' /C calc\'!A0', 'GPU\t@SUM(1+1)', 'GPU\n=1+1', 'GPU\r\n+1+1', 'x, y;-2+3', '=1+1', 'plain; -text'];
    const csv = toCsv(adapters.map((adapter, i) => ({ i, adapter })), [{ name: 'i', get: (r) => r.i }, { name: 'adapter', get: (r) => r.adapter }]);
    for (const sep of [',', ';', '\t']) {
      const formulas = spreadsheetFields(csv, sep).filter((f) => /^[=+\-@]/.test(f));
      expect(formulas, `split on ${JSON.stringify(sep)}`).toEqual([]);
    }
    // Read on commas, as written, each adapter comes back whole behind one quote per place it was disarmed.
    const fields = spreadsheetFields(csv, ',');
    expect(fields.filter((_, k) => k % 2 === 1).slice(1)).toEqual([
      "GPU;'=1+cmd|' /C calc'!A0", "GPU\t'@SUM(1+1)", "GPU\n'=1+1", "GPU\r\n'+1+1", "x, y;'-2+3", "'=1+1", 'plain; -text',
    ]);
  });
});
