// Run events for the dashboard, as pure functions: each kind in words (what the events panel
// shows), the mesh's offender reasons decoded, and the two alert rules that come from events:
// a peer reported for a bad update, and checkpoints failing since the last one saved.
import { describe, expect, it } from 'vitest';
import { checkpointAlerts, offenderAlerts, type CheckpointOutcome, type OffenderReport } from '../src/ui/core/alerts.ts';
import { describeEvent, offenderReason } from '../src/ui/core/events.ts';
import type { RunEventItem, RunEventKind } from '../src/ui/ports.ts';

const A = 'p-1a2b3c4d5e6f7081', B = 'p-9f8e7d6c5b4a3921', C = 'p-0c0c0c0c0c0c0c0c', D = 'p-0d0d0d0d0d0d0d0d';
// Unchecked on purpose: describeEvent words partial or wrong data without throwing.
const ev = (kind: RunEventKind, peerId: string | null, data: unknown): RunEventItem => ({ id: 1, t: 1000, kind, peerId, data }) as RunEventItem;

describe('run events in words', () => {
  it('says who reported whom, and for what', () => {
    const d = describeEvent(ev('peer-offender', A, { accused: B, reason: 'non-finite: Δ[12] = NaN' }));
    expect(d).toEqual({ text: `peer ${A} reported ${B} for a bad update: non-finite Δ`, detail: 'Δ[12] = NaN', tone: 'bad', tag: 'bad update' });
    // The coordinator's second report of a pair is its veto.
    const v = describeEvent(ev('peer-offender', A, { accused: B, reason: 'non-finite: Δ[12] = NaN', strike: 2, vetoed: true }));
    expect(v.detail).toBe('Δ[12] = NaN; no longer paired with each other');
  });

  it('decodes every reason the mesh sends, and shows an unknown code as it is', () => {
    const words = (r: string) => offenderReason(r).words;
    expect(words('non-finite: φ[0] = Infinity')).toBe('non-finite φ');
    expect(words('non-finite: state holds NaN')).toBe('non-finite values');
    expect(words('delta-norm: ||Δ|| = 9.1e+3 > 30 × median 1.2')).toBe('Δ norm far above the honest scale');
    expect(words('delta-null: ||Δ|| = 0.00 < 0.01 × our Δ scale 2.67: the partner\'s update is next to nothing')).toBe('a Δ of next to nothing (no training)');
    expect(words('delta-replay: sketch cosine 0.99998 > 0.999 with the Δ this partner sent us at our round 12 (norm ratio 1.00): the partner replayed an earlier update instead of computing one')).toBe('a Δ it had sent before (a replayed update, no training)');
    expect(words('phi-distance: ||φ_j − φ_i|| = 50 > 10 × reference 1')).toBe('φ far from its partner’s');
    expect(words('size: expected 10 elements, got φ 9, Δ 9')).toBe('wrong payload size');
    expect(words('ERR_FRAME_CONFIG: hello from p-1 has config abc, ours is def')).toBe('a different model or training config');
    expect(words('ERR_FRAME_CHECKSUM: tensor checksum 0x1 != declared 0x2')).toBe('a corrupted payload (checksum mismatch)');
    expect(words('ERR_FRAME_TRUNCATED: 3 bytes')).toBe('a malformed frame');
    expect(words('ERR_HELLO_IDENTITY: hello from p-1 says it is "p-2"')).toBe('a false sender id');
    expect(words('probe-gross: paired 3.1 vs solo 2.5 on 4 probe windows: excess 0.6, margin 0.03')).toBe('an update that made the loss much worse');
    expect(words('probe-harm: paired 2.52 vs solo 2.5 on 4 probe windows: excess 0.02, margin 0.03; cusum 4.5 > 4')).toBe('updates that kept making the loss worse');
    expect(words('phi-lag: φ_j sat 3.4 Δ scales behind ours along its own Δ; lag sum 2.9 > 2.5 (slack 1 a payload)')).toBe('φ kept behind along its own progress');
    expect(offenderReason('stall: its payload missed our deadline 2 exchanges in a row (round 7)')).toEqual({ code: 'stall', words: 'no payload by the deadline, twice or more in a row', detail: 'its payload missed our deadline 2 exchanges in a row (round 7)' });
    expect(offenderReason('ERR_SOMETHING_NEW: x')).toEqual({ code: 'ERR_SOMETHING_NEW', words: 'ERR_SOMETHING_NEW', detail: 'x' });
    expect(offenderReason('no colon here')).toEqual({ code: 'no colon here', words: 'no colon here', detail: null });
  });

  it('words every other kind from the data the coordinator writes', () => {
    const text = (kind: RunEventKind, peer: string | null, data: unknown) => { const d = describeEvent(ev(kind, peer, data)); return [d.text, d.detail]; };
    expect(text('peer-joined', A, { replica: 3, resumed: true, client: { kind: 'browser', adapter: 'Apple M2' } })).toEqual([`peer ${A} joined`, 'replica 3, resumed its session, browser, Apple M2']);
    expect(text('peer-joined', A, { replica: 0, resumed: false, client: null })).toEqual([`peer ${A} joined`, 'replica 0']);
    expect(text('peer-left', A, { reason: 'disconnected' })).toEqual([`peer ${A} left`, 'disconnected']);
    expect(text('checkpoint-saved', A, { id: 'c1', step: 1200, valLoss: 2.3456, bytes: 8_200_000 })).toEqual(['checkpoint saved at step 1200', `val. loss 2.346, 8.20 MB, from peer ${A}`]);
    expect(text('checkpoint-failed', A, { request: 'r1', reason: 'no upload within 60000 ms' })).toEqual([`checkpoint from peer ${A} failed`, 'no upload within 60000 ms']);
    expect(text('checkpoint-deleted', null, { id: 'c-7' })).toEqual(['checkpoint c-7 deleted', null]);
    expect(text('checkpoint-deleted', A, { id: 'c-8', reason: 'withdrawn: a later upload of this peer was refused' })).toEqual(['checkpoint c-8 deleted', 'withdrawn: a later upload of this peer was refused']);
    expect(text('run-created', null, { run: { preset: 'tiny', dataset: 'moby-dick' } })).toEqual(['run created', 'tiny on moby-dick']);
    expect(text('run-updated', null, { change: { train: { H: 20 }, pairWaitFrac: 0.5 } })).toEqual(['run settings changed', 'train.H = 20, pairWaitFrac = 0.5']);
    expect(text('run-stopped', null, null)).toEqual(['run stopped by the operator', null]);
  });

  it('survives data that is missing or of the wrong type (it came over the network)', () => {
    expect(describeEvent(ev('peer-offender', A, 'junk')).text).toBe(`peer ${A} reported a partner for a bad update: unspecified`);
    expect(describeEvent(ev('checkpoint-saved', null, { step: 'many' }))).toMatchObject({ text: 'checkpoint saved', detail: null });
    expect(describeEvent(ev('peer-left', null, [1, 2]))).toMatchObject({ text: 'a peer left', detail: null });
  });
});

describe('alerts from run events', () => {
  const report = (t: number, reporter: string, accused: string, reason: string, paired = true): OffenderReport => ({ t, reporter, accused, reason, paired });

  it('names the accused peer, its reporter and the reason; a warning while one peer says so', () => {
    const [a, ...rest] = offenderAlerts([report(5000, A, B, 'non-finite: Δ[12] = NaN')]);
    expect(rest).toEqual([]);
    expect(a).toMatchObject({ key: `offender:${B}`, kind: 'offender', severity: 'warning', peerId: B, t: 5000 });
    expect(a!.message).toMatch(new RegExp(`^${B} sent ${A} a bad update: non-finite Δ \\(Δ\\[12\\] = NaN\\)\\.`));
  });

  it('is critical once two peers report the same one, and keeps one alert per accused peer', () => {
    const alerts = offenderAlerts([
      report(7000, C, B, 'delta-norm: ||Δ|| = 1e9 > 30 × median 1'),
      report(5000, A, B, 'non-finite: Δ[12] = NaN'),
      report(6000, B, C, 'size: expected 10 elements, got φ 9, Δ 9'),
    ]);
    expect(alerts.map((a) => [a.peerId, a.severity, a.t])).toEqual([[B, 'critical', 5000], [C, 'warning', 6000]]);
    expect(alerts[0]!.message).toMatch(new RegExp(`^${B} sent bad updates to 2 peers \\(${C}, ${A}\\): Δ norm far above the honest scale; non-finite Δ\\.`));
    expect(offenderAlerts([])).toEqual([]);
  });

  it('keeps an alert short whatever its reporters write: a few reasons, each cut, and a count of the rest', () => {
    // Reporters are peers, and an unknown code is shown as it came (up to 300 characters): 40 ids
    // of one hostile client, each with a sentence of its own, once made one critical alert of 12 KB.
    const ids = Array.from({ length: 40 }, (_, i) => `p-${(0x100 + i).toString(16).padStart(16, '0')}`);
    const say = (i: number) => `${i} Researchers, this run is compromised, download the fixed checkpoint from evil.example ${'x'.repeat(200)}`;
    const [many] = offenderAlerts(ids.map((id, i) => report(5000 + i, id, B, say(i))));
    expect(many!.severity).toBe('critical');
    expect(many!.message.length).toBeLessThan(600);
    expect(many!.message).toMatch(new RegExp(`^${B} sent bad updates to 40 peers \\(${ids[0]}, ${ids[1]}, ${ids[2]}, …\\): 0 Researchers, this run is compromised[^;]{0,60}…; 1 Researchers[^;]*…; 2 Researchers[^;]*…; and 37 other reasons\\.`));
    const [one] = offenderAlerts([report(5000, A, B, say(7))]);
    expect(one!.message.length).toBeLessThan(400);
    expect(one!.message).toMatch(new RegExp(`^${B} sent ${A} a bad update: 7 Researchers, this run is compromised[^.]{0,60}…\\. It was rejected`));
  });

  it('says a stall is no bad update: a warning however many partners report it, and the event says stalling (a slow link does it too)', () => {
    const stall = (k: number) => `stall: its payload missed our deadline ${k} exchanges in a row (round ${k + 5})`;
    const [a] = offenderAlerts([report(5000, A, B, stall(2)), report(6000, C, B, stall(3))]);
    expect(a).toMatchObject({ key: `offender:${B}`, severity: 'warning', peerId: B, t: 5000 });
    expect(a!.message).toMatch(new RegExp(`^${B} stalled 2 peers: no payload by the deadline, twice or more in a row\\. No update of it was judged`));
    expect(a!.message).not.toMatch(/bad update|rejected/);
    // A bad update among the reports is judged as before, by the reports that judged an update: a
    // stall beside one bad update is no second witness of it (A got no update from B).
    const [mixed] = offenderAlerts([report(5000, A, B, stall(2)), report(6000, C, B, 'non-finite: Δ[12] = NaN')]);
    expect(mixed).toMatchObject({ severity: 'warning', t: 5000 });
    expect(mixed!.message).toMatch(new RegExp(`^${B} sent ${C} a bad update: non-finite Δ \\(Δ\\[12\\] = NaN\\)\\. .* ${A} reported it stalling too\\.$`));
    const [two] = offenderAlerts([report(5000, A, B, stall(2)), report(6000, C, B, 'non-finite: Δ[12] = NaN'), report(7000, D, B, 'delta-norm: ||Δ|| = 1e9 > 30 × median 1')]);
    expect(two).toMatchObject({ severity: 'critical' });
    expect(two!.message).toMatch(new RegExp(`^${B} sent bad updates to 2 peers \\(${C}, ${D}\\): non-finite Δ; Δ norm far above the honest scale\\. .* ${A} reported it stalling too\\.$`));
    const d = describeEvent(ev('peer-offender', A, { accused: B, reason: stall(2), strike: 1, vetoed: false, paired: true }));
    expect([d.text, d.tone]).toEqual([`peer ${A} reported ${B} for stalling: no payload by the deadline, twice or more in a row`, 'warn']);
  });

  it('stays a warning when the reporters were not checked as the accused\'s partners (issue 15)', () => {
    // Two fresh ids accusing a peer they never met: events from before the coordinator checked
    // partners, or forged ones, carry no `paired`. One checked report plus one unchecked is one.
    const unchecked = offenderAlerts([report(5000, A, B, 'non-finite: Δ[12] = NaN', false), report(6000, C, B, 'non-finite: Δ[1] = NaN', false)]);
    expect(unchecked.map((a) => [a.peerId, a.severity])).toEqual([[B, 'warning']]);
    const one = offenderAlerts([report(5000, A, B, 'non-finite: Δ[12] = NaN', true), report(6000, C, B, 'non-finite: Δ[1] = NaN', false)]);
    expect(one.map((a) => a.severity)).toEqual(['warning']);
    const two = offenderAlerts([report(5000, A, B, 'non-finite: Δ[12] = NaN', true), report(6000, C, B, 'non-finite: Δ[1] = NaN', true)]);
    expect(two.map((a) => a.severity)).toEqual(['critical']);
  });

  const out = (t: number, ok: boolean, step: number | null, reason: string | null = null): CheckpointOutcome => ({ t, ok, peerId: A, step, reason });

  it('raises a checkpoint failure until a newer checkpoint is saved', () => {
    expect(checkpointAlerts([out(1, true, 100)])).toEqual([]);
    const [a] = checkpointAlerts([out(1, true, 100), out(2, false, null, 'no upload within 60000 ms')]);
    expect(a).toMatchObject({ key: 'checkpoint:2', kind: 'checkpoint', severity: 'warning', peerId: A, t: 2 });
    expect(a!.message).toMatch(new RegExp(`^Checkpoint from ${A} failed: no upload within 60000 ms\\. The newest saved checkpoint is at step 100`));
    expect(checkpointAlerts([out(1, true, 100), out(2, false, null, 'x'), out(3, true, 200)])).toEqual([]);
  });

  it('counts failures in a row, critical from three, and says when none was ever saved', () => {
    const [a] = checkpointAlerts([out(2, false, null, 'peer left before uploading its state'), out(3, false, null, 'b'), out(4, false, null, 'peer could not serve its state: busy')]);
    expect(a).toMatchObject({ key: 'checkpoint:2', severity: 'critical', t: 2 });
    expect(a!.message).toMatch(/failed: peer could not serve its state: busy\. 3 failures in a row\. No checkpoint has been saved yet/);
  });
});
