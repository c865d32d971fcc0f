// What the row attention kernels (attention.fwd.wgsl, attention.bwd.wgsl) share: a head's
// position in qkv, and the read of one element of four rows at once, each row in a lane of a
// vec4. Both files declare `qkv`, `p` (T, C, NH, scale) and HS; src/gpu/shaders.ts puts this
// file in front of them (after quad.wgsl or quad-off.wgsl, and half.wgsl, whose h1 rounds
// operands with HALF).
//
// Quads (QUAD, forward only, with quad.wgsl; HS a multiple of 4): the four invocations of a
// quad own 16 consecutive rows and walk the same keys together, to the quad's last row (on
// SwiftShader the four are lanes of one SIMD group, which runs until its longest lane is done
// anyway); each reads four elements of one of the four keys (qkvRow4) and quadBroadcast hands
// them to the others, where each would otherwise gather all four keys' elements itself. The
// backward kernels gained nothing from the same change (their time goes to the register rows
// they keep, not to the reads) and are plain.

/** QUAD: keys shared across each quad (attention.fwd.wgsl). */
override QUAD: bool = false;

/** Head z = b * NH + h: its batch row, its head, and where its q columns start in qkv. */
struct Head { b: u32, h: u32, base: u32 }
fn head(z: u32) -> Head {
  let b = z / p.NH;
  let h = z % p.NH;
  return Head(b, h, b * p.T * 3u * p.C + h * HS);
}

/** Element d of part `part` (0 q, 1 k, 2 v) of rows r (already clamped to the sequence), per lane. */
fn qkv4(hd: Head, r: vec4u, part: u32, d: u32) -> vec4f {
  let c = hd.base + part * p.C + d;
  let C3 = 3u * p.C;
  return vec4f(h1(qkv[c + r.x * C3]), h1(qkv[c + r.y * C3]), h1(qkv[c + r.z * C3]), h1(qkv[c + r.w * C3]));
}

/** Rows r0 .. r0 + 3. */
fn four(r0: u32) -> vec4u { return vec4u(r0, r0 + 1u, r0 + 2u, r0 + 3u); }

/**
 * An invocation's four rows from r0: which exist (live), the last row of the sequence, and the
 * rows clamped to it (what the reads use; the dead lanes' results are masked or not stored).
 */
struct Rows4 { rows: vec4u, live: vec4<bool>, last: vec4u, clamped: vec4u }
fn rows4(r0: u32) -> Rows4 {
  let rows = four(r0);
  let last = vec4u(p.T - 1u);
  return Rows4(rows, rows < vec4u(p.T), last, min(rows, last));
}

/** Elements d..d+3 of part `part` of row r (already clamped), read by one invocation for its quad. */
fn qkvRow4(hd: Head, r: u32, part: u32, d: u32) -> vec4f {
  let c = hd.base + part * p.C + r * 3u * p.C + d;
  return vec4f(h1(qkv[c]), h1(qkv[c + 1u]), h1(qkv[c + 2u]), h1(qkv[c + 3u]));
}
