// embed.js shows the frame's status only when it is exactly what FrameStatus, the message's one
// schema (src/ui/embed/bridge-schemas.ts), accepts. embed.js cannot import the schema (a classic
// script on other sites' pages), so it checks by hand; this test runs embed.js's own port handler
// in a bare VM context on messages made from the schema (each field at its bounds and past them,
// missing or of another kind, extra fields, random mixtures) and fails wherever the handler and
// the schema give different answers. Messages are plain data, as a port's structured clone
// delivers them.
import { describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { runInNewContext } from 'node:vm';
import { transformSync } from 'esbuild';
import Value from 'typebox/value';
import { FrameStatus } from '../src/ui/embed/bridge-schemas.ts';
import { ROOT } from './support/browser.ts';

type Port = { onmessage: ((ev: { data: unknown }) => void) | null; postMessage(m: unknown): void };

/** embed.js's widget, connected to a fake frame: a function that posts a status and says whether the widget took it. */
function embedWidget(attrs: Record<string, string> = {}, sent: unknown[] = []): (data: unknown) => boolean {
  const { code } = transformSync(readFileSync(join(ROOT, 'src/ui/embed/embed.ts'), 'utf8'), { loader: 'ts', target: 'es2022' });
  const defined = new Map<string, new () => Record<string, unknown>>();
  // Just enough of a page: no script tag to insert after, no shadow DOM to render into.
  class HTMLElement {
    attachShadow() { return {}; }
    getAttribute(name: string) { return attrs[name] ?? null; }
    get isConnected() { return false; }
  }
  class MessageChannel {
    port1: Port = { onmessage: null, postMessage: (m: unknown) => { sent.push(m); } };
    port2 = {};
  }
  runInNewContext(code, {
    HTMLElement, MessageChannel, document: { currentScript: null },
    customElements: { get: (n: string) => defined.get(n), define: (n: string, c: new () => Record<string, unknown>) => defined.set(n, c) },
  });
  const el = new (defined.get('murmur-volunteer')!)();
  el.render = () => {};
  (el.connectFrame as (frame: unknown) => void)({ contentWindow: { postMessage() {} } });
  const port = el.port as Port;
  const takes = (data: unknown) => {
    const before = {};
    el.status = before;
    port.onmessage!({ data });
    return el.status !== before;
  };
  elements.set(takes, el);
  return takes;
}

/** The widget element behind each embedWidget(). */
const elements = new WeakMap<object, Record<string, unknown>>();
const widgetOf = (takes: object) => elements.get(takes)!;

/** A message in a line a person can read (long strings cut, NaN and undefined named). */
function shown(v: unknown): string {
  return JSON.stringify(v, (_k, x: unknown) => typeof x === 'string' && x.length > 20 ? `${x.slice(0, 8)}…(${x.length})`
    : typeof x === 'number' && !Number.isFinite(x) ? String(x) : x === undefined ? 'undefined' : x);
}

/** mulberry32: the same mixtures on every run. */
function rng(seed: number): () => number {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

describe('embed.js and the frame status schema', () => {
  // The bounds as the schema states them (its options are JSON Schema keywords).
  type Bounds = { enum?: readonly string[]; maxLength?: number; minimum?: number; maximum?: number };
  const P = FrameStatus.properties as unknown as Record<keyof typeof FrameStatus.properties, Bounds>;
  const phases = P.phase.enum!;
  const maxText = P.text.maxLength!;
  const [lo, hi] = [P.intensity.minimum!, P.intensity.maximum!];
  const maxTps = P.tokensPerS.maximum!;
  const good: Record<string, unknown> = { type: 'status', phase: 'training', text: 'Training: 1.2k tokens/s, 3 exchanges so far.', intensity: 0.5, maxIntensity: 1, tokensPerS: 1234, userPaused: false };
  const astral = '\u{1F600}';
  const share = [lo, hi, 0.5, -0, lo - 1e-9, hi + 1e-9, NaN, Infinity, -Infinity, '0.5', null, true];
  /** Per field: values inside the schema and outside it; the schema says which is which. */
  const pools: Record<string, unknown[]> = {
    type: ['status', 'Status', 'murmur:ready', '', null, 1],
    phase: [...phases, 'hacked', 'constructor', '__proto__', '', null, 3, ['training']],
    text: ['', 'ok', 'x'.repeat(maxText), 'x'.repeat(maxText + 1), astral.repeat(maxText), astral.repeat(maxText + 1), '\ud800'.repeat(maxText),
      'x'.repeat(2 * maxText), 'x'.repeat(1_000_000), 5, null, {}],
    intensity: share,
    maxIntensity: share,
    tokensPerS: [0, -0, 1, 1234, maxTps, maxTps + 1, -1, 1.5, NaN, Infinity, '12', null, 2 ** 53],
    userPaused: [true, false, 0, 1, 'false', null],
  };

  it('takes exactly the messages the schema accepts', () => {
    const takes = embedWidget();
    const cases: unknown[] = [good, null, undefined, 'status', 42, true, [], [good], { ...good, gpu: 'RTX 4090' }, { ...JSON.parse('{"__proto__": 1}'), ...good }];
    for (const [k, pool] of Object.entries(pools)) {
      for (const v of pool) cases.push({ ...good, [k]: v });
      const { [k]: _gone, ...rest } = good;
      cases.push(rest, { ...good, [k]: undefined });
    }
    // Mixtures: several fields off at once, an extra field now and then.
    const r = rng(16);
    for (let i = 0; i < 3000; i++) {
      const m: Record<string, unknown> = {};
      for (const [k, pool] of Object.entries(pools)) {
        if (r() < 0.05) continue;
        m[k] = r() < 0.6 ? good[k] : pool[Math.floor(r() * pool.length)];
      }
      if (r() < 0.05) m.peerId = 'p-0000000000000001';
      cases.push(m);
    }
    const disagree = cases.filter((c) => takes(c) !== Value.Check(FrameStatus, c)).map((c) => `${Value.Check(FrameStatus, c) ? 'refused' : 'took'} ${shown(c)}`);
    expect(disagree).toEqual([]);
    // Neither side is trivial: both kinds of answer came up often.
    const accepted = cases.filter((c) => Value.Check(FrameStatus, c)).length;
    expect(accepted).toBeGreaterThan(200);
    expect(cases.length - accepted).toBeGreaterThan(1000);
  });

  it('holds its slider to the ceiling the frame states, when the page raises its attribute after the frame connected', () => {
    const attrs: Record<string, string> = { 'max-intensity': '0.4' };
    const sent: unknown[] = [];
    const takes = embedWidget(attrs, sent);
    expect(takes({ ...good, intensity: 0.2, maxIntensity: 0.4 })).toBe(true);
    attrs['max-intensity'] = '1';
    const el = widgetOf(takes);
    (el.attributeChangedCallback as () => void)();
    // The frame connected with 0.4, and refuses more: the widget does not offer more.
    expect(el.cap).toBe(0.4);
    expect(sent.at(-1)).toEqual({ cmd: 'intensity', value: 0.2 });
  });

  it('shows a good status after refusing bad ones', () => {
    const takes = embedWidget();
    expect(takes({ type: 'status' })).toBe(false); // the old check read only `type`
    expect(takes({ ...good, text: 'x'.repeat(1_000_000) })).toBe(false);
    expect(takes({ ...good, intensity: NaN })).toBe(false);
    for (const phase of phases) expect(takes({ ...good, phase })).toBe(true);
  });
});
