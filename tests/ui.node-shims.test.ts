// The browser stand-ins for Node's `events` and `process.nextTick` that simple-peer's streams
// need (src/ui/browser/node-shims), checked against Node's own EventEmitter.
import { describe, expect, it } from 'vitest';
import { EventEmitter as NodeEE } from 'node:events';
import { EventEmitter } from '../src/ui/browser/node-shims/events.ts';
import { installProcessShim } from '../src/ui/browser/node-shims/process.ts';

function script(E: typeof NodeEE) {
  const log: string[] = [];
  const e = new E();
  const a = (x: unknown) => log.push(`a${x}`);
  const b = (x: unknown) => log.push(`b${x}`);
  e.on('x', a);
  e.prependListener('x', b);
  e.once('x', (x) => log.push(`once${x}`));
  e.prependOnceListener('x', (x) => log.push(`ponce${x}`));
  log.push(String(e.listenerCount('x')));
  e.emit('x', 1);
  e.emit('x', 2);
  e.removeListener('x', b);
  e.emit('x', 3);
  log.push(String(e.emit('nothing')));
  log.push(String(E.listenerCount(e, 'x')));
  let threw = '';
  try { e.emit('error', new Error('boom')); } catch (err) { threw = (err as Error).message; }
  log.push(threw);
  e.removeAllListeners();
  log.push(String(e.listenerCount('x')));
  return log;
}

describe('browser node shims', () => {
  it('behaves like Node\'s EventEmitter where readable-stream relies on it', () => {
    expect(script(EventEmitter as unknown as typeof NodeEE)).toEqual(script(NodeEE));
  });

  it('can be subclassed the pre-ES2015 way (EventEmitter.call(this))', () => {
    function Stream(this: { tag: string }) {
      (EventEmitter as unknown as (this: unknown) => void).call(this);
      this.tag = 'stream';
    }
    Stream.prototype = Object.create(EventEmitter.prototype);
    const s = new (Stream as unknown as new () => InstanceType<typeof NodeEE> & { tag: string })();
    let got = 0;
    s.on('data', (n: number) => { got = n; });
    s.emit('data', 7);
    expect(got).toBe(7);
    expect(s.tag).toBe('stream');
  });

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
