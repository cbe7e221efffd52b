//! Video's temporal term (Ruder, Dosovitskiy & Brox 2016), carried by the training step after
//! the network's backward pass: `weight / D * sum_k c_k (x_k - w_k)^2` over the normalized image x
//! (D = 3 H W values), with w the previous frame's result warped to this one (normalized the same
//! way) and c the flow's reliability per pixel, shared by the three channels. Its loss goes to a
//! buffer of its own (one slot per band of the image), its gradient is added to the image's.

use super::{NetError, Network};
use crate::gpu::{Context, GpuError};
use crate::ops::bands::{Bands, each_band};
use crate::ops::loss;

pub struct TemporalTerm {
    /// The warped previous result and the reliability, split as the image is (c repeated
    /// over the channels: the masked loss weighs every value).
    target: Bands,
    reliability: Bands,
    /// One slot per band: each band's share of the weighted term.
    losses: wgpu::Buffer,
}

impl TemporalTerm {
    /// Appends the term's forward and backward to `network`'s training step, so it must come
    /// after the network's passes and before the finite checks and the optimizer's kernels.
    /// `target` is the warped previous result as the network takes its input (3 x H x W,
    /// normalized), `reliability` one value in [0, 1] per pixel (H x W).
    pub fn install(
        ctx: &Context,
        network: &mut Network,
        target: &[f32],
        reliability: &[f32],
        weight: f64,
    ) -> Result<Self, NetError> {
        let (image, grad) = (network.image_bands(), network.image_grad_bands());
        let shape = image.shape();
        let pixels = shape.height * shape.width;
        if target.len() != shape.len() || reliability.len() != pixels || shape.channels != 3 {
            return Err(NetError::BadSize(format!(
                "temporal term: {} target values and {} reliabilities for a {}x{} image",
                target.len(),
                reliability.len(),
                shape.width,
                shape.height
            )));
        }
        let term = Self {
            target: image.like(ctx, "temporal target")?,
            reliability: image.like(ctx, "temporal reliability")?,
            losses: ctx.buffer("temporal loss", image.bands().len())?,
        };
        term.target.write(ctx, target);
        term.reliability.write(ctx, &reliability.repeat(shape.channels));
        let scale = weight / shape.len() as f64;
        let step = network.training_step();
        let (target, mask) = (&term.target, &term.reliability);
        for (band, ((x, w), c)) in image.bands().iter().zip(target.bands()).zip(mask.bands()).enumerate() {
            let len = x.shape.len();
            loss::masked_sq_diff_forward(ctx, step, len, &x.buffer, &w.buffer, &c.buffer, &term.losses, band, scale)?;
        }
        each_band(step, &[&image, target, mask, &grad], |len, b| {
            loss::masked_sq_diff_backward(ctx, len, b[0], b[1], b[2], b[3], scale, true)
        })?;
        Ok(term)
    }

    /// The weighted term of the image before the last step's update.
    pub fn read(&self, ctx: &Context) -> Result<f64, GpuError> {
        let slots = ctx.read(&self.losses, self.target.bands().len())?;
        Ok(slots.iter().map(|&v| v as f64).sum())
    }

    /// Bytes of GPU memory it holds.
    pub fn bytes(&self) -> u64 {
        self.target.bytes() + self.reliability.bytes() + self.losses.size()
    }
}
