// A manual clock for timer-driven code (pairing waits, heartbeats, backoff): time moves only
// when the test calls advance(), and due timers fire in order.
export class FakeClock {
  private t: number;
  private seq = 0;
  private timers = new Map<number, { at: number; fn: () => void }>();

  constructor(start = 1_700_000_000_000) {
    this.t = start;
  }

  now = (): number => this.t;

  setTimeout = (fn: () => void, ms: number): unknown => {
    const id = ++this.seq;
    this.timers.set(id, { at: this.t + Math.max(0, ms), fn });
    return id;
  };

  clearTimeout = (h: unknown): void => {
    this.timers.delete(h as number);
  };

  get pending(): number {
    return this.timers.size;
  }

  /**
   * Moves time on by `ms`, firing due timers in order; stops firing after `maxFires` (a timer that
   * re-arms itself at 0 ms would otherwise spin for ever). Returns how many fired.
   */
  advance(ms: number, maxFires = Infinity): number {
    const end = this.t + ms;
    let fired = 0;
    while (fired < maxFires) {
      let next: [number, { at: number; fn: () => void }] | null = null;
      for (const e of this.timers) if (e[1].at <= end && (!next || e[1].at < next[1].at)) next = e;
      if (!next) break;
      this.timers.delete(next[0]);
      this.t = next[1].at;
      next[1].fn();
      fired++;
    }
    this.t = end;
    return fired;
  }
}
