// The smallest change feed a controller needs: elements (through LitWatch) and tests subscribe.
import type { ReactiveController, ReactiveControllerHost } from 'lit';

export class Observable {
  private listeners = new Set<() => void>();

  subscribe(fn: () => void): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  protected notify(): void {
    for (const fn of [...this.listeners]) fn();
  }
}

/** Re-renders a Lit element whenever the observed controller changes (thin components). */
export class LitWatch implements ReactiveController {
  private off: (() => void) | null = null;

  constructor(private readonly host: ReactiveControllerHost, private readonly target: () => Observable | null | undefined) {
    host.addController(this);
  }

  hostConnected(): void {
    this.rebind();
  }

  /** Call when the host's controller object was replaced. */
  rebind(): void {
    this.off?.();
    this.off = this.target()?.subscribe(() => this.host.requestUpdate()) ?? null;
    this.host.requestUpdate();
  }

  hostDisconnected(): void {
    this.off?.();
    this.off = null;
  }
}

/** An async result as elements render it. */
export type Task<T> =
  | { status: 'pending' }
  | { status: 'complete'; value: T }
  | { status: 'error'; error: string };
