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
    reduce::block_sum(ctx, step, shape.len(), partial, losses, slot, scale as f32)
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

/// crowsonkb/style-transfer-pytorch's nine-point form (`kernels/tv_stencil.wgsl` defines it):
/// `weight * 2 * (d1 / 3 + d2 / 3 + d3 / 12 + d4 / 12)`, means of the squared horizontal,
/// vertical, diagonal and anti-diagonal differences of the image with its edges replicated, each
/// channel's terms times `factors[c]` (`(1 / a_c)^2` for a normalized image whose loss is on RGB).
pub mod nine_point {
    use bytemuck::{Pod, Zeroable};

    use super::{ActShape, reduce};
    use crate::gpu::{Context, GpuError, Kernel, ShaderSource, Step};

    /// The compiled `kernels/tv_stencil.wgsl`.
    pub const SHADER: ShaderSource =
        ShaderSource { name: "tv_stencil", source: include_str!("../../kernels/tv_stencil.wgsl") };

    #[repr(C)]
    #[derive(Clone, Copy, Pod, Zeroable)]
    struct Params {
        groups: u32,
        channels: u32,
        height: u32,
        width: u32,
        dst_offset: u32,
        flags: u32,
        w12: f32,
        w34: f32,
        k: [f32; 4],
    }

    /// The weights of the two families (d1, d2 and d3, d4): `weight`, the 2, the 1/3 or 1/12 and
    /// the means' counts folded together.
    fn family_weights(shape: ActShape, weight: f64) -> (f64, f64) {
        let (c, h, w) = (shape.channels as f64, shape.height as f64, shape.width as f64);
        (weight * 2.0 / (3.0 * c * h * w), weight * 2.0 / (12.0 * c * (h + 1.0) * (w + 1.0)))
    }

    fn params(
        shape: ActShape,
        dst_offset: usize,
        flags: u32,
        weight: f64,
        factors: &[f64],
    ) -> Result<Params, GpuError> {
        if factors.len() != shape.channels || shape.channels > 4 {
            return Err(GpuError::Device(format!(
                "the nine-point TV takes one factor per channel (at most 4), not {} for {}",
                factors.len(),
                shape.channels
            )));
        }
        let (w12, w34) = family_weights(shape, weight);
        let mut k = [0.0; 4];
        k.iter_mut().zip(factors).for_each(|(k, &f)| *k = f as f32);
        let u = |v: usize| v as u32;
        Ok(Params {
            groups: 0,
            channels: u(shape.channels),
            height: u(shape.height),
            width: u(shape.width),
            dst_offset: u(dst_offset),
            flags,
            w12: w12 as f32,
            w34: w34 as f32,
            k,
        })
    }

    /// Appends the kernels that write `losses[slot]` = the nine-point TV of `image`.
    #[allow(clippy::too_many_arguments)]
    pub fn forward(
        ctx: &Context,
        step: &mut Step,
        shape: ActShape,
        image: &wgpu::Buffer,
        losses: &wgpu::Buffer,
        slot: usize,
        weight: f64,
        factors: &[f64],
    ) -> Result<(), GpuError> {
        let grid = shape.channels * (shape.height + 1) * (shape.width + 1);
        let blocks = reduce::blocks(grid);
        // The weight and factors ride in the first pass's own uniforms: the sum adds no scale.
        let partial = |dst: &wgpu::Buffer, offset: usize, _scale: f32| -> Result<Kernel, GpuError> {
            let p = params(shape, offset, 0, weight, factors)?;
            Kernel::new(ctx, SHADER, "tv_stencil_partial", bytemuck::bytes_of(&p), &[image, dst], blocks as u32)
        };
        reduce::block_sum(ctx, step, grid, partial, losses, slot, 1.0)
    }

    /// grad (=, or += when `accumulate`) the gradient of `forward`'s loss with respect to the image.
    pub fn backward(
        ctx: &Context,
        shape: ActShape,
        image: &wgpu::Buffer,
        grad: &wgpu::Buffer,
        weight: f64,
        factors: &[f64],
        accumulate: bool,
    ) -> Result<Kernel, GpuError> {
        let flags = if accumulate { super::FLAG_ACCUMULATE } else { 0 };
        let p = params(shape, 0, flags, weight, factors)?;
        let groups = (shape.len() as u32).div_ceil(256);
        Kernel::new(ctx, SHADER, "tv_stencil_backward", bytemuck::bytes_of(&p), &[image, grad], groups)
    }

    /// f64 references, written from the PyTorch code: the image padded by replication, the four
    /// shifted differences and their means.
    pub mod reference {
        use super::ActShape;

        /// The padded image: `(H + 2) x (W + 2)` per channel, edges replicated.
        fn padded(shape: ActShape, image: &[f64]) -> Vec<f64> {
            let (h, w) = (shape.height, shape.width);
            let mut out = Vec::with_capacity(shape.channels * (h + 2) * (w + 2));
            for c in 0..shape.channels {
                for i in 0..h + 2 {
                    for j in 0..w + 2 {
                        let (y, x) = (i.saturating_sub(1).min(h - 1), j.saturating_sub(1).min(w - 1));
                        out.push(image[(c * h + y) * w + x]);
                    }
                }
            }
            out
        }

        /// One difference of the PyTorch code: its divisor (3 or 12) and its terms.
        type Family = (usize, Vec<(usize, usize, usize)>);

        /// The four differences of the PyTorch code, each term (a, b, channel):
        /// `(pad[a] - pad[b])^2`, as index pairs into the padded image, over its grid.
        fn terms(shape: ActShape) -> Vec<Family> {
            let (h, w) = (shape.height, shape.width);
            let pw = w + 2;
            let at = |c: usize, i: usize, j: usize| (c * (h + 2) + i) * pw + j;
            let mut families = vec![(3, Vec::new()), (3, Vec::new()), (12, Vec::new()), (12, Vec::new())];
            for c in 0..shape.channels {
                // d1: input[..., 1:-1, 2:] - input[..., 1:-1, 1:-1]; d2: [2:, 1:-1] - [1:-1, 1:-1]
                for i in 0..h {
                    for j in 0..w {
                        families[0].1.push((at(c, i + 1, j + 2), at(c, i + 1, j + 1), c));
                        families[1].1.push((at(c, i + 2, j + 1), at(c, i + 1, j + 1), c));
                    }
                }
                // d3: input[..., 1:, 1:] - input[..., :-1, :-1]; d4: [1:, :-1] - [:-1, 1:]
                for i in 0..h + 1 {
                    for j in 0..w + 1 {
                        families[2].1.push((at(c, i + 1, j + 1), at(c, i, j), c));
                        families[3].1.push((at(c, i + 1, j), at(c, i, j + 1), c));
                    }
                }
            }
            families
        }

        /// The loss: `weight * 2 * sum_f mean_f(k_c d^2) / divisor_f`.
        pub fn forward(shape: ActShape, image: &[f64], weight: f64, factors: &[f64]) -> f64 {
            let pad = padded(shape, image);
            let mut total = 0.0;
            for (divisor, terms) in terms(shape) {
                let sum: f64 = terms.iter().map(|&(a, b, c)| factors[c] * (pad[a] - pad[b]).powi(2)).sum();
                total += sum / terms.len() as f64 / divisor as f64;
            }
            weight * 2.0 * total
        }

        /// d/d image of `forward`: each term's gradient scattered to the padded image, the padding's
        /// folded back onto the edge pixels it replicates.
        pub fn backward(shape: ActShape, image: &[f64], weight: f64, factors: &[f64]) -> Vec<f64> {
            let (h, w) = (shape.height, shape.width);
            let pad = padded(shape, image);
            let mut grad_pad = vec![0.0; pad.len()];
            for (divisor, terms) in terms(shape) {
                let scale = weight * 2.0 / terms.len() as f64 / divisor as f64;
                for &(a, b, c) in &terms {
                    let g = scale * factors[c] * 2.0 * (pad[a] - pad[b]);
                    grad_pad[a] += g;
                    grad_pad[b] -= g;
                }
            }
            let mut grad = vec![0.0; shape.len()];
            for c in 0..shape.channels {
                for i in 0..h + 2 {
                    for j in 0..w + 2 {
                        let (y, x) = (i.saturating_sub(1).min(h - 1), j.saturating_sub(1).min(w - 1));
                        grad[(c * h + y) * w + x] += grad_pad[(c * (h + 2) + i) * (w + 2) + j];
                    }
                }
            }
            grad
        }
    }
}
