//! One module per op family: its launchers (which build recorded-once kernels), its f64 CPU
//! reference, side by side. Ops know the GPU plumbing, never layers or the optimization loop.

/// A cooperative-matrix kernel's module for each shape (`CoopShader`): the shape's prelude (its
/// matrix types), the tile walk the kernels share (`kernels/coop_tile.wgsl`), then the kernel's
/// own file, `$file` relative to this directory. One source per kernel, whatever the shape.
macro_rules! coop_shader {
    ($name:literal, $file:literal) => {
        $crate::ops::CoopShader {
            side16: $crate::gpu::ShaderSource {
                name: concat!($name, "_16x16"),
                source: concat!(
                    include_str!("../../kernels/coop_16x16.wgsl"),
                    include_str!("../../kernels/coop_tile.wgsl"),
                    include_str!($file)
                ),
            },
            side8: $crate::gpu::ShaderSource {
                name: concat!($name, "_8x8"),
                source: concat!(
                    include_str!("../../kernels/coop_8x8.wgsl"),
                    include_str!("../../kernels/coop_tile.wgsl"),
                    include_str!($file)
                ),
            },
        }
    };
}

pub mod bands;
pub mod check;
pub mod conv;
pub mod flow;
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
pub mod tvl1;
pub mod vector;
pub mod w2;

pub use shape::ActShape;

use crate::gpu::{AdapterClass, Context, GpuError, MatrixShape, ShaderSource};

/// One cooperative-matrix kernel composed for each shape the kernels have (`coop_shader!`).
#[derive(Clone, Copy, Debug)]
pub struct CoopShader {
    pub side16: ShaderSource,
    pub side8: ShaderSource,
}

impl CoopShader {
    pub fn for_shape(self, shape: MatrixShape) -> ShaderSource {
        match shape {
            MatrixShape::Side16 => self.side16,
            MatrixShape::Side8 => self.side8,
        }
    }

    /// The module for the shape the context's adapter uses.
    pub fn for_context(self, ctx: &Context) -> Result<ShaderSource, GpuError> {
        let shape = ctx.adapter.matrix_shape.ok_or_else(|| {
            GpuError::Device(format!(
                "{} needs cooperative matrices, which {} lacks",
                self.side16.name, ctx.adapter.name
            ))
        })?;
        Ok(self.for_shape(shape))
    }
}

/// The adapter class the op families with a CPU and a GPU kernel (the Gram backward, the ReLU
/// mask) build for: the adapter's own, or, where a convolution formulation is forced
/// (`STYLIZE_CONV`), the class that formulation is written for, so that one forced run takes one
/// kind of kernel throughout. An unknown forced name is an error.
pub fn kernel_class(ctx: &Context) -> Result<AdapterClass, GpuError> {
    Ok(conv::ConvAlgorithm::for_context(ctx)?.class())
}

/// Every module the ops compile (`optim::SHADERS` has the optimizers'), for validation (the
/// `COOP_SHADER`s run only on adapters with cooperative matrices, one module per shape).
pub const SHADERS: [ShaderSource; 21] = [
    check::SHADER,
    conv::SHADER,
    conv::COOP_SHADER.side16,
    conv::COOP_SHADER.side8,
    flow::SHADER,
    gram::SHADER,
    gram::COOP_SHADER.side16,
    gram::COOP_SHADER.side8,
    loss::SHADER,
    mixed::SHADER,
    normalize::SHADER,
    pool::SHADER,
    reduce::SHADER,
    region::SHADER,
    relu::SHADER,
    relu::MASK_SHADER,
    tv::SHADER,
    tv::nine_point::SHADER,
    tvl1::SHADER,
    vector::SHADER,
    w2::SHADER,
];
