//! The losses of the method, both squared differences with a scale:
//! content = mean((F - P)^2), style term = w * mean((G - A)^2) / (C H W); and their masked form,
//! scale * sum(M (F - P)^2), video's temporal term (M the flow's reliability).
//! Forward into a slot of a small loss buffer, backward as scale * (lhs - rhs); f64 references beside.

use bytemuck::{Pod, Zeroable};

use super::reduce;
use crate::gpu::{Context, GpuError, Kernel, ShaderSource, Step};

pub const SHADER: ShaderSource = ShaderSource { name: "loss", source: include_str!("../../kernels/loss.wgsl") };

const FLAG_ACCUMULATE: u32 = 4;
/// Each value weighed by the mask bound after `rhs`.
const FLAG_MASKED: u32 = 8;

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct Params {
    groups: u32,
    len: u32,
    dst_offset: u32,
    flags: u32,
    scale: f32,
    _pad: [u32; 3],
}

/// Scale that turns sum((G - A)^2) into the style term w * mean((G - A)^2) / (C H W) for a Gram of C x C.
pub fn style_scale(layer_weight: f64, channels: usize, height: usize, width: usize) -> f64 {
    let c = channels as f64;
    layer_weight / (c * c) / (c * height as f64 * width as f64)
}

/// Appends the kernels that write `losses[slot] = scale * sum((lhs - rhs)^2)` over `len` values.
/// With scale = 1/len this is the content loss; with `style_scale` a style term.
// Each argument is a buffer the kernels bind or a value of their uniforms, as in every launcher.
#[allow(clippy::too_many_arguments)]
pub fn sq_diff_forward(
    ctx: &Context,
    step: &mut Step,
    len: usize,
    lhs: &wgpu::Buffer,
    rhs: &wgpu::Buffer,
    losses: &wgpu::Buffer,
    slot: usize,
    scale: f64,
) -> Result<(), GpuError> {
    forward(ctx, step, Operands { len, lhs, rhs, mask: None }, losses, slot, scale)
}

/// As `sq_diff_forward`, each squared difference weighed by `mask`'s value:
/// `losses[slot] = scale * sum(mask (lhs - rhs)^2)`.
#[allow(clippy::too_many_arguments)]
pub fn masked_sq_diff_forward(
    ctx: &Context,
    step: &mut Step,
    len: usize,
    lhs: &wgpu::Buffer,
    rhs: &wgpu::Buffer,
    mask: &wgpu::Buffer,
    losses: &wgpu::Buffer,
    slot: usize,
    scale: f64,
) -> Result<(), GpuError> {
    forward(ctx, step, Operands { len, lhs, rhs, mask: Some(mask) }, losses, slot, scale)
}

/// What a squared difference reads: `len` values of `lhs` and `rhs`, weighed by `mask` if any.
#[derive(Clone, Copy)]
struct Operands<'a> {
    len: usize,
    lhs: &'a wgpu::Buffer,
    rhs: &'a wgpu::Buffer,
    mask: Option<&'a wgpu::Buffer>,
}

impl Operands<'_> {
    fn flags(&self) -> u32 {
        if self.mask.is_some() { FLAG_MASKED } else { 0 }
    }

    /// The bindings after `dst`: rhs, then the mask (rhs again when unmasked: the module
    /// declares the binding for both forms).
    fn bindings<'b>(&'b self, dst: &'b wgpu::Buffer) -> [&'b wgpu::Buffer; 4] {
        [self.lhs, dst, self.rhs, self.mask.unwrap_or(self.rhs)]
    }
}

fn forward(
    ctx: &Context,
    step: &mut Step,
    operands: Operands<'_>,
    losses: &wgpu::Buffer,
    slot: usize,
    scale: f64,
) -> Result<(), GpuError> {
    let partial = |dst: &wgpu::Buffer, offset: usize, scale: f32| partial_kernel(ctx, operands, dst, offset, scale);
    reduce::block_sum(ctx, step, operands.len, partial, losses, slot, scale as f32)
}

fn partial_kernel(
    ctx: &Context,
    operands: Operands<'_>,
    dst: &wgpu::Buffer,
    dst_offset: usize,
    scale: f32,
) -> Result<Kernel, GpuError> {
    let len = operands.len;
    let params = Params {
        groups: 0,
        len: len as u32,
        dst_offset: dst_offset as u32,
        flags: operands.flags(),
        scale,
        _pad: [0; 3],
    };
    Kernel::new(
        ctx,
        SHADER,
        "sq_diff_partial",
        bytemuck::bytes_of(&params),
        &operands.bindings(dst),
        reduce::blocks(len) as u32,
    )
}

/// grad (=, or += when `accumulate`) 2 * scale * (lhs - rhs): the gradient of
/// scale * sum((lhs - rhs)^2) with respect to lhs.
pub fn sq_diff_backward(
    ctx: &Context,
    len: usize,
    lhs: &wgpu::Buffer,
    rhs: &wgpu::Buffer,
    grad: &wgpu::Buffer,
    scale: f64,
    accumulate: bool,
) -> Result<Kernel, GpuError> {
    backward(ctx, Operands { len, lhs, rhs, mask: None }, grad, scale, accumulate)
}

/// grad (=, or +=) 2 * scale * mask * (lhs - rhs): the gradient of `masked_sq_diff_forward`'s
/// term with respect to lhs.
#[allow(clippy::too_many_arguments)]
pub fn masked_sq_diff_backward(
    ctx: &Context,
    len: usize,
    lhs: &wgpu::Buffer,
    rhs: &wgpu::Buffer,
    mask: &wgpu::Buffer,
    grad: &wgpu::Buffer,
    scale: f64,
    accumulate: bool,
) -> Result<Kernel, GpuError> {
    backward(ctx, Operands { len, lhs, rhs, mask: Some(mask) }, grad, scale, accumulate)
}

fn backward(
    ctx: &Context,
    operands: Operands<'_>,
    grad: &wgpu::Buffer,
    scale: f64,
    accumulate: bool,
) -> Result<Kernel, GpuError> {
    let len = operands.len;
    let params = Params {
        groups: 0,
        len: len as u32,
        dst_offset: 0,
        flags: operands.flags() | if accumulate { FLAG_ACCUMULATE } else { 0 },
        scale: (2.0 * scale) as f32,
        _pad: [0; 3],
    };
    Kernel::new(
        ctx,
        SHADER,
        "sq_diff_backward",
        bytemuck::bytes_of(&params),
        &operands.bindings(grad),
        (len as u32).div_ceil(256),
    )
}

pub mod reference {
    /// scale * sum((lhs - rhs)^2)
    pub fn sq_diff(lhs: &[f64], rhs: &[f64], scale: f64) -> f64 {
        scale * lhs.iter().zip(rhs).map(|(a, b)| (a - b) * (a - b)).sum::<f64>()
    }

    /// d/d lhs of `sq_diff`.
    pub fn sq_diff_backward(lhs: &[f64], rhs: &[f64], scale: f64) -> Vec<f64> {
        lhs.iter().zip(rhs).map(|(a, b)| 2.0 * scale * (a - b)).collect()
    }

    /// scale * sum(mask (lhs - rhs)^2)
    pub fn masked_sq_diff(lhs: &[f64], rhs: &[f64], mask: &[f64], scale: f64) -> f64 {
        scale * lhs.iter().zip(rhs).zip(mask).map(|((a, b), m)| m * (a - b) * (a - b)).sum::<f64>()
    }

    /// d/d lhs of `masked_sq_diff`.
    pub fn masked_sq_diff_backward(lhs: &[f64], rhs: &[f64], mask: &[f64], scale: f64) -> Vec<f64> {
        lhs.iter().zip(rhs).zip(mask).map(|((a, b), m)| 2.0 * scale * m * (a - b)).collect()
    }
}
