// Dashboard streams (GET /api/runs/:run/stream) per IPv6 /48: the /64s of one site share a cap,
// as they do for WebSockets, hellos and TURN users (docs/design.md section 6, "Which client an
// address is"). With a cap per /64 alone, 125 /64s of one /48 (free from a tunnel broker), 8
// streams each, held all 1,000 places and every dashboard of every run was refused.
import { describe, expect, it } from 'vitest';
import type { ServerResponse } from 'node:http';
import { DEFAULT_LIVE_LIMITS, LiveHub } from '../server/live.ts';
import { addressKey } from '../server/address-budget.ts';

/** What LiveHub asks of a response: a stream that is never read and never closes. */
function fakeResponse(): ServerResponse {
  const res = {
    destroyed: false, writableLength: 0,
    writeHead: () => res, write: () => true, end: () => res, on: () => res, destroy: () => { res.destroyed = true; return res; },
  };
  return res as unknown as ServerResponse;
}

describe('dashboard streams of one IPv6 /48', () => {
  it('share the site\'s cap, so its /64s cannot hold every place', () => {
    const live = new LiveHub(undefined, undefined, DEFAULT_LIVE_LIMITS);
    try {
      const { maxSubscribers, perAddress, perSite } = DEFAULT_LIVE_LIMITS;
      const refused: string[] = [];
      let admitted = 0;
      // Enough /64s of 2001:db8:7::/48, each at its own cap, to fill every place.
      for (let n = 0; n < maxSubscribers / perAddress; n++) {
        const address = addressKey(`2001:db8:7:${n.toString(16)}::1`);
        for (let k = 0; k < perAddress; k++) {
          const a = live.admit(`run-${n % 3}`, address);
          if (typeof a === 'function') { a(fakeResponse(), {}); admitted++; } else refused.push(a.error);
        }
      }
      expect(admitted).toBe(perSite);
      expect(refused[0]).toBe(`this address's /48 holds ${perSite} live streams, the limit; close one first`);
      // A researcher elsewhere, and another /48, still connect.
      expect(typeof live.admit('run-0', '198.18.0.9')).toBe('function');
      expect(typeof live.admit('run-0', addressKey('2001:db8:8::1'))).toBe('function');
      // IPv4 has no coarser cap: a /24 is many unrelated clients.
      for (let n = 0; n < 2 * perSite / perAddress; n++) {
        for (let k = 0; k < perAddress; k++) expect(typeof live.admit('run-1', `198.18.1.${n}`)).toBe('function');
      }
    } finally {
      live.close();
    }
  });

  it('gives the site\'s place back when its stream ends, or when the run is full', () => {
    const live = new LiveHub(undefined, undefined, { ...DEFAULT_LIVE_LIMITS, perAddress: 1, perSite: 1, perRun: 1 });
    try {
      const a = addressKey('2001:db8:9:1::1'), b = addressKey('2001:db8:9:2::1');
      const first = live.admit('r', a);
      expect(typeof first).toBe('function');
      const res = fakeResponse();
      const closers: (() => void)[] = [];
      (res as unknown as { on: (e: string, f: () => void) => unknown }).on = (e, f) => { if (e === 'close') closers.push(f); return res; };
      (first as (r: ServerResponse, h: Record<string, string>) => void)(res, {});
      expect(live.admit('r', b)).toMatchObject({ status: 429 });
      for (const f of closers) f();
      expect(live.size).toBe(0);
      // The run is full (another client holds its one place): the /48's place is not kept.
      const other = live.admit('r', '198.18.0.1');
      (other as (r: ServerResponse, h: Record<string, string>) => void)(fakeResponse(), {});
      expect(live.admit('r', b)).toMatchObject({ status: 503 });
      expect(typeof live.admit('s', b)).toBe('function');
    } finally {
      live.close();
    }
  });
});
