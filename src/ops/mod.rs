//! One module per op family: its launchers (which build recorded-once kernels), its f64 CPU
//! reference, side by side. Ops know the GPU plumbing, never layers or the optimization loop.

pub mod adam;
pub mod check;
pub mod conv;
pub mod gram;
pub mod loss;
pub mod mixed;
pub mod normalize;
pub mod pool;
pub mod reduce;
pub mod relu;
mod shape;
pub mod tv;
pub mod vector;

pub use shape::ActShape;

use crate::gpu::ShaderSource;

/// Every WGSL file the crate compiles, for validation and pipeline warm-up (the `COOP_SHADER`s
/// only on adapters with cooperative matrices).
pub const SHADERS: [ShaderSource; 15] = [
    adam::SHADER,
    check::SHADER,
    conv::SHADER,
    conv::COOP_SHADER,
    gram::SHADER,
    gram::COOP_SHADER,
    loss::SHADER,
    mixed::SHADER,
    normalize::SHADER,
    pool::SHADER,
    reduce::SHADER,
    relu::SHADER,
    relu::MASK_SHADER,
    tv::SHADER,
    vector::SHADER,
];
