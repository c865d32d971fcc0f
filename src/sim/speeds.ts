// Replica speed distributions. A replica of speed s takes stepTime / s seconds per inner step.
import { Rng } from '../model/rng.ts';

export type SpeedSpec =
  | { kind: 'uniform'; lo: number; hi: number }
  | { kind: 'lognormal'; sigma: number }
  | { kind: 'equal' }
  | { kind: 'list'; values: number[] };

/**
 * Parses `uniform:1:4`, `lognormal:0.5` (median 1), `equal`, or a list `1,2,4` (replica i gets
 * value i mod length).
 */
export function parseSpeeds(s: string): SpeedSpec {
  const bad = (why: string) => new Error(`speeds "${s}": ${why}; use uniform:LO:HI, lognormal:SIGMA, equal, or a list like 1,2,4`);
  const num = (x: string) => {
    const v = Number(x);
    if (x.trim() === '' || !Number.isFinite(v)) throw bad(`"${x}" is not a number`);
    return v;
  };
  if (s === 'equal') return { kind: 'equal' };
  const [kind, ...rest] = s.split(':');
  let spec: SpeedSpec;
  if (kind === 'uniform') {
    if (rest.length !== 2) throw bad('uniform needs LO and HI');
    spec = { kind, lo: num(rest[0]), hi: num(rest[1]) };
  } else if (kind === 'lognormal') {
    if (rest.length !== 1) throw bad('lognormal needs SIGMA');
    spec = { kind, sigma: num(rest[0]) };
  } else if (rest.length === 0 && /^[\d.,\seE+-]+$/.test(s)) {
    spec = { kind: 'list', values: s.split(',').map(num) };
  } else throw bad('unknown distribution');
  validateSpeeds(spec);
  return spec;
}

export function validateSpeeds(spec: SpeedSpec): void {
  if (spec.kind === 'uniform' && !(spec.lo > 0 && spec.hi >= spec.lo)) throw new Error(`speeds: uniform needs 0 < lo <= hi, got ${spec.lo}..${spec.hi}`);
  if (spec.kind === 'lognormal' && !(spec.sigma >= 0)) throw new Error(`speeds: lognormal sigma must be >= 0, got ${spec.sigma}`);
  if (spec.kind === 'list' && !(spec.values.length > 0 && spec.values.every((v) => v > 0))) throw new Error(`speeds: a list needs positive speeds, got ${spec.values.join(',')}`);
}

/** The speed of the `index`-th replica to exist (joiners continue the sequence). */
export function drawSpeed(spec: SpeedSpec, index: number, rng: Rng): number {
  switch (spec.kind) {
    case 'uniform': return spec.lo + (spec.hi - spec.lo) * rng.uniform();
    case 'lognormal': return Math.exp(spec.sigma * rng.normal());
    case 'equal': return 1;
    case 'list': return spec.values[index % spec.values.length];
  }
}
