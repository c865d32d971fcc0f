// Named errors of the mesh. Each has a stable `code` (simple-peer's habit) and keeps its cause.
import { CodedError } from '../protocol/errors.ts';

export type SyncErrorCode =
  | 'ERR_MESH_DESTROYED'
  | 'ERR_MESH_BUSY'
  | 'ERR_MESH_CONFIG'
  | 'ERR_PAYLOAD'
  | 'ERR_CONNECT_TIMEOUT'
  | 'ERR_LINK_CLOSED'
  | 'ERR_TRANSFER_ABORTED'
  | 'ERR_COMPRESSION'
  | 'ERR_BOOTSTRAP' | 'ERR_STATE_CHECK';

export class SyncError extends CodedError<SyncErrorCode> {}

/** The mesh was destroyed while the call was pending, or a call came after destroy(). */
export class MeshDestroyedError extends SyncError {
  constructor(what = 'mesh') { super('ERR_MESH_DESTROYED', `${what}: the mesh has been destroyed`); }
}
/** exchange() called while another exchange is still running: one outer step at a time. */
export class MeshBusyError extends SyncError {
  constructor(round: number) { super('ERR_MESH_BUSY', `exchange for round ${round} requested while another exchange is running; await the previous one`); }
}
/** createMesh got settings it cannot work with. */
export class MeshConfigError extends SyncError {
  constructor(message: string) { super('ERR_MESH_CONFIG', `mesh settings: ${message}`); }
}
/** Our own caller handed over a payload of the wrong size or with non-finite values. */
export class PayloadError extends SyncError {
  constructor(message: string) { super('ERR_PAYLOAD', message); }
}
export class ConnectTimeoutError extends SyncError {
  constructor(peer: string, ms: number) { super('ERR_CONNECT_TIMEOUT', `WebRTC connection to ${peer} not open after ${ms} ms`); }
}
/** The data channel closed (peer left, crashed, or the network dropped) during a transfer. */
export class LinkClosedError extends SyncError {
  constructor(peer: string, options?: { cause?: unknown }) { super('ERR_LINK_CLOSED', `link to ${peer} closed`, options); }
}
export class TransferAbortedError extends SyncError {
  constructor(reason: string) { super('ERR_TRANSFER_ABORTED', `transfer aborted: ${reason}`); }
}
export class CompressionError extends SyncError {
  constructor(message: string) { super('ERR_COMPRESSION', message); }
}
export class BootstrapError extends SyncError {
  constructor(message: string, options?: { cause?: unknown }) { super('ERR_BOOTSTRAP', message, options); }
}
/** A bootstrap state (a peer's or a checkpoint's) failed the newcomer's checks (state-check.ts). */
export class StateCheckError extends SyncError {
  constructor(message: string, options?: { cause?: unknown }) { super('ERR_STATE_CHECK', message, options); }
}

/**
 * A state past the coordinator's bound on this peer's steps (state-check.ts): not adopted, but
 * not reported either, since the bound may be stale for an honest peer (it counts only reports
 * the coordinator has received, none yet from a peer that just reconnected or just adopted a
 * state itself).
 */
export class StateAheadError extends StateCheckError {}
