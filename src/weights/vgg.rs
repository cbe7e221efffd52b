//! A model's convolutions up to `conv5_1`, picked from a torchvision-layout state dict and
//! checked. The layer tables, conv indices and the weights type are `net::vgg`'s (pure data, no GPU).

use std::collections::HashMap;
use std::path::Path;

use super::error::{Problem, WeightsError};
use super::{Tensor, read_present_tensors, read_present_tensors_from_bytes};
pub use crate::net::vgg::{ConvLayerWeights, Model, VGG16_CONV_INDICES, VGG19_CONV_INDICES};

/// The convolutions of a model up to `conv5_1`, in order (13 for VGG-19, 11 for VGG-16).
#[derive(Clone, Debug, PartialEq)]
pub struct VggWeights {
    /// One entry per index of the model's `conv_indices`.
    pub convs: Vec<ConvLayerWeights>,
}

/// [`load_model`] for VGG-19.
pub fn load_vgg19(path: &Path) -> Result<VggWeights, WeightsError> {
    load_model(path, Model::Vgg19)
}

/// Loads `features.{i}.weight` / `.bias` for the model's convolutions and checks them: every key
/// present, weight `[o,i,3,3]`, bias `[o]`, first input width 3, each input width equal to the
/// previous output width, all values finite. Widths come from the file, so reduced-width test
/// networks load as well as the real ones. Other keys are not read, except that a file which does
/// not fit `model` is tried against the other layer tables, so that the error can name the one
/// it fits (`Problem::OtherModel`).
pub fn load_model(path: &Path, model: Model) -> Result<VggWeights, WeightsError> {
    let mut tensors = read_present_tensors(path, &all_keys())?;
    from_tensors(&mut tensors, model).map_err(|p| p.at(path))
}

/// [`load_vgg19`] on the bytes of a weights file held in memory (the error names no file).
pub fn load_vgg19_from_bytes(bytes: &[u8]) -> Result<VggWeights, Problem> {
    let mut tensors = read_present_tensors_from_bytes(bytes, &all_keys())?;
    from_tensors(&mut tensors, Model::Vgg19)
}

/// The keys of every model's convolutions (a VGG-19 file holds no tensor at VGG-16's other
/// indices, which are ReLUs and pools there, and a VGG-16 file one more: conv5_3 at 28).
fn all_keys() -> Vec<String> {
    let mut indices: Vec<usize> = Model::ALL.iter().flat_map(|m| m.conv_indices().iter().copied()).collect();
    indices.sort_unstable();
    indices.dedup();
    indices.iter().flat_map(|i| [format!("features.{i}.weight"), format!("features.{i}.bias")]).collect()
}

fn from_tensors(tensors: &mut HashMap<String, Tensor>, model: Model) -> Result<VggWeights, Problem> {
    if let Err(problem) = check_layout(tensors, model.conv_indices()) {
        let fits: Vec<Model> = Model::ALL
            .into_iter()
            .filter(|m| !m.same_layers(model) && check_layout(tensors, m.conv_indices()).is_ok())
            .collect();
        return Err(if fits.is_empty() {
            problem
        } else {
            Problem::OtherModel { model, first_mismatch: problem.to_string(), fits }
        });
    }
    Ok(VggWeights { convs: pick_convs(tensors, model.conv_indices())? })
}

/// Whether the tensors hold the convolutions at `conv_indices`, each of a shape that takes the
/// previous one's output; the first that does not, as `check_conv` words it.
fn check_layout(tensors: &HashMap<String, Tensor>, conv_indices: &[usize]) -> Result<(), Problem> {
    let mut in_channels = 3;
    for index in conv_indices {
        let key = |part: &str| format!("features.{index}.{part}");
        let shape = |k: &str| tensors.get(k).map(|t| &t.shape[..]).ok_or_else(|| Problem::MissingKey(k.to_string()));
        let (weight_key, bias_key) = (key("weight"), key("bias"));
        in_channels = match shape(&weight_key)? {
            &[o, i, 3, 3] if i == in_channels && o > 0 => o,
            found => return Err(bad_weight_shape(weight_key, found.to_vec(), in_channels)),
        };
        if shape(&bias_key)? != [in_channels] {
            let found = shape(&bias_key)?.to_vec();
            return Err(Problem::BadShape { key: bias_key, found, expected: format!("[{in_channels}]") });
        }
    }
    Ok(())
}

fn bad_weight_shape(key: String, found: Vec<usize>, in_channels: usize) -> Problem {
    Problem::BadShape { key, found, expected: format!("[out, {in_channels}, 3, 3]") }
}

fn pick_convs(tensors: &mut HashMap<String, Tensor>, conv_indices: &[usize]) -> Result<Vec<ConvLayerWeights>, Problem> {
    let mut convs = Vec::with_capacity(conv_indices.len());
    let mut in_channels = 3;
    for index in conv_indices {
        let prefix = format!("features.{index}");
        let weight = take(tensors, &format!("{prefix}.weight"))?;
        let bias = take(tensors, &format!("{prefix}.bias"))?;
        let conv = check_conv(&prefix, weight, bias, in_channels)?;
        in_channels = conv.out_channels;
        convs.push(conv);
    }
    Ok(convs)
}

fn take(tensors: &mut HashMap<String, Tensor>, key: &str) -> Result<Tensor, Problem> {
    tensors.remove(key).ok_or_else(|| Problem::MissingKey(key.to_string()))
}

fn check_conv(prefix: &str, weight: Tensor, bias: Tensor, in_channels: usize) -> Result<ConvLayerWeights, Problem> {
    let weight_key = format!("{prefix}.weight");
    let bias_key = format!("{prefix}.bias");
    let out_channels = match weight.shape.as_slice() {
        [o, i, 3, 3] if *i == in_channels && *o > 0 => *o,
        _ => return Err(bad_weight_shape(weight_key, weight.shape, in_channels)),
    };
    if bias.shape != [out_channels] {
        return Err(Problem::BadShape { key: bias_key, found: bias.shape, expected: format!("[{out_channels}]") });
    }
    check_finite(&weight.data, &weight_key)?;
    check_finite(&bias.data, &bias_key)?;
    Ok(ConvLayerWeights { out_channels, in_channels, weight: weight.data, bias: bias.data })
}

fn check_finite(values: &[f32], key: &str) -> Result<(), Problem> {
    let what = if values.iter().any(|v| v.is_nan()) {
        "NaN"
    } else if values.iter().any(|v| v.is_infinite()) {
        "an infinity"
    } else {
        return Ok(());
    };
    Err(Problem::NonFinite { key: key.to_string(), what })
}
