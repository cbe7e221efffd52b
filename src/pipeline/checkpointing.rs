//! The run's checkpointing: which options enter a checkpoint's fingerprint, and when one is
//! written or resumed from. Above both `transfer` (it saves a `StyleTransfer`'s state) and
//! `checkpoint` (the file format, which knows neither).

use std::path::PathBuf;

use crate::checkpoint::{Checkpoint, CheckpointError, Fingerprint};
use crate::image_io::Image;
use crate::net::ConvLayerWeights;
use crate::transfer::{Options, StyleTransfer, TransferError};

/// `Options` fields that do not enter the fingerprint as such: the total, where the weights come
/// from (their values are hashed), the GPU, the seed and the initial image (they act through the
/// hashed images and weights), and checkpointing itself.
/// The masks' paths do not enter either: their images are hashed. Nor does the tiling (`tile`,
/// and `memory_budget`, which acts only through it): a tiled step computes the untiled numbers up
/// to f32 rounding, so a run may resume under another schedule (for the same bytes as an
/// uninterrupted run, resume with the same one, as with the same GPU).
const NOT_FINGERPRINTED: [&str; 12] = [
    "iterations",
    "weights",
    "backend",
    "adapter",
    "seed",
    "init",
    "checkpoint",
    "checkpoint_every",
    "resume",
    "masks",
    "tile",
    "memory_budget",
];

/// `Options` fields that `Fingerprint::of` records under their flag names.
const NAMED: [&str; 30] = [
    "initial_iterations",
    "padding",
    "adam_beta2",
    "optimize_in",
    "tv_loss",
    "style_fit",
    "resample",
    "warm_start",
    "model",
    "size",
    "scales",
    "min_size",
    "learning_rate",
    "content_weight",
    "style_weight",
    "content_layers",
    "style_layers",
    "style_layer_weights",
    "optimizer",
    "lbfgs_history",
    "tv_weight",
    "pooling",
    "normalize_gradients",
    "gram_norm",
    "style_loss",
    "style_blend_weights",
    "style_scale",
    "preserve_colors",
    "average_decay",
    "precision",
];

/// Every other `Options` field, as `Options::name` and its value (`Debug`, on one line): a field
/// added later enters the fingerprint (strict by default) until it is named or excluded above.
fn other_fields(options: &Options) -> Vec<(String, String)> {
    all_fields(options)
        .into_iter()
        .filter(|(name, _)| !NOT_FINGERPRINTED.contains(&name.as_str()) && !NAMED.contains(&name.as_str()))
        .map(|(name, value)| (format!("Options::{name}"), value))
        .collect()
}

/// Every field of `options` and its `Debug` value on one line, read from the pretty `Debug`.
fn all_fields(options: &Options) -> Vec<(String, String)> {
    let text = format!("{options:#?}");
    let mut fields: Vec<(String, String)> = Vec::new();
    for line in text.lines().skip(1) {
        let top = line.strip_prefix("    ").filter(|l| !l.starts_with(' '));
        match (top.and_then(|l| l.split_once(": ")), fields.last_mut()) {
            (Some((name, value)), _) => fields.push((name.to_string(), value.trim().to_string())),
            (None, Some((_, value))) if line != "}" => {
                value.push(' ');
                value.push_str(line.trim());
            }
            _ => {}
        }
    }
    fields.into_iter().map(|(name, value)| (name, value.trim_end_matches(',').to_string())).collect()
}

/// The options that shape the result, by the flag that sets them, as text.
fn option_values(o: &Options) -> [(&'static str, String); 19] {
    let list = |values: &[f64]| values.iter().map(f64::to_string).collect::<Vec<_>>().join(",");
    [
        ("--size", o.size.to_string()),
        ("--scales", o.scales.to_string()),
        ("--min-size", o.min_size.map_or("none".into(), |m| m.to_string())),
        ("--learning-rate", o.learning_rate.to_string()),
        ("--content-weight", o.content_weight.to_string()),
        ("--style-weight", o.style_weight.to_string()),
        ("--content-layers", o.content_layers.join(",")),
        ("--style-layers", o.style_layers.join(",")),
        ("--style-layer-weights", list(&o.style_layer_weights)),
        ("--optimizer", format!("{:?}", o.optimizer).to_lowercase()),
        ("--lbfgs-history", o.lbfgs_history.to_string()),
        ("--tv-weight", o.tv_weight.to_string()),
        ("--pooling", format!("{:?}", o.pooling).to_lowercase()),
        ("--normalize-gradients", o.normalize_gradients.to_string()),
        ("--style-blend-weights", list(&o.style_blend_weights)),
        ("--style-scale", o.style_scale.to_string()),
        ("--preserve-colors", format!("{:?}", o.preserve_colors).to_lowercase()),
        ("--average-decay", o.average_decay.to_string()),
        ("--precision", format!("{:?}", o.precision).to_lowercase()),
    ]
}

/// The fingerprint of a run: its inputs' hashes, the options that shape the result by flag name,
/// and every other field's value.
pub fn fingerprint(
    content: &Image,
    styles: &[Image],
    masks: &[Image],
    init: &Image,
    weights: &[ConvLayerWeights],
    options: &Options,
) -> Fingerprint {
    let mut entries: Vec<(String, String)> =
        option_values(options).into_iter().map(|(k, v)| (k.to_string(), v)).collect();
    // Named only when it is not the default, so that checkpoints written before --model existed
    // (all vgg19) still resume.
    if options.model != crate::net::vgg::Model::default() {
        entries.insert(0, ("--model".to_string(), options.model.name().to_string()));
    }
    // Likewise for --gram-norm, which came later still.
    if options.gram_norm != crate::net::GramNorm::default() {
        entries.push(("--gram-norm".to_string(), format!("{:?}", options.gram_norm).to_lowercase()));
    }
    if options.style_loss != crate::net::StyleLoss::default() {
        entries.push(("--style-loss".to_string(), format!("{:?}", options.style_loss).to_lowercase()));
    }
    // The options of crowsonkb's recipe came later still: each is named only off its default.
    let d = Options::default();
    let later = [
        (
            "--initial-iterations",
            options.initial_iterations != d.initial_iterations,
            format!("{:?}", options.initial_iterations),
        ),
        ("--adam-beta2", options.adam_beta2 != d.adam_beta2, options.adam_beta2.to_string()),
        ("--optimize-in", options.optimize_in != d.optimize_in, format!("{:?}", options.optimize_in)),
        ("--tv-loss", options.tv_loss != d.tv_loss, format!("{:?}", options.tv_loss)),
        ("--padding", options.padding != d.padding, format!("{:?}", options.padding)),
        ("--style-fit", options.style_fit != d.style_fit, format!("{:?}", options.style_fit)),
        ("--resample", options.resample != d.resample, format!("{:?}", options.resample)),
        ("--warm-start", options.warm_start != d.warm_start, options.warm_start.to_string()),
    ];
    entries.extend(later.into_iter().filter(|(_, set, _)| *set).map(|(flag, _, value)| (flag.to_string(), value)));
    entries.extend(other_fields(options));
    Fingerprint::of(content, styles, masks, init, weights, entries)
}

/// Checkpointing as `run_scales` does it: the fingerprint of this run, where to write and how
/// often, and the checkpoint to resume from (already checked against this run).
pub struct Checkpointing {
    fingerprint: Fingerprint,
    path: Option<PathBuf>,
    every: Option<usize>,
    scales: usize,
}

impl Checkpointing {
    /// `None` without `options.checkpoint` and `options.resume`. Loads and checks the checkpoint
    /// to resume from: same fingerprint, scale count, and a step within `options.iterations`.
    pub fn new(
        content: &Image,
        styles: &[Image],
        masks: &[Image],
        init: &Image,
        weights: &[ConvLayerWeights],
        options: &Options,
        scales: usize,
    ) -> Result<Option<(Self, Option<Checkpoint>)>, CheckpointError> {
        if options.checkpoint.is_none() && options.resume.is_none() {
            return Ok(None);
        }
        let fingerprint = fingerprint(content, styles, masks, init, weights, options);
        let resume = match &options.resume {
            Some(path) => {
                let saved = Checkpoint::load(path)?;
                fingerprint.check(&saved.fingerprint, path)?;
                if saved.scales != scales {
                    let problem = format!("it has {} scales, this run {scales}", saved.scales);
                    return Err(CheckpointError::Corrupt { path: path.clone(), problem });
                }
                if saved.state.steps_done as usize > options.scale_iterations(saved.scale) {
                    return Err(CheckpointError::Beyond {
                        path: path.clone(),
                        step: saved.state.steps_done,
                        scale: saved.scale + 1,
                        iterations: options.scale_iterations(saved.scale),
                    });
                }
                Some(saved)
            }
            None => None,
        };
        let own = Self { fingerprint, path: options.checkpoint.clone(), every: options.checkpoint_every, scales };
        Ok(Some((own, resume)))
    }

    /// Whether a checkpoint is due after `step` (counted from 0 within the scale).
    pub fn due(&self, step: usize) -> bool {
        self.path.is_some() && self.every.is_some_and(|n| (step + 1).is_multiple_of(n))
    }

    /// Writes `transfer`'s state at `scale`, with `earlier_steps` taken in the scales before it.
    /// A state whose image or gradient was flagged non-finite (the GPU checks both every step) is
    /// not written: the previous checkpoint stays, and the run stops at its next loss check.
    pub fn save(&self, transfer: &mut StyleTransfer, scale: usize, earlier_steps: usize) -> Result<(), TransferError> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        let state = transfer.state()?;
        if state.non_finite_flag != crate::ops::check::CLEAN || !state.image.iter().all(|v| v.is_finite()) {
            return Ok(());
        }
        let checkpoint = Checkpoint {
            fingerprint: self.fingerprint.clone(),
            scale,
            scales: self.scales,
            total_steps: (earlier_steps + transfer.steps_done()) as u64,
            state,
        };
        Ok(checkpoint.save(path)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_options_field_is_named_or_excluded() {
        // A field added to `Options` shows up here: name it in `Fingerprint::of` (and `NAMED`) if
        // it changes the numbers, else add it to `NOT_FINGERPRINTED`.
        assert_eq!(other_fields(&Options::default()), Vec::<(String, String)>::new());
        let fields = all_fields(&Options::default());
        let mut names: Vec<&str> = fields.iter().map(|(n, _)| n.as_str()).collect();
        let mut known: Vec<&str> = NAMED.iter().chain(&NOT_FINGERPRINTED).copied().collect();
        names.sort();
        known.sort();
        assert_eq!(names, known);
        let layers = &fields.iter().find(|(n, _)| n == "style_layers").unwrap().1;
        assert_eq!(layers, r#"[ "relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1", ]"#);
    }
}
