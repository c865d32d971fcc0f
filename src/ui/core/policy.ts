// When to back off: a pure function of the sensors, the previous decision and the clock, so the
// whole policy is unit-tested without a browser.
//
// Three sources each ask for a level: full power, reduced (half the chosen intensity) or pause.
//   tab hidden      pause while hidden (the default; the volunteer can allow background work)
//   battery         reduced while discharging; pause below 20% and not before 30% again
//   compute pressure  'serious' reduced, 'critical' pause (the browser's own thermal/power signal)
// Going down is immediate; going back up needs the better reading to hold for HOLD_MS
// (hysteresis), so a machine at the edge of a threshold does not toggle the GPU every second.
// Visibility is the exception: the volunteer sees the tab and expects it to resume at once.

export type Level = 0 | 1 | 2; // 0 pause, 1 reduced, 2 full
export const LEVEL_FACTOR: Record<Level, number> = { 0: 0, 1: 0.5, 2: 1 };

export type PressureState = 'nominal' | 'fair' | 'serious' | 'critical';
export type Source = 'hidden' | 'battery' | 'pressure';

export interface BatteryReading { charging: boolean; level: number }

export interface Sensors {
  hidden: boolean;
  /** null: the browser has no Battery Status API (or it is a desktop without a battery). */
  battery: BatteryReading | null;
  /** null: no Compute Pressure API here. */
  pressure: PressureState | null;
}

export interface PolicySettings {
  pauseWhenHidden: boolean;
}

export const BATTERY_PAUSE_BELOW = 0.2;
export const BATTERY_RESUME_AT = 0.3;
export const HOLD_MS = 30_000;

interface SourceState {
  level: Level;
  /** Since when the raw reading has asked for a higher level than `level` (null: it has not). */
  betterSince: number | null;
}

export interface PolicyState {
  sources: Record<Source, SourceState>;
  /** min over sources */
  level: Level;
  /** Sources holding the level below full, for the UI to explain ("paused: tab hidden"). */
  reasons: Source[];
}

export function initialPolicy(): PolicyState {
  const full = (): SourceState => ({ level: 2, betterSince: null });
  return { sources: { hidden: full(), battery: full(), pressure: full() }, level: 2, reasons: [] };
}

function hiddenRaw(s: Sensors, settings: PolicySettings): Level {
  return s.hidden && settings.pauseWhenHidden ? 0 : 2;
}

/** Battery asks with hysteresis on the charge level itself: pause below 20%, resume at 30%. */
function batteryRaw(s: Sensors, prev: Level): Level {
  const b = s.battery;
  if (!b || b.charging) return 2;
  if (b.level < BATTERY_PAUSE_BELOW) return 0;
  if (prev === 0 && b.level < BATTERY_RESUME_AT) return 0;
  return 1;
}

function pressureRaw(s: Sensors): Level {
  switch (s.pressure) {
    case 'critical': return 0;
    case 'serious': return 1;
    default: return 2;
  }
}

function advance(prev: SourceState, raw: Level, now: number, holdMs: number): SourceState {
  if (raw <= prev.level) return { level: raw, betterSince: null };
  const since = prev.betterSince ?? now;
  if (now - since >= holdMs) return { level: raw, betterSince: null };
  return { level: prev.level, betterSince: since };
}

export function stepPolicy(
  prev: PolicyState,
  sensors: Sensors,
  settings: PolicySettings,
  now: number,
  holdMs = HOLD_MS,
): PolicyState {
  const sources: Record<Source, SourceState> = {
    hidden: { level: hiddenRaw(sensors, settings), betterSince: null },
    battery: advance(prev.sources.battery, batteryRaw(sensors, prev.sources.battery.level), now, holdMs),
    pressure: advance(prev.sources.pressure, pressureRaw(sensors), now, holdMs),
  };
  const order: Source[] = ['hidden', 'battery', 'pressure'];
  const level = Math.min(...order.map((k) => sources[k].level)) as Level;
  const reasons = order.filter((k) => sources[k].level < 2);
  return { sources, level, reasons };
}

/** Milliseconds until a pending recovery could happen (for scheduling a re-check), or null. */
export function nextRecheck(state: PolicyState, now: number, holdMs = HOLD_MS): number | null {
  let best: number | null = null;
  for (const s of Object.values(state.sources)) {
    if (s.betterSince === null) continue;
    const due = Math.max(0, s.betterSince + holdMs - now);
    best = best === null ? due : Math.min(best, due);
  }
  return best;
}
