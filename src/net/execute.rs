//! The network's one face, the trait the whole-image `Executor` and the `TiledExecutor` implement
//! (a file of its own, below both and below `network`, so that no file imports one that imports
//! it back).

use super::tiling::Tiling;
use super::{Losses, NetError, Plan};
use crate::gpu::{Context, Step};
use crate::ops::bands::Bands;

/// What a run calls on the network, whichever way it goes over the image. Images are CHW; RGB in
/// [0, 1], "normalized" as VGG sees it. Each method's how is documented on the implementations.
pub trait Execute {
    /// The plan of the whole image.
    fn plan(&self) -> &Plan;

    /// The tiles, when tiled.
    fn tiling(&self) -> Option<&Tiling> {
        None
    }

    /// Uploads an RGB image and normalizes it into the image being optimized.
    fn set_image(&self, ctx: &Context, rgb: &[f32]) -> Result<(), NetError>;

    /// Writes an already normalized image (tests and resumed runs).
    fn set_normalized_image(&self, ctx: &Context, image: &[f32]) -> Result<(), NetError>;

    /// Runs the forward pass on `rgb` and keeps its features at the content layers as targets.
    fn set_content(&self, ctx: &Context, rgb: &[f32]) -> Result<(), NetError>;

    /// Runs the forward pass on `rgb` and keeps its Grams at the style layers as targets.
    fn set_style(&self, ctx: &Context, rgb: &[f32]) -> Result<(), NetError>;

    /// The Gram matrices of `rgb` at the style layers; replaces the style targets with them.
    fn style_grams(&self, ctx: &Context, rgb: &[f32]) -> Result<Vec<Vec<f32>>, NetError>;

    /// The current style targets, in the order of `plan.style`.
    fn read_style_grams(&self, ctx: &Context) -> Result<Vec<Vec<f32>>, NetError>;

    /// Sets the style targets directly, one C x C matrix per style term.
    fn set_style_grams(&self, ctx: &Context, grams: &[Vec<f32>]) -> Result<(), NetError>;

    /// With `StyleLoss::W2`: the style features' row means at the style layers, as the last
    /// `set_style` or `style_grams` left them (empty for Gram losses).
    fn read_style_means(&self, ctx: &Context) -> Result<Vec<Vec<f32>>, NetError>;

    /// With `StyleLoss::W2`: sets the style targets from Grams (`G = S N`, N the positions at
    /// this network's layer, the whole image's when tiled) and row means, one per style term
    /// (e.g. a blend of several images').
    fn set_style_moments(&self, ctx: &Context, grams: &[Vec<f32>], means: &[Vec<f32>]) -> Result<(), NetError>;

    /// The recorded training step; callers append their optimizer's kernels.
    fn training_step(&mut self) -> &mut Step;

    /// The image being optimized: one band untiled, bands of at most a binding tiled.
    fn image_bands(&self) -> Bands;

    /// dL/d(image), split as the image is.
    fn image_grad_bands(&self) -> Bands;

    /// Number of values in the image (3 H W).
    fn image_len(&self) -> usize;

    /// The loss values of the last training step.
    fn read_losses(&self, ctx: &Context) -> Result<Losses, NetError>;

    /// dL/d(image) of the last training step.
    #[cfg(feature = "testing")]
    fn read_image_grad(&self, ctx: &Context) -> Result<Vec<f32>, NetError>;

    /// The image being optimized, as VGG sees it.
    fn read_normalized_image(&self, ctx: &Context) -> Result<Vec<f32>, NetError>;

    /// The image as RGB in [0, 1] (denormalized and clamped on the GPU).
    fn read_rgb(&self, ctx: &Context) -> Result<Vec<f32>, NetError>;

    /// FLOPs of one step as it runs (tiled: both passes over every window).
    fn flops_per_step(&self) -> Result<u64, NetError> {
        Ok(self.plan().flops_per_step())
    }

    /// Bytes of every buffer the executor allocated, each counted once.
    fn allocated_bytes(&self) -> u64;
}
