// How long the coordinator's event loop stalls while it stores a checkpoint, and how long the
// store takes: the blocking path (the safetensors file built in one buffer, sha256 and
// write/fsync/rename on the main thread, as before) side by side with the one the server uses
// (the file as pieces that view the tensors, hashed in slices that yield, file I/O on libuv's
// thread pool). A 2 ms ticker stands in for
// heartbeats and signals: its longest gap is the stall a peer would see.
//
//   npm run bench:checkpoint            (presets tiny, small, base; 3 rounds each, alternating)
//   npm run bench:checkpoint -- --eval-only   (only the validation part below; keeps the rest)
//
// Then what the coordinator's own validation of an upload costs (server/checkpoint-validate.ts):
// the validation loss measured in worker threads with the CPU reference model on the run's
// state check windows (batch 8, seqLen = ctx; src/data/sampler.ts stateCheckBatchCount), through
// the real CheckpointEvaluator (worker start included), on 1 thread and on several side by side,
// with the same 2 ms ticker watching the event loop; and as it was before, all RUN_VAL_BATCHES
// batches on one thread (base's estimated from its one batch).
//
// Prints tables and writes bench/results/checkpoint.json.
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { encodeCheckpoint, encodeCheckpointParts, sha256Hex, sha256HexYielding } from '../server/checkpoints.ts';
import { writeFileAtomic, writeFileAtomicAsync } from '../server/fsutil.ts';
import { preset, trainConfig, type PresetName } from '../src/model/config.ts';
import { buildLayout } from '../src/model/layout.ts';
import type { RunInfo } from '../src/protocol/messages.ts';
import type { StateFrame } from '../src/protocol/state-frame.ts';
import { CheckpointEvaluator, defaultEvalThreads } from '../server/checkpoint-validate.ts';
import { DirDatasetSource, prepareMobyDick } from '../server/datasets.ts';
import { RUN_VAL_BATCHES, stateCheckBatchCount } from '../src/data/sampler.ts';
import { initParams } from '../src/model/init.ts';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const PRESETS: PresetName[] = ['tiny', 'small', 'base'];
const ROUNDS = 3;

function fakeRun(name: PresetName): RunInfo {
  const model = preset(name);
  return {
    id: 'bench', name: 'bench', dataset: 'moby-dick', preset: name, model, train: trainConfig({}, model),
    seed: 1, status: 'running', compression: 'none', pairWaitFrac: 0.3, createdAt: 0,
  } as unknown as RunInfo;
}

function fakeFrame(floats: number): StateFrame {
  const phi = new Float32Array(floats), momentum = new Float32Array(floats);
  for (let i = 0; i < floats; i++) { phi[i] = Math.sin(i) * 0.02; momentum[i] = Math.cos(i) * 1e-4; }
  return { meta: { runId: 'bench', step: 1000, round: 20, floats, valLoss: 2.5, tokens: 1e6 }, phi, momentum };
}

/** Runs `op` while a 2 ms interval ticks; returns wall ms and the longest gap between ticks. */
async function measure(op: () => Promise<void> | void): Promise<{ ms: number; stallMs: number }> {
  let last = performance.now(), worst = 0;
  const tick = setInterval(() => { const now = performance.now(); worst = Math.max(worst, now - last); last = now; }, 2);
  await new Promise((r) => setTimeout(r, 20)); // let the ticker settle
  last = performance.now();
  const t0 = performance.now();
  await op();
  const ms = performance.now() - t0;
  await new Promise((r) => setTimeout(r, 10)); // the tick right after the op closes its gap
  clearInterval(tick);
  return { ms, stallMs: worst };
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

const evalOnly = process.argv.includes('--eval-only');
const out = join(ROOT, 'bench', 'results', 'checkpoint.json');
const dir = mkdtempSync(join(tmpdir(), 'murmur-bench-ckpt-'));
const rows: Record<string, unknown>[] = evalOnly && existsSync(out) ? JSON.parse(readFileSync(out, 'utf8')).rows : [];
try {
  for (const name of evalOnly ? [] : PRESETS) {
    const run = fakeRun(name);
    const floats = buildLayout(run.model).total;
    const frame = fakeFrame(floats);
    const blocking: { ms: number; stallMs: number }[] = [], yielding: { ms: number; stallMs: number }[] = [];
    let bytes = 0;
    for (let r = 0; r < ROUNDS; r++) {
      for (const mode of r % 2 === 0 ? ['blocking', 'yielding'] : ['yielding', 'blocking']) {
        const file = join(dir, `${name}-${mode}-${r}.safetensors`);
        const m = await measure(async () => {
          if (mode === 'blocking') {
            const data = encodeCheckpoint(run, frame, 'p-bench', 0);
            bytes = data.length;
            sha256Hex(data);
            writeFileAtomic(file, data);
          } else {
            const parts = encodeCheckpointParts(run, frame, 'p-bench', 0);
            await sha256HexYielding(parts);
            await writeFileAtomicAsync(file, parts);
          }
        });
        (mode === 'blocking' ? blocking : yielding).push(m);
        rmSync(file);
      }
    }
    const row = {
      preset: name, mb: +(bytes / 2 ** 20).toFixed(1),
      blocking_ms: +median(blocking.map((x) => x.ms)).toFixed(0), blocking_stall_ms: +median(blocking.map((x) => x.stallMs)).toFixed(0),
      yielding_ms: +median(yielding.map((x) => x.ms)).toFixed(0), yielding_stall_ms: +median(yielding.map((x) => x.stallMs)).toFixed(0),
    };
    rows.push({ ...row, stall_ratio: +(row.blocking_stall_ms / Math.max(1, row.yielding_stall_ms)).toFixed(1), time_ratio: +(row.yielding_ms / row.blocking_ms).toFixed(2) });
    console.log(`${name}: ${JSON.stringify(rows[rows.length - 1])}`);
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}

const head = ['preset', 'MB', 'blocking ms', 'stall ms', 'yielding ms', 'stall ms', 'stall ratio', 'time ratio'];
const body = rows.map((r) => [r.preset, r.mb, r.blocking_ms, r.blocking_stall_ms, r.yielding_ms, r.yielding_stall_ms, `${r.stall_ratio}x`, `${r.time_ratio}x`].map(String));
const w = head.map((h, i) => Math.max(h.length, ...body.map((b) => b[i]!.length)));
console.log('\nstoring one checkpoint (medians of 3; "stall" = longest event-loop gap seen by a 2 ms ticker)');
console.log(head.map((h, i) => h.padEnd(w[i]!)).join('  '));
console.log(w.map((n) => '-'.repeat(n)).join('  '));
for (const b of body) console.log(b.map((c, i) => c.padEnd(w[i]!)).join('  '));

// ---- the coordinator's validation of an upload --------------------------------------------------

// Each preset's upload measured through the real CheckpointEvaluator (worker start included) on
// its state check windows, with 1 worker thread and with THREADS side by side; and, as before
// this change, all RUN_VAL_BATCHES batches on one thread: measured for micro, tiny and small,
// and for base 4 x its one-batch time (it takes about 9 minutes of this machine's core).
const THREADS = Math.max(2, defaultEvalThreads());
const validation: Record<string, unknown>[] = [];
const data = mkdtempSync(join(tmpdir(), 'murmur-bench-val-'));
prepareMobyDick(data);
const source = new DirDatasetSource(data);
/** One measurement on `threads` workers, optionally of `batches` (default: the run's state check). */
async function evaluation(run: RunInfo, phi: Float32Array, threads: number, batches?: number): Promise<{ ms: number; stallMs: number; loss: number }> {
  // One seed for every measurement (a coordinator draws a secret one each time): the thread
  // counts must give the same loss bit for bit on the same windows.
  const ev = new CheckpointEvaluator(source, { threads, windowSeed: () => 7 });
  let loss = NaN;
  const m = await measure(async () => { loss = (await ev.measure(run, phi, batches)).val; });
  await ev.close();
  return { ...m, loss };
}
for (const name of ['micro', 'tiny', 'small', 'base'] as PresetName[]) {
  const run = { ...fakeRun(name), train: trainConfig({ batch: 8 }, preset(name)) } as RunInfo;
  const phi = initParams(buildLayout(run.model), 1);
  const batches = stateCheckBatchCount(run.model, run.train);
  const one = await evaluation(run, phi, 1);
  const many = await evaluation(run, phi, THREADS);
  let before: { ms: number; measured: boolean };
  if (batches === RUN_VAL_BATCHES) before = { ms: one.ms, measured: true };
  else if (name !== 'base') before = { ms: (await evaluation(run, phi, 1, RUN_VAL_BATCHES)).ms, measured: true };
  else before = { ms: one.ms * RUN_VAL_BATCHES / batches, measured: false };
  if (one.loss !== many.loss) throw new Error(`${name}: ${THREADS} threads measured ${many.loss}, one thread ${one.loss}`);
  const row = {
    preset: name, batches, tokens: batches * run.train.batch * run.train.seqLen, loss: +one.loss.toFixed(4),
    ms_1_thread: Math.round(one.ms), stall_ms_1_thread: Math.round(one.stallMs),
    threads: THREADS, ms_threads: Math.round(many.ms), stall_ms_threads: Math.round(many.stallMs),
    thread_speedup: +(one.ms / many.ms).toFixed(2),
    before_ms: Math.round(before.ms), before_measured: before.measured, before_tokens: RUN_VAL_BATCHES * run.train.batch * run.train.seqLen,
    speedup_vs_before: +(before.ms / many.ms).toFixed(1),
  };
  validation.push(row);
  console.log(`validation ${name}: ${JSON.stringify(row)}`);
}
rmSync(data, { recursive: true, force: true });

console.log(`\nthe coordinator measuring one upload's validation loss (CPU reference in worker threads, batch 8 x ctx; "before": all ${RUN_VAL_BATCHES} batches on one thread)`);
const vhead = ['preset', 'batches', 'tokens', '1 thread ms', `${THREADS} threads ms`, 'thread ratio', 'stall ms', 'before ms', 'vs before'];
const vbody = validation.map((v) => [v.preset, v.batches, v.tokens, v.ms_1_thread, v.ms_threads, `${v.thread_speedup}x`, v.stall_ms_threads, `${v.before_ms}${v.before_measured ? '' : ' (est.)'}`, `${v.speedup_vs_before}x`].map(String));
const vw = vhead.map((h, i) => Math.max(h.length, ...vbody.map((b) => b[i]!.length)));
console.log(vhead.map((h, i) => h.padEnd(vw[i]!)).join('  '));
console.log(vw.map((n) => '-'.repeat(n)).join('  '));
for (const b of vbody) console.log(b.map((c, i) => c.padEnd(vw[i]!)).join('  '));

mkdirSync(dirname(out), { recursive: true });
writeFileSync(out, JSON.stringify({
  generated: new Date().toISOString(), machine: { cpus: cpus().length, model: cpus()[0]?.model, loadavg: loadavg() }, rounds: ROUNDS, rows, validation,
}, null, 1) + '\n');
console.log(`\nwrote ${out}`);
