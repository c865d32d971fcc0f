// The NoLoCo / DiLoCo outer step of docs/design.md section 1, over the flat state buffers
// (same math as src/train/outer.ts):
//   delta: out = theta - phi                       (what this replica sends, with phi)
//   apply: with G = this replica + `partners` others whose phi and delta are summed into
//          sumPhi / sumDelta (a solo step has partners = 0 and reads neither):
//            dbar = (theta - phi + sumDelta) / G;   pbar = (phi + sumPhi) / G
//            m <- alpha m + beta dbar + gamma (pbar - phi);   phi <- phi + m;   theta <- phi
struct P { n: u32, partners: u32, alpha: f32, beta: f32, gamma: f32, pad0: u32, pad1: u32, pad2: u32 }
@group(0) @binding(0) var<storage, read_write> theta: array<f32>;   // (P)
@group(0) @binding(1) var<storage, read_write> phi: array<f32>;     // (P)
@group(0) @binding(2) var<storage, read_write> mom: array<f32>;     // (P) [apply]
@group(0) @binding(3) var<storage, read> sumPhi: array<f32>;        // (P) [apply]
@group(0) @binding(4) var<storage, read_write> sumDelta: array<f32>; // (P) [apply]; [delta]: out
@group(0) @binding(5) var<uniform> p: P;
override WG: u32 = 256;

@compute @workgroup_size(WG)
fn delta(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  for (var i = gid.x; i < p.n; i += nwg.x * WG) { sumDelta[i] = theta[i] - phi[i]; }
}

@compute @workgroup_size(WG)
fn apply(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let inv = 1.0 / f32(p.partners + 1u);
  for (var i = gid.x; i < p.n; i += nwg.x * WG) {
    let f = phi[i];
    var d = theta[i] - f;
    var s = f;
    if (p.partners > 0u) { d += sumDelta[i]; s += sumPhi[i]; }
    let mk = p.alpha * mom[i] + p.beta * (d * inv) + p.gamma * (s * inv - f);
    mom[i] = mk;
    let nf = f + mk;
    phi[i] = nf;
    theta[i] = nf;
  }
}
