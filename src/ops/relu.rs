//! ReLU: forward, backward (masked by the forward's input or output: x > 0 exactly where y > 0), the
//! mask packed as bits for the backward of a fused conv + ReLU, and f64 references.
//! The VGG executor normally fuses the forward into the conv epilogue, and in training that
//! epilogue also writes the mask bits (`conv::forward_relu_masked`); the forward and backward
//! kernels serve layers whose pre-activation value must be kept (e.g. a `conv4_2` content layer),
//! and `pack_mask` packs the same bits from an activation already written (tests compare the two).

use bytemuck::{Pod, Zeroable};

use super::kernel_class;
use crate::gpu::{AdapterClass, Context, GpuError, Kernel, ShaderSource};

pub const SHADER: ShaderSource = ShaderSource { name: "relu", source: include_str!("../../kernels/relu.wgsl") };
/// The mask packing lives in its own file: its output is `u32` words where `relu.wgsl` binds `f32`.
pub const MASK_SHADER: ShaderSource =
    ShaderSource { name: "relu_mask", source: include_str!("../../kernels/relu_mask.wgsl") };

/// Values one mask word holds.
pub const MASK_BITS: usize = 32;

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

/// grad_input = grad_output where `values` is positive, else 0. `values` is the forward's input or
/// its output: one is positive exactly where the other is.
pub fn backward(
    ctx: &Context,
    len: usize,
    values: &wgpu::Buffer,
    grad_output: &wgpu::Buffer,
    grad_input: &wgpu::Buffer,
) -> Result<Kernel, GpuError> {
    let (p, groups) = params(len);
    Kernel::new(ctx, SHADER, "relu_backward", bytemuck::bytes_of(&p), &[values, grad_input, grad_output], groups)
}

/// `u32` words of the mask of `len` values.
pub fn mask_words(len: usize) -> usize {
    len.div_ceil(MASK_BITS)
}

/// `bits[i / 32]` bit `i % 32` = `values[i] > 0`, over `len` values (`mask_words(len)` words; the bits
/// past `len` are 0): the ReLU mask that `conv::backward_input` reads instead of the activation,
/// the words `conv::forward_relu_masked` writes in its epilogue (the training forward uses that).
/// One invocation per value on GPUs, one per word on CPU adapters (`ops::kernel_class`, which
/// honours a forced convolution).
pub fn pack_mask(ctx: &Context, len: usize, values: &wgpu::Buffer, bits: &wgpu::Buffer) -> Result<Kernel, GpuError> {
    let (p, groups) = params(len);
    let (entry, groups) = match kernel_class(ctx)? {
        AdapterClass::Cpu => ("relu_mask_words", (mask_words(len) as u32).div_ceil(256)),
        AdapterClass::Gpu => ("relu_mask", groups),
    };
    Kernel::new(ctx, MASK_SHADER, entry, bytemuck::bytes_of(&p), &[values, bits], groups)
}

pub mod reference {
    pub fn forward(input: &[f64]) -> Vec<f64> {
        input.iter().map(|&x| x.max(0.0)).collect()
    }

    /// dL/dx = dL/dy where x > 0 (the subgradient 0 at x = 0, as PyTorch).
    pub fn backward(input: &[f64], grad_output: &[f64]) -> Vec<f64> {
        input.iter().zip(grad_output).map(|(&x, &g)| if x > 0.0 { g } else { 0.0 }).collect()
    }

    /// The mask of `values` > 0 packed 32 to a word, least significant bit first; bits past the
    /// last value are 0.
    pub fn mask_bits(values: &[f64]) -> Vec<u32> {
        values
            .chunks(super::MASK_BITS)
            .map(|chunk| chunk.iter().enumerate().fold(0u32, |word, (j, &v)| word | (u32::from(v > 0.0) << j)))
            .collect()
    }
}
