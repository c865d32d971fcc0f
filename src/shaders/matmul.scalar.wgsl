// Loads for matmul.wgsl when a stride or offset is not a multiple of 4 floats (e.g. d = 30):
// four scalar loads per vec4. Reads past the end of a row land on neighbouring floats (or, at
// the very end of the buffer, WebGPU's bounds clamp) and are discarded by the store.
alias E = f32;
fn lda4(i: u32) -> vec4f { return vec4f(A[i], A[i + 1u], A[i + 2u], A[i + 3u]); }
fn ldb4(i: u32) -> vec4f { return vec4f(B[i], B[i + 1u], B[i + 2u], B[i + 3u]); }
fn lda1(i: u32) -> f32 { return A[i]; }
fn ldb1(i: u32) -> f32 { return B[i]; }
