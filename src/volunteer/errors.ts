// Named errors of the headless volunteer. Each says what was wrong and what to do, and keeps
// its cause (the mesh's SyncError habit: a stable `code` for callers that branch on it).
import { CodedError } from '../protocol/errors.ts';

export type VolunteerErrorCode =
  | 'ERR_VOLUNTEER_CONFIG'
  | 'ERR_COORDINATOR_UNREACHABLE'
  | 'ERR_COORDINATOR_REFUSED'
  | 'ERR_DATA'
  | 'ERR_BACKEND'
  | 'ERR_STOPPED'
  | 'ERR_DIVERGED';

export class VolunteerError extends CodedError<VolunteerErrorCode> {}

/** Options the volunteer cannot run with (bad URL, unknown backend, bad limits). */
export class VolunteerConfigError extends VolunteerError {
  constructor(message: string) { super('ERR_VOLUNTEER_CONFIG', `volunteer options: ${message}`); }
}

/** No welcome from the coordinator within the join timeout. */
export class CoordinatorUnreachableError extends VolunteerError {
  constructor(url: string, ms: number, lastReason: string | null) {
    super('ERR_COORDINATOR_UNREACHABLE', `no answer from the coordinator at ${url} within ${Math.round(ms / 1000)} s` +
      `${lastReason ? ` (last: ${lastReason})` : ''}; is \`murmur serve\` running there and reachable?`);
  }
}

/** The coordinator turned us away for good (unknown or stopped run, version mismatch). */
export class CoordinatorRefusedError extends VolunteerError {
  constructor(reason: string) { super('ERR_COORDINATOR_REFUSED', `the coordinator refused this volunteer: ${reason}`); }
}

/** A data file did not arrive whole or does not match the coordinator's hash. */
export class DataIntegrityError extends VolunteerError {
  constructor(message: string, options?: { cause?: unknown }) { super('ERR_DATA', message, options); }
}

/** The training backend could not start (no GPU adapter, a run config it cannot train). */
export class BackendError extends VolunteerError {
  constructor(message: string, options?: { cause?: unknown }) { super('ERR_BACKEND', message, options); }
}

/** stop() came before the volunteer had joined: nothing was trained. */
export class VolunteerStoppedError extends VolunteerError {
  constructor(reason: string) { super('ERR_STOPPED', `stopped before joining the run (${reason})`); }
}

/** The loss went non-finite; θ is back at φ of the last outer step and the inner loop restarts. */
export class DivergedError extends VolunteerError {
  constructor(message: string, options?: { cause?: unknown }) { super('ERR_DIVERGED', message, options); }
}
