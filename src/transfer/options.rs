//! Every knob of the method (`Options`, whose `Default` is the original), their domains and
//! their one validation.

use crate::gpu::{Backend, ContextOptions, Precision};
use crate::net::tiling::TileChoice;
use crate::net::vgg::Model;
use crate::net::{GramNorm, LossLayers, Padding, Pooling, StyleLoss, TvLoss};
use crate::optim::LbfgsConfig;

/// Every knob of the method. `Default` reproduces the original exactly: VGG-19, content at
/// relu4_2, style at relu1_1..relu5_1 weighted 1, 0.75, 0.2, 0.2, 0.2, alpha 1, beta 1e6,
/// Adam with lr 0.003 for 2000 steps, longer side 400 px.
#[derive(Clone, Debug, PartialEq)]
pub struct Options {
    /// Longest side of the content image in pixels (never upscaled).
    pub size: u32,
    /// Steps of each scale (of the one scale in the original).
    pub iterations: usize,
    /// Steps of the first scale of a multi-scale run instead of `iterations` (crowsonkb's
    /// `--initial-iterations`); `None`: `iterations`.
    pub initial_iterations: Option<usize>,
    pub learning_rate: f64,
    /// Adam's beta2 (PyTorch's default 0.999; crowsonkb's tool uses 0.99).
    pub adam_beta2: f64,
    /// The variable Adam updates: the network's normalized input (the original) or the RGB image
    /// in [0, 1], clamped there after every step (crowsonkb's).
    pub optimize_in: Variable,
    /// alpha
    pub content_weight: f64,
    /// beta
    pub style_weight: f64,
    /// Content layers by name: `relu4_2` (after the ReLU) or `conv4_2` (the raw conv output).
    pub content_layers: Vec<String>,
    pub style_layers: Vec<String>,
    /// One weight per style layer.
    pub style_layer_weights: Vec<f64>,
    /// The network (`--model`): its layers, preprocessing and default weights file.
    pub model: Model,
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
    /// normalized image (the `tv` kernels); 0 (the original) adds nothing.
    pub tv_weight: f64,
    /// The total variation's form: neural-style's sum (the one `tv_weight` above describes) or
    /// crowsonkb's nine-point stencil on the RGB image (`net::TvLoss`).
    pub tv_loss: TvLoss,
    /// How the first convolution pads the image: zeros (torchvision's VGG, the original) or its
    /// edges replicated (crowsonkb's; `net::Padding`).
    pub padding: Padding,
    /// Max pools (the original) or average pools.
    pub pooling: Pooling,
    /// neural-style's `-normalize_gradients`: each loss term's gradient is divided by its L1 norm
    /// before its weight (alpha, or beta times the layer's weight) is applied. Off in the original.
    pub normalize_gradients: bool,
    /// Gram matrices compared as they are (the original) or divided by C H W first, as
    /// jcjohnson/neural-style's `StyleLoss` does (`GramNorm`).
    pub gram_norm: GramNorm,
    /// Gram matrices (the original) or the Wasserstein-2 distance between the features'
    /// Gaussians (crowsonkb's, `ops::w2`) at every style layer.
    pub style_loss: StyleLoss,
    /// Weights of the style images when there are several (normalized to sum 1; empty: equal).
    pub style_blend_weights: Vec<f64>,
    /// Each style image is resized to the content's size times this (at least 16 px a side when
    /// not 1); 1 (the original) gives exactly the content's size.
    pub style_scale: f64,
    /// What a style image is fitted to at each scale: the content's size (the original, times
    /// `style_scale`), or the scale's longer side times `style_scale` with its own aspect ratio
    /// (never enlarged), as crowsonkb's tool does.
    pub style_fit: StyleFit,
    /// The filter that resizes the inputs to each scale and one scale's result to the next.
    pub resample: Resample,
    /// Adam's moments and step count carry over from one scale to the next, resized (the first
    /// moment bicubically, the second bilinearly and clamped at 0), as crowsonkb's tool does;
    /// off (the default): each scale starts Adam afresh.
    pub warm_start: bool,
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
    /// How the network goes over the image: `Auto` (untiled when it fits the adapter's buffer
    /// binding limit and `memory_budget`, else the largest tile that does), `Off`, or tiles of a
    /// side (`net::tiling`): the same losses and gradient as untiled, at the cost of the halos.
    pub tile: TileChoice,
    /// GPU memory (GiB) `Auto` tiling plans for; `None`: 4 GiB (wgpu reports no adapter memory).
    pub memory_budget: Option<f64>,
}

/// The variable Adam updates (`--optimize-in`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Variable {
    /// The network's normalized input (the original; learning rate and eps in that space).
    #[default]
    Input,
    /// The RGB image in [0, 1], clamped there after every step (crowsonkb's): learning rate and
    /// eps are in RGB units whatever the model's preprocessing.
    Rgb,
}

/// What each style image is resized to (`--style-fit`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum StyleFit {
    /// The content's size times `style_scale` (the original: exactly the content's size).
    #[default]
    Content,
    /// Its longer side to the scale's times `style_scale`, its aspect ratio kept, never enlarged
    /// (crowsonkb's `size_to_fit`).
    Scale,
}

/// The resampling filter of the inputs and between scales (`--resample`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Resample {
    /// Lanczos3, antialiased when shrinking, for every resize (the default).
    #[default]
    Lanczos,
    /// As crowsonkb's tool: the inputs with PIL's bicubic filter (Catmull-Rom, antialiased when
    /// shrinking), a scale's result to the next with PyTorch's `interpolate(mode='bicubic')`
    /// (a = -0.75, half-pixel centres) clamped to [0, 1].
    Bicubic,
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
    /// The original method. The loss's defaults (layers, their weights, alpha, beta, pooling)
    /// come from `LossLayers::default`; the rest are written here once (the CLI's defaults read them).
    fn default() -> Self {
        let loss = LossLayers::default();
        let learning_rate = 0.003;
        Self {
            size: 400,
            iterations: 2000,
            initial_iterations: None,
            learning_rate,
            adam_beta2: crate::optim::adam::AdamConfig::new(learning_rate).beta2,
            optimize_in: Variable::Input,
            content_weight: loss.content_weight,
            style_weight: loss.style_weight,
            content_layers: loss.content,
            style_layers: loss.style.iter().map(|(name, _)| name.clone()).collect(),
            style_layer_weights: loss.style.iter().map(|&(_, weight)| weight).collect(),
            model: Model::default(),
            weights: None,
            backend: None,
            adapter: None,
            seed: 0,
            init: Init::Content,
            optimizer: Optimizer::Adam,
            lbfgs_history: LbfgsConfig::new(learning_rate).history,
            tv_weight: loss.tv_weight,
            tv_loss: loss.tv_loss,
            padding: loss.padding,
            pooling: loss.pooling,
            normalize_gradients: loss.normalize_gradients,
            gram_norm: loss.gram_norm,
            style_loss: loss.style_loss,
            style_blend_weights: Vec::new(),
            style_scale: 1.0,
            style_fit: StyleFit::Content,
            resample: Resample::Lanczos,
            warm_start: false,
            preserve_colors: PreserveColors::None,
            average_decay: 0.0,
            scales: 1,
            min_size: None,
            checkpoint: None,
            checkpoint_every: None,
            resume: None,
            masks: Vec::new(),
            precision: Precision::Auto,
            tile: TileChoice::Auto,
            memory_budget: None,
        }
    }
}

/// A knob outside its domain, or inputs that do not go together. `message` names options by
/// their `Options` field (or input) names in braces, e.g. `{learning_rate}`: the library shows
/// them as they are, the CLI as its flags (`InvalidOption::render`).
#[derive(Debug, thiserror::Error)]
#[error("invalid option: {}", self.render(|name| name.to_string()))]
pub struct InvalidOption {
    /// The option (or input: `content`, `styles`) at fault.
    pub option: &'static str,
    pub message: String,
}

impl InvalidOption {
    /// `message` is a sentence with every option written `{name}`.
    pub fn new(option: &'static str, message: impl Into<String>) -> Self {
        Self { option, message: message.into() }
    }

    /// The message with every `{name}` replaced by `show(name)`.
    pub fn render(&self, show: impl Fn(&str) -> String) -> String {
        let mut out = String::new();
        let mut rest = self.message.as_str();
        while let Some(open) = rest.find('{') {
            let Some(close) = rest[open..].find('}').map(|c| open + c) else { break };
            out.push_str(&rest[..open]);
            out.push_str(&show(&rest[open + 1..close]));
            rest = &rest[close + 1..];
        }
        out.push_str(rest);
        out
    }
}

/// The domains of the numeric options, one source for `Options::validate` and the CLI's parsers:
/// each returns the value, or what is wrong with it.
pub mod rules {
    /// Finite and > 0 (learning rate, style scale).
    pub fn positive(v: f64) -> Result<f64, String> {
        if v.is_finite() && v > 0.0 { Ok(v) } else { Err(format!("must be a positive number, not {v}")) }
    }

    /// Finite and >= 0 (loss weights, layer and blend weights).
    pub fn non_negative(v: f64) -> Result<f64, String> {
        if v.is_finite() && v >= 0.0 { Ok(v) } else { Err(format!("must be a finite number >= 0, not {v}")) }
    }

    /// In [0, 1) (the iterate average's decay).
    pub fn decay(v: f64) -> Result<f64, String> {
        if (0.0..1.0).contains(&v) { Ok(v) } else { Err(format!("must be in [0, 1), not {v}")) }
    }
}

impl Options {
    /// Checks every value before any work starts.
    pub fn validate(&self) -> Result<(), InvalidOption> {
        let bad = |option: &'static str, message: String| Err(InvalidOption::new(option, message));
        if self.size == 0 {
            return bad("size", "{size} must be at least 1 pixel".into());
        }
        if let Err(problem) = rules::positive(self.learning_rate) {
            return bad("learning_rate", format!("{{learning_rate}} {problem}"));
        }
        for (name, value) in [
            ("content_weight", self.content_weight),
            ("style_weight", self.style_weight),
            ("tv_weight", self.tv_weight),
        ] {
            if let Err(problem) = rules::non_negative(value) {
                return bad(name, format!("{{{name}}} {problem}"));
            }
        }
        self.validate_counts()?;
        if let Err(problem) = rules::positive(self.style_scale) {
            return bad("style_scale", format!("{{style_scale}} {problem}"));
        }
        if let Some(w) = self.style_blend_weights.iter().find(|w| rules::non_negative(**w).is_err()) {
            return bad("style_blend_weights", format!("{{style_blend_weights}} must be finite numbers >= 0, not {w}"));
        }
        if !self.style_blend_weights.is_empty() && self.style_blend_weights.iter().sum::<f64>() <= 0.0 {
            return bad("style_blend_weights", "{style_blend_weights} must not all be 0".into());
        }
        if let Err(problem) = rules::decay(self.average_decay) {
            return bad("average_decay", format!("{{average_decay}} {problem}"));
        }
        if let Some(Err(problem)) = self.memory_budget.map(rules::positive) {
            return bad("memory_budget", format!("{{memory_budget}} {problem}"));
        }
        if let TileChoice::Side(side) = self.tile
            && let Err(problem) = TileChoice::parse(&side.to_string())
        {
            return bad("tile", format!("{{tile}} {problem}"));
        }
        if self.scales == 0 {
            return bad("scales", "{scales} must be at least 1".into());
        }
        if self.min_size.is_some_and(|m| m == 0 || m > self.size) {
            return bad("min_size", format!("{{min_size}} must be between 1 and {{size}} ({})", self.size));
        }
        if self.checkpoint_every == Some(0) {
            return bad(
                "checkpoint_every",
                "the checkpoint interval ({checkpoint_every}) must be at least 1 step".into(),
            );
        }
        if !(self.adam_beta2 >= 0.0 && self.adam_beta2 < 1.0) {
            return bad("adam_beta2", format!("{{adam_beta2}} must be in [0, 1), not {}", self.adam_beta2));
        }
        if self.optimizer == Optimizer::Lbfgs && self.optimize_in == Variable::Rgb {
            return bad(
                "optimize_in",
                "{optimize_in} rgb is Adam's (with its clamp to [0, 1]); L-BFGS runs on the network's input".into(),
            );
        }
        if self.optimizer == Optimizer::Lbfgs && self.warm_start {
            return bad("warm_start", "{warm_start} carries Adam's moments; L-BFGS has none to carry".into());
        }
        if self.lbfgs_history == 0 {
            return bad("lbfgs_history", "{lbfgs_history} must be at least 1".into());
        }
        if !self.masks.is_empty() && !self.style_blend_weights.is_empty() {
            return bad(
                "masks",
                "{masks} and {style_blend_weights} exclude each other: masks give each style its own \
                 region, blend weights mix the styles everywhere"
                    .into(),
            );
        }
        if self.content_layers.is_empty() && self.style_layers.is_empty() {
            return bad("content_layers", "no content or style layer".into());
        }
        Ok(())
    }

    /// The style layers and their weights go together.
    fn validate_counts(&self) -> Result<(), InvalidOption> {
        let bad = |option: &'static str, message: String| Err(InvalidOption::new(option, message));
        if self.style_layer_weights.len() != self.style_layers.len() {
            return bad(
                "style_layer_weights",
                format!(
                    "{{style_layer_weights}} has {} values for {} style layers ({})",
                    self.style_layer_weights.len(),
                    self.style_layers.len(),
                    self.style_layers.join(",")
                ),
            );
        }
        if let Some(w) = self.style_layer_weights.iter().find(|w| rules::non_negative(**w).is_err()) {
            return bad("style_layer_weights", format!("{{style_layer_weights}} must be finite numbers >= 0, not {w}"));
        }
        Ok(())
    }

    /// Steps of scale `index` (from 0): `initial_iterations` for the first, `iterations` after.
    pub fn scale_iterations(&self, index: usize) -> usize {
        match (index, self.initial_iterations) {
            (0, Some(first)) => first,
            _ => self.iterations,
        }
    }

    /// Steps of the scales before scale `index`.
    pub fn steps_before_scale(&self, index: usize) -> usize {
        (0..index).map(|i| self.scale_iterations(i)).sum()
    }

    /// Steps of the whole run over `scales` scales.
    pub fn total_steps(&self, scales: usize) -> usize {
        self.steps_before_scale(scales.max(1))
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
            input: self.model.preprocess(),
            gram_norm: self.gram_norm,
            style_loss: self.style_loss,
            tv_loss: self.tv_loss,
            padding: self.padding,
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

/// Normalizes blend weights to sum 1; empty means equal weights.
pub fn normalized_blend(blend: &[f64], styles: usize) -> Result<Vec<f64>, InvalidOption> {
    if blend.is_empty() {
        return Ok(vec![1.0 / styles as f64; styles]);
    }
    if blend.len() != styles {
        return Err(InvalidOption::new(
            "style_blend_weights",
            format!("{{style_blend_weights}} has {} values for {styles} style images", blend.len()),
        ));
    }
    let sum: f64 = blend.iter().sum();
    if blend.iter().any(|w| rules::non_negative(*w).is_err()) || sum <= 0.0 {
        return Err(InvalidOption::new("style_blend_weights", "{style_blend_weights} must be numbers >= 0, not all 0"));
    }
    Ok(blend.iter().map(|w| w / sum).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn option_errors_name_the_field_and_render_as_the_caller_names_it() {
        let bad_lr = Options { learning_rate: -1.0, ..Options::default() };
        let err = bad_lr.validate().unwrap_err();
        assert_eq!(err.option, "learning_rate");
        assert_eq!(err.to_string(), "invalid option: learning_rate must be a positive number, not -1");
        let flag = |name: &str| format!("--{}", name.replace('_', "-"));
        assert_eq!(err.render(flag), "--learning-rate must be a positive number, not -1");
        let both = Options { masks: vec!["m.png".into()], style_blend_weights: vec![1.0], ..Options::default() };
        let err = both.validate().unwrap_err();
        assert_eq!(err.option, "masks");
        assert!(err.render(flag).starts_with("--masks and --style-blend-weights exclude each other"), "{err}");
        assert!(err.to_string().starts_with("invalid option: masks and style_blend_weights exclude"), "{err}");
        // A brace without its pair is left as it is.
        assert_eq!(InvalidOption::new("size", "{size} and {").render(flag), "--size and {");
    }

    #[test]
    fn the_rules_accept_their_domain_only() {
        assert_eq!(rules::positive(0.5), Ok(0.5));
        assert!(rules::positive(0.0).is_err() && rules::positive(f64::NAN).is_err());
        assert!(rules::non_negative(0.0).is_ok() && rules::non_negative(f64::INFINITY).is_err());
        assert!(rules::decay(0.0).is_ok() && rules::decay(1.0).is_err() && rules::decay(-0.1).is_err());
        assert!(Options::default().validate().is_ok());
    }
}
