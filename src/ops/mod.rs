//! One module per op family: its launchers (which build recorded-once kernels), its f64 CPU
//! reference, side by side. Ops know the GPU plumbing, never layers or the optimization loop.

pub mod bands;
pub mod check;
pub mod conv;
pub mod gram;
pub mod loss;
pub mod mixed;
pub mod normalize;
pub mod pool;
pub mod reduce;
pub mod region;
pub mod relu;
mod shape;
pub mod tv;
pub mod vector;

pub use shape::ActShape;

use crate::gpu::{AdapterClass, Context, GpuError, ShaderSource};

/// The adapter class the op families with a CPU and a GPU kernel (the Gram backward, the ReLU
/// mask) build for: the adapter's own, or, where a convolution formulation is forced
/// (`STYLIZE_CONV`), the class that formulation is written for, so that one forced run takes one
/// kind of kernel throughout. An unknown forced name is an error.
pub fn kernel_class(ctx: &Context) -> Result<AdapterClass, GpuError> {
    Ok(conv::ConvAlgorithm::for_context(ctx)?.class())
}

/// Every WGSL file the ops compile (`optim::SHADERS` has the optimizers'), for validation (the
/// `COOP_SHADER`s run only on adapters with cooperative matrices).
pub const SHADERS: [ShaderSource; 15] = [
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
    region::SHADER,
    relu::SHADER,
    relu::MASK_SHADER,
    tv::SHADER,
    vector::SHADER,
];
