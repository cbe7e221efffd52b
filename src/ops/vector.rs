//! Vector ops over f32 buffers, for optimizers whose scalars stay on the GPU (L-BFGS): dot
//! products, sums and maxima of |x| into a slot (tree-reduced with `reduce`), `y += a x`,
//! `y = a x`, `y *= a`, where `a` is a uniform constant or a constant times an entry of a small
//! "scalars" buffer, and single-thread arithmetic on such a buffer. f64 references beside.

use bytemuck::{Pod, Zeroable};

use super::bands::{Bands, check_split};
use super::reduce;
use crate::gpu::{Context, GpuError, Kernel, ShaderSource, Step};

/// The compiled `kernels/vector.wgsl`.
pub const SHADER: ShaderSource = ShaderSource { name: "vector", source: include_str!("../../kernels/vector.wgsl") };

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable, Default)]
struct Params {
    groups: u32,
    len: u32,
    i0: u32,
    i1: u32,
    i2: u32,
    i3: u32,
    alpha: f32,
    beta: f32,
}

fn elementwise(len: usize) -> u32 {
    (len as u32).div_ceil(256)
}

fn kernel(ctx: &Context, entry: &str, p: Params, buffers: &[&wgpu::Buffer], groups: u32) -> Result<Kernel, GpuError> {
    Kernel::new(ctx, SHADER, entry, bytemuck::bytes_of(&p), buffers, groups)
}

/// Appends the kernels that write `dst[slot] = scale * sum(x * y)` over `len` values
/// (`x` and `y` may be the same buffer).
#[allow(clippy::too_many_arguments)]
pub fn dot(
    ctx: &Context,
    step: &mut Step,
    len: usize,
    x: &wgpu::Buffer,
    y: &wgpu::Buffer,
    dst: &wgpu::Buffer,
    slot: usize,
    scale: f32,
) -> Result<(), GpuError> {
    let first = |out: &wgpu::Buffer, offset: usize, alpha: f32| {
        let p = Params { len: len as u32, i0: offset as u32, alpha, ..Default::default() };
        kernel(ctx, "dot_partial", p, &[out, x, y], reduce::blocks(len) as u32)
    };
    reduce::block_sum(ctx, step, len, first, dst, slot, scale)
}

/// Appends the kernels that write `dst[slot] = sum(|x|)` over `len` values.
pub fn abs_sum(
    ctx: &Context,
    step: &mut Step,
    len: usize,
    x: &wgpu::Buffer,
    dst: &wgpu::Buffer,
    slot: usize,
) -> Result<(), GpuError> {
    let first = |out: &wgpu::Buffer, offset: usize, alpha: f32| {
        let p = Params { len: len as u32, i0: offset as u32, alpha, ..Default::default() };
        kernel(ctx, "abs_sum_partial", p, &[out, x], reduce::blocks(len) as u32)
    };
    reduce::block_sum(ctx, step, len, first, dst, slot, 1.0)
}

/// Appends the kernels that write `dst[slot] = max(|x|)` over `len` values (0 when `len` is 0).
pub fn abs_max(
    ctx: &Context,
    step: &mut Step,
    len: usize,
    x: &wgpu::Buffer,
    dst: &wgpu::Buffer,
    slot: usize,
) -> Result<(), GpuError> {
    let pass = |len: usize, src: &wgpu::Buffer, out: &wgpu::Buffer, offset: usize| {
        let p = Params { len: len as u32, i0: offset as u32, ..Default::default() };
        kernel(ctx, "abs_max_partial", p, &[out, src], reduce::blocks(len) as u32)
    };
    let mut remaining = len;
    let mut current = x.clone();
    while reduce::blocks(remaining) > 1 {
        let partials = ctx.buffer("block maxima", reduce::blocks(remaining))?;
        step.push(pass(remaining, &current, &partials, 0)?);
        remaining = reduce::blocks(remaining);
        current = step.keep(partials).clone();
    }
    step.push(pass(remaining, &current, dst, slot)?);
    Ok(())
}

/// As `dot` over two arrays in bands split alike: each band's dot product, then their sum.
#[allow(clippy::too_many_arguments)]
pub fn dot_bands(
    ctx: &Context,
    step: &mut Step,
    x: &Bands,
    y: &Bands,
    dst: &wgpu::Buffer,
    slot: usize,
    scale: f32,
) -> Result<(), GpuError> {
    over_bands(ctx, step, &[x, y], dst, slot, Finish::Sum(scale), |step, len, b, out, at, scale| {
        dot(ctx, step, len, b[0], b[1], out, at, scale)
    })
}

/// As `abs_sum` over an array in bands.
pub fn abs_sum_bands(
    ctx: &Context,
    step: &mut Step,
    x: &Bands,
    dst: &wgpu::Buffer,
    slot: usize,
) -> Result<(), GpuError> {
    over_bands(ctx, step, &[x], dst, slot, Finish::Sum(1.0), |step, len, b, out, at, _| {
        abs_sum(ctx, step, len, b[0], out, at)
    })
}

/// As `abs_max` over an array in bands.
pub fn abs_max_bands(
    ctx: &Context,
    step: &mut Step,
    x: &Bands,
    dst: &wgpu::Buffer,
    slot: usize,
) -> Result<(), GpuError> {
    over_bands(ctx, step, &[x], dst, slot, Finish::Max, |step, len, b, out, at, _| {
        abs_max(ctx, step, len, b[0], out, at)
    })
}

/// How per-band results combine.
enum Finish {
    Sum(f32),
    Max,
}

/// A reduction `per_band(step, len, buffers, out, slot, scale)` over banded arrays: straight
/// into `dst[slot]` when they are one band (exactly the unbanded kernels), else each band's
/// result into a slot of its own and then their sum (scaled) or maximum.
fn over_bands(
    ctx: &Context,
    step: &mut Step,
    arrays: &[&Bands],
    dst: &wgpu::Buffer,
    slot: usize,
    finish: Finish,
    per_band: impl Fn(&mut Step, usize, &[&wgpu::Buffer], &wgpu::Buffer, usize, f32) -> Result<(), GpuError>,
) -> Result<(), GpuError> {
    check_split("a banded reduction", arrays)?;
    let first = arrays[0];
    let count = first.bands().len();
    let buffers = |b: usize| -> Vec<&wgpu::Buffer> { arrays.iter().map(|a| &a.bands()[b].buffer).collect() };
    if count == 1 {
        let scale = match finish {
            Finish::Sum(scale) => scale,
            Finish::Max => 1.0,
        };
        return per_band(step, first.len(), &buffers(0), dst, slot, scale);
    }
    let partials = ctx.buffer("per-band results", count)?;
    let partials = step.keep(partials).clone();
    for b in 0..count {
        per_band(step, first.bands()[b].shape.len(), &buffers(b), &partials, b, 1.0)?;
    }
    match finish {
        Finish::Sum(scale) => reduce::sum_into(ctx, step, count, &partials, dst, slot, scale),
        Finish::Max => abs_max(ctx, step, count, &partials, dst, slot),
    }
}

/// `y += alpha * x` over `len` values.
pub fn axpy(ctx: &Context, len: usize, alpha: f32, x: &wgpu::Buffer, y: &wgpu::Buffer) -> Result<Kernel, GpuError> {
    let p = Params { len: len as u32, alpha, ..Default::default() };
    kernel(ctx, "axpy", p, &[y, x], elementwise(len))
}

/// `y += (alpha * scalars[index]) * x` over `len` values: the factor is read on the GPU.
pub fn axpy_scalar(
    ctx: &Context,
    len: usize,
    alpha: f32,
    scalars: &wgpu::Buffer,
    index: usize,
    x: &wgpu::Buffer,
    y: &wgpu::Buffer,
) -> Result<Kernel, GpuError> {
    let p = Params { len: len as u32, i0: index as u32, alpha, ..Default::default() };
    kernel(ctx, "axpy_scalar", p, &[y, x, scalars], elementwise(len))
}

/// `y = alpha * x` over `len` values (`alpha = 1` copies).
pub fn copy_scaled(
    ctx: &Context,
    len: usize,
    alpha: f32,
    x: &wgpu::Buffer,
    y: &wgpu::Buffer,
) -> Result<Kernel, GpuError> {
    let p = Params { len: len as u32, alpha, ..Default::default() };
    kernel(ctx, "copy_scaled", p, &[y, x], elementwise(len))
}

/// `y = (alpha * scalars[index]) * x` over `len` values.
pub fn copy_scaled_scalar(
    ctx: &Context,
    len: usize,
    alpha: f32,
    scalars: &wgpu::Buffer,
    index: usize,
    x: &wgpu::Buffer,
    y: &wgpu::Buffer,
) -> Result<Kernel, GpuError> {
    let p = Params { len: len as u32, i0: index as u32, alpha, ..Default::default() };
    kernel(ctx, "copy_scaled_scalar", p, &[y, x, scalars], elementwise(len))
}

/// `y *= alpha` over `len` values.
pub fn scale(ctx: &Context, len: usize, alpha: f32, y: &wgpu::Buffer) -> Result<Kernel, GpuError> {
    let p = Params { len: len as u32, alpha, ..Default::default() };
    kernel(ctx, "scale", p, &[y], elementwise(len))
}

/// `y *= alpha * scalars[index]` over `len` values.
pub fn scale_scalar(
    ctx: &Context,
    len: usize,
    alpha: f32,
    scalars: &wgpu::Buffer,
    index: usize,
    y: &wgpu::Buffer,
) -> Result<Kernel, GpuError> {
    let p = Params { len: len as u32, i0: index as u32, alpha, ..Default::default() };
    kernel(ctx, "scale_scalar", p, &[y, scalars], elementwise(len))
}

/// On the scalars buffer `s`, one thread: `s[dst] = alpha * s[a] + beta * s[b] * s[c]`
/// (every index must hold a finite value, even one whose factor is 0).
#[allow(clippy::too_many_arguments)]
pub fn scalar_fma(
    ctx: &Context,
    scalars: &wgpu::Buffer,
    dst: usize,
    alpha: f32,
    a: usize,
    beta: f32,
    b: usize,
    c: usize,
) -> Result<Kernel, GpuError> {
    let p = Params { i0: dst as u32, i1: a as u32, i2: b as u32, i3: c as u32, alpha, beta, ..Default::default() };
    kernel(ctx, "scalar_fma", p, &[scalars], 1)
}

/// On the scalars buffer `s`, one thread: `s[dst] = 1 / (s[src] + eps)`.
pub fn scalar_reciprocal(
    ctx: &Context,
    scalars: &wgpu::Buffer,
    dst: usize,
    src: usize,
    eps: f32,
) -> Result<Kernel, GpuError> {
    let p = Params { i0: dst as u32, i1: src as u32, alpha: eps, ..Default::default() };
    kernel(ctx, "scalar_reciprocal", p, &[scalars], 1)
}

/// On the scalars buffer `s`, one thread: `s[dst] = if s[test] > threshold { 0 } else { s[value] }`.
pub fn scalar_gate(
    ctx: &Context,
    scalars: &wgpu::Buffer,
    dst: usize,
    test: usize,
    threshold: f32,
    value: usize,
) -> Result<Kernel, GpuError> {
    let p = Params { i0: dst as u32, i1: test as u32, i2: value as u32, alpha: threshold, ..Default::default() };
    kernel(ctx, "scalar_gate", p, &[scalars], 1)
}

/// f64 references of the vector ops.
pub mod reference {
    /// sum(x * y)
    pub fn dot(x: &[f64], y: &[f64]) -> f64 {
        x.iter().zip(y).map(|(a, b)| a * b).sum()
    }

    /// sum(|x|)
    pub fn abs_sum(x: &[f64]) -> f64 {
        x.iter().map(|v| v.abs()).sum()
    }

    /// max(|x|), 0 for an empty vector.
    pub fn abs_max(x: &[f64]) -> f64 {
        x.iter().fold(0.0, |m, v| m.max(v.abs()))
    }

    /// y + alpha * x
    pub fn axpy(alpha: f64, x: &[f64], y: &[f64]) -> Vec<f64> {
        x.iter().zip(y).map(|(a, b)| b + alpha * a).collect()
    }
}
