// The fuzz harness (tests/protocol.fuzz.test.ts, tests/server.ws-fuzz.test.ts, the HTTP fuzz files):
// a seeded PRNG, mutations of bytes and of JSON texts that keep what JSON.parse would lose
// (duplicate and __proto__ keys, -0, ±Infinity), odd query strings and path ids, and valid
// samples of every message, as the project writes them.
import { expect } from 'vitest';
import { crc32 } from '../../src/protocol/crc32.ts';
import { MAX_FRAME_BYTES } from '../../src/protocol/frame.ts';
import { CLIENT_SCHEMAS, PROTOCOL_VERSION, SERVER_SCHEMAS } from '../../src/protocol/messages.ts';
import { P1, P2, SAMPLE_FILE, SAMPLE_ICE, SAMPLE_RUN, SHA } from './samples.ts';

// ---------- a seeded PRNG and its helpers ----------

/** mulberry32: 32 bits of state, enough for a fuzzer, and the same sequence on every machine. */
export class Rand {
  private s: number;
  constructor(seed: number) { this.s = seed >>> 0; }
  next(): number {
    this.s = (this.s + 0x6d2b79f5) >>> 0;
    let t = this.s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 2 ** 32;
  }
  int(n: number): number { return Math.floor(this.next() * n); }
  chance(p: number): boolean { return this.next() < p; }
  pick<T>(a: readonly T[]): T { return a[this.int(a.length)]!; }
  bytes(n: number): Uint8Array {
    const b = new Uint8Array(n);
    for (let i = 0; i < n; i++) b[i] = this.int(256);
    return b;
  }
}

/** Runs `body` for `n` seeded iterations; a failure says which target and iteration to replay. */
export function fuzz(target: string, seed: number, n: number, body: (r: Rand, i: number) => void): void {
  const r = new Rand(seed);
  for (let i = 0; i < n; i++) {
    try {
      body(r, i);
    } catch (err) {
      throw new Error(`${target}: seed ${seed}, iteration ${i}: ${(err as Error).message}`, { cause: err });
    }
  }
}

/** The error `fn` threw, or null when it returned. */
export function thrown(fn: () => unknown): unknown {
  try { fn(); return null; } catch (err) { return err; }
}

/** Fails unless `err` is one of `types` (a decoder's own named errors). */
export function expectOwnError(err: unknown, ...types: (abstract new (...a: never[]) => Error)[]): void {
  if (!types.some((T) => err instanceof T)) {
    throw new Error(`threw ${(err as Error)?.name ?? typeof err}: ${String((err as Error)?.message ?? err).slice(0, 200)}`);
  }
  // A clear error names the problem in a sentence, not a dump of the input.
  expect((err as Error).message.length).toBeGreaterThan(0);
  expect((err as Error).message.length).toBeLessThan(2000);
}

/** Whether `a` and `b` hold the same bytes, but for the positions in `skip` (a plain loop: expect's deep equality is slow on 64 KiB). */
export function sameBytes(a: Uint8Array, b: Uint8Array, skip: readonly number[] = []): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i] && !skip.includes(i)) return false;
  return true;
}

// ---------- byte mutations ----------

const HUGE_U32 = [0, 1, 0x7fffffff, 0x80000000, 0xffffffff, 0xfffffffe, MAX_FRAME_BYTES, MAX_FRAME_BYTES + 1, 4096, 4097];

/** One random change to `b`: a bit flip, a byte set, a cut, an extension, a huge u32, a splice. */
export function mutateBytes(r: Rand, b: Uint8Array): Uint8Array {
  const out = b.slice();
  switch (r.int(7)) {
    case 0: if (out.length) out[r.int(out.length)] ^= 1 << r.int(8); return out;
    case 1: if (out.length) out[r.int(out.length)] = r.pick([0, 0xff, 0x80, 0x7f, r.int(256)]); return out;
    case 2: return out.slice(0, r.int(out.length + 1));
    case 3: {
      const ext = new Uint8Array(out.length + 1 + r.int(r.chance(0.1) ? 70_000 : 64));
      ext.set(out);
      ext.set(r.bytes(ext.length - out.length), out.length);
      return ext;
    }
    case 4: {
      if (out.length < 4) return out;
      const at = r.chance(0.7) ? 4 * r.int(out.length >> 2) : r.int(out.length - 3);
      new DataView(out.buffer).setUint32(at, r.pick(HUGE_U32), true);
      return out;
    }
    case 5: {
      const from = r.int(out.length + 1), len = r.int(out.length - from + 1);
      return new Uint8Array([...out.subarray(0, from), ...out.subarray(from + len)]);
    }
    default: {
      if (out.length === 0) return out;
      const at = r.int(out.length);
      out.set(r.bytes(Math.min(out.length - at, 1 + r.int(16))), at);
      return out;
    }
  }
}

/**
 * A mutated peer frame given a fresh header CRC (chunk) or JSON length and CRC (control), as
 * src/protocol/frame.ts lays them out, so the mutation reaches the checks behind the checksums,
 * as a peer writing bad frames on purpose would.
 */
export function reseal(b: Uint8Array): Uint8Array {
  if (b.length < 16) return b;
  const out = b.slice();
  const dv = new DataView(out.buffer);
  if (out[5] === 2) {
    dv.setUint32(8, out.length - 16, true);
    dv.setUint32(12, crc32(out.subarray(16)), true);
  } else if (out.length >= 56 && 56 + out[48]! + out[49]! <= out.length) {
    const crcAt = 52 + out[48]! + out[49]!;
    dv.setUint32(crcAt, crc32(out.subarray(0, crcAt)), true);
  }
  return out;
}

// ---------- JSON trees that keep what JSON.parse would lose ----------

/**
 * A JSON text as a tree: objects keep duplicate and __proto__ keys in order, numbers keep -0 and
 * ±Infinity (written 1e999) and NaN (written NaN: not JSON, the parser must refuse it), and `raw`
 * is text written as it is (deep nesting, built without recursion).
 */
export type J =
  | { k: 'obj'; e: [string, J][] } | { k: 'arr'; a: J[] } | { k: 'num'; v: number } | { k: 'str'; v: string }
  | { k: 'lit'; v: boolean | null } | { k: 'raw'; text: string; value: () => unknown };

function tree(v: unknown): J {
  if (v === null || typeof v === 'boolean') return { k: 'lit', v };
  if (typeof v === 'number') return { k: 'num', v };
  if (typeof v === 'string') return { k: 'str', v };
  if (Array.isArray(v)) return { k: 'arr', a: v.map(tree) };
  return { k: 'obj', e: Object.entries(v as object).map(([k, x]) => [k, tree(x)]) };
}

function text(j: J): string {
  switch (j.k) {
    case 'obj': return '{' + j.e.map(([k, x]) => JSON.stringify(k) + ':' + text(x)).join(',') + '}';
    case 'arr': return '[' + j.a.map(text).join(',') + ']';
    case 'num': return Object.is(j.v, -0) ? '-0' : j.v === Infinity ? '1e999' : j.v === -Infinity ? '-1e999' : String(j.v);
    case 'str': return JSON.stringify(j.v);
    case 'lit': return String(j.v);
    case 'raw': return j.text;
  }
}

/** The value a structured clone would deliver: NaN stays NaN, a __proto__ key stays an own field. */
export function value(j: J): unknown {
  switch (j.k) {
    case 'obj': {
      const o: Record<string, unknown> = {};
      for (const [k, x] of j.e) Object.defineProperty(o, k, { value: value(x), enumerable: true, writable: true, configurable: true });
      return o;
    }
    case 'arr': return j.a.map(value);
    case 'num': case 'str': case 'lit': return j.v;
    case 'raw': return j.value();
  }
}

/** `depth` arrays inside each other, as text and as a value, built without recursion. */
function deepArrays(depth: number): J {
  return {
    k: 'raw', text: '['.repeat(depth) + ']'.repeat(depth),
    value: () => { let v: unknown[] = []; for (let i = 1; i < depth; i++) v = [v]; return v; },
  };
}

function deepObjects(depth: number): J {
  return {
    k: 'raw', text: '{"a":'.repeat(depth) + '1' + '}'.repeat(depth),
    value: () => { let v: unknown = 1; for (let i = 0; i < depth; i++) v = { a: v }; return v; },
  };
}

const ODD_NUMBERS = [NaN, Infinity, -Infinity, -0, 0.5, -1, 2 ** 32, 2 ** 32 - 1, 2 ** 53 + 2, 1e308, 5e-324, 1e21];
const ODD_KEYS = ['__proto__', 'constructor', 'prototype', 'toString', 'hasOwnProperty', '', 't'];

function oddValue(r: Rand): J {
  switch (r.int(7)) {
    case 0: return { k: 'num', v: r.pick(ODD_NUMBERS) };
    case 1: return r.pick<J>([{ k: 'lit', v: null }, { k: 'lit', v: true }, { k: 'obj', e: [] }, { k: 'arr', a: [] }, { k: 'str', v: '' }, { k: 'num', v: 0 }]);
    case 2: return { k: 'str', v: r.pick(['x', '\ud800', '\u0000', 'é'.repeat(50), '../..', 'p-0123456789abcdeF']).repeat(1 + r.int(3)) };
    case 3: return { k: 'str', v: 'a'.repeat(r.pick([41, 65, 201, 301, 513, 2001, 5000, 70_000])) };
    case 4: return r.chance(0.5) ? deepArrays(r.pick([9, 65, 2000, 30_000])) : deepObjects(r.pick([9, 65, 2000, 12_000]));
    case 5: return { k: 'arr', a: Array.from({ length: r.pick([33, 1000, 10_001]) }, () => ({ k: 'num', v: 1 })) };
    default: return { k: 'obj', e: [['__proto__', { k: 'obj', e: [['polluted', { k: 'lit', v: true }]] }]] };
  }
}

/** A deep copy of `j` (raw nodes are shared: they are never changed in place). */
function copy(j: J): J {
  if (j.k === 'obj') return { k: 'obj', e: j.e.map(([k, x]) => [k, copy(x)]) };
  if (j.k === 'arr') return { k: 'arr', a: j.a.map(copy) };
  return { ...j };
}

/** Every node of `j` with a way to replace it (the root cannot be replaced). */
function nodes(j: J): { node: J; set: ((x: J) => void) | null }[] {
  const out: { node: J; set: ((x: J) => void) | null }[] = [{ node: j, set: null }];
  for (let i = 0; i < out.length; i++) {
    const n = out[i]!.node;
    if (n.k === 'obj') n.e.forEach((entry) => out.push({ node: entry[1], set: (x) => { entry[1] = x; } }));
    if (n.k === 'arr') n.a.forEach((_, idx) => out.push({ node: n.a[idx]!, set: (x) => { n.a[idx] = x; } }));
  }
  return out;
}

/** One random change to the tree `j` (in place). */
function mutateTree(r: Rand, j: J): void {
  const all = nodes(j);
  const { node, set } = r.pick(all);
  const objects = all.filter((n) => n.node.k === 'obj').map((n) => n.node as Extract<J, { k: 'obj' }>);
  const op = r.int(6);
  if (op <= 1 && set) return set(oddValue(r));
  if (op === 2 && objects.length) {
    const o = r.pick(objects);
    if (o.e.length) o.e.splice(r.int(o.e.length), 1);
    return;
  }
  if (op === 3 && objects.length) {
    // A key again (JSON.parse keeps the last), or a key that means something to JavaScript.
    const o = r.pick(objects);
    const dup = o.e.length && r.chance(0.5) ? o.e[r.int(o.e.length)]![0] : r.pick(ODD_KEYS);
    o.e.splice(r.int(o.e.length + 1), 0, [dup, r.chance(0.5) ? oddValue(r) : copy(r.pick(all).node)]);
    return;
  }
  if (op === 4 && node.k === 'str') { node.v = node.v + node.v.slice(0, 1).repeat(r.int(300)); return; }
  if (op === 4 && node.k === 'num') { node.v = r.chance(0.5) ? node.v + 1 : -node.v - 1; return; }
  if (set) set(oddValue(r));
}

/** BOUNDS a schema may allow at either end of a field, and past them. */
const BOUNDS = [0, -0, 1, 0.5, 2 ** 31, 2 ** 53 - 1, 1e308];

/** `sample` with one of its numbers set to one of BOUNDS, the rest valid: every such text, in order. */
export function atBounds(sample: unknown): string[] {
  const out: string[] = [];
  const count = nodes(tree(sample)).filter((n) => n.node.k === 'num').length;
  for (let i = 0; i < count; i++) {
    for (const v of BOUNDS) {
      const j = tree(sample);
      (nodes(j).filter((n) => n.node.k === 'num')[i]!.node as Extract<J, { k: 'num' }>).v = v;
      out.push(text(j));
    }
  }
  return out;
}

/** A mutated JSON text of `sample`: tree mutations, now and then a byte-level one on the text. */
export function mutatedJson(r: Rand, sample: unknown): { j: J; json: string } {
  const j = tree(sample);
  for (let m = 1 + r.int(3); m > 0; m--) mutateTree(r, j);
  let json = text(j);
  if (r.chance(0.15)) {
    const cut = r.int(json.length + 1);
    json = r.pick([json.slice(0, cut), json.slice(0, cut) + String.fromCharCode(r.int(128)) + json.slice(cut), json + json.slice(cut)]);
  }
  return { j, json };
}

// ---------- query strings and path params of HTTP requests ----------

export const ODD_QUERY_VALUES = [
  '', '0', '-1', '-0', '1.5', '1e3', '1e999', '-1e999', 'NaN', 'Infinity', '-Infinity', '0x10', '0b1', ' 1', '1 ',
  '99999999999999999999', String(2 ** 53 + 2), String(1e14 + 1), 'true', 'false', 'null', 'undefined', '[]', '{}',
  '%00', '%FF', '%', '%zz', '%E2%80%AE', 'é', '\u{1F600}', '%ED%A0%80', 'a'.repeat(5000),
  'p-0123456789abcdef', 'p-0123456789ABCDEF', 'asc', 'desc', 'ASC', '__proto__', 'constructor',
];

/** A query string of the route's own keys and a few odd ones, each value odd, some keys repeated or bracketed. */
export function oddQuery(r: Rand, keys: readonly string[]): string {
  const parts: string[] = [];
  for (let n = 1 + r.int(4); n > 0; n--) {
    const key = r.chance(0.85) ? r.pick(keys) : r.pick(['__proto__', 'constructor', 'x', '', 'from[]', 'to[a]', 'from.a', 'a'.repeat(300)]);
    const k = r.chance(0.1) ? `${key}[]` : r.chance(0.05) ? `${key}[0]` : key;
    const v = r.pick(ODD_QUERY_VALUES);
    parts.push(r.chance(0.05) ? k : `${k}=${/%/.test(v) ? v : encodeURIComponent(v)}`);
    // The same key again: a parser that makes it an array must still refuse by name.
    if (r.chance(0.2)) parts.push(`${k}=${encodeURIComponent(r.pick(ODD_QUERY_VALUES))}`);
  }
  return parts.join(r.chance(0.05) ? ';' : '&');
}

/** Path ids: 'm' is the run the HTTP fuzz files create; the rest unknown, long, encoded, unicode or `..`. */
export const ODD_IDS = [
  'm', 'M', 'default', 'nope', '', ' ', '..', '%2e%2e', '..%2fm', 'm%00', 'm%2F', 'a'.repeat(65), 'a'.repeat(5000), 'é', '%E2%80%AE',
  '%', '%zz', '__proto__', 'constructor', 'c-' + '0'.repeat(20), 'train-0.bin', 'val.bin', 'manifest.json',
];

// ---------- valid samples, as the project's own code writes them ----------

export { P1, P2 };
const run = SAMPLE_RUN;
const file = SAMPLE_FILE;
const ice = SAMPLE_ICE;
const report = {
  t: 'report', seq: 1, time: 1, step: 1, round: 0, trainLoss: 4.2, valLoss: 'NaN', tokensPerS: 10, bytesIn: 0, bytesOut: 0,
  partner: P1, partnerDist: 0.5, adapter: 'nvidia', linkLocal: 'host', linkRemote: 'relay', connectMs: 30, linkFailures: 1, linkError: 'timeout',
};

export const CLIENT_SAMPLES: Record<keyof typeof CLIENT_SCHEMAS, object> = {
  hello: { t: 'hello', v: PROTOCOL_VERSION, run: 'default', session: 'x.y', client: { kind: 'browser', adapter: 'nvidia', version: '0.1.0' } },
  hb: { t: 'hb' },
  signal: { t: 'signal', to: P1, data: { mesh: 1, cid: 'c1', sig: { type: 'offer', sdp: 'v=0' } } },
  ready: { t: 'ready', round: 3, waitMs: 250 },
  report,
  'state-fail': { t: 'state-fail', id: 'abc', reason: 'busy' },
  offender: { t: 'offender', peer: P1, reason: 'ERR_FRAME_CRC' },
};

export const SERVER_SAMPLES: Record<keyof typeof SERVER_SCHEMAS, object> = {
  welcome: {
    t: 'welcome', peerId: P1, session: 'a.b', resumed: false, run,
    assignment: { dataset: 'moby-dick', train: [file], val: { ...file, name: 'val.bin' }, shards: [0], seed: 7, replica: 0 },
    checkpoint: { id: 'c1', step: 100, round: 2, sha256: SHA, valLoss: 3.3, stateUrl: '/api/runs/default/checkpoints/c1/state' },
    peers: [P2], probation: [P2], heartbeatMs: 10_000, limits: { maxMessageBytes: 65536, messagesPerSecond: 50, burst: 200 }, ice,
    stepBase: 100, stepRate: 170.5, stepConsensus: 100,
  },
  error: { t: 'error', code: 'bad-message', message: 'ready.round must be >= 0', ref: 'signal', fatal: false },
  signal: { t: 'signal', from: P2, data: { mesh: 1, cid: 'c1', sig: { type: 'answer', sdp: 'v=0' } } },
  'peers-change': { t: 'peers-change', joined: [P1], left: [P2], probation: [P1], trusted: [P2] },
  paired: { t: 'paired', round: 4, partner: P2, partnerRound: 9, initiator: true, probation: false },
  ack: { t: 'ack', seq: 9, duplicate: true },
  config: { t: 'config', run },
  'state-request': { t: 'state-request', id: 'a'.repeat(24), url: '/api/peer/state/' + 'a'.repeat(24) },
  ice: { t: 'ice', ice },
};

export const CONTROL_SAMPLES: object[] = [
  { t: 'hello', peer: P1, runId: 'default', configHash: '0123456789abcdef', elements: 10 },
  { t: 'pair-req', round: 4, nonce: 99 },
  { t: 'pair-ack', nonce: 99, ok: false, reason: 'busy' },
  { t: 'pair-ack', nonce: 99, ok: true, round: 12 },
  { t: 'xchg', round: 4, phi: { tid: 1, dtype: 'f16', elements: 10, bytes: 20 }, delta: { tid: 2, dtype: 'q8', elements: 10, bytes: 14 } },
  { t: 'abort', round: 4, reason: 'not paired with you', yourRound: 12 },
  { t: 'bye' },
  { t: 'state-req', nonce: 1 },
  { t: 'state-offer', nonce: 1, ok: true, tensor: { tid: 3, dtype: 'f32', elements: 20, bytes: 80 }, outerRound: 5, innerStep: 250 },
  { t: 'state-offer', nonce: 1, ok: false, reason: 'no state yet' },
];

