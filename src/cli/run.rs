//! A run (no subcommand): the flags of the method, their translation into the library's
//! `Options` and `Outputs`, the `Job`, and the final line or the interrupted one.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use clap::builder::TypedValueParser as _;
use stylize::Options;

use super::progress::{CliProgress, Interrupt};
use super::values::{
    BackendArg, DEFAULT_LISTS, GramNormArg, ModelArg, OptimizerArg, PaddingArg, PoolingArg, PrecisionArg,
    PreserveColorsArg, PresetArg, ResampleArg, StyleFitArg, StyleLossArg, TvLossArg, VariableArg, decay, default_init,
    defaults, flag, flag_with_value, non_negative_f64, positive_f64, tile_choice,
};

// No doc comment: a flattened struct's would become the top-level `--help`'s about.
#[derive(Args, Debug)]
pub struct RunArgs {
    /// Another tool's default recipe in one flag: `gatys` (the original method, the defaults),
    /// `jcjohnson` (jcjohnson/neural-style) or `crowsonkb` (crowsonkb/style-transfer-pytorch).
    /// Options given explicitly override it.
    #[arg(long, value_enum, value_name = "NAME", long_help = super::values::preset_help())]
    pub preset: Option<PresetArg>,

    /// Content image (PNG, JPEG, WebP, BMP, TIFF, GIF); its longer side is fitted to --size.
    #[arg(long, value_name = "PATH", required = true)]
    pub content: Option<PathBuf>,

    /// Style image; resized to the content image's size (times --style-scale). Give it several
    /// times to blend several styles (see --style-blend-weights).
    #[arg(long, value_name = "PATH", required = true)]
    pub style: Vec<PathBuf>,

    /// With several --style images, their weights, comma-separated, normalized to sum 1
    /// (default: equal). The style target at each layer is the blend of their Gram matrices.
    #[arg(long, value_name = "W,..", value_delimiter = ',', value_parser = non_negative_f64, allow_negative_numbers = true)]
    pub style_blend_weights: Vec<f64>,

    /// Resize each style image to the content's size times F (at least 16 px a side when F is
    /// not 1) instead of exactly the content's size: larger F gives smaller style features.
    #[arg(long, value_name = "F", default_value_t = defaults().style_scale, value_parser = positive_f64, allow_negative_numbers = true)]
    pub style_scale: f64,

    /// What each style image is resized to: `content` (the content's size times --style-scale)
    /// or `scale` (its longer side to the scale's times --style-scale, its own aspect ratio kept,
    /// never enlarged: crowsonkb's).
    #[arg(long, value_enum, value_name = "content|scale", default_value_t = defaults().style_fit.into())]
    pub style_fit: StyleFitArg,

    /// The resampling filter: `lanczos` (Lanczos3 for every resize) or `bicubic` (as crowsonkb:
    /// the inputs with PIL's bicubic, each scale's result to the next with PyTorch's
    /// interpolate(mode='bicubic'), clamped to [0, 1]).
    #[arg(long, value_enum, value_name = "lanczos|bicubic", default_value_t = defaults().resample.into())]
    pub resample: ResampleArg,

    /// With --scales, carry Adam's state from one scale to the next: its step count, and its
    /// moments resized (the first bicubically, the second bilinearly and clamped at 0), as
    /// crowsonkb's tool does. Off: each scale starts Adam afresh.
    #[arg(long)]
    pub warm_start: bool,

    /// Keep the content's colours: `none` (the original), `luminance` (after the run, the result's
    /// luminance with the content's chroma, in YIQ) or `histogram` (before the run, each style
    /// image's colour mean and covariance matched to the content's).
    #[arg(long, value_enum, default_value_t = defaults().preserve_colors.into())]
    pub preserve_colors: PreserveColorsArg,

    /// Where to write the result; the format follows the extension (png, jpg, webp, tif, bmp).
    #[arg(long, short, value_name = "PATH", default_value = "out.png")]
    pub output: PathBuf,

    /// The network: `vgg19` (torchvision's, the method's), `vgg16` (torchvision's), `vgg19-caffe`
    /// or `vgg16-caffe` (the Caffe VGG of jcjohnson/neural-style, fed BGR x 255 minus the mean
    /// pixel, so --learning-rate and --tv-weight act on that 0-255 scale). `stylize models`
    /// lists them and their files.
    #[arg(long, value_enum, default_value_t = defaults().model.into())]
    pub model: ModelArg,

    /// Weights of --model: a .pth (any PyTorch form) or .npz file with torchvision's
    /// `features.{i}` keys, an http(s) URL, or `random[:SEED]` (untrained, for tests). Default:
    /// $STYLIZE_WEIGHTS (for vgg19), else the cache ($XDG_CACHE_HOME/stylize or
    /// ~/.cache/stylize), else a verified download of the model's file (vgg19: torchvision's
    /// vgg19-dcbb9e9d.pth, 548 MiB).
    #[arg(long, value_name = "PATH|URL")]
    pub weights: Option<String>,

    /// Longest side of the content image in pixels (never upscaled).
    #[arg(long, default_value_t = defaults().size, value_parser = clap::value_parser!(u32).range(1..=16384), allow_negative_numbers = true)]
    pub size: u32,

    /// Optimization steps (of each scale with --scales).
    #[arg(long, default_value_t = defaults().iterations, allow_negative_numbers = true)]
    pub iterations: usize,

    /// Steps of the first scale instead of --iterations (crowsonkb's --initial-iterations): the
    /// coarsest scale starts from the content and needs more.
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub initial_iterations: Option<usize>,

    /// Adam's beta2, the decay of its second moment (PyTorch's default; crowsonkb uses 0.99).
    #[arg(long, value_name = "B", default_value_t = defaults().adam_beta2, allow_negative_numbers = true)]
    pub adam_beta2: f64,

    /// What Adam updates: `input`, the network's normalized input (the original: --learning-rate
    /// is in its units, e.g. 1/std for torchvision's models, 255 for the Caffe ones), or `rgb`, the
    /// image in [0, 1], clamped there after every step (crowsonkb's; --learning-rate in RGB
    /// units). Adam only.
    #[arg(long, value_enum, value_name = "input|rgb", default_value_t = defaults().optimize_in.into())]
    pub optimize_in: VariableArg,

    /// Learning rate: Adam's, or L-BFGS's fixed step length (neural-style uses 1 with L-BFGS).
    #[arg(long, default_value_t = defaults().learning_rate, value_parser = positive_f64, allow_negative_numbers = true)]
    pub learning_rate: f64,

    /// Content loss weight (alpha).
    #[arg(long, default_value_t = defaults().content_weight, value_parser = non_negative_f64, allow_negative_numbers = true)]
    pub content_weight: f64,

    /// Style loss weight (beta).
    #[arg(long, default_value_t = defaults().style_weight, value_parser = non_negative_f64, allow_negative_numbers = true)]
    pub style_weight: f64,

    /// Content layers, comma-separated: relu4_2 reads features after the ReLU (the original's
    /// behaviour), conv4_2 the raw convolution output.
    #[arg(long, value_delimiter = ',', default_value = DEFAULT_LISTS.content_layers.as_str())]
    pub content_layers: Vec<String>,

    /// Style layers, comma-separated (conv* or relu* names up to 5_1).
    #[arg(long, value_delimiter = ',', default_value = DEFAULT_LISTS.style_layers.as_str())]
    pub style_layers: Vec<String>,

    /// One weight per style layer, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = DEFAULT_LISTS.style_layer_weights.as_str(), value_parser = non_negative_f64, allow_negative_numbers = true)]
    pub style_layer_weights: Vec<f64>,

    /// Optimizer: `adam` (the original) or `lbfgs`, which runs like PyTorch's
    /// `LBFGS(lr=--learning-rate, line_search_fn=None)`: one gradient evaluation and one
    /// fixed-length step per iteration, no line search (jcjohnson/neural-style's default, with
    /// learning rate 1; the --learning-rate given is used as is).
    #[arg(long, value_enum, default_value_t = defaults().optimizer.into())]
    pub optimizer: OptimizerArg,

    /// Curvature pairs L-BFGS keeps (PyTorch's history_size).
    #[arg(long, default_value_t = defaults().lbfgs_history as u64, value_name = "N", value_parser = clap::value_parser!(u64).range(1..), allow_negative_numbers = true)]
    pub lbfgs_history: u64,

    /// Weight of a total-variation term W * sum of squared neighbour differences of the
    /// normalized image, added to the loss (0: none, the original).
    #[arg(long, default_value_t = defaults().tv_weight, value_name = "W", value_parser = non_negative_f64, allow_negative_numbers = true)]
    pub tv_weight: f64,

    /// The total variation's form: `sum` (neural-style's: W times the sum of squared right and
    /// down differences of the normalized image) or `nine-point` (crowsonkb's: W * 2 * (mean dx^2
    /// / 3 + mean dy^2 / 3 + mean of both diagonals' squares / 12) of the RGB image in [0, 1] with
    /// its edges replicated; over tiles on the whole image, which must fit one binding).
    #[arg(long, value_enum, value_name = "sum|nine-point", default_value_t = defaults().tv_loss.into())]
    pub tv_loss: TvLossArg,

    /// How the first convolution pads the image: `zeros` (torchvision's VGG, the original) or
    /// `replicate` (its edges repeated, crowsonkb's, against dark or bright edge artifacts; the
    /// later convolutions pad with zeros either way).
    #[arg(long, value_enum, value_name = "zeros|replicate", default_value_t = defaults().padding.into())]
    pub padding: PaddingArg,

    /// Divide each loss term's gradient by its L1 norm before weighting it, as neural-style's
    /// -normalize_gradients does (off in the original method).
    #[arg(long)]
    pub normalize_gradients: bool,

    /// How a style term compares the Gram G of the result's features (C x H W) with the style's
    /// A: `none` (the original: both as they are, the term w mean((G - A)^2) / (C H W)) or `chw`
    /// (both divided by C H W first, as jcjohnson/neural-style's StyleLoss: w mean((G - A)^2) /
    /// (C H W)^2, so its --style-weight is on another scale).
    #[arg(long, value_enum, value_name = "none|chw", default_value_t = defaults().gram_norm.into())]
    pub gram_norm: GramNormArg,

    /// What each style layer compares: `gram` (the original: Gram matrices) or `w2` (as
    /// crowsonkb/style-transfer-pytorch: the 2-Wasserstein distance between Gaussians fitted to
    /// the features, mean_c (mu - mu_s)^2 + tr(S + S_s - 2 (S_s^1/2 S S_s^1/2)^1/2) / C with S the
    /// covariance + 1e-4 I, w_l times it per layer; its --style-weight is on another scale). w2
    /// runs in f32 (tiled too: the moments are summed over the tiles); with --mask each region's
    /// mean and covariance are weighted by its mask.
    #[arg(long, value_enum, value_name = "gram|w2", default_value_t = defaults().style_loss.into())]
    pub style_loss: StyleLossArg,

    /// VGG's 2x2 pools: `max` (the original) or `avg` (average pools, as Gatys et al. suggest).
    #[arg(long, value_enum, default_value_t = defaults().pooling.into())]
    pub pooling: PoolingArg,

    /// Output an exponential moving average of the iterates instead of the last one: after every
    /// step avg = D avg + (1 - D) x, bias-corrected as avg / (1 - D^t) (as crowsonkb's
    /// style-transfer-pytorch does); e.g. 0.9. 0: off (the original).
    #[arg(long, value_name = "D", default_value_t = defaults().average_decay, value_parser = decay, allow_negative_numbers = true)]
    pub average_decay: f64,

    /// Bits per sample of --output (and --side-by-side, periodic saves): 8, or 16 for PNG and TIFF.
    #[arg(long, value_name = "8|16", default_value_t = 8, value_parser = clap::builder::PossibleValuesParser::new(["8", "16"]).map(|s| s.parse::<u8>().expect("8 or 16")))]
    pub output_depth: u8,

    /// Run coarse to fine over N scales: each sqrt(2) larger than the one before (or spaced
    /// geometrically from --min-size), the last at --size; each scale's result, upsampled,
    /// starts the next, and each runs --iterations steps. 1: the original single run.
    #[arg(long, value_name = "N", default_value_t = defaults().scales as u64, value_parser = clap::value_parser!(u64).range(1..=16), allow_negative_numbers = true)]
    pub scales: u64,

    /// Longer side of the first scale with --scales > 1 (default: --size / sqrt(2)^(N-1)).
    #[arg(long, value_name = "S", value_parser = clap::value_parser!(u32).range(1..=16384), allow_negative_numbers = true)]
    pub min_size: Option<u32>,

    /// Write a CSV (step,content,style,total) with the losses of every step, computed on the
    /// image before that step's update, as the original loop does.
    #[arg(long, value_name = "PATH")]
    pub loss_log: Option<PathBuf>,

    /// Show the losses every N steps (0: never). On a terminal they go into the progress bar
    /// (every 50 steps unless set); otherwise a line is printed only when this flag is given, so
    /// that logs of unattended runs hold just the final line.
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub print_every: Option<usize>,

    /// Also write the current image to --output every N steps.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..), allow_negative_numbers = true)]
    pub save_every: Option<u64>,

    /// Also write content | style | result side by side, like the original's figure; with
    /// `stylize video` a folder, one figure per frame named as the frames.
    #[arg(long, value_name = "PATH")]
    pub side_by_side: Option<PathBuf>,

    /// Start from `content` (the original method), `random` noise (seeded by --seed), or an image
    /// file, e.g. an interrupted result to resume from (resized to the content's size).
    #[arg(long, value_name = "content|random|PATH", default_value = default_init())]
    pub init: String,

    /// Seed for everything random (--init random, --weights random).
    #[arg(long, default_value_t = defaults().seed, allow_negative_numbers = true)]
    pub seed: u64,

    /// GPU API to use (default: WGPU_BACKEND or the best available).
    #[arg(long, value_enum)]
    pub backend: Option<BackendArg>,

    /// Use the adapter whose name contains NAME (see `stylize devices`).
    #[arg(long, value_name = "NAME")]
    pub adapter: Option<String>,

    /// Write a checkpoint to PATH (atomically) every --save-every steps, on Ctrl-C/SIGTERM and at
    /// the end: the image and the optimizer's whole state as the GPU holds them, the iterate
    /// average, the scale and step, and a fingerprint of the inputs and options. See --resume.
    #[arg(long, value_name = "PATH")]
    pub checkpoint: Option<PathBuf>,

    /// Continue exactly from a checkpoint (--checkpoint): give the same inputs and options;
    /// --iterations stays the total, and the result is the one an uninterrupted run writes. A
    /// checkpoint from other inputs or options, or a damaged one, is refused. Keeps writing the
    /// checkpoint to PATH unless --checkpoint says elsewhere.
    #[arg(long, value_name = "PATH")]
    pub resume: Option<PathBuf>,

    /// Give the --style before it a region of the result (guided Gram matrices, Gatys et al.
    /// 2017): a grayscale image, white where that style applies, black where it does not, grey
    /// in between (colour files are read as luminance 0.299 R + 0.587 G + 0.114 B); resized to the
    /// content's size. Either every --style has a --mask or none does; not with
    /// --style-blend-weights. One mask with one style stylizes only that region.
    #[arg(long, value_name = "PATH")]
    pub mask: Vec<PathBuf>,

    /// Serve a live preview of the run at http://ADDR/ (default 127.0.0.1:8787; a bare PORT
    /// means 127.0.0.1:PORT, port 0 a free one): the latest image (read back at most once a
    /// second), steps/s, ETA, losses and their curve; also /image.png and /losses.csv. Only
    /// loopback addresses unless --serve-public. The server ends with the run, after a watching
    /// page got the final image (at most 3 s more).
    #[arg(long, value_name = "ADDR", num_args = 0..=1, default_missing_value = stylize::serve::DEFAULT_ADDR)]
    pub serve: Option<String>,

    /// Allow --serve on an address other machines can reach (e.g. 0.0.0.0:8787): anyone who can
    /// reach it sees the images; there is no authentication.
    #[arg(long, requires = "serve")]
    pub serve_public: bool,

    /// Write a PNG plot of the loss curves (log scale, one line per term) at the end and at every
    /// --save-every; the losses are read back about 200 times a scale (every step with --loss-log).
    /// With `stylize video`: the whole clip's curves, frame after frame, with the temporal term
    /// (every step's losses read back).
    #[arg(long, value_name = "PATH")]
    pub loss_plot: Option<PathBuf>,
    /// Arithmetic of the convolutions and Gram products: `f32`; `mixed` (operands rounded to f16,
    /// sums in f32: on matrix units where the adapter has cooperative matrices, else emulated,
    /// slower, with a warning); `auto`: mixed on GPUs with matrix units, else f32 (a CPU
    /// adapter's matrices, Mesa 26 lavapipe's, measured slower than its f32).
    #[arg(long, value_enum, default_value_t = defaults().precision.into())]
    pub precision: PrecisionArg,

    /// How the network goes over the image: `auto` runs untiled when the whole step fits the
    /// adapter's buffer binding limit and --memory-budget, else in the largest tiles that fit;
    /// `off` never tiles; a side in pixels (a multiple of 16) forces tiles of it. A tiled step
    /// computes the same losses and gradient as an untiled one (each tile runs with a halo, 160 px
    /// for the default layers, and owns only its own pixels), at the cost of the halos (`stylize
    /// plan` shows it). Every other option works with tiles. Tiled, the whole image's arrays
    /// (image, gradient, optimizer state) are kept in bands of rows that each fit one binding, so
    /// the size is bounded by memory alone.
    #[arg(long, value_name = "auto|off|PX", default_value = "auto", value_parser = tile_choice)]
    pub tile: stylize::net::tiling::TileChoice,

    /// GPU memory, GiB, that --tile auto plans for (the network's buffers and the image-sized
    /// state). Default: 4 (wgpu reports no adapter memory).
    #[arg(long, value_name = "GIB", value_parser = positive_f64)]
    pub memory_budget: Option<f64>,
}

/// Each --mask must follow the --style it belongs to (the i-th mask after the i-th style and
/// before the next one), so that the command line reads as style/mask pairs.
pub fn misplaced_mask(matches: &clap::ArgMatches) -> Option<String> {
    let masks: Vec<usize> = matches.indices_of("mask")?.collect();
    let styles: Vec<usize> = matches.indices_of("style").map(|i| i.collect()).unwrap_or_default();
    masks.iter().enumerate().find_map(|(i, &at)| {
        let after_own = styles.get(i).is_some_and(|&s| s < at);
        let before_next = styles.get(i + 1).is_none_or(|&s| at < s);
        (!(after_own && before_next)).then(|| {
            format!("--mask number {} must come right after the --style it belongs to (style number {})", i + 1, i + 1)
        })
    })
}

/// The run's options: the flags as given, then, with --preset, the preset's recipe for every
/// option of it that was not given explicitly (`matches` tells which were). Also the names of the
/// options the preset set.
pub fn options(cli: &RunArgs, matches: &clap::ArgMatches) -> (Options, Vec<&'static str>) {
    let mut options = flag_options(cli);
    let Some(preset) = cli.preset else {
        return (options, Vec::new());
    };
    let explicit = |field: &str| {
        matches.value_source(field).is_some_and(|source| source != clap::parser::ValueSource::DefaultValue)
    };
    let set = stylize::Preset::from(preset).apply(&mut options, &explicit);
    (options, set)
}

/// The line a run with --preset starts with: what the preset set, and the options given over it.
fn preset_line(preset: stylize::Preset, set: &[&str]) -> String {
    let settings = preset.settings();
    let shown: Vec<String> =
        settings.iter().filter(|(name, _)| set.contains(name)).map(|(name, v)| flag_with_value(name, v)).collect();
    let yours: Vec<String> =
        settings.iter().filter(|(name, _)| !set.contains(name)).map(|(name, _)| flag(name)).collect();
    let yours = if yours.is_empty() { String::new() } else { format!("; given over it: {}", yours.join(" ")) };
    format!("stylize: preset {preset}: {}{yours}", shown.join(" "))
}

/// The run's options as the flags give them (defaults where not given).
fn flag_options(cli: &RunArgs) -> Options {
    Options {
        size: cli.size,
        iterations: cli.iterations,
        initial_iterations: cli.initial_iterations,
        learning_rate: cli.learning_rate,
        adam_beta2: cli.adam_beta2,
        optimize_in: cli.optimize_in.into(),
        content_weight: cli.content_weight,
        style_weight: cli.style_weight,
        content_layers: cli.content_layers.clone(),
        style_layers: cli.style_layers.clone(),
        style_layer_weights: cli.style_layer_weights.clone(),
        model: cli.model.into(),
        weights: cli.weights.clone(),
        backend: cli.backend.map(Into::into),
        adapter: cli.adapter.clone(),
        seed: cli.seed,
        init: match cli.init.as_str() {
            "content" => stylize::Init::Content,
            "random" => stylize::Init::Random,
            path => stylize::Init::Image(PathBuf::from(path)),
        },
        optimizer: cli.optimizer.into(),
        lbfgs_history: cli.lbfgs_history as usize,
        tv_weight: cli.tv_weight,
        tv_loss: cli.tv_loss.into(),
        padding: cli.padding.into(),
        normalize_gradients: cli.normalize_gradients,
        gram_norm: cli.gram_norm.into(),
        style_loss: cli.style_loss.into(),
        pooling: cli.pooling.into(),
        style_blend_weights: cli.style_blend_weights.clone(),
        style_scale: cli.style_scale,
        style_fit: cli.style_fit.into(),
        resample: cli.resample.into(),
        warm_start: cli.warm_start,
        average_decay: cli.average_decay,
        scales: cli.scales as usize,
        min_size: cli.min_size,
        precision: cli.precision.into(),
        preserve_colors: cli.preserve_colors.into(),
        checkpoint: cli.checkpoint.clone().or_else(|| cli.resume.clone()),
        checkpoint_every: cli.save_every.map(|n| n as usize),
        resume: cli.resume.clone(),
        masks: cli.mask.clone(),
        tile: cli.tile,
        memory_budget: cli.memory_budget,
    }
}

/// What the run writes, as the command line gives it.
fn outputs(cli: &RunArgs) -> stylize::Outputs {
    stylize::Outputs {
        output: Some(cli.output.clone()),
        depth: cli.output_depth,
        side_by_side: cli.side_by_side.clone(),
        loss_log: cli.loss_log.clone(),
        save_every: cli.save_every.map(|n| n as usize),
        loss_plot: cli.loss_plot.clone(),
        serve: cli.serve.clone(),
        serve_public: cli.serve_public,
        loss_log_frame: None,
    }
}

/// The run; `Some(code)` when a signal stopped it (the image so far is written), for `main` to exit with.
pub fn transfer(cli: RunArgs, matches: &clap::ArgMatches) -> Result<Option<i32>> {
    let (options, preset_set) = options(&cli, matches);
    if let Some(preset) = cli.preset {
        eprintln!("{}", preset_line(preset.into(), &preset_set));
    }
    let content = cli.content.clone().expect("required");
    let mut progress = CliProgress::new(&options, cli.print_every);
    let job = stylize::Job::new(&content, &cli.style, options.clone(), outputs(&cli), &mut progress)?;
    let finished = job.run(&mut progress);
    progress.finish();
    let finished = finished?;
    let (steps, resumed_steps) = (finished.steps, finished.resumed_steps);
    if let Some(code) = progress.interrupt.as_ref().and_then(Interrupt::exit_code) {
        let total_steps = options.total_steps(options.scales);
        let resume = match &options.checkpoint {
            Some(path) => format!("continue exactly with the same options and --resume {}", path.display()),
            None => format!("resume with --init {}", cli.output.display()),
        };
        eprintln!(
            "stylize: interrupted after {steps} of {total_steps} steps; wrote the image so far to {} ({resume})",
            cli.output.display()
        );
        return Ok(Some(code));
    }
    let target = &finished.outcome.target;
    let seconds = progress.started.map_or(0.0, |t| t.elapsed().as_secs_f64());
    let last = progress.last_losses.map(|l| format!(", final loss {:.4e}", l.total)).unwrap_or_default();
    let resumed =
        if cli.resume.is_some() { format!(" ({} after the resume)", steps - resumed_steps) } else { String::new() };
    eprintln!(
        "stylize: wrote {} ({}x{}) after {steps} steps{resumed} in {:.1} s ({:.1} steps/s) on {}, precision {}{last}",
        cli.output.display(),
        target.width,
        target.height,
        seconds,
        (steps - resumed_steps) as f64 / seconds.max(1e-9),
        finished.gpu.adapter,
        finished.gpu.precision,
    );
    Ok(None)
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, FromArgMatches};

    use super::*;
    use crate::cli::args::Cli;

    fn parsed(args: &[&str]) -> (Options, Vec<&'static str>) {
        let all = [&["stylize", "--content", "c.png", "--style", "s.png"], args].concat();
        let matches = Cli::command().try_get_matches_from(all).unwrap();
        let cli = Cli::from_arg_matches(&matches).unwrap();
        options(&cli.run, &matches)
    }

    #[test]
    fn a_preset_sets_its_recipe_and_an_explicit_flag_overrides_only_that_option() {
        let recipe = stylize::Preset::Jcjohnson.options();
        let (preset, set) = parsed(&["--preset", "jcjohnson"]);
        assert_eq!(preset, recipe);
        assert_eq!(set.len(), stylize::Preset::fields().count());
        let (mixed, set) = parsed(&["--preset", "jcjohnson", "--content-weight", "7", "--normalize-gradients"]);
        assert_eq!(mixed, Options { content_weight: 7.0, normalize_gradients: true, ..recipe.clone() });
        assert!(!set.contains(&"content_weight") && !set.contains(&"normalize_gradients") && set.contains(&"model"));
        // A flag given with the default's own value is still the user's.
        let (same, _) = parsed(&["--preset", "jcjohnson", "--size", "400"]);
        assert_eq!(same, Options { size: 400, ..recipe });
        assert_eq!(parsed(&["--preset", "gatys"]).0, parsed(&[]).0);
        let line = preset_line(stylize::Preset::Jcjohnson, &set);
        assert!(line.contains("--model vgg19-caffe") && line.contains("--gram-norm chw"), "{line}");
        assert!(line.ends_with("given over it: --content-weight --normalize-gradients"), "{line}");
    }

    /// Every option a preset sets is a flag of a run under its field's name (what `options` asks
    /// clap about), and each preset's recipe is valid.
    #[test]
    fn every_preset_field_is_a_run_flag() {
        let command = Cli::command();
        for field in stylize::Preset::fields() {
            let arg = command.get_arguments().find(|a| a.get_id() == field);
            let arg = arg.unwrap_or_else(|| panic!("{field}: no run flag of that id"));
            assert_eq!(arg.get_long().map(|l| format!("--{l}")), Some(flag(field)), "{field}");
        }
    }
}
