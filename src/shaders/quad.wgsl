// Quads (issue 17), for devices with the `subgroups` feature. In the register-blocked matmul
// (matmul.wgsl, override QUAD) the four invocations of a quad own the same rows of C, so each
// would load the same values of A. With QUAD each loads a quarter of them and quadBroadcast
// hands every value to the other three: on SwiftShader, where every load is a gather across the
// lanes of a SIMD group and a broadcast one shuffle, 8 x 8 blocks then ran ~1.3x faster
// (bench/kernels/matmul, 08). src/gpu/shaders.ts puts this file in front of matmul.wgsl on such
// devices and quad-off.wgsl on the others; the host sets QUAD only where this one is in front.
//
// The kernels leave no lane of a quad behind before a broadcast (a quad shares its rows, so
// their early returns are taken by all four together), which the uniformity analysis cannot
// see: its subgroup rule is off for the module.
enable subgroups;
diagnostic(off, subgroup_uniformity);

/** quad lane j's x (quadBroadcast takes a constant lane, hence one function per lane). */
fn quad0(x: vec4f) -> vec4f { return quadBroadcast(x, 0u); }
fn quad1(x: vec4f) -> vec4f { return quadBroadcast(x, 1u); }
fn quad2(x: vec4f) -> vec4f { return quadBroadcast(x, 2u); }
fn quad3(x: vec4f) -> vec4f { return quadBroadcast(x, 3u); }
fn pair0(x: vec2f) -> vec2f { return quadBroadcast(x, 0u); }
fn pair1(x: vec2f) -> vec2f { return quadBroadcast(x, 1u); }
fn pair2(x: vec2f) -> vec2f { return quadBroadcast(x, 2u); }
fn pair3(x: vec2f) -> vec2f { return quadBroadcast(x, 3u); }
