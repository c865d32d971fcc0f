// Run events as the coordinator stores them and streams them to dashboards: peers joining,
// leaving or reported as offenders, checkpoints saved / deleted / failed, run changes.

export const RUN_EVENT_KINDS = [
  'run-created', 'run-updated', 'run-stopped', 'peer-joined', 'peer-left', 'peer-offender',
  'checkpoint-saved', 'checkpoint-deleted', 'checkpoint-failed',
] as const;

export type RunEventKind = (typeof RUN_EVENT_KINDS)[number];

/**
 * One run event. `data` is as the coordinator wrote it; e.g. peer-offender: { accused, reason },
 * checkpoint-saved: the checkpoint's info, checkpoint-failed: { request, reason }. Readers check
 * its fields.
 */
export interface RunEvent {
  /** Increasing per coordinator database: the key that removes duplicates after a reconnect. */
  id: number;
  runId: string;
  t: number;
  kind: RunEventKind;
  /** The peer the event is about (for peer-offender: the reporter). */
  peerId: string | null;
  data: unknown;
}
