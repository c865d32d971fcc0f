// A min-heap of timed events ordered by (time, priority, insertion order): the simulator's clock
// and the consent store's expiry queue. Equal keys never depend on heap internals, so a
// simulated run is the same on every machine.

export interface Timed {
  time: number;
  /** Lower runs first among events at the same time. */
  priority: number;
}

interface Entry<E> { ev: E; seq: number }

export class EventQueue<E extends Timed> {
  private heap: Entry<E>[] = [];
  private seq = 0;

  get size(): number { return this.heap.length; }

  push(ev: E): void {
    if (!Number.isFinite(ev.time)) throw new Error(`EventQueue: event time must be finite, got ${ev.time}`);
    const h = this.heap;
    h.push({ ev, seq: this.seq++ });
    let i = h.length - 1;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (!before(h[i], h[p])) break;
      [h[i], h[p]] = [h[p], h[i]];
      i = p;
    }
  }

  peek(): E | undefined { return this.heap[0]?.ev; }

  pop(): E | undefined {
    const h = this.heap;
    if (h.length === 0) return undefined;
    const top = h[0];
    const last = h.pop()!;
    if (h.length > 0) {
      h[0] = last;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1, r = l + 1;
        let m = i;
        if (l < h.length && before(h[l], h[m])) m = l;
        if (r < h.length && before(h[r], h[m])) m = r;
        if (m === i) break;
        [h[i], h[m]] = [h[m], h[i]];
        i = m;
      }
    }
    return top.ev;
  }
}

function before<E extends Timed>(a: Entry<E>, b: Entry<E>): boolean {
  if (a.ev.time !== b.ev.time) return a.ev.time < b.ev.time;
  if (a.ev.priority !== b.ev.priority) return a.ev.priority < b.ev.priority;
  return a.seq < b.seq;
}
