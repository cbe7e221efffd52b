//! The peers' recipes in one value (`--preset`): each preset sets every option of the recipe
//! (`RECIPE_FIELDS`) to that tool's default; an option the caller gives explicitly wins
//! (`Preset::apply`). `Preset::options` is the library's way to the same options.

use super::options::{Init, Optimizer, Options};
use crate::net::vgg::Model;
use crate::net::{GramNorm, Pooling, StyleLoss};

/// A tool's default recipe.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Preset {
    /// The original method (Gatys, Ecker & Bethge 2016), as the defaults reproduce it.
    Gatys,
    /// jcjohnson/neural-style's defaults (also ProGamerGov/neural-style-pt's).
    Jcjohnson,
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
    init,
    optimizer,
    learning_rate,
    lbfgs_history,
    content_layers,
    content_weight,
    style_layers,
    style_layer_weights,
    style_weight,
    style_loss,
    gram_norm,
    tv_weight,
    pooling,
    normalize_gradients,
    style_scale,
    average_decay,
    scales,
);

impl Preset {
    pub const ALL: [Preset; 2] = [Preset::Gatys, Preset::Jcjohnson];

    /// The name `--preset` takes.
    pub fn name(self) -> &'static str {
        match self {
            Preset::Gatys => "gatys",
            Preset::Jcjohnson => "jcjohnson",
        }
    }

    /// The tool whose look it gives.
    pub fn reproduces(self) -> &'static str {
        match self {
            Preset::Gatys => "the original method (Gatys, Ecker & Bethge, CVPR 2016): today's defaults",
            Preset::Jcjohnson => "jcjohnson/neural-style (Lua) and ProGamerGov/neural-style-pt with their defaults",
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
        }
    }

    /// Sets every recipe field of `options` to this preset's value, except those for which
    /// `explicit(field)` is true (given by the caller: they win). Returns the fields it set.
    pub fn apply(self, options: &mut Options, explicit: &dyn Fn(&str) -> bool) -> Vec<&'static str> {
        let recipe = self.options();
        RECIPE_FIELDS
            .iter()
            .filter(|field| !explicit(field.name))
            .map(|field| {
                (field.copy)(options, &recipe);
                field.name
            })
            .collect()
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
        assert!("neural".parse::<Preset>().unwrap_err().contains("gatys, jcjohnson"));
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
