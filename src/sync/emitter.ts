// A small typed event emitter: the mesh's events are checked at compile time, and a throwing
// listener is reported instead of breaking the mesh's own state machine.

export type Listener<T> = (event: T) => void;

export class Emitter<M extends object> {
  private listeners = new Map<keyof M, Set<Listener<never>>>();

  constructor(private readonly onListenerError: (err: unknown, event: keyof M) => void = () => {}) {}

  /** Subscribe; returns the unsubscribe function. */
  on<K extends keyof M>(event: K, fn: Listener<M[K]>): () => void {
    let set = this.listeners.get(event);
    if (!set) this.listeners.set(event, (set = new Set()));
    set.add(fn as Listener<never>);
    return () => { set.delete(fn as Listener<never>); };
  }

  /** Subscribe for the next event only. */
  once<K extends keyof M>(event: K, fn: Listener<M[K]>): () => void {
    const off = this.on(event, (e) => { off(); fn(e); });
    return off;
  }

  emit<K extends keyof M>(event: K, payload: M[K]): void {
    const set = this.listeners.get(event);
    if (!set) return;
    for (const fn of [...set]) {
      try {
        (fn as Listener<M[K]>)(payload);
      } catch (err) {
        this.onListenerError(err, event);
      }
    }
  }

  listenerCount(event: keyof M): number {
    return this.listeners.get(event)?.size ?? 0;
  }

  clear(): void {
    this.listeners.clear();
  }
}
