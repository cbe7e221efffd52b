//! The optimization loop of the method: targets computed once, then Adam steps on the image,
//! each one recorded once and submitted once, with an observer for progress, logs and saves.

use crate::gpu::{Context, ContextOptions, GpuError, Precision};
use crate::image_io::Image;
use crate::net::vgg::{DEFAULT_CONTENT_LAYER, DEFAULT_STYLE_LAYERS, VGG19};
use crate::net::{ConvLayerWeights, Executor, LossLayers, Losses, NetError, Plan, Pooling};
use crate::ops::check;
use crate::optim::adam::{Adam, AdamConfig};
use crate::optim::lbfgs::{Lbfgs, LbfgsConfig};

/// Every knob of the method. `Default` reproduces the original exactly: VGG-19, content at
/// relu4_2, style at relu1_1..relu5_1 weighted 1, 0.75, 0.2, 0.2, 0.2, alpha 1, beta 1e6,
/// Adam with lr 0.003 for 2000 steps, longer side 400 px.
#[derive(Clone, Debug, PartialEq)]
pub struct Options {
    /// Longest side of the content image in pixels (never upscaled).
    pub size: u32,
    pub iterations: usize,
    pub learning_rate: f64,
    /// alpha
    pub content_weight: f64,
    /// beta
    pub style_weight: f64,
    /// Content layers by name: `relu4_2` (after the ReLU) or `conv4_2` (the raw conv output).
    pub content_layers: Vec<String>,
    pub style_layers: Vec<String>,
    /// One weight per style layer.
    pub style_layer_weights: Vec<f64>,
    /// Weights: a file path, an http(s) URL, `random` / `random:SEED` (He-initialized, for tests
    /// and benchmarks), or `None` for `$STYLIZE_WEIGHTS`, then the cache, then a download.
    pub weights: Option<String>,
    /// GPU backend (`None`: `WGPU_BACKEND` or any).
    pub backend: Option<Backend>,
    /// Substring of the adapter name (`None`: `WGPU_ADAPTER_NAME` or the default adapter).
    pub adapter: Option<String>,
    /// Seed of everything random (random weights, random initial image); the default method
    /// itself is deterministic.
    pub seed: u64,
    /// Where the optimization starts: the content image (the original method), noise, or an
    /// image file (e.g. an interrupted result, to resume).
    pub init: Init,
    /// Adam (the original) or L-BFGS.
    pub optimizer: Optimizer,
    /// Curvature pairs L-BFGS keeps (PyTorch's `history_size`).
    pub lbfgs_history: usize,
    /// Weight of the total-variation regularizer `tv_weight * sum((dx)^2 + (dy)^2)` on the
    /// normalized image (`ops::tv`); 0 (the original) adds nothing.
    pub tv_weight: f64,
    /// Max pools (the original) or average pools.
    pub pooling: Pooling,
    /// neural-style's `-normalize_gradients`: each loss term's gradient is divided by its L1 norm
    /// before its weight (alpha, or beta times the layer's weight) is applied. Off in the original.
    pub normalize_gradients: bool,
    /// Weights of the style images when there are several (normalized to sum 1; empty: equal).
    pub style_blend_weights: Vec<f64>,
    /// Each style image is resized to the content's size times this (at least 16 px a side when
    /// not 1); 1 (the original) gives exactly the content's size.
    pub style_scale: f64,
    /// Keep the content's colours: none (the original), luminance transfer after the run, or
    /// histogram matching of the style images to the content before it.
    pub preserve_colors: PreserveColors,
    /// Decay D of an exponential moving average of the iterates (0: off, the original): after
    /// every step `avg = D avg + (1 - D) x`, and the output is the bias-corrected
    /// `avg / (1 - D^t)` (as crowsonkb's style-transfer-pytorch does), not the last iterate.
    pub average_decay: f64,
    /// Scales of a coarse-to-fine run (1: the original, one run at `size`): each scale's result,
    /// upsampled, starts the next; each scale runs `iterations` steps.
    pub scales: usize,
    /// Longer side of the first scale; `None`: each scale is sqrt(2) larger than the one before,
    /// the last at `size`. With it, the sizes are spaced geometrically from it to `size`.
    pub min_size: Option<u32>,
    /// Where to write a checkpoint (`crate::checkpoint`): everything needed to continue the run
    /// exactly, written atomically every `checkpoint_every` steps, when the observer stops the run
    /// and at the end. `None`: no checkpoint.
    pub checkpoint: Option<std::path::PathBuf>,
    /// Steps (within a scale) between two checkpoints; `None`: only on a stop and at the end.
    pub checkpoint_every: Option<usize>,
    /// A checkpoint to continue from: the run goes on from its scale and step to the same
    /// `iterations`, with the result of a run that was never interrupted. Refused if it was made
    /// from other inputs or options (`checkpoint::Fingerprint`).
    pub resume: Option<std::path::PathBuf>,
    /// Spatial control (`--mask`, Gatys et al. 2017): one grayscale mask file per style image,
    /// matched by order (white: that style applies there), or none (the original). Each is resized
    /// to the content's size (colour files are read as luminance 0.299 R + 0.587 G + 0.114 B).
    /// Excludes `style_blend_weights`.
    pub masks: Vec<std::path::PathBuf>,
    /// Arithmetic of the convolutions and Gram products: f32, mixed (f16-rounded operands, f32
    /// accumulation; emulated where the adapter has no matrix units), or auto (mixed where it has them).
    pub precision: Precision,
}

/// How the content's colours are kept (`--preserve-colors`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PreserveColors {
    /// The result keeps the style's colours (the original).
    #[default]
    None,
    /// After the run, the result's luminance (YIQ Y) is combined with the content's I and Q.
    Luminance,
    /// Before the run, each style image's colours are matched to the content's (mean and
    /// covariance, `image_io::color::match_histogram`).
    Histogram,
}

/// Which optimizer updates the image.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Optimizer {
    /// Adam with `learning_rate` (the original method).
    Adam,
    /// L-BFGS as `torch.optim.LBFGS(lr=learning_rate, line_search_fn=None)` computes it, one
    /// iteration (one gradient evaluation, one fixed-length step) per step; no line search.
    /// jcjohnson/neural-style uses it with a learning rate of 1.
    Lbfgs,
}

/// The image the optimization starts from.
#[derive(Clone, Debug, PartialEq)]
pub enum Init {
    Content,
    /// Gaussian noise of standard deviation 0.001 around the ImageNet mean (neural-style's
    /// `-init random`), seeded by `Options::seed`.
    Random,
    /// An image file, resized to the content's size if it differs.
    Image(std::path::PathBuf),
}

impl Default for Options {
    fn default() -> Self {
        Self {
            size: 400,
            iterations: 2000,
            learning_rate: 0.003,
            content_weight: 1.0,
            style_weight: 1e6,
            content_layers: vec![DEFAULT_CONTENT_LAYER.to_string()],
            style_layers: DEFAULT_STYLE_LAYERS.iter().map(|(n, _)| n.to_string()).collect(),
            style_layer_weights: DEFAULT_STYLE_LAYERS.iter().map(|(_, w)| *w).collect(),
            weights: None,
            backend: None,
            adapter: None,
            seed: 0,
            init: Init::Content,
            optimizer: Optimizer::Adam,
            lbfgs_history: 100,
            tv_weight: 0.0,
            pooling: Pooling::Max,
            normalize_gradients: false,
            style_blend_weights: Vec::new(),
            style_scale: 1.0,
            preserve_colors: PreserveColors::None,
            average_decay: 0.0,
            scales: 1,
            min_size: None,
            checkpoint: None,
            checkpoint_every: None,
            resume: None,
            masks: Vec::new(),
            precision: Precision::Auto,
        }
    }
}

/// GPU APIs a user can ask for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Vulkan,
    Metal,
    Dx12,
    Gl,
}

impl Backend {
    fn backends(self) -> wgpu::Backends {
        match self {
            Backend::Vulkan => wgpu::Backends::VULKAN,
            Backend::Metal => wgpu::Backends::METAL,
            Backend::Dx12 => wgpu::Backends::DX12,
            Backend::Gl => wgpu::Backends::GL,
        }
    }
}

/// A knob outside its domain.
#[derive(Debug, thiserror::Error)]
#[error("invalid option: {0}")]
pub struct InvalidOption(pub String);

impl Options {
    /// Checks every value before any work starts.
    pub fn validate(&self) -> Result<(), InvalidOption> {
        let bad = |m: String| Err(InvalidOption(m));
        if self.size == 0 {
            return bad("--size must be at least 1 pixel".into());
        }
        if !(self.learning_rate.is_finite() && self.learning_rate > 0.0) {
            return bad(format!("--learning-rate must be a positive number, not {}", self.learning_rate));
        }
        for (name, value) in [
            ("--content-weight", self.content_weight),
            ("--style-weight", self.style_weight),
            ("--tv-weight", self.tv_weight),
        ] {
            if !(value.is_finite() && value >= 0.0) {
                return bad(format!("{name} must be a finite number >= 0, not {value}"));
            }
        }
        if self.style_layer_weights.len() != self.style_layers.len() {
            return bad(format!(
                "--style-layer-weights has {} values for {} style layers ({})",
                self.style_layer_weights.len(),
                self.style_layers.len(),
                self.style_layers.join(",")
            ));
        }
        if let Some(w) = self.style_layer_weights.iter().find(|w| !(w.is_finite() && **w >= 0.0)) {
            return bad(format!("--style-layer-weights must be finite numbers >= 0, not {w}"));
        }
        if !(self.style_scale.is_finite() && self.style_scale > 0.0) {
            return bad(format!("--style-scale must be a positive number, not {}", self.style_scale));
        }
        if let Some(w) = self.style_blend_weights.iter().find(|w| !(w.is_finite() && **w >= 0.0)) {
            return bad(format!("--style-blend-weights must be finite numbers >= 0, not {w}"));
        }
        if !self.style_blend_weights.is_empty() && self.style_blend_weights.iter().sum::<f64>() <= 0.0 {
            return bad("--style-blend-weights must not all be 0".into());
        }
        if !(self.average_decay.is_finite() && (0.0..1.0).contains(&self.average_decay)) {
            return bad(format!("--average-decay must be in [0, 1), not {}", self.average_decay));
        }
        if self.scales == 0 {
            return bad("--scales must be at least 1".into());
        }
        if self.min_size.is_some_and(|m| m == 0 || m > self.size) {
            return bad(format!("--min-size must be between 1 and --size ({})", self.size));
        }
        if self.checkpoint_every == Some(0) {
            return bad("the checkpoint interval must be at least 1 step".into());
        }
        if self.lbfgs_history == 0 {
            return bad("--lbfgs-history must be at least 1".into());
        }
        if !self.masks.is_empty() && !self.style_blend_weights.is_empty() {
            return bad("--mask and --style-blend-weights exclude each other: masks give each style its own \
                        region, blend weights mix the styles everywhere"
                .into());
        }
        if self.content_layers.is_empty() && self.style_layers.is_empty() {
            return bad("no content or style layer".into());
        }
        Ok(())
    }

    /// The loss layers these options describe.
    pub fn loss_layers(&self) -> LossLayers {
        LossLayers {
            content: self.content_layers.clone(),
            style: self.style_layers.iter().cloned().zip(self.style_layer_weights.iter().copied()).collect(),
            content_weight: self.content_weight,
            style_weight: self.style_weight,
            tv_weight: self.tv_weight,
            pooling: self.pooling,
            normalize_gradients: self.normalize_gradients,
            masks: Vec::new(),
        }
    }

    /// How to open the GPU.
    pub fn context_options(&self) -> ContextOptions {
        ContextOptions {
            backends: self.backend.map(Backend::backends),
            adapter_name: self.adapter.clone(),
            precision: self.precision,
            ..ContextOptions::default()
        }
    }
}

/// Hears about the run. Each method has a default that does nothing, so an observer implements
/// only what it needs. Reading losses or the image costs a GPU round trip: ask only when needed.
pub trait Observer {
    /// Whether the losses of `step` (the image before that step's update) should be read back.
    fn wants_losses(&mut self, _step: usize) -> bool {
        false
    }
    /// Whether the image after `step`'s update should be read back.
    fn wants_image(&mut self, _step: usize) -> bool {
        false
    }
    /// Called after every step with what was asked for.
    fn on_step(&mut self, _step: usize, _losses: Option<&Losses>, _image: Option<&Image>) -> Result<(), TransferError> {
        Ok(())
    }
    /// Progress of a weights download.
    fn on_fetch(&mut self, _event: &crate::weights::FetchEvent) {}
    /// A new scale of a multi-scale run starts (`index` of `count`, from 0), at `width` x `height`;
    /// step numbers start again from 0.
    fn on_scale(&mut self, _index: usize, _count: usize, _width: u32, _height: u32) {}
    /// Whether to stop before the next step (e.g. after Ctrl-C).
    fn should_stop(&mut self) -> bool {
        false
    }
}

/// An observer that hears nothing.
pub struct Silent;
impl Observer for Silent {}

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

/// Everything a `StyleTransfer` needs to continue exactly where `StyleTransfer::state` was
/// taken; every buffer bit for bit as the GPU held it.
#[derive(Clone, Debug, PartialEq)]
pub struct TransferSnapshot {
    pub width: u32,
    pub height: u32,
    /// Steps taken (the next step's number).
    pub steps_done: u64,
    /// The optimizer's variable: the normalized image.
    pub image: Vec<f32>,
    /// The non-finite guard: the last image whose loss was checked finite, its step, and the
    /// first step flagged non-finite (`check::CLEAN` if none).
    pub verified_image: Vec<f32>,
    pub verified_step: Option<u64>,
    pub non_finite_flag: u32,
    /// The iterate average (`average_decay > 0`): updates counted and the raw average.
    pub average: Option<(u64, Vec<f32>)>,
    pub optimizer: OptimizerSnapshot,
}

/// The optimizer part of a [`TransferSnapshot`].
#[derive(Clone, Debug, PartialEq)]
pub enum OptimizerSnapshot {
    Adam(crate::optim::adam::AdamSnapshot),
    Lbfgs(Box<crate::optim::LbfgsSnapshot>),
}

/// The optimizer's state: Adam's kernel rides in the training step; L-BFGS runs after it.
enum OptimizerState {
    Adam { adam: Adam, kernel: usize },
    Lbfgs(Box<Lbfgs>),
}

/// One style-transfer problem on the GPU: the network with its targets, the image and its optimizer.
pub struct StyleTransfer {
    ctx: Context,
    executor: Executor,
    optimizer: OptimizerState,
    /// An error L-BFGS raised in `step`, reported by the next `sync`.
    deferred: Option<GpuError>,
    /// The moving average of the iterates, when `average_decay > 0`.
    average: Option<Average>,
    width: u32,
    height: u32,
    steps_done: usize,
    /// The image before the last step's update (copied at the start of every step).
    previous_image: wgpu::Buffer,
    /// The last image whose loss was read back and found finite, and its step.
    verified_image: wgpu::Buffer,
    verified_step: Option<usize>,
    /// First step whose image or gradient was non-finite (`check::CLEAN` until then), and the
    /// positions of the two kernels that set it.
    non_finite_flag: wgpu::Buffer,
    checks: [usize; 2],
}

/// The exponential moving average of the iterates, kept on the GPU.
struct Average {
    decay: f64,
    /// `avg`, normalized like the image, not bias-corrected.
    buffer: wgpu::Buffer,
    /// `avg = D avg + (1 - D) x`, submitted after the optimizer's update.
    update: crate::gpu::Step,
    updates: u64,
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

/// The style targets of a masked plan (`LossLayers::masks`), one per style term: the plain Gram
/// of the term's region's style image, as `blended_style_grams` computes it for that image alone
/// (so style images of other sizes compare like Gram / N).
pub fn region_style_grams(
    ctx: &Context,
    weights: &[ConvLayerWeights],
    target: &Plan,
    styles: &[Image],
    options: &Options,
) -> Result<Vec<Vec<f32>>, TransferError> {
    let regions = target.losses.masks.len();
    if styles.len() != regions {
        return Err(NetError::BadSize(format!("{} style images for {regions} masks", styles.len())).into());
    }
    let image = target.acts[0];
    let unmasked = LossLayers { masks: Vec::new(), ..target.losses.clone() };
    let plain = Plan::new(&target.layers, &target.conv_widths, image.height, image.width, &unmasked)?;
    let mut per_region = Vec::new();
    for style in styles {
        per_region.push(blended_style_grams(ctx, weights, &plain, std::slice::from_ref(style), &[1.0], options)?);
    }
    Ok(target
        .style
        .iter()
        .map(|term| {
            let layer = target.losses.style.iter().position(|(name, _)| *name == term.layer).expect("a style layer");
            let region = term.mask.as_ref().map_or(0, |m| m.region);
            per_region[region][layer].clone()
        })
        .collect())
}

/// Normalizes blend weights to sum 1; empty means equal weights.
pub fn normalized_blend(blend: &[f64], styles: usize) -> Result<Vec<f64>, InvalidOption> {
    if blend.is_empty() {
        return Ok(vec![1.0 / styles as f64; styles]);
    }
    if blend.len() != styles {
        return Err(InvalidOption(format!(
            "--style-blend-weights has {} values for {styles} style images",
            blend.len()
        )));
    }
    let sum: f64 = blend.iter().sum();
    if blend.iter().any(|w| !(w.is_finite() && *w >= 0.0)) || sum <= 0.0 {
        return Err(InvalidOption("--style-blend-weights must be numbers >= 0, not all 0".into()));
    }
    Ok(blend.iter().map(|w| w / sum).collect())
}

/// The blended style Grams of `styles` for `target` (see `StyleTransfer::with_styles`), each
/// style image run through its own forward pass at its own size.
pub fn blended_style_grams(
    ctx: &Context,
    weights: &[ConvLayerWeights],
    target: &Plan,
    styles: &[Image],
    blend: &[f64],
    options: &Options,
) -> Result<Vec<Vec<f32>>, TransferError> {
    if styles.is_empty() {
        return Err(NetError::BadSize("no style image".into()).into());
    }
    let blend = normalized_blend(blend, styles.len()).map_err(|e| NetError::BadSize(e.0))?;
    let widths: Vec<(usize, usize)> = weights.iter().map(|w| (w.in_channels, w.out_channels)).collect();
    // Only the style layers: no content target, no total variation.
    let losses = LossLayers { content: Vec::new(), tv_weight: 0.0, ..options.loss_layers() };
    let positions = |plan: &Plan, act: usize| (plan.acts[act].height * plan.acts[act].width) as f64;
    let mut sums: Vec<Vec<f64>> = target.style.iter().map(|t| vec![0.0; target.acts[t.act].channels.pow(2)]).collect();
    for (style, &b) in styles.iter().zip(&blend) {
        if b == 0.0 {
            continue;
        }
        let plan = Plan::new(&VGG19, &widths, style.height as usize, style.width as usize, &losses)?;
        let executor = Executor::new(ctx, plan, weights)?;
        let grams = executor.style_grams(ctx, &style.data)?;
        for (((sum, gram), term), own) in sums.iter_mut().zip(&grams).zip(&target.style).zip(&executor.plan.style) {
            let factor = b * positions(target, term.act) / positions(&executor.plan, own.act);
            sum.iter_mut().zip(gram).for_each(|(s, &g)| *s += factor * g as f64);
        }
    }
    Ok(sums.into_iter().map(|g| g.into_iter().map(|v| v as f32).collect()).collect())
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
        Self::build(ctx, weights, content, Styles::Single(style), init, options)
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
        Self::build(ctx, weights, content, Styles::Blend(styles, blend), init, options)
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
        Self::build(ctx, weights, content, Styles::Masked(styles, masks), init, options)
    }

    fn build(
        ctx: Context,
        weights: &[ConvLayerWeights],
        content: &Image,
        styles: Styles<'_>,
        init: &Image,
        options: &Options,
    ) -> Result<Self, TransferError> {
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
        let widths: Vec<(usize, usize)> = weights.iter().map(|w| (w.in_channels, w.out_channels)).collect();
        let mut losses = options.loss_layers();
        if let Styles::Masked(_, masks) = styles {
            losses.masks = masks.to_vec();
        }
        let plan = Plan::new(&VGG19, &widths, height as usize, width as usize, &losses)?;
        let mut executor = Executor::new(&ctx, plan, weights)?;
        executor.set_content(&ctx, &content.data)?;
        match styles {
            Styles::Single(style) => executor.set_style(&ctx, &style.data)?,
            Styles::Blend(styles, blend) => {
                let grams = blended_style_grams(&ctx, weights, &executor.plan, styles, blend, options)?;
                executor.set_style_grams(&ctx, &grams)?;
            }
            Styles::Masked(styles, _) => {
                let grams = region_style_grams(&ctx, weights, &executor.plan, styles, options)?;
                executor.set_style_grams(&ctx, &grams)?;
            }
        }
        executor.set_image(&ctx, &init.data)?;
        // Flag the first step whose image or gradient holds an inf or NaN, before Adam uses them.
        let non_finite_flag = check::new_flag(&ctx)?;
        let len = executor.image_len();
        let image_check = check::flag_non_finite(&ctx, len, executor.image_buffer(), &non_finite_flag)?;
        let grad_check = check::flag_non_finite(&ctx, len, executor.image_grad_buffer(), &non_finite_flag)?;
        let checks = [executor.training_step().push(image_check), executor.training_step().push(grad_check)];
        let (len, image, grad) = (executor.image_len(), executor.image_buffer(), executor.image_grad_buffer());
        let optimizer = match options.optimizer {
            Optimizer::Adam => {
                let config = AdamConfig::new(options.learning_rate);
                let (adam, kernel) = Adam::new(&ctx, len, image, grad, config)?;
                OptimizerState::Adam { adam, kernel: executor.training_step().push(kernel) }
            }
            Optimizer::Lbfgs => {
                let config = LbfgsConfig { history: options.lbfgs_history, ..LbfgsConfig::new(options.learning_rate) };
                OptimizerState::Lbfgs(Box::new(Lbfgs::new(&ctx, len, image, grad, config)?))
            }
        };
        let average = if options.average_decay > 0.0 {
            let decay = options.average_decay;
            let buffer = ctx.upload("iterate average", &vec![0.0; len])?;
            let mut update = crate::gpu::Step::new();
            update.push(crate::ops::vector::scale(&ctx, len, decay as f32, &buffer)?);
            update.push(crate::ops::vector::axpy(&ctx, len, (1.0 - decay) as f32, executor.image_buffer(), &buffer)?);
            Some(Average { decay, buffer, update, updates: 0 })
        } else {
            None
        };
        let previous_image = ctx.buffer("previous image", executor.image_len())?;
        let verified_image = ctx.buffer("last finite image", executor.image_len())?;
        let image = executor.image_buffer().clone();
        executor.training_step().copy_first(&image, &previous_image);
        let transfer = Self {
            ctx,
            executor,
            optimizer,
            deferred: None,
            average,
            width,
            height,
            steps_done: 0,
            previous_image,
            verified_image,
            verified_step: None,
            non_finite_flag,
            checks,
        };
        transfer.copy(transfer.executor.image_buffer(), &transfer.verified_image)?;
        Ok(transfer)
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
        let len = self.executor.image_len();
        let optimizer = match &self.optimizer {
            OptimizerState::Adam { adam, .. } => OptimizerSnapshot::Adam(adam.state(&self.ctx)?),
            OptimizerState::Lbfgs(lbfgs) => OptimizerSnapshot::Lbfgs(Box::new(lbfgs.state(&self.ctx)?)),
        };
        let average = match &self.average {
            Some(average) => Some((average.updates, self.ctx.read(&average.buffer, len)?)),
            None => None,
        };
        Ok(TransferSnapshot {
            width: self.width,
            height: self.height,
            steps_done: self.steps_done as u64,
            image: self.executor.read_normalized_image(&self.ctx)?,
            verified_image: self.ctx.read(&self.verified_image, len)?,
            verified_step: self.verified_step.map(|s| s as u64),
            non_finite_flag: self.ctx.read(&self.non_finite_flag, 1)?[0].to_bits(),
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
        let len = self.executor.image_len();
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
            self.ctx.write(&average.buffer, values);
            average.updates = *updates;
        }
        self.executor.set_normalized_image(&self.ctx, &state.image)?;
        self.ctx.write(&self.verified_image, &state.verified_image);
        self.ctx.write(&self.non_finite_flag, &[f32::from_bits(state.non_finite_flag)]);
        self.verified_step = state.verified_step.map(|s| s as usize);
        self.steps_done = state.steps_done as usize;
        Ok(self.ctx.wait()?)
    }

    /// One optimization step: forward, losses, backward, Adam; one submit, no wait. With L-BFGS
    /// the training step is submitted, then L-BFGS reads back a few scalars (waiting for it) and
    /// submits its direction and update; an error there is reported by the next `sync`.
    pub fn step(&mut self) {
        self.prepare_step();
        self.executor.training_step().submit(&self.ctx);
        if let OptimizerState::Lbfgs(lbfgs) = &mut self.optimizer
            && let Err(e) = lbfgs.step(&self.ctx)
        {
            self.deferred.get_or_insert(e);
        }
        if let Some(average) = &mut self.average {
            average.update.submit(&self.ctx);
            average.updates += 1;
        }
        self.steps_done += 1;
    }

    /// Writes the uniforms that change every step (Adam's bias corrections, the step number the
    /// non-finite checks report) before the training step is submitted.
    fn prepare_step(&mut self) {
        if let OptimizerState::Adam { adam, kernel } = &mut self.optimizer {
            adam.advance(&self.ctx, self.executor.training_step().kernel(*kernel));
        }
        let len = self.executor.image_len();
        for index in self.checks {
            check::set_step(&self.ctx, self.executor.training_step().kernel(index), len, self.steps_done as u32);
        }
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
        Ok(self.executor.read_losses(&self.ctx)?)
    }

    /// The current image, RGB in [0, 1]: the last iterate, or with `average_decay` the
    /// bias-corrected moving average of the iterates (once a step was taken).
    pub fn image(&self) -> Result<Image, TransferError> {
        if let Some(average) = self.average.as_ref().filter(|a| a.updates > 0) {
            let raw = self.ctx.read(&average.buffer, self.executor.image_len())?;
            let correction = 1.0 / (1.0 - average.decay.powi(average.updates.min(i32::MAX as u64) as i32));
            let corrected: Vec<f64> = raw.iter().map(|&v| v as f64 * correction).collect();
            let rgb = crate::ops::normalize::reference::denormalize_clamp(&corrected);
            return Ok(Image::new(self.width, self.height, rgb.into_iter().map(|v| v as f32).collect()));
        }
        let data = self.executor.read_rgb(&self.ctx)?;
        Ok(Image::new(self.width, self.height, data))
    }

    /// Bytes of GPU memory held by every buffer of the run (network, targets, scratch, Adam's
    /// moments, the previous and the last finite image, the iterate average).
    pub fn gpu_bytes(&self) -> u64 {
        let optimizer = match &self.optimizer {
            OptimizerState::Adam { adam, .. } => adam.exp_avg.size() + adam.exp_avg_sq.size(),
            // Direction, previous gradient and the history pairs held so far.
            OptimizerState::Lbfgs(lbfgs) => (2 + 2 * (lbfgs.history_len() as u64 + 1)) * self.image_bytes(),
        };
        let own = [&self.previous_image, &self.verified_image, &self.non_finite_flag]
            .into_iter()
            .chain(self.average.as_ref().map(|a| &a.buffer))
            .map(|b| b.size())
            .sum::<u64>();
        self.executor.allocated_bytes() + self.ctx.shared_scratch_bytes() + optimizer + own
    }

    fn image_bytes(&self) -> u64 {
        self.executor.image_len() as u64 * 4
    }

    /// GPU time of every kernel of one training step (needs timestamp queries).
    pub fn profile_step(&mut self) -> Result<Vec<crate::gpu::KernelTime>, TransferError> {
        self.prepare_step();
        self.steps_done += 1;
        Ok(crate::gpu::profile_step(&self.ctx, self.executor.training_step())?)
    }

    /// Floating-point operations of one step (forward and backward to the image).
    pub fn flops_per_step(&self) -> u64 {
        self.executor.plan.flops_per_step()
    }

    /// Runs `iterations` steps, telling `observer` as it goes; returns the final image. The loss
    /// is read back at least every 16 steps: a non-finite loss stops the run with
    /// `TransferError::NonFinite`, and the image is then reset to the last one whose loss was finite.
    pub fn run(&mut self, iterations: usize, observer: &mut dyn Observer) -> Result<Image, TransferError> {
        self.run_steps(0..iterations, observer, &mut |_, _| Ok(()))
    }

    /// As `run`, but from `steps_done` (where a restored state left off) up to `total` steps in
    /// all, calling `after_step` after each step's observer (e.g. to write a checkpoint).
    pub fn run_to(
        &mut self,
        total: usize,
        observer: &mut dyn Observer,
        after_step: &mut dyn FnMut(&mut StyleTransfer, usize) -> Result<(), TransferError>,
    ) -> Result<Image, TransferError> {
        self.run_steps(self.steps_done..total, observer, after_step)
    }

    fn run_steps(
        &mut self,
        steps: std::ops::Range<usize>,
        observer: &mut dyn Observer,
        after_step: &mut dyn FnMut(&mut StyleTransfer, usize) -> Result<(), TransferError>,
    ) -> Result<Image, TransferError> {
        let iterations = steps.end;
        for step in steps {
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
        let bad_values = check::read_flag(&self.ctx, &self.non_finite_flag)?;
        if losses.total.is_finite() && bad_values.is_none() {
            self.copy(&self.previous_image, &self.verified_image)?;
            self.verified_step = Some(step);
            return Ok(losses);
        }
        let (step, what) = match bad_values {
            Some(first) => (first as usize, "the image or its gradient".to_string()),
            None => (step, format!("the loss ({})", losses.total)),
        };
        // The last verified image (the initial one until a check passed) goes back in place.
        self.copy(&self.verified_image, self.executor.image_buffer())?;
        let kept = match self.verified_step {
            Some(verified) => format!("the image of step {verified} (the last with a finite loss) is kept"),
            None => "no checked step had a finite loss; the initial image is kept".to_string(),
        };
        Err(TransferError::NonFinite { step, what, kept })
    }

    fn copy(&self, src: &wgpu::Buffer, dst: &wgpu::Buffer) -> Result<(), TransferError> {
        let mut encoder = self.ctx.device.create_command_encoder(&Default::default());
        encoder.copy_buffer_to_buffer(src, 0, dst, 0, src.size());
        self.ctx.queue.submit([encoder.finish()]);
        Ok(self.ctx.wait()?)
    }
}
