//! Rectangles of C x H x W tensors: `copy_rect` moves one into another tensor of other dimensions
//! at another place (a window of the image into a network's input, a tile's owned features out
//! of a window, a tile's image gradient back into the whole image's). f64 reference beside.

use bytemuck::{Pod, Zeroable};

use super::ActShape;
use crate::gpu::{Context, GpuError, Kernel, ShaderSource};

pub const SHADER: ShaderSource = ShaderSource { name: "region", source: include_str!("../../kernels/region.wgsl") };

/// A rectangle of rows `[y, y + height)` and columns `[x, x + width)`, every channel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rect {
    pub y: usize,
    pub x: usize,
    pub height: usize,
    pub width: usize,
}

impl Rect {
    fn fits(&self, dims: ActShape) -> bool {
        self.y + self.height <= dims.height && self.x + self.width <= dims.width
    }
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct Params {
    groups: u32,
    channels: u32,
    rect_h: u32,
    rect_w: u32,
    src_h: u32,
    src_w: u32,
    src_y: u32,
    src_x: u32,
    dst_h: u32,
    dst_w: u32,
    dst_y: u32,
    dst_x: u32,
    mode: u32,
    _pad: [u32; 3],
}

/// dst[c, to.y + i, to.x + j] = src[c, from.y + i, from.x + j] for the `from` rectangle (`to`
/// gives only its origin: the copy is `from`'s size). Both must lie inside their tensors, of the
/// same channels.
pub fn copy_rect(
    ctx: &Context,
    src: &wgpu::Buffer,
    src_dims: ActShape,
    from: Rect,
    dst: &wgpu::Buffer,
    dst_dims: ActShape,
    to: (usize, usize),
) -> Result<Kernel, GpuError> {
    let landing = Rect { y: to.0, x: to.1, ..from };
    if src_dims.channels != dst_dims.channels || !from.fits(src_dims) || !landing.fits(dst_dims) {
        return Err(GpuError::Device(format!(
            "copy_rect: {from:?} of {src_dims:?} does not fit {dst_dims:?} at {to:?}"
        )));
    }
    let u = |v: usize| v as u32;
    let p = Params {
        groups: 0,
        channels: u(src_dims.channels),
        rect_h: u(from.height),
        rect_w: u(from.width),
        src_h: u(src_dims.height),
        src_w: u(src_dims.width),
        src_y: u(from.y),
        src_x: u(from.x),
        dst_h: u(dst_dims.height),
        dst_w: u(dst_dims.width),
        dst_y: u(to.0),
        dst_x: u(to.1),
        mode: 0,
        _pad: [0; 3],
    };
    let len = src_dims.channels * from.height * from.width;
    Kernel::new(ctx, SHADER, "copy_rect", bytemuck::bytes_of(&p), &[src, dst], (len as u32).div_ceil(256))
}

/// How `pad` fills the border.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Border {
    Zeros,
    /// Each border value is its nearest edge value (PyTorch's `padding_mode='replicate'`).
    Replicate,
}

/// The padded shape of `dims`: `border` more on every side.
pub fn padded(dims: ActShape, border: usize) -> ActShape {
    ActShape { channels: dims.channels, height: dims.height + 2 * border, width: dims.width + 2 * border }
}

fn pad_params(dims: ActShape, border: usize, mode: u32) -> Params {
    let u = |v: usize| v as u32;
    let out = padded(dims, border);
    Params {
        groups: 0,
        channels: u(dims.channels),
        rect_h: 0,
        rect_w: 0,
        src_h: u(dims.height),
        src_w: u(dims.width),
        src_y: 0,
        src_x: 0,
        dst_h: u(out.height),
        dst_w: u(out.width),
        dst_y: u(border),
        dst_x: 0,
        mode,
        _pad: [0; 3],
    }
}

/// dst (`padded(dims, border)`) = src (`dims`) with a border of `border` filled as `fill` says.
pub fn pad(
    ctx: &Context,
    dims: ActShape,
    border: usize,
    fill: Border,
    src: &wgpu::Buffer,
    dst: &wgpu::Buffer,
) -> Result<Kernel, GpuError> {
    let p = pad_params(dims, border, u32::from(fill == Border::Replicate));
    let groups = (padded(dims, border).len() as u32).div_ceil(256);
    Kernel::new(ctx, SHADER, "pad", bytemuck::bytes_of(&p), &[src, dst], groups)
}

/// The backward of `pad` with `Border::Replicate`: dst (`dims`) = the gradient src
/// (`padded(dims, border)`) summed over every padded position that reads each value.
pub fn fold_replicate(
    ctx: &Context,
    dims: ActShape,
    border: usize,
    src: &wgpu::Buffer,
    dst: &wgpu::Buffer,
) -> Result<Kernel, GpuError> {
    let mut p = pad_params(dims, border, 1);
    // The kernel walks the unpadded tensor: dst_h x dst_w is its size, dst_y the border.
    (p.dst_h, p.dst_w) = (dims.height as u32, dims.width as u32);
    let groups = (dims.len() as u32).div_ceil(256);
    Kernel::new(ctx, SHADER, "fold_replicate", bytemuck::bytes_of(&p), &[src, dst], groups)
}

pub mod reference {
    use super::{ActShape, Border, Rect, padded};

    /// `pad` in f64.
    pub fn pad(dims: ActShape, border: usize, fill: Border, src: &[f64]) -> Vec<f64> {
        let out = padded(dims, border);
        let mut dst = vec![0.0; out.len()];
        for c in 0..dims.channels {
            for i in 0..out.height {
                for j in 0..out.width {
                    let (y, x) = (i as i64 - border as i64, j as i64 - border as i64);
                    let inside = (0..dims.height as i64).contains(&y) && (0..dims.width as i64).contains(&x);
                    if fill == Border::Zeros && !inside {
                        continue;
                    }
                    let sy = y.clamp(0, dims.height as i64 - 1) as usize;
                    let sx = x.clamp(0, dims.width as i64 - 1) as usize;
                    dst[(c * out.height + i) * out.width + j] = src[(c * dims.height + sy) * dims.width + sx];
                }
            }
        }
        dst
    }

    /// The backward of `pad` with `Border::Replicate`, as the adjoint of its gather: every
    /// padded position adds its gradient to the value it read.
    pub fn fold_replicate(dims: ActShape, border: usize, grad: &[f64]) -> Vec<f64> {
        let out = padded(dims, border);
        let mut dst = vec![0.0; dims.len()];
        for c in 0..dims.channels {
            for i in 0..out.height {
                for j in 0..out.width {
                    let sy = (i as i64 - border as i64).clamp(0, dims.height as i64 - 1) as usize;
                    let sx = (j as i64 - border as i64).clamp(0, dims.width as i64 - 1) as usize;
                    dst[(c * dims.height + sy) * dims.width + sx] += grad[(c * out.height + i) * out.width + j];
                }
            }
        }
        dst
    }

    /// `dst` with `from` of `src` copied in at `to`.
    pub fn copy_rect(
        src: &[f64],
        src_dims: ActShape,
        from: Rect,
        dst: &[f64],
        dst_dims: ActShape,
        to: (usize, usize),
    ) -> Vec<f64> {
        let mut out = dst.to_vec();
        for c in 0..src_dims.channels {
            for i in 0..from.height {
                for j in 0..from.width {
                    let s = (c * src_dims.height + from.y + i) * src_dims.width + from.x + j;
                    let d = (c * dst_dims.height + to.0 + i) * dst_dims.width + to.1 + j;
                    out[d] = src[s];
                }
            }
        }
        out
    }
}
