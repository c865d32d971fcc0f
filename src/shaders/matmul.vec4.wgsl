// Loads for matmul.wgsl when every stride and offset of A and B is a multiple of 4 floats:
// one aligned 16-byte load per lda4/ldb4.
alias E = vec4f;
fn lda4(i: u32) -> vec4f { return A[i >> 2u]; }
fn ldb4(i: u32) -> vec4f { return B[i >> 2u]; }
fn lda1(i: u32) -> f32 { return A[i >> 2u][i & 3u]; }
fn ldb1(i: u32) -> f32 { return B[i >> 2u][i & 3u]; }
