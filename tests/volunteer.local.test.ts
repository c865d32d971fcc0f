// startLocalVolunteers: N `murmur volunteer` child processes (the CLI end to end) against an
// in-process coordinator. CPU backend: two more Dawn instances would only slow this loaded
// machine down, and the GPU path is covered in-process by volunteer.e2e.test.ts.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startLocalVolunteers, volunteerArgs, type LocalVolunteers } from '../src/volunteer/local.ts';
import { atLeastOne } from '../src/commands/options.ts';
import { startServer, until, type TestServer } from './support/coordinator.ts';

let s: TestServer;
let local: LocalVolunteers | null = null;

beforeAll(async () => {
  s = await startServer();
  const r = await s.c.app.inject({
    method: 'POST', url: '/api/runs', headers: s.admin,
    payload: { id: 'local', dataset: 'moby-dick', preset: 'micro', train: { batch: 4, H: 16, lr: 3e-3, warmupSteps: 4 }, pairWaitFrac: 10 },
  });
  expect(r.statusCode).toBe(201);
});

afterAll(async () => {
  await local?.stop(2_000);
  await s?.close();
});

type Row = { peer: string; round: number; val: number | null; partner: string | null };

describe('startLocalVolunteers', () => {
  it('builds the murmur volunteer command line', () => {
    expect(volunteerArgs('http://127.0.0.1:1', { run: 'r', backend: 'cpu', rounds: 3, evalEvery: 1, autotune: false }))
      .toEqual(['volunteer', '--url', 'http://127.0.0.1:1', '--backend', 'cpu', '--run', 'r', '--rounds', '3', '--eval-every', '1', '--no-autotune']);
    expect(volunteerArgs('http://127.0.0.1:1', { backend: 'cpu', throttle: 2.5, json: true }))
      .toEqual(['volunteer', '--url', 'http://127.0.0.1:1', '--backend', 'cpu', '--throttle', '2.5', '--json']);
    expect(atLeastOne('1.5', '--throttle')).toBe(1.5);
    for (const bad of ['0.5', 'fast', 'Infinity', '']) expect(() => atLeastOne(bad, '--throttle')).toThrow(/--throttle must be a number >= 1/);
    expect(() => startLocalVolunteers('http://127.0.0.1:1', 0)).toThrow(/--local-volunteers must be an integer/);
  });

  it('two child volunteers train, pair with each other, report, and leave cleanly on SIGINT', async () => {
    local = startLocalVolunteers(s.url, 2, { run: 'local', backend: 'cpu', evalEvery: 1, output: 'ignore' });
    const rows = () => s.c.db.prepare('SELECT peer_id AS peer, round, val_loss AS val, partner FROM reports WHERE run_id = ?').all('local') as Row[];
    await until(() => {
      const r = rows();
      const peers = new Set(r.map((x) => x.peer));
      return peers.size === 2 && [...peers].every((p) => r.filter((x) => x.peer === p).length >= 3);
    }, 60_000, 'three reports from each child');
    const codes = await local.stop();
    expect(codes).toEqual([0, 0]);
    const r = rows();
    const [p, q] = [...new Set(r.map((x) => x.peer))];
    expect(r.some((x) => x.peer === p && x.partner === q) || r.some((x) => x.peer === q && x.partner === p)).toBe(true);
    for (const x of r) expect(x.val).not.toBeNull();
    // They left: the coordinator lists nobody live any more.
    await until(() => s.c.hub.livePeers('local').length === 0, 10_000, 'the children to leave the run');
  });
});
