// Smoke kernel for the GPU and browser harnesses: out = a + b, one element per invocation.
// f32 addition is correctly rounded in WGSL, so results equal Math.fround(a + b) exactly.

@group(0) @binding(0) var<storage, read_write> out: array<f32>; // (N,)
@group(0) @binding(1) var<storage, read> a: array<f32>;         // (N,)
@group(0) @binding(2) var<storage, read> b: array<f32>;         // (N,)

override WG: u32 = 64;

@compute @workgroup_size(WG)
fn vectorAdd(@builtin(global_invocation_id) id: vec3<u32>) {
  let i = id.x;
  // N need not be a multiple of WG: the last workgroup has idle invocations.
  if (i >= arrayLength(&out)) { return; }
  out[i] = a[i] + b[i];
}
