//! 2x2 pooling, stride 2 (floor on odd sizes): max-pool (forward, which also records each window's
//! arg-max as a 2-bit code, and backward to the arg-max from those codes) and
//! average pool (PyTorch's `AvgPool2d(2, 2)`: forward, backward spreading a quarter to each input), f64 references.

use bytemuck::{Pod, Zeroable};

use super::ActShape;
use crate::gpu::{Context, GpuError, Kernel, ShaderSource};

pub const SHADER: ShaderSource = ShaderSource { name: "pool", source: include_str!("../../kernels/pool.wgsl") };

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct Params {
    groups: u32,
    channels: u32,
    height: u32,
    width: u32,
    out_height: u32,
    out_width: u32,
    _pad: [u32; 2],
}

fn params(shape: ActShape) -> Params {
    Params {
        groups: 0,
        channels: shape.channels as u32,
        height: shape.height as u32,
        width: shape.width as u32,
        out_height: shape.out_height() as u32,
        out_width: shape.out_width() as u32,
        _pad: [0; 2],
    }
}

/// `u32` words of the arg-max codes of a max-pool: 2 bits per output, 16 outputs to a word.
pub fn codes_words(shape: ActShape) -> usize {
    shape.output_len().div_ceil(CODES_PER_WORD)
}

/// Arg-max codes one `u32` word holds.
pub const CODES_PER_WORD: usize = 16;

/// output = the maximum of each 2x2 window of input; `codes` (`codes_words` words) = each window's
/// first arg-max, the code the backward reads instead of the input.
pub fn forward(
    ctx: &Context,
    shape: ActShape,
    input: &wgpu::Buffer,
    output: &wgpu::Buffer,
    codes: &wgpu::Buffer,
) -> Result<Kernel, GpuError> {
    let groups = (shape.output_len() as u32).div_ceil(256);
    Kernel::new(ctx, SHADER, "maxpool_forward", bytemuck::bytes_of(&params(shape)), &[input, output, codes], groups)
}

/// grad_input = grad_output routed to each window's first arg-max, 0 elsewhere, from the
/// forward's `codes`.
pub fn backward(
    ctx: &Context,
    shape: ActShape,
    codes: &wgpu::Buffer,
    grad_output: &wgpu::Buffer,
    grad_input: &wgpu::Buffer,
) -> Result<Kernel, GpuError> {
    let groups = (shape.input_len() as u32).div_ceil(256);
    Kernel::new(
        ctx,
        SHADER,
        "maxpool_backward",
        bytemuck::bytes_of(&params(shape)),
        &[grad_output, grad_input, codes],
        groups,
    )
}

/// output = the mean of each 2x2 window of input (PyTorch's `AvgPool2d(2, 2)`).
pub fn avg_forward(
    ctx: &Context,
    shape: ActShape,
    input: &wgpu::Buffer,
    output: &wgpu::Buffer,
) -> Result<Kernel, GpuError> {
    let groups = (shape.output_len() as u32).div_ceil(256);
    Kernel::new(ctx, SHADER, "avgpool_forward", bytemuck::bytes_of(&params(shape)), &[input, output], groups)
}

/// grad_input = a quarter of each window's output gradient on its four inputs, 0 on the row and
/// column an odd size drops. The input values are not needed.
pub fn avg_backward(
    ctx: &Context,
    shape: ActShape,
    grad_output: &wgpu::Buffer,
    grad_input: &wgpu::Buffer,
) -> Result<Kernel, GpuError> {
    let groups = (shape.input_len() as u32).div_ceil(256);
    Kernel::new(ctx, SHADER, "avgpool_backward", bytemuck::bytes_of(&params(shape)), &[grad_output, grad_input], groups)
}

pub mod reference {
    use super::ActShape;

    /// Average pool: the mean of each 2x2 window.
    pub fn avg_forward(shape: ActShape, input: &[f64]) -> Vec<f64> {
        let (oh, ow) = (shape.out_height(), shape.out_width());
        let mut out = Vec::with_capacity(shape.output_len());
        for c in 0..shape.channels {
            for oy in 0..oh {
                for ox in 0..ow {
                    let index = |dy: usize, dx: usize| (c * shape.height + 2 * oy + dy) * shape.width + 2 * ox + dx;
                    out.push(
                        0.25 * (input[index(0, 0)] + input[index(0, 1)] + input[index(1, 0)] + input[index(1, 1)]),
                    );
                }
            }
        }
        out
    }

    /// d/d input of `avg_forward` weighted by `grad_output`.
    pub fn avg_backward(shape: ActShape, grad_output: &[f64]) -> Vec<f64> {
        let (oh, ow) = (shape.out_height(), shape.out_width());
        let mut grad_input = vec![0.0; shape.input_len()];
        for c in 0..shape.channels {
            for oy in 0..oh {
                for ox in 0..ow {
                    let g = 0.25 * grad_output[(c * oh + oy) * ow + ox];
                    for (dy, dx) in [(0, 0), (0, 1), (1, 0), (1, 1)] {
                        grad_input[(c * shape.height + 2 * oy + dy) * shape.width + 2 * ox + dx] += g;
                    }
                }
            }
        }
        grad_input
    }

    /// (output, arg-max input index per output), first maximum in row-major window order.
    fn pool(shape: ActShape, input: &[f64]) -> (Vec<f64>, Vec<usize>) {
        let (oh, ow) = (shape.out_height(), shape.out_width());
        let mut out = Vec::with_capacity(shape.output_len());
        let mut argmax = Vec::with_capacity(shape.output_len());
        for c in 0..shape.channels {
            for oy in 0..oh {
                for ox in 0..ow {
                    let mut best = (f64::NEG_INFINITY, 0);
                    for (dy, dx) in [(0, 0), (0, 1), (1, 0), (1, 1)] {
                        let index = (c * shape.height + 2 * oy + dy) * shape.width + 2 * ox + dx;
                        if input[index] > best.0 {
                            best = (input[index], index);
                        }
                    }
                    out.push(best.0);
                    argmax.push(best.1);
                }
            }
        }
        (out, argmax)
    }

    pub fn forward(shape: ActShape, input: &[f64]) -> Vec<f64> {
        pool(shape, input).0
    }

    pub fn backward(shape: ActShape, input: &[f64], grad_output: &[f64]) -> Vec<f64> {
        let mut grad_input = vec![0.0; shape.input_len()];
        for (o, index) in pool(shape, input).1.into_iter().enumerate() {
            grad_input[index] += grad_output[o];
        }
        grad_input
    }

    /// The arg-max codes the GPU forward writes: per output, the row-major position (0..3) in its
    /// window of the first value no later value exceeds (`>`: ties keep the first; a NaN first
    /// value keeps position 0, later NaNs are never taken), 16 codes to a word, least significant
    /// bits first, 0 past the last output.
    pub fn argmax_codes(shape: ActShape, input: &[f64]) -> Vec<u32> {
        let (oh, ow) = (shape.out_height(), shape.out_width());
        let mut words = vec![0u32; super::codes_words(shape)];
        for c in 0..shape.channels {
            for oy in 0..oh {
                for ox in 0..ow {
                    let index = |dy: usize, dx: usize| (c * shape.height + 2 * oy + dy) * shape.width + 2 * ox + dx;
                    let (mut best, mut code) = (input[index(0, 0)], 0u32);
                    for (k, (dy, dx)) in [(0, 1), (1, 0), (1, 1)].into_iter().enumerate() {
                        if input[index(dy, dx)] > best {
                            (best, code) = (input[index(dy, dx)], k as u32 + 1);
                        }
                    }
                    let o = (c * oh + oy) * ow + ox;
                    words[o / super::CODES_PER_WORD] |= code << (2 * (o % super::CODES_PER_WORD));
                }
            }
        }
        words
    }

    /// `backward` from `argmax_codes`: each output's gradient goes to the input its code names.
    pub fn backward_from_codes(shape: ActShape, codes: &[u32], grad_output: &[f64]) -> Vec<f64> {
        let (oh, ow) = (shape.out_height(), shape.out_width());
        let mut grad_input = vec![0.0; shape.input_len()];
        for c in 0..shape.channels {
            for oy in 0..oh {
                for ox in 0..ow {
                    let o = (c * oh + oy) * ow + ox;
                    let code = (codes[o / super::CODES_PER_WORD] >> (2 * (o % super::CODES_PER_WORD))) & 3;
                    let (dy, dx) = (code as usize / 2, code as usize % 2);
                    grad_input[(c * shape.height + 2 * oy + dy) * shape.width + 2 * ox + dx] += grad_output[o];
                }
            }
        }
        grad_input
    }
}
