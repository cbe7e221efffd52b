//! Sums on the GPU with short accumulators (per-thread runs of 8, then trees of 256), and the
//! split-sum that finishes a split-K product. f64 references beside them.

use bytemuck::{Pod, Zeroable};

use crate::gpu::{Context, GpuError, Kernel, ShaderSource, Step};

pub const SHADER: ShaderSource = ShaderSource { name: "reduce", source: include_str!("../../kernels/reduce.wgsl") };

/// Values one workgroup of `sum_partials` (and of the loss kernels' first pass) folds into one.
pub const BLOCK: usize = 256 * 8;

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct Params {
    groups: u32,
    len: u32,
    splits: u32,
    dst_offset: u32,
    scale: f32,
    _pad: [u32; 3],
}

/// Number of block sums `len` values fold into.
pub fn blocks(len: usize) -> usize {
    len.div_ceil(BLOCK).max(1)
}

/// Values of the scratch buffers a sum of `len` values allocates (the first pass's block sums and
/// every level `sum_into` adds): what `loss::sq_diff_forward`, `tv::forward` and the `vector`
/// reductions keep in their step.
pub fn scratch_len(len: usize) -> usize {
    let (mut remaining, mut total) = (len, 0);
    while blocks(remaining) > 1 {
        remaining = blocks(remaining);
        total += remaining;
    }
    total
}

/// Appends to `step` the passes that turn `len` values in `src` into `dst[dst_offset] = scale * sum`.
pub fn sum_into(
    ctx: &Context,
    step: &mut Step,
    len: usize,
    src: &wgpu::Buffer,
    dst: &wgpu::Buffer,
    dst_offset: usize,
    scale: f32,
) -> Result<(), GpuError> {
    let mut remaining = len;
    let mut current = src.clone();
    while blocks(remaining) > 1 {
        let partials = ctx.buffer("block sums", blocks(remaining))?;
        step.push(sum_partials(ctx, remaining, &current, &partials, 0, 1.0)?);
        remaining = blocks(remaining);
        current = step.keep(partials).clone();
    }
    step.push(sum_partials(ctx, remaining, &current, dst, dst_offset, scale)?);
    Ok(())
}

/// Appends a sum of `len` values into `dst[slot] = scale * total`: `first(dst, offset, scale)`
/// is the op's own first pass, writing `scale *` the sum of each `BLOCK`-value block from
/// `offset` on; with more than one block it writes into scratch block sums that `sum_into`
/// finishes. What every loss and reduction of the ops shares.
pub fn block_sum(
    ctx: &Context,
    step: &mut Step,
    len: usize,
    first: impl Fn(&wgpu::Buffer, usize, f32) -> Result<Kernel, GpuError>,
    dst: &wgpu::Buffer,
    slot: usize,
    scale: f32,
) -> Result<(), GpuError> {
    let blocks = blocks(len);
    if blocks == 1 {
        step.push(first(dst, slot, scale)?);
        return Ok(());
    }
    let partials = ctx.buffer("block sums", blocks)?;
    step.push(first(&partials, 0, 1.0)?);
    let partials = step.keep(partials).clone();
    sum_into(ctx, step, blocks, &partials, dst, slot, scale)
}

/// dst[dst_offset + g] = scale * sum of block g of `src` (blocks of `BLOCK` values).
pub fn sum_partials(
    ctx: &Context,
    len: usize,
    src: &wgpu::Buffer,
    dst: &wgpu::Buffer,
    dst_offset: usize,
    scale: f32,
) -> Result<Kernel, GpuError> {
    let params = Params { groups: 0, len: len as u32, splits: 0, dst_offset: dst_offset as u32, scale, _pad: [0; 3] };
    Kernel::new(ctx, SHADER, "sum_partials", bytemuck::bytes_of(&params), &[src, dst], blocks(len) as u32)
}

/// `dst[i] = sum over s < splits of src[s * len + i]`, summed pairwise.
pub fn sum_splits(
    ctx: &Context,
    len: usize,
    splits: usize,
    src: &wgpu::Buffer,
    dst: &wgpu::Buffer,
) -> Result<Kernel, GpuError> {
    let params = Params { groups: 0, len: len as u32, splits: splits as u32, dst_offset: 0, scale: 1.0, _pad: [0; 3] };
    Kernel::new(ctx, SHADER, "sum_splits", bytemuck::bytes_of(&params), &[src, dst], (len as u32).div_ceil(256))
}

pub mod reference {
    /// Sum in f64 (the reference needs no care about accumulation order).
    pub fn sum(values: &[f64]) -> f64 {
        values.iter().sum()
    }

    pub fn sum_splits(src: &[f64], len: usize, splits: usize) -> Vec<f64> {
        (0..len).map(|i| (0..splits).map(|s| src[s * len + i]).sum()).collect()
    }
}
