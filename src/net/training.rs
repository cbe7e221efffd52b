//! What the training step carries besides the network: the guard against non-finite values.
//! Two checks ride in the step (on the GPU, before the optimizer uses the image and its
//! gradient) and flag the first step that held an inf or NaN; the image before each update is
//! copied aside, and the last one whose loss was read back finite is kept, to be put back.

use super::{NetError, Network};
use crate::gpu::{Context, GpuError};
use crate::ops::bands::{Bands, each_band};
use crate::ops::check;

pub struct FiniteGuard {
    /// First step whose image or gradient was non-finite (`check::CLEAN` until then).
    flag: wgpu::Buffer,
    /// Positions of the kernels that set it in the training step (per band of the image, then
    /// per band of its gradient) and the values each checks.
    checks: Vec<(usize, usize)>,
    /// The image before the last step's update (copied at the start of every step), split as the image is.
    previous_image: Bands,
    /// The last image whose loss was read back and found finite.
    verified_image: Bands,
}

impl FiniteGuard {
    /// Appends the checks to `executor`'s training step (so they must come before the
    /// optimizer's kernels) and the copy of the image at its start; keeps the current image as
    /// the verified one.
    pub fn install(ctx: &Context, executor: &mut Network) -> Result<Self, NetError> {
        let flag = check::new_flag(ctx)?;
        let (image, grad) = (executor.image_bands(), executor.image_grad_bands());
        let mut checks = Vec::new();
        for values in [&image, &grad] {
            let step = executor.training_step();
            let at = each_band(step, &[values], |len, b| check::flag_non_finite(ctx, len, b[0], &flag))?;
            checks.extend(at.into_iter().zip(values.bands().iter().map(|b| b.shape.len())));
        }
        let guard = Self {
            flag,
            checks,
            previous_image: image.like(ctx, "previous image")?,
            verified_image: image.like(ctx, "last finite image")?,
        };
        for (band, previous) in image.bands().iter().zip(guard.previous_image.bands()) {
            executor.training_step().copy_first(&band.buffer, &previous.buffer);
        }
        copy(ctx, &image, &guard.verified_image)?;
        Ok(guard)
    }

    /// Tells the checks the number of the step about to be submitted (what they report).
    pub fn set_step(&self, ctx: &Context, executor: &mut Network, step: usize) {
        for &(index, len) in &self.checks {
            check::set_step(ctx, executor.training_step().kernel(index), len, step as u32);
        }
    }

    /// The first step flagged non-finite, if any.
    pub fn flagged_step(&self, ctx: &Context) -> Result<Option<u32>, GpuError> {
        check::read_flag(ctx, &self.flag)
    }

    /// The image before the last update had a finite loss: it becomes the verified one.
    pub fn keep_previous(&self, ctx: &Context) -> Result<(), GpuError> {
        copy(ctx, &self.previous_image, &self.verified_image)
    }

    /// Puts the verified image back in place of the current one.
    pub fn restore_verified(&self, ctx: &Context, executor: &Network) -> Result<(), GpuError> {
        copy(ctx, &self.verified_image, &executor.image_bands())
    }

    /// The verified image and the flag's bits, as the GPU holds them (for a snapshot).
    pub fn state(&self, ctx: &Context) -> Result<(Vec<f32>, u32), GpuError> {
        Ok((self.verified_image.read(ctx)?, ctx.read(&self.flag, 1)?[0].to_bits()))
    }

    /// Writes back what `state` returned.
    pub fn restore_state(&self, ctx: &Context, verified_image: &[f32], flag_bits: u32) {
        self.verified_image.write(ctx, verified_image);
        ctx.write(&self.flag, &[f32::from_bits(flag_bits)]);
    }

    /// Bytes of GPU memory it holds.
    pub fn bytes(&self) -> u64 {
        self.previous_image.bytes() + self.verified_image.bytes() + self.flag.size()
    }
}

/// Copies all of `src` into `dst` (split alike) and waits.
fn copy(ctx: &Context, src: &Bands, dst: &Bands) -> Result<(), GpuError> {
    let mut encoder = ctx.device.create_command_encoder(&Default::default());
    for (from, to) in src.bands().iter().zip(dst.bands()) {
        encoder.copy_buffer_to_buffer(&from.buffer, 0, &to.buffer, 0, from.buffer.size());
    }
    ctx.queue.submit([encoder.finish()]);
    ctx.wait()
}
