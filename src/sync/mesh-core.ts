// The part of the mesh that one outer round's exchange (exchange.ts), direct pairing
// (pairing.ts) and the state bootstrap (bootstrap.ts) work through. They get this narrow
// interface, not the mesh itself: they import nothing from mesh.ts (which imports them), and
// what they change in the mesh they change through its methods, never by writing its fields.
import type { ControlMessage } from '../protocol/peer-messages.ts';
import type { Signaling } from '../protocol/signaling.ts';
import type { Clock } from '../protocol/clock.ts';
import type { CompressionSetting, DeadlineSettings } from '../protocol/exchange-link.ts';
import type { Logger } from './components.ts';
import type { DeadlineEstimator } from './deadline.ts';
import type { Emitter } from './emitter.ts';
import type { Link } from './links.ts';
import type { Assembler, TransferIdentity } from './transfer.ts';
import type { PartnerValidator, ValidationSettings } from './validate.ts';
import type { MeshEvents } from './types.ts';

/** Resolved settings: every default filled in. */
export interface MeshSettings {
  runId: string;
  configHash: string;
  elements: number;
  minNeighbours: number;
  maxNeighbours: number;
  rewireMs: number;
  maintainMs: number;
  connectTimeoutMs: number;
  chunkSize: number | undefined;
  highWaterBytes: number;
  deadline: DeadlineSettings;
  coordinatorGraceMs: number;
  pairRequestTimeoutMs: number;
  validation: ValidationSettings;
  banAfter: number;
  compression: CompressionSetting;
  iceServers: RTCIceServer[];
}

/** One link to one remote peer and what is in flight on it. */
export interface Conn {
  peer: string;
  /** Connection id chosen by the initiator; wraps every relayed signal of this link. */
  cid: string;
  link: Link;
  initiator: boolean;
  /** 'open' once both hellos matched: only then is it a neighbour. */
  state: 'connecting' | 'open';
  createdAt: number;
  /** When the hellos matched (NaN before). */
  openedAt: number;
  /** Tensor assemblers by transfer id. */
  inbound: Map<number, Assembler>;
  /** Tensor transfers in flight on this link either way (housekeeping never closes it then). */
  active: number;
  /** Control messages for whoever is waiting on this link (exchange, bootstrap). */
  listeners: Set<(msg: ControlMessage) => void>;
  /** Why we closed it ourselves (dropConn), if we did. */
  dropped?: string;
}

export interface MeshCore {
  readonly settings: MeshSettings;
  readonly clock: Clock;
  readonly logger: Logger;
  readonly random: () => number;
  readonly signaling: Signaling;
  readonly events: Emitter<MeshEvents>;
  readonly validator: PartnerValidator;
  readonly estimator: DeadlineEstimator;
  readonly isDestroyed: boolean;
  /** The coordinator did not answer a ready in time: pair through neighbours until it does. */
  readonly coordinatorSuspect: boolean;
  /** Partner of our last successful exchange (direct pairing avoids it for a while). */
  readonly lastPartner: string | null;
  /** Mark the coordinator unresponsive (cleared when its connection opens again). */
  suspectCoordinator(): void;
  /** Record the partner of a successful exchange (it clears that partner's stalls, noteStall). */
  notePartner(peer: string): void;
  /**
   * Our exchange of `round` with `peer` ended without the partner's payload: at our deadline, or
   * by the partner (an abort, its link closed) once it had ours (ExchangeRun.stalled);
   * `pooled`: the coordinator's pool paired us (from the second stall in a row it is reported).
   */
  noteStall(peer: string, round: number, pooled: boolean): void;
  /** Whether direct pairing leaves `peer` alone in our `round`: it stalled us lately (noteStall). */
  resting(peer: string, round: number): boolean;
  /** Sender-side error feedback for q8 Δ (what rounding has not delivered yet), made on first use. */
  q8Residual(): Float32Array;
  identity(): TransferIdentity;
  conn(peer: string): Conn | undefined;
  isBanned(peer: string): boolean;
  /** Open neighbours we may pair with. */
  eligibleNeighbours(): string[];
  /** The coordinator says `peer` is a new id on probation (asked last for bootstrap state). */
  onProbation(peer: string): boolean;
  /** Send a control message; false if the link is not open. */
  sendControl(peer: string, msg: ControlMessage): boolean;
  /** An open, greeted link to `peer`, connecting first if needed (as `initiator`). */
  ensureOpen(peer: string, initiator: boolean, timeoutMs: number): Promise<Conn>;
  /** A validation failure: strike, report to the coordinator, cut off a repeated offender. */
  offence(peer: string, code: string, detail: string, immediateBan?: boolean): void;
  /** Listen to control messages arriving on `peer`'s link; returns the unsubscribe. */
  listen(peer: string, fn: (msg: ControlMessage) => void): () => void;
  /** Run `fn` with `conn` marked busy, so trimming and rewiring leave it alone meanwhile. */
  holding<T>(conn: Conn, fn: () => Promise<T>): Promise<T>;
  randomU32(): number;
}
