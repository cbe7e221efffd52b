//! One face for the network on the whole image (`Executor`) and over tiles (`TiledExecutor`):
//! what a run calls, whichever way it runs.

use super::tiling::Tiling;
use super::{ConvLayerWeights, Executor, Losses, NetError, Plan, TiledExecutor};
use crate::gpu::{Context, Step};
use crate::ops::bands::Bands;

/// The network a run optimizes through: untiled, or tiled (see `tiling`). One is built per
/// scale and held in place for the run, so the variants' sizes (both about 1 KiB) do not matter.
#[allow(clippy::large_enum_variant)]
pub enum Network {
    Whole(Executor),
    Tiled(TiledExecutor),
}

/// Calls the same method on whichever executor `$self` holds.
macro_rules! each {
    ($self:expr, $e:ident => $call:expr) => {
        match $self {
            Network::Whole($e) => $call,
            Network::Tiled($e) => $call,
        }
    };
}

impl Network {
    /// The untiled network when `tile` is None, else tiles of that side.
    pub fn new(ctx: &Context, plan: Plan, weights: &[ConvLayerWeights], tile: Option<usize>) -> Result<Self, NetError> {
        Ok(match tile {
            None => Network::Whole(Executor::new(ctx, plan, weights)?),
            Some(side) => Network::Tiled(TiledExecutor::new(ctx, plan, weights, side)?),
        })
    }

    /// The plan of the whole image.
    pub fn plan(&self) -> &Plan {
        each!(self, e => &e.plan)
    }

    /// The tiles, when tiled.
    pub fn tiling(&self) -> Option<&Tiling> {
        match self {
            Network::Whole(_) => None,
            Network::Tiled(e) => Some(&e.tiling),
        }
    }

    pub fn set_image(&self, ctx: &Context, rgb: &[f32]) -> Result<(), NetError> {
        each!(self, e => e.set_image(ctx, rgb))
    }

    pub fn set_normalized_image(&self, ctx: &Context, image: &[f32]) -> Result<(), NetError> {
        each!(self, e => e.set_normalized_image(ctx, image))
    }

    pub fn set_content(&self, ctx: &Context, rgb: &[f32]) -> Result<(), NetError> {
        each!(self, e => e.set_content(ctx, rgb))
    }

    pub fn set_style(&self, ctx: &Context, rgb: &[f32]) -> Result<(), NetError> {
        each!(self, e => e.set_style(ctx, rgb))
    }

    pub fn style_grams(&self, ctx: &Context, rgb: &[f32]) -> Result<Vec<Vec<f32>>, NetError> {
        each!(self, e => e.style_grams(ctx, rgb))
    }

    pub fn read_style_grams(&self, ctx: &Context) -> Result<Vec<Vec<f32>>, NetError> {
        each!(self, e => e.read_style_grams(ctx))
    }

    pub fn set_style_grams(&self, ctx: &Context, grams: &[Vec<f32>]) -> Result<(), NetError> {
        each!(self, e => e.set_style_grams(ctx, grams))
    }

    /// The recorded training step; callers append their optimizer's kernels.
    pub fn training_step(&mut self) -> &mut Step {
        each!(self, e => e.training_step())
    }

    /// The image being optimized: one band untiled, bands of at most a binding tiled.
    pub fn image_bands(&self) -> Bands {
        each!(self, e => e.image_bands())
    }

    /// dL/d(image), split as the image is.
    pub fn image_grad_bands(&self) -> Bands {
        each!(self, e => e.image_grad_bands())
    }

    pub fn image_len(&self) -> usize {
        each!(self, e => e.image_len())
    }

    pub fn read_losses(&self, ctx: &Context) -> Result<Losses, NetError> {
        each!(self, e => e.read_losses(ctx))
    }

    #[cfg(feature = "testing")]
    pub fn read_image_grad(&self, ctx: &Context) -> Result<Vec<f32>, NetError> {
        each!(self, e => e.read_image_grad(ctx))
    }

    pub fn read_normalized_image(&self, ctx: &Context) -> Result<Vec<f32>, NetError> {
        each!(self, e => e.read_normalized_image(ctx))
    }

    pub fn read_rgb(&self, ctx: &Context) -> Result<Vec<f32>, NetError> {
        each!(self, e => e.read_rgb(ctx))
    }

    pub fn allocated_bytes(&self) -> u64 {
        each!(self, e => e.allocated_bytes())
    }

    /// FLOPs of one step as it runs (tiled: both passes over every window).
    pub fn flops_per_step(&self) -> Result<u64, NetError> {
        match self {
            Network::Whole(e) => Ok(e.plan.flops_per_step()),
            Network::Tiled(e) => e.flops_per_step(),
        }
    }
}
