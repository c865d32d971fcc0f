// What `npm run bench:nat -- --turn-cap` runs, from its arguments: the preset, the coturn caps,
// the run's training settings, the rounds and the results file; and what each cap predicts for an
// exchange. Pure, so tests/bench.nat-turn-cap.test.ts checks it without namespaces.
//   --preset micro|tiny  micro (the default): 282 KB each way, rows uncapped, at TURN_DEFAULTS'
//                        max-bps, 140 and 70 KB/s, into nat-turn-cap.json. tiny: the default
//                        run's 8.3 MB each way, rows at TURN_DEFAULTS' max-bps and 700,000 (the
//                        least round cap whose bytes x 1.25, the old RELAY_OVERHEAD, fit the 15 s
//                        first wait), into nat-turn-cap-tiny.json, so micro's file stays.
//   --caps A,B,...       max-bps per row, bytes/s (0: uncapped), instead of the preset's.
//   --out NAME.json      the results file under bench/results/ instead of the preset's.
// With or without --turn-cap:
//   --keep-logs DIR      each volunteer's whole output (--verbose: mesh and link events too), one
//                        file per volunteer and row under DIR/<row>/, each line after its ms.
import { RELAY_OVERHEAD, TURN_DEFAULTS } from '../server/turn-config.ts';

export type CapPreset = 'micro' | 'tiny';

export interface TurnCapPlan {
  preset: CapPreset;
  /** coturn max-bps per row (0: uncapped). */
  caps: number[];
  /** The run's `train` settings (POST /api/runs). */
  train: { batch: number; H: number; lr: number; warmupSteps: number; totalSteps: number };
  /** Partnered rounds each volunteer has before a row ends. */
  rounds: number;
  /** File name under bench/results/. */
  out: string;
}

/** micro's f32 exchange is 282 KB each way: at 140 KB/s about 2 s, where the default's fraction of a second hides in the round. */
export const TURN_CAP_LOW = 140_000;
/**
 * tiny's lower row: 8,326,144 x 1.25 / 700,000 = 14.87 s, the least round cap the old RELAY_OVERHEAD
 * (1.25) put inside the 15 s first wait (694,000 exactly). Both first exchanges there missed it, which
 * is why RELAY_OVERHEAD became 1.7 (1.9 since the 1 MB/s rows of nat-turn-cap-tiny-join-*.json, 2.3
 * since the 1.25 MB/s rows of nat-turn-cap-tiny-1250k.json), at which this row is predicted at 27.36 s
 * and turn-config warns.
 */
export const TINY_CAP_LOW = 700_000;

const PRESETS: Record<CapPreset, (quick: boolean) => Omit<TurnCapPlan, 'preset'>> = {
  micro: (quick) => ({
    caps: [0, TURN_DEFAULTS.maxBps, TURN_CAP_LOW, TURN_CAP_LOW / 2],
    train: { batch: 4, H: 10, lr: 3e-3, warmupSteps: 4, totalSteps: 2000 },
    rounds: quick ? 3 : 8,
    out: 'nat-turn-cap.json',
  }),
  // tiny on CPU takes about 0.35 s a step per sequence (bench/results/cpu.json: 2.8 s at batch 8):
  // batch 1 and H 2 keep a round's compute to a second or two beside its 8 to 15 s exchange, and 3
  // partnered rounds each give at least 3 exchanges a row, the first of each against the 15 s wait.
  tiny: () => ({
    caps: [TURN_DEFAULTS.maxBps, TINY_CAP_LOW],
    train: { batch: 1, H: 2, lr: 3e-3, warmupSteps: 4, totalSteps: 2000 },
    rounds: 3,
    out: 'nat-turn-cap-tiny.json',
  }),
};

function valueOf(argv: string[], flag: string): string | undefined {
  const i = argv.indexOf(flag);
  if (i < 0) return undefined;
  const v = argv[i + 1];
  if (v === undefined || v.startsWith('--')) throw new Error(`${flag} needs a value`);
  return v;
}

/** The --turn-cap plan from the command line; throws naming a bad --preset or --caps. */
export function turnCapPlan(argv: string[]): TurnCapPlan {
  const quick = argv.includes('--quick');
  const name = valueOf(argv, '--preset') ?? 'micro';
  if (!(name in PRESETS)) throw new Error(`--preset "${name}": bench:nat --turn-cap runs micro or tiny`);
  const preset = name as CapPreset;
  const plan: TurnCapPlan = { preset, ...PRESETS[preset](quick) };
  const caps = valueOf(argv, '--caps');
  if (caps !== undefined) {
    plan.caps = caps.split(',').map((s) => {
      if (!/^\d{1,10}$/.test(s.trim())) throw new Error(`--caps "${caps}": "${s}" is not a max-bps in bytes/s (a whole number, 0 for uncapped)`);
      return Number(s.trim());
    });
  }
  const out = valueOf(argv, '--out');
  if (out !== undefined) {
    if (!/^[\w-][\w.-]{0,100}\.json$/.test(out)) throw new Error(`--out "${out}": a file name under bench/results/ ending .json (letters, digits, . _ -)`);
    plan.out = out;
  }
  return plan;
}

/** Without --turn-cap, --preset and --caps mean nothing: say so rather than run the NAT table on micro. */
export function turnCapFlagsAlone(argv: string[]): string | null {
  if (argv.includes('--turn-cap')) return null;
  const stray = ['--preset', '--caps', '--out'].filter((f) => argv.includes(f));
  return stray.length ? `${stray.join(' and ')} ${stray.length > 1 ? 'apply' : 'applies'} only with --turn-cap` : null;
}

/**
 * What a cap predicts for an exchange of `bytes` each way (both ways run at once, and coturn caps
 * each direction apart): bytes / max-bps, and bytes x RELAY_OVERHEAD / max-bps, what
 * `murmur turn-config` checks (server/turn-config.ts relayedExchange). Null uncapped.
 */
export function capPrediction(bytes: number, maxBps: number): { predicted_ms: number; overhead_ms: number } | null {
  if (!maxBps) return null;
  return { predicted_ms: Math.round((bytes / maxBps) * 1000), overhead_ms: Math.round(((bytes * RELAY_OVERHEAD) / maxBps) * 1000) };
}

/** --keep-logs DIR: where each row's volunteer logs go (null without the flag); throws on a missing value. */
export function keepLogsDir(argv: string[]): string | null {
  return valueOf(argv, '--keep-logs') ?? null;
}

/** A row's folder name under --keep-logs: `cone-turn-relay-only-1000000`. */
export function rowLogName(nat: string, ice: string, maxBps: number | undefined): string {
  return [nat, ice, ...(maxBps === undefined ? [] : [String(maxBps)])].join('-').replace(/[^\w.-]+/g, '-');
}
