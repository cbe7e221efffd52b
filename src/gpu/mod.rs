//! GPU plumbing: the device context (adapter choice, limits, error capture), the shader/pipeline
//! registry, recorded-once kernels and the step recorder. Ops build on this; nothing here knows a layer.

mod backend;
mod context;
mod kernel;
mod precision;
mod profile;
mod registry;

pub use backend::Backend;
pub use context::{
    AdapterClass, AdapterSummary, Context, ContextOptions, GpuError, KERNEL_OVERRIDE_VAR, list_adapters,
};
pub use kernel::{Kernel, Step, fold_groups};
pub use precision::{Arithmetic, COOP_WORKGROUP, KERNEL_MATRIX_SHAPES, MatrixShape, Precision, PrecisionChoice};
pub use profile::{KernelTime, profile_step};
pub use registry::{Registry, ShaderSource};
