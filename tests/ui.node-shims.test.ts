// The browser stand-in for Node's `process.nextTick` that simple-peer's streams need
// (`events` comes from the npm package of that name).
import { describe, expect, it } from 'vitest';
import { installProcessShim } from '../src/ui/browser/node-shims/process.ts';

describe('browser node shims', () => {
  it('provides process.nextTick with arguments, after the current task', async () => {
    const g: { process?: { nextTick?: unknown } } = {};
    installProcessShim(g);
    const nextTick = g.process!.nextTick as (fn: (...a: unknown[]) => void, ...a: unknown[]) => void;
    const order: string[] = [];
    await new Promise<void>((done) => {
      nextTick((x: unknown, y: unknown) => { order.push(`tick ${x} ${y}`); done(); }, 1, 2);
      order.push('sync');
    });
    expect(order).toEqual(['sync', 'tick 1 2']);
  });
});
