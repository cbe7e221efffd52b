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
    };
    let len = src_dims.channels * from.height * from.width;
    Kernel::new(ctx, SHADER, "copy_rect", bytemuck::bytes_of(&p), &[src, dst], (len as u32).div_ceil(256))
}

pub mod reference {
    use super::{ActShape, Rect};

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
