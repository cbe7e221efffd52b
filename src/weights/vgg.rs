//! VGG-19's convolutions up to `conv5_1`, picked from a torchvision state dict and checked. The
//! layer table's conv indices and the weights type are `net::vgg`'s (pure data, no GPU).

use std::path::Path;

use super::error::{Problem, WeightsError};
use super::{Tensor, read_tensors, read_tensors_from_bytes};
pub use crate::net::vgg::{ConvLayerWeights, VGG19_CONV_INDICES};

/// The 13 convolutions of VGG-19 up to `conv5_1`, in order.
#[derive(Clone, Debug, PartialEq)]
pub struct VggWeights {
    /// One entry per index of [`VGG19_CONV_INDICES`].
    pub convs: Vec<ConvLayerWeights>,
}

/// Loads `features.{i}.weight` / `.bias` for the 13 convolutions and checks them: every key
/// present, weight `[o,i,3,3]`, bias `[o]`, first input width 3, each input width equal to the
/// previous output width, all values finite. Widths come from the file, so reduced-width test
/// networks load as well as torchvision's. Other keys are not read.
pub fn load_vgg19(path: &Path) -> Result<VggWeights, WeightsError> {
    let mut tensors = read_tensors(path, &vgg19_keys())?;
    vgg19_from_tensors(&mut tensors).map_err(|p| p.at(path))
}

/// [`load_vgg19`] on the bytes of a weights file held in memory (the error names no file).
pub fn load_vgg19_from_bytes(bytes: &[u8]) -> Result<VggWeights, Problem> {
    let mut tensors = read_tensors_from_bytes(bytes, &vgg19_keys())?;
    vgg19_from_tensors(&mut tensors)
}

fn vgg19_keys() -> Vec<String> {
    VGG19_CONV_INDICES.iter().flat_map(|i| [format!("features.{i}.weight"), format!("features.{i}.bias")]).collect()
}

fn vgg19_from_tensors(tensors: &mut std::collections::HashMap<String, Tensor>) -> Result<VggWeights, Problem> {
    let mut convs = Vec::with_capacity(VGG19_CONV_INDICES.len());
    let mut in_channels = 3;
    for index in VGG19_CONV_INDICES {
        let prefix = format!("features.{index}");
        let weight = take(tensors, &format!("{prefix}.weight"))?;
        let bias = take(tensors, &format!("{prefix}.bias"))?;
        let conv = check_conv(&prefix, weight, bias, in_channels)?;
        in_channels = conv.out_channels;
        convs.push(conv);
    }
    Ok(VggWeights { convs })
}

fn take(tensors: &mut std::collections::HashMap<String, Tensor>, key: &str) -> Result<Tensor, Problem> {
    tensors.remove(key).ok_or_else(|| Problem::MissingKey(key.to_string()))
}

fn check_conv(prefix: &str, weight: Tensor, bias: Tensor, in_channels: usize) -> Result<ConvLayerWeights, Problem> {
    let weight_key = format!("{prefix}.weight");
    let bias_key = format!("{prefix}.bias");
    let out_channels = match weight.shape.as_slice() {
        [o, i, 3, 3] if *i == in_channels && *o > 0 => *o,
        _ => {
            return Err(Problem::BadShape {
                key: weight_key,
                found: weight.shape,
                expected: format!("[out, {in_channels}, 3, 3]"),
            });
        }
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
