//! Image pre/post-processing: ImageNet normalization of a CHW RGB image in [0, 1], and the inverse
//! clamped to [0, 1] for saving. f64 references beside.

use bytemuck::{Pod, Zeroable};

use crate::gpu::{Context, GpuError, Kernel, ShaderSource};

pub const SHADER: ShaderSource = ShaderSource { name: "image", source: include_str!("../../kernels/image.wgsl") };

/// torchvision's ImageNet statistics.
pub const IMAGENET_MEAN: [f64; 3] = [0.485, 0.456, 0.406];
pub const IMAGENET_STD: [f64; 3] = [0.229, 0.224, 0.225];

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct Params {
    groups: u32,
    len: u32,
    plane: u32,
    _pad: u32,
    mean: [f32; 4],
    std: [f32; 4],
}

fn kernel(
    ctx: &Context,
    entry: &str,
    plane: usize,
    src: &wgpu::Buffer,
    dst: &wgpu::Buffer,
) -> Result<Kernel, GpuError> {
    let widen = |v: [f64; 3]| [v[0] as f32, v[1] as f32, v[2] as f32, 1.0];
    let params = Params {
        groups: 0,
        len: (3 * plane) as u32,
        plane: plane as u32,
        _pad: 0,
        mean: widen(IMAGENET_MEAN),
        std: widen(IMAGENET_STD),
    };
    Kernel::new(ctx, SHADER, entry, bytemuck::bytes_of(&params), &[src, dst], ((3 * plane) as u32).div_ceil(256))
}

/// dst = (src - mean) / std per channel, for a 3 x `plane` image.
pub fn normalize(ctx: &Context, plane: usize, src: &wgpu::Buffer, dst: &wgpu::Buffer) -> Result<Kernel, GpuError> {
    kernel(ctx, "normalize", plane, src, dst)
}

/// dst = clamp(src * std + mean, 0, 1) per channel.
pub fn denormalize_clamp(
    ctx: &Context,
    plane: usize,
    src: &wgpu::Buffer,
    dst: &wgpu::Buffer,
) -> Result<Kernel, GpuError> {
    kernel(ctx, "denormalize_clamp", plane, src, dst)
}

/// clamp(x * std + mean, 0, 1) per channel on the host, in f64: for a CHW image the host holds
/// (e.g. a bias-corrected average of the iterates).
pub fn denormalize_clamp_host(image: &[f64]) -> Vec<f64> {
    let plane = image.len() / 3;
    image
        .iter()
        .enumerate()
        .map(|(i, &x)| (x * IMAGENET_STD[i / plane] + IMAGENET_MEAN[i / plane]).clamp(0.0, 1.0))
        .collect()
}

pub mod reference {
    use super::{IMAGENET_MEAN, IMAGENET_STD};

    pub fn normalize(image: &[f64]) -> Vec<f64> {
        let plane = image.len() / 3;
        image.iter().enumerate().map(|(i, &x)| (x - IMAGENET_MEAN[i / plane]) / IMAGENET_STD[i / plane]).collect()
    }

    /// The host computation is already f64 and independent of the GPU kernel it checks.
    pub use super::denormalize_clamp_host as denormalize_clamp;
}
