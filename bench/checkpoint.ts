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
// the validation loss measured in a worker thread with the CPU reference model on the run's
// windows (batch 8, seqLen = ctx, RUN_VAL_BATCHES batches), through the real CheckpointEvaluator
// (worker start included) for micro and tiny, with the same 2 ms ticker watching the event loop.
// small takes minutes on one core: one batch is timed and the whole estimated (×RUN_VAL_BATCHES);
// base is estimated from small by forward FLOPs (src/model/flops.ts), not measured.
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
import { CheckpointEvaluator } from '../server/checkpoint-validate.ts';
import { DirDatasetSource, prepareMobyDick } from '../server/datasets.ts';
import { RUN_VAL_BATCHES, validationBatches } from '../src/data/sampler.ts';
import { ReferenceGPT } from '../src/model/reference.ts';
import { initParams } from '../src/model/init.ts';
import { stepFlops } from '../src/model/flops.ts';

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

const validation: Record<string, unknown>[] = [];
const data = mkdtempSync(join(tmpdir(), 'murmur-bench-val-'));
prepareMobyDick(data);
const evaluator = new CheckpointEvaluator(new DirDatasetSource(data));
let smallBatchMs = 0;
for (const name of ['micro', 'tiny', 'small', 'base'] as PresetName[]) {
  const run = { ...fakeRun(name), train: trainConfig({ batch: 8 }, preset(name)) } as RunInfo;
  const phi = initParams(buildLayout(run.model), 1);
  const tokens = run.train.batch * run.train.seqLen * RUN_VAL_BATCHES;
  if (name === 'micro' || name === 'tiny') {
    let loss = NaN;
    const m = await measure(async () => { loss = await evaluator.measure(run, phi); });
    validation.push({ preset: name, tokens, measured: true, ms: Math.round(m.ms), stall_ms: Math.round(m.stallMs), loss: +loss.toFixed(4) });
  } else if (name === 'small') {
    // One batch in this thread, the forward the worker runs RUN_VAL_BATCHES times.
    const [batch] = validationBatches(evaluator.valTokens(run), run.train.batch, run.train.seqLen, 1);
    const ref = new ReferenceGPT(buildLayout(run.model), 'f32');
    const t0 = performance.now();
    ref.forward(phi, batch!);
    smallBatchMs = performance.now() - t0;
    validation.push({ preset: name, tokens, measured: false, ms: Math.round(smallBatchMs * RUN_VAL_BATCHES), note: `${RUN_VAL_BATCHES} x one measured batch (${Math.round(smallBatchMs)} ms), in the test thread` });
  } else {
    const fwd = (p: PresetName) => stepFlops(preset(p), 8, preset(p).ctx) / 3;
    validation.push({ preset: name, tokens, measured: false, ms: Math.round(smallBatchMs * (fwd(name) / fwd('small')) * RUN_VAL_BATCHES), note: 'small\'s batch time scaled by forward FLOPs' });
  }
  console.log(`validation ${name}: ${JSON.stringify(validation[validation.length - 1])}`);
}
await evaluator.close();
rmSync(data, { recursive: true, force: true });

console.log('\nthe coordinator measuring one upload\'s validation loss (CPU reference, worker thread; batch 8 x ctx, 4 batches)');
for (const v of validation) console.log(`${String(v.preset).padEnd(6)} ${String(v.tokens).padStart(6)} tokens  ${String(v.ms).padStart(8)} ms${v.measured ? `  stall ${v.stall_ms} ms` : `  (estimate: ${v.note})`}`);

mkdirSync(dirname(out), { recursive: true });
writeFileSync(out, JSON.stringify({
  generated: new Date().toISOString(), machine: { cpus: cpus().length, model: cpus()[0]?.model, loadavg: loadavg() }, rounds: ROUNDS, rows, validation,
}, null, 1) + '\n');
console.log(`\nwrote ${out}`);
