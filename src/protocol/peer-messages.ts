// Control messages between two peers on their data channel (JSON inside a type-2 frame).
// Every message from the network passes parseControl before any field is read. Each message
// is one TypeBox schema, its type derived from it; what a schema cannot say (an announced byte
// count that must match its dtype and length) is checked right after, in parseControl.
import Type, { type Static, type TProperties } from 'typebox';
import { DTYPES, payloadBytes } from './frame.ts';
import { CONFIG_HASH_PATTERN } from './hash.ts';
import { MessageError } from './errors.ts';
import { schemaProblem, shownTag } from './check.ts';

const MAX_TEXT = 200;

const strict = <P extends TProperties>(properties: P) => Type.Object(properties, { additionalProperties: false });
const u32 = Type.Integer({ minimum: 0, maximum: 0xffffffff });
const text = Type.String({ minLength: 1, maxLength: MAX_TEXT });

/** What a sender promises about one tensor before its chunks follow. */
const Announce = strict({
  /** Transfer id written in every chunk of this tensor. */
  tid: u32,
  dtype: Type.Enum(Object.keys(DTYPES) as (keyof typeof DTYPES)[]),
  elements: u32,
  bytes: u32,
});
export type Announce = Static<typeof Announce>;

/** The schema of each control message, by its tag. */
export const CONTROL_SCHEMAS = {
  /** First message on a new link: who I am and what I train. */
  hello: strict({ t: Type.Literal('hello'), peer: text, runId: text, configHash: Type.String({ pattern: CONFIG_HASH_PATTERN }), elements: u32 }),
  /** Coordinator unreachable: "I finished round `round`; be my partner?" */
  'pair-req': strict({ t: Type.Literal('pair-req'), round: u32, nonce: u32 }),
  /**
   * The answer to the `pair-req` with this `nonce`: yes, and `round` is mine (each side then knows
   * the round the other's `xchg` and `abort` of this pairing carry, src/sync/exchange.ts); or no.
   */
  'pair-ack': Type.Union([
    strict({ t: Type.Literal('pair-ack'), nonce: u32, ok: Type.Literal(true), round: u32 }),
    strict({ t: Type.Literal('pair-ack'), nonce: u32, ok: Type.Literal(false), reason: Type.Optional(text) }),
  ]),
  /** Start of my half of an exchange: φ and Δ chunks follow once my partner's own xchg has arrived. */
  xchg: strict({ t: Type.Literal('xchg'), round: u32, phi: Announce, delta: Announce }),
  /**
   * Do not wait for me. `round` is mine: I stopped my exchange of that round (deadline, rejection,
   * shutdown), or am in none with you. One that answers a message of yours (your `xchg`, your yes)
   * names the round that message carried, yours (`yourRound`). Its receiver takes it for the end
   * of its pairing only if `round` is its partner's round of that pairing or `yourRound` its own
   * round: an abort of an earlier pairing of the same two peers that comes late is neither
   * (src/sync/exchange.ts, `ExchangeRun.onAbort`).
   */
  abort: strict({ t: Type.Literal('abort'), round: u32, reason: text, yourRound: Type.Optional(u32) }),
  /** A planned disconnect (rewiring), not a failure. */
  bye: strict({ t: Type.Literal('bye') }),
  /** Bootstrap: send me φ, outer momentum and your step counters. */
  'state-req': strict({ t: Type.Literal('state-req'), nonce: u32 }),
  'state-offer': Type.Union([
    strict({ t: Type.Literal('state-offer'), nonce: u32, ok: Type.Literal(true), tensor: Announce, outerRound: u32, innerStep: u32 }),
    strict({ t: Type.Literal('state-offer'), nonce: u32, ok: Type.Literal(false), reason: text }),
  ]),
};
type ControlSchemas = typeof CONTROL_SCHEMAS;
export type ControlMessage = { [K in keyof ControlSchemas]: Static<ControlSchemas[K]> }[keyof ControlSchemas];

/** Validate a decoded JSON value against the message schemas; throws MessageError naming the field. */
export function parseControl(value: unknown): ControlMessage {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) throw new MessageError('control message must be an object');
  const t = (value as { t?: unknown }).t;
  if (typeof t !== 'string' || !Object.prototype.hasOwnProperty.call(CONTROL_SCHEMAS, t)) {
    throw new MessageError(`unknown control message type ${shownTag(t)}`);
  }
  const problem = schemaProblem(CONTROL_SCHEMAS[t as keyof ControlSchemas], value, t);
  if (problem !== null) throw new MessageError(problem);
  const m = value as ControlMessage;
  if (m.t === 'xchg') {
    checkAnnounce(m.phi, 'xchg.phi');
    checkAnnounce(m.delta, 'xchg.delta');
  } else if (m.t === 'state-offer' && m.ok) {
    checkAnnounce(m.tensor, 'state-offer.tensor');
  }
  return m;
}

/** The byte count must be what `elements` values of `dtype` take. */
function checkAnnounce(a: Announce, where: string): void {
  const need = payloadBytes(a.dtype, a.elements);
  if (a.bytes !== need) throw new MessageError(`${where}: ${a.elements} ${a.dtype} elements take ${need} bytes, not ${a.bytes}`);
}
