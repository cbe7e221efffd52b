//! The exponential moving average of the iterates (`--average-decay`), kept on the GPU:
//! `avg = D avg + (1 - D) x` after every update, read out bias-corrected as `avg / (1 - D^t)`.
//! The starting image is its first iterate (t = 1 before any step), as crowsonkb's `EMA`, which
//! is built from it: so the average of a run of t steps weighs t + 1 images.

use crate::gpu::{Context, GpuError, Step};
use crate::ops::bands::{Bands, each_band};
use crate::ops::{normalize, vector};

pub struct IterateAverage {
    decay: f64,
    /// `avg`, normalized like the image, not bias-corrected; split as the image is.
    average: Bands,
    /// `avg = D avg + (1 - D) x`, submitted after the optimizer's update.
    update: Step,
    updates: u64,
    /// How the image relates to RGB, for `read_rgb`.
    input: normalize::Preprocess,
}

impl IterateAverage {
    /// An average of `image` (the network's input, made by `input`) with decay `decay` (in (0, 1)),
    /// whose first iterate is `image` as it is now (one submit, no wait).
    pub fn new(ctx: &Context, image: &Bands, input: normalize::Preprocess, decay: f64) -> Result<Self, GpuError> {
        let average = image.zeros_like(ctx, "iterate average")?;
        let mut update = Step::new();
        each_band(&mut update, &[&average], |len, b| vector::scale(ctx, len, decay as f32, b[0]))?;
        each_band(&mut update, &[image, &average], |len, b| vector::axpy(ctx, len, (1.0 - decay) as f32, b[0], b[1]))?;
        let mut average = Self { decay, average, update, updates: 0, input };
        average.submit(ctx);
        Ok(average)
    }

    /// Folds the current image in (one submit, no wait).
    pub fn submit(&mut self, ctx: &Context) {
        self.update.submit(ctx);
        self.updates += 1;
    }

    /// The bias-corrected average as RGB in [0, 1] (waits for the GPU); `None` before any update
    /// (only after a restored state without one).
    pub fn read_rgb(&self, ctx: &Context) -> Result<Option<Vec<f32>>, GpuError> {
        if self.updates == 0 {
            return Ok(None);
        }
        let raw = self.average.read(ctx)?;
        let correction = 1.0 / (1.0 - self.decay.powi(self.updates.min(i32::MAX as u64) as i32));
        let corrected: Vec<f64> = raw.iter().map(|&v| v as f64 * correction).collect();
        Ok(Some(normalize::denormalize_clamp_host(&self.input, &corrected).into_iter().map(|v| v as f32).collect()))
    }

    /// Updates counted and the raw average, as the GPU holds it.
    pub fn state(&self, ctx: &Context) -> Result<(u64, Vec<f32>), GpuError> {
        Ok((self.updates, self.average.read(ctx)?))
    }

    /// Puts back what `state` returned (`values` must hold `len` values).
    pub fn restore_state(&mut self, ctx: &Context, updates: u64, values: &[f32]) {
        self.average.write(ctx, values);
        self.updates = updates;
    }

    /// Bytes of GPU memory it holds.
    pub fn bytes(&self) -> u64 {
        self.average.bytes()
    }
}
