// Node's `events` module for the browser build, as far as simple-peer's stream dependency
// (readable-stream) uses it: the browser has no EventEmitter and Vite does not polyfill Node
// built-ins. vite.config.ts points the bare import `events` here.
// A constructor function, not a class: readable-stream subclasses it the pre-ES2015 way
// (`EventEmitter.call(this)`), which a class constructor refuses.
// TODO(lead): the npm package `events` is the maintained polyfill; with it installed, drop this
// file and the alias.

type Listener = ((...args: unknown[]) => void) & { listener?: (...args: unknown[]) => void };
type Name = string | symbol;

export interface EventEmitter {
  _events?: Map<Name, Listener[]>;
  on(name: Name, fn: Listener): this;
  addListener(name: Name, fn: Listener): this;
  prependListener(name: Name, fn: Listener): this;
  once(name: Name, fn: Listener): this;
  prependOnceListener(name: Name, fn: Listener): this;
  removeListener(name: Name, fn: Listener): this;
  off(name: Name, fn: Listener): this;
  removeAllListeners(name?: Name): this;
  emit(name: Name, ...args: unknown[]): boolean;
  listeners(name: Name): Listener[];
  rawListeners(name: Name): Listener[];
  listenerCount(name: Name): number;
  eventNames(): Name[];
  setMaxListeners(n: number): this;
  getMaxListeners(): number;
}

interface EventEmitterCtor {
  new (): EventEmitter;
  (this: EventEmitter): void;
  prototype: EventEmitter;
  EventEmitter: EventEmitterCtor;
  defaultMaxListeners: number;
  /** Old-style `EventEmitter.listenerCount(emitter, name)`, which readable-stream still calls. */
  listenerCount(emitter: EventEmitter, name: Name): number;
}

export const EventEmitter = function (this: EventEmitter) {
  this._events ??= new Map();
} as unknown as EventEmitterCtor;

function list(self: EventEmitter, name: Name): Listener[] {
  self._events ??= new Map();
  let l = self._events.get(name);
  if (!l) self._events.set(name, (l = []));
  return l;
}

function onceWrapper(self: EventEmitter, name: Name, fn: Listener): Listener {
  const wrapped: Listener = (...args) => {
    self.removeListener(name, wrapped);
    fn.apply(self, args);
  };
  wrapped.listener = fn;
  return wrapped;
}

const proto: EventEmitter = {
  on(name, fn) { list(this, name).push(fn); return this; },
  addListener(name, fn) { return this.on(name, fn); },
  prependListener(name, fn) { list(this, name).unshift(fn); return this; },
  once(name, fn) { return this.on(name, onceWrapper(this, name, fn)); },
  prependOnceListener(name, fn) { return this.prependListener(name, onceWrapper(this, name, fn)); },
  removeListener(name, fn) {
    const l = list(this, name);
    // The last matching registration goes first, as in Node.
    for (let i = l.length - 1; i >= 0; i--) {
      if (l[i] === fn || l[i]!.listener === fn) { l.splice(i, 1); break; }
    }
    return this;
  },
  off(name, fn) { return this.removeListener(name, fn); },
  removeAllListeners(name) {
    if (name === undefined) this._events = new Map();
    else this._events?.delete(name);
    return this;
  },
  emit(name, ...args) {
    const l = this._events?.get(name);
    if (!l || l.length === 0) {
      // Node throws an unhandled 'error' event; swallowing it would hide real failures.
      if (name === 'error') throw args[0] instanceof Error ? args[0] : new Error(`unhandled 'error' event: ${String(args[0])}`);
      return false;
    }
    for (const fn of [...l]) fn.apply(this, args);
    return true;
  },
  listeners(name) { return (this._events?.get(name) ?? []).map((f) => f.listener ?? f); },
  rawListeners(name) { return [...(this._events?.get(name) ?? [])]; },
  listenerCount(name) { return this._events?.get(name)?.length ?? 0; },
  eventNames() { return [...(this._events?.entries() ?? [])].filter(([, l]) => l.length > 0).map(([n]) => n); },
  setMaxListeners() { return this; },
  getMaxListeners() { return EventEmitter.defaultMaxListeners; },
};

EventEmitter.prototype = proto;
EventEmitter.EventEmitter = EventEmitter;
EventEmitter.defaultMaxListeners = 10;
EventEmitter.listenerCount = (emitter, name) => emitter.listenerCount(name);

export default EventEmitter;
