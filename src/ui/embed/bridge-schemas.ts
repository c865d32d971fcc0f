// The schemas of what the embedding page (any origin, possibly hostile) may send the training
// frame; the frame checks each message against its schema before reading a field
// (frame-bridge.ts). Types are derived from them and named in bridge.ts, whose imports are
// types only, so embed.js stays a dependency-free script. TypeBox's Value module interprets the
// schema: the frame runs under a CSP without 'unsafe-eval'.
import Type, { type Static, type TProperties } from 'typebox';

const strict = <P extends TProperties>(properties: P) => Type.Object(properties, { additionalProperties: false });
const share = Type.Number({ minimum: 0, maximum: 1 });

/** host -> frame, through window.postMessage, once; carries the port. */
export const ConnectMsg = strict({
  type: Type.Literal('murmur:connect'),
  /** The run to join ('' for the coordinator's default run). */
  run: Type.String({ pattern: '^(?:[a-z0-9][a-z0-9-]{0,39})?$' }),
  /** The site owner's cap on intensity (0.1..1; absent: 1). */
  maxIntensity: Type.Optional(share),
  /** The starting intensity (absent: 0.5). */
  intensity: Type.Optional(share),
});
export type ConnectMsg = Static<typeof ConnectMsg>;

/**
 * host -> frame, over the port, by its `cmd`. There is no `start`: only a click on the frame's
 * own button starts training (the host page could forge any message it sends).
 */
export const HOST_COMMANDS = {
  pause: strict({ cmd: Type.Literal('pause') }),
  resume: strict({ cmd: Type.Literal('resume') }),
  stop: strict({ cmd: Type.Literal('stop') }),
  intensity: strict({ cmd: Type.Literal('intensity'), value: share }),
};
type HostCommands = typeof HOST_COMMANDS;
export type HostCommand = { [K in keyof HostCommands]: Static<HostCommands[K]> }[keyof HostCommands];
