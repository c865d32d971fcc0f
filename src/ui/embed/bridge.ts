// Messages between the embedding page's <murmur-volunteer> (host side, any origin) and the
// training frame (the Murmur origin). The frame says `ready` to its parent once it listens (its
// load event is no sign of that: the entry module awaits before it can listen); the host then
// opens a MessageChannel and hands one port to the frame in a `connect` message addressed to the
// Murmur origin only; everything after goes over that private port. The frame tells the host only what the widget shows: a phase, a sentence,
// the intensity and a tokens/s figure. No GPU name, no peer ids: the host site learns nothing it
// could fingerprint the visitor with.
//
// Types only (erased at build time): embed.js must stay a dependency-free classic script.

export const CONNECT = 'murmur:connect';
export const READY = 'murmur:ready';

/** frame -> host, through window.postMessage to the parent (any origin: it carries nothing). */
export interface ReadyMsg {
  type: typeof READY;
}

/** host -> frame, through window.postMessage, once; carries the port. */
export interface ConnectMsg {
  type: typeof CONNECT;
  run: string;
  /** The site owner's cap on intensity (0.1..1). */
  maxIntensity: number;
  intensity: number;
}

/**
 * host -> frame, over the port. There is no `start`: only a click on the frame's own button
 * starts training (the host page could forge any message it sends).
 */
export type HostCommand =
  | { cmd: 'pause' }
  | { cmd: 'resume' }
  | { cmd: 'stop' }
  | { cmd: 'intensity'; value: number };

export type WidgetPhase = 'checking' | 'unsupported' | 'ready' | 'starting' | 'training' | 'waiting' | 'paused' | 'stopped' | 'error';

/** frame -> host, over the port, on every change (at most a few per second). */
export interface FrameStatus {
  type: 'status';
  phase: WidgetPhase;
  /** One sentence for the widget's status line. */
  text: string;
  intensity: number;
  maxIntensity: number;
  tokensPerS: number;
  /** True while the volunteer (not the policy) has paused training. */
  userPaused: boolean;
}
