// Worker thread for bench/sim.ts: runs one simulation spec at a time and posts its record.
import { parentPort } from 'node:worker_threads';
import { runSpec, type SimSpec } from '../src/sim/setup.ts';
import { runRecord } from '../src/sim/report.ts';

parentPort!.on('message', async (msg: { id: number; spec: SimSpec }) => {
  try {
    const t0 = performance.now();
    const res = await runSpec(msg.spec);
    parentPort!.postMessage({ id: msg.id, record: runRecord(msg.spec, res, (performance.now() - t0) / 1000) });
  } catch (e) {
    parentPort!.postMessage({ id: msg.id, error: (e as Error).stack ?? String(e) });
  }
});
