//! Optimizers that run on the GPU buffers the network fills: L-BFGS (the optimizer of
//! jcjohnson/neural-style and of Gatys et al.'s own code), with an f64 reference beside it.
//! (Adam, the other optimizer of the method, lives in `ops::adam`.)

pub mod average;
pub mod lbfgs;
/// Adam until it moves here from `ops` (issue 11).
pub use crate::ops::adam;

pub use lbfgs::{Lbfgs, LbfgsConfig, LbfgsOutcome, LbfgsSnapshot};
