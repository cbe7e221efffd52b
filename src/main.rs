//! The `stylize` command line: parses, checks everything it can before work starts, calls the
//! library, reports progress. Exit codes: 0 success, 1 runtime or input error, 2 usage error.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use anyhow::{Result, bail};
use clap::builder::TypedValueParser as _;
use clap::{Parser, Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use stylize::image_io::{self, Image};
use stylize::weights::FetchEvent;
use stylize::{Losses, Observer, Options, TransferError};

#[derive(Parser, Debug)]
#[command(
    name = "stylize",
    version,
    about = "Neural style transfer (Gatys, Ecker & Bethge 2016) on any Vulkan, Metal or DX12 GPU",
    long_about = long_about(),
    subcommand_negates_reqs = true,
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,

    /// Content image (PNG, JPEG, WebP, BMP, TIFF, GIF); its longer side is fitted to --size.
    #[arg(long, value_name = "PATH", required = true)]
    content: Option<PathBuf>,

    /// Style image; resized to the content image's size (times --style-scale). Give it several
    /// times to blend several styles (see --style-blend-weights).
    #[arg(long, value_name = "PATH", required = true)]
    style: Vec<PathBuf>,

    /// With several --style images, their weights, comma-separated, normalized to sum 1
    /// (default: equal). The style target at each layer is the blend of their Gram matrices.
    #[arg(long, value_name = "W,..", value_delimiter = ',', value_parser = non_negative_f64, allow_negative_numbers = true)]
    style_blend_weights: Vec<f64>,

    /// Resize each style image to the content's size times F (at least 16 px a side when F is
    /// not 1) instead of exactly the content's size: larger F gives smaller style features.
    #[arg(long, value_name = "F", default_value_t = defaults().style_scale, value_parser = positive_f64, allow_negative_numbers = true)]
    style_scale: f64,

    /// Keep the content's colours: `none` (the original), `luminance` (after the run, the result's
    /// luminance with the content's chroma, in YIQ) or `histogram` (before the run, each style
    /// image's colour mean and covariance matched to the content's).
    #[arg(long, value_enum, default_value_t = defaults().preserve_colors.into())]
    preserve_colors: PreserveColorsArg,

    /// Where to write the result; the format follows the extension (png, jpg, webp, tif, bmp).
    #[arg(long, short, value_name = "PATH", default_value = "out.png")]
    output: PathBuf,

    /// VGG-19 weights: a .pth (any PyTorch form) or .npz file, an http(s) URL, or `random[:SEED]`
    /// (untrained, for tests). Default: $STYLIZE_WEIGHTS, else the cache
    /// ($XDG_CACHE_HOME/stylize or ~/.cache/stylize), else a verified download of torchvision's
    /// vgg19-dcbb9e9d.pth (548 MiB).
    #[arg(long, value_name = "PATH|URL")]
    weights: Option<String>,

    /// Longest side of the content image in pixels (never upscaled).
    #[arg(long, default_value_t = defaults().size, value_parser = clap::value_parser!(u32).range(1..=16384), allow_negative_numbers = true)]
    size: u32,

    /// Optimization steps.
    #[arg(long, default_value_t = defaults().iterations, allow_negative_numbers = true)]
    iterations: usize,

    /// Learning rate: Adam's, or L-BFGS's fixed step length (neural-style uses 1 with L-BFGS).
    #[arg(long, default_value_t = defaults().learning_rate, value_parser = positive_f64, allow_negative_numbers = true)]
    learning_rate: f64,

    /// Content loss weight (alpha).
    #[arg(long, default_value_t = defaults().content_weight, value_parser = non_negative_f64, allow_negative_numbers = true)]
    content_weight: f64,

    /// Style loss weight (beta).
    #[arg(long, default_value_t = defaults().style_weight, value_parser = non_negative_f64, allow_negative_numbers = true)]
    style_weight: f64,

    /// Content layers, comma-separated: relu4_2 reads features after the ReLU (the original's
    /// behaviour), conv4_2 the raw convolution output.
    #[arg(long, value_delimiter = ',', default_value = DEFAULT_LISTS.content_layers.as_str())]
    content_layers: Vec<String>,

    /// Style layers, comma-separated (conv* or relu* names up to 5_1).
    #[arg(long, value_delimiter = ',', default_value = DEFAULT_LISTS.style_layers.as_str())]
    style_layers: Vec<String>,

    /// One weight per style layer, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = DEFAULT_LISTS.style_layer_weights.as_str(), value_parser = non_negative_f64, allow_negative_numbers = true)]
    style_layer_weights: Vec<f64>,

    /// Optimizer: `adam` (the original) or `lbfgs`, which runs like PyTorch's
    /// `LBFGS(lr=--learning-rate, line_search_fn=None)`: one gradient evaluation and one
    /// fixed-length step per iteration, no line search (jcjohnson/neural-style's default, with
    /// learning rate 1; the --learning-rate given is used as is).
    #[arg(long, value_enum, default_value_t = defaults().optimizer.into())]
    optimizer: OptimizerArg,

    /// Curvature pairs L-BFGS keeps (PyTorch's history_size).
    #[arg(long, default_value_t = defaults().lbfgs_history as u64, value_name = "N", value_parser = clap::value_parser!(u64).range(1..), allow_negative_numbers = true)]
    lbfgs_history: u64,

    /// Weight of a total-variation term W * sum of squared neighbour differences of the
    /// normalized image, added to the loss (0: none, the original).
    #[arg(long, default_value_t = defaults().tv_weight, value_name = "W", value_parser = non_negative_f64, allow_negative_numbers = true)]
    tv_weight: f64,

    /// Divide each loss term's gradient by its L1 norm before weighting it, as neural-style's
    /// -normalize_gradients does (off in the original method).
    #[arg(long)]
    normalize_gradients: bool,

    /// VGG's 2x2 pools: `max` (the original) or `avg` (average pools, as Gatys et al. suggest).
    #[arg(long, value_enum, default_value_t = defaults().pooling.into())]
    pooling: PoolingArg,

    /// Output an exponential moving average of the iterates instead of the last one: after every
    /// step avg = D avg + (1 - D) x, bias-corrected as avg / (1 - D^t) (as crowsonkb's
    /// style-transfer-pytorch does); e.g. 0.9. 0: off (the original).
    #[arg(long, value_name = "D", default_value_t = defaults().average_decay, value_parser = decay, allow_negative_numbers = true)]
    average_decay: f64,

    /// Bits per sample of --output (and --side-by-side, periodic saves): 8, or 16 for PNG and TIFF.
    #[arg(long, value_name = "8|16", default_value_t = 8, value_parser = clap::builder::PossibleValuesParser::new(["8", "16"]).map(|s| s.parse::<u8>().expect("8 or 16")))]
    output_depth: u8,

    /// Run coarse to fine over N scales: each sqrt(2) larger than the one before (or spaced
    /// geometrically from --min-size), the last at --size; each scale's result, upsampled,
    /// starts the next, and each runs --iterations steps. 1: the original single run.
    #[arg(long, value_name = "N", default_value_t = defaults().scales as u64, value_parser = clap::value_parser!(u64).range(1..=16), allow_negative_numbers = true)]
    scales: u64,

    /// Longer side of the first scale with --scales > 1 (default: --size / sqrt(2)^(N-1)).
    #[arg(long, value_name = "S", value_parser = clap::value_parser!(u32).range(1..=16384), allow_negative_numbers = true)]
    min_size: Option<u32>,

    /// Write a CSV (step,content,style,total) with the losses of every step, computed on the
    /// image before that step's update, as the original loop does.
    #[arg(long, value_name = "PATH")]
    loss_log: Option<PathBuf>,

    /// Show the losses every N steps (0: never). On a terminal they go into the progress bar
    /// (every 50 steps unless set); otherwise a line is printed only when this flag is given, so
    /// that logs of unattended runs hold just the final line.
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    print_every: Option<usize>,

    /// Also write the current image to --output every N steps.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..), allow_negative_numbers = true)]
    save_every: Option<u64>,

    /// Also write content | style | result side by side, like the original's figure.
    #[arg(long, value_name = "PATH")]
    side_by_side: Option<PathBuf>,

    /// Start from `content` (the original method), `random` noise (seeded by --seed), or an image
    /// file, e.g. an interrupted result to resume from (resized to the content's size).
    #[arg(long, value_name = "content|random|PATH", default_value = default_init())]
    init: String,

    /// Seed for everything random (--init random, --weights random).
    #[arg(long, default_value_t = defaults().seed, allow_negative_numbers = true)]
    seed: u64,

    /// GPU API to use (default: WGPU_BACKEND or the best available).
    #[arg(long, value_enum)]
    backend: Option<BackendArg>,

    /// Use the adapter whose name contains NAME (see `stylize devices`).
    #[arg(long, value_name = "NAME")]
    adapter: Option<String>,

    /// Write a checkpoint to PATH (atomically) every --save-every steps, on Ctrl-C/SIGTERM and at
    /// the end: the image and the optimizer's whole state as the GPU holds them, the iterate
    /// average, the scale and step, and a fingerprint of the inputs and options. See --resume.
    #[arg(long, value_name = "PATH")]
    checkpoint: Option<PathBuf>,

    /// Continue exactly from a checkpoint (--checkpoint): give the same inputs and options;
    /// --iterations stays the total, and the result is the one an uninterrupted run writes. A
    /// checkpoint from other inputs or options, or a damaged one, is refused. Keeps writing the
    /// checkpoint to PATH unless --checkpoint says elsewhere.
    #[arg(long, value_name = "PATH")]
    resume: Option<PathBuf>,

    /// Give the --style before it a region of the result (guided Gram matrices, Gatys et al.
    /// 2017): a grayscale image, white where that style applies, black where it does not, grey
    /// in between (colour files are read as luminance 0.299 R + 0.587 G + 0.114 B); resized to the
    /// content's size. Either every --style has a --mask or none does; not with
    /// --style-blend-weights. One mask with one style stylizes only that region.
    #[arg(long, value_name = "PATH")]
    mask: Vec<PathBuf>,

    /// Serve a live preview of the run at http://ADDR/ (default 127.0.0.1:8787; a bare PORT
    /// means 127.0.0.1:PORT, port 0 a free one): the latest image (read back at most once a
    /// second), steps/s, ETA, losses and their curve; also /image.png and /losses.csv. Only
    /// loopback addresses unless --serve-public. The server ends with the run, after a watching
    /// page got the final image (at most 3 s more).
    #[arg(long, value_name = "ADDR", num_args = 0..=1, default_missing_value = stylize::serve::DEFAULT_ADDR)]
    serve: Option<String>,

    /// Allow --serve on an address other machines can reach (e.g. 0.0.0.0:8787): anyone who can
    /// reach it sees the images; there is no authentication.
    #[arg(long, requires = "serve")]
    serve_public: bool,

    /// Write a PNG plot of the loss curves (log scale, one line per term) at the end and at every
    /// --save-every; the losses are read back about 200 times a scale (every step with --loss-log).
    #[arg(long, value_name = "PATH")]
    loss_plot: Option<PathBuf>,
    /// Arithmetic of the convolutions and Gram products: `f32`; `mixed` (operands rounded to f16,
    /// sums in f32: on matrix units where the adapter has cooperative matrices, else emulated,
    /// slower, with a warning); `auto`: mixed where matrix units exist, else f32.
    #[arg(long, value_enum, default_value_t = defaults().precision.into())]
    precision: PrecisionArg,

    /// How the network goes over the image: `auto` runs untiled when the whole step fits the
    /// adapter's buffer binding limit and --memory-budget, else in the largest tiles that fit;
    /// `off` never tiles; a side in pixels (a multiple of 16) forces tiles of it. A tiled step
    /// computes the same losses and gradient as an untiled one (each tile runs with a halo, 160 px
    /// for the default layers, and owns only its own pixels), at the cost of the halos (`stylize
    /// plan` shows it). Every other option works with tiles. Tiled, the whole image's arrays
    /// (image, gradient, optimizer state) are kept in bands of rows that each fit one binding, so
    /// the size is bounded by memory alone.
    #[arg(long, value_name = "auto|off|PX", default_value = "auto", value_parser = tile_choice)]
    tile: stylize::net::tiling::TileChoice,

    /// GPU memory, GiB, that --tile auto plans for (the network's buffers and the image-sized
    /// state). Default: 4 (wgpu reports no adapter memory).
    #[arg(long, value_name = "GIB", value_parser = positive_f64)]
    memory_budget: Option<f64>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// List GPU adapters with their backend, type and key limits.
    Devices {
        #[arg(long, value_enum)]
        backend: Option<BackendArg>,
    },
    /// Time full optimization steps of the default method (random weights unless given) and
    /// report ms per step, effective GFLOP/s, GPU memory and, with --profile, every kernel's time.
    Bench {
        /// Image side in pixels (the image is N x N).
        #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u32).range(16..=16384))]
        size: u32,
        /// Timed steps (after the warm-up).
        #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
        iterations: u64,
        /// Untimed steps first (pipeline creation, caches).
        #[arg(long, default_value_t = 2)]
        warmup: usize,
        /// `random[:SEED]` (He-initialized VGG-19) or a weights file.
        #[arg(long, default_value = "random")]
        weights: String,
        /// Print every kernel's GPU time from timestamp queries.
        #[arg(long)]
        profile: bool,
        /// Make the last line one JSON object (ms_per_step, gflops, peak_gpu_bytes, adapter, size, ...).
        #[arg(long)]
        json: bool,
        #[arg(long, value_enum)]
        backend: Option<BackendArg>,
        #[arg(long, value_name = "NAME")]
        adapter: Option<String>,
        /// f32, mixed or auto, as for a run (see `stylize --help`).
        #[arg(long, value_enum, default_value_t = defaults().precision.into())]
        precision: PrecisionArg,
        /// auto, off or a tile side in pixels, as for a run (see `stylize --help`): tiled and
        /// untiled steps side by side give the tiling's cost.
        #[arg(long, value_name = "auto|off|PX", default_value = "auto", value_parser = tile_choice)]
        tile: stylize::net::tiling::TileChoice,
        /// GPU memory, GiB, that --tile auto plans for (default 4).
        #[arg(long, value_name = "GIB", value_parser = positive_f64)]
        memory_budget: Option<f64>,
    },
    /// Move only the colours of --style onto --content, no network: each pixel x becomes
    /// A (x - mean_c) + mean_s with A = Cov_s^1/2 Cov_c^-1/2 (RGB mean and covariance of each image,
    /// symmetric square roots), clamped to [0, 1]. 16-bit PNG/TIFF content gives 16-bit output
    /// where the output format allows.
    Recolor {
        /// The image whose colours change.
        #[arg(long, value_name = "PATH")]
        content: PathBuf,
        /// The image whose colour statistics it takes.
        #[arg(long, value_name = "PATH")]
        style: PathBuf,
        /// Where to write the result; the format follows the extension.
        #[arg(long, short, value_name = "PATH")]
        output: PathBuf,
    },
    /// Manage VGG-19 weight files.
    Weights {
        #[command(subcommand)]
        action: WeightsAction,
    },
    /// Print, without touching a device, the tiled schedule of one step of the default method
    /// (VGG-19's widths, the default layers) on an N x N image: GPU bytes, the largest binding,
    /// the tile side (or untiled), tiles, halo, FLOPs per step and the tiling overhead: the
    /// schedule a run's --tile auto picks for the same budget and binding limit.
    Plan {
        /// Image side in pixels (the image is N x N), up to the 16384 a run allows.
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(16..=16384))]
        size: u32,
        /// Tile side in pixels, a multiple of 16. Default: untiled when everything fits, else
        /// the largest tile that fits the budget and the binding limit.
        #[arg(long, value_name = "T", value_parser = tile_side)]
        tile: Option<usize>,
        /// GPU memory to fit in, GiB (the network's buffers and the image-sized state).
        #[arg(long, value_name = "GIB", default_value_t = stylize::net::tiling::DEFAULT_MEMORY_BUDGET as f64 / stylize::net::tiling::GIB as f64, value_parser = positive_f64)]
        memory_budget: f64,
        /// Bytes one buffer binding may hold (the default is wgpu's cap on Vulkan, DX12 and Metal).
        #[arg(long, value_name = "BYTES", default_value_t = stylize::net::tiling::DEFAULT_BINDING_LIMIT, value_parser = clap::value_parser!(u64).range(1..))]
        binding_limit: u64,
        /// Print one JSON object instead.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand, Debug)]
enum WeightsAction {
    /// Download torchvision's VGG-19 weights into the cache (or $STYLIZE_WEIGHTS) and verify
    /// their size and SHA-256; does nothing if they are already there.
    Fetch,
}

/// A command-line twin of a library enum, converted both ways (so that clap's defaults can be
/// read from `Options::default()`).
macro_rules! cli_enum {
    ($cli:ident => $lib:path { $($variant:ident),+ }) => {
        #[derive(Clone, Copy, Debug, ValueEnum)]
        enum $cli {
            $($variant),+
        }

        impl From<$cli> for $lib {
            fn from(v: $cli) -> Self {
                match v {
                    $($cli::$variant => <$lib>::$variant),+
                }
            }
        }

        impl From<$lib> for $cli {
            fn from(v: $lib) -> Self {
                match v {
                    $(<$lib>::$variant => $cli::$variant),+
                }
            }
        }
    };
}

cli_enum!(PrecisionArg => stylize::Precision { F32, Mixed, Auto });
cli_enum!(OptimizerArg => stylize::Optimizer { Adam, Lbfgs });
cli_enum!(PreserveColorsArg => stylize::PreserveColors { None, Luminance, Histogram });
cli_enum!(PoolingArg => stylize::Pooling { Max, Avg });
cli_enum!(BackendArg => stylize::Backend { Vulkan, Metal, Dx12, Gl });

/// The method's defaults, as the library writes them once.
fn defaults() -> Options {
    Options::default()
}

/// `--help`'s description, with the method's defaults as the library has them.
fn long_about() -> String {
    let d = defaults();
    let weights: Vec<String> = d.style_layer_weights.iter().map(f64::to_string).collect();
    format!(
        "Neural style transfer (Gatys, Ecker & Bethge, CVPR 2016) on any Vulkan, Metal or DX12 GPU.\n\n\
The defaults reproduce the original method: VGG-19 features with content at {} and style at \
{}..{} (weights {}), content weight {}, style weight {:e}, Adam with \
learning rate {} for {} steps, starting from the content image, longer side {} px.\n\n\
Example:\n  stylize --content photo.jpg --style painting.jpg --output out.png",
        d.content_layers.join(","),
        d.style_layers.first().map_or("", String::as_str),
        d.style_layers.last().map_or("", String::as_str),
        weights.join(", "),
        d.content_weight,
        d.style_weight,
        d.learning_rate,
        d.iterations,
        d.size,
    )
}

/// The list-valued defaults as their flags take them, comma-separated.
struct DefaultLists {
    content_layers: String,
    style_layers: String,
    style_layer_weights: String,
}

static DEFAULT_LISTS: std::sync::LazyLock<DefaultLists> = std::sync::LazyLock::new(|| {
    let d = defaults();
    let weights: Vec<String> = d.style_layer_weights.iter().map(f64::to_string).collect();
    DefaultLists {
        content_layers: d.content_layers.join(","),
        style_layers: d.style_layers.join(","),
        style_layer_weights: weights.join(","),
    }
});

/// `--init`'s default, the library's.
fn default_init() -> &'static str {
    match defaults().init {
        stylize::Init::Random => "random",
        _ => "content",
    }
}

/// Parses a number and checks it with one of the library's rules (`stylize::transfer::rules`).
fn number(s: &str, rule: fn(f64) -> Result<f64, String>) -> Result<f64, String> {
    s.parse::<f64>().map_err(|_| format!("{s:?} is not a number")).and_then(rule)
}

fn positive_f64(s: &str) -> Result<f64, String> {
    number(s, stylize::transfer::rules::positive)
}

fn decay(s: &str) -> Result<f64, String> {
    number(s, stylize::transfer::rules::decay)
}

fn non_negative_f64(s: &str) -> Result<f64, String> {
    number(s, stylize::transfer::rules::non_negative)
}

fn main() {
    let matches = <Cli as clap::CommandFactory>::command().get_matches();
    let cli = <Cli as clap::FromArgMatches>::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    if let Some(problem) = misplaced_mask(&matches) {
        eprintln!("stylize: error: {problem}");
        std::process::exit(2);
    }
    if let Err(err) = run(cli) {
        eprintln!("stylize: error: {}", describe(&err));
        std::process::exit(1);
    }
}

/// The error's one line; an invalid option is named by its flag.
fn describe(err: &anyhow::Error) -> String {
    let invalid = match err.downcast_ref::<stylize::Error>() {
        Some(stylize::Error::Options(invalid)) => Some(invalid),
        _ => err.downcast_ref::<stylize::InvalidOption>(),
    };
    match invalid {
        Some(invalid) => format!("invalid option: {}", invalid.render(flag)),
        None => format!("{err:#}"),
    }
}

/// The flag (or input) that sets `Options` field (or `Job` input) `name`.
fn flag(name: &str) -> String {
    match name {
        "masks" => "--mask".into(),
        "styles" => "--style".into(),
        "checkpoint_every" => "--save-every".into(),
        _ => format!("--{}", name.replace('_', "-")),
    }
}

/// Each --mask must follow the --style it belongs to (the i-th mask after the i-th style and
/// before the next one), so that the command line reads as style/mask pairs.
fn misplaced_mask(matches: &clap::ArgMatches) -> Option<String> {
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

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Some(Command::Recolor { content, style, output }) => recolor(&content, &style, &output),
        Some(Command::Devices { backend }) => devices(backend),
        Some(Command::Weights { action: WeightsAction::Fetch }) => fetch_weights(),
        Some(Command::Bench {
            size,
            iterations,
            warmup,
            weights,
            profile,
            json,
            backend,
            adapter,
            precision,
            tile,
            memory_budget,
        }) => {
            let options = Options {
                backend: backend.map(Into::into),
                adapter,
                precision: precision.into(),
                tile,
                memory_budget,
                ..Options::default()
            };
            bench(
                stylize::bench::BenchOptions {
                    size,
                    iterations: iterations as usize,
                    warmup,
                    weights,
                    profile,
                    options,
                },
                json,
            )
        }
        Some(Command::Plan { size, tile, memory_budget, binding_limit, json }) => {
            plan(size as usize, tile, memory_budget, binding_limit, json)
        }
        None => transfer(cli),
    }
}

fn devices(backend: Option<BackendArg>) -> Result<()> {
    let options = Options { backend: backend.map(Into::into), ..Options::default() }.context_options();
    let adapters = stylize::gpu::list_adapters(&options);
    if adapters.is_empty() {
        bail!("no GPU adapter found (is a Vulkan, Metal or DX12 driver installed?)");
    }
    for a in adapters {
        println!(
            "{} ({}, {}, driver {})",
            a.name,
            a.backend,
            a.device_type,
            if a.driver.is_empty() { "?" } else { &a.driver }
        );
        println!(
            "    max storage binding {} MiB, max buffer {} MiB, workgroup storage {} KiB, {} workgroups per dimension, timestamps {}",
            a.max_storage_buffer_binding_size >> 20,
            a.max_buffer_size >> 20,
            a.max_compute_workgroup_storage_size >> 10,
            a.max_compute_workgroups_per_dimension,
            if a.timestamp_queries { "yes" } else { "no" }
        );
        let listed = if a.matrix_configs.is_empty() { "none".to_string() } else { a.matrix_configs.join(", ") };
        println!("    cooperative matrices listed: {listed}");
        println!("    matrix units: {}", a.matrix_use());
        println!("    --precision auto runs {}", a.auto_precision().reason);
    }
    Ok(())
}

fn bench(options: stylize::bench::BenchOptions, json: bool) -> Result<()> {
    let report = stylize::bench::run(&options)?;
    println!("adapter      {} ({}, {})", report.adapter, report.backend, report.device_type);
    println!("precision    {}", report.precision);
    if report.arithmetic == stylize::gpu::Arithmetic::MixedEmulated.name()
        && let Some(warning) = stylize::gpu::PrecisionChoice::emulated().warning()
    {
        eprintln!("stylize: warning: {warning}");
    }
    println!("size         {0}x{0}, {1} timed steps after {2} warm-up", report.size, report.iterations, options.warmup);
    if let Some(schedule) = &report.schedule {
        println!("tiled        {schedule}");
    }
    println!(
        "ms/step      {:.2} ({:.2} ms of it in the host's step call: uniforms, recording, submit)",
        report.ms_per_step, report.cpu_ms_per_step
    );
    println!("GFLOP/s      {:.2} (effective: {:.3} GFLOP per step)", report.gflops, report.flops_per_step as f64 / 1e9);
    println!("GPU memory   {:.1} MiB in our buffers", report.peak_gpu_bytes as f64 / (1u64 << 20) as f64);
    if report.profile.is_some() {
        let total: f64 = report.profile.iter().flatten().map(|t| t.milliseconds).sum();
        println!("kernel times (one step, timestamp queries, {total:.2} ms in all):");
        for (label, ms, count) in report.profile_by_kernel() {
            println!("  {label:<28} {ms:>10.3} ms  {:>5.1} %  ({count} dispatches)", 100.0 * ms / total.max(1e-12));
        }
        println!("convolutions and Gram products, in step order:");
        for t in report.profile.iter().flatten().filter(|t| t.flops > 0) {
            println!(
                "  {:<22} {:<28} {:>10.3} ms  {:>9.1} GFLOP/s",
                t.label,
                t.detail,
                t.milliseconds,
                t.flops as f64 / (t.milliseconds * 1e6).max(1e-12)
            );
        }
    }
    if json {
        println!("{}", report.to_json());
    }
    Ok(())
}

/// `stylize recolor`: the colour-only transfer, 16-bit out for 16-bit content where the format allows.
fn recolor(content_path: &Path, style_path: &Path, output: &Path) -> Result<()> {
    image_io::check_output_path(output, 8)?;
    let content = image_io::load_image(content_path)?;
    let style = image_io::load_image(style_path)?;
    let wide = image_io::source_bit_depth(content_path)? == 16;
    let format = image_io::OutputFormat::from_path(output).map_err(|p| anyhow::anyhow!("{}: {p}", output.display()))?;
    let depth = if wide && format.supports_16_bit() { 16 } else { 8 };
    let result = image_io::color::recolor(&content, &style);
    image_io::save_image(output, &result, depth)?;
    eprintln!("stylize: wrote {} ({}x{}, {depth}-bit)", output.display(), result.width, result.height);
    Ok(())
}

fn fetch_weights() -> Result<()> {
    let entry = stylize::weights::default_entry();
    let dest = stylize::weights::default_weights_path(&entry)?;
    let mut bar = DownloadBar::default();
    let path = stylize::weights::ensure_weights(&entry, &dest, &mut |e| bar.event(&e))?;
    bar.finish();
    println!("{}", path.display());
    Ok(())
}

/// The run's options as the command line gives them.
fn options(cli: &Cli) -> Options {
    Options {
        size: cli.size,
        iterations: cli.iterations,
        learning_rate: cli.learning_rate,
        content_weight: cli.content_weight,
        style_weight: cli.style_weight,
        content_layers: cli.content_layers.clone(),
        style_layers: cli.style_layers.clone(),
        style_layer_weights: cli.style_layer_weights.clone(),
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
        normalize_gradients: cli.normalize_gradients,
        pooling: cli.pooling.into(),
        style_blend_weights: cli.style_blend_weights.clone(),
        style_scale: cli.style_scale,
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
fn outputs(cli: &Cli) -> stylize::Outputs {
    stylize::Outputs {
        output: Some(cli.output.clone()),
        depth: cli.output_depth,
        side_by_side: cli.side_by_side.clone(),
        loss_log: cli.loss_log.clone(),
        save_every: cli.save_every.map(|n| n as usize),
        loss_plot: cli.loss_plot.clone(),
        serve: cli.serve.clone(),
        serve_public: cli.serve_public,
    }
}

fn transfer(cli: Cli) -> Result<()> {
    let options = options(&cli);
    let content = cli.content.clone().expect("required");
    let mut progress = CliProgress::new(&cli, &options);
    let job = stylize::Job::new(&content, &cli.style, options.clone(), outputs(&cli), &mut progress)?;
    let finished = job.run(&mut progress);
    progress.finish();
    let finished = finished?;
    let (steps, resumed_steps) = (finished.steps, finished.resumed_steps);
    if let Some(code) = progress.interrupt.as_ref().and_then(Interrupt::exit_code) {
        let total_steps = options.iterations * options.scales.max(1);
        let resume = match &options.checkpoint {
            Some(path) => format!("continue exactly with the same options and --resume {}", path.display()),
            None => format!("resume with --init {}", cli.output.display()),
        };
        eprintln!(
            "stylize: interrupted after {steps} of {total_steps} steps; wrote the image so far to {} ({resume})",
            cli.output.display()
        );
        std::process::exit(code);
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
    Ok(())
}

/// SIGINT and SIGTERM: the first asks the run to stop after the current step (the image so far is
/// saved); a second one exits at once.
#[derive(Clone)]
struct Interrupt {
    stop: Arc<AtomicBool>,
    sigint: Arc<AtomicBool>,
    sigterm: Arc<AtomicBool>,
}

impl Interrupt {
    fn install() -> Result<Self> {
        use signal_hook::consts::{SIGINT, SIGTERM};
        let interrupt = Self { stop: Arc::default(), sigint: Arc::default(), sigterm: Arc::default() };
        for (signal, seen, code) in [(SIGINT, &interrupt.sigint, 130), (SIGTERM, &interrupt.sigterm, 143)] {
            // Registered first, so it sees the flag as the earlier signal left it.
            signal_hook::flag::register_conditional_shutdown(signal, code, interrupt.stop.clone())?;
            signal_hook::flag::register(signal, interrupt.stop.clone())?;
            signal_hook::flag::register(signal, seen.clone())?;
        }
        Ok(interrupt)
    }

    fn requested(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    /// 130 after SIGINT, 143 after SIGTERM, as shells report them.
    fn exit_code(&self) -> Option<i32> {
        if self.sigint.load(Ordering::SeqCst) {
            Some(130)
        } else if self.sigterm.load(Ordering::SeqCst) {
            Some(143)
        } else {
            None
        }
    }
}

/// Progress bar, periodic loss lines, the download bar, the CPU notice and the signals.
struct CliProgress {
    /// Installed once the GPU is open (a Ctrl-C before that ends the process at once).
    interrupt: Option<Interrupt>,
    bar: ProgressBar,
    interactive: bool,
    print_every: usize,
    iterations: usize,
    tv: bool,
    options: Options,
    download: DownloadBar,
    adapter: String,
    scale: usize,
    /// When the GPU was opened (the run's time in the final line counts from there).
    started: Option<Instant>,
    last_losses: Option<Losses>,
    /// On a CPU adapter: the one line saying so, with the expected time of the run.
    cpu: Option<CpuNotice>,
}

impl CliProgress {
    fn new(cli: &Cli, options: &Options) -> Self {
        let interactive = std::io::stderr().is_terminal();
        let bar = if interactive {
            let bar = ProgressBar::with_draw_target(Some(cli.iterations as u64), ProgressDrawTarget::stderr());
            bar.set_style(
                ProgressStyle::with_template("{bar:30} {pos}/{len} steps  {per_sec}  ETA {eta}  {msg}")
                    .expect("valid template"),
            );
            bar
        } else {
            ProgressBar::hidden()
        };
        Self {
            interrupt: None,
            bar,
            interactive,
            print_every: match cli.print_every {
                Some(n) => n,
                None if interactive => 50,
                None => 0,
            },
            iterations: cli.iterations,
            tv: cli.tv_weight > 0.0,
            options: options.clone(),
            download: DownloadBar::default(),
            adapter: String::new(),
            scale: 0,
            started: None,
            last_losses: None,
            cpu: None,
        }
    }

    fn finish(&mut self) {
        self.bar.finish_and_clear();
    }

    /// A line above the bar, or plainly when there is none.
    fn say(&self, line: &str) {
        if self.interactive { self.bar.println(line) } else { eprintln!("{line}") }
    }
}

impl Observer for CliProgress {
    fn should_stop(&mut self) -> bool {
        self.interrupt.as_ref().is_some_and(Interrupt::requested)
    }

    fn on_preview(&mut self, url: &str) {
        eprintln!("stylize: live preview at {url}");
    }

    fn on_fetch(&mut self, event: &FetchEvent) {
        self.download.event(event);
    }

    fn on_gpu(&mut self, gpu: &stylize::GpuInfo) -> Result<(), TransferError> {
        self.download.finish();
        let interrupt = Interrupt::install().map_err(|e| TransferError::Observer(format!("signals: {e}")))?;
        self.interrupt = Some(interrupt);
        if let Some(warning) = &gpu.precision_warning {
            eprintln!("stylize: warning: {warning}");
        }
        self.adapter = gpu.adapter.clone();
        self.cpu = gpu.is_cpu.then(|| CpuNotice::new(&gpu.adapter, &self.options));
        self.started = Some(Instant::now());
        Ok(())
    }

    fn on_warning(&mut self, message: &str) {
        eprintln!("stylize: warning: {message}");
    }

    fn on_scale(&mut self, index: usize, count: usize, width: u32, height: u32) {
        self.scale = index;
        let line = if count > 1 {
            format!("stylize: scale {}/{count}: {width}x{height} on {}", index + 1, self.adapter)
        } else {
            format!("stylize: {width}x{height} on {}", self.adapter)
        };
        if self.interactive {
            self.bar.reset();
            self.bar.println(line);
        } else if count > 1 {
            eprintln!("{line}");
        }
    }

    fn on_schedule(&mut self, schedule: &str) {
        let line = format!("stylize: {schedule}");
        if self.interactive { self.bar.println(line) } else { eprintln!("{line}") }
    }

    fn wants_losses(&mut self, step: usize) -> bool {
        step + 1 == self.iterations || (self.print_every > 0 && step.is_multiple_of(self.print_every))
    }

    fn on_step(&mut self, step: usize, losses: Option<&Losses>, _image: Option<&Image>) -> Result<(), TransferError> {
        self.bar.set_position(step as u64 + 1);
        if let Some(line) = self.cpu.as_mut().and_then(|c| c.on_step(self.scale, step)) {
            self.say(&line);
        }
        if let Some(l) = losses {
            if self.print_every > 0 && step.is_multiple_of(self.print_every) {
                let tv = if self.tv { format!("  tv {:.4e}", l.tv) } else { String::new() };
                let line = format!(
                    "step {step:>5}  content {:.4e}  style {:.4e}{tv}  total {:.4e}",
                    l.content, l.style, l.total
                );
                if self.interactive {
                    self.bar.set_message(line);
                } else {
                    eprintln!("{line}");
                }
            }
            self.last_losses = Some(l.clone());
        }
        Ok(())
    }
}

/// A progress bar for weight downloads: size, bytes, rate and ETA (the bar itself only on a
/// terminal; the lines about starts, retries, resumes and waits always).
#[derive(Default)]
struct DownloadBar {
    bar: Option<ProgressBar>,
}

impl DownloadBar {
    fn event(&mut self, event: &FetchEvent) {
        match event {
            FetchEvent::Started { url, total } => {
                let size = total.map(|t| format!(" ({})", indicatif::HumanBytes(t))).unwrap_or_default();
                eprintln!("stylize: downloading {url}{size}");
                let bar = ProgressBar::with_draw_target(*total, ProgressDrawTarget::stderr());
                bar.set_style(
                    ProgressStyle::with_template("{bar:30} {bytes}/{total_bytes}  {bytes_per_sec}  ETA {eta}")
                        .expect("valid template"),
                );
                self.bar = Some(bar);
            }
            FetchEvent::Progress { done, .. } => {
                if let Some(bar) = &self.bar {
                    bar.set_position(*done);
                }
            }
            FetchEvent::Resumed { from, total } => {
                let of = total.map(|t| format!(" of {}", indicatif::HumanBytes(t))).unwrap_or_default();
                self.say(&format!("stylize: resuming the download at {}{of}", indicatif::HumanBytes(*from)));
                if let Some(bar) = &self.bar {
                    // The bytes from before the resume are not part of the rate.
                    bar.set_position(*from);
                    bar.reset_eta();
                }
            }
            FetchEvent::Retrying { attempt, attempts, delay, reason } => {
                let secs = delay.as_secs_f64();
                self.say(&format!("stylize: download: {reason}; try {attempt} of {attempts} in {secs:.0} s"));
            }
            FetchEvent::Restarted { reason } => self.say(&format!("stylize: download starts over: {reason}")),
            FetchEvent::Waiting { lock, holder } => {
                let who = holder.map(|p| format!(" (pid {p})")).unwrap_or_default();
                eprintln!(
                    "stylize: another process{who} is downloading the weights (lock {}); waiting for it",
                    lock.display()
                );
            }
            FetchEvent::LockStalled { lock, holder } => {
                let who = holder.map(|p| format!(" (pid {p})")).unwrap_or_default();
                eprintln!(
                    "stylize: the other download{who} has made no progress for a while (lock {}); downloading here",
                    lock.display()
                );
            }
            FetchEvent::Reused { path } => {
                eprintln!("stylize: using the weights downloaded meanwhile at {}", path.display())
            }
            FetchEvent::Verifying => {}
            FetchEvent::Done { path } => {
                self.finish();
                eprintln!("stylize: weights verified and saved to {}", path.display());
            }
        }
    }

    /// One line above the bar (or plainly when there is none).
    fn say(&self, line: &str) {
        match &self.bar {
            Some(bar) => bar.suspend(|| eprintln!("{line}")),
            None => eprintln!("{line}"),
        }
    }

    fn finish(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}

/// Says once, on a CPU adapter (lavapipe, llvmpipe, WARP, SwiftShader), that the run is on the
/// CPU and slow, with the expected time of the whole run from the speed of the first steps.
struct CpuNotice {
    adapter: String,
    created: Instant,
    /// When the first step ended (it includes pipeline creation, so it is not timed).
    first_step_end: Option<Instant>,
    iterations: usize,
    /// The run's work in first-scale steps: Σ over scales of (side / first side)² × iterations.
    work_in_steps: f64,
    said: bool,
}

impl CpuNotice {
    /// Steps timed before the estimate, unless they take longer than `ESTIMATE_AFTER` in all.
    const TIMED_STEPS: usize = 3;
    const ESTIMATE_AFTER: std::time::Duration = std::time::Duration::from_secs(2);

    fn new(adapter: &str, options: &Options) -> Self {
        let sides = stylize::scale_sizes(options.size, options.scales.max(1), options.min_size);
        let first = f64::from(sides[0].max(1));
        let work = sides.iter().map(|&s| (f64::from(s) / first).powi(2)).sum::<f64>() * options.iterations as f64;
        CpuNotice {
            adapter: adapter.to_string(),
            created: Instant::now(),
            first_step_end: None,
            iterations: options.iterations,
            work_in_steps: work,
            said: false,
        }
    }

    /// The line to print after `step` of the first scale, once.
    fn on_step(&mut self, scale: usize, step: usize) -> Option<String> {
        if self.said || scale > 0 {
            return None;
        }
        let now = Instant::now();
        let per_step = match self.first_step_end {
            None if self.iterations > 1 => {
                self.first_step_end = Some(now);
                return None;
            }
            // A single step: its time, warm-up included, is all there is.
            None => now.duration_since(self.created).as_secs_f64(),
            Some(first) => {
                let timed = now.duration_since(first);
                if step < Self::TIMED_STEPS && timed < Self::ESTIMATE_AFTER && step + 1 < self.iterations {
                    return None;
                }
                timed.as_secs_f64() / step as f64
            }
        };
        self.said = true;
        let done = now.duration_since(self.created).as_secs_f64();
        let expected = done + per_step * (self.work_in_steps - (step + 1) as f64).max(0.0);
        Some(format!(
            "stylize: running on the CPU ({}, no GPU in use), which is slow: {per_step:.2} s per step, \
             about {} for the whole run",
            self.adapter,
            human_duration(expected)
        ))
    }
}

/// `42 s`, `3 min 20 s`, `2 h 05 min`.
fn human_duration(seconds: f64) -> String {
    let s = seconds.round().max(0.0) as u64;
    match s {
        0..60 => format!("{s} s"),
        60..3600 => format!("{} min {:02} s", s / 60, s % 60),
        _ => format!("{} h {:02} min", s / 3600, (s % 3600) / 60),
    }
}

/// `--tile`: a positive multiple of the tile grid.
fn tile_choice(text: &str) -> Result<stylize::net::tiling::TileChoice, String> {
    stylize::net::tiling::TileChoice::parse(text)
}

fn tile_side(s: &str) -> Result<usize, String> {
    let grid = stylize::net::tiling::TILE_GRID;
    match s.parse::<usize>() {
        Ok(t) if t > 0 && t.is_multiple_of(grid) => Ok(t),
        _ => Err(format!("a tile side is a positive multiple of {grid} pixels, not {s}")),
    }
}

/// `stylize plan`: the schedule's figures, no device.
fn plan(size: usize, tile: Option<usize>, memory_gib: f64, binding_limit: u64, json: bool) -> Result<()> {
    use stylize::net::tiling;
    let budget = tiling::Budget { memory: (memory_gib * tiling::GIB as f64) as u64, binding_limit };
    let report = tiling::report(&tiling::vgg19_plan(size, size)?, tile, budget)?;
    if json {
        println!("{}", report.to_json());
        return Ok(());
    }
    let gib = |b: u64| b as f64 / tiling::GIB as f64;
    println!("image            {}x{}", report.width, report.height);
    match report.tile {
        None => println!("tile             untiled"),
        Some(t) => println!("tile             {t} px ({} tiles, halo {} px)", report.tiles, report.halo),
    }
    println!("gpu_bytes        {} ({:.2} GiB, the network's buffers)", report.gpu_bytes, gib(report.gpu_bytes));
    println!(
        "image state      {} ({:.2} GiB in {} band(s) per array)",
        report.state_bytes,
        gib(report.state_bytes),
        report.state_bands
    );
    println!(
        "total            {:.2} GiB of a {:.2} GiB budget: {}",
        gib(report.total_bytes()),
        gib(budget.memory),
        if report.fits { "fits" } else { "does NOT fit" }
    );
    println!(
        "largest_binding  {} ({:.2} GiB, {}) of {:.2} GiB allowed",
        report.largest_binding,
        gib(report.largest_binding),
        report.largest_binding_what,
        gib(binding_limit)
    );
    println!(
        "FLOPs per step   {:.1} GFLOP ({:.2}x the untiled {:.1} GFLOP)",
        report.flops_per_step as f64 / 1e9,
        report.overhead(),
        report.untiled_flops_per_step as f64 / 1e9
    );
    Ok(())
}
