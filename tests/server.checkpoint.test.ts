import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createHash } from 'node:crypto';
import { execFileSync, spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { request as httpRequest, type ClientRequest } from 'node:http';
import { WebSocket } from 'ws';
import { tableCounts } from '../server/db.ts';
import { SignalingClient, memorySessionStore, type WebSocketCtor } from '../src/sync/signaling-client.ts';
import { buildLayout, view } from '../src/model/layout.ts';
import { preset } from '../src/model/config.ts';
import { initParams } from '../src/model/init.ts';
import { Rng } from '../src/model/rng.ts';
import { encodeStateFrame, type StateFrame } from '../src/protocol/state-frame.ts';
import { earnTrust, reportedStep, startServer, until, type TestServer } from './support/coordinator.ts';
import { PROBATION_EXCHANGES } from '../server/peers.ts';
import type { RunInfo } from '../src/protocol/messages.ts';
import { valLoss } from './support/states.ts';

const layout = buildLayout(preset('micro'));
const sha = (a: Float32Array) => createHash('sha256').update(Buffer.from(a.buffer, a.byteOffset, a.byteLength)).digest('hex');

/** A peer's slow state: GPT-2 init for φ, small random momentum. */
function peerState(seed: number, step: number): StateFrame {
  const phi = initParams(layout, seed);
  const momentum = new Float32Array(layout.total);
  const rng = new Rng(seed, 77);
  for (const t of layout.tensors) for (let i = 0; i < t.size; i++) momentum[t.offset + i] = rng.normal() * 1e-3;
  return { meta: { runId: 'm', step, round: step / 10, floats: layout.total, valLoss: 3.25, tokens: step * 256 }, phi, momentum };
}

function pyRead(path: string): { metadata: Record<string, string>; tensors: Record<string, { shape: number[]; sha256: string; dtype: string }> } {
  return JSON.parse(execFileSync('/usr/bin/python3', ['tests/fixtures/read_safetensors.py', path], { encoding: 'utf8', maxBuffer: 64 << 20 }));
}

let s: TestServer;
let client: SignalingClient;
let state: StateFrame;
beforeAll(async () => {
  // Raw witnesses (earnTrust) have no inner loop for the pool to learn a cadence from: the plain rule.
  s = await startServer({ checkpointKeep: 2, stateRequestTimeoutMs: 2000, hub: { pairPrediction: false } });
  expect((await s.c.app.inject({ method: 'POST', url: '/api/runs', headers: s.admin, payload: { id: 'm', dataset: 'moby-dick', preset: 'micro' } })).statusCode).toBe(201);
  state = peerState(5, 100);
  client = new SignalingClient({ url: s.url, run: 'm', WebSocket: WebSocket as unknown as WebSocketCtor, session: memorySessionStore() });
  client.setStateProvider(() => state);
  client.start();
  await until(() => client.connected, 5000, 'the peer to join');
  // Only a peer off probation gets checkpoint duty.
  await earnTrust(s.url, 'm', client, { exchanges: PROBATION_EXCHANGES, H: 50 });
  await until(() => s.c.hub.eligibleForDuty(client.peerId!), 5000, 'the peer to leave probation');
});
afterAll(async () => {
  client?.stop();
  await s?.close();
});

async function takeCheckpoint(): Promise<Record<string, unknown>> {
  // The peer has reported the step of the state it serves, as it does after each outer step.
  await reportedStep(s, client, state.meta.step, 50);
  const served = new Promise<{ ok: boolean; error?: string }>((resolve) => { const off = client.on('state-served', (e) => { off(); resolve(e); }); });
  const r = await s.c.app.inject({ method: 'POST', url: '/api/runs/m/checkpoints', headers: s.admin });
  expect(r.statusCode).toBe(202);
  expect(r.json().peerId).toBe(client.peerId);
  const e = await served;
  expect(e).toEqual({ id: r.json().request, ok: true });
  return (await s.c.app.inject({ method: 'GET', url: '/api/runs/m/checkpoints' })).json().checkpoints[0];
}

describe('checkpoints', () => {
  it('stores the peer state as safetensors that an independent reader sees as equal', async () => {
    const info = await takeCheckpoint();
    // The loss stored is the coordinator's own measurement of φ, not the 3.25 the peer claimed.
    const run = (await s.c.app.inject({ method: 'GET', url: '/api/runs/m' })).json() as RunInfo;
    const measured = valLoss(run, state.phi);
    expect(info).toMatchObject({ runId: 'm', step: 100, round: 10, valLoss: measured, tokens: 25600, peerId: client.peerId });
    const dir = join(s.dataDir, 'checkpoints', 'm');
    const file = join(dir, info.file as string);
    const bytes = readFileSync(file);
    expect(createHash('sha256').update(bytes).digest('hex')).toBe(info.sha256);
    expect(JSON.parse(readFileSync(join(dir, `${info.id}.json`), 'utf8'))).toEqual(info);

    const py = pyRead(file);
    expect(py.metadata).toMatchObject({ format: 'murmur-checkpoint', version: '1', step: '100', round: '10', tokens: '25600', val_loss: String(measured), peer: client.peerId });
    expect(JSON.parse(py.metadata.model!)).toEqual(preset('micro'));
    expect(JSON.parse(py.metadata.train!).H).toBe(50);
    expect(Object.keys(py.tensors)).toHaveLength(2 * layout.tensors.length);
    for (const t of layout.tensors) {
      for (const [prefix, flat] of [['phi.', state.phi], ['momentum.', state.momentum]] as const) {
        const e = py.tensors[prefix + t.name]!;
        expect(e.dtype).toBe('float32');
        expect(e.shape).toEqual(t.shape);
        expect(e.sha256, prefix + t.name).toBe(sha(view(flat, t)));
      }
    }
  });

  it('serves the file, the bootstrap state and the Hugging Face export with ETags', async () => {
    const info = (await s.c.app.inject({ method: 'GET', url: '/api/runs/m/checkpoints' })).json().checkpoints[0];
    const base = `/api/runs/m/checkpoints/${info.id}`;
    const file = await s.c.app.inject({ method: 'GET', url: `${base}/file` });
    expect(file.statusCode).toBe(200);
    expect(file.headers.etag).toBe(`"${info.sha256}"`);
    expect(file.headers['content-disposition']).toMatch(/attachment/);
    expect((await s.c.app.inject({ method: 'GET', url: `${base}/file`, headers: { 'if-none-match': `"${info.sha256}"` } })).statusCode).toBe(304);

    // A newcomer bootstraps from it: the state frame equals the peer's state bit for bit.
    const newcomer = new SignalingClient({ url: s.url, run: 'm', WebSocket: WebSocket as unknown as WebSocketCtor });
    newcomer.start();
    try {
      await until(() => newcomer.connected, 5000, 'the newcomer to join');
      expect(newcomer.welcome!.checkpoint).toMatchObject({ id: info.id, step: 100 });
      const boot = (await newcomer.fetchCheckpointState())!;
      expect(boot.meta).toMatchObject({ runId: 'm', step: 100, round: 10, floats: layout.total });
      expect(sha(boot.phi)).toBe(sha(state.phi));
      expect(sha(boot.momentum)).toBe(sha(state.momentum));
    } finally {
      newcomer.stop();
    }
    await until(() => s.c.hub.livePeers('m').length === 1, 5000, 'the newcomer to leave');

    const dir = mkdtempSync(join(tmpdir(), 'hf-'));
    try {
      const cfg = (await s.c.app.inject({ method: 'GET', url: `${base}/export/config.json` })).json();
      expect(cfg).toMatchObject({
        architectures: ['GPT2LMHeadModel'], model_type: 'gpt2', vocab_size: 256, n_positions: 32, n_embd: 32, n_layer: 2, n_head: 2,
        activation_function: 'gelu_new', layer_norm_epsilon: 1e-5, tie_word_embeddings: true,
      });
      const model = await s.c.app.inject({ method: 'GET', url: `${base}/export/model.safetensors` });
      writeFileSync(join(dir, 'model.safetensors'), model.rawPayload);
      const py = pyRead(join(dir, 'model.safetensors'));
      expect(py.metadata.format).toBe('pt');
      expect(Object.keys(py.tensors).sort()).toEqual(layout.tensors.map((t) => t.name).sort());
      expect(py.tensors['lm_head.weight']).toBeUndefined();
      for (const t of layout.tensors) expect(py.tensors[t.name]!.sha256).toBe(sha(view(state.phi, t)));

      // The CLI writes the same two files.
      const out = join(dir, 'cli');
      execFileSync(process.execPath, ['bin/murmur.mjs', 'export', join(s.dataDir, 'checkpoints', 'm', info.file), '--out', out], { encoding: 'utf8' });
      expect(JSON.parse(readFileSync(join(out, 'config.json'), 'utf8'))).toEqual(cfg);
      const cli = pyRead(join(out, 'model.safetensors'));
      for (const t of layout.tensors) expect(cli.tensors[t.name]!.sha256).toBe(sha(view(state.phi, t)));

      // By id, the file is checked against its record: one float changed on disk is refused,
      // nothing written (before: exported, exit 0, the changed weight in the model).
      const copy = join(dir, 'data');
      cpSync(join(s.dataDir, 'checkpoints', 'm'), join(copy, 'checkpoints', 'm'), { recursive: true });
      const damaged = join(copy, 'checkpoints', 'm', info.file);
      const b = readFileSync(damaged);
      b[b.length - 5] ^= 0x40;
      writeFileSync(damaged, b);
      const refused = spawnSync(process.execPath, ['bin/murmur.mjs', 'export', info.id, '--data-dir', copy, '--run', 'm', '--out', join(dir, 'bad')], { encoding: 'utf8' });
      expect(refused.status).not.toBe(0);
      expect(refused.stderr).toMatch(new RegExp(`has sha256 [0-9a-f]{64}, but its record says ${info.sha256}: the file is damaged or was changed; not exported`));
      expect(existsSync(join(dir, 'bad', 'model.safetensors'))).toBe(false);
    } finally {
      rmSync(dir, { recursive: true });
    }
  });

  it('holds a claimed token count to what the step allows (step × batch × seqLen)', async () => {
    // Before: `tokens` was stored and shown as the uploader claimed, any integer up to 2^53 − 1.
    const honest = state;
    state = { ...peerState(8, 150), meta: { ...peerState(8, 150).meta, tokens: 2 ** 50 } };
    try {
      const info = await takeCheckpoint();
      expect(info).toMatchObject({ step: 150, tokens: 150 * 8 * 32 }); // micro: batch 8, seqLen 32
      const py = pyRead(join(s.dataDir, 'checkpoints', 'm', info.file as string));
      expect(py.metadata.tokens).toBe(String(150 * 8 * 32));
    } finally {
      state = honest;
    }
  });

  it('keeps the newest K, deletes with the admin token only', async () => {
    state = peerState(6, 200);
    await takeCheckpoint();
    state = peerState(7, 300);
    const newest = await takeCheckpoint();
    const list = (await s.c.app.inject({ method: 'GET', url: '/api/runs/m/checkpoints' })).json().checkpoints;
    expect(list.map((c: { step: number }) => c.step)).toEqual([300, 200]);
    const dir = join(s.dataDir, 'checkpoints', 'm');
    expect(readdirSync(dir).filter((f) => f.endsWith('.safetensors'))).toHaveLength(2);

    const url = `/api/runs/m/checkpoints/${newest.id}`;
    expect((await s.c.app.inject({ method: 'DELETE', url })).statusCode).toBe(401);
    expect((await s.c.app.inject({ method: 'DELETE', url, headers: { authorization: 'Bearer x' } })).statusCode).toBe(403);
    expect(existsSync(join(dir, newest.file as string))).toBe(true);
    expect((await s.c.app.inject({ method: 'DELETE', url, headers: s.admin })).statusCode).toBe(200);
    expect(existsSync(join(dir, newest.file as string))).toBe(false);
    expect((await s.c.app.inject({ method: 'GET', url })).statusCode).toBe(404);
  });

  it('refuses bad uploads without writing anything', async () => {
    const before = tableCounts(s.c.db);
    const files = readdirSync(join(s.dataDir, 'checkpoints', 'm')).sort();
    // Open a request that the (scripted) peer will not answer by itself.
    client.setStateProvider(() => new Promise(() => {}));
    const r = await s.c.app.inject({ method: 'POST', url: '/api/runs/m/checkpoints', headers: s.admin });
    const id = r.json().request as string;
    const url = `/api/peer/state/${id}`;
    const session = client.welcome!.session;
    const good = encodeStateFrame(peerState(8, 400));
    const post = (body: Uint8Array | string, headers: Record<string, string>) =>
      s.c.app.inject({ method: 'POST', url, payload: Buffer.from(body), headers: { 'content-type': 'application/octet-stream', ...headers } });
    const auth = { authorization: `Bearer ${session}` };
    const nan = peerState(8, 400); nan.phi[3] = NaN;
    const wrongRun = peerState(8, 400); wrongRun.meta.runId = 'default';
    const corrupt = good.slice(); corrupt[0] = 0;
    const cases: [Uint8Array | string, Record<string, string>, number, RegExp][] = [
      [good, {}, 401, /session token required/],
      [good, { authorization: 'Bearer forged.token' }, 403, /not valid/],
      [good, { authorization: `Bearer ${session.slice(0, -3)}xyz` }, 403, /not valid/],
      [corrupt, auth, 400, /not a state frame/],
      [good.subarray(0, good.length - 8), auth, 400, /needs exactly/],
      [encodeStateFrame(nan), auth, 400, /non-finite/],
      [encodeStateFrame(wrongRun), auth, 400, /state is for run default/],
      ['{"json": true}', { ...auth, 'content-type': 'application/json' }, 415, /octet-stream/],
      [new Uint8Array(good.length * 3), auth, 413, /exceeds/],
    ];
    for (const [body, headers, status, re] of cases) {
      const res = await post(body, headers);
      expect(res.statusCode, re.source).toBe(status);
      expect(res.json().error).toMatch(re);
    }
    const other = await s.c.app.inject({ method: 'POST', url: '/api/peer/state/0123456789abcdef01234567', payload: Buffer.from(good), headers: { 'content-type': 'application/octet-stream', ...auth } });
    expect(other.statusCode).toBe(404);
    expect(tableCounts(s.c.db)).toEqual(before);
    expect(readdirSync(join(s.dataDir, 'checkpoints', 'm')).sort()).toEqual(files);
    // The genuine upload still works once, and a replay of it is refused.
    expect((await post(good, auth)).statusCode).toBe(201);
    expect((await post(good, auth)).statusCode).toBe(404);
    client.setStateProvider(() => state);
  });

  it('takes one upload at a time for a state request: a second body is refused before it is read', async () => {
    client.setStateProvider(() => new Promise(() => {}));
    try {
      const r = await s.c.app.inject({ method: 'POST', url: '/api/runs/m/checkpoints', headers: s.admin });
      expect(r.statusCode).toBe(202);
      const id = r.json().request as string;
      const good = encodeStateFrame(peerState(9, 500));
      const open = (): { req: ClientRequest; answer: Promise<{ status: number; body: string }> } => {
        const req = httpRequest(`${s.url}/api/peer/state/${id}`, {
          method: 'POST',
          headers: { 'content-type': 'application/octet-stream', 'content-length': good.length, authorization: `Bearer ${client.welcome!.session}` },
        });
        const answer = new Promise<{ status: number; body: string }>((resolve, reject) => {
          req.on('response', (res) => {
            let body = '';
            res.setEncoding('utf8').on('data', (c: string) => { body += c; }).on('end', () => resolve({ status: res.statusCode!, body }));
          });
          req.on('error', reject);
        });
        return { req, answer };
      };
      // The first upload sends half its body and waits: the coordinator has its headers.
      const arrived = new Promise<void>((resolve) => s.c.app.server.once('request', () => setImmediate(resolve)));
      const first = open();
      first.req.write(good.subarray(0, good.length >> 1));
      await arrived;
      // A second body for the same request is refused at once, before a byte of it is buffered.
      const second = open();
      second.req.write(good.subarray(0, 1024));
      // Without the rule the coordinator would buffer this body and answer nothing until it came whole.
      let bound: NodeJS.Timeout | undefined;
      const refused = await Promise.race([second.answer, new Promise<{ status: number; body: string }>((resolve) => {
        bound = setTimeout(() => resolve({ status: 0, body: '{"error": "no answer in 30 s: the second body was being buffered"}' }), 30_000);
      })]);
      clearTimeout(bound);
      second.req.destroy();
      expect(refused.status).toBe(409);
      expect(JSON.parse(refused.body).error).toMatch(/already has an upload under way/);
      // The first goes on and is stored.
      first.req.end(good.subarray(good.length >> 1));
      expect((await first.answer).status).toBe(201);
    } finally {
      client.setStateProvider(() => state);
    }
  });

  it('a request to a peer that leaves fails at once, so the next one can go', async () => {
    await s.c.app.inject({ method: 'POST', url: '/api/runs', headers: s.admin, payload: { id: 'm2', dataset: 'moby-dick', preset: 'micro' } });
    const c = new SignalingClient({ url: s.url, run: 'm2', WebSocket: WebSocket as unknown as WebSocketCtor });
    c.setStateProvider(() => new Promise(() => {}));
    c.start();
    await until(() => c.connected, 5000, 'the peer to join');
    await earnTrust(s.url, 'm2', c, { exchanges: PROBATION_EXCHANGES, H: 50 });
    await until(() => s.c.hub.eligibleForDuty(c.peerId!), 5000, 'the peer to leave probation');
    const r = await s.c.app.inject({ method: 'POST', url: '/api/runs/m2/checkpoints', headers: s.admin });
    expect(r.statusCode).toBe(202);
    const peerId = c.peerId;
    expect(s.c.scheduler.pendingFor('m2')?.peerId).toBe(peerId);
    c.stop();
    await until(() => s.c.scheduler.pendingFor('m2') === null, 5000, 'the request to fail');
    const ev = (await s.c.app.inject({ method: 'GET', url: '/api/runs/m2/events' })).json().events;
    expect(ev.find((e: { kind: string }) => e.kind === 'checkpoint-failed')).toMatchObject({ peerId, data: { reason: expect.stringMatching(/peer left/) } });
    expect((await s.c.app.inject({ method: 'POST', url: '/api/runs/m2/checkpoints', headers: s.admin })).statusCode).toBe(409);
  });

  it('takes checkpoints on its schedule and repairs the store after a crash', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'murmur-sched-'));
    const s2 = await startServer({ checkpointEveryMs: 300, checkpointKeep: 3, hub: { pairPrediction: false } }, {}, dir);
    const c2 = new SignalingClient({ url: s2.url, WebSocket: WebSocket as unknown as WebSocketCtor });
    const tiny = buildLayout(preset('tiny'));
    c2.setStateProvider(() => ({ meta: { runId: 'default', step: 1, round: 0, floats: tiny.total, valLoss: null, tokens: 0 }, phi: initParams(tiny, 1), momentum: new Float32Array(tiny.total) }));
    c2.start();
    try {
      await until(() => c2.connected, 5000, 'the peer to join');
      await earnTrust(s2.url, 'default', c2, { exchanges: PROBATION_EXCHANGES, H: 50 });
      // Generous: the bound catches a hang, not slowness (a tiny state is built, encoded, measured
      // by the coordinator on the CPU and stored first).
      await until(() => s2.c.checkpoints.list('default').length >= 1, 180_000, 'a scheduled checkpoint');
    } finally {
      c2.stop();
      await s2.close();
    }
    // Simulate a crash: a completed checkpoint whose row was never written, a torn temp file,
    // and a row whose file is gone.
    const ck = join(dir, 'checkpoints', 'default');
    const infos = readdirSync(ck).filter((f) => f.endsWith('.json')).map((f) => JSON.parse(readFileSync(join(ck, f), 'utf8')));
    const kept = infos[0];
    const { openDb } = await import('../server/db.ts');
    const db = openDb(join(dir, 'murmur.sqlite'));
    db.prepare('DELETE FROM checkpoints WHERE id = ?').run(kept.id);
    db.prepare(`INSERT INTO checkpoints (id, run_id, step, round, val_loss, tokens, peer_id, sha256, bytes, file, created_at)
      VALUES ('s9-deadbeef', 'default', 9, 0, NULL, 0, NULL, 'x', 1, 's9-deadbeef.safetensors', 1)`).run();
    db.close();
    writeFileSync(join(ck, 'sX.safetensors.tmp-1234abcd'), 'torn');
    const s3 = await startServer({}, {}, dir);
    try {
      const ids = s3.c.checkpoints.list('default').map((c) => c.id);
      expect(ids).toContain(kept.id);
      expect(ids).not.toContain('s9-deadbeef');
      expect(readdirSync(ck).some((f) => f.includes('.tmp-'))).toBe(false);
      const loaded = await s3.c.checkpoints.load(s3.c.checkpoints.get('default', kept.id)!);
      expect(sha(loaded.phi)).toBe(sha(initParams(tiny, 1)));
    } finally {
      await s3.close();
      rmSync(dir, { recursive: true });
    }
  });
});
