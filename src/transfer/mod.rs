//! The optimization loop of the method: targets computed once, then optimizer steps on the
//! image, each one recorded once and submitted once, with an observer for progress, logs and saves.
//! `options` holds every knob of the method, `observer` what a run reports.

mod observer;
mod options;
mod preset;

/// The state `state` and `restore_state` exchange is the checkpoint file's content, defined there:
/// the format is the lower module, and the loop fills it.
pub use crate::checkpoint::{OptimizerSnapshot, TransferSnapshot};
pub use observer::{GpuInfo, Observer, Silent};
pub use options::{
    Init, InvalidOption, Optimizer, Options, PreserveColors, Resample, StyleFit, Variable, normalized_blend, rules,
};
pub use preset::Preset;

use crate::gpu::{Context, GpuError};
use crate::image_io::Image;
use crate::net::tiling::{Budget, GIB};
use crate::net::{ConvLayerWeights, FiniteGuard, Losses, NetError, Network, Plan, TemporalTerm, style_grams};
use crate::optim::adam::{Adam, AdamConfig};
use crate::optim::average::IterateAverage;
use crate::optim::lbfgs::{Lbfgs, LbfgsConfig};

/// Errors of the optimization loop.
#[derive(Debug, thiserror::Error)]
pub enum TransferError {
    #[error(transparent)]
    Net(#[from] NetError),
    #[error(transparent)]
    Gpu(#[from] GpuError),
    #[error("{0}")]
    Observer(String),
    #[error("{what} became non-finite (inf or NaN) at step {step}; stopped, {kept}")]
    NonFinite { step: usize, what: String, kept: String },
    #[error(transparent)]
    Checkpoint(#[from] crate::checkpoint::CheckpointError),
    /// A saved state (`StyleTransfer::restore_state`) that does not fit this run.
    #[error("the saved state does not fit this run: {0}")]
    StateMismatch(String),
}

/// Adam's state at the end of a scale and that scale's size (width, height), for the next
/// scale's warm start.
pub type ScaleAdam = (crate::optim::adam::AdamSnapshot, (u32, u32));

/// The optimizer's state: Adam's kernel rides in the training step; L-BFGS runs after it.
enum OptimizerState {
    /// Adam and the positions of its kernels (one per band of the image) in the training step.
    Adam {
        adam: Box<Adam>,
        kernels: Vec<usize>,
    },
    Lbfgs(Box<Lbfgs>),
}

/// One style-transfer problem on the GPU: the network with its targets, the image and its optimizer.
pub struct StyleTransfer {
    ctx: Context,
    network: Network,
    optimizer: OptimizerState,
    /// An error L-BFGS raised in `step`, reported by the next `sync`.
    deferred: Option<GpuError>,
    /// The moving average of the iterates, when `average_decay > 0`.
    average: Option<IterateAverage>,
    width: u32,
    height: u32,
    steps_done: usize,
    /// The non-finite checks of the training step and the last image with a finite loss.
    guard: FiniteGuard,
    /// The step of that image (`None`: the initial image, no check passed yet).
    verified_step: Option<usize>,
    /// A video frame's temporal terms (`Frame::temporal`), one per earlier frame.
    temporal: Vec<TemporalTerm>,
}

/// What one run starts from: the content, its style images (one per region with `masks`:
/// content-size, values in [0, 1]), the initial image, and for a video frame its temporal term.
pub struct Frame<'a> {
    pub content: &'a Image,
    pub styles: &'a [Image],
    pub masks: &'a [Vec<f32>],
    pub init: &'a Image,
    /// One term per earlier frame the frame is held to (none: a still image).
    pub temporal: &'a [Temporal],
}

/// What ties a video frame to the previous frame's result (Ruder et al. 2016): the temporal
/// term `weight * mean(c (x - w)^2)` over the network's input x, with `warped` (w) the previous
/// result warped to this frame (RGB in [0, 1], the content's size) and `reliability` (c) one
/// value in [0, 1] per pixel, shared by the channels.
#[derive(Clone, Debug)]
pub struct Temporal {
    pub warped: Image,
    pub reliability: Vec<f32>,
    pub weight: f64,
}

/// Where the style targets come from.
#[derive(Clone, Copy)]
enum Styles<'a> {
    /// One image at the content's size (the original).
    Single(&'a Image),
    /// Several images of any size and their blend weights.
    Blend(&'a [Image], &'a [f64]),
    /// One image of any size per region of the masks (content-size masks, values in [0, 1]).
    Masked(&'a [Image], &'a [Vec<f32>]),
}
/// Steps between two finiteness checks when the observer reads no losses.
const CHECK_EVERY: usize = 16;

impl StyleTransfer {
    /// Builds the network for the content's size, computes the content features and style Grams
    /// once, and starts the image from `init` (the content image in the original method).
    /// `style` must already have the content's size.
    pub fn new(
        ctx: Context,
        weights: &[ConvLayerWeights],
        content: &Image,
        style: &Image,
        init: &Image,
        options: &Options,
    ) -> Result<Self, TransferError> {
        Self::build(ctx, weights, content, Styles::Single(style), init, &[], options)
    }

    /// As `new`, with the style target a blend of several style images of any size: the target
    /// Gram of each layer is `sum_i blend_i * G_i * N / N_i`, where `G_i` is style image `i`'s Gram
    /// from a forward pass at its own size, `N_i` its number of positions at that layer and `N`
    /// the content's (so that images of other sizes compare like Gram / N, as neural-style's
    /// normalized Grams do). `blend` is normalized to sum 1; empty means equal weights.
    pub fn with_styles(
        ctx: Context,
        weights: &[ConvLayerWeights],
        content: &Image,
        styles: &[Image],
        blend: &[f64],
        init: &Image,
        options: &Options,
    ) -> Result<Self, TransferError> {
        Self::build(ctx, weights, content, Styles::Blend(styles, blend), init, &[], options)
    }

    /// As `new` with spatial control (Gatys et al. 2017): style image `r` (of any size) applies
    /// where mask `r` (content-size, values in [0, 1]) is white. Each style layer gets one term
    /// per region, a * mean((G^ - S)^2) / (C N) with the guided Gram G^ = F diag(T^2) F^T / a of
    /// the mask T pooled to the layer, its coverage a = sum T^2 / N, and S the plain Gram of the
    /// region's style image (see `region_style_grams`).
    pub fn with_masks(
        ctx: Context,
        weights: &[ConvLayerWeights],
        content: &Image,
        styles: &[Image],
        masks: &[Vec<f32>],
        init: &Image,
        options: &Options,
    ) -> Result<Self, TransferError> {
        Self::build(ctx, weights, content, Styles::Masked(styles, masks), init, &[], options)
    }

    /// The run of `frame` (one image of a run, or a video frame with its temporal term): masked
    /// styles with masks (`with_masks`), one style at the content's size as `new`, else a
    /// blend (`with_styles`, `options.style_blend_weights`).
    pub fn for_frame(
        ctx: Context,
        weights: &[ConvLayerWeights],
        frame: &Frame<'_>,
        options: &Options,
    ) -> Result<Self, TransferError> {
        let (content, styles) = (frame.content, frame.styles);
        let source = match styles {
            _ if !frame.masks.is_empty() => Styles::Masked(styles, frame.masks),
            [style] if (style.width, style.height) == (content.width, content.height) => Styles::Single(style),
            _ => Styles::Blend(styles, &options.style_blend_weights),
        };
        Self::build(ctx, weights, content, source, frame.init, frame.temporal, options)
    }

    fn build(
        ctx: Context,
        weights: &[ConvLayerWeights],
        content: &Image,
        styles: Styles<'_>,
        init: &Image,
        temporal: &[Temporal],
        options: &Options,
    ) -> Result<Self, TransferError> {
        let (width, height) = (content.width, content.height);
        check_sizes(content, styles, init)?;
        let widths: Vec<(usize, usize)> = weights.iter().map(|w| (w.in_channels, w.out_channels)).collect();
        let mut losses = options.loss_layers();
        if let Styles::Masked(_, masks) = styles {
            losses.masks = masks.to_vec();
        }
        let plan = Plan::new(options.model.layers(), &widths, height as usize, width as usize, &losses)?;
        let tile = options.tile.side_for(&plan, budget(&ctx, options))?;
        let mut network = Network::new(&ctx, plan, weights, tile)?;
        network.set_content(&ctx, &content.data)?;
        set_style_targets(&ctx, &mut network, weights, styles)?;
        network.set_image(&ctx, &init.data)?;
        let temporal = temporal
            .iter()
            .map(|t| install_temporal(&ctx, &mut network, t, content, options))
            .collect::<Result<_, _>>()?;
        // Flag the first step whose image or gradient holds an inf or NaN, before Adam uses them.
        let guard = FiniteGuard::install(&ctx, &mut network)?;
        let optimizer = OptimizerState::new(&ctx, &mut network, options)?;
        let average = match options.average_decay {
            decay if decay > 0.0 => {
                Some(IterateAverage::new(&ctx, &network.image_bands(), options.model.preprocess(), decay)?)
            }
            _ => None,
        };
        Ok(Self {
            ctx,
            network,
            optimizer,
            deferred: None,
            average,
            width,
            height,
            steps_done: 0,
            guard,
            verified_step: None,
            temporal,
        })
    }

    /// The GPU context (adapter name, limits).
    pub fn context(&self) -> &Context {
        &self.ctx
    }

    /// Gives the GPU context back (e.g. for the next scale), dropping the network's buffers.
    pub fn into_context(self) -> Context {
        self.ctx
    }

    /// Steps taken so far.
    pub fn steps_done(&self) -> usize {
        self.steps_done
    }

    /// The whole state of the run (waits for the GPU): with `restore_state` on a `StyleTransfer`
    /// built from the same inputs and options, the following steps are bit for bit the ones this
    /// one would take.
    pub fn state(&mut self) -> Result<TransferSnapshot, TransferError> {
        self.sync()?;
        let optimizer = match &self.optimizer {
            OptimizerState::Adam { adam, .. } => OptimizerSnapshot::Adam(adam.state(&self.ctx)?),
            OptimizerState::Lbfgs(lbfgs) => OptimizerSnapshot::Lbfgs(Box::new(lbfgs.state(&self.ctx)?)),
        };
        let average = match &self.average {
            Some(average) => Some(average.state(&self.ctx)?),
            None => None,
        };
        let (verified_image, non_finite_flag) = self.guard.state(&self.ctx)?;
        Ok(TransferSnapshot {
            width: self.width,
            height: self.height,
            steps_done: self.steps_done as u64,
            image: self.network.read_normalized_image(&self.ctx)?,
            verified_image,
            verified_step: self.verified_step.map(|s| s as u64),
            non_finite_flag,
            average,
            optimizer,
        })
    }

    /// Puts a `state()` back, before this transfer's first step; checks that it fits (size,
    /// optimizer, average) before anything is written.
    pub fn restore_state(&mut self, state: &TransferSnapshot) -> Result<(), TransferError> {
        let mismatch = |m: String| Err(TransferError::StateMismatch(m));
        if self.steps_done != 0 {
            return mismatch("a state can only be restored before the first step".into());
        }
        if (state.width, state.height) != (self.width, self.height) {
            return mismatch(format!(
                "it is {}x{}, this run {}x{}",
                state.width, state.height, self.width, self.height
            ));
        }
        let len = self.network.image_len();
        let average_len = state.average.as_ref().map(|(_, v)| v.len()).unwrap_or(len);
        if [state.image.len(), state.verified_image.len(), average_len].iter().any(|&l| l != len) {
            return mismatch(format!("its images do not have {len} values"));
        }
        if state.average.is_some() != self.average.is_some() {
            return mismatch("one of them averages the iterates, the other does not".into());
        }
        match (&mut self.optimizer, &state.optimizer) {
            (OptimizerState::Adam { adam, .. }, OptimizerSnapshot::Adam(saved)) => {
                adam.restore_state(&self.ctx, saved)?
            }
            (OptimizerState::Lbfgs(lbfgs), OptimizerSnapshot::Lbfgs(saved)) => lbfgs.restore_state(&self.ctx, saved)?,
            _ => return mismatch("it was made with another optimizer".into()),
        }
        if let (Some(average), Some((updates, values))) = (&mut self.average, &state.average) {
            average.restore_state(&self.ctx, *updates, values);
        }
        self.network.set_normalized_image(&self.ctx, &state.image)?;
        self.guard.restore_state(&self.ctx, &state.verified_image, state.non_finite_flag);
        self.verified_step = state.verified_step.map(|s| s as usize);
        self.steps_done = state.steps_done as usize;
        Ok(self.ctx.wait()?)
    }

    /// Adam's state (waits for the GPU) with the size it is for, to warm-start the next scale
    /// (`warm_start`); `None` with L-BFGS.
    pub fn adam_state(&mut self) -> Result<Option<ScaleAdam>, TransferError> {
        self.sync()?;
        Ok(match &self.optimizer {
            OptimizerState::Adam { adam, .. } => Some((adam.state(&self.ctx)?, (self.width, self.height))),
            OptimizerState::Lbfgs(_) => None,
        })
    }

    /// Starts Adam from another scale's `adam_state` (crowsonkb's `scale_adam`), before the first
    /// step: its step count goes on, its first moment is resized bicubically and its second
    /// bilinearly and clamped at 0 (PyTorch's `interpolate`, per channel).
    pub fn warm_start(
        &mut self,
        state: &crate::optim::adam::AdamSnapshot,
        from: (u32, u32),
    ) -> Result<(), TransferError> {
        let OptimizerState::Adam { adam, .. } = &mut self.optimizer else {
            return Err(TransferError::StateMismatch("only Adam's state can warm-start a scale".into()));
        };
        if self.steps_done != 0 {
            return Err(TransferError::StateMismatch("a scale is warm-started before its first step".into()));
        }
        let channels = self.network.image_len() / (self.width as usize * self.height as usize);
        let to = (self.width, self.height);
        let resize = |values: &[f32], bilinear: bool| -> Vec<f32> {
            crate::image_io::interpolate::planes(values, from, to, channels, bilinear)
                .into_iter()
                .map(|v| v as f32)
                .collect()
        };
        let resized = crate::optim::adam::AdamSnapshot {
            steps_taken: state.steps_taken,
            exp_avg: resize(&state.exp_avg, false),
            exp_avg_sq: resize(&state.exp_avg_sq, true).into_iter().map(|v| v.max(0.0)).collect(),
        };
        adam.restore_state(&self.ctx, &resized)?;
        Ok(self.ctx.wait()?)
    }

    /// One optimization step: forward, losses, backward, Adam; one submit, no wait. With L-BFGS
    /// the training step is submitted, then L-BFGS reads back a few scalars (waiting for it) and
    /// submits its direction and update; an error there is reported by the next `sync`.
    pub fn step(&mut self) {
        self.prepare_step();
        self.network.training_step().submit(&self.ctx);
        if let OptimizerState::Lbfgs(lbfgs) = &mut self.optimizer
            && let Err(e) = lbfgs.step(&self.ctx)
        {
            self.deferred.get_or_insert(e);
        }
        if let Some(average) = &mut self.average {
            average.submit(&self.ctx);
        }
        self.steps_done += 1;
    }

    /// Writes the uniforms that change every step (Adam's bias corrections, the step number the
    /// non-finite checks report) before the training step is submitted.
    fn prepare_step(&mut self) {
        if let OptimizerState::Adam { adam, kernels } = &mut self.optimizer {
            let step = self.network.training_step();
            adam.advance_bands(&self.ctx, &kernels.iter().map(|&k| step.kernel(k)).collect::<Vec<_>>());
        }
        self.guard.set_step(&self.ctx, &mut self.network, self.steps_done);
    }

    /// Waits for the GPU and reports any error it raised.
    pub fn sync(&mut self) -> Result<(), TransferError> {
        if let Some(e) = self.deferred.take() {
            return Err(e.into());
        }
        Ok(self.ctx.wait()?)
    }

    /// Losses of the image before the last step's update.
    pub fn losses(&self) -> Result<Losses, TransferError> {
        let losses = self.network.read_losses(&self.ctx)?;
        let mut losses = losses;
        for term in &self.temporal {
            losses = losses.with_temporal(term.read(&self.ctx)?);
        }
        Ok(losses)
    }

    /// The current image, RGB in [0, 1]: the last iterate, or with `average_decay` the
    /// bias-corrected moving average of the iterates (once a step was taken).
    pub fn image(&self) -> Result<Image, TransferError> {
        if let Some(rgb) = self.average.as_ref().map(|a| a.read_rgb(&self.ctx)).transpose()?.flatten() {
            return Ok(Image::new(self.width, self.height, rgb));
        }
        let data = self.network.read_rgb(&self.ctx)?;
        Ok(Image::new(self.width, self.height, data))
    }

    /// Bytes of GPU memory held by every buffer of the run (network, targets, scratch, Adam's
    /// moments, the previous and the last finite image, the iterate average).
    pub fn gpu_bytes(&self) -> u64 {
        let optimizer = match &self.optimizer {
            OptimizerState::Adam { adam, .. } => adam.bytes(),
            // Direction, previous gradient and the history pairs held so far.
            OptimizerState::Lbfgs(lbfgs) => (2 + 2 * (lbfgs.history_len() as u64 + 1)) * self.image_bytes(),
        };
        let own = self.guard.bytes() + self.average.as_ref().map_or(0, IterateAverage::bytes);
        self.network.allocated_bytes() + self.ctx.shared_scratch_bytes() + optimizer + own
    }

    fn image_bytes(&self) -> u64 {
        self.network.image_len() as u64 * 4
    }

    /// GPU time of every kernel of one training step (needs timestamp queries).
    pub fn profile_step(&mut self) -> Result<Vec<crate::gpu::KernelTime>, TransferError> {
        self.prepare_step();
        self.steps_done += 1;
        Ok(crate::gpu::profile_step(&self.ctx, self.network.training_step())?)
    }

    /// How the network goes over the image, when tiled: `WxH in N tiles of T px (halo H px)`.
    pub fn schedule(&self) -> Option<String> {
        self.network.tiling().map(|t| {
            format!("{}x{} in {} tiles of {} px (halo {} px)", t.width, t.height, t.tiles.len(), t.side, t.halo)
        })
    }

    /// Floating-point operations of one step (forward and backward to the image).
    pub fn flops_per_step(&self) -> u64 {
        self.network.flops_per_step().unwrap_or_else(|_| self.network.plan().flops_per_step())
    }

    /// Runs `iterations` steps, telling `observer` as it goes; returns the final image. The loss
    /// is read back at least every 16 steps: a non-finite loss stops the run with
    /// `TransferError::NonFinite`, and the image is then reset to the last one whose loss was finite.
    pub fn run(&mut self, iterations: usize, observer: &mut dyn Observer) -> Result<Image, TransferError> {
        self.run_steps(0, iterations, observer, &mut |_, _| Ok(()))
    }

    /// As `run`, but from `steps_done` (where a restored state left off) up to `total` steps in
    /// all, calling `after_step` after each step's observer (e.g. to write a checkpoint).
    pub fn run_to(
        &mut self,
        total: usize,
        observer: &mut dyn Observer,
        after_step: &mut dyn FnMut(&mut StyleTransfer, usize) -> Result<(), TransferError>,
    ) -> Result<Image, TransferError> {
        self.run_steps(self.steps_done, total, observer, after_step)
    }

    fn run_steps(
        &mut self,
        first: usize,
        iterations: usize,
        observer: &mut dyn Observer,
        after_step: &mut dyn FnMut(&mut StyleTransfer, usize) -> Result<(), TransferError>,
    ) -> Result<Image, TransferError> {
        for step in first..iterations {
            if observer.should_stop() {
                break;
            }
            self.step();
            if let Some(e) = self.deferred.take() {
                return Err(e.into());
            }
            let wanted = observer.wants_losses(step);
            let check = wanted || step % CHECK_EVERY == CHECK_EVERY - 1 || step + 1 == iterations;
            let losses = if check { Some(self.checked_losses(step)?) } else { None };
            let image = if observer.wants_image(step) { Some(self.image()?) } else { None };
            observer.on_step(step, losses.as_ref().filter(|_| wanted), image.as_ref())?;
            after_step(self, step)?;
        }
        self.sync()?;
        self.image()
    }

    /// Reads the losses of `step`; if finite, keeps the image they belong to as the last finite one,
    /// else puts that one back and reports the step.
    fn checked_losses(&mut self, step: usize) -> Result<Losses, TransferError> {
        let losses = self.losses()?;
        let bad_values = self.guard.flagged_step(&self.ctx)?;
        if losses.total.is_finite() && bad_values.is_none() {
            self.guard.keep_previous(&self.ctx)?;
            self.verified_step = Some(step);
            return Ok(losses);
        }
        let (step, what) = match bad_values {
            Some(first) => (first as usize, "the image or its gradient".to_string()),
            None => (step, format!("the loss ({})", losses.total)),
        };
        // The last verified image (the initial one until a check passed) goes back in place.
        self.guard.restore_verified(&self.ctx, &self.network)?;
        let mut kept = match self.verified_step {
            Some(verified) => format!("the image of step {verified} (the last with a finite loss) is kept"),
            None => "no checked step had a finite loss; the initial image is kept".to_string(),
        };
        // The iterate average took the non-finite steps in: it is dropped, so that what is
        // written is that image, not a NaN-filled average.
        if self.average.take().is_some() {
            kept.push_str(" (not the iterate average, which took the non-finite steps in)");
        }
        Err(TransferError::NonFinite { step, what, kept })
    }
}

/// The initial image (and the one style image of the original path) have the content's size.
fn check_sizes(content: &Image, styles: Styles<'_>, init: &Image) -> Result<(), TransferError> {
    let (width, height) = (content.width, content.height);
    let mut same_size = vec![("initial", init)];
    if let Styles::Single(style) = styles {
        same_size.push(("style", style));
    }
    for (what, image) in same_size {
        if (image.width, image.height) != (width, height) {
            return Err(NetError::BadSize(format!(
                "the {what} image is {}x{}, the content image {width}x{height}",
                image.width, image.height
            ))
            .into());
        }
    }
    Ok(())
}

/// Computes the style targets once: from the style image's own forward pass, a blend of
/// several images' Grams, or one Gram per mask region.
/// The temporal term on `network`, its target normalized as the network's input; `warped` and
/// `reliability` must be at the content's size.
fn install_temporal(
    ctx: &Context,
    network: &mut Network,
    temporal: &Temporal,
    content: &Image,
    options: &Options,
) -> Result<TemporalTerm, TransferError> {
    let (width, height) = (content.width, content.height);
    if (temporal.warped.width, temporal.warped.height) != (width, height) {
        return Err(NetError::BadSize(format!(
            "the warped previous frame is {}x{}, the content {width}x{height}",
            temporal.warped.width, temporal.warped.height
        ))
        .into());
    }
    let rgb: Vec<f64> = temporal.warped.data.iter().map(|&v| v as f64).collect();
    let target: Vec<f32> = options.model.preprocess().input_of(&rgb).into_iter().map(|v| v as f32).collect();
    Ok(TemporalTerm::install(ctx, network, &target, &temporal.reliability, temporal.weight)?)
}

fn set_style_targets(
    ctx: &Context,
    network: &mut Network,
    weights: &[ConvLayerWeights],
    styles: Styles<'_>,
) -> Result<(), TransferError> {
    match styles {
        Styles::Single(style) => network.set_style(ctx, &style.data)?,
        Styles::Blend(styles, blend) => {
            let blend = normalized_blend(blend, styles.len())
                .map_err(|e| NetError::BadSize(e.render(|name| name.to_string())))?;
            let style_grams::StyleMoments { grams, means } =
                style_grams::blended_moments(ctx, weights, network.plan(), styles, &blend)?;
            if means.is_empty() {
                network.set_style_grams(ctx, &grams)?;
            } else {
                network.set_style_moments(ctx, &grams, &means)?;
            }
        }
        Styles::Masked(styles, _) => {
            let style_grams::StyleMoments { grams, means } =
                style_grams::per_region_moments(ctx, weights, network.plan(), styles)?;
            if means.is_empty() {
                network.set_style_grams(ctx, &grams)?;
            } else {
                network.set_style_moments(ctx, &grams, &means)?;
            }
        }
    }
    Ok(())
}

impl OptimizerState {
    /// Adam's kernel joins the training step (after the finite checks); L-BFGS runs after it.
    fn new(ctx: &Context, network: &mut Network, options: &Options) -> Result<Self, TransferError> {
        let (image, grad) = (network.image_bands(), network.image_grad_bands());
        Ok(match options.optimizer {
            Optimizer::Adam => {
                let rgb = (options.optimize_in == Variable::Rgb)
                    .then(|| crate::optim::adam::RgbVariable::of(&options.model.preprocess()));
                let config = AdamConfig { beta2: options.adam_beta2, rgb, ..AdamConfig::new(options.learning_rate) };
                let (adam, kernels) = Adam::banded(ctx, &image, &grad, config)?;
                let kernels = kernels.into_iter().map(|k| network.training_step().push(k)).collect();
                OptimizerState::Adam { adam: Box::new(adam), kernels }
            }
            Optimizer::Lbfgs => {
                let config = LbfgsConfig { history: options.lbfgs_history, ..LbfgsConfig::new(options.learning_rate) };
                OptimizerState::Lbfgs(Box::new(Lbfgs::banded(ctx, &image, &grad, config)?))
            }
        })
    }
}

/// What `Auto` tiling plans for: `--memory-budget` (or 4 GiB) and the adapter's binding limit.
fn budget(ctx: &Context, options: &Options) -> Budget {
    let memory =
        options.memory_budget.map_or(crate::net::tiling::DEFAULT_MEMORY_BUDGET, |gib| (gib * GIB as f64) as u64);
    let binding_limit = ctx.binding_limit();
    Budget { memory, binding_limit }
}
