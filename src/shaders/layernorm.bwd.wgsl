// LayerNorm backward (llm.c layernorm_backward), split so that no two invocations write the
// same float and no invocation walks all N rows alone (that serial loop was the slowest part of
// a backward pass on a discrete GPU):
//   partial:         invocation i does two independent jobs in one launch (they only read the
//                    same inputs):
//                    dinput, row i < N: dinp += the input gradient (it is the residual
//                    stream's gradient, which also flows around the block);
//                    dparamsPartial, (chunk, channel) i < chunks * C: partial sums of
//                    dout * norm and dout over the chunk's ROWS rows into scratch.
//   wide:            the same two jobs for a GPU: workgroup w < N is row w's dinput, its WG
//                    invocations side by side along the row, reducing in workgroup memory
//                    (workgroupSum, workgroup-sum.wgsl in front; the row walk of one
//                    invocation reads C floats apart from its neighbours); the workgroups after them do dparamsPartial, WG indices each.
//   dparamsFinal:    one invocation per channel sums its chunks in order:
//                    dweight += sum_n dout * norm, dbias += sum_n dout.
struct P { N: u32, C: u32, rows: u32, chunks: u32 }
@group(0) @binding(0) var<storage, read> dout: array<f32>;       // (N, C)
@group(0) @binding(1) var<storage, read> inp: array<f32>;        // (N, C)
@group(0) @binding(2) var<storage, read> weight: array<f32>;     // (C)
@group(0) @binding(3) var<storage, read> mean: array<f32>;       // (N)
@group(0) @binding(4) var<storage, read> rstd: array<f32>;       // (N)
@group(0) @binding(5) var<storage, read_write> dinp: array<f32>; // (N, C)  [dinput]
@group(0) @binding(6) var<storage, read_write> dw: array<f32>;   // (C)     [dparamsFinal]
@group(0) @binding(7) var<storage, read_write> db: array<f32>;   // (C)     [dparamsFinal]
@group(0) @binding(8) var<uniform> p: P;
@group(0) @binding(9) var<storage, read_write> scratch: array<f32>; // (chunks, C, 2)
override WG: u32 = 64;

@compute @workgroup_size(WG)
fn partial(@builtin(global_invocation_id) g: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  for (var i = g.x; i < max(p.N, p.C * p.chunks); i += nwg.x * WG) {
    if (i < p.N) { dinput(i); }
    if (i < p.C * p.chunks) { dparamsPartial(i); }
  }
}

fn dinput(n: u32) {
  let x = n * p.C;
  let m = mean[n];
  let s = rstd[n];
  var dnormMean = 0.0;
  var dnormNormMean = 0.0;
  for (var c = 0u; c < p.C; c++) {
    let norm = (inp[x + c] - m) * s;
    let dnorm = weight[c] * dout[x + c];
    dnormMean += dnorm;
    dnormNormMean += dnorm * norm;
  }
  dnormMean /= f32(p.C);
  dnormNormMean /= f32(p.C);
  for (var c = 0u; c < p.C; c++) {
    let norm = (inp[x + c] - m) * s;
    let dnorm = weight[c] * dout[x + c];
    dinp[x + c] += (dnorm - dnormMean - norm * dnormNormMean) * s;
  }
}

fn dparamsPartial(i: u32) {
  let c = i % p.C;
  let chunk = i / p.C;
  let end = min(p.N, (chunk + 1u) * p.rows);
  var sw = 0.0;
  var sb = 0.0;
  for (var n = chunk * p.rows; n < end; n++) {
    let d = dout[n * p.C + c];
    sw += d * (inp[n * p.C + c] - mean[n]) * rstd[n];
    sb += d;
  }
  scratch[2u * i] = sw;
  scratch[2u * i + 1u] = sb;
}

@compute @workgroup_size(WG)
fn dparamsFinal(@builtin(global_invocation_id) g: vec3u) {
  let c = g.x;
  if (c >= p.C) { return; }
  var sw = 0.0;
  var sb = 0.0;
  for (var chunk = 0u; chunk < p.chunks; chunk++) {
    let i = 2u * (chunk * p.C + c);
    sw += scratch[i];
    sb += scratch[i + 1u];
  }
  dw[c] += sw;
  db[c] += sb;
}

@compute @workgroup_size(WG)
fn wide(@builtin(workgroup_id) wg: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) li: u32) {
  let parts = (p.C * p.chunks + WG - 1u) / WG;
  for (var w = wg.x; w < p.N + parts; w += nwg.x) {
    if (w < p.N) {
      dinputWide(w, li);
    } else {
      let i = (w - p.N) * WG + li;
      if (i < p.C * p.chunks) { dparamsPartial(i); }
    }
  }
}

fn dinputWide(n: u32, li: u32) {
  let x = n * p.C;
  let m = mean[n];
  let s = rstd[n];
  var acc = vec2f(0.0);
  for (var c = li; c < p.C; c += WG) {
    let norm = (inp[x + c] - m) * s;
    let dnorm = weight[c] * dout[x + c];
    acc += vec2f(dnorm, dnorm * norm);
  }
  let t = workgroupSum(acc, li) / f32(p.C); // (mean of dnorm, mean of dnorm * norm)
  for (var c = li; c < p.C; c += WG) {
    let norm = (inp[x + c] - m) * s;
    let dnorm = weight[c] * dout[x + c];
    dinp[x + c] += (dnorm - t.x - norm * t.y) * s;
  }
}
