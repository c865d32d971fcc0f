// Control messages between two peers on their data channel (JSON inside a type-2 frame).
// Every message from the network passes parseControl before any field is read.
import { DTYPES, payloadBytes, type Dtype } from './frame.ts';
import { isConfigHash } from './hash.ts';
import { MessageError } from './errors.ts';

/** What a sender promises about one tensor before its chunks follow. */
export interface Announce {
  /** Transfer id written in every chunk of this tensor. */
  tid: number;
  dtype: Dtype;
  elements: number;
  bytes: number;
}

export type ControlMessage =
  /** First message on a new link: who I am and what I train. */
  | { t: 'hello'; peer: string; runId: string; configHash: string; elements: number }
  /** Coordinator unreachable: "I finished round `round`; be my partner?" */
  | { t: 'pair-req'; round: number; nonce: number }
  | { t: 'pair-ack'; nonce: number; ok: boolean; reason?: string }
  /** Start of my half of an exchange: φ and Δ chunks follow. */
  | { t: 'xchg'; round: number; phi: Announce; delta: Announce }
  /** I stopped this exchange (deadline, rejection, shutdown): do not wait for me. */
  | { t: 'abort'; round: number; reason: string }
  /** A planned disconnect (rewiring), not a failure. */
  | { t: 'bye' }
  /** Bootstrap: send me φ, outer momentum and your step counters. */
  | { t: 'state-req'; nonce: number }
  | { t: 'state-offer'; nonce: number; ok: true; tensor: Announce; outerRound: number; innerStep: number }
  | { t: 'state-offer'; nonce: number; ok: false; reason: string };

const MAX_TEXT = 200;

/** Validate a decoded JSON value against the message schemas; throws MessageError naming the field. */
export function parseControl(value: unknown): ControlMessage {
  const o = obj(value, 'message');
  switch (o.t) {
    case 'hello':
      return {
        t: 'hello', peer: text(o.peer, 'hello.peer'), runId: text(o.runId, 'hello.runId'),
        configHash: hash(o.configHash, 'hello.configHash'), elements: u32(o.elements, 'hello.elements'),
      };
    case 'pair-req':
      return { t: 'pair-req', round: u32(o.round, 'pair-req.round'), nonce: u32(o.nonce, 'pair-req.nonce') };
    case 'pair-ack': {
      const m: ControlMessage = { t: 'pair-ack', nonce: u32(o.nonce, 'pair-ack.nonce'), ok: bool(o.ok, 'pair-ack.ok') };
      if (o.reason !== undefined) m.reason = text(o.reason, 'pair-ack.reason');
      return m;
    }
    case 'xchg':
      return {
        t: 'xchg', round: u32(o.round, 'xchg.round'),
        phi: announce(o.phi, 'xchg.phi'), delta: announce(o.delta, 'xchg.delta'),
      };
    case 'abort':
      return { t: 'abort', round: u32(o.round, 'abort.round'), reason: text(o.reason, 'abort.reason') };
    case 'bye':
      return { t: 'bye' };
    case 'state-req':
      return { t: 'state-req', nonce: u32(o.nonce, 'state-req.nonce') };
    case 'state-offer': {
      const nonce = u32(o.nonce, 'state-offer.nonce');
      if (bool(o.ok, 'state-offer.ok')) {
        return {
          t: 'state-offer', nonce, ok: true, tensor: announce(o.tensor, 'state-offer.tensor'),
          outerRound: u32(o.outerRound, 'state-offer.outerRound'), innerStep: u32(o.innerStep, 'state-offer.innerStep'),
        };
      }
      return { t: 'state-offer', nonce, ok: false, reason: text(o.reason, 'state-offer.reason') };
    }
    default:
      throw new MessageError(`unknown control message type ${JSON.stringify(o.t)?.slice(0, 40)}`);
  }
}

function announce(v: unknown, where: string): Announce {
  const o = obj(v, where);
  if (typeof o.dtype !== 'string' || !(o.dtype in DTYPES)) throw new MessageError(`${where}.dtype must be one of ${Object.keys(DTYPES).join('|')}`);
  const a: Announce = { tid: u32(o.tid, where + '.tid'), dtype: o.dtype as Dtype, elements: u32(o.elements, where + '.elements'), bytes: u32(o.bytes, where + '.bytes') };
  if (a.bytes !== payloadBytes(a.dtype, a.elements)) {
    throw new MessageError(`${where}: ${a.elements} ${a.dtype} elements take ${payloadBytes(a.dtype, a.elements)} bytes, not ${a.bytes}`);
  }
  return a;
}

function obj(v: unknown, where: string): Record<string, unknown> {
  if (v === null || typeof v !== 'object' || Array.isArray(v)) throw new MessageError(`${where} must be an object`);
  return v as Record<string, unknown>;
}
function u32(v: unknown, where: string): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v > 0xffffffff) throw new MessageError(`${where} must be a uint32, got ${String(v).slice(0, 40)}`);
  return v;
}
function bool(v: unknown, where: string): boolean {
  if (typeof v !== 'boolean') throw new MessageError(`${where} must be a boolean`);
  return v;
}
function text(v: unknown, where: string): string {
  if (typeof v !== 'string' || v.length === 0 || v.length > MAX_TEXT) throw new MessageError(`${where} must be a string of 1..${MAX_TEXT} characters`);
  return v;
}
function hash(v: unknown, where: string): string {
  if (!isConfigHash(v)) throw new MessageError(`${where} must be 16 lowercase hex digits`);
  return v;
}
