// `npm run bench:nat -- --turn-cap` on the default run's preset: what bench/nat-turn-cap.ts plans
// from the command line (no namespaces needed), and what each cap predicts for tiny's exchange.
import { describe, expect, it } from 'vitest';
import { capPrediction, TINY_CAP_LOW, turnCapFlagsAlone, turnCapPlan } from '../bench/nat-turn-cap.ts';
import { runExchangeBytes } from '../src/commands/turn-config.ts';
import { relayedExchange, TURN_DEFAULTS } from '../server/turn-config.ts';
import { DEFAULT_DEADLINE } from '../src/protocol/exchange-link.ts';

const argv = (...a: string[]) => ['node', 'bench/nat.ts', '--turn-cap', ...a];

describe('bench:nat --turn-cap plan', () => {
  it('micro stays as it was: uncapped, the default cap, 140 and 70 KB/s, into nat-turn-cap.json', () => {
    expect(turnCapPlan(argv('--quick'))).toMatchObject({ preset: 'micro', caps: [0, TURN_DEFAULTS.maxBps, 140_000, 70_000], rounds: 3, out: 'nat-turn-cap.json' });
    expect(turnCapPlan(argv()).rounds).toBe(8);
  });

  it('--preset tiny runs the default run at the default cap and 700,000, into its own file, few rounds at batch 1 and H 2', () => {
    const plan = turnCapPlan(argv('--preset', 'tiny'));
    expect(plan).toEqual({
      preset: 'tiny', caps: [1_000_000, 700_000], rounds: 3, out: 'nat-turn-cap-tiny.json',
      train: { batch: 1, H: 2, lr: 3e-3, warmupSteps: 4, totalSteps: 2000 },
    });
    // 700,000 is the least round cap whose predicted first exchange fits the 15 s wait.
    const tiny = runExchangeBytes({ preset: 'tiny', compression: 'none' });
    expect(relayedExchange(TINY_CAP_LOW, tiny, DEFAULT_DEADLINE).warning).toBeNull();
    expect(relayedExchange(TINY_CAP_LOW - 10_000, tiny, DEFAULT_DEADLINE).warning).toMatch(/longer than the 15 s/);
  });

  it('--caps replaces the preset\'s rows; a bad --preset or --caps is refused by name', () => {
    expect(turnCapPlan(argv('--preset', 'tiny', '--caps', '1000000,0')).caps).toEqual([1_000_000, 0]);
    expect(() => turnCapPlan(argv('--preset', 'small'))).toThrow(/--preset "small": bench:nat --turn-cap runs micro or tiny/);
    expect(() => turnCapPlan(argv('--caps', '1e6,700000'))).toThrow(/"1e6" is not a max-bps in bytes\/s/);
    expect(() => turnCapPlan(argv('--caps', '-5'))).toThrow(/"-5" is not a max-bps/);
    expect(() => turnCapPlan(argv('--caps', '--quick'))).toThrow(/--caps needs a value/);
    expect(() => turnCapPlan(argv('--preset'))).toThrow(/--preset needs a value/);
    expect(turnCapFlagsAlone(['node', 'bench/nat.ts', '--preset', 'tiny'])).toBe('--preset applies only with --turn-cap');
    expect(turnCapFlagsAlone(argv('--preset', 'tiny'))).toBeNull();
    expect(turnCapFlagsAlone(['node', 'bench/nat.ts', '--caps', '0', '--out', 'x.json'])).toBe('--caps and --out apply only with --turn-cap');
  });

  it('--out names another results file, and only a plain .json name under bench/results/', () => {
    expect(turnCapPlan(argv('--preset', 'tiny', '--caps', '0', '--out', 'nat-turn-cap-tiny-uncapped.json')).out).toBe('nat-turn-cap-tiny-uncapped.json');
    for (const bad of ['../nat.json', 'results/x.json', 'x.txt', '.json']) {
      expect(() => turnCapPlan(argv('--out', bad)), bad).toThrow(/a file name under bench\/results\/ ending .json/);
    }
  });

  it('each cap predicts bytes / max-bps and bytes x 1.25 / max-bps: tiny at 1 MB/s 8.33 s and 10.41 s', () => {
    const { bytes } = runExchangeBytes({ preset: 'tiny', compression: 'none' });
    expect(bytes).toBe(8_326_144);
    expect(capPrediction(bytes, 1_000_000)).toEqual({ predicted_ms: 8326, overhead_ms: 10408 });
    expect(capPrediction(bytes, 700_000)).toEqual({ predicted_ms: 11894, overhead_ms: 14868 });
    expect(capPrediction(bytes, 0)).toBeNull();
  });
});
