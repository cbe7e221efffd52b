//! Total-variation regularizer in the squared form of jcjohnson/neural-style's `TVLoss`, on a CHW
//! image: forward into a loss slot, backward (written or accumulated), f64 references beside.
//!
//! The exact definition, with `x` the image and both differences on the same `(H-1) x (W-1)` grid:
//!
//! ```text
//! TV(x) = scale * sum_c sum_{y < H-1} sum_{x < W-1} [(x[c,y,x+1] - x[c,y,x])^2 + (x[c,y+1,x] - x[c,y,x])^2]
//! ```
//!
//! neural-style only defines the gradient, `tv_weight * (x_diff + y_diff terms)` over that grid
//! (its `updateGradInput` slices `{1,-2}` in both axes), which is the gradient of
//! `tv_weight / 2 * sum(...)`: so its `-tv_weight w` corresponds to `scale = w / 2` here.
//! An image with one row or one column has no term and a TV of 0.
//!
//! On a window of the image (a tile and its halo) `forward_owned` counts the terms anchored in
//! the tile's owned rectangle, so that the tiles' sums are the whole image's, and `backward` is
//! exact at every pixel whose neighbours are in the window: the owned ones, since the window
//! holds a halo on every side that is not the image's edge.

use bytemuck::{Pod, Zeroable};

use super::region::Rect;
use super::{ActShape, reduce};
use crate::gpu::{Context, GpuError, Kernel, ShaderSource, Step};

/// The compiled `kernels/tv.wgsl`.
pub const SHADER: ShaderSource = ShaderSource { name: "tv", source: include_str!("../../kernels/tv.wgsl") };

const FLAG_ACCUMULATE: u32 = 4;

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct Params {
    groups: u32,
    channels: u32,
    height: u32,
    width: u32,
    dst_offset: u32,
    flags: u32,
    scale: f32,
    _pad: u32,
    own_y: u32,
    own_x: u32,
    own_height: u32,
    own_width: u32,
}

fn params(shape: ActShape, owned: Rect, dst_offset: usize, flags: u32, scale: f32) -> Params {
    let u = |v: usize| v as u32;
    Params {
        groups: 0,
        channels: u(shape.channels),
        height: u(shape.height),
        width: u(shape.width),
        dst_offset: u(dst_offset),
        flags,
        scale,
        _pad: 0,
        own_y: u(owned.y),
        own_x: u(owned.x),
        own_height: u(owned.height),
        own_width: u(owned.width),
    }
}

fn everything(shape: ActShape) -> Rect {
    Rect { y: 0, x: 0, height: shape.height, width: shape.width }
}

/// Appends the kernels that write `losses[slot] = scale * TV(image)` (the module's definition).
pub fn forward(
    ctx: &Context,
    step: &mut Step,
    shape: ActShape,
    image: &wgpu::Buffer,
    losses: &wgpu::Buffer,
    slot: usize,
    scale: f64,
) -> Result<(), GpuError> {
    forward_owned(ctx, step, shape, everything(shape), image, losses, slot, scale)
}

/// As `forward`, counting only the terms anchored in `owned` (a tile's own pixels in its window).
#[allow(clippy::too_many_arguments)]
pub fn forward_owned(
    ctx: &Context,
    step: &mut Step,
    shape: ActShape,
    owned: Rect,
    image: &wgpu::Buffer,
    losses: &wgpu::Buffer,
    slot: usize,
    scale: f64,
) -> Result<(), GpuError> {
    let blocks = reduce::blocks(shape.len());
    let partial = |dst: &wgpu::Buffer, offset: usize, scale: f32| {
        let p = params(shape, owned, offset, 0, scale);
        Kernel::new(ctx, SHADER, "tv_partial", bytemuck::bytes_of(&p), &[image, dst], blocks as u32)
    };
    if blocks == 1 {
        step.push(partial(losses, slot, scale as f32)?);
        return Ok(());
    }
    let partials = ctx.buffer("tv block sums", blocks)?;
    step.push(partial(&partials, 0, 1.0)?);
    let partials = step.keep(partials).clone();
    reduce::sum_into(ctx, step, blocks, &partials, losses, slot, scale as f32)
}

/// grad (=, or += when `accumulate`) the gradient of `scale * TV(image)` with respect to the image.
pub fn backward(
    ctx: &Context,
    shape: ActShape,
    image: &wgpu::Buffer,
    grad: &wgpu::Buffer,
    scale: f64,
    accumulate: bool,
) -> Result<Kernel, GpuError> {
    let flags = if accumulate { FLAG_ACCUMULATE } else { 0 };
    let p = params(shape, everything(shape), 0, flags, (2.0 * scale) as f32);
    Kernel::new(ctx, SHADER, "tv_backward", bytemuck::bytes_of(&p), &[image, grad], (shape.len() as u32).div_ceil(256))
}

/// f64 references of the regularizer.
pub mod reference {
    use super::ActShape;

    /// `scale * TV(image)`, the module's definition.
    pub fn forward(shape: ActShape, image: &[f64], scale: f64) -> f64 {
        forward_owned(shape, image, scale, 0..shape.height, 0..shape.width)
    }

    /// `scale` times the terms anchored in rows `rows` and columns `cols` of the image: what a
    /// tile owning that rectangle adds to `forward`.
    pub fn forward_owned(
        shape: ActShape,
        image: &[f64],
        scale: f64,
        rows: std::ops::Range<usize>,
        cols: std::ops::Range<usize>,
    ) -> f64 {
        let (h, w) = (shape.height, shape.width);
        let mut sum = 0.0;
        for c in 0..shape.channels {
            for y in rows.clone().filter(|&y| y + 1 < h) {
                for x in cols.clone().filter(|&x| x + 1 < w) {
                    let i = (c * h + y) * w + x;
                    let dx = image[i + 1] - image[i];
                    let dy = image[i + w] - image[i];
                    sum += dx * dx + dy * dy;
                }
            }
        }
        scale * sum
    }

    /// d/d image of `forward`, scattered term by term.
    pub fn backward(shape: ActShape, image: &[f64], scale: f64) -> Vec<f64> {
        let (h, w) = (shape.height, shape.width);
        let mut grad = vec![0.0; shape.len()];
        for c in 0..shape.channels {
            for y in 0..h.saturating_sub(1) {
                for x in 0..w.saturating_sub(1) {
                    let i = (c * h + y) * w + x;
                    let dx = image[i + 1] - image[i];
                    let dy = image[i + w] - image[i];
                    grad[i] -= 2.0 * scale * (dx + dy);
                    grad[i + 1] += 2.0 * scale * dx;
                    grad[i + w] += 2.0 * scale * dy;
                }
            }
        }
        grad
    }
}
