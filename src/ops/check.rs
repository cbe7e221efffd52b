//! Detection of non-finite values on the GPU: a flag holding the first step at which a checked
//! buffer held an infinity or a NaN. Read back cheaply with the losses.

use bytemuck::{Pod, Zeroable};

use crate::gpu::{Context, GpuError, Kernel, ShaderSource};

pub const SHADER: ShaderSource = ShaderSource { name: "check", source: include_str!("../../kernels/check.wgsl") };

/// The flag's value while nothing non-finite has been seen.
pub const CLEAN: u32 = u32::MAX;

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct Params {
    groups: u32,
    len: u32,
    step: u32,
    _pad: u32,
}

/// A one-word buffer holding `CLEAN` (its bit pattern is written through the f32 upload path).
pub fn new_flag(ctx: &Context) -> Result<wgpu::Buffer, GpuError> {
    ctx.upload("first non-finite step", &[f32::from_bits(CLEAN)])
}

/// flag = min(flag, step) if any of the first `len` values is infinite or NaN.
pub fn flag_non_finite(
    ctx: &Context,
    len: usize,
    values: &wgpu::Buffer,
    flag: &wgpu::Buffer,
) -> Result<Kernel, GpuError> {
    let params = Params { groups: 0, len: len as u32, step: 0, _pad: 0 };
    Kernel::new(
        ctx,
        SHADER,
        "flag_non_finite",
        bytemuck::bytes_of(&params),
        &[values, flag],
        (len as u32).div_ceil(256),
    )
}

/// Sets the step number a `flag_non_finite` kernel reports.
pub fn set_step(ctx: &Context, kernel: &Kernel, len: usize, step: u32) {
    let params = Params { groups: 0, len: len as u32, step, _pad: 0 };
    kernel.set_params(ctx, bytemuck::bytes_of(&params));
}

/// Reads the flag: `Some(step)` once a non-finite value was seen.
pub fn read_flag(ctx: &Context, flag: &wgpu::Buffer) -> Result<Option<u32>, GpuError> {
    let bits = ctx.read(flag, 1)?[0].to_bits();
    Ok(if bits == CLEAN { None } else { Some(bits) })
}

pub mod reference {
    /// The flag after checking `values` at `step`, starting from `flag`.
    pub fn flag_non_finite(values: &[f64], step: u32, flag: u32) -> u32 {
        if values.iter().any(|v| !v.is_finite()) { flag.min(step) } else { flag }
    }
}
