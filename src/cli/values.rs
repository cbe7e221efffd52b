//! What the subcommands' arguments share: the command-line twins of the library's enums, the value
//! parsers that apply the library's rules, and the defaults read from `Options::default()` so
//! that `--help` shows the library's numbers.

use clap::ValueEnum;
use stylize::Options;

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
cli_enum!(ModelArg => stylize::Model { Vgg19, Vgg16, Vgg19Caffe, Vgg16Caffe });
cli_enum!(GramNormArg => stylize::GramNorm { None, Chw });
cli_enum!(StyleLossArg => stylize::StyleLoss { Gram, W2 });
cli_enum!(PresetArg => stylize::Preset { Gatys, Jcjohnson, Crowsonkb });
cli_enum!(VariableArg => stylize::Variable { Input, Rgb });
cli_enum!(TvLossArg => stylize::TvLoss { Sum, NinePoint });
cli_enum!(PaddingArg => stylize::Padding { Zeros, Replicate });
cli_enum!(StyleFitArg => stylize::StyleFit { Content, Scale });
cli_enum!(ResampleArg => stylize::Resample { Lanczos, Bicubic });
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

/// The flag (or input) that sets `Options` field (or `Job` input) `name`.
pub fn flag(name: &str) -> String {
    match name {
        "masks" => "--mask".into(),
        "styles" => "--style".into(),
        "checkpoint_every" => "--save-every".into(),
        _ => format!("--{}", name.replace('_', "-")),
    }
}

/// `--preset`'s long help: each preset, the tool it reproduces, every option it sets (from the
/// library's recipes) and what still differs.
pub fn preset_help() -> String {
    let mut help = String::from(
        "Another tool's default recipe in one flag: sets every option below to that tool's value; an \
         option given explicitly overrides it (`--preset jcjohnson --size 256`). The run's first line \
         shows what the preset set.\n",
    );
    for preset in stylize::Preset::ALL {
        let settings: Vec<String> = preset.settings().iter().map(|(name, v)| flag_with_value(name, v)).collect();
        help.push_str(&format!(
            "\n{preset}: {}.\n  Sets: {}.\n  Differs: {}.\n",
            preset.reproduces(),
            settings.join(" "),
            preset.differs()
        ));
    }
    help.trim_end().to_string()
}

/// An option as it is written with its value: `--size 512`; a switch alone when on (`--normalize-gradients`)
/// and in brackets after `no` when off.
pub fn flag_with_value(name: &str, value: &str) -> String {
    match value {
        "on" => flag(name),
        "off" => format!("(no {})", flag(name)),
        _ => format!("{} {value}", flag(name)),
    }
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
