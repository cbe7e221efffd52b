//! Image pre/post-processing: a CHW RGB image in [0, 1] becomes the network's input
//! (`Preprocess`: torchvision's ImageNet mean and std, or Caffe's BGR x 255 minus the mean pixel),
//! and the inverse clamped to [0, 1] for saving. f64 references beside.

use bytemuck::{Pod, Zeroable};

use crate::gpu::{Context, GpuError, Kernel, ShaderSource};

pub const SHADER: ShaderSource = ShaderSource { name: "image", source: include_str!("../../kernels/image.wgsl") };

/// torchvision's ImageNet statistics.
pub const IMAGENET_MEAN: [f64; 3] = [0.485, 0.456, 0.406];
pub const IMAGENET_STD: [f64; 3] = [0.229, 0.224, 0.225];
/// The Caffe VGG's mean pixel, in its channel order (B, G, R), on the 0-255 scale.
pub const CAFFE_MEAN_BGR: [f64; 3] = [103.939, 116.779, 123.68];

/// How an RGB image in [0, 1] becomes a network's input: input channel `c` is
/// `(rgb[source[c]] * scale - mean[c]) / std[c]`. The optimizer works on the input, so its step
/// sizes (and the total variation) are in this space.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Preprocess {
    /// The RGB channel each input channel reads: `[0, 1, 2]` keeps RGB, `[2, 1, 0]` is BGR.
    pub source: [usize; 3],
    /// Multiplies the [0, 1] values first (255 for Caffe).
    pub scale: f64,
    /// Subtracted per input channel, after the scale.
    pub mean: [f64; 3],
    /// Divides per input channel, last.
    pub std: [f64; 3],
}

impl Preprocess {
    /// torchvision's models: RGB in [0, 1], ImageNet's mean and std.
    pub const TORCHVISION: Preprocess =
        Preprocess { source: [0, 1, 2], scale: 1.0, mean: IMAGENET_MEAN, std: IMAGENET_STD };
    /// The Caffe VGG (as neural-style feeds it): BGR x 255 minus the mean pixel, no std.
    pub const CAFFE: Preprocess = Preprocess { source: [2, 1, 0], scale: 255.0, mean: CAFFE_MEAN_BGR, std: [1.0; 3] };

    /// The network input (CHW, f64) of an RGB image in [0, 1].
    pub fn input_of(&self, rgb: &[f64]) -> Vec<f64> {
        let plane = rgb.len() / 3;
        (0..rgb.len())
            .map(|i| {
                let (c, p) = (i / plane, i % plane);
                (rgb[self.source[c] * plane + p] * self.scale - self.mean[c]) / self.std[c]
            })
            .collect()
    }

    /// The RGB image (CHW, f64) of a network input, unclamped: the exact inverse.
    pub fn to_rgb(&self, input: &[f64]) -> Vec<f64> {
        let plane = input.len() / 3;
        let mut rgb = vec![0.0; input.len()];
        for (i, &x) in input.iter().enumerate() {
            let (c, p) = (i / plane, i % plane);
            rgb[self.source[c] * plane + p] = (x * self.std[c] + self.mean[c]) / self.scale;
        }
        rgb
    }
}

impl Default for Preprocess {
    fn default() -> Self {
        Preprocess::TORCHVISION
    }
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct Params {
    groups: u32,
    len: u32,
    plane: u32,
    scale: f32,
    mean: [f32; 4],
    std: [f32; 4],
    source: [u32; 4],
}

fn kernel(
    ctx: &Context,
    entry: &str,
    preprocess: &Preprocess,
    plane: usize,
    src: &wgpu::Buffer,
    dst: &wgpu::Buffer,
) -> Result<Kernel, GpuError> {
    let widen = |v: [f64; 3]| [v[0] as f32, v[1] as f32, v[2] as f32, 1.0];
    let s = preprocess.source.map(|c| c as u32);
    let params = Params {
        groups: 0,
        len: (3 * plane) as u32,
        plane: plane as u32,
        scale: preprocess.scale as f32,
        mean: widen(preprocess.mean),
        std: widen(preprocess.std),
        source: [s[0], s[1], s[2], 0],
    };
    Kernel::new(ctx, SHADER, entry, bytemuck::bytes_of(&params), &[src, dst], ((3 * plane) as u32).div_ceil(256))
}

/// dst[c] = (src[source[c]] * scale - mean[c]) / std[c], for a 3 x `plane` RGB image.
pub fn normalize(
    ctx: &Context,
    preprocess: &Preprocess,
    plane: usize,
    src: &wgpu::Buffer,
    dst: &wgpu::Buffer,
) -> Result<Kernel, GpuError> {
    kernel(ctx, "normalize", preprocess, plane, src, dst)
}

/// dst[source[c]] = clamp((src[c] * std[c] + mean[c]) / scale, 0, 1): the RGB image of an input.
pub fn denormalize_clamp(
    ctx: &Context,
    preprocess: &Preprocess,
    plane: usize,
    src: &wgpu::Buffer,
    dst: &wgpu::Buffer,
) -> Result<Kernel, GpuError> {
    kernel(ctx, "denormalize_clamp", preprocess, plane, src, dst)
}

/// The RGB image of an input clamped to [0, 1], on the host in f64: for a CHW image the host
/// holds (e.g. a bias-corrected average of the iterates).
pub fn denormalize_clamp_host(preprocess: &Preprocess, input: &[f64]) -> Vec<f64> {
    preprocess.to_rgb(input).into_iter().map(|v| v.clamp(0.0, 1.0)).collect()
}

pub mod reference {
    use super::Preprocess;

    /// The input of an RGB image, written from the formula channel by channel.
    pub fn normalize(preprocess: &Preprocess, rgb: &[f64]) -> Vec<f64> {
        let plane = rgb.len() / 3;
        (0..rgb.len())
            .map(|i| {
                let (c, p) = (i / plane, i % plane);
                (rgb[preprocess.source[c] * plane + p] * preprocess.scale - preprocess.mean[c]) / preprocess.std[c]
            })
            .collect()
    }

    /// The host computation is already f64 and independent of the GPU kernel it checks.
    pub use super::denormalize_clamp_host as denormalize_clamp;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// neural-style's preprocessing written out for one pixel: `Normalize(mean=[103.939, 116.779,
    /// 123.68], std=[1, 1, 1])` of `(x * 255)[[2, 1, 0]]`; and torchvision's.
    #[test]
    fn caffe_and_torchvision_inputs_of_one_pixel() {
        let rgb = [0.25, 0.5, 0.75];
        let caffe = reference::normalize(&Preprocess::CAFFE, &rgb);
        let expected = [0.75 * 255.0 - 103.939, 0.5 * 255.0 - 116.779, 0.25 * 255.0 - 123.68];
        assert!(caffe.iter().zip(expected).all(|(a, b)| (a - b).abs() < 1e-12), "{caffe:?}");
        let torch = reference::normalize(&Preprocess::TORCHVISION, &rgb);
        let expected = [(0.25 - 0.485) / 0.229, (0.5 - 0.456) / 0.224, (0.75 - 0.406) / 0.225];
        assert!(torch.iter().zip(expected).all(|(a, b)| (a - b).abs() < 1e-12), "{torch:?}");
    }

    #[test]
    fn to_rgb_inverts_normalize() {
        let rgb: Vec<f64> = (0..3 * 5).map(|i| (i as f64 * 0.37).fract()).collect();
        for p in [Preprocess::TORCHVISION, Preprocess::CAFFE] {
            let back = p.to_rgb(&reference::normalize(&p, &rgb));
            assert!(back.iter().zip(&rgb).all(|(a, b)| (a - b).abs() < 1e-12), "{p:?}");
        }
    }
}
