//! Optimizers that run on the GPU buffers the network fills: Adam (the method's) and L-BFGS (the
//! optimizer of jcjohnson/neural-style and of Gatys et al.'s own code), each with an f64
//! reference beside it.

pub mod adam;
pub mod average;
pub mod lbfgs;

pub use adam::{Adam, AdamConfig, AdamSnapshot};
pub use lbfgs::{Lbfgs, LbfgsConfig, LbfgsOutcome, LbfgsSnapshot};

use crate::gpu::ShaderSource;

/// The WGSL files the optimizers compile (L-BFGS composes `ops::vector`'s), for validation.
pub const SHADERS: [ShaderSource; 1] = [adam::SHADER];
