//! The optimization loop of the method: targets computed once, then Adam steps on the image,
//! each one recorded once and submitted once, with an observer for progress, logs and saves.

use crate::gpu::{Context, ContextOptions, GpuError};
use crate::image_io::Image;
use crate::net::vgg::{DEFAULT_CONTENT_LAYER, DEFAULT_STYLE_LAYERS, VGG19};
use crate::net::{ConvLayerWeights, Executor, LossLayers, Losses, NetError, Plan};
use crate::ops::adam::{Adam, AdamConfig};
use crate::ops::check;

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
        for (name, value) in [("--content-weight", self.content_weight), ("--style-weight", self.style_weight)] {
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
        }
    }

    /// How to open the GPU.
    pub fn context_options(&self) -> ContextOptions {
        ContextOptions {
            backends: self.backend.map(Backend::backends),
            adapter_name: self.adapter.clone(),
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
}

/// One style-transfer problem on the GPU: the network with its targets, the image and Adam.
pub struct StyleTransfer {
    ctx: Context,
    executor: Executor,
    adam: Adam,
    adam_kernel: usize,
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
        let (width, height) = (content.width, content.height);
        for (what, image) in [("style", style), ("initial", init)] {
            if (image.width, image.height) != (width, height) {
                return Err(NetError::BadSize(format!(
                    "the {what} image is {}x{}, the content image {width}x{height}",
                    image.width, image.height
                ))
                .into());
            }
        }
        let widths: Vec<(usize, usize)> = weights.iter().map(|w| (w.in_channels, w.out_channels)).collect();
        let plan = Plan::new(&VGG19, &widths, height as usize, width as usize, &options.loss_layers())?;
        let mut executor = Executor::new(&ctx, plan, weights)?;
        executor.set_content(&ctx, &content.data)?;
        executor.set_style(&ctx, &style.data)?;
        executor.set_image(&ctx, &init.data)?;
        let config = AdamConfig { lr: options.learning_rate, ..AdamConfig::default() };
        let (adam, kernel) =
            Adam::new(&ctx, executor.image_len(), executor.image_buffer(), executor.image_grad_buffer(), config)?;
        // Flag the first step whose image or gradient holds an inf or NaN, before Adam uses them.
        let non_finite_flag = check::new_flag(&ctx)?;
        let len = executor.image_len();
        let image_check = check::flag_non_finite(&ctx, len, executor.image_buffer(), &non_finite_flag)?;
        let grad_check = check::flag_non_finite(&ctx, len, executor.image_grad_buffer(), &non_finite_flag)?;
        let checks = [executor.training_step().push(image_check), executor.training_step().push(grad_check)];
        let adam_kernel = executor.training_step().push(kernel);
        let previous_image = ctx.buffer("previous image", executor.image_len())?;
        let verified_image = ctx.buffer("last finite image", executor.image_len())?;
        let image = executor.image_buffer().clone();
        executor.training_step().copy_first(&image, &previous_image);
        let transfer = Self {
            ctx,
            executor,
            adam,
            adam_kernel,
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

    /// Steps taken so far.
    pub fn steps_done(&self) -> usize {
        self.steps_done
    }

    /// One optimization step: forward, losses, backward, Adam; one submit, no wait.
    pub fn step(&mut self) {
        self.adam.advance(&self.ctx, self.executor.training_step().kernel(self.adam_kernel));
        let len = self.executor.image_len();
        for index in self.checks {
            check::set_step(&self.ctx, self.executor.training_step().kernel(index), len, self.steps_done as u32);
        }
        self.executor.training_step().submit(&self.ctx);
        self.steps_done += 1;
    }

    /// Waits for the GPU and reports any error it raised.
    pub fn sync(&self) -> Result<(), TransferError> {
        Ok(self.ctx.wait()?)
    }

    /// Losses of the image before the last step's update.
    pub fn losses(&self) -> Result<Losses, TransferError> {
        Ok(self.executor.read_losses(&self.ctx)?)
    }

    /// The current image, RGB in [0, 1].
    pub fn image(&self) -> Result<Image, TransferError> {
        let data = self.executor.read_rgb(&self.ctx)?;
        Ok(Image::new(self.width, self.height, data))
    }

    /// Bytes of GPU memory held by every buffer of the run (network, targets, scratch, Adam's moments).
    pub fn gpu_bytes(&self) -> u64 {
        self.executor.allocated_bytes() + self.adam.exp_avg.size() + self.adam.exp_avg_sq.size()
    }

    /// GPU time of every kernel of one training step (needs timestamp queries).
    pub fn profile_step(&mut self) -> Result<Vec<crate::gpu::KernelTime>, TransferError> {
        self.adam.advance(&self.ctx, self.executor.training_step().kernel(self.adam_kernel));
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
        for step in 0..iterations {
            if observer.should_stop() {
                break;
            }
            self.step();
            let wanted = observer.wants_losses(step);
            let check = wanted || step % CHECK_EVERY == CHECK_EVERY - 1 || step + 1 == iterations;
            let losses = if check { Some(self.checked_losses(step)?) } else { None };
            let image = if observer.wants_image(step) { Some(self.image()?) } else { None };
            observer.on_step(step, losses.as_ref().filter(|_| wanted), image.as_ref())?;
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
        let kept = match self.verified_step {
            Some(verified) => {
                self.copy(&self.verified_image, self.executor.image_buffer())?;
                format!("the image of step {verified} (the last with a finite loss) is kept")
            }
            None => {
                self.copy(&self.verified_image, self.executor.image_buffer())?;
                "no checked step had a finite loss; the initial image is kept".to_string()
            }
        };
        Err(TransferError::NonFinite { step, what, kept })
    }

    fn copy(&self, src: &wgpu::Buffer, dst: &wgpu::Buffer) -> Result<(), TransferError> {
        let mut encoder = self.ctx.device.create_command_encoder(&Default::default());
        encoder.copy_buffer_to_buffer(src, 0, dst, 0, src.size());
        self.ctx.queue.submit([encoder.finish()]);
        self.sync()
    }
}
