// Messages between the embedding page's <murmur-volunteer> (host side, any origin) and the
// training frame (the Murmur origin). The frame says `ready` to its parent once it listens (its
// load event is no sign of that: the entry module awaits before it can listen); the host then
// opens a MessageChannel and hands one port to the frame in a `connect` message addressed to the
// Murmur origin only; everything after goes over that private port. The frame tells the host only what the widget shows: a phase, a sentence,
// the intensity and a tokens/s figure. No GPU name, no peer ids: the host site learns nothing it
// could fingerprint the visitor with.
//
// Types only (erased at build time): embed.js must stay a dependency-free classic script. Each
// message is typed from its schema (bridge-schemas.ts): what the host sends the frame, which the
// frame checks, and the frame's status, which embed.js checks.
export type { ConnectMsg, FrameStatus, HostCommand, WidgetPhase } from './bridge-schemas.ts';

export const READY = 'murmur:ready';

/** frame -> host, through window.postMessage to the parent (any origin: it carries nothing). */
export interface ReadyMsg {
  type: typeof READY;
}
