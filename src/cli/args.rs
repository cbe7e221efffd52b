//! The command line's shape: the top-level flags of a run (`run::RunArgs`), the subcommands (each
//! file of `cli` holds its own arguments), the value parsers that apply the library's rules, and
//! the defaults read from `Options::default()` so that `--help` shows the library's numbers.

use clap::{Parser, Subcommand, ValueEnum};
use stylize::Options;

use super::{
    bench::BenchArgs, devices::DevicesArgs, plan::PlanArgs, recolor::RecolorArgs, run::RunArgs, weights::WeightsArgs,
};

#[derive(Parser, Debug)]
#[command(
    name = "stylize",
    version,
    about = "Neural style transfer (Gatys, Ecker & Bethge 2016) on any Vulkan, Metal or DX12 GPU",
    long_about = long_about(),
    subcommand_negates_reqs = true,
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,

    // A run's flags, used when no subcommand is given.
    #[command(flatten)]
    pub run: RunArgs,
}

/// One variant per subcommand; a new subcommand is a file of `cli` with its `Args` and its `run`,
/// one variant here and one arm in `main`'s dispatch.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// List GPU adapters with their backend, type and key limits.
    Devices(DevicesArgs),
    /// Time full optimization steps of the default method (random weights unless given) and
    /// report ms per step, effective GFLOP/s, GPU memory and, with --profile, every kernel's time.
    Bench(BenchArgs),
    /// Move only the colours of --style onto --content, no network: each pixel x becomes
    /// A (x - mean_c) + mean_s with A = Cov_s^1/2 Cov_c^-1/2 (RGB mean and covariance of each image,
    /// symmetric square roots), clamped to [0, 1]. 16-bit PNG/TIFF content gives 16-bit output
    /// where the output format allows.
    Recolor(RecolorArgs),
    /// Manage VGG-19 weight files.
    Weights(WeightsArgs),
    /// Print, without touching a device, the tiled schedule of one step of the default method
    /// (VGG-19's widths, the default layers) on an N x N image: GPU bytes, the largest binding,
    /// the tile side (or untiled), tiles, halo, FLOPs per step and the tiling overhead: the
    /// schedule a run's --tile auto picks for the same budget and binding limit.
    Plan(PlanArgs),
}

/// A command-line twin of a library enum, converted both ways (so that clap's defaults can be
/// read from `Options::default()`).
macro_rules! cli_enum {
    ($cli:ident => $lib:path { $($variant:ident),+ }) => {
        #[derive(Clone, Copy, Debug, ValueEnum)]
        pub enum $cli {
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
pub fn defaults() -> Options {
    Options::default()
}

/// `--help`'s description, with the method's defaults as the library has them.
pub fn long_about() -> String {
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
pub struct DefaultLists {
    pub content_layers: String,
    pub style_layers: String,
    pub style_layer_weights: String,
}

pub static DEFAULT_LISTS: std::sync::LazyLock<DefaultLists> = std::sync::LazyLock::new(|| {
    let d = defaults();
    let weights: Vec<String> = d.style_layer_weights.iter().map(f64::to_string).collect();
    DefaultLists {
        content_layers: d.content_layers.join(","),
        style_layers: d.style_layers.join(","),
        style_layer_weights: weights.join(","),
    }
});

/// `--init`'s default, the library's.
pub fn default_init() -> &'static str {
    match defaults().init {
        stylize::Init::Random => "random",
        _ => "content",
    }
}

/// Parses a number and checks it with one of the library's rules (`stylize::transfer::rules`).
pub fn number(s: &str, rule: fn(f64) -> Result<f64, String>) -> Result<f64, String> {
    s.parse::<f64>().map_err(|_| format!("{s:?} is not a number")).and_then(rule)
}

pub fn positive_f64(s: &str) -> Result<f64, String> {
    number(s, stylize::transfer::rules::positive)
}

pub fn decay(s: &str) -> Result<f64, String> {
    number(s, stylize::transfer::rules::decay)
}

pub fn non_negative_f64(s: &str) -> Result<f64, String> {
    number(s, stylize::transfer::rules::non_negative)
}

/// `--tile`: a positive multiple of the tile grid.
pub fn tile_choice(text: &str) -> Result<stylize::net::tiling::TileChoice, String> {
    stylize::net::tiling::TileChoice::parse(text)
}
