import { describe, expect, it } from 'vitest';
import { parseClientMessage } from '../src/protocol/messages.ts';
import { jsonDepth, validateSchema } from '../src/protocol/schema.ts';

const report = {
  t: 'report', seq: 1, time: 1, step: 1, round: 0, trainLoss: 4.2, valLoss: null, tokensPerS: 10,
  bytesIn: 0, bytesOut: 0, partner: null, partnerDist: null, adapter: null,
};

describe('client message validation', () => {
  it('accepts every well-formed message type', () => {
    for (const m of [
      { t: 'hello', v: 1 },
      { t: 'hello', v: 1, run: 'default', session: 'x.y', client: { kind: 'node', adapter: 'swiftshader' } },
      { t: 'hb' },
      { t: 'signal', to: 'p-0123456789abcdef', data: { type: 'offer', sdp: 'v=0' } },
      { t: 'ready', round: 3, waitMs: 250 },
      report,
      { ...report, partner: 'p-0123456789abcdef', partnerDist: 0.5, adapter: 'nvidia' },
      { t: 'state-fail', id: 'abc', reason: 'busy' },
    ]) {
      const r = parseClientMessage(JSON.stringify(m));
      expect(r.ok, JSON.stringify(r)).toBe(true);
    }
  });

  it('names the problem for malformed, wrong-typed and spoofing frames', () => {
    const cases: [string, RegExp][] = [
      ['{not json', /not JSON/],
      ['[1,2]', /must be a JSON object/],
      ['{"t":"nope"}', /unknown message type "nope"/],
      [JSON.stringify({ t: 'ready', round: -1, waitMs: 10 }), /round must be >= 0/],
      [JSON.stringify({ t: 'ready', round: 1, waitMs: 0 }), /waitMs must be >= 1/],
      [JSON.stringify({ t: 'ready', round: 1.5, waitMs: 10 }), /round must be integer/],
      [JSON.stringify({ t: 'signal', to: 'p-0123456789abcdef', from: 'p-aaaaaaaaaaaaaaaa', data: {} }), /from is not an allowed field/],
      [JSON.stringify({ t: 'signal', to: '../admin', data: {} }), /to does not match/],
      // Only the names of non-finite values are strings a loss may be (WireLoss).
      [JSON.stringify({ ...report, trainLoss: 'low' }), /trainLoss does not match \^\(\?:NaN\|-\?Infinity\)\$/],
      [JSON.stringify({ ...report, trainLoss: true }), /trainLoss must be number or string or null/],
      ['{"t":"report","seq":1,"time":1,"step":1,"round":0,"trainLoss":1e999,"valLoss":null,"tokensPerS":1,"bytesIn":0,"bytesOut":0,"partner":null,"partnerDist":null,"adapter":null}', /finite/],
      [JSON.stringify({ ...report, peerId: 'p-0123456789abcdef' }), /peerId is not an allowed field/],
      [JSON.stringify({ t: 'hello' }), /v is required/],
    ];
    for (const [raw, re] of cases) {
      const r = parseClientMessage(raw);
      expect(r.ok).toBe(false);
      if (!r.ok) expect(r.error).toMatch(re);
    }
  });

  it('bounds size and nesting', () => {
    const big = JSON.stringify({ t: 'signal', to: 'p-0123456789abcdef', data: { sdp: 'x'.repeat(70_000) } });
    expect(parseClientMessage(big)).toMatchObject({ ok: false, code: 'too-large' });
    let deep: unknown = {};
    for (let i = 0; i < 20; i++) deep = { a: deep };
    expect(parseClientMessage(JSON.stringify({ t: 'signal', to: 'p-0123456789abcdef', data: deep }))).toMatchObject({ ok: false, error: expect.stringMatching(/nests deeper/) });
    expect(jsonDepth({ a: [{ b: 1 }] })).toBe(3);
  });

  it('schema unions, enums and patterns', () => {
    expect(validateSchema({ type: ['string', 'null'], pattern: '^a' }, null).ok).toBe(true);
    expect(validateSchema({ type: ['string', 'null'], pattern: '^a' }, 'b').ok).toBe(false);
    expect(validateSchema({ enum: ['x', 'y'] }, 'z')).toEqual({ ok: false, error: '$ must be one of "x", "y"' });
    expect(validateSchema({ type: 'array', items: { type: 'integer' }, maxItems: 2 }, [1, 2, 3]).ok).toBe(false);
  });
});
