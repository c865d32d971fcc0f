// Run events in words for the dashboard's "Run events" panel and its alerts. Pure: the coordinator's
// event (kind, peer, data) in, a sentence out. The source has checked `data` against its kind's
// schema (RUN_EVENT_DATA in src/protocol/api.ts) before it gets here; the reads below still take
// nothing for granted, so an event built elsewhere (a test's fake, a demo feed) with a field
// missing only makes the sentence shorter.
import type { RunEventItem, RunEventKind } from '../ports.ts';
import { formatBytes, formatLoss } from './format.ts';

export type EventTone = 'bad' | 'warn' | 'ok' | 'info';

export interface EventText {
  /** One line: what happened ("peer p-… reported p-… for a bad update: non-finite Δ"). */
  text: string;
  /** The rest, for a second muted line (the validator's numbers, the adapter, a reason). */
  detail: string | null;
  tone: EventTone;
  /** A short label for the kind ("joined", "bad update", "checkpoint"). */
  tag: string;
}

const obj = (v: unknown): Record<string, unknown> => (v && typeof v === 'object' && !Array.isArray(v) ? v as Record<string, unknown> : {});
const str = (v: unknown): string | null => (typeof v === 'string' && v.trim() ? v.trim() : null);
const num = (v: unknown): number | null => (typeof v === 'number' && Number.isFinite(v) ? v : null);

/**
 * What a partner's payload was rejected for. The mesh reports "code: detail" (src/sync/mesh.ts
 * offence): a validator reason (src/sync/validate.ts), a frame error code (src/protocol/errors.ts),
 * a hello mismatch, the probe's verdict (src/round/probe.ts) or a stall. Unknown codes are shown as they are.
 */
export function offenderReason(reason: string): { code: string; words: string; detail: string | null } {
  const at = reason.indexOf(': ');
  const code = (at >= 0 ? reason.slice(0, at) : reason).trim();
  const detail = at >= 0 ? reason.slice(at + 2).trim() || null : null;
  const words = (() => {
    switch (code) {
      case 'non-finite': return detail?.startsWith('Δ') ? 'non-finite Δ' : detail?.startsWith('φ') ? 'non-finite φ' : 'non-finite values';
      case 'delta-norm': return 'Δ norm far above the honest scale';
      case 'delta-null': return 'a Δ of next to nothing (no training)';
      case 'delta-direction': return 'Δ pointing against its partner’s';
      // src/sync/replay.ts: the sketch of a Δ seen before (its own earlier one, another peer's, or ours).
      case 'delta-replay': return 'a Δ it had sent before (a replayed update, no training)';
      case 'phi-distance': return 'φ far from its partner’s';
      case 'phi-lag': return 'φ kept behind along its own progress';
      case 'size': case 'ERR_FRAME_SIZE': return 'wrong payload size';
      case 'ERR_FRAME_DTYPE': return 'another wire dtype than the run’s compression';
      case 'ERR_FRAME_CONFIG': return 'a different model or training config';
      case 'ERR_FRAME_RUN': return 'a payload for another run';
      case 'ERR_FRAME_CHECKSUM': return 'a corrupted payload (checksum mismatch)';
      case 'ERR_FRAME_SENDER': case 'ERR_HELLO_IDENTITY': return 'a false sender id';
      case 'rejected': case 'ERR_PARTNER_REJECTED': return 'a rejected payload';
      // The probe (src/round/probe.ts): the update made the reporter's own loss worse.
      case 'probe-gross': return 'an update that made the loss much worse';
      case 'probe-harm': return 'updates that kept making the loss worse';
      // The mesh (src/sync/mesh.ts noteStall): a pool partner's payload missed the deadline again.
      case 'stall': return 'no payload by the deadline, twice or more in a row';
      default: return code.startsWith('ERR_FRAME_') ? 'a malformed frame' : code || 'unspecified';
    }
  })();
  return { code, words, detail };
}

/** "train.H = 20, pairWaitFrac = 0.5" from a PATCH body; long bodies are cut. */
function changeList(change: unknown): string | null {
  const parts: string[] = [];
  const walk = (o: Record<string, unknown>, prefix: string) => {
    for (const [k, v] of Object.entries(o)) {
      if (v && typeof v === 'object' && !Array.isArray(v)) walk(v as Record<string, unknown>, `${prefix}${k}.`);
      else parts.push(`${prefix}${k} = ${JSON.stringify(v)}`);
    }
  };
  walk(obj(change), '');
  if (parts.length === 0) return null;
  const s = parts.join(', ');
  return s.length > 200 ? `${s.slice(0, 199)}…` : s;
}

const TAG: Record<RunEventKind, string> = {
  'run-created': 'run', 'run-updated': 'run', 'run-stopped': 'run', 'peer-joined': 'joined', 'peer-left': 'left',
  'peer-offender': 'bad update', 'checkpoint-saved': 'checkpoint', 'checkpoint-deleted': 'checkpoint', 'checkpoint-failed': 'checkpoint',
};

export function describeEvent(e: RunEventItem): EventText {
  const d = obj(e.data);
  const peer = e.peerId ? `peer ${e.peerId}` : 'a peer';
  const out = (text: string, detail: string | null, tone: EventTone): EventText => ({ text, detail, tone, tag: TAG[e.kind] });
  switch (e.kind) {
    case 'run-created': {
      const run = obj(d.run);
      const what = [str(run.preset), str(run.dataset)].filter(Boolean).join(' on ');
      return out('run created', what || null, 'info');
    }
    case 'run-updated': return out('run settings changed', changeList(d.change), 'info');
    case 'run-stopped': return out('run stopped by the operator', null, 'warn');
    case 'peer-joined': {
      const client = obj(d.client);
      const replica = num(d.replica);
      const bits = [replica !== null ? `replica ${replica}` : null, d.resumed === true ? 'resumed its session' : null,
        str(client.kind), str(client.adapter)].filter(Boolean);
      return out(`${peer} joined`, bits.join(', ') || null, 'info');
    }
    case 'peer-left': return out(`${peer} left`, str(d.reason), 'info');
    case 'peer-offender': {
      const r = offenderReason(str(d.reason) ?? 'unspecified');
      // The coordinator stops pairing the two at the second report (d.vetoed).
      const veto = d.vetoed === true ? 'no longer paired with each other' : null;
      // A stall says nothing of an update: no payload came (a slow link, or a peer that holds its
      // partners up); the pool rests the two for a while (server/peers.ts).
      if (r.code === 'stall') return out(`${peer} reported ${str(d.accused) ?? 'a partner'} for stalling: ${r.words}`, [r.detail, 'the pool pairs them elsewhere for a while'].filter(Boolean).join('; '), 'warn');
      return out(`${peer} reported ${str(d.accused) ?? 'a partner'} for a bad update: ${r.words}`, [r.detail, veto].filter(Boolean).join('; ') || null, 'bad');
    }
    case 'checkpoint-saved': {
      const step = num(d.step), loss = num(d.valLoss), bytes = num(d.bytes);
      const bits = [loss !== null ? `val. loss ${formatLoss(loss)}` : null, bytes !== null ? formatBytes(bytes) : null, e.peerId ? `from peer ${e.peerId}` : null];
      return out(step !== null ? `checkpoint saved at step ${step}` : 'checkpoint saved', bits.filter(Boolean).join(', ') || null, 'ok');
    }
    case 'checkpoint-deleted': return out(str(d.id) ? `checkpoint ${str(d.id)} deleted` : 'checkpoint deleted', str(d.reason), str(d.reason) ? 'bad' : 'info');
    case 'checkpoint-failed': return out(`checkpoint from ${peer} failed`, str(d.reason), 'bad');
  }
}
