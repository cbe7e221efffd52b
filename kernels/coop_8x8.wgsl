// The cooperative-matrix shape 8x8x8 (f16 operands, f32 accumulator: Mesa's lavapipe on AVX2
// CPUs, Apple GPUs' simdgroup matrices): the prelude the host puts before coop_tile.wgsl and
// conv_coop.wgsl or gram_coop.wgsl (`gpu::MatrixShape`). A shape is a type in WGSL, so each shape
// has a prelude and nothing else.

enable f16;
enable wgpu_cooperative_matrix;

alias MatA = coop_mat8x8<f16, A>;
alias MatB = coop_mat8x8<f16, B>;
alias MatC = coop_mat8x8<f32, C>;
const S: u32 = 8u;
