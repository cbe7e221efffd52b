//! The peers' recipes in one value (`--preset`): each preset sets every option of the recipe
//! (`RECIPE_FIELDS`) to that tool's default; an option the caller gives explicitly wins
//! (`Preset::apply`). `Preset::options` is the library's way to the same options.

use super::options::{Init, Optimizer, Options, Resample, StyleFit, Variable};
use crate::net::vgg::Model;
use crate::net::{GramNorm, Padding, Pooling, StyleLoss, TvLoss};

/// A tool's default recipe.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Preset {
    /// The original method (Gatys, Ecker & Bethge 2016), as the defaults reproduce it.
    Gatys,
    /// jcjohnson/neural-style's defaults (also ProGamerGov/neural-style-pt's).
    Jcjohnson,
    /// crowsonkb/style-transfer-pytorch's `style_transfer.py` defaults.
    Crowsonkb,
}

/// crowsonkb's smallest scale (`min_scale`), the start of its sqrt(2) ladder.
pub const CROWSONKB_MIN_SCALE: u32 = 128;

/// The number of scales crowsonkb's `gen_scales(128, size)` makes: `size / sqrt(2)^i` rounded, for
/// every i that stays at or above 128 (one scale when `size` is smaller). `pipeline::scale_sizes`
/// with that count and no `min_size` gives the same sizes.
pub fn crowsonkb_scales(size: u32) -> usize {
    let start = CROWSONKB_MIN_SCALE.min(size);
    (0..).take_while(|&i| (f64::from(size) / 2f64.powf(f64::from(i) / 2.0)).round() >= f64::from(start)).count()
}

/// One option a recipe sets: its `Options` field name, how to copy it from one `Options` to
/// another, and its value as the command line writes it.
struct RecipeField {
    name: &'static str,
    copy: fn(&mut Options, &Options),
    show: fn(&Options) -> String,
}

macro_rules! recipe_fields {
    ($($field:ident),+ $(,)?) => {
        /// Every option a preset sets (each preset sets all of them), in the order `--help` lists them.
        const RECIPE_FIELDS: &[RecipeField] = &[$(RecipeField {
            name: stringify!($field),
            copy: |to, from| to.$field = from.$field.clone(),
            show: |options| options.$field.flag_value(),
        }),+];
    };
}

recipe_fields!(
    model,
    size,
    iterations,
    initial_iterations,
    init,
    optimizer,
    learning_rate,
    adam_beta2,
    optimize_in,
    lbfgs_history,
    content_layers,
    content_weight,
    style_layers,
    style_layer_weights,
    style_weight,
    style_loss,
    gram_norm,
    tv_weight,
    tv_loss,
    padding,
    pooling,
    normalize_gradients,
    style_scale,
    style_fit,
    resample,
    average_decay,
    scales,
    min_size,
    warm_start,
);

impl Preset {
    pub const ALL: [Preset; 3] = [Preset::Gatys, Preset::Jcjohnson, Preset::Crowsonkb];

    /// The name `--preset` takes.
    pub fn name(self) -> &'static str {
        match self {
            Preset::Gatys => "gatys",
            Preset::Jcjohnson => "jcjohnson",
            Preset::Crowsonkb => "crowsonkb",
        }
    }

    /// The tool whose look it gives.
    pub fn reproduces(self) -> &'static str {
        match self {
            Preset::Gatys => "the original method (Gatys, Ecker & Bethge, CVPR 2016): today's defaults",
            Preset::Jcjohnson => "jcjohnson/neural-style (Lua) and ProGamerGov/neural-style-pt with their defaults",
            Preset::Crowsonkb => {
                "crowsonkb/style-transfer-pytorch (style_transfer.py as of e7e2c71, 2023-05-21) with its defaults"
            }
        }
    }

    /// Where a run of the preset differs from that tool's, in one sentence.
    pub fn differs(self) -> &'static str {
        match self {
            Preset::Gatys => "nothing: the defaults are the method, exactly",
            Preset::Jcjohnson => {
                "the noise of -init random comes from our seeded generator, not Torch's; L-BFGS is \
                 PyTorch's LBFGS without a line search (neural-style-pt's; a port of the Lua \
                 optim.lbfgs that neural-style runs); \
                 the style image is resized to the content's size (neural-style scales its longer \
                 side to -image_size times -style_scale); neural-style's -tv_weight 1e-3 is our \
                 0.0005 (our term is W times the sum of squares, whose gradient is neural-style's \
                 at W = its weight / 2)"
            }
            Preset::Crowsonkb => {
                "its matrix square roots are exact (Newton-Schulz to convergence with a residual guard; \
                 it runs 12 iterations of sqrtm_ns_lyap); the content is never enlarged (it scales a smaller content up \
                 to --end-scale); sizes round half away from zero (Python rounds half to even); the \
                 bicubic input filter is the image crate's Catmull-Rom, not PIL's own code. Where the \
                 tool's source and its summary differ we follow the source: content loss plain MSE \
                 (ContentLossMSE since 4cba99d, not ScaledMSELoss), the nine-point TV (since \
                 4937825), max pools (its default; its x2 average pools are an option there), \
                 bicubic resampling (not Lanczos) and Adam betas (0.9, 0.99)"
            }
        }
    }

    /// The recipe's options: `Options::default()` with every recipe field set to this tool's value.
    pub fn options(self) -> Options {
        let gatys = Options::default();
        match self {
            Preset::Gatys => gatys,
            Preset::Jcjohnson => Options {
                model: Model::Vgg19Caffe,
                size: 512,
                iterations: 1000,
                // Noise of standard deviation 0.001 in Caffe's 0-255 space, as `-init random`.
                init: Init::Random,
                optimizer: Optimizer::Lbfgs,
                learning_rate: 1.0,
                lbfgs_history: 100,
                content_layers: vec!["relu4_2".into()],
                content_weight: 5.0,
                style_layers: ["relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1"].map(String::from).to_vec(),
                style_layer_weights: vec![1.0; 5],
                style_weight: 100.0,
                style_loss: StyleLoss::Gram,
                gram_norm: GramNorm::Chw,
                // neural-style's -tv_weight 1e-3: its gradient is that of 1e-3 / 2 times our sum.
                tv_weight: 5e-4,
                pooling: Pooling::Max,
                normalize_gradients: false,
                style_scale: 1.0,
                average_decay: 0.0,
                scales: 1,
                ..gatys
            },
            Preset::Crowsonkb => {
                let size = 512;
                let layer_weights = [256.0, 64.0, 16.0, 4.0, 1.0];
                let sum: f64 = layer_weights.iter().sum();
                Options {
                    model: Model::Vgg19,
                    // Its --end-scale.
                    size,
                    iterations: 500,
                    initial_iterations: Some(1000),
                    init: Init::Content,
                    optimizer: Optimizer::Adam,
                    learning_rate: 0.02,
                    adam_beta2: 0.99,
                    optimize_in: Variable::Rgb,
                    content_layers: vec!["relu4_2".into()],
                    content_weight: 0.015,
                    style_layers: ["relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1"].map(String::from).to_vec(),
                    style_layer_weights: layer_weights.iter().map(|w| w / sum).collect(),
                    style_weight: 1.0,
                    style_loss: StyleLoss::W2,
                    gram_norm: GramNorm::None,
                    tv_weight: 2.0,
                    tv_loss: TvLoss::NinePoint,
                    padding: Padding::Replicate,
                    pooling: Pooling::Max,
                    normalize_gradients: false,
                    style_scale: 1.0,
                    style_fit: StyleFit::Scale,
                    resample: Resample::Bicubic,
                    average_decay: 0.99,
                    scales: crowsonkb_scales(size),
                    min_size: None,
                    warm_start: true,
                    ..gatys
                }
            }
        }
    }

    /// Sets every recipe field of `options` to this preset's value, except those for which
    /// `explicit(field)` is true (given by the caller: they win). Returns the fields it set.
    /// crowsonkb's scale count follows the size: with an explicit `--size` and no explicit
    /// `--scales`, it is the ladder from 128 px to that size.
    pub fn apply(self, options: &mut Options, explicit: &dyn Fn(&str) -> bool) -> Vec<&'static str> {
        let recipe = self.options();
        let set: Vec<&'static str> = RECIPE_FIELDS
            .iter()
            .filter(|field| !explicit(field.name))
            .map(|field| {
                (field.copy)(options, &recipe);
                field.name
            })
            .collect();
        if self == Preset::Crowsonkb && set.contains(&"scales") {
            options.scales = crowsonkb_scales(options.size);
        }
        set
    }

    /// Every field the preset sets, with its value as the command line writes it.
    pub fn settings(self) -> Vec<(&'static str, String)> {
        let recipe = self.options();
        RECIPE_FIELDS.iter().map(|field| (field.name, (field.show)(&recipe))).collect()
    }

    /// The `Options` fields every preset sets.
    pub fn fields() -> impl Iterator<Item = &'static str> {
        RECIPE_FIELDS.iter().map(|field| field.name)
    }
}

impl std::fmt::Display for Preset {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Preset {
    type Err = String;
    fn from_str(name: &str) -> Result<Self, String> {
        Preset::ALL.into_iter().find(|p| p.name() == name).ok_or_else(|| {
            let names: Vec<&str> = Preset::ALL.iter().map(|p| p.name()).collect();
            format!("unknown preset {name:?} (there are: {})", names.join(", "))
        })
    }
}

/// A recipe value as its flag takes it.
trait FlagValue {
    fn flag_value(&self) -> String;
}

macro_rules! display_flag_value {
    ($($t:ty),+) => { $(impl FlagValue for $t { fn flag_value(&self) -> String { self.to_string() } })+ };
}
display_flag_value!(u32, usize, f64, Model);

impl FlagValue for bool {
    fn flag_value(&self) -> String {
        (if *self { "on" } else { "off" }).into()
    }
}

impl FlagValue for Vec<String> {
    fn flag_value(&self) -> String {
        self.join(",")
    }
}

impl FlagValue for Vec<f64> {
    fn flag_value(&self) -> String {
        self.iter().map(f64::to_string).collect::<Vec<_>>().join(",")
    }
}

/// An optional value: its number, or `off` when unset (shown as the flag's absence).
impl FlagValue for Option<usize> {
    fn flag_value(&self) -> String {
        self.map_or("off".into(), |n| n.to_string())
    }
}

impl FlagValue for Option<u32> {
    fn flag_value(&self) -> String {
        self.map_or("off".into(), |n| n.to_string())
    }
}

/// An enum's value as its flag takes it: clap's kebab-case of the variant's name.
macro_rules! kebab_flag_value {
    ($($t:ty),+) => { $(impl FlagValue for $t {
        fn flag_value(&self) -> String { kebab(&format!("{self:?}")) }
    })+ };
}
kebab_flag_value!(Variable, TvLoss, Padding, StyleFit, Resample);

/// `NinePoint` as `nine-point`.
fn kebab(name: &str) -> String {
    let mut out = String::new();
    for (i, ch) in name.chars().enumerate() {
        if ch.is_uppercase() && i > 0 {
            out.push('-');
        }
        out.extend(ch.to_lowercase());
    }
    out
}

impl FlagValue for Init {
    fn flag_value(&self) -> String {
        match self {
            Init::Content => "content".into(),
            Init::Random => "random".into(),
            Init::Image(path) => path.display().to_string(),
        }
    }
}

impl FlagValue for Optimizer {
    fn flag_value(&self) -> String {
        (match self {
            Optimizer::Adam => "adam",
            Optimizer::Lbfgs => "lbfgs",
        })
        .into()
    }
}

impl FlagValue for Pooling {
    fn flag_value(&self) -> String {
        (match self {
            Pooling::Max => "max",
            Pooling::Avg => "avg",
        })
        .into()
    }
}

impl FlagValue for StyleLoss {
    fn flag_value(&self) -> String {
        (match self {
            StyleLoss::Gram => "gram",
            StyleLoss::W2 => "w2",
        })
        .into()
    }
}

impl FlagValue for GramNorm {
    fn flag_value(&self) -> String {
        (match self {
            GramNorm::None => "none",
            GramNorm::Chw => "chw",
        })
        .into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gatys_is_the_default_and_every_preset_is_valid() {
        assert_eq!(Preset::Gatys.options(), Options::default());
        for preset in Preset::ALL {
            preset.options().validate().unwrap_or_else(|e| panic!("{preset}: {e}"));
            assert_eq!(preset.name().parse::<Preset>(), Ok(preset));
        }
        assert!("neural".parse::<Preset>().unwrap_err().contains("gatys, jcjohnson, crowsonkb"));
    }

    /// crowsonkb's `gen_scales(128, end)`, for its defaults and for sizes around the ladder's
    /// steps; the scale count follows an explicit --size.
    #[test]
    fn crowsonkb_scales_are_its_ladder() {
        let ladder = |size: u32| crate::pipeline::scale_sizes(size, crowsonkb_scales(size), None);
        assert_eq!(ladder(512), [128, 181, 256, 362, 512]);
        assert_eq!(ladder(400), [141, 200, 283, 400]);
        assert_eq!(ladder(181), [128, 181]);
        assert_eq!(ladder(180), [180]);
        assert_eq!(ladder(64), [64]);
        let mut options = Options { size: 400, ..Options::default() };
        let set = Preset::Crowsonkb.apply(&mut options, &|field| field == "size");
        assert!(set.contains(&"scales") && !set.contains(&"size"));
        assert_eq!((options.size, options.scales, options.initial_iterations), (400, 4, Some(1000)));
        let mut options = Options { scales: 2, ..Options::default() };
        Preset::Crowsonkb.apply(&mut options, &|field| field == "scales");
        assert_eq!(options.scales, 2, "explicit: kept");
        let shown = Preset::Crowsonkb.settings();
        assert!(shown.contains(&("tv_loss", "nine-point".into())) && shown.contains(&("optimize_in", "rgb".into())));
        assert!(shown.contains(&("warm_start", "on".into())) && shown.contains(&("initial_iterations", "1000".into())));
    }

    #[test]
    fn apply_sets_every_recipe_field_but_the_explicit_ones() {
        let mut options = Options { content_weight: 7.0, size: 64, ..Options::default() };
        let set = Preset::Jcjohnson.apply(&mut options, &|field| field == "content_weight");
        assert!(!set.contains(&"content_weight") && set.contains(&"size"));
        assert_eq!(options.content_weight, 7.0, "explicit: kept");
        let recipe = Preset::Jcjohnson.options();
        assert_eq!(Options { content_weight: recipe.content_weight, ..options.clone() }, recipe);
        // Each field of the list changes something: a preset that differs there copies it.
        let mut from_default = Options::default();
        Preset::Jcjohnson.apply(&mut from_default, &|_| false);
        assert_eq!(from_default, recipe);
        let shown = Preset::Jcjohnson.settings();
        assert!(shown.contains(&("model", "vgg19-caffe".into())) && shown.contains(&("tv_weight", "0.0005".into())));
        assert!(
            shown.contains(&("style_layer_weights", "1,1,1,1,1".into()))
                && shown.contains(&("gram_norm", "chw".into()))
        );
    }
}
