//! ReLU: forward, backward (masked by the forward's output) and f64 references.
//! The VGG executor normally fuses the forward into the conv epilogue; this kernel serves layers
//! whose pre-activation value must be kept (e.g. a `conv4_2` content layer).

use bytemuck::{Pod, Zeroable};

use crate::gpu::{Context, GpuError, Kernel, ShaderSource};

pub const SHADER: ShaderSource = ShaderSource { name: "relu", source: include_str!("../../kernels/relu.wgsl") };

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct Params {
    groups: u32,
    len: u32,
    _pad: [u32; 2],
}

fn params(len: usize) -> (Params, u32) {
    let p = Params { groups: 0, len: len as u32, _pad: [0; 2] };
    (p, (len as u32).div_ceil(256))
}

/// output = max(input, 0) over `len` values.
pub fn forward(ctx: &Context, len: usize, input: &wgpu::Buffer, output: &wgpu::Buffer) -> Result<Kernel, GpuError> {
    let (p, groups) = params(len);
    Kernel::new(ctx, SHADER, "relu_forward", bytemuck::bytes_of(&p), &[input, output], groups)
}

/// grad_input = grad_output where the forward output is positive, else 0.
pub fn backward(
    ctx: &Context,
    len: usize,
    output: &wgpu::Buffer,
    grad_output: &wgpu::Buffer,
    grad_input: &wgpu::Buffer,
) -> Result<Kernel, GpuError> {
    let (p, groups) = params(len);
    Kernel::new(ctx, SHADER, "relu_backward", bytemuck::bytes_of(&p), &[output, grad_input, grad_output], groups)
}

pub mod reference {
    pub fn forward(input: &[f64]) -> Vec<f64> {
        input.iter().map(|&x| x.max(0.0)).collect()
    }

    /// dL/dx = dL/dy where x > 0 (the subgradient 0 at x = 0, as PyTorch).
    pub fn backward(input: &[f64], grad_output: &[f64]) -> Vec<f64> {
        input.iter().zip(grad_output).map(|(&x, &g)| if x > 0.0 { g } else { 0.0 }).collect()
    }
}
