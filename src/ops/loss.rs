//! The losses of the method, both squared differences with a scale:
//! content = mean((F - P)^2), style term = w * mean((G - A)^2) / (C H W).
//! Forward into a slot of a small loss buffer, backward as scale * (lhs - rhs); f64 references beside.

use bytemuck::{Pod, Zeroable};

use super::reduce;
use crate::gpu::{Context, GpuError, Kernel, ShaderSource, Step};

pub const SHADER: ShaderSource = ShaderSource { name: "loss", source: include_str!("../../kernels/loss.wgsl") };

const FLAG_ACCUMULATE: u32 = 4;

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
    let blocks = reduce::blocks(len);
    if blocks == 1 {
        step.push(partial_kernel(ctx, len, lhs, rhs, losses, slot, scale as f32)?);
        return Ok(());
    }
    let partials = ctx.buffer("loss block sums", blocks)?;
    step.push(partial_kernel(ctx, len, lhs, rhs, &partials, 0, 1.0)?);
    let partials = step.keep(partials).clone();
    reduce::sum_into(ctx, step, blocks, &partials, losses, slot, scale as f32)
}

fn partial_kernel(
    ctx: &Context,
    len: usize,
    lhs: &wgpu::Buffer,
    rhs: &wgpu::Buffer,
    dst: &wgpu::Buffer,
    dst_offset: usize,
    scale: f32,
) -> Result<Kernel, GpuError> {
    let params = Params { groups: 0, len: len as u32, dst_offset: dst_offset as u32, flags: 0, scale, _pad: [0; 3] };
    Kernel::new(
        ctx,
        SHADER,
        "sq_diff_partial",
        bytemuck::bytes_of(&params),
        &[lhs, dst, rhs],
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
    let params = Params {
        groups: 0,
        len: len as u32,
        dst_offset: 0,
        flags: if accumulate { FLAG_ACCUMULATE } else { 0 },
        scale: (2.0 * scale) as f32,
        _pad: [0; 3],
    };
    Kernel::new(
        ctx,
        SHADER,
        "sq_diff_backward",
        bytemuck::bytes_of(&params),
        &[lhs, grad, rhs],
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
}
