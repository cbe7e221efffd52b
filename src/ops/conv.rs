//! 3x3 convolution (padding 1, stride 1, bias): forward, backward to the input, and their f64
//! references. Weights are frozen in style transfer, so no weight gradient exists.

use bytemuck::{Pod, Zeroable};

use crate::gpu::{Context, GpuError, Kernel, ShaderSource};

pub const SHADER: ShaderSource = ShaderSource { name: "conv", source: include_str!("../../kernels/conv.wgsl") };

const TILE: u32 = 64;
const FLAG_BIAS: u32 = 1;
const FLAG_RELU: u32 = 2;
const FLAG_ACCUMULATE: u32 = 4;
const FLAG_MASK_INPUT: u32 = 8;
const FLAG_FLIP_TAPS: u32 = 16;

/// Sizes of one convolution layer on a CHW image.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvShape {
    pub in_channels: usize,
    pub out_channels: usize,
    pub height: usize,
    pub width: usize,
}

impl ConvShape {
    pub fn input_len(&self) -> usize {
        self.in_channels * self.height * self.width
    }
    pub fn output_len(&self) -> usize {
        self.out_channels * self.height * self.width
    }
    pub fn weight_len(&self) -> usize {
        self.out_channels * self.in_channels * 9
    }
    /// Multiply-adds of the forward pass times two (the backward to the input costs the same).
    pub fn flops(&self) -> u64 {
        2 * (self.output_len() as u64) * (self.in_channels as u64) * 9
    }
    /// `Cin->Cout @HxW`, for profiles.
    pub fn describe(&self) -> String {
        format!("{}->{} @{}x{}", self.in_channels, self.out_channels, self.height, self.width)
    }
}

/// A layer's weights on the GPU in torchvision's layout [out, in, 3, 3]; the backward pass reads
/// the same buffer transposed and flipped, so no second copy is kept.
pub struct ConvWeights {
    pub in_channels: usize,
    pub out_channels: usize,
    pub weight: wgpu::Buffer,
    pub bias: wgpu::Buffer,
}

impl ConvWeights {
    /// Uploads `weight` ([out, in, 3, 3] row-major) and `bias` ([out]).
    pub fn upload(
        ctx: &Context,
        label: &str,
        weight: &[f32],
        bias: &[f32],
        out_channels: usize,
        in_channels: usize,
    ) -> Result<Self, GpuError> {
        assert_eq!(weight.len(), out_channels * in_channels * 9, "{label} weight length");
        assert_eq!(bias.len(), out_channels, "{label} bias length");
        Ok(Self {
            in_channels,
            out_channels,
            weight: ctx.upload(&format!("{label}.weight"), weight)?,
            bias: ctx.upload(&format!("{label}.bias"), bias)?,
        })
    }
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct Params {
    groups: u32,
    in_channels: u32,
    out_channels: u32,
    height: u32,
    width: u32,
    tiles_n: u32,
    flags: u32,
    ci_stride: u32,
    row_stride: u32,
    _pad: [u32; 3],
}

/// Which of the two formulations of the same product a kernel uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConvAlgorithm {
    /// 64 x 64 tiles staged in workgroup memory: for GPUs.
    Tiled,
    /// No workgroup memory or barriers, uniform weight loads: for CPU implementations.
    Direct,
}

impl ConvAlgorithm {
    /// The formulation that suits the adapter.
    pub fn for_context(ctx: &Context) -> Self {
        if ctx.adapter.device_type == "Cpu" { ConvAlgorithm::Direct } else { ConvAlgorithm::Tiled }
    }
}

const DIRECT_ROWS: u32 = 16;
const DIRECT_BLOCKS: u32 = 16;
const DIRECT_PIXELS: u32 = 4;

fn gemm_kernel(
    ctx: &Context,
    rows: usize,
    in_channels: usize,
    height: usize,
    width: usize,
    flags: u32,
    buffers: [&wgpu::Buffer; 5],
) -> Result<Kernel, GpuError> {
    let algorithm = ctx.conv_algorithm.unwrap_or_else(|| ConvAlgorithm::for_context(ctx));
    let (tiles_m, tiles_n, entry) = match algorithm {
        ConvAlgorithm::Tiled => ((rows as u32).div_ceil(TILE), ((height * width) as u32).div_ceil(TILE), "conv3x3"),
        ConvAlgorithm::Direct => {
            let blocks = (height as u32) * (width as u32).div_ceil(DIRECT_PIXELS);
            ((rows as u32).div_ceil(DIRECT_ROWS), blocks.div_ceil(DIRECT_BLOCKS), "conv3x3_direct")
        }
    };
    let params = Params {
        groups: 0,
        in_channels: in_channels as u32,
        out_channels: rows as u32,
        height: height as u32,
        width: width as u32,
        tiles_n,
        flags,
        // Forward: row m, channel c, tap t at m * (in * 9) + c * 9 + t. Backward (rows are the
        // forward's input channels, channels its outputs): c * (rows * 9) + m * 9 + (8 - t).
        ci_stride: if flags & FLAG_FLIP_TAPS != 0 { (rows * 9) as u32 } else { 9 },
        row_stride: if flags & FLAG_FLIP_TAPS != 0 { 9 } else { (in_channels * 9) as u32 },
        _pad: [0; 3],
    };
    Kernel::new(ctx, SHADER, entry, bytemuck::bytes_of(&params), &buffers, tiles_m * tiles_n)
}

/// output = conv(input) + bias, optionally followed by ReLU (fused in the epilogue).
pub fn forward(
    ctx: &Context,
    shape: ConvShape,
    input: &wgpu::Buffer,
    weights: &ConvWeights,
    output: &wgpu::Buffer,
    relu: bool,
) -> Result<Kernel, GpuError> {
    let flags = FLAG_BIAS | if relu { FLAG_RELU } else { 0 };
    gemm_kernel(
        ctx,
        shape.out_channels,
        shape.in_channels,
        shape.height,
        shape.width,
        flags,
        // The mask binding is unused without FLAG_MASK_INPUT; any buffer satisfies the layout.
        [input, &weights.weight, &weights.bias, output, input],
    )
    .map(|k| k.with_work(format!("forward {}", shape.describe()), shape.flops()))
}

/// grad_input (=, or += when `accumulate`) the gradient of the loss with respect to the conv's
/// input, given the gradient with respect to its output. With `relu_mask`, the conv is followed by
/// a ReLU and that is its output's mask packed as bits (`relu::pack_mask`): `grad_output` is then
/// the gradient after the ReLU and the ReLU's backward (masking by output > 0) is fused into the loads.
pub fn backward_input(
    ctx: &Context,
    shape: ConvShape,
    grad_output: &wgpu::Buffer,
    weights: &ConvWeights,
    grad_input: &wgpu::Buffer,
    accumulate: bool,
    relu_mask: Option<&wgpu::Buffer>,
) -> Result<Kernel, GpuError> {
    let flags = FLAG_FLIP_TAPS
        | if accumulate { FLAG_ACCUMULATE } else { 0 }
        | if relu_mask.is_some() { FLAG_MASK_INPUT } else { 0 };
    gemm_kernel(
        ctx,
        shape.in_channels,
        shape.out_channels,
        shape.height,
        shape.width,
        flags,
        // The bias binding is unused without FLAG_BIAS; any buffer satisfies the layout.
        [grad_output, &weights.weight, &weights.bias, grad_input, relu_mask.unwrap_or(grad_output)],
    )
    .map(|k| k.with_work(format!("backward {}", shape.describe()), shape.flops()))
}

/// f64 references, written from the definitions (no im2col, no flipping) so that they check the kernel.
pub mod reference {
    use super::ConvShape;

    /// out[co, y, x] = bias[co] + sum over ci, ky, kx of w[co, ci, ky, kx] * in[ci, y + ky - 1, x + kx - 1].
    pub fn forward(shape: ConvShape, input: &[f64], weight: &[f64], bias: &[f64]) -> Vec<f64> {
        let ConvShape { in_channels, out_channels, height, width } = shape;
        let mut out = vec![0.0; shape.output_len()];
        for co in 0..out_channels {
            for y in 0..height {
                for x in 0..width {
                    let mut sum = bias[co];
                    for ci in 0..in_channels {
                        for ky in 0..3 {
                            for kx in 0..3 {
                                let (iy, ix) = (y as isize + ky as isize - 1, x as isize + kx as isize - 1);
                                if iy < 0 || ix < 0 || iy >= height as isize || ix >= width as isize {
                                    continue;
                                }
                                sum += weight[((co * in_channels + ci) * 3 + ky) * 3 + kx]
                                    * input[(ci * height + iy as usize) * width + ix as usize];
                            }
                        }
                    }
                    out[(co * height + y) * width + x] = sum;
                }
            }
        }
        out
    }

    /// The adjoint of `forward` (without bias): scatters each output gradient back over its window.
    pub fn backward_input(shape: ConvShape, grad_output: &[f64], weight: &[f64]) -> Vec<f64> {
        let ConvShape { in_channels, out_channels, height, width } = shape;
        let mut grad_input = vec![0.0; shape.input_len()];
        for co in 0..out_channels {
            for y in 0..height {
                for x in 0..width {
                    let g = grad_output[(co * height + y) * width + x];
                    for ci in 0..in_channels {
                        for ky in 0..3 {
                            for kx in 0..3 {
                                let (iy, ix) = (y as isize + ky as isize - 1, x as isize + kx as isize - 1);
                                if iy < 0 || ix < 0 || iy >= height as isize || ix >= width as isize {
                                    continue;
                                }
                                grad_input[(ci * height + iy as usize) * width + ix as usize] +=
                                    weight[((co * in_channels + ci) * 3 + ky) * 3 + kx] * g;
                            }
                        }
                    }
                }
            }
        }
        grad_input
    }
}
