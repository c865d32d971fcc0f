// The page's view of the machine's state: tab visibility, the Battery Status API and the Compute
// Pressure API, each where the browser has it. What is missing is reported (support()) so the
// volunteer page can say "this browser does not tell us about your battery" instead of
// pretending to watch it.
import type { PressureState, Sensors } from '../core/policy.ts';
import type { SensorPort } from '../ports.ts';

interface BatteryManagerLike extends EventTarget { charging: boolean; level: number }
interface PressureRecordLike { source: string; state: PressureState }
interface PressureObserverLike { observe(source: string, opts?: { sampleInterval?: number }): Promise<void>; disconnect(): void }
type PressureObserverCtor = new (cb: (records: PressureRecordLike[]) => void) => PressureObserverLike;

export class BrowserSensors implements SensorPort {
  private state: Sensors = { hidden: document.visibilityState === 'hidden', battery: null, pressure: null };
  private supported = { battery: false, pressure: false };
  private fns = new Set<() => void>();
  private observer: PressureObserverLike | null = null;

  /** Starts listening; resolves once the optional APIs answered (or were found missing). */
  static async start(): Promise<BrowserSensors> {
    const s = new BrowserSensors();
    document.addEventListener('visibilitychange', () => s.update({ hidden: document.visibilityState === 'hidden' }));
    await Promise.all([s.startBattery(), s.startPressure()]);
    return s;
  }

  read(): Sensors { return this.state; }
  support() { return { ...this.supported }; }
  subscribe(fn: () => void): () => void {
    this.fns.add(fn);
    return () => { this.fns.delete(fn); };
  }

  private update(patch: Partial<Sensors>): void {
    this.state = { ...this.state, ...patch };
    for (const fn of [...this.fns]) fn();
  }

  private async startBattery(): Promise<void> {
    const getBattery = (navigator as { getBattery?: () => Promise<BatteryManagerLike> }).getBattery;
    if (typeof getBattery !== 'function') return;
    try {
      const b = await getBattery.call(navigator);
      // Desktops report a permanently charging, full "battery": that is no battery to protect.
      this.supported.battery = true;
      const read = () => this.update({ battery: { charging: b.charging, level: b.level } });
      b.addEventListener('chargingchange', read);
      b.addEventListener('levelchange', read);
      read();
    } catch {
      // Blocked by a permissions policy (e.g. in a frame): treated as unavailable.
    }
  }

  private async startPressure(): Promise<void> {
    const Ctor = (globalThis as { PressureObserver?: PressureObserverCtor }).PressureObserver;
    if (typeof Ctor !== 'function') return;
    try {
      // Browsers expose only the 'cpu' source today; GPU heat shows up there through the package.
      const obs = new Ctor((records) => {
        const last = records[records.length - 1];
        if (last) this.update({ pressure: last.state });
      });
      await obs.observe('cpu', { sampleInterval: 2000 });
      this.observer = obs;
      this.supported.pressure = true;
    } catch {
      // NotAllowedError in frames without the "compute-pressure" permission policy.
    }
  }

  dispose(): void {
    this.observer?.disconnect();
    this.fns.clear();
  }
}
