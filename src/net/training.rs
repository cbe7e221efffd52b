//! What the training step carries besides the network: the guard against non-finite values.
//! Two checks ride in the step (on the GPU, before the optimizer uses the image and its
//! gradient) and flag the first step that held an inf or NaN; the image before each update is
//! copied aside, and the last one whose loss was read back finite is kept, to be put back.

use super::{NetError, Network};
use crate::gpu::{Context, GpuError};
use crate::ops::check;

pub struct FiniteGuard {
    /// First step whose image or gradient was non-finite (`check::CLEAN` until then).
    flag: wgpu::Buffer,
    /// Positions of the two kernels that set it in the training step.
    checks: [usize; 2],
    /// The image before the last step's update (copied at the start of every step).
    previous_image: wgpu::Buffer,
    /// The last image whose loss was read back and found finite.
    verified_image: wgpu::Buffer,
}

impl FiniteGuard {
    /// Appends the two checks to `executor`'s training step (so they must come before the
    /// optimizer's kernel) and the copy of the image at its start; keeps the current image as
    /// the verified one.
    pub fn install(ctx: &Context, executor: &mut Network) -> Result<Self, NetError> {
        let flag = check::new_flag(ctx)?;
        let len = executor.image_len();
        let image_check = check::flag_non_finite(ctx, len, executor.image_buffer(), &flag)?;
        let grad_check = check::flag_non_finite(ctx, len, executor.image_grad_buffer(), &flag)?;
        let checks = [executor.training_step().push(image_check), executor.training_step().push(grad_check)];
        let guard = Self {
            flag,
            checks,
            previous_image: ctx.buffer("previous image", len)?,
            verified_image: ctx.buffer("last finite image", len)?,
        };
        let image = executor.image_buffer().clone();
        executor.training_step().copy_first(&image, &guard.previous_image);
        copy(ctx, executor.image_buffer(), &guard.verified_image)?;
        Ok(guard)
    }

    /// Tells the checks the number of the step about to be submitted (what they report).
    pub fn set_step(&self, ctx: &Context, executor: &mut Network, step: usize) {
        let len = executor.image_len();
        for index in self.checks {
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
        copy(ctx, &self.verified_image, executor.image_buffer())
    }

    /// The verified image and the flag's bits, as the GPU holds them (for a snapshot).
    pub fn state(&self, ctx: &Context, len: usize) -> Result<(Vec<f32>, u32), GpuError> {
        Ok((ctx.read(&self.verified_image, len)?, ctx.read(&self.flag, 1)?[0].to_bits()))
    }

    /// Writes back what `state` returned.
    pub fn restore_state(&self, ctx: &Context, verified_image: &[f32], flag_bits: u32) {
        ctx.write(&self.verified_image, verified_image);
        ctx.write(&self.flag, &[f32::from_bits(flag_bits)]);
    }

    /// Bytes of GPU memory it holds.
    pub fn bytes(&self) -> u64 {
        [&self.previous_image, &self.verified_image, &self.flag].iter().map(|b| b.size()).sum()
    }
}

/// Copies all of `src` into `dst` and waits.
fn copy(ctx: &Context, src: &wgpu::Buffer, dst: &wgpu::Buffer) -> Result<(), GpuError> {
    let mut encoder = ctx.device.create_command_encoder(&Default::default());
    encoder.copy_buffer_to_buffer(src, 0, dst, 0, src.size());
    ctx.queue.submit([encoder.finish()]);
    ctx.wait()
}
