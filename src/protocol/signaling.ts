// What the mesh (src/sync) needs from the coordinator connection, as a type only: the mesh is
// given an implementation (the real WebSocket client, or a stub in tests) and never imports one.

import type { IcePolicy, WireIceServer } from './messages.ts';

/** What a new link is configured with. */
export interface IceConfig {
  iceServers: WireIceServer[];
  policy: IcePolicy;
  /** When the TURN credential among iceServers expires (ms), null when there is none. */
  expiresAt: number | null;
}

/** The pool named a partner for our round. */
export interface PairedWith {
  /** Outer round the peer asked a partner for. */
  round: number;
  /** Partner's peer id. */
  partner: string;
  /**
   * The round the partner asked a partner for: its `xchg` and its `abort` of this pairing carry it
   * (each peer counts its own rounds), so the exchange tells them from an earlier pairing's.
   */
  partnerRound: number;
  /** Exactly one side of a pair initiates the WebRTC connection. */
  initiator: boolean;
  /** The partner is a new id on probation (the coordinator says so; judge it strictly). */
  probation?: boolean;
}

/** No partner within the wait: take a solo step. */
export interface PairedWithNobody {
  round: number;
  partner: null;
  initiator: boolean;
}

/** The coordinator's ready-pool answer for one round. */
export type PairAssignment = PairedWith | PairedWithNobody;

export interface SignalingEventMap {
  /** The coordinator accepted us (again, after a reconnect). */
  open: { peerId: string };
  /** The coordinator connection dropped; the client reconnects by itself with backoff. */
  close: { reason: string };
  /** A simple-peer signal relayed from another live peer of the same run. */
  signal: { from: string; data: unknown };
  /** Live peers of the run, for choosing and rewiring neighbours. */
  peers: { peers: string[]; probation?: string[] };
  /** The coordinator's ready-pool answer to `ready()`. */
  paired: PairAssignment;
}

export interface Signaling {
  /** Our peer id once the coordinator accepted us, else null. */
  readonly peerId: string | null;
  readonly connected: boolean;
  /** Relay a simple-peer signal to another peer of the run (dropped if disconnected). */
  sendSignal(to: string, data: unknown): void;
  /** Enter the ready pool for outer round `round`, waiting at most `waitMs` for a partner. */
  ready(round: number, waitMs: number): void;
  /**
   * Tell the coordinator that `peer` sent a payload that failed validation (`reason` is the
   * mesh's error code and detail). Optional so a client without it still type-checks; the
   * mesh queues reports while the coordinator is down.
   */
  reportOffender?(peer: string, reason: string): void;
  /**
   * The ICE servers and policy new WebRTC links use, as the coordinator last sent them (kept
   * while it is down: links still need TURN then). Optional: without it links use none.
   */
  ice?(): IceConfig | null;
  on<K extends keyof SignalingEventMap>(event: K, fn: (e: SignalingEventMap[K]) => void): () => void;
}
