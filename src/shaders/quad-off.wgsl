// In front of matmul.wgsl on devices without the `subgroups` feature (quad.wgsl on the others):
// the same functions without quadBroadcast, so that the module compiles. The host never sets
// QUAD with this file, so they are never called.
fn quad0(x: vec4f) -> vec4f { return x; }
fn quad1(x: vec4f) -> vec4f { return x; }
fn quad2(x: vec4f) -> vec4f { return x; }
fn quad3(x: vec4f) -> vec4f { return x; }
fn pair0(x: vec2f) -> vec2f { return x; }
fn pair1(x: vec2f) -> vec2f { return x; }
fn pair2(x: vec2f) -> vec2f { return x; }
fn pair3(x: vec2f) -> vec2f { return x; }
