// Run events as the coordinator stores them and streams them to dashboards: peers joining,
// leaving or reported as offenders, checkpoints saved / deleted / failed, run changes. The schema
// is the one the dashboard checks each event against, on the stream and in a page of events.
import Type, { type Static } from 'typebox';

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
export const RunEvent = Type.Object({
  /** Increasing per coordinator database: the key that removes duplicates after a reconnect. */
  id: Type.Integer({ minimum: 0, maximum: Number.MAX_SAFE_INTEGER }),
  runId: Type.String({ maxLength: 40 }),
  t: Type.Number({ minimum: 0, maximum: 1e14 }),
  kind: Type.Enum(RUN_EVENT_KINDS),
  /** The peer the event is about (for peer-offender: the reporter). */
  peerId: Type.Union([Type.String({ maxLength: 40 }), Type.Null()]),
  data: Type.Unknown(),
}, { additionalProperties: false });
export type RunEvent = Static<typeof RunEvent>;

/**
 * The data of a peer-offender event: `accused` sent the reporter (the event's peer) a payload
 * that failed validation. The coordinator counts strikes from these when it restarts.
 */
export const OffenderEventData = Type.Object({
  accused: Type.String({ maxLength: 40 }),
  reason: Type.String({ maxLength: 300 }),
  strike: Type.Integer({ minimum: 1 }),
  vetoed: Type.Boolean(),
  /** The reporter was one of the accused's partners (the dashboard counts only such reports). */
  paired: Type.Boolean(),
}, { additionalProperties: false });
export type OffenderEventData = Static<typeof OffenderEventData>;
