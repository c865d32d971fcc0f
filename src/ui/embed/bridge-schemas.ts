// The schemas of the messages between the embedding page (any origin, possibly hostile) and the
// training frame. The frame checks what the page sends against its schema before reading a field
// (frame-bridge.ts); TypeBox's Value module interprets the schema: the frame runs under a CSP
// without 'unsafe-eval'. The frame's status goes the other way, to embed.js, which can import
// nothing and checks it by hand against FrameStatus below (tests/ui.embed-status.test.ts holds
// the two to the same answers). Types are derived from the schemas and named in bridge.ts, whose
// imports are types only, so embed.js stays a dependency-free script.
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

/** What the widget shows of the frame's state. */
const WidgetPhase = Type.Enum(['checking', 'unsupported', 'ready', 'starting', 'training', 'waiting', 'paused', 'stopped', 'error']);
export type WidgetPhase = Static<typeof WidgetPhase>;

/** Longest status sentence (the frame's own are under 120 characters). */
export const MAX_STATUS_TEXT = 300;

/**
 * frame -> host, over the port, on every change (at most a few per second): only what the widget
 * shows, a phase, a sentence, the intensity and a tokens/s figure; nothing identifying.
 */
export const FrameStatus = strict({
  type: Type.Literal('status'),
  phase: WidgetPhase,
  /** One sentence for the widget's status line. */
  text: Type.String({ maxLength: MAX_STATUS_TEXT }),
  intensity: share,
  maxIntensity: share,
  tokensPerS: Type.Integer({ minimum: 0, maximum: 1e12 }),
  /** True while the volunteer (not the policy) has paused training. */
  userPaused: Type.Boolean(),
});
export type FrameStatus = Static<typeof FrameStatus>;
